//! The training loop over cached features: AdamW on the trained parameters with the gradient
//! clipped (`ClippedAdamW`), a linear warm-up then a linear decay of the learning rate
//! (`Schedule`), a roll-back to the epoch's start with the rate halved after a non-finite loss,
//! gradient or parameter (`Rollbacks`), and early stop on the held-out loss that keeps the best
//! epoch's parameters (`EarlyStop`).

use super::features::Features;
use super::head::{finite, Head};
use super::random::Shuffle;
use super::snapshot::Snapshot;
use super::{Control, EpochReport, FineTuneOptions, Progress};
use crate::error::Result;
use candle_core::{Device, Tensor, Var};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use web_time::Instant;

/// What training ends with.
pub(super) struct Trained {
    /// The parameters to keep: the best epoch's (or the base model's, 0, when none improved on
    /// it; without held-out positions the last epoch's).
    pub(super) best: Snapshot,
    pub(super) best_epoch: usize,
    pub(super) epochs: Vec<EpochReport>,
    /// Every roll-back, with what was done.
    pub(super) rollbacks: Vec<String>,
    pub(super) stopped_early: bool,
    pub(super) cancelled: bool,
    /// When the first step began (the report's training time runs from here).
    pub(super) started: Instant,
}

/// Train `head` on `train`, choosing the epoch on `val` (held-out positions) when given.
/// `on_progress` after every step; it may cancel (the best parameters so far are kept).
pub(super) fn train(
    head: &Head,
    train: &Features,
    val: Option<&Features>,
    o: &FineTuneOptions,
    vocab: usize,
    on_progress: &mut dyn FnMut(&Progress) -> Control,
) -> Result<Trained> {
    let mut opt = ClippedAdamW::new(head, o)?;
    let steps_per_epoch = train.n.div_ceil(o.batch_positions);
    // Few pairs make few steps an epoch: enough epochs for `min_steps` (50 pairs: 16 epochs).
    let n_epochs = o.epochs.max(o.min_steps.div_ceil(steps_per_epoch.max(1)));
    let schedule = Schedule::new(o, steps_per_epoch * n_epochs);
    let val_loss = |head: &Head| -> Result<Option<f64>> {
        let Some(f) = val else { return Ok(None) };
        Ok(Some(head.loss_value(f, o, vocab)?))
    };
    let mut best = EarlyStop::new(val_loss(head)?, head, o.patience)?;
    let mut shuffle = Shuffle(o.seed);
    let mut epochs = Vec::new();
    let mut rollbacks = Rollbacks::default();
    let mut stopped_early = false;
    let mut cancelled = false;
    let mut step = 0;
    let started = Instant::now();
    'epochs: for epoch in 1..=n_epochs {
        let te = Instant::now();
        let good = head.snapshot()?;
        let order = shuffle.permutation(train.n);
        let mut sum = 0.0;
        let mut count = 0;
        for batch in order.chunks(o.batch_positions) {
            let idx = Tensor::new(batch, &Device::Cpu)?;
            let loss = head.loss(train, &idx, o, vocab)?;
            let lv = loss.to_scalar::<f32>()? as f64;
            let lr = schedule.at(step.min(schedule.total - 1)) * rollbacks.lr_scale;
            if !opt.step(head, &loss, lv, lr)? {
                rollbacks.roll_back(head, &good, format!(
                    "epoch {epoch} step {step}: non-finite loss or gradient; rolled back to the start of the epoch, learning rate halved"
                ))?;
                if rollbacks.gave_up() {
                    stopped_early = true;
                    break 'epochs;
                }
                continue 'epochs;
            }
            step += 1;
            sum += lv * batch.len() as f64;
            count += batch.len();
            let per_step = started.elapsed().as_secs_f64() / step as f64;
            let c = on_progress(&Progress {
                phase: "train",
                epoch,
                epochs: n_epochs,
                step,
                steps: schedule.total,
                loss: lv,
                eta_seconds: per_step * (schedule.total.saturating_sub(step)) as f64,
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
            rollbacks.roll_back(
                head,
                &good,
                format!(
                    "epoch {epoch}: parameters became non-finite; rolled back, learning rate halved"
                ),
            )?;
            continue;
        }
        let vl = val_loss(head)?;
        epochs.push(EpochReport {
            epoch,
            train_loss: sum / count.max(1) as f64,
            val_loss: vl,
            seconds: te.elapsed().as_secs_f64(),
        });
        if best.observe(head, epoch, vl)? {
            stopped_early = epoch < n_epochs;
            break;
        }
    }
    if best.epoch == 0 && val.is_none() {
        best.params = head.snapshot()?;
    }
    Ok(Trained {
        best: best.params,
        best_epoch: best.epoch,
        epochs,
        rollbacks: rollbacks.log,
        stopped_early,
        cancelled,
        started,
    })
}

/// AdamW (with the run's weight decay) over the trained parameters — the head's, without its
/// bias unless `train_bias` — each step's gradient clipped to `clip_norm` in L2 norm.
struct ClippedAdamW {
    adamw: AdamW,
    trained: Vec<Var>,
    clip_norm: f64,
}

impl ClippedAdamW {
    fn new(head: &Head, o: &FineTuneOptions) -> Result<Self> {
        let trained: Vec<Var> = head
            .vars()
            .into_iter()
            .filter(|v| o.train_bias || !std::ptr::eq(*v, &head.bias))
            .cloned()
            .collect();
        let adamw = AdamW::new(
            trained.clone(),
            ParamsAdamW {
                lr: o.lr,
                weight_decay: o.weight_decay,
                ..Default::default()
            },
        )?;
        Ok(ClippedAdamW {
            adamw,
            trained,
            clip_norm: o.clip_norm,
        })
    }

    /// One step down `loss`'s gradient (`loss_value` its value) at learning rate `lr`; false,
    /// changing nothing, when the loss or its gradient is not finite.
    fn step(&mut self, head: &Head, loss: &Tensor, loss_value: f64, lr: f64) -> Result<bool> {
        let mut grads = loss.backward()?;
        let mut norm2 = 0.0;
        for v in &self.trained {
            if let Some(g) = grads.get(v.as_tensor()) {
                norm2 += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            }
        }
        if !loss_value.is_finite() || !norm2.is_finite() {
            return Ok(false);
        }
        let norm = norm2.sqrt();
        if norm > self.clip_norm {
            let scale = self.clip_norm / norm;
            for v in head.vars() {
                if let Some(g) = grads.remove(v.as_tensor()) {
                    grads.insert(v.as_tensor(), (g * scale)?);
                }
            }
        }
        self.adamw.set_learning_rate(lr);
        self.adamw.step(&grads)?;
        Ok(true)
    }
}

/// The learning rate by step: a linear warm-up over the first `warmup_fraction` of the steps
/// (at least one), then a linear decay to zero at the last.
struct Schedule {
    lr: f64,
    warmup: usize,
    total: usize,
}

impl Schedule {
    fn new(o: &FineTuneOptions, total: usize) -> Self {
        Schedule {
            lr: o.lr,
            warmup: ((total as f64 * o.warmup_fraction).ceil() as usize).max(1),
            total,
        }
    }

    fn at(&self, step: usize) -> f64 {
        if step < self.warmup {
            self.lr * (step + 1) as f64 / self.warmup as f64
        } else {
            self.lr * (self.total - step) as f64 / (self.total - self.warmup).max(1) as f64
        }
    }
}

/// Roll-backs after non-finite values: each restores the epoch's start and halves the learning
/// rate; after three within steps the run stops.
struct Rollbacks {
    lr_scale: f64,
    log: Vec<String>,
}

impl Default for Rollbacks {
    fn default() -> Self {
        Rollbacks {
            lr_scale: 1.0,
            log: Vec::new(),
        }
    }
}

impl Rollbacks {
    fn roll_back(&mut self, head: &Head, good: &Snapshot, what: String) -> Result<()> {
        head.restore(good)?;
        self.lr_scale *= 0.5;
        self.log.push(what);
        Ok(())
    }

    fn gave_up(&self) -> bool {
        self.log.len() >= 3
    }
}

/// The best epoch so far by held-out loss (without held-out positions: the last epoch) with
/// its parameters; training stops after `patience` epochs without a better held-out loss.
struct EarlyStop {
    score: f64,
    epoch: usize,
    params: Snapshot,
    stale: usize,
    patience: usize,
}

impl EarlyStop {
    /// Starting from the base model (`head` as it is, epoch 0) and its held-out loss.
    fn new(val_loss: Option<f64>, head: &Head, patience: usize) -> Result<Self> {
        Ok(EarlyStop {
            score: val_loss.unwrap_or(f64::INFINITY),
            epoch: 0,
            params: head.snapshot()?,
            stale: 0,
            patience,
        })
    }

    /// `epoch` ended with held-out loss `val_loss`: keep its parameters when it is the best;
    /// true when training should stop.
    fn observe(&mut self, head: &Head, epoch: usize, val_loss: Option<f64>) -> Result<bool> {
        let score = val_loss.unwrap_or(-(epoch as f64)); // no validation: keep the last epoch
        if score < self.score {
            self.score = score;
            self.epoch = epoch;
            self.params = head.snapshot()?;
            self.stale = 0;
            Ok(false)
        } else {
            self.stale += 1;
            Ok(val_loss.is_some() && self.stale >= self.patience)
        }
    }
}
