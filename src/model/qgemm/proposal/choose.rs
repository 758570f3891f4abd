//! Each row's token from its proposals: the bound, the candidates it cannot rule out, their
//! exact outputs (the module's doc, in `proposal`, gives the bound's derivation).

use super::{Tables, EXACT_LEVELS, MAX_CANDIDATES, RELATIVE_SLACK};
use crate::model::qgemm::{PackedMatrix, QuantizedRows};

/// One row's choice: its activations, their blocks' magnitudes, bias and extra.
pub(super) struct Row<'a> {
    pub(super) matrix: &'a PackedMatrix,
    pub(super) tables: &'a Tables,
    pub(super) x: &'a [f32],
    pub(super) amax: &'a [f32],
    pub(super) bias: &'a [f32],
    pub(super) extra: Option<(&'a [u32], &'a [f32])>,
    /// With a residual, c such that c·‖r_i‖₂ bounds what it adds to output i (the residual
    /// screen's bound, `model::screened_head`); 0 without one.
    pub(super) residual_c: f32,
}

impl Row<'_> {
    /// The best (id, exact logit) from the row's proposals `pre` ([V], bias and extra added).
    pub(super) fn choose(&self, pre: &[f32], banned: &[u32]) -> Option<(u32, f32)> {
        let t = self.tables;
        let blocks = self.amax.len();
        let per_amax = 0.6 / t.pass.levels() as f32
            + 0.6 / EXACT_LEVELS
            + (blocks as f32 + 3.0) * f32::EPSILON / 2.0;
        let err: Vec<f32> = self.amax.iter().map(|a| a * per_amax).collect();
        let err_max = err.iter().fold(0f32, |m, &e| m.max(e));
        let norms = self.matrix.residual_norms();
        let residual = |i: usize| norms.get(i).map_or(0.0, |n| self.residual_c * n);
        let bound = |i: usize, p: f32| {
            let core: f32 = t.l1[i * blocks..][..blocks]
                .iter()
                .zip(&err)
                .map(|(c, e)| c * e)
                .sum::<f32>()
                + residual(i);
            core * 1.01 + (p.abs() + core) * RELATIVE_SLACK
        };
        let (max, largest, nan) = row_stats(pre);
        if nan {
            return None;
        }
        let best = match first_position(pre, max) {
            Some(i) if !banned.contains(&(i as u32)) => Some(i),
            // The best proposal is banned (rare): look again, skipping banned ids.
            _ => (0..pre.len())
                .filter(|&i| !banned.contains(&(i as u32)))
                .fold(None, |b: Option<usize>, i| match b {
                    Some(b) if pre[b] >= pre[i] => Some(b),
                    _ => Some(i),
                }),
        };
        let best = best?;
        let threshold = pre[best] - bound(best, pre[best]);
        if !threshold.is_finite() {
            return None;
        }
        // Σ_b c_ib e_b ≤ (max_i Σ_b c_ib) · max_b e_b, and |p| ≤ largest: one margin for the
        // whole row, so the scan below is a plain comparison; the few proposals it lets through
        // face their own bound. (2 % over `bound`'s 1 %, so it never rejects what `bound` keeps.)
        let core = t.l1_max * err_max + self.residual_c * t.residual_norm_max;
        let cut = threshold - (core * 1.02 + (largest + core) * RELATIVE_SLACK);
        let mut candidates = Vec::new();
        for (c, chunk) in pre.chunks(LANES).enumerate() {
            // Whole chunks below the cut are skipped.
            if !any_lane(chunk, |p| p >= cut) {
                continue;
            }
            for (j, &p) in chunk.iter().enumerate() {
                let i = c * LANES + j;
                if p >= cut && p + bound(i, p) >= threshold && !banned.contains(&(i as u32)) {
                    if candidates.len() == MAX_CANDIDATES {
                        return None;
                    }
                    candidates.push(i);
                }
            }
        }
        let xq = QuantizedRows::of(self.x, 1, self.x.len());
        let mut choice: Option<(u32, f32)> = None;
        for i in candidates {
            // With a residual: the sum `matmul` forms, the q8 output plus the residual's.
            let mut v = self.matrix.exact_output(i, &xq);
            if let Some(r) = self.matrix.residual() {
                v += r.exact_output(i, &xq);
            }
            v += self.bias[i];
            if let Some((ids, values)) = self.extra {
                if let Ok(j) = ids.binary_search(&(i as u32)) {
                    v += values[j];
                }
            }
            // Candidates come in id order: only a strictly higher logit displaces the choice.
            if choice.is_none_or(|(_, c)| v > c) {
                choice = Some((i as u32, v));
            }
        }
        choice
    }
}

/// Lanes of the row scans (written lane-wise so that they vectorize).
const LANES: usize = 16;

/// Whether `hit` holds for any value of a chunk: every lane tested, no early exit, so that the
/// comparison vectorizes (the row scans' way of passing over whole chunks).
#[inline(always)]
fn any_lane(chunk: &[f32], hit: impl Fn(f32) -> bool) -> bool {
    chunk.iter().fold(false, |any, &p| any | hit(p))
}

/// The first index holding `value`: whole chunks without it are passed over by `any_lane`
/// (a plain `position` stays scalar: 3.5 % of batch 16's time in perf).
fn first_position(pre: &[f32], value: f32) -> Option<usize> {
    pre.chunks(LANES).enumerate().find_map(|(c, chunk)| {
        if !any_lane(chunk, |p| p == value) {
            return None;
        }
        chunk
            .iter()
            .position(|&p| p == value)
            .map(|j| c * LANES + j)
    })
}

/// A row's largest value, largest magnitude, and whether it holds a NaN.
fn row_stats(pre: &[f32]) -> (f32, f32, bool) {
    let mut max = [f32::NEG_INFINITY; LANES];
    let mut largest = [0f32; LANES];
    let mut nan = [false; LANES];
    let chunks = pre.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            max[l] = if c[l] > max[l] { c[l] } else { max[l] };
            let a = c[l].abs();
            largest[l] = if a > largest[l] { a } else { largest[l] };
            nan[l] |= c[l].is_nan();
        }
    }
    let mut out = (f32::NEG_INFINITY, 0f32, false);
    for l in 0..LANES {
        out = (out.0.max(max[l]), out.1.max(largest[l]), out.2 | nan[l]);
    }
    for &p in tail {
        out = (out.0.max(p), out.1.max(p.abs()), out.2 | p.is_nan());
    }
    out
}
