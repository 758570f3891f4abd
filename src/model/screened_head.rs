//! An f16 output projection computed through an 8-bit copy of itself: the full product runs on
//! the q8 kernel (as fast as a q8 package's), and every token that could be among a row's best
//! `n` is then recomputed exactly from the f16 weights, so greedy and beam search choose what the
//! f16 projection itself would make them choose.
//!
//! Why: the q8 rounding of the shared embedding, which is also the output projection, is where
//! most of a q8 package's drift from transformers comes from (measured per component,
//! BENCHMARKS.md 2026-12-04); keeping that one matrix at f16 (`convert --keep-f16 embeddings`)
//! removes that share, but a full product over a 59 514-word vocabulary every step at 16 bits
//! or wider costs what a q8 package was chosen to save (widened to f32 through candle: 116
//! against 258 tokens/s at batch 1 on the opus-mt shape).
//!
//! The screening bound (written for this module, the same reasoning as the greedy proposal
//! pass's in `qgemm::proposal`). Per output i and block b of 32 inputs: ŵ_i the q8 copy's row
//! (nearest level of the f16-rounded scale max|w|/127), r_i = ‖w_i − ŵ_i‖₂ its rounding error,
//! E_b ≥ max_{i, j∈b} |w_ij − ŵ_ij|, C_b ≥ Σ_{j∈b} |ŵ_ij| for every i, amax_b the activations'
//! largest magnitude in the block. |x·w_i − x·ŵ_i| ≤ ‖x‖₂·r_i (Cauchy–Schwarz); the q8 kernel
//! computes x·ŵ_i within Σ_b C_b·amax_b·(0.6/32767 + (blocks + 3)·ε) (its 16-bit activations
//! and f32 accumulation); the exact f32 dot product adds at most (D + 2)·ε·Σ_b (C_b + 32·E_b)·
//! amax_b. Their sum with 0.1 % to spare, plus a relative 2⁻²⁰ of the row's largest logit for
//! the bias additions, is B_i ≥ |screened_i − exact_i|. If L is the n-th largest of the
//! screened_k − B_k, at least n tokens have exact logits ≥ L, so a token with screened_i + B_i
//! < L cannot be among the best n: every other token is recomputed, and the best n of the row
//! are exact (the rest keep screened logits below L; beam search's log-softmax normalizer
//! sees them within B_i of exact).
//!
//! A q8 output projection with a Q4_0 residual (`convert --residual embeddings`) is screened
//! the same way by `residual_logits_into`, with a simpler bound: the full product is the q8 product
//! plus the residual's, so the screened logit differs from the full one by the residual
//! product alone, |x̃·r_i| ≤ ‖x̃‖₂·‖r_i‖₂ (Cauchy–Schwarz; x̃ the kernel's 16-bit rounding of x).

use crate::model::qgemm::{PackedMatrix, BLOCK};
use half::f16;
use rayon::prelude::*;

/// Relative room for the bias additions and the bound's own rounding.
const RELATIVE_SLACK: f32 = 1.0 / (1 << 20) as f32;

/// The q8 copy of an f16 [V, D] output projection and the tables of its screening bound.
#[derive(Debug)]
pub struct ScreenedHead {
    screen: PackedMatrix,
    /// [rows]: r_i = ‖w_i − ŵ_i‖₂.
    row_error: Vec<f32>,
    /// [blocks]: E_b, the copy's largest rounding error in block b over all rows.
    weight_error: Vec<f32>,
    /// [blocks]: C_b, the largest Σ_{j∈b} |ŵ_ij| over all rows.
    copy_l1: Vec<f32>,
}

impl ScreenedHead {
    /// The screen of `w` ([rows, cols] row-major f16, cols a multiple of 32).
    pub fn new(w: &[f16], rows: usize, cols: usize) -> Self {
        assert!(cols.is_multiple_of(BLOCK) && w.len() == rows * cols);
        let blocks = cols / BLOCK;
        // GGML Q8_0: per block the scale max|w| / 127, stored as f16 and used as stored.
        let level = |x: f32, s: f32| -> f32 {
            if s > 0.0 {
                (x / s).round().clamp(-127.0, 127.0)
            } else {
                0.0
            }
        };
        let mut scales = vec![0u8; rows * blocks * 2];
        // Per row: r_i, and per block its largest error and Σ|ŵ|.
        let per_row: Vec<(f32, Vec<(f32, f32)>)> = w
            .par_chunks_exact(cols)
            .zip(scales.par_chunks_exact_mut(blocks * 2))
            .map(|(row, row_scales)| {
                let mut stats = vec![(0f32, 0f32); blocks];
                let mut squares = 0f64;
                for (b, block) in row.chunks_exact(BLOCK).enumerate() {
                    let amax = block.iter().fold(0f32, |m, x| m.max(x.to_f32().abs()));
                    let scale = f16::from_f32(amax / 127.0);
                    row_scales[b * 2..][..2].copy_from_slice(&scale.to_le_bytes());
                    let s = scale.to_f32();
                    for x in block {
                        let x = x.to_f32();
                        let copy = level(x, s) * s;
                        stats[b].0 = stats[b].0.max((x - copy).abs());
                        stats[b].1 += copy.abs();
                        squares += ((x - copy) as f64).powi(2);
                    }
                }
                // Rounded up so the bound stays a bound.
                ((squares.sqrt() * (1.0 + 1e-6)) as f32, stats)
            })
            .collect();
        let mut row_error = Vec::with_capacity(rows);
        let mut weight_error = vec![0f32; blocks];
        let mut copy_l1 = vec![0f32; blocks];
        for (e, stats) in per_row {
            row_error.push(e);
            for (b, (err, l1)) in stats.into_iter().enumerate() {
                weight_error[b] = weight_error[b].max(err);
                copy_l1[b] = copy_l1[b].max(l1);
            }
        }
        let scale_of = |r: usize, b: usize| {
            let at = (r * blocks + b) * 2;
            f16::from_le_bytes([scales[at], scales[at + 1]]).to_f32()
        };
        let screen = PackedMatrix::from_q8_values(rows, cols, &scales, |r, c| {
            level(w[r * cols + c].to_f32(), scale_of(r, c / BLOCK)) as i8
        });
        ScreenedHead {
            screen,
            row_error,
            weight_error,
            copy_l1,
        }
    }

    /// Logits [m, V] row-major of activations `x` ([m, D]) into `out`: `x · wᵀ`, then `bias`
    /// ([V]), then `extra` (ids [K], values [m, K]) added. In each row the best `top_n` tokens
    /// that are not `banned`, and every token that might be among them, hold the exact f32
    /// product with the f16 weights `w` (the matrix this screen was made of); the others hold
    /// the q8 copy's product, within the bound B of exact.
    #[allow(clippy::too_many_arguments)]
    pub fn logits_into(
        &self,
        w: &[f16],
        x: &[f32],
        m: usize,
        bias: &[f32],
        extra: Option<(&[u32], &[f32])>,
        top_n: usize,
        banned: &[u32],
        out: &mut Vec<f32>,
    ) {
        let (rows, cols) = self.screen.dims();
        assert_eq!(w.len(), rows * cols, "w is not this screen's matrix");
        assert_eq!(x.len(), m * cols, "activations are not [m, D]");
        out.resize(m * rows, 0.0);
        self.screen.matmul_into(x, m, out);
        crate::model::add_bias_and_extra(out, rows, bias, extra);
        let k = extra.map_or(0, |(ids, _)| ids.len());
        for (r, row) in out.chunks_exact_mut(rows).enumerate() {
            let xr = &x[r * cols..][..cols];
            let exact = |i: usize| -> f32 {
                let wi = &w[i * cols..][..cols];
                let dot = xr
                    .iter()
                    .zip(wi)
                    .fold(0f32, |acc, (a, b)| acc + a * b.to_f32());
                let mut y = dot + bias[i];
                if let Some((ids, values)) = extra {
                    if let Some(p) = ids.iter().position(|&id| id as usize == i) {
                        y += values[r * k + p];
                    }
                }
                y
            };
            let (norm, common) = self.bound_terms(xr, row);
            let bound = |i: usize| (norm * self.row_error[i] + common) * 1.001;
            let lower = |i: usize, v: f32| v - bound(i);
            let Some(floor) = nth_largest(row, top_n, banned, lower) else {
                continue;
            };
            if !floor.is_finite() || !norm.is_finite() || !common.is_finite() {
                // Non-finite activations or logits: no bound holds; every logit exactly.
                for (i, v) in row.iter_mut().enumerate() {
                    *v = exact(i);
                }
                continue;
            }
            for (i, v) in row.iter_mut().enumerate() {
                if *v + bound(i) >= floor {
                    *v = exact(i);
                }
            }
        }
    }

    /// ‖x‖₂ (rounded up) and the part of B_i common to every token (module docs), for one row
    /// of activations and its screened logits.
    fn bound_terms(&self, x: &[f32], screened: &[f32]) -> (f32, f32) {
        let eps = f32::EPSILON;
        let blocks = self.copy_l1.len();
        let per_amax = 0.6 / 32767.0 + (blocks as f32 + 3.0) * eps;
        let dot_rounding = (x.len() as f32 + 2.0) * eps;
        let mut b = 0f32;
        for (blk, xb) in x.chunks_exact(BLOCK).enumerate() {
            let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
            let e = self.weight_error[blk];
            let c = self.copy_l1[blk];
            b += c * amax * per_amax + (c + BLOCK as f32 * e) * amax * dot_rounding;
        }
        let norm = x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt() * (1.0 + 1e-6);
        let largest = screened.iter().fold(0f32, |m, v| m.max(v.abs()));
        (norm as f32, b + largest * RELATIVE_SLACK)
    }
}

/// The screen of a q8 output projection `w` that carries a residual (`PackedMatrix::residual`;
/// the bound's table, ‖r_i‖₂ per output, is `PackedMatrix::residual_norms`). Logits [m, V]
/// row-major of activations `x` ([m, D]) into `out`: `x · wᵀ` with w the q8 values plus their
/// residual, then `bias` ([V]), then `extra` (ids [K], values [m, K]). In each row the best
/// `top_n` tokens that are not `banned`, and every token that might be among them, hold exactly
/// what `w.matmul` and the additions give (the same bits); the others hold the q8 product
/// without the residual, within the bound of it. Panics if `w` has no residual.
#[allow(clippy::too_many_arguments)]
pub fn residual_logits_into(
    w: &PackedMatrix,
    x: &[f32],
    m: usize,
    bias: &[f32],
    extra: Option<(&[u32], &[f32])>,
    top_n: usize,
    banned: &[u32],
    out: &mut Vec<f32>,
) {
    let (rows, cols) = w.dims();
    let residual = w
        .residual()
        .expect("a residual screen is made of a matrix with a residual");
    let row_norm = w.residual_norms();
    assert_eq!(x.len(), m * cols, "activations are not [m, D]");
    out.resize(m * rows, 0.0);
    w.base_matmul_into(x, m, out);
    let k = extra.map_or(0, |(ids, _)| ids.len());
    let largest_bias = bias.iter().fold(0f32, |a, b| a.max(b.abs()));
    out.par_chunks_exact_mut(rows)
        .enumerate()
        .with_min_len(crate::row_shards::split_min(1))
        .for_each(|(r, row)| {
            let xr = &x[r * cols..][..cols];
            // Each logit as the caller will see it without the residual: projection, bias,
            // then the extra values (in that order, as `add_bias_and_extra` adds them).
            KEYS.with_borrow_mut(|keys| {
                let largest_base = keys_and_largest(row, bias, keys);
                let mut largest_extra = 0f32;
                if let Some((ids, values)) = extra {
                    for (&id, e) in ids.iter().zip(&values[r * k..][..k]) {
                        keys[id as usize] += e;
                        largest_extra = largest_extra.max(e.abs());
                    }
                }
                // B_i = c·‖r_i‖ + C: Cauchy–Schwarz with the kernel's f32 rounding (far below
                // 0.1 %), and a relative 2⁻²⁰ of the magnitudes added for their rounding.
                let c = crate::model::qgemm::residual_bound_factor(xr);
                let common = (largest_base + largest_bias + largest_extra) * RELATIVE_SLACK;
                // The n-th largest lower end keys_i − B_i is that of keys_i − c·‖r_i‖, less C;
                // a token can be among the best n if keys_i + B_i reaches it.
                let lower = |i: usize, v: f32| v - c * row_norm[i];
                let floor = match top_n {
                    1 => best_lower(keys, row_norm, c)
                        .filter(|&(i, _)| !banned.contains(&(i as u32)))
                        .map(|(_, f)| f)
                        .or_else(|| nth_largest(keys, 1, banned, lower)),
                    n => nth_largest(keys, n, banned, lower),
                };
                let candidates: Vec<u32> = match floor {
                    None => Vec::new(),
                    Some(f) if f.is_finite() && c.is_finite() && common.is_finite() => {
                        reaching(keys, row_norm, c, f - 2.0 * common)
                    }
                    // Non-finite activations or logits: no bound holds; every logit in full.
                    Some(_) => (0..rows as u32).collect(),
                };
                if candidates.is_empty() {
                    return;
                }
                let fine = residual.select_rows(&candidates).matmul(xr, 1);
                for (&i, f) in candidates.iter().zip(&fine) {
                    row[i as usize] += f;
                }
            })
        });
    crate::model::add_bias_and_extra(out, rows, bias, extra);
}

/// Lanes of the row scans below (written lane-wise so that they vectorize).
const LANES: usize = 16;

thread_local! {
    /// A row's keys, kept per thread: a V-wide allocation every step would cost page faults.
    static KEYS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `keys` = `row + bias` element by element; returns the largest |row_i|.
fn keys_and_largest(row: &[f32], bias: &[f32], keys: &mut Vec<f32>) -> f32 {
    keys.resize(row.len(), 0.0);
    let mut largest = [0f32; LANES];
    let mut chunks = keys.chunks_exact_mut(LANES);
    for ((k, v), b) in (&mut chunks)
        .zip(row.chunks_exact(LANES))
        .zip(bias.chunks_exact(LANES))
    {
        for l in 0..LANES {
            k[l] = v[l] + b[l];
            let a = v[l].abs();
            largest[l] = if a > largest[l] { a } else { largest[l] };
        }
    }
    let done = row.len() - chunks.into_remainder().len();
    let mut most = largest.iter().fold(0f32, |m, &a| m.max(a));
    for i in done..row.len() {
        keys[i] = row[i] + bias[i];
        most = most.max(row[i].abs());
    }
    most
}

/// The largest `keys_i − c·norms_i` and its first index (`None` for an empty row or a NaN).
fn best_lower(keys: &[f32], norms: &[f32], c: f32) -> Option<(usize, f32)> {
    let mut best = [f32::NEG_INFINITY; LANES];
    let whole = keys.len() - keys.len() % LANES;
    for (k, n) in keys[..whole]
        .chunks_exact(LANES)
        .zip(norms[..whole].chunks_exact(LANES))
    {
        for l in 0..LANES {
            let v = k[l] - c * n[l];
            best[l] = if v > best[l] { v } else { best[l] };
        }
    }
    let mut max = best.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    for i in whole..keys.len() {
        max = max.max(keys[i] - c * norms[i]);
    }
    keys.iter()
        .zip(norms)
        .position(|(k, n)| k - c * n == max)
        .map(|i| (i, max))
}

/// The ids with `keys_i + c·norms_i ≥ reach`, ascending.
fn reaching(keys: &[f32], norms: &[f32], c: f32, reach: f32) -> Vec<u32> {
    let mut out = Vec::new();
    for (chunk, (k, n)) in keys.chunks(LANES).zip(norms.chunks(LANES)).enumerate() {
        // Whole chunks below `reach` are skipped by a comparison that vectorizes.
        if !k
            .iter()
            .zip(n)
            .fold(false, |any, (k, n)| any | (k + c * n >= reach))
        {
            continue;
        }
        for (l, (k, n)) in k.iter().zip(n).enumerate() {
            if k + c * n >= reach {
                out.push((chunk * LANES + l) as u32);
            }
        }
    }
    out
}

/// The `n`-th largest `key(id, value)` of `row` over the ids not in `banned` (`None` when
/// none is left); the smallest of them when fewer than `n` are.
fn nth_largest(
    row: &[f32],
    n: usize,
    banned: &[u32],
    key: impl Fn(usize, f32) -> f32,
) -> Option<f32> {
    let n = n.max(1);
    // The best n so far, ascending; small n (greedy 1, beam search 2 × beams) keeps it cheap.
    let mut best: Vec<f32> = Vec::with_capacity(n + 1);
    for (i, &v) in row.iter().enumerate() {
        let v = key(i, v);
        if best.len() == n && v <= best[0] {
            continue;
        }
        if banned.contains(&(i as u32)) || v.is_nan() {
            continue;
        }
        let at = best.partition_point(|&b| b < v);
        best.insert(at, v);
        if best.len() > n {
            best.remove(0);
        }
    }
    best.first().copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Every row's best n by the exact f32 products with the f16 weights, ties to the lower id.
    fn exact_top(w: &[f16], x: &[f32], bias: &[f32], cols: usize, n: usize) -> Vec<Vec<u32>> {
        x.chunks_exact(cols)
            .map(|xr| {
                let mut all: Vec<(u32, f32)> = w
                    .chunks_exact(cols)
                    .zip(bias)
                    .enumerate()
                    .map(|(i, (wi, b))| {
                        let dot = xr
                            .iter()
                            .zip(wi)
                            .fold(0f32, |acc, (a, c)| acc + a * c.to_f32());
                        (i as u32, dot + b)
                    })
                    .collect();
                all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                all.iter().take(n).map(|t| t.0).collect()
            })
            .collect()
    }

    fn top_of(row: &[f32], n: usize) -> Vec<u32> {
        let mut ids: Vec<u32> = (0..row.len() as u32).collect();
        ids.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]).then(a.cmp(&b)));
        ids.truncate(n);
        ids
    }

    /// Near-ties on purpose: rows that differ from each other by less than the q8 copy's
    /// rounding, so the screened order alone would often be wrong.
    #[test]
    fn the_best_n_are_those_of_the_f16_product() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let (rows, cols, m) = (700, 96, 5);
        let base: Vec<f32> = (0..cols).map(|_| rng.random_range(-1.0..1.0)).collect();
        let w: Vec<f16> = (0..rows * cols)
            .map(|k| f16::from_f32(base[k % cols] + rng.random_range(-0.004..0.004)))
            .collect();
        let x: Vec<f32> = (0..m * cols).map(|_| rng.random_range(-2.0..2.0)).collect();
        let bias: Vec<f32> = (0..rows).map(|_| rng.random_range(-0.01..0.01)).collect();
        let head = ScreenedHead::new(&w, rows, cols);
        let mut screened_wrong = 0;
        for n in [1, 4, 8] {
            let mut out = Vec::new();
            head.logits_into(&w, &x, m, &bias, None, n, &[], &mut out);
            let want = exact_top(&w, &x, &bias, cols, n);
            let mut q8 = vec![0f32; m * rows];
            head.screen.matmul_into(&x, m, &mut q8);
            for (r, row) in out.chunks_exact(rows).enumerate() {
                assert_eq!(top_of(row, n), want[r], "row {r}, n {n}");
                let q8_row: Vec<f32> = q8[r * rows..][..rows]
                    .iter()
                    .zip(&bias)
                    .map(|(a, b)| a + b)
                    .collect();
                screened_wrong += (top_of(&q8_row, n) != want[r]) as usize;
            }
        }
        // The test means something only if the q8 copy alone gets some of them wrong.
        assert!(screened_wrong > 0, "no near-tie in the test data");
    }

    /// A q8 matrix whose rows share their q8 values in groups of 10 and differ by a random
    /// Q4_0 residual: within a group the q8 product ties exactly, so only the residual decides.
    fn q8_with_residual(rows: usize, cols: usize, seed: u64) -> PackedMatrix {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let blocks = cols / BLOCK;
        let scale = |rng: &mut rand_chacha::ChaCha8Rng, s: f32| {
            f16::from_f32(s * rng.random_range(0.5..1.5)).to_le_bytes()
        };
        let mut values = vec![0u8; rows * cols];
        let mut scales = Vec::new();
        for r in 0..rows {
            if r % 10 == 0 {
                for v in &mut values[r * cols..][..cols] {
                    *v = rng.random_range(-127i8..=127) as u8;
                }
                for _ in 0..blocks {
                    scales.extend_from_slice(&scale(&mut rng, 0.01));
                }
            } else {
                values.copy_within((r - 1) * cols..r * cols, r * cols);
                let at = (r - 1) * blocks * 2;
                scales.extend_from_within(at..at + blocks * 2);
            }
        }
        let nibbles: Vec<u8> = (0..rows * cols / 2).map(|_| rng.random()).collect();
        let fine: Vec<u8> = (0..rows * blocks)
            .flat_map(|_| scale(&mut rng, 0.01 / 16.0))
            .collect();
        PackedMatrix::from_q8(rows, cols, &values, &scales)
            .with_residual(PackedMatrix::from_q4(rows, cols, &nibbles, &fine))
    }

    #[test]
    fn a_residual_screen_keeps_the_full_products_best_n_bit_for_bit() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let (rows, cols, m) = (700, 96, 5);
        let w = q8_with_residual(rows, cols, 10);
        let x: Vec<f32> = (0..m * cols).map(|_| rng.random_range(-2.0..2.0)).collect();
        let bias: Vec<f32> = (0..rows).map(|_| rng.random_range(-0.01..0.01)).collect();
        let mut full = w.matmul(&x, m);
        crate::model::add_bias_and_extra(&mut full, rows, &bias, None);
        let mut base_only = vec![0f32; m * rows];
        w.base_matmul_into(&x, m, &mut base_only);
        crate::model::add_bias_and_extra(&mut base_only, rows, &bias, None);
        let mut screened_wrong = 0;
        for n in [1, 4, 8] {
            let mut out = Vec::new();
            residual_logits_into(&w, &x, m, &bias, None, n, &[], &mut out);
            for r in 0..m {
                let (got, want) = (&out[r * rows..][..rows], &full[r * rows..][..rows]);
                assert_eq!(top_of(got, n), top_of(want, n), "row {r}, n {n}");
                for i in top_of(want, n) {
                    let i = i as usize;
                    assert_eq!(got[i].to_bits(), want[i].to_bits(), "row {r}, token {i}");
                }
                screened_wrong +=
                    (top_of(&base_only[r * rows..][..rows], n) != top_of(want, n)) as usize;
            }
        }
        assert!(
            screened_wrong > 0,
            "the q8 product alone chose right everywhere"
        );
        // Banned ids and extra values, as for the f16 screen.
        let best = top_of(&full[..rows], 1)[0];
        let mut out = Vec::new();
        residual_logits_into(&w, &x[..cols], 1, &bias, None, 1, &[best], &mut out);
        let mut without = full[..rows].to_vec();
        without[best as usize] = f32::NEG_INFINITY;
        out[best as usize] = f32::NEG_INFINITY;
        assert_eq!(top_of(&out, 1), top_of(&without, 1));
        let poor = top_of(&full[..rows].iter().map(|v| -v).collect::<Vec<_>>(), 1)[0];
        residual_logits_into(
            &w,
            &x[..cols],
            1,
            &bias,
            Some((&[poor], &[100.0])),
            1,
            &[],
            &mut out,
        );
        assert_eq!(top_of(&out, 1)[0], poor);
    }

    #[test]
    fn banned_ids_and_extra_values_are_respected() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
        let (rows, cols) = (300, 64);
        let w: Vec<f16> = (0..rows * cols)
            .map(|_| f16::from_f32(rng.random_range(-0.5..0.5)))
            .collect();
        let x: Vec<f32> = (0..cols).map(|_| rng.random_range(-1.0..1.0)).collect();
        let bias = vec![0f32; rows];
        let head = ScreenedHead::new(&w, rows, cols);
        let mut plain = Vec::new();
        head.logits_into(&w, &x, 1, &bias, None, 1, &[], &mut plain);
        let best = top_of(&plain, 1)[0];
        // Banning the best: the second best is exact and wins.
        let mut out = Vec::new();
        head.logits_into(&w, &x, 1, &bias, None, 1, &[best], &mut out);
        let mut ranked = exact_top(&w, &x, &bias, cols, 2)[0].clone();
        ranked.retain(|&i| i != best);
        let second = ranked[0];
        let without: Vec<f32> = out
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                if i as u32 == best {
                    f32::NEG_INFINITY
                } else {
                    v
                }
            })
            .collect();
        assert_eq!(top_of(&without, 1)[0], second);
        // An extra value that lifts a poor token to the top makes it the exact best.
        let poor = top_of(&plain.iter().map(|v| -v).collect::<Vec<_>>(), 1)[0];
        let lift = [100f32];
        head.logits_into(&w, &x, 1, &bias, Some((&[poor], &lift)), 1, &[], &mut out);
        assert_eq!(top_of(&out, 1)[0], poor);
    }
}
