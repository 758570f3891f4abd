//! Greedy decoding's token choice over a quantized output projection: an 8-bit pass proposes,
//! the exact product decides. Same token and same score as the argmax of `PackedMatrix::matmul`
//! (plus bias), in about 3/4 of that product's time at 16 rows (BENCHMARKS.md, 2026-12-01).
//!
//! Greedy search needs each row's best logit only, but the output projection (V × D, 59 514 ×
//! 512 for opus-mt: about half of a decoding step's multiply-adds) computes all of them. Here
//! they are first computed with activations rounded to 8 bits (`vpdpbusd` on AVX-512 VNNI:
//! twice the products per instruction of the 16-bit kernel, and no widening of the weights;
//! 7 bits for WebAssembly's `i32x4.relaxed_dot_i8x16_i7x16_add_s`),
//! with a bound on how far each can lie from the 16-bit kernel's result. Every token whose interval reaches the best lower bound is recomputed exactly as the
//! 16-bit kernel computes it (`exact_output`, the portable kernel's arithmetic, which every
//! kernel matches bit for bit), and the best of those wins, ties to the lower id.
//!
//! The bound (written for this module; the idea is the usual screening of a quantized
//! maximum-inner-product search, here with a worst-case rather than a statistical margin).
//! Per output i, block b of 32 inputs, with q_ij the stored values, d_ib the block's scale and
//! amax_b the activations' largest magnitude in the block: rounding activations to L levels per
//! side moves each by at most 0.5·amax_b/L (the f32 scale adds < 0.1 of that), so a product's
//! error is at most Σ_b c_ib · amax_b · 0.6 / L with c_ib = d_ib · Σ_j |q_ij|; this holds for
//! the 8-bit (L = 127) and the 16-bit (L = 32 767) activations alike, and the f32 accumulation
//! of either adds at most (blocks + 3) · 2⁻²³ · Σ_b c_ib · amax_b. Their sum, with 1 % and a relative 2⁻²⁰ to spare
//! for the bound's own rounding and the bias addition, is B_i ≥ |proposal_i − exact_i|. A token
//! with proposal_i + B_i < max_k (proposal_k − B_k) has exact_i < exact_k: it cannot win.
//!
//! A matrix with a residual (`convert --residual`) proposes from its q8 values alone: B_i adds
//! c·‖r_i‖₂, the Cauchy–Schwarz bound of the residual's product (`residual_bound_factor`), and
//! a candidate's exact output is the q8 output plus the residual's, as `matmul` sums them.

use super::{
    for_each_tile, Kernel, Levels, OutputPtr, PackedMatrix, QuantizedRows, BLOCK, GROUP,
    GROUP_BLOCK_VALUES, PAIRS,
};
use choose::Row;
use rayon::prelude::*;

/// Levels per side of the exact product's 16-bit activations.
const EXACT_LEVELS: f32 = 32767.0;
/// Fewer rows stream the weights from memory at the 16-bit kernel's pace anyway (measured:
/// 1.46 against 1.40 ms for one row of 59 514 × 512), so the selection would be pure cost.
const MIN_ROWS: usize = 4;
/// Past this many candidates in a row (near-ties everywhere) the full product is cheaper.
const MAX_CANDIDATES: usize = 1024;
/// Relative room for the rounding of proposals, bias additions and the bound itself.
const RELATIVE_SLACK: f32 = 1.0 / (1 << 20) as f32;

/// The 8-bit proposal kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Pass {
    /// The reference arithmetic with activations rounded to `levels` per side (127: the
    /// AVX-512 pass's; 63: the relaxed-SIMD pass's), for tests on any CPU.
    #[cfg_attr(not(test), allow(dead_code))]
    Portable { levels: i32 },
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
    #[cfg(all(target_arch = "wasm32", marian_relaxed_simd))]
    Relaxed,
}

impl Pass {
    /// The pass that pays off beside `kernel`: AVX-512 VNNI's `vpdpbusd`, and WebAssembly's
    /// relaxed-SIMD dot product in a build that enables it (`scripts/build-wasm.sh --relaxed`;
    /// plain SIMD128 has no 8-bit dot product). Not on AVX2: `pmaddubsw` + `pmaddwd` do a quad
    /// in 3/4 of the 16-bit kernel's instructions, which the selection's own cost ate (measured:
    /// no gain). In Chromium the relaxed pass gained 20 % at batch 16 (1 thread) where V8 has
    /// AVX-VNNI (BENCHMARKS.md, 2026-12-05 (late)) and lost 8–13 % on a Zen 4 EPYC where it has
    /// not (2026-12-06): it runs where a timing of its kernel says it pays (`relaxed_probe`).
    /// Switched off by `MARIAN_GREEDY_PROPOSAL=0` (to measure what it gains).
    fn for_kernel(kernel: Kernel) -> Option<Pass> {
        if std::env::var("MARIAN_GREEDY_PROPOSAL").as_deref() == Ok("0") {
            return None;
        }
        match kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni => Some(Pass::Avx512Vnni),
            // Where the engine's relaxed dot product is fast enough (measured once).
            #[cfg(all(target_arch = "wasm32", marian_relaxed_simd))]
            Kernel::Simd128 => relaxed_probe::pays_off().then_some(Pass::Relaxed),
            _ => None,
        }
    }

    /// Levels per side of the proposal's activations (8 bits; 7 for the relaxed-SIMD pass).
    fn levels(self) -> i32 {
        match self {
            Pass::Portable { levels } => levels,
            #[cfg(target_arch = "x86_64")]
            Pass::Avx512Vnni => 127,
            // Its second operand must keep the top bit clear: u = q + 64 ≤ 127.
            #[cfg(all(target_arch = "wasm32", marian_relaxed_simd))]
            Pass::Relaxed => 63,
        }
    }

    /// One group's 16 proposals for every row, handed to `emit(row, lanes)`.
    #[allow(clippy::too_many_arguments)]
    fn group(
        self,
        w: &[i8],
        s: &[f32],
        offsets: &[i32],
        x8: &Rows8,
        m: usize,
        blocks: usize,
        emit: impl FnMut(usize, &[f32; GROUP]),
    ) {
        let cols = blocks * BLOCK;
        let tile_rows = match self {
            #[cfg(target_arch = "x86_64")]
            Pass::Avx512Vnni => 16,
            #[cfg(all(target_arch = "wasm32", marian_relaxed_simd))]
            Pass::Relaxed => 16,
            _ => 4,
        };
        for_each_tile(m, tile_rows, emit, |r0, tile, out| {
            let a = &x8.values[r0 * cols..(r0 + tile) * cols];
            let da = &x8.scales[r0 * blocks..(r0 + tile) * blocks];
            // SAFETY (unsafe arms): `for_kernel` chose the pass from a kernel this CPU runs, so
            // it has the features; the slices hold `tile` rows as the kernels read them.
            match (self, tile) {
                #[cfg(target_arch = "x86_64")]
                (Pass::Avx512Vnni, _) => unsafe {
                    avx512::tile(w, s, offsets, a, da, blocks, &mut out[..tile])
                },
                #[cfg(all(target_arch = "wasm32", marian_relaxed_simd))]
                (Pass::Relaxed, _) => unsafe {
                    relaxed::tile(w, s, offsets, a, da, blocks, &mut out[..tile])
                },
                _ => portable_tile(w, s, offsets, a, da, blocks, &mut out[..tile]),
            }
        });
    }
}

/// What the proposal pass and its bound read besides the matrix itself.
#[derive(Debug, Clone)]
pub(super) struct Tables {
    pass: Pass,
    /// [groups][blocks][GROUP]: −(levels + 1) · Σ_{j∈b} q_ij, where each block's integer sum
    /// starts, taking back what the offset that makes the activations unsigned adds to it.
    offsets: Vec<i32>,
    /// [rows][blocks]: c_ib = d_ib · Σ_{j∈b} |q_ij|.
    l1: Vec<f32>,
    /// max over rows of Σ_b c_ib.
    l1_max: f32,
    /// max over rows of ‖r_i‖₂ of the matrix's residual (0 without one).
    residual_norm_max: f32,
}

impl Tables {
    fn new(w: &PackedMatrix, pass: Pass) -> Self {
        let blocks = w.blocks();
        let groups = w.rows.div_ceil(GROUP);
        let offset = pass.levels() + 1;
        let mut offsets = vec![0i32; groups * blocks * GROUP];
        let mut l1 = vec![0f32; w.rows * blocks];
        for r in 0..w.rows {
            let (g, lane) = (r / GROUP, r % GROUP);
            for b in 0..blocks {
                let base = (g * blocks + b) * GROUP_BLOCK_VALUES;
                let (mut sum, mut abs) = (0i32, 0i32);
                for p in 0..PAIRS {
                    for e in 0..2 {
                        let q = w.values.get(base + p * GROUP * 2 + lane * 2 + e);
                        sum += q;
                        abs += q.abs();
                    }
                }
                offsets[(g * blocks + b) * GROUP + lane] = -offset * sum;
                l1[r * blocks + b] = w.scales[(g * blocks + b) * GROUP + lane].abs() * abs as f32;
            }
        }
        let l1_max = l1
            .chunks_exact(blocks)
            .map(|c| c.iter().sum::<f32>())
            .fold(0f32, f32::max);
        Tables {
            pass,
            offsets,
            l1,
            l1_max,
            residual_norm_max: w.residual_norms().iter().fold(0f32, |m, &n| m.max(n)),
        }
    }
}

/// Activations rounded to L levels per side per block of 32 (8 bits: L = 127; 7 bits: L = 63) and
/// offset to unsigned: `u = round(x · L / amax) + L + 1`, scale `amax / L`.
struct Rows8 {
    /// [m, cols]
    values: Vec<u8>,
    /// [m, blocks]
    scales: Vec<f32>,
    /// [m, blocks] the blocks' largest magnitudes (for the bound).
    amax: Vec<f32>,
}

impl Rows8 {
    /// None when an activation is NaN or infinite.
    fn of(x: &[f32], m: usize, cols: usize, levels: i32) -> Option<Self> {
        let blocks = cols / BLOCK;
        let mut values = vec![0u8; m * cols];
        let mut scales = vec![0f32; m * blocks];
        let mut amaxes = vec![0f32; m * blocks];
        let l = levels as f32;
        for (((xb, ub), s), am) in x
            .chunks_exact(BLOCK)
            .zip(values.chunks_exact_mut(BLOCK))
            .zip(scales.iter_mut())
            .zip(amaxes.iter_mut())
        {
            let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
            if !amax.is_finite() || xb.iter().any(|v| v.is_nan()) {
                return None;
            }
            let inv = if amax > 0.0 { l / amax } else { 0.0 };
            for (u, &v) in ub.iter_mut().zip(xb) {
                let q = (v * inv).round().clamp(-l, l) as i32;
                *u = (q + levels + 1) as u8;
            }
            *s = amax / l;
            *am = amax;
        }
        Some(Rows8 {
            values,
            scales,
            amax: amaxes,
        })
    }
}

impl PackedMatrix {
    /// Greedy decoding's choice over this output projection ([V, D]) for `m` rows of
    /// activations `x` ([m, D] row-major): per row the id with the highest logit
    /// `y_i + bias_i (+ extra_i)` and that logit, where y = x·Wᵀ as `matmul` computes it, bias
    /// is [V] and `extra` optional (ids [K], values [m, K]) added after it; ids in `banned` are
    /// never chosen; ties go to the lower id. Bit for bit what scanning `matmul`'s result gives.
    /// `scratch` is a buffer the caller keeps between calls (resized to [m, V]).
    /// None for fewer than `MIN_ROWS` rows, where no proposal kernel runs on this CPU, an activation is not finite, every id is
    /// banned or a row has near-ties everywhere: the caller then computes the full product.
    pub fn greedy_choice(
        &self,
        x: &[f32],
        m: usize,
        bias: &[f32],
        extra: Option<(&[u32], &[f32])>,
        banned: &[u32],
        scratch: &mut Vec<f32>,
    ) -> Option<Vec<(u32, f32)>> {
        if m < MIN_ROWS {
            return None;
        }
        let tables = self
            .proposal
            .get_or_init(
                || match (&self.values, Pass::for_kernel(Kernel::detect())) {
                    // The passes read 8-bit levels; a folded residual's 12-bit ones have none.
                    (Levels::I8(_), Some(p)) => Some(Tables::new(self, p)),
                    _ => None,
                },
            )
            .as_ref()?;
        self.greedy_choice_with(tables, x, m, bias, extra, banned, scratch)
    }

    #[allow(clippy::too_many_arguments)]
    fn greedy_choice_with(
        &self,
        tables: &Tables,
        x: &[f32],
        m: usize,
        bias: &[f32],
        extra: Option<(&[u32], &[f32])>,
        banned: &[u32],
        scratch: &mut Vec<f32>,
    ) -> Option<Vec<(u32, f32)>> {
        let (rows, cols, blocks) = (self.rows, self.cols, self.blocks());
        assert_eq!(x.len(), m * cols, "activations are not [m, cols]");
        assert_eq!(bias.len(), rows, "bias is not [V]");
        let x8 = Rows8::of(x, m, cols, tables.pass.levels())?;
        scratch.resize(m * rows, 0.0);
        let out = OutputPtr(scratch.as_mut_ptr());
        self.for_each_group(m, |g| {
            let (w, s) = self
                .group(g)
                .expect("proposal tables are made for 8-bit levels only");
            let o = &tables.offsets[g * blocks * GROUP..][..blocks * GROUP];
            let width = GROUP.min(rows - g * GROUP);
            tables.pass.group(w, s, o, &x8, m, blocks, |r, lanes| {
                // SAFETY: as in `matmul_on`: groups write disjoint columns of rows < m.
                unsafe { out.write_lanes(r * rows + g * GROUP, lanes, width) }
            });
        });
        // Bias and extra added as the full product's logits get them (`Marian::logits_into`).
        crate::model::add_bias_and_extra(scratch, rows, bias, extra);
        let k = extra.map_or(0, |(ids, _)| ids.len());
        let proposals = &scratch[..];
        proposals
            .par_chunks_exact(rows)
            .with_min_len(crate::row_shards::split_min(1))
            .enumerate()
            .map(|(r, pre)| {
                let extra = extra.map(|(ids, v)| (ids, &v[r * k..][..k]));
                let xr = &x[r * cols..][..cols];
                let row = Row {
                    matrix: self,
                    tables,
                    x: xr,
                    amax: &x8.amax[r * blocks..][..blocks],
                    bias,
                    extra,
                    residual_c: match self.residual() {
                        Some(_) => super::residual_bound_factor(xr),
                        None => 0.0,
                    },
                };
                row.choose(pre, banned)
            })
            .collect()
    }

    /// Output `i` of the 16-bit product for one row of quantized activations: the portable
    /// kernel's arithmetic (`portable_tile` in the parent module), which every kernel matches.
    fn exact_output(&self, i: usize, xq: &QuantizedRows) -> f32 {
        let blocks = self.blocks();
        let (g, lane) = (i / GROUP, i % GROUP);
        let mut acc = 0f32;
        for b in 0..blocks {
            let base = (g * blocks + b) * GROUP_BLOCK_VALUES;
            let a = &xq.values[b * BLOCK..][..BLOCK];
            let mut isum = 0i32;
            for p in 0..PAIRS {
                let at = base + p * GROUP * 2 + lane * 2;
                isum += self.values.get(at) * a[2 * p] as i32
                    + self.values.get(at + 1) * a[2 * p + 1] as i32;
            }
            acc += isum as f32 * (self.scales[(g * blocks + b) * GROUP + lane] * xq.scales[b]);
        }
        acc
    }
}

/// The reference proposal arithmetic for `out.len()` rows (tests, and CPUs with no vector
/// proposal kernel when a test asks for it).
fn portable_tile(
    w: &[i8],
    s: &[f32],
    offsets: &[i32],
    a: &[u8],
    da: &[f32],
    blocks: usize,
    out: &mut [[f32; GROUP]],
) -> usize {
    let cols = blocks * BLOCK;
    for (r, acc) in out.iter_mut().enumerate() {
        *acc = [0f32; GROUP];
        for b in 0..blocks {
            let wb = &w[b * GROUP_BLOCK_VALUES..][..GROUP_BLOCK_VALUES];
            let ab = &a[r * cols + b * BLOCK..][..BLOCK];
            let d = da[r * blocks + b];
            for (lane, acc) in acc.iter_mut().enumerate() {
                let mut isum = offsets[b * GROUP + lane];
                for j in 0..BLOCK {
                    isum += wb[(j / 2) * GROUP * 2 + lane * 2 + j % 2] as i32 * ab[j] as i32;
                }
                *acc += isum as f32 * (s[b * GROUP + lane] * d);
            }
        }
    }
    out.len()
}

// Row loops index several register arrays and pointer offsets at once.
#[allow(clippy::needless_range_loop)]
#[cfg(target_arch = "x86_64")]
mod avx512;
mod choose;
#[cfg(all(target_arch = "wasm32", marian_relaxed_simd))]
mod relaxed;
#[cfg(all(target_arch = "wasm32", marian_relaxed_simd))]
pub mod relaxed_probe;
#[cfg(test)]
mod speed;
#[cfg(test)]
mod tests;
