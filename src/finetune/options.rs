//! A fine-tuning run's options: `FineTuneOptions` with their defaults and checks, and
//! `FineTuneOverrides`, the subset the CLI flags and the browser's options set.

use crate::error::{Error, Result};
use serde::Serialize;

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
    /// Rank of the correction of the output projection (LoRA: the product B·A).
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
