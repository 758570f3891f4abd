//! Greedy decoding's token choice over a quantized output projection: an 8-bit pass proposes,
//! the exact product decides. Same token and same score as the argmax of `PackedMatrix::matmul`
//! (plus bias), in about 3/4 of that product's time at 16 rows (BENCHMARKS.md, 2026-12-01).
//!
//! Greedy search needs each row's best logit only, but the output projection (V × D, 59 514 ×
//! 512 for opus-mt: about half of a decoding step's multiply-adds) computes all of them. Here
//! they are first computed with activations rounded to 8 bits (`vpdpbusd` on AVX-512 VNNI:
//! twice the products per instruction of the 16-bit kernel, and no widening of the weights),
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
    /// The reference arithmetic, for tests on any CPU.
    #[cfg_attr(not(test), allow(dead_code))]
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
}

impl Pass {
    /// The pass that pays off beside `kernel`: AVX-512 VNNI's `vpdpbusd` only. WebAssembly SIMD
    /// has no 8-bit dot product, and on AVX2 `pmaddubsw` + `pmaddwd` do a quad in 3/4 of the
    /// 16-bit kernel's instructions, which the selection's own cost ate (measured: no gain).
    /// Switched off by `MARIAN_GREEDY_PROPOSAL=0` (to measure what it gains).
    fn for_kernel(kernel: Kernel) -> Option<Pass> {
        if std::env::var("MARIAN_GREEDY_PROPOSAL").as_deref() == Ok("0") {
            return None;
        }
        match kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni => Some(Pass::Avx512Vnni),
            _ => None,
        }
    }

    /// Levels per side of the 8-bit activations.
    fn levels(self) -> i32 {
        127
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

/// Activations rounded to 8 bits per block of 32 and offset to unsigned:
/// `u = round(x · L / amax) + L + 1`, scale `amax / L`.
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

/// One row's choice: its activations, their blocks' magnitudes, bias and extra.
struct Row<'a> {
    matrix: &'a PackedMatrix,
    tables: &'a Tables,
    x: &'a [f32],
    amax: &'a [f32],
    bias: &'a [f32],
    extra: Option<(&'a [u32], &'a [f32])>,
    /// With a residual, c such that c·‖r_i‖₂ bounds what it adds to output i (the residual
    /// screen's bound, `model::screened_head`); 0 without one.
    residual_c: f32,
}

impl Row<'_> {
    /// The best (id, exact logit) from the row's proposals `pre` ([V], bias and extra added).
    fn choose(&self, pre: &[f32], banned: &[u32]) -> Option<(u32, f32)> {
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
            // Whole chunks below the cut are skipped by a comparison that vectorizes.
            if !chunk.iter().fold(false, |any, &p| any | (p >= cut)) {
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

/// The first index holding `value`: whole chunks without it are passed over by a comparison
/// that vectorizes (a plain `position` stays scalar: 3.5 % of batch 16's time in perf).
fn first_position(pre: &[f32], value: f32) -> Option<usize> {
    pre.chunks(LANES).enumerate().find_map(|(c, chunk)| {
        if !chunk.iter().fold(false, |any, &p| any | (p == value)) {
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
mod avx512 {
    use super::{BLOCK, GROUP, GROUP_BLOCK_VALUES};
    use std::arch::x86_64::*;

    const QUADS: usize = BLOCK / 4;
    /// How far ahead of the kernel the weights are prefetched, in bytes.
    const PREFETCH_AHEAD: usize = 16 * GROUP_BLOCK_VALUES;

    /// Word 2f of a quad vector takes feature f's pair from the first 32 bytes of two pair rows,
    /// word 2f + 1 its pair from the next 32: four consecutive inputs of feature f per lane.
    static QUAD_INDEX: [u16; 32] = {
        let mut t = [0u16; 32];
        let mut f = 0;
        while f < 16 {
            t[2 * f] = f as u16;
            t[2 * f + 1] = 16 + f as u16;
            f += 1;
        }
        t
    };

    /// `out.len()` rows × 16 proposals. Per block the 8 quads of weights are permuted once into
    /// registers and serve every row: per row, 8 `vpdpbusd` (4 u8 × i8 products summed into each
    /// i32 lane) against broadcast activations, in two chains.
    /// Safety: the CPU has AVX-512 F/BW/VNNI; slices are as `portable_tile` takes them.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn tile(
        w: &[i8],
        s: &[f32],
        offsets: &[i32],
        a: &[u8],
        da: &[f32],
        blocks: usize,
        out: &mut [[f32; GROUP]],
    ) -> usize {
        let (cols, m) = (blocks * BLOCK, out.len());
        assert!(w.len() >= blocks * GROUP_BLOCK_VALUES && s.len() >= blocks * GROUP);
        assert!(offsets.len() >= blocks * GROUP);
        assert!(a.len() >= m * cols && da.len() >= m * blocks);
        let index = _mm512_loadu_si512(QUAD_INDEX.as_ptr().cast());
        for o in out.iter_mut() {
            *o = [0f32; GROUP];
        }
        let mut wq = [_mm512_setzero_si512(); QUADS];
        for b in 0..blocks {
            let wb = w.as_ptr().add(b * GROUP_BLOCK_VALUES);
            for q in 0..QUADS {
                wq[q] = _mm512_permutexvar_epi16(index, _mm512_loadu_si512(wb.add(q * 64).cast()));
                // The weights stream from memory once per product: ask for them ahead
                // (harmless past the end: prefetches do not fault).
                _mm_prefetch::<_MM_HINT_T0>(wb.wrapping_add(PREFETCH_AHEAD + q * 64).cast());
            }
            let ov = _mm512_loadu_si512(offsets.as_ptr().add(b * GROUP).cast());
            let sv = _mm512_loadu_ps(s.as_ptr().add(b * GROUP));
            let mut r = 0;
            while r + 4 <= m {
                rows::<4>(&wq, ov, sv, a, da, blocks, b, r, out);
                r += 4;
            }
            while r < m {
                rows::<1>(&wq, ov, sv, a, da, blocks, b, r, out);
                r += 1;
            }
        }
        m
    }

    /// Block `b` of rows `first .. first + R`: 2·R independent chains of `vpdpbusd` (the
    /// scheduler overlaps them; one chain per row would wait on its own latency).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn rows<const R: usize>(
        wq: &[__m512i; QUADS],
        ov: __m512i,
        sv: __m512,
        a: &[u8],
        da: &[f32],
        blocks: usize,
        b: usize,
        first: usize,
        out: &mut [[f32; GROUP]],
    ) {
        let cols = blocks * BLOCK;
        let mut sums = [[ov, _mm512_setzero_si512()]; R];
        for q in 0..QUADS {
            for i in 0..R {
                let at = a.as_ptr().add((first + i) * cols + b * BLOCK + 4 * q) as *const i32;
                let x = _mm512_set1_epi32(at.read_unaligned());
                sums[i][q % 2] = _mm512_dpbusd_epi32(sums[i][q % 2], x, wq[q]);
            }
        }
        for i in 0..R {
            let sum = _mm512_cvtepi32_ps(_mm512_add_epi32(sums[i][0], sums[i][1]));
            let d = _mm512_set1_ps(*da.get_unchecked((first + i) * blocks + b));
            let o = out[first + i].as_mut_ptr();
            _mm512_storeu_ps(
                o,
                _mm512_fmadd_ps(sum, _mm512_mul_ps(sv, d), _mm512_loadu_ps(o)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
    }

    /// A q8 matrix whose rows differ in scale, and a few exact duplicates of row 3 (ties).
    fn matrix(rows: usize, cols: usize, seed: u64) -> PackedMatrix {
        let mut s = seed;
        let mut values: Vec<u8> = (0..rows * cols)
            .map(|_| (lcg(&mut s) * 127.0).round() as i8 as u8)
            .collect();
        for dup in [7, rows - 1] {
            let src = values[3 * cols..4 * cols].to_vec();
            values[dup * cols..(dup + 1) * cols].copy_from_slice(&src);
        }
        let scales: Vec<u8> = (0..rows * cols / BLOCK)
            .flat_map(|b| {
                let scale = if (3..4).contains(&(b / (cols / BLOCK))) || b / (cols / BLOCK) == 7 {
                    0.01
                } else {
                    0.002 + lcg(&mut s).abs() * 0.02
                };
                half::f16::from_f32(scale).to_le_bytes()
            })
            .collect();
        let mut m = PackedMatrix::from_q8(rows, cols, &values, &scales);
        // Row rows-1 copies row 3's values; give it row 3's scales too.
        let blocks = cols / BLOCK;
        for b in 0..blocks {
            let (g3, l3) = (3 / GROUP, 3 % GROUP);
            let (g, l) = ((rows - 1) / GROUP, (rows - 1) % GROUP);
            m.scales[(g * blocks + b) * GROUP + l] = m.scales[(g3 * blocks + b) * GROUP + l3];
        }
        m
    }

    /// The full product's greedy choice, as the generation loop makes it.
    fn reference(
        w: &PackedMatrix,
        x: &[f32],
        m: usize,
        bias: &[f32],
        extra: Option<(&[u32], &[f32])>,
        banned: &[u32],
    ) -> Vec<(u32, f32)> {
        let mut y = w.matmul(x, m);
        let rows = w.dims().0;
        for (r, row) in y.chunks_exact_mut(rows).enumerate() {
            for (v, b) in row.iter_mut().zip(bias) {
                *v += b;
            }
            if let Some((ids, e)) = extra {
                for (j, &id) in ids.iter().enumerate() {
                    row[id as usize] += e[r * ids.len() + j];
                }
            }
        }
        let select = crate::generate::Select {
            k: 1,
            log_softmax: false,
            banned,
            forced: None,
        };
        y.chunks_exact(rows)
            .map(|row| crate::generate::top_k_of_row(row, &select)[0])
            .collect()
    }

    fn passes() -> Vec<Pass> {
        let mut all = vec![Pass::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if Kernel::available().contains(&Kernel::Avx512Vnni) {
                all.push(Pass::Avx512Vnni);
            }
        }
        all
    }

    #[test]
    fn the_choice_is_the_full_products_argmax_bit_for_bit() {
        let mut checked = 0;
        for (rows, cols, m, seed) in [
            (301, 64, 5, 1u64),
            (1000, 512, 17, 2),
            (77, 96, 3, 3),
            (40, 32, 1, 4),
        ] {
            for with_residual in [false, true] {
                let w = matrix(rows, cols, seed);
                // A residual (`convert --residual`) breaks the ties of rows 3, 7 and rows-1: only
                // its products decide between them.
                let w = if with_residual {
                    let mut s = seed * 7;
                    let nibbles: Vec<u8> = (0..rows * cols / 2)
                        .map(|_| ((lcg(&mut s) + 1.0) * 127.9) as u8)
                        .collect();
                    let fine: Vec<u8> = (0..rows * cols / BLOCK)
                        .flat_map(|_| half::f16::from_f32(0.004).to_le_bytes())
                        .collect();
                    w.with_residual(PackedMatrix::from_q4(rows, cols, &nibbles, &fine))
                } else {
                    w
                };
                let mut s = seed * 31;
                // Rows 0 and 1 point along weight row 3 (which rows 7 and rows-1 copy): exact ties.
                let mut x: Vec<f32> = (0..m * cols).map(|_| lcg(&mut s) * 2.0).collect();
                let row3 = w.dequantize_rows(&[3]);
                x[..cols].copy_from_slice(&row3);
                if m > 1 {
                    for (xv, wv) in x[cols..2 * cols].iter_mut().zip(&row3) {
                        *xv = wv * 50.0;
                    }
                }
                // Biases as large as the logits' spread (every fifth id), so that they decide.
                let spread = w.matmul(&x, m).iter().fold(0f32, |a, v| a.max(v.abs()));
                let bias: Vec<f32> = (0..rows)
                    .map(|i| {
                        if i % 5 == 0 {
                            lcg(&mut s) * spread
                        } else {
                            0.0
                        }
                    })
                    .map(|b| if rows > 40 { b } else { 0.0 })
                    .collect();
                let ids = [3u32, 11, 20];
                let extra_values: Vec<f32> =
                    (0..m * ids.len()).map(|_| lcg(&mut s) * 0.3).collect();
                for extra in [None, Some((&ids[..], &extra_values[..]))] {
                    for banned in [&[][..], &[3u32, 0][..]] {
                        let want = reference(&w, &x, m, &bias, extra, banned);
                        for pass in passes() {
                            let tables = Tables::new(&w, pass);
                            let mut scratch = Vec::new();
                            let got = w
                                .greedy_choice_with(
                                    &tables,
                                    &x,
                                    m,
                                    &bias,
                                    extra,
                                    banned,
                                    &mut scratch,
                                )
                                .expect("a choice");
                            for (g, e) in got.iter().zip(&want) {
                                assert_eq!(g.0, e.0, "{pass:?} {rows}x{cols}");
                                assert_eq!(g.1.to_bits(), e.1.to_bits(), "{pass:?}");
                            }
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert!(checked >= 32);
    }

    /// Token 0 leads token 1 by 2 % in the q8 values, beyond the 8-bit pass's bound; token 1's
    /// residual overturns that. Only the residual's own bound keeps token 1 a candidate.
    #[test]
    fn a_residual_can_overturn_the_q8_choice() {
        let (rows, cols, m) = (48, 64, 4);
        let blocks = cols / BLOCK;
        let values = vec![100i8 as u8; rows * cols];
        let scales: Vec<u8> = (0..rows * blocks)
            .flat_map(|b| {
                let scale = match b / blocks {
                    0 => 0.01,
                    1 => 0.0098,
                    _ => 0.0001,
                };
                half::f16::from_f32(scale).to_le_bytes()
            })
            .collect();
        // Nibble 8 is 0; token 1's residual is +7 levels of 0.004 everywhere.
        let nibbles: Vec<u8> = (0..rows * cols / 2)
            .map(|k| if k / (cols / 2) == 1 { 0xff } else { 0x88 })
            .collect();
        let fine: Vec<u8> = (0..rows * blocks)
            .flat_map(|_| half::f16::from_f32(0.004).to_le_bytes())
            .collect();
        let q8 = PackedMatrix::from_q8(rows, cols, &values, &scales);
        let w = q8
            .clone()
            .with_residual(PackedMatrix::from_q4(rows, cols, &nibbles, &fine));
        let mut s = 3;
        let x: Vec<f32> = (0..m * cols).map(|_| 1.0 + lcg(&mut s) * 0.5).collect();
        let bias = vec![0f32; rows];
        let want = reference(&w, &x, m, &bias, None, &[]);
        assert!(want.iter().all(|c| c.0 == 1), "the residual decides");
        assert!(reference(&q8, &x, m, &bias, None, &[])
            .iter()
            .all(|c| c.0 == 0));
        for pass in passes() {
            let tables = Tables::new(&w, pass);
            let got = w
                .greedy_choice_with(&tables, &x, m, &bias, None, &[], &mut Vec::new())
                .expect("a choice");
            for (g, e) in got.iter().zip(&want) {
                assert_eq!((g.0, g.1.to_bits()), (e.0, e.1.to_bits()), "{pass:?}");
            }
        }
    }

    #[test]
    fn the_bound_holds_for_every_output() {
        // Proposals minus exact outputs against the bound, over skewed activations (one large
        // channel per block, as layer norms' gains make them).
        let (rows, cols, m) = (500, 256, 8);
        let w = matrix(rows, cols, 9);
        let mut s = 5;
        let x: Vec<f32> = (0..m * cols)
            .map(|i| lcg(&mut s) * if i % 32 == 5 { 40.0 } else { 1.0 })
            .collect();
        let exact = w.matmul(&x, m);
        let blocks = cols / BLOCK;
        for pass in passes() {
            let t = Tables::new(&w, pass);
            let x8 = Rows8::of(&x, m, cols, pass.levels()).unwrap();
            let mut pre = vec![0f32; m * rows];
            for g in 0..rows.div_ceil(GROUP) {
                let (wv, sv) = w.group(g).unwrap();
                let o = &t.offsets[g * blocks * GROUP..][..blocks * GROUP];
                pass.group(wv, sv, o, &x8, m, blocks, |r, lanes| {
                    for (l, v) in lanes.iter().enumerate() {
                        if g * GROUP + l < rows {
                            pre[r * rows + g * GROUP + l] = *v;
                        }
                    }
                });
            }
            let mut worst = 0f64;
            for r in 0..m {
                for i in 0..rows {
                    let core: f64 = (0..blocks)
                        .map(|b| {
                            t.l1[i * blocks + b] as f64
                                * x8.amax[r * blocks + b] as f64
                                * (0.5 / pass.levels() as f64 + 0.5 / 32767.0)
                        })
                        .sum();
                    let diff = (pre[r * rows + i] - exact[r * rows + i]).abs() as f64;
                    assert!(
                        diff <= core * 1.01 + 1e-6,
                        "{pass:?} ({r},{i}) {diff} > {core}"
                    );
                    worst = worst.max(diff / core.max(1e-30));
                }
            }
            // The worst case is far from reached in practice: the screening is not vacuous.
            assert!(worst < 0.5, "{pass:?}: error reached {worst} of the bound");
        }
    }

    #[test]
    fn non_finite_activations_or_all_banned_fall_back() {
        let w = matrix(40, 64, 2);
        let t = Tables::new(&w, Pass::Portable);
        let bias = vec![0f32; 40];
        let mut x = vec![0.5f32; 64];
        let mut scratch = Vec::new();
        let all: Vec<u32> = (0..40).collect();
        assert!(w
            .greedy_choice_with(&t, &x, 1, &bias, None, &all, &mut scratch)
            .is_none());
        x[9] = f32::NAN;
        assert!(w
            .greedy_choice_with(&t, &x, 1, &bias, None, &[], &mut scratch)
            .is_none());
    }
}

#[cfg(test)]
mod speed {
    use super::*;
    /// `cargo test --release --lib proposal::speed -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn proposal_speed() {
        let (rows, cols) = (59514, 512);
        let mut seed = 1u64;
        let values: Vec<u8> = (0..rows * cols)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                (seed >> 56) as u8
            })
            .collect();
        let scales: Vec<u8> = (0..rows * cols / BLOCK)
            .flat_map(|_| half::f16::from_f32(0.01).to_le_bytes())
            .collect();
        let w = PackedMatrix::from_q8(rows, cols, &values, &scales);
        let bias = vec![0f32; rows];
        for m in [1, 16] {
            let x: Vec<f32> = (0..m * cols)
                .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
                .collect();
            // The fastest of 15 runs each (a shared machine's noise only slows runs down).
            let time = |f: &mut dyn FnMut()| {
                (0..15)
                    .map(|_| {
                        let t = std::time::Instant::now();
                        f();
                        t.elapsed().as_secs_f64()
                    })
                    .fold(f64::INFINITY, f64::min)
            };
            let mut y = vec![0f32; m * rows];
            let full = time(&mut || w.matmul_into(&x, m, &mut y));
            let mut scratch = Vec::new();
            let greedy = time(&mut || {
                std::hint::black_box(w.greedy_choice(&x, m, &bias, None, &[], &mut scratch));
            });
            let tables = w.proposal.get().unwrap().as_ref().unwrap();
            let x8 = Rows8::of(&x, m, cols, tables.pass.levels()).unwrap();
            let blocks = cols / BLOCK;
            let pass = time(&mut || {
                for g in 0..rows.div_ceil(GROUP) {
                    let (wv, sv) = w.group(g).unwrap();
                    let o = &tables.offsets[g * blocks * GROUP..][..blocks * GROUP];
                    tables.pass.group(wv, sv, o, &x8, m, blocks, |r, l| {
                        let at = r * rows + g * GROUP;
                        let width = GROUP.min(rows - g * GROUP);
                        y[at..at + width].copy_from_slice(&l[..width]);
                    });
                }
            });
            println!(
                "m={m} {:?}: full {:.2} ms, greedy {:.2} ms, proposal pass alone (1 thread) {:.2} ms",
                tables.pass,
                full * 1e3,
                greedy * 1e3,
                pass * 1e3
            );
        }
    }
}
