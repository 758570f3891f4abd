//! Fine-tuning the decoder head on the user's sentence pairs.
//!
//! What is trained: a correction of the output projection (tied to the embeddings in Marian, so
//! the shared matrix is left alone) and of `final_logits_bias`, on a set S of target tokens: the
//! tokens the pairs teach and the base model's top-k where they are taught (what they displace),
//! each entry under its unit's conditions (`adapter::EntryConditions`). No other token's logit
//! can change. Optionally (`last_layer_rank`) also a low-rank adapter
//! on the last decoder layer's fc2; then every logit moves and the loss runs over the whole
//! vocabulary (`last_layer`).
//! The frozen encoder and decoder run once per pair (teacher forcing); their hidden states are
//! cached, so epochs cost only the head.
//!
//! The full-vocabulary softmax stays exact at the cost of |S| instead of V: logits outside S do
//! not change, so their log-sum-exp is computed once per position from the frozen model
//! (`lse_rest`) and the softmax runs over `[z_S, lse_rest]` — the same normaliser as over all V.
//! A target outside S keeps its fixed base logit, so its cross-entropy is exact too.
//!
//! The objective, chosen so the model takes the user's words without drifting elsewhere.
//! Why output drifts: a correction of the head moves the logits of S at every position whose
//! hidden state resembles the contexts it was trained on. Cross-entropy wherever the user's
//! target differs from what the model would say (in real pairs: most sentences, for incidental
//! wording) teaches hundreds of tokens, each a little, and that fires all over unrelated text. So:
//! - what is *taught* is chosen in `terms`: units (a word's first piece, or a later piece after
//!   its predecessor) that the pairs want consistently where the model says otherwise — the
//!   target of ≥ `min_taught` positions the base model finds unlikely (probability <
//!   `learn_below`), in ≥ `min_taught_share` of its occurrences, improbably often for this
//!   model (`term_p_value`) — each applied only where the source holds a token it goes with
//!   (`source_triggers`): a term ("auto" for "voiture", with "car"), not a paraphrase;
//! - positions whose target is taught and unlikely carry cross-entropy (learn it), and so does
//!   the position right after a taught unit (`learn_after_term`): there the base model has just
//!   read a piece it would not have written and its guess is no reference to keep (it tends to
//!   finish the word it expected: "au" + "to" + "ure");
//! - every other position — including the user's incidental rewordings — carries KL toward the
//!   base distribution (`kl_weight`): keep what the model says there;
//! - the correction is low-rank (U·Vᵀ, LoRA-style, U starting at zero) and decoupled weight
//!   decay pulls it toward zero (= the base model); the epoch with the best held-out loss is kept
//!   (early stop).
//!
//! Training runs on candle's autograd with its AdamW.

pub mod keep;
mod last_layer;
pub mod pairs;
mod positions;
mod terms;

pub use positions::FeatureShard;

use crate::adapter::{
    Adapter, AdapterManifest, EntryConditions, LastLayerAdapter, ADAPTER_FORMAT,
    ADAPTER_FORMAT_VERSION, NOT_CONDITIONED,
};
use crate::error::{Error, Result};
use crate::model::HeadRows;
use crate::translator::Translator;
use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use last_layer::{HeadParams, LastLayer, LastLayerFeatures, Tail};
use pairs::Pair;
use positions::{exp_nonpositive, FeatureClock, Positions};
use serde::Serialize;
use web_time::Instant;

#[derive(Debug, Clone, Serialize)]
pub struct FineTuneOptions {
    pub epochs: usize,
    pub lr: f64,
    /// Positions (target tokens) per optimisation step.
    pub batch_positions: usize,
    pub weight_decay: f64,
    pub label_smoothing: f64,
    /// Weight of the stay-close-to-base KL term.
    pub kl_weight: f64,
    /// At a position to learn, the base model's top-k tokens (what the target displaces) join
    /// the trainable set.
    pub top_k: usize,
    /// A position whose target token the base model gives less than this probability is
    /// something to learn (cross-entropy); one above it is kept as the base model has it (KL
    /// toward the base distribution). 1.0 puts cross-entropy on every position.
    pub learn_below: f64,
    /// Rank of the correction of the output projection (a LoRA-style product U·Vᵀ).
    pub rank: usize,
    /// Rank of a low-rank adapter on the last decoder layer's fc2, trained with the head
    /// (0: none). Exact over the full vocabulary, so an epoch costs two V-wide products per
    /// position (see `last_layer`).
    pub last_layer_rank: usize,
    /// A token is taught (joins S with what it displaces) only when it is the target of at
    /// least this many learn positions of the training pairs...
    pub min_taught: usize,
    /// ... and at least this share of its occurrences as a target are learn positions...
    pub min_taught_share: f64,
    /// ... and that many unlikely occurrences would happen by chance with at most this
    /// probability, at the rate this model finds any of the pairs' words unlikely (a binomial
    /// tail; see `terms`).
    pub term_p_value: f64,
    /// Apply a taught token only in sentences whose source holds a token the pairs show it
    /// goes with (found per taught token: `terms`); tokens with no such source token are
    /// not taught. Off: taught tokens apply wherever the hidden state calls for them.
    pub source_triggers: bool,
    /// Train the per-token bias correction as well as the projection.
    pub train_bias: bool,
    /// Weight of a KL term at learn positions over every token but the taught one (the
    /// distribution among the others stays as the base model has it).
    pub kl_learn_weight: f64,
    /// The position right after a taught token the base model did not predict is learnt too
    /// (cross-entropy, its top-k joining S): there the base model has just seen a word it would
    /// not have said, so its distribution is no reference to keep (it tends to continue the
    /// word it expected: "auto" + "ure" from "voiture").
    pub learn_after_term: bool,
    /// At least this many optimisation steps: more epochs than `epochs` when the pairs are few
    /// (each epoch is `batch_positions` positions a step).
    pub min_steps: usize,
    /// Stop after this many epochs without a better held-out loss.
    pub patience: usize,
    /// Global gradient-norm clip.
    pub clip_norm: f64,
    /// Fraction of the steps with linear warm-up (then linear decay to zero).
    pub warmup_fraction: f64,
    pub seed: u64,
}

impl Default for FineTuneOptions {
    fn default() -> Self {
        FineTuneOptions {
            epochs: 5,
            lr: 5e-3,
            batch_positions: 256,
            weight_decay: 0.01,
            label_smoothing: 0.0,
            kl_weight: 10.0,
            top_k: 4,
            learn_below: 0.1,
            rank: 8,
            last_layer_rank: 0,
            min_taught: 3,
            min_taught_share: 0.5,
            term_p_value: 1e-4,
            source_triggers: true,
            train_bias: true,
            kl_learn_weight: 0.0,
            learn_after_term: true,
            min_steps: 64,
            patience: 2,
            clip_norm: 1.0,
            warmup_fraction: 0.1,
            seed: 1,
        }
    }
}

/// Optional overrides of the defaults, one definition for every front end: the CLI's flags
/// (`clap`), the browser API's options object (camelCase keys) and the tests.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(clap::Args))]
#[serde(rename_all = "camelCase")]
pub struct FineTuneOverrides {
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub epochs: Option<usize>,
    /// At least this many optimisation steps (more epochs when the pairs are few).
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub min_steps: Option<usize>,
    /// Peak learning rate.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub lr: Option<f64>,
    /// Target positions per optimisation step.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub batch_positions: Option<usize>,
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub label_smoothing: Option<f64>,
    /// Weight of the keep-close-to-the-base-model term.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub kl_weight: Option<f64>,
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub weight_decay: Option<f64>,
    /// Rank of the correction of the output projection.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub rank: Option<usize>,
    /// Also train a low-rank adapter of this rank on the last decoder layer's fc2 (0: off).
    /// Slower: every step then runs over the whole vocabulary.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub last_layer_rank: Option<usize>,
    /// Target tokens the base model gives less than this probability are learnt (cross-entropy);
    /// the others are kept as the base model has them (KL). 1.0: cross-entropy everywhere.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub learn_below: Option<f64>,
    /// A token is taught only when it is the target of at least this many learn positions.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub min_taught: Option<usize>,
    /// ... and of learn positions in at least this share of its occurrences as a target...
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub min_taught_share: Option<f64>,
    /// ... and only when that many would happen by chance with at most this probability at the
    /// rate the model finds any of the pairs' words unlikely (1: no such test).
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub term_p_value: Option<f64>,
    /// Apply a taught token only in sentences whose source holds a token the pairs show it
    /// goes with (true/false).
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub source_triggers: Option<bool>,
    /// Train the per-token bias correction too (true/false).
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub train_bias: Option<bool>,
    /// Weight of the KL term over the other tokens at learn positions.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub kl_learn_weight: Option<f64>,
    /// Base-model top-k tokens per learn position that join the trainable set.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub top_k: Option<usize>,
    /// Learn the position right after a taught token too (true/false).
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub learn_after_term: Option<bool>,
}

impl FineTuneOptions {
    /// The defaults with whatever `o` sets.
    pub fn with_overrides(o: &FineTuneOverrides) -> Self {
        let d = FineTuneOptions::default();
        FineTuneOptions {
            epochs: o.epochs.unwrap_or(d.epochs),
            min_steps: o.min_steps.unwrap_or(d.min_steps),
            lr: o.lr.unwrap_or(d.lr),
            batch_positions: o.batch_positions.unwrap_or(d.batch_positions),
            label_smoothing: o.label_smoothing.unwrap_or(d.label_smoothing),
            kl_weight: o.kl_weight.unwrap_or(d.kl_weight),
            weight_decay: o.weight_decay.unwrap_or(d.weight_decay),
            rank: o.rank.unwrap_or(d.rank),
            last_layer_rank: o.last_layer_rank.unwrap_or(d.last_layer_rank),
            learn_below: o.learn_below.unwrap_or(d.learn_below),
            min_taught: o.min_taught.unwrap_or(d.min_taught),
            min_taught_share: o.min_taught_share.unwrap_or(d.min_taught_share),
            term_p_value: o.term_p_value.unwrap_or(d.term_p_value),
            source_triggers: o.source_triggers.unwrap_or(d.source_triggers),
            train_bias: o.train_bias.unwrap_or(d.train_bias),
            kl_learn_weight: o.kl_learn_weight.unwrap_or(d.kl_learn_weight),
            top_k: o.top_k.unwrap_or(d.top_k),
            learn_after_term: o.learn_after_term.unwrap_or(d.learn_after_term),
            ..d
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Input(m));
        if self.epochs == 0 || self.epochs > 1000 {
            return bad(format!("epochs must be in 1..=1000, got {}", self.epochs));
        }
        if !(self.lr > 0.0 && self.lr < 1.0) {
            return bad(format!("learning rate must be in (0, 1), got {}", self.lr));
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad(format!(
                "label smoothing must be in [0, 1), got {}",
                self.label_smoothing
            ));
        }
        if self.batch_positions == 0 || self.top_k == 0 || self.rank == 0 || self.rank > 256 {
            return bad("batch size and top-k must be positive, rank in 1..=256".into());
        }
        if self.last_layer_rank > 256 {
            return bad(format!(
                "last_layer_rank must be in 0..=256, got {}",
                self.last_layer_rank
            ));
        }
        if self.last_layer_rank > 0 && self.kl_learn_weight > 0.0 {
            return bad("kl_learn_weight is not available with last_layer_rank".into());
        }
        if !(self.learn_below > 0.0 && self.learn_below <= 1.0) {
            return bad(format!(
                "learn_below must be in (0, 1], got {}",
                self.learn_below
            ));
        }
        if !(0.0..=1.0).contains(&self.min_taught_share) {
            return bad(format!(
                "min_taught_share must be in [0, 1], got {}",
                self.min_taught_share
            ));
        }
        if !(self.term_p_value > 0.0 && self.term_p_value <= 1.0) {
            return bad(format!(
                "term_p_value must be in (0, 1], got {}",
                self.term_p_value
            ));
        }
        if !(self.kl_weight >= 0.0
            && self.kl_learn_weight >= 0.0
            && self.weight_decay >= 0.0
            && self.clip_norm > 0.0)
        {
            return bad("kl weight and weight decay must be >= 0, clip norm > 0".into());
        }
        Ok(())
    }
}

/// What the caller is told while training runs; it answers whether to go on.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    /// "features" (running the frozen model over the pairs) or "train".
    pub phase: &'static str,
    pub epoch: usize,
    pub epochs: usize,
    pub step: usize,
    pub steps: usize,
    pub loss: f64,
    pub eta_seconds: f64,
}

impl Progress {
    /// The features pass, `done` of `total` pairs after `elapsed` seconds (ETA by the rate so
    /// far).
    pub fn features(done: usize, total: usize, epochs: usize, elapsed: f64) -> Progress {
        Progress {
            phase: "features",
            epoch: 0,
            epochs,
            step: done,
            steps: total,
            loss: f64::NAN,
            eta_seconds: elapsed / done.max(1) as f64 * total.saturating_sub(done) as f64,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    Cancel,
}

#[derive(Debug, Clone, Serialize)]
pub struct EpochReport {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_loss: Option<f64>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FineTuneReport {
    pub train_pairs: usize,
    pub val_pairs: usize,
    pub train_positions: usize,
    /// Positions whose target the base model did not predict (they carry cross-entropy).
    pub learn_positions: usize,
    pub trained_tokens: usize,
    pub epochs: Vec<EpochReport>,
    /// The epoch whose correction was kept (0: none improved on the base model).
    pub best_epoch: usize,
    pub stopped_early: bool,
    pub cancelled: bool,
    /// Every roll-back after a non-finite loss, with what was done.
    pub rollbacks: Vec<String>,
    /// From the start of the run (tokenizing) to the features of every pair at hand (wall time).
    pub feature_seconds: f64,
    /// How many shards the features pass was cut into (1: in one piece).
    pub feature_shards: usize,
    /// Where the features pass ran: "gpu" or "cpu".
    pub feature_device: &'static str,
    /// Summed over the workers: dequantizing the frozen model, running its encoder and decoder ...
    pub frozen_model_seconds: f64,
    /// ... and the full-vocabulary logits with their per-position summaries (top-k, normaliser).
    pub vocabulary_seconds: f64,
    pub train_seconds: f64,
}

/// Cached frozen-model features of a set of pairs.
struct Features {
    /// [N, D] decoder hidden states (the output projection's input).
    hidden: Tensor,
    /// [N, K+1] base logits on S, then the log-sum-exp of the logits outside S.
    base_ext: Tensor,
    /// [N] sum of the base logits outside S (for label smoothing).
    rest_sum: Tensor,
    /// [N] index of the target token in S (0 when it is not in S).
    label: Tensor,
    /// [N] 1.0 where the target token is in S.
    label_in_s: Tensor,
    /// [N] the base logit of the target token (fixed when the target is not in S).
    label_logit: Tensor,
    /// [N] 1.0 where the target is something to learn (cross-entropy), 0.0 where it is kept (KL).
    learn: Tensor,
    /// [N, K] 1.0 where S's entry k applies at position i (its condition on the previous token
    /// is met), when some entry is conditioned.
    pub(super) applies: Option<Tensor>,
    /// [K, |S|] one-hot: entry k's column of S, when some token has several entries.
    pub(super) to_set: Option<Tensor>,
    /// With a last-layer adapter: its per-position inputs and base-distribution constants.
    last: Option<LastLayerFeatures>,
    n: usize,
    n_learn: usize,
}

/// Base logits restricted to S plus the exact log-sum-exp of the rest, per position, from the
/// cached hidden states (S's rows of the projection only) and the whole-row summaries.
fn features(
    head: &HeadRows,
    v: usize,
    pos: Positions,
    learn: &[bool],
    pair_groups: &[u32],
    entries: &Entries<'_>,
    tail: Option<&Tail>,
) -> Result<Features> {
    let set = entries.set;
    let labels = &pos.labels;
    let hidden = pos.hidden.clone();
    let n = hidden.dim(0)?;
    let mut ext = Vec::new();
    let mut rest_sum = Vec::with_capacity(n);
    for from in (0..n).step_by(4096) {
        let rows = 4096.min(n - from);
        let on_set = head.logits(&hidden.narrow(0, from, rows)?)?;
        let z = on_set.to_vec2::<f32>()?;
        let mut lse_rest = Vec::with_capacity(rows);
        for (j, zs) in z.iter().enumerate() {
            let i = from + j;
            let m = pos.max[i];
            let in_s: f64 = zs.iter().map(|&x| exp_nonpositive(x - m) as f64).sum();
            // The logits outside S: the whole row's mass minus S's (the same f32 values, so
            // exact up to rounding); floored so rounding cannot make it vanish or go negative.
            // With S the whole vocabulary there is no rest: a finite stand-in for log(0)
            // keeps the KL term free of 0·(-inf).
            lse_rest.push(if set.len() == v {
                -1e4f32
            } else {
                let rest = (pos.exp_sum[i] - in_s).max(pos.exp_sum[i] * 1e-9);
                m + rest.ln() as f32
            });
            rest_sum.push((pos.logit_sum[i] - zs.iter().map(|&x| x as f64).sum::<f64>()) as f32);
        }
        let lse_rest = Tensor::from_vec(lse_rest, (rows, 1), &Device::Cpu)?;
        ext.push(Tensor::cat(&[on_set, lse_rest], 1)?);
    }
    let learn: Vec<f32> = learn.iter().map(|&l| if l { 1.0 } else { 0.0 }).collect();
    // [N, K]: 1 where entry k applies at position i (no condition, or its previous token).
    let k = entries.ids.len();
    let applies = match entries.conditions {
        None => None,
        Some(c) => {
            let pair = terms::pair_of_positions(&pos);
            let mut m = vec![0f32; n * k];
            for (i, row) in m.chunks_exact_mut(k).enumerate() {
                // A pair's first step reads the decoder start token, which no entry names.
                let prev = pos.prev[i].unwrap_or(NOT_CONDITIONED - 1);
                let groups = pair_groups.get(pair[i]).copied().unwrap_or(0);
                for (j, x) in row.iter_mut().enumerate() {
                    if c.applies(j, prev, groups) {
                        *x = 1.0;
                    }
                }
            }
            Some(Tensor::from_vec(m, (n, k), &Device::Cpu)?)
        }
    };
    // [K, |S|]: entry j adds to its token's column, when a token has several entries.
    let to_set = if k == set.len() {
        None
    } else {
        let mut m = vec![0f32; k * set.len()];
        for (j, id) in entries.ids.iter().enumerate() {
            let col = set.binary_search(id).expect("every entry's id is in S");
            m[j * set.len() + col] = 1.0;
        }
        Some(Tensor::from_vec(m, (k, set.len()), &Device::Cpu)?)
    };
    // A target outside S keeps its base logit: its cross-entropy still moves S (through the
    // normaliser), exactly.
    let label: Vec<u32> = labels
        .iter()
        .map(|y| set.binary_search(y).unwrap_or(0) as u32)
        .collect();
    let label_in_s: Vec<f32> = labels
        .iter()
        .map(|y| {
            if set.binary_search(y).is_ok() {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    let label = Tensor::from_vec(label, n, &Device::Cpu)?;
    let label_in_s = Tensor::from_vec(label_in_s, n, &Device::Cpu)?;
    let label_logit = Tensor::from_vec(pos.y_logit.clone(), n, &Device::Cpu)?;
    let base_ext = if ext.is_empty() {
        Tensor::zeros((0, set.len() + 1), DType::F32, &Device::Cpu)?
    } else {
        Tensor::cat(&ext, 0)?
    };
    let n_learn = learn.iter().filter(|&&x| x > 0.0).count();
    Ok(Features {
        hidden,
        base_ext,
        rest_sum: Tensor::from_vec(rest_sum, n, &Device::Cpu)?,
        label,
        label_in_s,
        label_logit,
        learn: Tensor::from_vec(learn, n, &Device::Cpu)?,
        applies,
        to_set,
        last: match tail {
            Some(tail) => Some(LastLayerFeatures::of(tail, &pos)?),
            None => None,
        },
        n,
        n_learn,
    })
}

/// The head correction's entries: each a token (`ids`, sorted, a token possibly more than
/// once) with its conditions (`None`: none); `set` is S, the distinct tokens.
struct Entries<'a> {
    ids: &'a [u32],
    set: &'a [u32],
    conditions: Option<&'a EntryConditions>,
}

impl Features {
    /// Per-entry corrections [B, K] at the positions `idx` → per-token corrections on S [B, |S|]:
    /// zero where an entry's condition is not met, a token's entries summed.
    pub(super) fn on_set(&self, delta: Tensor, idx: &Tensor) -> Result<Tensor> {
        let delta = match &self.applies {
            Some(m) => (delta * m.index_select(idx, 0)?)?,
            None => delta,
        };
        Ok(match &self.to_set {
            Some(m) => delta.matmul(m)?,
            None => delta,
        })
    }
}

/// The trainable correction: ΔW = U·Vᵀ on S (U [K, r] starts at zero, so training starts from
/// the base model exactly; V [D, r] starts random, as in LoRA), Δb on S.
struct Head {
    u: Var,
    v: Var,
    db: Var,
    /// The optional last-layer adapter.
    last: Option<LastLayer>,
}

/// Mean cross-entropy over the learn positions + `kl_weight` × mean KL over the others.
pub(super) fn combine(ce: &Tensor, kl: &Tensor, learn: &Tensor, kl_weight: f64) -> Result<Tensor> {
    let keep = (1.0 - learn)?;
    let n_learn = learn.sum_all()?.to_scalar::<f32>()?.max(1.0) as f64;
    let n_keep = keep.sum_all()?.to_scalar::<f32>()?.max(1.0) as f64;
    let ce_term = ((ce * learn)?.sum_all()? / n_learn)?;
    let kl_term = ((kl * &keep)?.sum_all()? / n_keep)?;
    Ok((ce_term + (kl_term * kl_weight)?)?)
}

impl Head {
    /// The loss over all positions of `f`, without gradients, in blocks (the last-layer path
    /// holds a vocabulary-wide block per position).
    fn loss_value(&self, f: &Features, o: &FineTuneOptions, vocab: usize) -> Result<f64> {
        let Some(last) = &self.last else {
            let idx = Tensor::arange(0u32, f.n as u32, &Device::Cpu)?;
            return Ok(self.loss(f, &idx, o, vocab)?.to_scalar::<f32>()? as f64);
        };
        let x = f.last.as_ref().expect("last-layer features");
        let (mut ce, mut kl) = (Vec::new(), Vec::new());
        for from in (0..f.n).step_by(last_layer::ROWS) {
            let to = (from + last_layer::ROWS).min(f.n);
            let idx = Tensor::arange(from as u32, to as u32, &Device::Cpu)?;
            let (c, k) = last.per_position(&self.params(), f, x, &idx, o, vocab)?;
            ce.push(c.detach());
            kl.push(k.detach());
        }
        if ce.is_empty() {
            return Ok(0.0);
        }
        let loss = combine(
            &Tensor::cat(&ce, 0)?,
            &Tensor::cat(&kl, 0)?,
            &f.learn,
            o.kl_weight,
        )?;
        Ok(loss.to_scalar::<f32>()? as f64)
    }

    fn params(&self) -> HeadParams<'_> {
        HeadParams {
            u: &self.u,
            v: &self.v,
            db: &self.db,
        }
    }

    /// Loss over the positions `idx` of `f` (mean CE over learn positions + kl_weight × mean
    /// KL over the others).
    fn loss(
        &self,
        f: &Features,
        idx: &Tensor,
        o: &FineTuneOptions,
        vocab: usize,
    ) -> Result<Tensor> {
        if let (Some(last), Some(x)) = (&self.last, &f.last) {
            let (ce, kl) = last.per_position(&self.params(), f, x, idx, o, vocab)?;
            return combine(&ce, &kl, &f.learn.index_select(idx, 0)?, o.kl_weight);
        }
        let h = f.hidden.index_select(idx, 0)?;
        let base = f.base_ext.index_select(idx, 0)?;
        let label = f.label.index_select(idx, 0)?;
        let learn = f.learn.index_select(idx, 0)?;
        let n = h.dim(0)?;
        let delta = h
            .matmul(self.v.as_tensor())?
            .matmul(&self.u.as_tensor().t()?)?
            .broadcast_add(self.db.as_tensor())?;
        let delta = f.on_set(delta, idx)?;
        let delta = Tensor::cat(
            &[delta, Tensor::zeros((n, 1), DType::F32, &Device::Cpu)?],
            1,
        )?;
        let z = (&base + delta)?;
        let logp = candle_nn::ops::log_softmax(&z, D::Minus1)?;
        // log p(target) = z_target − LSE(z); z_target is the fixed base logit outside S.
        let in_s = f.label_in_s.index_select(idx, 0)?;
        let z_y = z.gather(&label.unsqueeze(1)?, 1)?.squeeze(1)?;
        let z_y = ((&z_y * &in_s)? + (f.label_logit.index_select(idx, 0)? * (1.0 - &in_s)?)?)?;
        let mut ce = (z.log_sum_exp(1)? - z_y)?;
        if o.label_smoothing > 0.0 {
            // mean log-prob over the whole vocabulary, exactly: S part + the rest.
            let k = z.dim(1)? - 1;
            let lse_new = (z.narrow(1, k, 1)?.squeeze(1)? - logp.narrow(1, k, 1)?.squeeze(1)?)?;
            let rest_sum = f.rest_sum.index_select(idx, 0)?;
            let rest_logp = (rest_sum - (lse_new * (vocab - k) as f64)?)?;
            let all_logp = (logp.narrow(1, 0, k)?.sum(1)? + rest_logp)?;
            let eps = o.label_smoothing;
            ce = ((ce * (1.0 - eps))? - (all_logp * (eps / vocab as f64))?)?;
        }
        let q = candle_nn::ops::softmax(&base, D::Minus1)?;
        let logq = candle_nn::ops::log_softmax(&base, D::Minus1)?;
        let kl = (q * (logq - &logp)?)?.sum(1)?;
        let keep = (1.0 - &learn)?;
        if o.kl_learn_weight > 0.0 {
            // KL over every token but the label: the taught token may rise, the others keep
            // their relative order and spacing.
            let k1 = z.dim(1)?;
            let labels = label.to_vec1::<u32>()?;
            let mut m = vec![0f32; n * k1];
            let in_s = in_s.to_vec1::<f32>()?;
            for (i, &y) in labels.iter().enumerate() {
                if in_s[i] > 0.0 {
                    m[i * k1 + y as usize] = -1e9;
                }
            }
            let m = Tensor::from_vec(m, (n, k1), &Device::Cpu)?;
            let zb = (&base + &m)?;
            let zt = (&z + &m)?;
            let q2 = candle_nn::ops::softmax(&zb, D::Minus1)?;
            let kl2 = (q2
                * (candle_nn::ops::log_softmax(&zb, D::Minus1)?
                    - candle_nn::ops::log_softmax(&zt, D::Minus1)?)?)?
            .sum(1)?;
            let n_learn = learn.sum_all()?.to_scalar::<f32>()?.max(1.0) as f64;
            let extra = (((kl2 * &learn)?.sum_all()? / n_learn)? * o.kl_learn_weight)?;
            let n_keep = keep.sum_all()?.to_scalar::<f32>()?.max(1.0) as f64;
            let ce_term = ((ce * &learn)?.sum_all()? / n_learn)?;
            let kl_term = ((kl * &keep)?.sum_all()? / n_keep)?;
            return Ok(((ce_term + (kl_term * o.kl_weight)?)? + extra)?);
        }
        combine(&ce, &kl, &learn, o.kl_weight)
    }

    fn vars(&self) -> Vec<&Var> {
        let mut vars = vec![&self.u, &self.v, &self.db];
        if let Some(last) = &self.last {
            vars.extend([&last.a, &last.b]);
        }
        vars
    }

    fn snapshot(&self) -> Result<Vec<Tensor>> {
        self.vars()
            .iter()
            .map(|v| Ok(v.as_tensor().copy()?))
            .collect()
    }

    fn restore(&self, s: &[Tensor]) -> Result<()> {
        for (v, t) in self.vars().iter().zip(s) {
            v.set(t)?;
        }
        Ok(())
    }
}

fn finite(t: &Tensor) -> Result<bool> {
    Ok(t.flatten_all()?
        .to_vec1::<f32>()?
        .iter()
        .all(|x| x.is_finite()))
}

/// A small deterministic generator for shuffling (SplitMix64).
struct Shuffle(u64);
impl Shuffle {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn permutation(&mut self, n: usize) -> Vec<u32> {
        let mut v: Vec<u32> = (0..n as u32).collect();
        for i in (1..n).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
        v
    }
}

/// Each pair's source ids (after the translator's target-language token on a multi-target
/// model, as translation puts it: `Translator::language_prefix`) and target ids.
fn encode_pairs(t: &Translator, pairs: &[Pair]) -> Result<Vec<(Vec<u32>, Vec<u32>)>> {
    let limit = t.model.config.max_position_embeddings;
    let sources: Vec<&str> = pairs.iter().map(|p| p.source.as_str()).collect();
    let language = t.language_prefix(None, &sources)?;
    pairs
        .iter()
        .map(|p| {
            // A source with its own code keeps it (as translation does).
            let own = crate::tokenizer::starts_with_language_code(&p.source);
            let s = t
                .tokenizer
                .encode_after(language.as_deref().filter(|_| !own), &p.source)?;
            let y = t.tokenizer.encode_target(&p.target)?;
            if s.len() > limit || y.len() > limit {
                return Err(Error::Input(format!(
                    "pair on line {}: {} source / {} target tokens, the model takes at most {limit}",
                    p.line,
                    s.len(),
                    y.len()
                )));
            }
            Ok((s, y))
        })
        .collect()
}

/// A run's pairs, checked and tokenized: the training pairs, then the validation pairs. The
/// features pass runs over them in one piece or in shards (`shard_ranges`), on one worker or
/// several; `train_adapter` takes the shards back.
pub struct PreparedPairs {
    ids: Vec<(Vec<u32>, Vec<u32>)>,
    n_train: usize,
    started: Instant,
}

impl PreparedPairs {
    /// Pairs in all (training and validation).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Source and target token ids of the pairs `which` (a shard of `shard_plan`), in that order.
    pub fn pairs_of(&self, which: &[usize]) -> Vec<(Vec<u32>, Vec<u32>)> {
        which.iter().map(|&i| self.ids[i].clone()).collect()
    }

    /// The pairs `which` (a shard of `shard_plan`) as one flat array for another worker's
    /// features pass: [pairs, then per pair: source length, source ids, target length, target
    /// ids]; `decode_shard_inputs` reads it back.
    pub fn shard_inputs(&self, which: &[usize]) -> Vec<u32> {
        encode_shard_inputs(&self.pairs_of(which))
    }

    /// The features pass cut into at most `n` shards of about equal work, each a list of pair
    /// indices: whole batches of the pass in one piece (pairs sorted by target length), so a
    /// shard batches its pairs exactly as the pass in one piece would. A target token costs
    /// about three source tokens (decoder layers with cross-attention, then the 59514-wide
    /// projection, against the encoder's layers).
    pub fn shard_plan(&self, n: usize) -> Vec<Vec<usize>> {
        let batches = positions::length_batches(
            self.ids.len(),
            positions::TOKENS_PER_BATCH,
            usize::MAX,
            |i| self.ids[i].1.len(),
        );
        let cost = |b: &Vec<usize>| -> f64 {
            b.iter()
                .map(|&i| (self.ids[i].0.len() + 3 * self.ids[i].1.len()) as f64)
                .sum()
        };
        let total: f64 = batches.iter().map(cost).sum();
        let n = n.clamp(1, batches.len().max(1));
        let mut plan: Vec<Vec<usize>> = vec![Vec::new()];
        let mut acc = 0.0;
        let last = batches.len().saturating_sub(1);
        for (j, b) in batches.iter().enumerate() {
            acc += cost(b);
            plan.last_mut().expect("one shard at least").extend(b);
            if acc >= total * plan.len() as f64 / n as f64 && plan.len() < n && j < last {
                plan.push(Vec::new());
            }
        }
        plan
    }

    /// The plan of the pass in one piece: every pair, in order.
    pub fn whole(&self) -> Vec<Vec<usize>> {
        vec![(0..self.ids.len()).collect()]
    }
}

/// The start of a run: check the options, tokenize the pairs (a pair longer than the model
/// takes is an error naming its line).
pub fn prepare(
    t: &Translator,
    train: &[Pair],
    val: &[Pair],
    o: &FineTuneOptions,
) -> Result<PreparedPairs> {
    o.validate()?;
    let vocab = t.model.target_vocab_size();
    if o.top_k > vocab {
        // Every position keeps exactly top_k candidates.
        return Err(Error::Input(format!(
            "top-k {} exceeds the target vocabulary ({vocab})",
            o.top_k
        )));
    }
    if train.is_empty() {
        return Err(Error::Input("no training pairs".into()));
    }
    let started = Instant::now();
    let mut ids = encode_pairs(t, train)?;
    ids.extend(encode_pairs(t, val)?);
    Ok(PreparedPairs {
        ids,
        n_train: train.len(),
        started,
    })
}

/// Train an adapter on `train` (selecting on `val` when given), the features pass on this
/// thread. `on_progress` is called after every step (and during feature extraction) and may
/// cancel; a cancelled run returns the best correction so far (or an error when there is none).
pub fn fine_tune(
    t: &Translator,
    train: &[Pair],
    val: &[Pair],
    o: &FineTuneOptions,
    on_progress: &mut dyn FnMut(&Progress) -> Control,
) -> Result<(Adapter, FineTuneReport)> {
    let prepared = prepare(t, train, val, o)?;
    let total = prepared.len();
    let t0 = Instant::now();
    let mut on_pair = |done: usize| {
        on_progress(&Progress::features(
            done,
            total,
            o.epochs,
            t0.elapsed().as_secs_f64(),
        ))
    };
    let plan = prepared.whole();
    let pairs = prepared.pairs_of(&plan[0]);
    let shard = crate::generate::ready(FeatureShard::compute_on_device(
        t,
        &pairs,
        o.top_k,
        &mut on_pair,
    ))?;
    let Some(shard) = shard else {
        return Err(Error::Input("fine-tuning cancelled".into()));
    };
    train_adapter(t, &prepared, &plan, vec![shard], o, on_progress)
}

/// Join the shards of `plan` (one per entry, in order) into pair order after checking that
/// they are this run's: same model, top-k and width, and exactly its pairs' targets.
fn join_shards(
    t: &Translator,
    prepared: &PreparedPairs,
    plan: &[Vec<usize>],
    shards: Vec<FeatureShard>,
    o: &FineTuneOptions,
) -> Result<(Positions, FeatureClock)> {
    let vocab = t.model.target_vocab_size() as u32;
    let d = t.model.config.d_model;
    let mut clock = FeatureClock::default();
    if shards.len() != plan.len() {
        return Err(Error::Input(format!(
            "{} feature shards for a plan of {}",
            shards.len(),
            plan.len()
        )));
    }
    for (i, s) in shards.iter().enumerate() {
        let why = if s.pairs != plan[i].len() {
            Some(format!(
                "it covers {} pairs, the plan {}",
                s.pairs,
                plan[i].len()
            ))
        } else if s.model_sha256 != t.model_sha256 {
            Some("it was computed by another model".to_string())
        } else if s.top_k != o.top_k {
            Some(format!("its top-k is {}, the run's {}", s.top_k, o.top_k))
        } else if s.positions.hidden.dim(1)? != d {
            Some(format!("its hidden states are not {d} wide"))
        } else if s.positions.top.iter().any(|&x| x >= vocab) {
            Some("it names tokens outside the vocabulary".to_string())
        } else {
            None
        };
        if let Some(why) = why {
            return Err(Error::Input(format!(
                "feature shard {i} does not fit this run: {why}"
            )));
        }
        clock.model += s.clock.model;
        clock.vocabulary += s.clock.vocabulary;
    }
    // Row of each pair's first position in the shards joined as they come.
    let mut first_row = vec![usize::MAX; prepared.len()];
    let mut row = 0;
    for &i in plan.iter().flatten() {
        if i >= prepared.len() || first_row[i] != usize::MAX {
            return Err(Error::Input(
                "the shard plan names a pair twice or one beyond the run".into(),
            ));
        }
        first_row[i] = row;
        row += prepared.ids[i].1.len();
    }
    let joined = Positions::concat(shards.into_iter().map(|s| s.positions).collect())?;
    if first_row.contains(&usize::MAX) || joined.len() != row {
        return Err(Error::Input(format!(
            "the feature shards cover {} positions, not this run's {row} positions of {} pairs",
            joined.len(),
            prepared.len()
        )));
    }
    let rows: Vec<u32> = prepared
        .ids
        .iter()
        .zip(&first_row)
        .flat_map(|(p, &r)| (r..r + p.1.len()).map(|x| x as u32))
        .collect();
    let positions = joined.gather(&rows)?;
    let targets = prepared.ids.iter().flat_map(|p| p.1.iter().copied());
    if !positions.labels.iter().copied().eq(targets) {
        return Err(Error::Input(
            "the feature shards are not this run's pairs in the plan's order".into(),
        ));
    }
    Ok((positions, clock))
}

/// The training part of a run, on features computed by `FeatureShard::compute` over the
/// pairs of each entry of `plan` (`prepared.whole()`, or `prepared.shard_plan(n)`), in order.
pub fn train_adapter(
    t: &Translator,
    prepared: &PreparedPairs,
    plan: &[Vec<usize>],
    shards: Vec<FeatureShard>,
    o: &FineTuneOptions,
    on_progress: &mut dyn FnMut(&Progress) -> Control,
) -> Result<(Adapter, FineTuneReport)> {
    let vocab = t.model.target_vocab_size();
    let feature_shards = shards.len();
    let feature_device = if shards.iter().any(FeatureShard::on_gpu) {
        "gpu"
    } else {
        "cpu"
    };
    let (positions, clock) = join_shards(t, prepared, plan, shards, o)?;
    let train_positions: usize = prepared.ids[..prepared.n_train]
        .iter()
        .map(|p| p.1.len())
        .sum();
    let (p_train, p_val) = positions.split_at(train_positions)?;
    let mut cancelled = false;
    // S: the entries of the head correction — the taught words' pieces and what the base model
    // would have said in their place, each later piece conditioned on its predecessor
    // (`terms`). Every other row of the output projection stays as it is.
    let special = [t.tokenizer.eos_id(), t.model.config.pad_token_id];
    let sources: Vec<&[u32]> = prepared.ids.iter().map(|p| p.0.as_slice()).collect();
    let (train_sources, val_sources) = sources.split_at(prepared.n_train);
    let source_skip = [
        t.tokenizer.eos_id(),
        t.tokenizer.unk_id(),
        t.model.config.pad_token_id,
    ];
    let teaching = terms::choose(
        o,
        (&p_train, &p_val),
        train_sources,
        &t.tokenizer.target_continues_word(),
        &special,
        &source_skip,
    );
    if std::env::var_os("MARIAN_FT_DEBUG").is_some() {
        eprintln!("DBG unlikely rate {:.3}", teaching.unlikely_rate);
        for w in &teaching.taught {
            eprintln!(
                "DBG taught {:?} after {:?} {}/{} group {}",
                t.tokenizer.decode(&[w.token]),
                if w.after == NOT_CONDITIONED {
                    "-".to_string()
                } else {
                    t.tokenizer.decode(&[w.after])
                },
                w.unlikely,
                w.occurrences,
                w.group
            );
        }
        eprintln!(
            "DBG entries {} conditioned {}",
            teaching.entries.len(),
            teaching
                .entries
                .iter()
                .filter(|e| e.1 != NOT_CONDITIONED)
                .count()
        );
        for g in &teaching.triggers {
            let names: Vec<String> = g
                .iter()
                .map(|&x| t.tokenizer.source_piece(x).unwrap_or("?").to_string())
                .collect();
            eprintln!("DBG trigger group {names:?}");
        }
    }
    if teaching.entries.is_empty() {
        return Err(Error::Input(
            "nothing to learn: no word of these pairs' targets is both unlikely to the model (below learn_below) and wanted consistently (min_taught, min_taught_share, term_p_value)".into(),
        ));
    }
    let entry_ids: Vec<u32> = teaching.entries.iter().map(|e| e.0).collect();
    let conditions = teaching
        .entries
        .iter()
        .any(|e| e.1 != NOT_CONDITIONED || e.2 != NOT_CONDITIONED)
        .then(|| EntryConditions {
            after: teaching.entries.iter().map(|e| e.1).collect(),
            group: teaching.entries.iter().map(|e| e.2).collect(),
            triggers: teaching.triggers.clone(),
        });
    let pair_groups = |sources: &[&[u32]]| -> Vec<u32> {
        sources
            .iter()
            .map(|s| conditions.as_ref().map_or(0, |c| c.source_groups(s)))
            .collect()
    };
    let (train_groups, val_groups) = (pair_groups(train_sources), pair_groups(val_sources));
    let mut set = entry_ids.clone();
    set.dedup();
    let has_val = !p_val.labels.is_empty();
    // S's rows of the projection in f32, as the features pass used them.
    let head_rows = t.model.head_rows(&set)?.dequantized()?;
    let tail = if o.last_layer_rank > 0 {
        Some(Tail::new(t.model.frozen_tail()?, &set)?)
    } else {
        None
    };
    let entries = Entries {
        ids: &entry_ids,
        set: &set,
        conditions: conditions.as_ref(),
    };
    let f_train = features(
        &head_rows,
        vocab,
        p_train,
        &teaching.learn_train,
        &train_groups,
        &entries,
        tail.as_ref(),
    )?;
    let f_val = if has_val {
        Some(features(
            &head_rows,
            vocab,
            p_val,
            &teaching.learn_val,
            &val_groups,
            &entries,
            tail.as_ref(),
        )?)
    } else {
        None
    };
    let feature_seconds = prepared.started.elapsed().as_secs_f64();

    let d = t.model.config.d_model;
    let k = entry_ids.len();
    let r = o.rank.min(d).min(k);
    let ffn = t.model.config.decoder_ffn_dim;
    let r_last = o.last_layer_rank.min(d).min(ffn);
    let last = match tail {
        None => None,
        // B at zero (the base model exactly), A random, as in LoRA.
        Some(tail) => Some(LastLayer {
            a: Var::from_tensor(&seeded_normal(
                o.seed ^ 0xA11,
                (r_last, ffn),
                1.0 / (ffn as f64).sqrt(),
            )?)?,
            b: Var::zeros((d, r_last), DType::F32, &Device::Cpu)?,
            tail,
        }),
    };
    let head = Head {
        u: Var::zeros((k, r), DType::F32, &Device::Cpu)?,
        v: Var::from_tensor(&seeded_normal(o.seed, (d, r), 1.0 / (d as f64).sqrt())?)?,
        db: Var::zeros(k, DType::F32, &Device::Cpu)?,
        last,
    };
    let trained: Vec<Var> = head
        .vars()
        .into_iter()
        .filter(|v| o.train_bias || !std::ptr::eq(*v, &head.db))
        .cloned()
        .collect();
    let mut opt = AdamW::new(
        trained.clone(),
        ParamsAdamW {
            lr: o.lr,
            weight_decay: o.weight_decay,
            ..Default::default()
        },
    )?;
    let steps_per_epoch = f_train.n.div_ceil(o.batch_positions);
    // Few pairs make few steps an epoch: enough epochs for `min_steps` (50 pairs: 16 epochs).
    let n_epochs = o.epochs.max(o.min_steps.div_ceil(steps_per_epoch.max(1)));
    let total_steps = steps_per_epoch * n_epochs;
    let warmup = ((total_steps as f64 * o.warmup_fraction).ceil() as usize).max(1);
    let lr_at = |step: usize| {
        if step < warmup {
            o.lr * (step + 1) as f64 / warmup as f64
        } else {
            o.lr * (total_steps - step) as f64 / (total_steps - warmup).max(1) as f64
        }
    };
    let val_loss = |head: &Head| -> Result<Option<f64>> {
        let Some(f) = &f_val else { return Ok(None) };
        Ok(Some(head.loss_value(f, o, vocab)?))
    };
    let mut best = (
        val_loss(&head)?.unwrap_or(f64::INFINITY),
        0usize,
        head.snapshot()?,
    );
    let mut shuffle = Shuffle(o.seed);
    let mut epochs = Vec::new();
    let mut rollbacks = Vec::new();
    let mut lr_scale = 1.0;
    let mut stale = 0;
    let mut stopped_early = false;
    let mut step = 0;
    let t_train = Instant::now();
    'epochs: for epoch in 1..=n_epochs {
        let te = Instant::now();
        let good = head.snapshot()?;
        let order = shuffle.permutation(f_train.n);
        let mut sum = 0.0;
        let mut count = 0;
        for batch in order.chunks(o.batch_positions) {
            let idx = Tensor::new(batch, &Device::Cpu)?;
            let loss = head.loss(&f_train, &idx, o, vocab)?;
            let lv = loss.to_scalar::<f32>()? as f64;
            let mut grads = loss.backward()?;
            let mut norm2 = 0.0;
            for v in &trained {
                if let Some(g) = grads.get(v.as_tensor()) {
                    norm2 += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
                }
            }
            if !lv.is_finite() || !norm2.is_finite() {
                head.restore(&good)?;
                lr_scale *= 0.5;
                rollbacks.push(format!(
                    "epoch {epoch} step {step}: non-finite loss or gradient; rolled back to the start of the epoch, learning rate halved"
                ));
                if rollbacks.len() >= 3 {
                    stopped_early = true;
                    break 'epochs;
                }
                continue 'epochs;
            }
            let norm = norm2.sqrt();
            if norm > o.clip_norm {
                let scale = o.clip_norm / norm;
                for v in head.vars() {
                    if let Some(g) = grads.remove(v.as_tensor()) {
                        grads.insert(v.as_tensor(), (g * scale)?);
                    }
                }
            }
            opt.set_learning_rate(lr_at(step.min(total_steps - 1)) * lr_scale);
            opt.step(&grads)?;
            step += 1;
            sum += lv * batch.len() as f64;
            count += batch.len();
            let per_step = t_train.elapsed().as_secs_f64() / step as f64;
            let c = on_progress(&Progress {
                phase: "train",
                epoch,
                epochs: n_epochs,
                step,
                steps: total_steps,
                loss: lv,
                eta_seconds: per_step * (total_steps.saturating_sub(step)) as f64,
            });
            if c == Control::Cancel {
                cancelled = true;
                break 'epochs;
            }
        }
        if !head
            .vars()
            .iter()
            .all(|v| finite(v.as_tensor()).unwrap_or(false))
        {
            head.restore(&good)?;
            lr_scale *= 0.5;
            rollbacks.push(format!(
                "epoch {epoch}: parameters became non-finite; rolled back, learning rate halved"
            ));
            continue;
        }
        let vl = val_loss(&head)?;
        epochs.push(EpochReport {
            epoch,
            train_loss: sum / count.max(1) as f64,
            val_loss: vl,
            seconds: te.elapsed().as_secs_f64(),
        });
        let score = vl.unwrap_or(-(epoch as f64)); // no validation: keep the last epoch
        if score < best.0 {
            best = (score, epoch, head.snapshot()?);
            stale = 0;
        } else {
            stale += 1;
            if vl.is_some() && stale >= o.patience {
                stopped_early = epoch < n_epochs;
                break;
            }
        }
    }
    if best.1 == 0 && f_val.is_none() {
        best = (f64::NAN, 0, head.snapshot()?);
    }
    let (u, v, db) = (&best.2[0], &best.2[1], &best.2[2]);
    let last_layer = match &best.2[3..] {
        [a, b] => Some(LastLayerAdapter {
            rank: r_last,
            a: a.flatten_all()?.to_vec1::<f32>()?,
            b: b.flatten_all()?.to_vec1::<f32>()?,
        }),
        _ => None,
    };
    let report = FineTuneReport {
        train_pairs: prepared.n_train,
        val_pairs: prepared.len() - prepared.n_train,
        train_positions: f_train.n,
        learn_positions: f_train.n_learn,
        trained_tokens: k,
        epochs,
        best_epoch: best.1,
        stopped_early,
        cancelled,
        rollbacks,
        feature_seconds,
        feature_shards,
        feature_device,
        frozen_model_seconds: clock.model,
        vocabulary_seconds: clock.vocabulary,
        train_seconds: t_train.elapsed().as_secs_f64(),
    };
    let adapter = Adapter {
        manifest: AdapterManifest {
            format: ADAPTER_FORMAT.into(),
            format_version: ADAPTER_FORMAT_VERSION,
            base_model_sha256: t.model_sha256.clone(),
            d_model: d,
            target_vocab_size: vocab,
            decoder_ffn_dim: ffn,
            trained: if last_layer.is_some() {
                format!(
                    "rank-{r} correction of the output projection and a final_logits_bias correction on {k} target tokens, and a rank-{r_last} adapter on the last decoder layer's fc2 (encoder, the other decoder weights and shared embeddings frozen)"
                )
            } else {
                format!(
                    "rank-{r} correction of the output projection and a final_logits_bias correction on {k} target tokens (decoder head; encoder, decoder and shared embeddings frozen)"
                )
            },
            hyperparameters: serde_json::to_value(o).expect("options serialize"),
            metrics: serde_json::to_value(&report).expect("report serializes"),
            created_by: format!("marian-wasm {}", env!("CARGO_PKG_VERSION")),
        },
        ids: entry_ids,
        rank: r,
        lora_b: u.flatten_all()?.to_vec1::<f32>()?,
        lora_a: v.t()?.flatten_all()?.to_vec1::<f32>()?,
        delta_bias: db.to_vec1::<f32>()?,
        conditions,
        last_layer,
    };
    Ok((adapter, report))
}

/// Normal(0, std) values from a seed (Box-Muller over SplitMix64): reproducible runs.
pub(super) fn seeded_normal(seed: u64, shape: (usize, usize), std: f64) -> Result<Tensor> {
    let mut g = Shuffle(seed ^ 0x5EED);
    let n = shape.0 * shape.1;
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let u1 = ((g.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let u2 = ((g.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let r = (-2.0 * u1.ln()).sqrt() * std;
        let a = 2.0 * std::f64::consts::PI * u2;
        out.push((r * a.cos()) as f32);
        out.push((r * a.sin()) as f32);
    }
    out.truncate(n);
    Ok(Tensor::from_vec(out, shape, &Device::Cpu)?)
}

/// BLEU and chrF (sacreBLEU defaults) of the pairs' sources translated as the translator stands
/// (with or without an adapter) against their targets: the before/after figures of a run.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct HeldOutScores {
    pub bleu: f64,
    pub chrf: f64,
}

pub fn held_out_scores(
    t: &Translator,
    pairs: &[Pair],
    opts: &crate::GenerateOptions,
) -> Result<HeldOutScores> {
    let pairs: Vec<&Pair> = pairs.iter().collect();
    scores_of(&pairs, &translations(t, &pairs, opts)?)
}

/// The pairs' sources translated as the translator stands.
fn translations(
    t: &Translator,
    pairs: &[&Pair],
    opts: &crate::GenerateOptions,
) -> Result<Vec<String>> {
    let src: Vec<&str> = pairs.iter().map(|p| p.source.as_str()).collect();
    Ok(t.translate(&src, opts, 16)?
        .into_iter()
        .map(|x| x.text)
        .collect())
}

fn scores_of(pairs: &[&Pair], hyps: &[String]) -> Result<HeldOutScores> {
    let refs: Vec<&str> = pairs.iter().map(|p| p.target.as_str()).collect();
    Ok(HeldOutScores {
        bleu: crate::metrics::corpus_bleu(hyps, &refs)?.score,
        chrf: crate::metrics::corpus_chrf(hyps, &refs)?.score,
    })
}

/// What a whole fine-tuning run gives (`run`).
pub struct FineTuneRun {
    /// The adapter, on the translator; its manifest's metrics hold `val_before` / `val_after`
    /// and `unrelated_changed`.
    pub adapter: Adapter,
    pub report: FineTuneReport,
    /// Held-out scores without an adapter and with this one (`None` without held-out pairs).
    pub val_before: Option<HeldOutScores>,
    pub val_after: Option<HeldOutScores>,
    /// The keep measure: the user's sentences the adapter does not touch (held-out first, then
    /// training pairs), and how many of them translate differently with it (`keep`).
    pub unrelated_changed: keep::KeepMeasure,
}

/// A whole fine-tuning run as every front end does it (the CLI's `finetune`, the browser's
/// `fineTuneRun`): the held-out pairs `val` translated as the translator stands without an
/// adapter, `train` (the features pass and training, or training on shards computed
/// elsewhere), up to `keep::KEEP_SAMPLE` of the pairs (`val`, then `train_pairs`) that the
/// adapter does not touch translated without it, the adapter put on, both sets translated
/// again with `gen`'s settings; the held-out scores and the keep measure recorded in the
/// adapter's manifest metrics. Errors: `train`'s, translation's, or an adapter the translator
/// refuses.
pub fn run(
    t: &mut Translator,
    train_pairs: &[Pair],
    val: &[Pair],
    gen: &crate::GenerateOptions,
    train: impl FnOnce(&Translator) -> Result<(Adapter, FineTuneReport)>,
) -> Result<FineTuneRun> {
    let val: Vec<&Pair> = val.iter().collect();
    t.set_adapter(None)?;
    let val_hyps_before = translations(t, &val, gen)?;
    let (mut adapter, report) = train(t)?;
    // The keep sample: held-out pairs reuse their translations from before training.
    let candidates: Vec<&Pair> = val.iter().copied().chain(train_pairs).collect();
    let sample = keep::unrelated(t, &adapter, &candidates)?;
    let extra: Vec<&Pair> = sample
        .iter()
        .filter(|&&i| i >= val.len())
        .map(|&i| candidates[i])
        .collect();
    let extra_before = translations(t, &extra, gen)?;
    t.set_adapter(Some(&adapter))?;
    let both: Vec<&Pair> = val.iter().chain(&extra).copied().collect();
    let after = translations(t, &both, gen)?;
    let before: Vec<&String> = val_hyps_before.iter().chain(&extra_before).collect();
    // Sampled held-out pair i sits at i in `before`/`after`; the training pairs follow in order.
    let mut next_extra = val.len();
    let changed = sample
        .iter()
        .filter(|&&i| {
            let k = if i < val.len() {
                i
            } else {
                next_extra += 1;
                next_extra - 1
            };
            *before[k] != after[k]
        })
        .count();
    let unrelated_changed = keep::KeepMeasure {
        sentences: sample.len(),
        changed,
    };
    let (val_before, val_after) = if val.is_empty() {
        (None, None)
    } else {
        (
            Some(scores_of(&val, &val_hyps_before)?),
            Some(scores_of(&val, &after[..val.len()])?),
        )
    };
    if let serde_json::Value::Object(m) = &mut adapter.manifest.metrics {
        // Plain structs of numbers: serializing them cannot fail.
        let json = |s: Option<HeldOutScores>| serde_json::to_value(s).unwrap_or_default();
        m.insert("val_before".into(), json(val_before));
        m.insert("val_after".into(), json(val_after));
        m.insert(
            "unrelated_changed".into(),
            serde_json::to_value(unrelated_changed).unwrap_or_default(),
        );
    }
    Ok(FineTuneRun {
        adapter,
        report,
        val_before,
        val_after,
        unrelated_changed,
    })
}

/// `PreparedPairs::shard_inputs`' encoding of source and target token ids.
fn encode_shard_inputs(pairs: &[(Vec<u32>, Vec<u32>)]) -> Vec<u32> {
    let mut flat = vec![pairs.len() as u32];
    for (s, t) in pairs {
        flat.push(s.len() as u32);
        flat.extend(s.iter().copied());
        flat.push(t.len() as u32);
        flat.extend(t.iter().copied());
    }
    flat
}

/// The pairs' token ids from `PreparedPairs::shard_inputs`' encoding.
/// Errors: `Error::Input` when the array is cut short or runs past its last pair.
pub fn decode_shard_inputs(flat: &[u32]) -> Result<Vec<(Vec<u32>, Vec<u32>)>> {
    let bad = || Error::Input("malformed fine-tuning shard inputs".into());
    let mut it = flat.iter().copied();
    let n = it.next().ok_or_else(bad)? as usize;
    let mut take = || -> Result<Vec<u32>> {
        let len = it.next().ok_or_else(bad)? as usize;
        let v: Vec<u32> = it.by_ref().take(len).collect();
        if v.len() == len {
            Ok(v)
        } else {
            Err(bad())
        }
    };
    let mut pairs = Vec::with_capacity(n.min(flat.len()));
    for _ in 0..n {
        let s = take()?;
        let t = take()?;
        pairs.push((s, t));
    }
    if it.next().is_some() {
        return Err(bad());
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_inputs_round_trip_and_malformed_ones_are_refused() {
        let pairs = vec![
            (vec![5, 6, 0], vec![7, 0]),
            (vec![0], vec![]),
            (vec![9; 40], vec![3, 4, 5, 0]),
        ];
        let flat = encode_shard_inputs(&pairs);
        assert_eq!(decode_shard_inputs(&flat).unwrap(), pairs);
        assert_eq!(decode_shard_inputs(&[0]).unwrap(), vec![]);
        for cut in 0..flat.len() {
            assert!(decode_shard_inputs(&flat[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = flat.clone();
        longer.push(1);
        assert!(decode_shard_inputs(&longer).is_err());
        assert!(decode_shard_inputs(&[u32::MAX, 1, 2]).is_err());
    }
}
