//! Matrix products of f32 activations with block-quantized weights (the package's Q8_0 / Q4_0
//! matrices: one f32-exact f16 scale per 32 inputs), for one row (a decoding step at batch 1)
//! and for many (batches, beams, the encoder).
//!
//! Written here rather than taken from candle: candle's quantized CPU matmul is shaped as one
//! vector dot per (row, column), so 16 rows cost 16 passes over the weights and a batch is no
//! faster per token than one sentence; it rounds activations to 8 bits (most of q8's drift
//! from transformers); it splits work over a spin-waiting thread pool that collapses when the
//! machine is busy; and its x86 kernels differ by instruction set. No maintained crate offers a
//! batched int8-weight GEMM for x86, WebAssembly SIMD and plain Rust with one result.
//!
//! The arithmetic, identical on every path (AVX2, WebAssembly SIMD128, portable Rust) and for
//! any thread count, so outputs never depend on the machine:
//! - each activation row is cut into blocks of 32 and rounded to 16 bits with one f32 scale
//!   per block: `da = amax / 32767`, `qa = round(a · 32767 / amax)` (relative error ≤ 1.5e-5,
//!   against 4e-3 for 8-bit activations);
//! - per output and block the 32 products `qw · qa` are summed exactly in i32;
//! - `y += f32(isum) · (dw · da)`, block after block in order, each output by one thread.
//!
//! Layout (built once at load): output features in groups of 16; per group and block, 16 input
//! pairs × 16 features × 2 values as i8, so one 32-byte load sign-extended to i16 feeds
//! `vpdpwssd` (AVX-512 VNNI; `pmaddwd` + add on AVX2, `i32x4.dot_i16x8` in WebAssembly) against
//! a broadcast pair of activations and yields 16 features' partial sums with no horizontal
//! reduction. Scales are kept apart, 16 f32 per group and block. A q8 matrix with its residual
//! folded in (12-bit levels, `from_q8_residual_folded`) has the same layout in i16, loaded
//! without the sign extension: the same products, twice the bytes. Packed instead
//! (`from_q8_residual_packed`, chosen on AVX-512 VNNI CPUs by `from_q8_residual`), each
//! group's block keeps its 512 q8 bytes and after them the residual's 256 bytes of nibbles,
//! and the kernels form `16·q + r` in registers: the same 12-bit levels and bits from 1.5
//! bytes a weight.

use rayon::prelude::*;
use std::sync::Arc;

// Row loops index several register arrays and pointer offsets at once.
#[allow(clippy::needless_range_loop)]
#[cfg(target_arch = "x86_64")]
mod avx2;
#[allow(clippy::needless_range_loop)]
#[cfg(target_arch = "x86_64")]
mod avx512;
mod levels;
mod proposal;
#[cfg(all(target_arch = "wasm32", marian_relaxed_simd))]
pub use proposal::relaxed_probe;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128;
#[cfg(test)]
mod speed;
#[cfg(test)]
mod tests;

use levels::{Form, Level, Levels, PlainLevel, Q8rByte};

/// Inputs per quantization block (GGML's QK8_0 / QK4_0).
pub const BLOCK: usize = 32;
/// Output features per group: the lanes of one 512-bit vector of i32 (two of 256 bits).
const GROUP: usize = 16;
const PAIRS: usize = BLOCK / 2;
/// i8 values of one group's block.
const GROUP_BLOCK_VALUES: usize = BLOCK * GROUP;
/// Activation rows per register tile (AVX2, portable; AVX-512 takes 16).
const ROW_TILE: usize = 4;

/// A [rows, cols] weight matrix (rows = output features, cols = inputs, a multiple of 32),
/// quantized per block of 32 inputs, in the kernel's layout.
#[derive(Debug, Clone)]
pub struct PackedMatrix {
    rows: usize,
    cols: usize,
    /// [groups][blocks][GROUP] scales (0 for the padding features of the last group).
    scales: Vec<f32>,
    /// [groups][blocks][PAIRS][GROUP][2] values.
    values: Levels,
    /// What greedy decoding's 8-bit proposal pass needs, made on first use (output
    /// projections only; `None` where no kernel for it runs).
    proposal: std::sync::OnceLock<Option<proposal::Tables>>,
    /// The Q4_0 rounding of these values' own rounding error (residual quantization,
    /// `package::quant`): when present the matrix is the sum of the two, and every product
    /// is this matrix's product plus the residual's, added element by element.
    residual: Option<Arc<PackedMatrix>>,
    /// [rows]: ‖r_i‖₂ of each row of the residual, rounded up (empty without one): the
    /// Cauchy–Schwarz bound of what the residual adds to a product, for the screens.
    residual_norms: Vec<f32>,
}

/// Activations rounded to 16 bits per block of 32: what the kernel multiplies.
struct QuantizedRows {
    /// [m, cols]
    values: Vec<i16>,
    /// [m, blocks]
    scales: Vec<f32>,
}

impl PackedMatrix {
    /// From GGML Q8_0 values (`rows × cols` i8 as bytes, row-major) and f16 block scales
    /// (`rows × cols / 32` little-endian f16), as a package stores them.
    pub fn from_q8(rows: usize, cols: usize, values: &[u8], scales_f16: &[u8]) -> Self {
        assert_eq!(values.len(), rows * cols, "q8 values");
        let scale = f16_scales(rows, cols, scales_f16);
        Self::build(rows, cols, scale, |r, c| values[r * cols + c] as i8)
    }

    /// From GGML Q4_0 nibbles (`rows × cols / 2` bytes: per block, byte j holds value j in
    /// its low nibble and value j + 16 in its high one, each offset by 8) and f16 scales.
    pub fn from_q4(rows: usize, cols: usize, nibbles: &[u8], scales_f16: &[u8]) -> Self {
        let scale = f16_scales(rows, cols, scales_f16);
        Self::build(rows, cols, scale, q4_levels(rows, cols, nibbles))
    }

    /// A Q8_0 matrix (as `from_q8`) and its Q4_0 residual (nibbles as `from_q4`, under the
    /// scale `s / 16` of each q8 block: `package::quant`), kept as two matrices: products go
    /// through the q8 part and add the residual's (`residual`), and a screened output projection
    /// adds the residual only for its candidates (`model::screened_head`).
    pub fn from_q8_and_residual(
        rows: usize,
        cols: usize,
        values: &[u8],
        scales_f16: &[u8],
        nibbles: &[u8],
    ) -> Self {
        let scale = f16_scales(rows, cols, scales_f16);
        let fine = q4_levels(rows, cols, nibbles);
        let mut packed = vec![0u8; Self::levels_len(rows, cols) / 2];
        let scales = Self::lay_out(
            rows,
            cols,
            |r, b| scale(r, b) / 16.0,
            |i, r, c| packed[i / 2] |= ((fine(r, c) + 8) as u8) << (4 * (i % 2)),
        );
        let fine = Self::with_levels(rows, cols, scales, Levels::Nibbles(packed));
        Self::from_q8(rows, cols, values, scales_f16).with_residual(fine)
    }

    /// The same pair as `from_q8_and_residual` folded into one matrix of 12-bit levels
    /// `16·q + r` under the scale `s / 16` (both exact): one product instead of two, at the
    /// cost of the q8 product alone (the kernels read 16-bit levels where they widened 8-bit
    /// ones). A block's i32 sum stays below 2³¹: 32 · 2040 · 32767 < 2 147 483 647.
    pub fn from_q8_residual_folded(
        rows: usize,
        cols: usize,
        values: &[u8],
        scales_f16: &[u8],
        nibbles: &[u8],
    ) -> Self {
        assert_eq!(values.len(), rows * cols, "q8 values");
        let scale = f16_scales(rows, cols, scales_f16);
        let fine = q4_levels(rows, cols, nibbles);
        Self::build(
            rows,
            cols,
            |r, b| scale(r, b) / 16.0,
            |r, c| 16 * (values[r * cols + c] as i8 as i16) + fine(r, c) as i16,
        )
    }

    /// A Q8_0 matrix and its Q4_0 residual (as `from_q8_and_residual`) as one matrix of 12-bit
    /// levels, in the form this CPU's kernel multiplies fastest: packed
    /// (`from_q8_residual_packed`, 1.5 bytes a weight) where AVX-512 VNNI's 16-row tiles share
    /// each level formed in registers, folded (`from_q8_residual_folded`, 2 bytes) where the
    /// kernel is bound by arithmetic more than by bytes (AVX2's 4-row tiles: −8 % at batch 16
    /// packed; WebAssembly SIMD). Same levels, same bits either way (BENCHMARKS.md 2026-12-05
    /// (evening)).
    pub fn from_q8_residual(
        rows: usize,
        cols: usize,
        values: &[u8],
        scales_f16: &[u8],
        nibbles: &[u8],
    ) -> Self {
        if Kernel::detect().forms_levels_cheaply() {
            Self::from_q8_residual_packed(rows, cols, values, scales_f16, nibbles)
        } else {
            Self::from_q8_residual_folded(rows, cols, values, scales_f16, nibbles)
        }
    }

    /// The same pair and levels as `from_q8_residual_folded` in 1.5 bytes a weight
    /// (`Levels::Q8Nibbles`): the kernels form `16·q + r` as they load, so a product that
    /// streams its weights from memory reads three quarters of the folded form's bytes; the
    /// same bits.
    pub fn from_q8_residual_packed(
        rows: usize,
        cols: usize,
        values: &[u8],
        scales_f16: &[u8],
        nibbles: &[u8],
    ) -> Self {
        assert_eq!(values.len(), rows * cols, "q8 values");
        let scale = f16_scales(rows, cols, scales_f16);
        let fine = q4_levels(rows, cols, nibbles);
        let chunks = Self::levels_len(rows, cols) / GROUP_BLOCK_VALUES;
        // Nibble bytes start at r = 0 (0x88) so the last group's padding lanes are zero too.
        let mut bytes: Vec<Q8rByte> = (0..chunks)
            .flat_map(|_| {
                (0..Q8rByte::BLOCK_LEN)
                    .map(|i| Q8rByte(if i < GROUP_BLOCK_VALUES { 0 } else { 0x88 }))
            })
            .collect();
        let scales = Self::lay_out(
            rows,
            cols,
            |r, b| scale(r, b) / 16.0,
            |i, r, c| {
                let (chunk, k) = (i / GROUP_BLOCK_VALUES, i % GROUP_BLOCK_VALUES);
                let block = &mut bytes[chunk * Q8rByte::BLOCK_LEN..][..Q8rByte::BLOCK_LEN];
                block[k] = Q8rByte(values[r * cols + c]);
                let (at, shift) = Q8rByte::nibble_of(k);
                let byte = &mut block[at].0;
                *byte = (*byte & !(15 << shift)) | (((fine(r, c) + 8) as u8) << shift);
            },
        );
        Self::with_levels(rows, cols, scales, Levels::Q8Nibbles(bytes))
    }

    /// From Q8_0 values given by `value(row, col)` and f16 block scales (as `from_q8`), for a
    /// matrix quantized at load rather than stored quantized.
    pub fn from_q8_values(
        rows: usize,
        cols: usize,
        scales_f16: &[u8],
        value: impl Fn(usize, usize) -> i8,
    ) -> Self {
        Self::build(rows, cols, f16_scales(rows, cols, scales_f16), value)
    }

    /// The kernel's layout of levels `value(row, col)` under scales `scale(row, block)`.
    fn build<W: PlainLevel>(
        rows: usize,
        cols: usize,
        scale: impl Fn(usize, usize) -> f32,
        value: impl Fn(usize, usize) -> W,
    ) -> Self {
        let mut values = vec![W::default(); Self::levels_len(rows, cols)];
        let scales = Self::lay_out(rows, cols, scale, |i, r, c| values[i] = value(r, c));
        Self::with_levels(rows, cols, scales, W::into_levels(values))
    }

    /// How many levels the kernel's layout of a [rows, cols] matrix holds (the last group
    /// padded to 16 rows).
    fn levels_len(rows: usize, cols: usize) -> usize {
        rows.div_ceil(GROUP) * (cols / BLOCK) * GROUP_BLOCK_VALUES
    }

    /// Walks the kernel's layout: `put(index, row, col)` for every weight, and returns the
    /// scales, `scale(row, block)` in layout order.
    fn lay_out(
        rows: usize,
        cols: usize,
        scale: impl Fn(usize, usize) -> f32,
        mut put: impl FnMut(usize, usize, usize),
    ) -> Vec<f32> {
        assert!(
            cols.is_multiple_of(BLOCK),
            "cols {cols} is not a multiple of {BLOCK}"
        );
        let blocks = cols / BLOCK;
        let mut scales = vec![0f32; rows.div_ceil(GROUP) * blocks * GROUP];
        for r in 0..rows {
            let (g, lane) = (r / GROUP, r % GROUP);
            for b in 0..blocks {
                scales[(g * blocks + b) * GROUP + lane] = scale(r, b);
                let base = (g * blocks + b) * GROUP_BLOCK_VALUES;
                for j in 0..BLOCK {
                    put(
                        base + (j / 2) * GROUP * 2 + lane * 2 + j % 2,
                        r,
                        b * BLOCK + j,
                    );
                }
            }
        }
        scales
    }

    fn with_levels(rows: usize, cols: usize, scales: Vec<f32>, values: Levels) -> Self {
        PackedMatrix {
            rows,
            cols,
            scales,
            values,
            proposal: Default::default(),
            residual: None,
            residual_norms: Vec::new(),
        }
    }

    /// This matrix plus `residual` (same dims): its rounding error, stored finer.
    pub fn with_residual(mut self, residual: PackedMatrix) -> Self {
        assert_eq!(self.dims(), residual.dims(), "residual dims");
        self.residual_norms = (0..self.rows)
            .into_par_iter()
            .map(|i| {
                let mut row = vec![0f32; self.cols];
                residual.dequantize_base_row_into(i, &mut row);
                let squares: f64 = row.iter().map(|&v| (v as f64).powi(2)).sum();
                (squares.sqrt() * (1.0 + 1e-6)) as f32
            })
            .collect();
        self.residual = Some(Arc::new(residual));
        self
    }

    /// The residual added to this matrix's values, if any.
    pub fn residual(&self) -> Option<&PackedMatrix> {
        self.residual.as_deref()
    }

    /// ‖r_i‖₂ per row of the residual, rounded up; empty without one.
    pub fn residual_norms(&self) -> &[f32] {
        &self.residual_norms
    }

    pub fn dims(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    fn blocks(&self) -> usize {
        self.cols / BLOCK
    }

    /// Row `r` dequantized into `out` (`cols` floats): `scale · value`, as GGML dequantizes,
    /// plus the residual's `scale · value` when there is one.
    fn dequantize_row_into(&self, r: usize, out: &mut [f32]) {
        self.dequantize_base_row_into(r, out);
        if let Some(residual) = &self.residual {
            let mut fine = vec![0f32; self.cols];
            residual.dequantize_base_row_into(r, &mut fine);
            for (o, f) in out.iter_mut().zip(&fine) {
                *o += f;
            }
        }
    }

    fn dequantize_base_row_into(&self, r: usize, out: &mut [f32]) {
        let blocks = self.blocks();
        let (g, lane) = (r / GROUP, r % GROUP);
        for b in 0..blocks {
            let s = self.scales[(g * blocks + b) * GROUP + lane];
            let base = (g * blocks + b) * GROUP_BLOCK_VALUES;
            for j in 0..BLOCK {
                let q = self
                    .values
                    .get(base + (j / 2) * GROUP * 2 + lane * 2 + j % 2);
                out[b * BLOCK + j] = q as f32 * s;
            }
        }
    }

    /// The whole matrix dequantized, [rows, cols] row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        for (r, row) in out.chunks_exact_mut(self.cols).enumerate() {
            self.dequantize_row_into(r, row);
        }
        out
    }

    /// Rows `ids` dequantized, [ids.len(), cols] row-major (an embedding lookup). Panics on an
    /// id ≥ rows (callers check).
    pub fn dequantize_rows(&self, ids: &[u32]) -> Vec<f32> {
        let mut out = vec![0f32; ids.len() * self.cols];
        for (row, &id) in out.chunks_exact_mut(self.cols).zip(ids) {
            self.dequantize_row_into(id as usize, row);
        }
        out
    }

    /// The matrix of rows `ids` only (in that order), with their stored values and scales: its
    /// products equal those columns of this matrix's products exactly.
    pub fn select_rows(&self, ids: &[u32]) -> Self {
        let blocks = self.blocks();
        let groups = ids.len().div_ceil(GROUP);
        let mut scales = vec![0f32; groups * blocks * GROUP];
        for (r, &id) in ids.iter().enumerate() {
            let (src_g, src_lane) = (id as usize / GROUP, id as usize % GROUP);
            let (g, lane) = (r / GROUP, r % GROUP);
            for b in 0..blocks {
                scales[(g * blocks + b) * GROUP + lane] =
                    self.scales[(src_g * blocks + b) * GROUP + src_lane];
            }
        }
        fn select<W: PlainLevel>(src: impl Fn(usize) -> W, ids: &[u32], blocks: usize) -> Vec<W> {
            let mut values =
                vec![W::default(); ids.len().div_ceil(GROUP) * blocks * GROUP_BLOCK_VALUES];
            for (r, &id) in ids.iter().enumerate() {
                let (src_g, src_lane) = (id as usize / GROUP, id as usize % GROUP);
                let (g, lane) = (r / GROUP, r % GROUP);
                for b in 0..blocks {
                    let from = (src_g * blocks + b) * GROUP_BLOCK_VALUES;
                    let to = (g * blocks + b) * GROUP_BLOCK_VALUES;
                    for p in 0..PAIRS {
                        for e in 0..2 {
                            values[to + p * GROUP * 2 + lane * 2 + e] =
                                src(from + p * GROUP * 2 + src_lane * 2 + e);
                        }
                    }
                }
            }
            values
        }
        let values = match &self.values {
            Levels::I8(v) => Levels::I8(select(|i| v[i], ids, blocks)),
            Levels::I16(v) => Levels::I16(select(|i| v[i], ids, blocks)),
            // A few rows: unpacked.
            Levels::Q8Nibbles(_) => Levels::I16(select(|i| self.values.get(i) as i16, ids, blocks)),
            Levels::Nibbles(_) => Levels::I8(select(|i| self.values.get(i) as i8, ids, blocks)),
        };
        PackedMatrix {
            rows: ids.len(),
            cols: self.cols,
            scales,
            values,
            proposal: Default::default(),
            residual: self.residual.as_ref().map(|r| Arc::new(r.select_rows(ids))),
            residual_norms: if self.residual_norms.is_empty() {
                Vec::new()
            } else {
                ids.iter()
                    .map(|&i| self.residual_norms[i as usize])
                    .collect()
            },
        }
    }

    /// `x · Wᵀ`: x is [m, cols] row-major, the result [m, rows] row-major.
    pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        let mut y = vec![0f32; m * self.rows];
        self.matmul_on(Kernel::detect(), x, m, &mut y);
        y
    }

    /// `matmul` into `y` ([m, rows] row-major, every element overwritten): a caller that keeps
    /// `y` between calls (a decoding step's logits) allocates nothing.
    pub fn matmul_into(&self, x: &[f32], m: usize, y: &mut [f32]) {
        self.matmul_on(Kernel::detect(), x, m, y)
    }

    /// The product with this matrix's own values only, without its residual: what a screened
    /// output projection multiplies every token by (`model::screened_head`).
    pub fn base_matmul_into(&self, x: &[f32], m: usize, y: &mut [f32]) {
        assert_eq!(x.len(), m * self.cols, "activations are not [m, cols]");
        assert_eq!(y.len(), m * self.rows, "result is not [m, rows]");
        let xq = QuantizedRows::of(x, m, self.cols);
        self.products_on(Kernel::detect(), &xq, m, y, false);
    }

    fn matmul_on(&self, kernel: Kernel, x: &[f32], m: usize, y: &mut [f32]) {
        assert_eq!(x.len(), m * self.cols, "activations are not [m, cols]");
        assert_eq!(y.len(), m * self.rows, "result is not [m, rows]");
        let xq = QuantizedRows::of(x, m, self.cols);
        self.products_on(kernel, &xq, m, y, true);
    }

    /// Group by group, every row's outputs: this matrix's product, plus, with `add_residual`
    /// and a residual, the residual's product of the same group added lane by lane before the
    /// write (one pass over the groups, one fork-join).
    fn products_on(
        &self,
        kernel: Kernel,
        xq: &QuantizedRows,
        m: usize,
        y: &mut [f32],
        add_residual: bool,
    ) {
        let residual = self.residual.as_deref().filter(|_| add_residual);
        let out = OutputPtr(y.as_mut_ptr());
        self.for_each_group(m, |g| {
            let fine: Vec<[f32; GROUP]> = match residual {
                Some(r) => {
                    let mut fine = vec![[0f32; GROUP]; m];
                    r.group_products(kernel, g, xq, m, |row, lanes| fine[row] = *lanes);
                    fine
                }
                None => Vec::new(),
            };
            let width = GROUP.min(self.rows - g * GROUP);
            self.group_products(kernel, g, xq, m, |r, lanes| {
                let mut lanes = *lanes;
                if let Some(f) = fine.get(r) {
                    for (l, f) in lanes.iter_mut().zip(f) {
                        *l += f;
                    }
                }
                // SAFETY: `y` outlives the loop, row r < m, and group g alone writes
                // columns g·16 .. g·16 + width of each row (groups are disjoint).
                unsafe { out.write_lanes(r * self.rows + g * GROUP, &lanes, width) }
            });
        });
    }

    /// Group `g`'s 16 outputs of this matrix (without its residual) for every row, by
    /// `kernel`, handed to `emit(row, lanes)`.
    fn group_products(
        &self,
        kernel: Kernel,
        g: usize,
        xq: &QuantizedRows,
        m: usize,
        emit: impl FnMut(usize, &[f32; GROUP]),
    ) {
        let (blocks, s) = (self.blocks(), self.group_scales(g));
        let n = blocks * GROUP_BLOCK_VALUES;
        match &self.values {
            Levels::I8(v) => kernel.group(&v[g * n..][..n], s, xq, m, blocks, emit),
            Levels::I16(v) => kernel.group(&v[g * n..][..n], s, xq, m, blocks, emit),
            Levels::Q8Nibbles(v) => {
                let n = blocks * Q8rByte::BLOCK_LEN;
                kernel.group(&v[g * n..][..n], s, xq, m, blocks, emit)
            }
            Levels::Nibbles(v) => {
                let levels: Vec<i8> = v[g * n / 2..][..n / 2]
                    .iter()
                    .flat_map(|&b| [(b & 15) as i8 - 8, (b >> 4) as i8 - 8])
                    .collect();
                kernel.group(&levels, s, xq, m, blocks, emit)
            }
        }
    }

    /// Group `g`'s scales, [blocks][GROUP].
    fn group_scales(&self, g: usize) -> &[f32] {
        let n = self.blocks() * GROUP;
        &self.scales[g * n..][..n]
    }

    /// Group `g`'s 8-bit levels and scales (None for levels held otherwise): what the
    /// proposal pass reads.
    fn group(&self, g: usize) -> Option<(&[i8], &[f32])> {
        let n = self.blocks() * GROUP_BLOCK_VALUES;
        match &self.values {
            Levels::I8(v) => Some((&v[g * n..][..n], self.group_scales(g))),
            _ => None,
        }
    }

    /// `run(g)` for every group of 16 outputs of a product with `m` activation rows: on this
    /// thread when the product is small, else split among rayon's threads.
    fn for_each_group(&self, m: usize, run: impl Fn(usize) + Sync + Send) {
        let groups = self.rows.div_ceil(GROUP);
        let macs = m * self.cols * self.rows;
        if macs < PARALLEL_MIN_MACS
            || rayon::current_num_threads() == 1
            || !crate::row_shards::splits_allowed()
        {
            (0..groups).for_each(run);
        } else {
            // Tasks of about PARALLEL_MIN_MACS / 4 multiply-adds, taken by whichever thread is
            // free: without the upper bound rayon would hand each of 2 threads half the work
            // as one piece, and a worker the OS has descheduled (a busy machine) would make the
            // caller wait for its whole half; now it holds back one small task at most.
            let leaf = (PARALLEL_MIN_MACS / 4 / (m * self.cols * GROUP)).max(1);
            (0..groups)
                .into_par_iter()
                .with_min_len(leaf)
                .with_max_len(leaf)
                .for_each(run);
        }
    }
}

/// `scale(row, block)` of f16 block scales stored [rows, cols / 32] little-endian.
fn f16_scales(rows: usize, cols: usize, scales_f16: &[u8]) -> impl Fn(usize, usize) -> f32 + '_ {
    let blocks = cols / BLOCK;
    assert_eq!(scales_f16.len(), rows * blocks * 2, "f16 scales");
    move |r, b| {
        let at = (r * blocks + b) * 2;
        half::f16::from_le_bytes([scales_f16[at], scales_f16[at + 1]]).to_f32()
    }
}

/// `level(row, col)` of GGML Q4_0 nibbles [rows, cols / 2] (per block, byte j holds value j
/// low and value j + 16 high, each offset by 8).
fn q4_levels(rows: usize, cols: usize, nibbles: &[u8]) -> impl Fn(usize, usize) -> i8 + '_ {
    assert_eq!(nibbles.len(), rows * cols / 2, "q4 nibbles");
    move |r, c| {
        let (block, j) = (c / BLOCK, c % BLOCK);
        let byte = nibbles[r * cols / 2 + block * PAIRS + j % PAIRS];
        let nibble = if j < PAIRS { byte & 0x0f } else { byte >> 4 };
        nibble as i8 - 8
    }
}

/// c for one row of activations `x`: c·‖r_i‖₂ bounds what a residual row r_i adds to the row's
/// product as the kernel computes it. Cauchy–Schwarz on ‖x̃‖₂, the activations as the kernel
/// rounds them (16 bits per block of 32: each moves by at most its block's amax / 65534 ≤ the
/// row's amax / 65534), with 0.1 % for the kernel's f32 rounding, which stays far below that.
pub fn residual_bound_factor(x: &[f32]) -> f32 {
    let norm = x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
    let amax = x.iter().fold(0f32, |a, b| a.max(b.abs())) as f64;
    (norm * (1.0 + 1e-6) + (x.len() as f64).sqrt() * amax / 65534.0) as f32 * 1.001
}

/// Products smaller than this run on the calling thread: waking a sleeping worker costs more
/// than the work (a 512 × 512 matrix at batch 1 is 262k multiply-adds, a few microseconds).
const PARALLEL_MIN_MACS: usize = 1 << 20;

/// The result's base pointer, shared by the tasks that write its disjoint columns.
#[derive(Clone, Copy)]
struct OutputPtr(*mut f32);
// SAFETY: tasks write disjoint elements only (see `PackedMatrix::matmul`).
unsafe impl Send for OutputPtr {}
unsafe impl Sync for OutputPtr {}

impl OutputPtr {
    /// Copies the first `width` lanes to elements `at ..`.
    /// Safety: they are inside the result and no other task writes them.
    unsafe fn write_lanes(self, at: usize, lanes: &[f32; GROUP], width: usize) {
        if width == GROUP {
            // A fixed-size copy (one or two vector stores), not a call to memcpy.
            (self.0.add(at) as *mut [f32; GROUP]).write_unaligned(*lanes);
        } else {
            self.write_partial(at, lanes, width);
        }
    }

    /// The last group's copy when the output count is not a multiple of 16. Kept out of line:
    /// inlined, LLVM merges both arms into one variable-length memcpy call, which cost 6 % of
    /// batch 16's time (perf, AVX-512).
    /// Safety: as `write_lanes`.
    #[cold]
    #[inline(never)]
    unsafe fn write_partial(self, at: usize, lanes: &[f32; GROUP], width: usize) {
        std::ptr::copy_nonoverlapping(lanes.as_ptr(), self.0.add(at), width);
    }
}

impl QuantizedRows {
    fn of(x: &[f32], m: usize, cols: usize) -> Self {
        let blocks = cols / BLOCK;
        let mut values = vec![0i16; m * cols];
        let mut scales = vec![0f32; m * blocks];
        for ((xb, qb), s) in x
            .chunks_exact(BLOCK)
            .zip(values.chunks_exact_mut(BLOCK))
            .zip(scales.iter_mut())
        {
            *s = quantize_block(xb.try_into().unwrap(), qb.try_into().unwrap());
        }
        QuantizedRows { values, scales }
    }
}

/// Round one block of 32 activations to i16 (`q = round(x · 32767 / amax)`, halves away from
/// zero) and return its scale `amax / 32767`. Written in 8 independent lanes so that the
/// compiler vectorizes it (AVX2 and WebAssembly SIMD alike); plain IEEE f32 operations, so
/// every target rounds the same. A block holding NaN or ±inf gets scale NaN (its products are
/// NaN, as an f32 product would be).
fn quantize_block(x: &[f32; BLOCK], q: &mut [i16; BLOCK]) -> f32 {
    let mut amax = [0f32; 8];
    let mut finite = [true; 8];
    for chunk in x.chunks_exact(8) {
        for l in 0..8 {
            let a = chunk[l].abs();
            finite[l] &= a <= f32::MAX;
            amax[l] = if a > amax[l] { a } else { amax[l] };
        }
    }
    if !finite.iter().all(|&f| f) {
        q.fill(0);
        return f32::NAN;
    }
    let amax = amax.iter().fold(0f32, |m, &a| if a > m { a } else { m });
    let inv = if amax > 0.0 { 32767.0 / amax } else { 0.0 };
    // Rounded in i32 first, narrowed after: two simple loops the compiler vectorizes.
    let mut wide = [0i32; BLOCK];
    for (w, &v) in wide.iter_mut().zip(x) {
        let t = v * inv;
        let r = t + 0.5f32.copysign(t);
        // SAFETY: x is finite and |x| ≤ amax, so |r| ≤ 32767.5 (+ rounding): in i32 range.
        #[cfg(not(target_arch = "wasm32"))]
        {
            *w = unsafe { r.to_int_unchecked::<i32>() };
        }
        // The saturating cast is the same value here; WebAssembly vectorizes it
        // (`i32x4.trunc_sat_f32x4_s`) where the unchecked one stays scalar.
        #[cfg(target_arch = "wasm32")]
        {
            *w = r as i32;
        }
    }
    for (qv, w) in q.iter_mut().zip(wide) {
        *qv = w as i16;
    }
    amax / 32767.0
}

/// The instruction set the products run on (chosen once; every choice gives the same bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    Simd128,
}

impl Kernel {
    /// Whether packed 12-bit levels (`Levels::Q8Nibbles`) multiply at least as fast as 16-bit
    /// ones on this kernel: only AVX-512's, whose tiles share each formed level among 16 rows.
    fn forms_levels_cheaply(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if self == Kernel::Avx512Vnni {
            return true;
        }
        false
    }

    /// The fastest kernel this CPU runs, or the one `MARIAN_QGEMM` names when the CPU has it
    /// (`avx512vnni`, `avx2`, `simd128`, `portable`: for benchmarks; every one gives the same bits).
    fn detect() -> Self {
        static CHOSEN: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let cap = std::env::var("MARIAN_QGEMM").unwrap_or_default();
            let all = Kernel::available();
            all.iter()
                .copied()
                .find(|k| k.name() == cap)
                .unwrap_or(all[0])
        })
    }

    /// The kernels this CPU can run, fastest first (the portable one always last).
    // Pushes under `cfg`s: no single `vec![]` literal fits every target.
    #[allow(clippy::vec_init_then_push)]
    fn available() -> Vec<Kernel> {
        let mut all = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512vnni")
            {
                all.push(Kernel::Avx512Vnni);
            }
            if std::is_x86_feature_detected!("avx2") {
                all.push(Kernel::Avx2);
            }
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        all.push(Kernel::Simd128);
        all.push(Kernel::Portable);
        all
    }

    fn name(self) -> &'static str {
        match self {
            Kernel::Portable => "portable",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni => "avx512vnni",
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Kernel::Simd128 => "simd128",
        }
    }

    /// One group's 16 outputs for every row, handed to `emit(row, lanes)`.
    fn group<W: Level>(
        self,
        w: &[W],
        s: &[f32],
        xq: &QuantizedRows,
        m: usize,
        blocks: usize,
        emit: impl FnMut(usize, &[f32; GROUP]),
    ) {
        let cols = blocks * BLOCK;
        // AVX-512: 16 rows share each weight load while their activations fit in L1 (32 KB);
        // fewer than 4 rows stream weights faster through the AVX2 kernel (same bits).
        let tile_rows = match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni if cols <= 1024 => 16,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni => 8,
            _ => ROW_TILE,
        };
        // Fewer rows than a tile: the product streams weights it uses once, at memory speed, so
        // the kernel prefetches the next group's (contiguous after this one's) as it goes: the
        // output projection at batch 1 takes 2.0 -> 1.6 ms on an AVX2 EPYC. With more rows the
        // weights are reused from L1 and a prefetch only competes with them.
        #[cfg(target_arch = "x86_64")]
        let next = if m < ROW_TILE {
            w.as_ptr().wrapping_add(w.len())
        } else {
            std::ptr::null()
        };
        for_each_tile(m, tile_rows, emit, |r0, tile, out| {
            let a = &xq.values[r0 * cols..(r0 + tile) * cols];
            let da = &xq.scales[r0 * blocks..(r0 + tile) * blocks];
            // SAFETY (unsafe arms): the kernel is one `available` lists, so the CPU has its
            // features; the slices hold `tile` rows and `blocks` blocks as the kernels read them.
            match (self, tile) {
                #[cfg(target_arch = "x86_64")]
                (Kernel::Avx512Vnni, 16) => unsafe {
                    avx512::tile::<W, 16>(w, s, a, da, blocks, out)
                },
                #[cfg(target_arch = "x86_64")]
                (Kernel::Avx512Vnni, 8..=15) => unsafe {
                    avx512::tile::<W, 8>(w, s, a, da, blocks, out)
                },
                #[cfg(target_arch = "x86_64")]
                (Kernel::Avx512Vnni, 4..=7) => unsafe {
                    avx512::tile::<W, 4>(w, s, a, da, blocks, out)
                },
                #[cfg(target_arch = "x86_64")]
                (Kernel::Avx512Vnni, _) => unsafe {
                    avx2::tile::<W, 1>(w, s, a, da, blocks, out, next)
                },
                #[cfg(target_arch = "x86_64")]
                (Kernel::Avx2, 4) => unsafe { avx2::tile::<W, 4>(w, s, a, da, blocks, out, next) },
                #[cfg(target_arch = "x86_64")]
                (Kernel::Avx2, 2 | 3) => unsafe {
                    avx2::tile::<W, 2>(w, s, a, da, blocks, out, next)
                },
                #[cfg(target_arch = "x86_64")]
                (Kernel::Avx2, _) => unsafe { avx2::tile::<W, 1>(w, s, a, da, blocks, out, next) },
                #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
                // Packed 12-bit levels are an x86-64 form (`package::quant` stores them as i16
                // elsewhere); the reference computes them if ever given.
                (Kernel::Simd128, _) if W::FORM != Form::Q8Nibbles => {
                    simd128::tile(w, s, a, da, blocks, &mut out[..tile])
                }
                _ => portable_tile(w, s, a, da, blocks, &mut out[..tile]),
            }
        });
    }
}

/// Rows `0..m` in tiles of at most `tile_rows` (≤ 16), for the kernels of both passes:
/// `tile(first, rows, out)` computes up to `rows` rows from `first` into `out` and returns how
/// many it did (its own tile size); each is then handed to `emit(row, lanes)`.
fn for_each_tile(
    m: usize,
    tile_rows: usize,
    mut emit: impl FnMut(usize, &[f32; GROUP]),
    mut tile: impl FnMut(usize, usize, &mut [[f32; GROUP]; 16]) -> usize,
) {
    let mut out = [[0f32; GROUP]; 16];
    let mut r0 = 0;
    while r0 < m {
        let done = tile(r0, tile_rows.min(m - r0), &mut out);
        for (r, lanes) in out[..done].iter().enumerate() {
            emit(r0 + r, lanes);
        }
        r0 += done;
    }
}

/// The reference: what every vector kernel computes, bit for bit, for `out.len()` rows. Each
/// kernel returns how many rows it computed (its tile; the caller goes on from there).
fn portable_tile<W: Level>(
    w: &[W],
    s: &[f32],
    a: &[i16],
    da: &[f32],
    blocks: usize,
    out: &mut [[f32; GROUP]],
) -> usize {
    let cols = blocks * BLOCK;
    for (r, acc) in out.iter_mut().enumerate() {
        *acc = [0f32; GROUP];
        for b in 0..blocks {
            let wb = &w[b * W::BLOCK_LEN..][..W::BLOCK_LEN];
            let ab = &a[r * cols + b * BLOCK..][..BLOCK];
            let mut isum = [0i32; GROUP];
            for p in 0..PAIRS {
                for (lane, sum) in isum.iter_mut().enumerate() {
                    let k = p * GROUP * 2 + lane * 2;
                    *sum += W::level(wb, k) * ab[2 * p] as i32
                        + W::level(wb, k + 1) * ab[2 * p + 1] as i32;
                }
            }
            let d = da[r * blocks + b];
            for lane in 0..GROUP {
                acc[lane] += isum[lane] as f32 * (s[b * GROUP + lane] * d);
            }
        }
    }
    out.len()
}
