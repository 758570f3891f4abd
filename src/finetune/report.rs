//! What a fine-tuning run tells as it goes (`Progress`, answered by `Control`) and when it is
//! done (`FineTuneReport`, one `EpochReport` an epoch).

use serde::Serialize;

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
