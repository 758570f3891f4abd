//! The cached features of training and held-out positions on the head's token set S: the
//! frozen model's hidden states, its logits on S and the exact log-sum-exp of the rest, the
//! labels, which positions learn and which keep, and where each entry applies.

use super::last_layer::{LastLayerFeatures, Tail};
use super::positions::{exp_nonpositive, Positions};
use super::terms;
use crate::adapter::{EntryConditions, NOT_CONDITIONED};
use crate::error::Result;
use crate::model::HeadRows;
use candle_core::{DType, Device, Tensor};

/// Cached frozen-model features of a set of pairs.
pub(super) struct Features {
    /// [N, D] decoder hidden states (the output projection's input).
    pub(super) hidden: Tensor,
    /// [N, K+1] base logits on S, then the log-sum-exp of the logits outside S.
    pub(super) base_ext: Tensor,
    /// [N] sum of the base logits outside S (for label smoothing).
    pub(super) rest_sum: Tensor,
    /// [N] index of the target token in S (0 when it is not in S).
    pub(super) label: Tensor,
    /// [N] 1.0 where the target token is in S.
    pub(super) label_in_s: Tensor,
    /// [N] the base logit of the target token (fixed when the target is not in S).
    pub(super) label_logit: Tensor,
    /// [N] 1.0 where the target is something to learn (cross-entropy), 0.0 where it is kept (KL).
    pub(super) learn: Tensor,
    /// [N, K] 1.0 where S's entry k applies at position i (its condition on the previous token
    /// is met), when some entry is conditioned.
    pub(super) applies: Option<Tensor>,
    /// [K, |S|] one-hot: entry k's column of S, when some token has several entries.
    pub(super) to_set: Option<Tensor>,
    /// With a last-layer adapter: its per-position inputs and base-distribution constants.
    pub(super) last: Option<LastLayerFeatures>,
    pub(super) n: usize,
    pub(super) n_learn: usize,
}

/// Base logits restricted to S plus the exact log-sum-exp of the rest, per position, from the
/// cached hidden states (S's rows of the projection only) and the whole-row summaries.
pub(super) fn features(
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
pub(super) struct Entries<'a> {
    pub(super) ids: &'a [u32],
    pub(super) set: &'a [u32],
    pub(super) conditions: Option<&'a EntryConditions>,
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
