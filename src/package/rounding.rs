//! Rounding a weight matrix to GGML Q8_0 / Q4_0 blocks (32 weights of a row share one f16
//! scale): to the nearest level, or by GPTQ.
//!
//! GPTQ (Frantar et al., "GPTQ: Accurate Post-Training Quantization for Generative
//! Pre-trained Transformers", ICLR 2023, Algorithm 1) rounds a row's weights one input column
//! at a time and moves each rounding error onto the columns not rounded yet, weighted by the
//! inverse of the layer's input Gram matrix H = Σ xᵀx, so that the error in the layer's
//! *output* on those inputs is small rather than the error of each weight. The stored format is
//! unchanged (the same blocks every kernel, CPU and GPU, reads); only which integers are stored
//! differs. Written here because no maintained Rust crate does GPTQ; the linear algebra is
//! nalgebra's.
//!
//! Block scales are stored as f16, so every scale is rounded to f16 *before* the weights are
//! rounded with it (GGML's reference rounds with the f32 scale and stores it as f16 after).
//! Q4_0 scales are chosen per block by a small search for the least squared error (Q4_0 has
//! levels −8 … 7, so the largest weight maps to −8 or to 7, or a little inside); Q8_0 scales
//! are max|w| / 127.

use super::quant::{Quant, BLOCK};
use crate::error::{Error, Result};
use crate::model::observe::InputGram;
use half::f16;
use rayon::prelude::*;

/// A [rows, cols] matrix in the package's block layout: `values` are Q8_0's int8 per weight or
/// Q4_0's nibble bytes (low nibbles the block's first 16 weights), `scales` one little-endian
/// f16 per block, both row-major over (row, block).
pub struct RoundedMatrix {
    pub values: Vec<u8>,
    pub scales: Vec<u8>,
}

/// GPTQ's damping: λ = DAMPING · mean(diag H) is added to H's diagonal (the paper's 1 %), which
/// keeps H invertible when the calibration text leaves some input directions unexercised.
pub const DAMPING: f64 = 0.01;

/// `w` ([rows, cols] row-major, cols a multiple of 32) rounded to the nearest level of each
/// block's scale. `form` is Q8 or Q4.
pub fn round_nearest(w: &[f32], rows: usize, cols: usize, form: Quant) -> RoundedMatrix {
    round_rows(w, rows, cols, form, |row, out| {
        for (b, block) in row.chunks_exact(BLOCK).enumerate() {
            let block: Vec<f64> = block.iter().map(|&x| x as f64).collect();
            let scale = block_scale(&block, form);
            out.scales[b] = scale;
            for (j, &x) in block.iter().enumerate() {
                out.levels[b * BLOCK + j] = level(x, scale, form);
            }
        }
    })
}

/// `w` rounded to 12-bit levels `v = round(16·x / s)` of each block's Q8_0 scale `s`, stored
/// as a Q8_0 matrix (levels q, scales s) and a Q4_0 residual (levels r, −8 … 7, under the
/// implied scale s / 16) with `v = 16·q + r`: q is the nearest Q8_0 level except where x lies
/// within s/32 of a half level, where q is the level above and r = −8 (so that r fits 4 bits).
/// Returns the Q8_0 matrix and the residual's nibbles ([rows, cols / 2], Q4_0 order).
pub fn round_nearest_with_residual(
    w: &[f32],
    rows: usize,
    cols: usize,
) -> (RoundedMatrix, Vec<u8>) {
    // v = 16q + r with r in −8 … 7: q = floor((v + 8) / 16); v clamped so that |q| ≤ 127.
    let split = |x: f64, scale: f64| -> (i8, i8) {
        if scale == 0.0 || !x.is_finite() {
            return (0, 0);
        }
        let v = (16.0 * x / scale).round().clamp(-2040.0, 2039.0) as i32;
        let q = (v + 8).div_euclid(16);
        (q as i8, (v - 16 * q) as i8)
    };
    let q8 = round_rows(w, rows, cols, Quant::Q8, |row, out| {
        for (b, block) in row.chunks_exact(BLOCK).enumerate() {
            let block: Vec<f64> = block.iter().map(|&x| x as f64).collect();
            let scale = block_scale(&block, Quant::Q8);
            out.scales[b] = scale;
            for (j, &x) in block.iter().enumerate() {
                out.levels[b * BLOCK + j] = split(x, scale).0;
            }
        }
    });
    // The residual under the scale just stored (f16, so it reads back exactly).
    let mut nibbles = vec![0u8; rows * cols / 2];
    nibbles
        .par_chunks_mut(BLOCK / 2)
        .zip(w.par_chunks(BLOCK))
        .zip(q8.scales.par_chunks(2))
        .for_each(|((bytes, block), scale)| {
            let scale = f16::from_le_bytes([scale[0], scale[1]]).to_f64();
            let r = |j: usize| (split(block[j] as f64, scale).1 + 8) as u8;
            for (j, byte) in bytes.iter_mut().enumerate() {
                *byte = r(j) | (r(j + BLOCK / 2) << 4);
            }
        });
    (q8, nibbles)
}

/// `w` rounded by GPTQ against the Gram matrix of the layer's inputs (`gram.dim` = cols).
/// Errors when the Gram matrix does not fit the matrix or is not finite.
pub fn round_gptq(
    w: &[f32],
    rows: usize,
    cols: usize,
    form: Quant,
    gram: &InputGram,
) -> Result<RoundedMatrix> {
    if gram.dim != cols || gram.gram.len() != cols * cols {
        return Err(Error::Input(format!(
            "GPTQ: the inputs' Gram matrix is {0}×{0}, the weight has {cols} columns",
            gram.dim
        )));
    }
    let u = inverse_cholesky_upper(&gram.gram, cols)?;
    Ok(round_rows(w, rows, cols, form, |row, out| {
        // One row at a time (GPTQ treats rows independently); f64 throughout.
        let mut w: Vec<f64> = row.iter().map(|&x| x as f64).collect();
        for b in 0..cols / BLOCK {
            let start = b * BLOCK;
            // The scale comes from the block as the errors moved onto it have left it.
            let scale = block_scale(&w[start..start + BLOCK], form);
            out.scales[b] = scale;
            for j in start..start + BLOCK {
                let q = level(w[j], scale, form);
                out.levels[j] = q;
                let err = (w[j] - q as f64 * scale) / u[j * cols + j];
                let u_row = &u[j * cols..(j + 1) * cols];
                for (wk, &ujk) in w[j + 1..].iter_mut().zip(&u_row[j + 1..]) {
                    *wk -= err * ujk;
                }
            }
        }
    }))
}

/// The per-row result of a rounding: each weight's level (−127 … 127 or −8 … 7) and each
/// block's scale.
struct RowLevels {
    levels: Vec<i8>,
    scales: Vec<f64>,
}

/// Runs `round` on every row (in parallel) and packs the rows into the stored layout.
fn round_rows(
    w: &[f32],
    rows: usize,
    cols: usize,
    form: Quant,
    round: impl Fn(&[f32], &mut RowLevels) + Sync,
) -> RoundedMatrix {
    assert!(
        matches!(form, Quant::Q8 | Quant::Q4),
        "{form} is not a block format"
    );
    assert!(cols.is_multiple_of(BLOCK) && w.len() == rows * cols);
    let blocks = cols / BLOCK;
    let value_bytes = if form == Quant::Q8 { cols } else { cols / 2 };
    let mut values = vec![0u8; rows * value_bytes];
    let mut scales = vec![0u8; rows * blocks * 2];
    values
        .par_chunks_mut(value_bytes)
        .zip(scales.par_chunks_mut(blocks * 2))
        .zip(w.par_chunks(cols))
        .for_each(|((values, scales), row)| {
            let mut out = RowLevels {
                levels: vec![0; cols],
                scales: vec![0.0; blocks],
            };
            round(row, &mut out);
            for (bytes, &s) in scales.chunks_exact_mut(2).zip(&out.scales) {
                bytes.copy_from_slice(&f16::from_f64(s).to_le_bytes());
            }
            match form {
                Quant::Q8 => {
                    for (v, &q) in values.iter_mut().zip(&out.levels) {
                        *v = q as u8;
                    }
                }
                _ => {
                    for (vb, qb) in values
                        .chunks_exact_mut(BLOCK / 2)
                        .zip(out.levels.chunks_exact(BLOCK))
                    {
                        for j in 0..BLOCK / 2 {
                            let lo = (qb[j] + 8) as u8;
                            let hi = (qb[j + BLOCK / 2] + 8) as u8;
                            vb[j] = lo | (hi << 4);
                        }
                    }
                }
            }
        });
    RoundedMatrix { values, scales }
}

/// The level of `x` under `scale` (value = level · scale): the nearest, halves away from zero,
/// clamped to the format's range (−127 … 127 for Q8_0, −8 … 7 for Q4_0).
fn level(x: f64, scale: f64, form: Quant) -> i8 {
    if scale == 0.0 || !x.is_finite() {
        return 0;
    }
    let (lo, hi) = if form == Quant::Q8 {
        (-127.0, 127.0)
    } else {
        (-8.0, 7.0)
    };
    (x / scale).round().clamp(lo, hi) as i8
}

/// The block's scale, already rounded to f16 (what is stored). Q8_0: max|x| / 127. Q4_0: of
/// the scales that map the largest-magnitude weight to a level between ±6.5 and ±8.5 (and
/// each one's least-squares refit to the levels it gives), the one with the least squared
/// error.
fn block_scale(block: &[f64], form: Quant) -> f64 {
    let to_f16 = |s: f64| f16::from_f64(s).to_f64();
    let extreme = block
        .iter()
        .copied()
        .fold(0f64, |m, x| if x.abs() > m.abs() { x } else { m });
    if extreme == 0.0 || !extreme.is_finite() {
        return 0.0;
    }
    if form == Quant::Q8 {
        return to_f16(extreme.abs() / 127.0);
    }
    let squared_error = |scale: f64| -> f64 {
        block
            .iter()
            .map(|&x| {
                let e = x - level(x, scale, form) as f64 * scale;
                e * e
            })
            .sum()
    };
    let mut best = (f64::INFINITY, 0.0);
    for target in [-8.0, 7.0] {
        for step in -12..=12 {
            let t: f64 = target * (1.0 + step as f64 * 0.0125);
            let scale = to_f16(extreme / t);
            // Least-squares refit of the scale to the levels this one gives.
            let (num, den) = block.iter().fold((0.0, 0.0), |(n, d), &x| {
                let q = level(x, scale, form) as f64;
                (n + x * q, d + q * q)
            });
            let refit = if den > 0.0 { to_f16(num / den) } else { scale };
            for s in [scale, refit] {
                let e = squared_error(s);
                if s != 0.0 && e < best.0 {
                    best = (e, s);
                }
            }
        }
    }
    best.1
}

/// U, upper triangular [n, n] row-major, with (H + λI)⁻¹ = Uᵀ U: GPTQ's "Cholesky form of
/// the inverse Hessian". With J the order-reversing permutation and J(H + λI)J = L Lᵀ,
/// H + λI = R Rᵀ for the upper-triangular R = J L J, so (H + λI)⁻¹ = (R⁻¹)ᵀ R⁻¹ and
/// U = R⁻¹ = J L⁻¹ J. Input directions the calibration never exercised (zero diagonal) get a
/// diagonal of 1.
fn inverse_cholesky_upper(gram: &[f64], n: usize) -> Result<Vec<f64>> {
    if gram.iter().any(|g| !g.is_finite()) {
        return Err(Error::Input(
            "GPTQ: the calibration inputs are not finite".into(),
        ));
    }
    let mean_diag = (0..n).map(|i| gram[i * n + i]).sum::<f64>() / n as f64;
    let damp = DAMPING * if mean_diag > 0.0 { mean_diag } else { 1.0 };
    let rev = |i: usize| n - 1 - i;
    let h = nalgebra::DMatrix::from_fn(n, n, |i, j| {
        let (a, b) = (rev(i), rev(j));
        let mut v = gram[a * n + b];
        if a == b {
            v = if v > 0.0 { v } else { 1.0 } + damp;
        }
        v
    });
    let l = nalgebra::Cholesky::new(h)
        .ok_or_else(|| {
            Error::Input("GPTQ: the inputs' Gram matrix is not positive definite".into())
        })?
        .unpack();
    let l_inv = l
        .solve_lower_triangular(&nalgebra::DMatrix::identity(n, n))
        .ok_or_else(|| Error::Input("GPTQ: singular Cholesky factor".into()))?;
    let mut u = vec![0f64; n * n];
    for i in 0..n {
        for j in i..n {
            u[i * n + j] = l_inv[(rev(i), rev(j))];
        }
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dequantize(m: &RoundedMatrix, rows: usize, cols: usize, form: Quant) -> Vec<f64> {
        let blocks = cols / BLOCK;
        let mut out = vec![0f64; rows * cols];
        for r in 0..rows {
            for b in 0..blocks {
                let k = r * blocks + b;
                let s = f16::from_le_bytes([m.scales[2 * k], m.scales[2 * k + 1]]).to_f64();
                for j in 0..BLOCK {
                    let q = match form {
                        Quant::Q8 => m.values[r * cols + b * BLOCK + j] as i8 as f64,
                        _ => {
                            let byte = m.values[r * cols / 2 + b * BLOCK / 2 + j % (BLOCK / 2)];
                            let nib = if j < BLOCK / 2 { byte & 15 } else { byte >> 4 };
                            nib as f64 - 8.0
                        }
                    };
                    out[r * cols + b * BLOCK + j] = q * s;
                }
            }
        }
        out
    }

    /// A small deterministic pseudo-random sequence in [-1, 1).
    fn noise(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn nearest_rounding_is_within_half_a_step_and_keeps_the_layout() {
        let (rows, cols) = (3, 64);
        let w: Vec<f32> = noise(rows * cols, 1).iter().map(|&x| x as f32).collect();
        for form in [Quant::Q8, Quant::Q4] {
            let m = round_nearest(&w, rows, cols, form);
            assert_eq!(m.scales.len(), rows * cols / BLOCK * 2);
            let dq = dequantize(&m, rows, cols, form);
            for r in 0..rows {
                for b in 0..cols / BLOCK {
                    let k = r * cols / BLOCK + b;
                    let s = f16::from_le_bytes([m.scales[2 * k], m.scales[2 * k + 1]]).to_f64();
                    for j in 0..BLOCK {
                        let i = r * cols + b * BLOCK + j;
                        let err = (w[i] as f64 - dq[i]).abs();
                        // Q4_0's searched scale may clip the largest weight a little.
                        let bound = if form == Quant::Q8 { 0.5 } else { 1.5 };
                        assert!(
                            err <= bound * s.abs() + 1e-12,
                            "{form} {i}: {err} > {bound}·{s}"
                        );
                    }
                }
            }
        }
        // A zero block gets scale 0 and level 0.
        let m = round_nearest(&[0f32; 32], 1, 32, Quant::Q8);
        assert!(m.values.iter().all(|&v| v == 0) && m.scales == [0, 0]);
    }

    #[test]
    fn q4_scale_search_is_no_worse_than_the_ggml_reference_scale() {
        let w = noise(32 * 200, 7);
        for block in w.chunks_exact(32) {
            let ours = block_scale(block, Quant::Q4);
            let extreme = block
                .iter()
                .fold(0f64, |m, &x| if x.abs() > m.abs() { x } else { m });
            let reference = f16::from_f64(extreme / -8.0).to_f64();
            let err = |s: f64| -> f64 {
                block
                    .iter()
                    .map(|&x| (x - level(x, s, Quant::Q4) as f64 * s).powi(2))
                    .sum()
            };
            assert!(err(ours) <= err(reference) + 1e-15);
        }
    }

    /// GPTQ's point: on inputs with correlated, unequal features, the layer's output error
    /// ‖X(W − Ŵ)ᵀ‖ is smaller than nearest rounding's, for both formats.
    #[test]
    fn gptq_lowers_the_output_error_on_the_calibration_inputs() {
        let (rows, cols, n) = (8, 64, 400);
        let w: Vec<f32> = noise(rows * cols, 3).iter().map(|&x| x as f32).collect();
        // Inputs: a few strong shared directions plus noise, one outlier feature.
        let base = noise(n * 4, 5);
        let mix = noise(4 * cols, 9);
        let extra = noise(n * cols, 11);
        let x: Vec<f64> = (0..n * cols)
            .map(|i| {
                let (s, c) = (i / cols, i % cols);
                let shared: f64 = (0..4).map(|k| base[s * 4 + k] * mix[k * cols + c]).sum();
                let outlier = if c == 5 { 20.0 } else { 1.0 };
                outlier * (shared + 0.1 * extra[i])
            })
            .collect();
        let mut gram = vec![0f64; cols * cols];
        for s in 0..n {
            let row = &x[s * cols..(s + 1) * cols];
            for a in 0..cols {
                for b in 0..cols {
                    gram[a * cols + b] += row[a] * row[b];
                }
            }
        }
        let g = InputGram {
            dim: cols,
            rows: n,
            gram,
        };
        let output_error = |dq: &[f64]| -> f64 {
            let mut total = 0.0;
            for s in 0..n {
                for r in 0..rows {
                    let e: f64 = (0..cols)
                        .map(|c| x[s * cols + c] * (w[r * cols + c] as f64 - dq[r * cols + c]))
                        .sum();
                    total += e * e;
                }
            }
            total
        };
        for form in [Quant::Q8, Quant::Q4] {
            let near = output_error(&dequantize(
                &round_nearest(&w, rows, cols, form),
                rows,
                cols,
                form,
            ));
            let gptq = output_error(&dequantize(
                &round_gptq(&w, rows, cols, form, &g).unwrap(),
                rows,
                cols,
                form,
            ));
            assert!(gptq < 0.8 * near, "{form}: GPTQ {gptq} vs nearest {near}");
        }
    }

    #[test]
    fn inverse_cholesky_factor_reconstructs_the_damped_inverse() {
        let n = 5;
        let a = noise(n * n, 13);
        // H = AᵀA + I: symmetric positive definite.
        let mut h = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..n {
                h[i * n + j] = (0..n).map(|k| a[k * n + i] * a[k * n + j]).sum::<f64>()
                    + if i == j { 1.0 } else { 0.0 };
            }
        }
        let u = inverse_cholesky_upper(&h, n).unwrap();
        let mean_diag = (0..n).map(|i| h[i * n + i]).sum::<f64>() / n as f64;
        // (UᵀU)(H + λI) = I.
        for i in 0..n {
            for j in 0..n {
                assert!(i <= j || u[i * n + j] == 0.0);
                let v: f64 = (0..n)
                    .map(|k| {
                        let utu: f64 = (0..n).map(|m| u[m * n + i] * u[m * n + k]).sum();
                        utu * (h[k * n + j] + if k == j { DAMPING * mean_diag } else { 0.0 })
                    })
                    .sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((v - want).abs() < 1e-9, "({i},{j}) = {v}");
            }
        }
    }
}
