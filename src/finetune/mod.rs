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
//! - the correction is low-rank (LoRA: B·A, B starting at zero) and decoupled weight decay
//!   pulls it toward zero (= the base model); the epoch with the best held-out loss is kept
//!   (early stop).
//!
//! Training runs on candle's autograd with its AdamW. The pieces, in the order a run uses them:
//! `job` (pairs tokenized, the features pass planned in shards), `positions` (the features
//! pass), `terms` (what is taught), `features` (the cached features on the taught tokens),
//! `head` (the trainable correction and its loss), `trainer` (optimizer, schedule, roll-back,
//! early stop), `snapshot` (the kept parameters, made an adapter), `keep` (the keep measure of
//! `run`).

mod features;
mod head;
mod job;
pub mod keep;
mod last_layer;
mod options;
pub mod pairs;
mod positions;
mod random;
mod report;
mod snapshot;
mod terms;
mod trainer;

pub use job::{decode_shard_inputs, prepare, FineTuneJob};
pub use options::{FineTuneOptions, FineTuneOverrides};
pub use positions::FeatureShard;
pub use report::{Control, EpochReport, FineTuneReport, Progress};

use crate::adapter::{Adapter, EntryConditions, NOT_CONDITIONED};
use crate::error::{Error, Result};
use crate::translator::Translator;
use features::{features, Entries};
use head::Head;
use job::{encode_pairs, join_shards};
use last_layer::Tail;
use pairs::Pair;
use serde::Serialize;
use snapshot::AdapterParts;
use web_time::Instant;

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
    let job = prepare(t, train, val, o)?;
    let total = job.len();
    let t0 = Instant::now();
    let mut on_pair = |done: usize| {
        on_progress(&Progress::features(
            done,
            total,
            o.epochs,
            t0.elapsed().as_secs_f64(),
        ))
    };
    let plan = job.whole();
    let pairs = job.pairs_of(&plan[0]);
    let shard = crate::generate::ready(FeatureShard::compute_on_device(
        t,
        &pairs,
        o.top_k,
        &mut on_pair,
    ))?;
    let Some(shard) = shard else {
        return Err(Error::Input("fine-tuning cancelled".into()));
    };
    train_adapter(t, &job, &plan, vec![shard], o, on_progress)
}

/// The training part of a run, on features computed by `FeatureShard::compute` over the
/// pairs of each entry of `plan` (`job.whole()`, or `job.shard_plan(n)`), in order:
/// the shards joined, what is taught chosen (`terms`), the features on its token set cached,
/// the head trained (`trainer`) and the kept parameters made an adapter (`snapshot`).
pub fn train_adapter(
    t: &Translator,
    job: &FineTuneJob,
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
    let (positions, clock) = join_shards(t, job, plan, shards, o)?;
    let train_positions: usize = job.ids[..job.n_train].iter().map(|p| p.1.len()).sum();
    let (p_train, p_val) = positions.split_at(train_positions)?;
    // S: the entries of the head correction — the taught words' pieces and what the base model
    // would have said in their place, each later piece conditioned on its predecessor
    // (`terms`). Every other row of the output projection stays as it is.
    let special = [t.tokenizer.eos_id(), t.model.config.pad_token_id];
    let sources: Vec<&[u32]> = job.ids.iter().map(|p| p.0.as_slice()).collect();
    let (train_sources, val_sources) = sources.split_at(job.n_train);
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
        print_teaching(t, &teaching);
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
    let pair_groups =
        |sources: &[&[u32]]| EntryConditions::sentence_groups(conditions.as_ref(), sources);
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
    let feature_seconds = job.started.elapsed().as_secs_f64();

    let d = t.model.config.d_model;
    let k = entry_ids.len();
    let r = o.rank.min(d).min(k);
    let ffn = t.model.config.decoder_ffn_dim;
    let r_last = o.last_layer_rank.min(d).min(ffn);
    let head = Head::new(d, k, r, (ffn, r_last), tail, o.seed)?;
    let trained = trainer::train(&head, &f_train, f_val.as_ref(), o, vocab, on_progress)?;
    let last_layer = trained.best.last_layer(r_last)?;
    let report = FineTuneReport {
        train_pairs: job.n_train,
        val_pairs: job.len() - job.n_train,
        train_positions: f_train.n,
        learn_positions: f_train.n_learn,
        trained_tokens: k,
        epochs: trained.epochs,
        best_epoch: trained.best_epoch,
        stopped_early: trained.stopped_early,
        cancelled: trained.cancelled,
        rollbacks: trained.rollbacks,
        feature_seconds,
        feature_shards,
        feature_device,
        frozen_model_seconds: clock.model,
        vocabulary_seconds: clock.vocabulary,
        train_seconds: trained.started.elapsed().as_secs_f64(),
    };
    let parts = AdapterParts {
        translator: t,
        options: o,
        ids: entry_ids,
        conditions,
        rank: r,
        last_layer_rank: r_last,
    };
    let adapter = trained.best.into_adapter(parts, last_layer, &report)?;
    Ok((adapter, report))
}

/// What `terms` chose, on stderr (`MARIAN_FT_DEBUG`): the taught units, the entries, the
/// trigger groups.
fn print_teaching(t: &Translator, teaching: &terms::Teaching) {
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
    let (val_hyps_after, extra_after) = after.split_at(val.len());
    // Sampled held-out pairs compare by their index; the sampled training pairs are `extra`.
    let changed = sample
        .iter()
        .filter(|&&i| i < val.len() && val_hyps_before[i] != val_hyps_after[i])
        .count()
        + extra_before
            .iter()
            .zip(extra_after)
            .filter(|(b, a)| b != a)
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
            Some(scores_of(&val, val_hyps_after)?),
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
