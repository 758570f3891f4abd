//! Building the kernel's layout: a package's Q8_0 / Q4_0 values and f16 scales (and a q8
//! matrix's residual) packed into groups of 16 output features, and reading it back
//! (dequantized rows, a selection of rows).

use super::levels::{Level, Levels, PlainLevel, Q8rByte};
use super::{Kernel, PackedMatrix, BLOCK, GROUP, GROUP_BLOCK_VALUES, PAIRS};
use rayon::prelude::*;
use std::sync::Arc;

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
    pub(super) fn build<W: PlainLevel>(
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
    pub(super) fn levels_len(rows: usize, cols: usize) -> usize {
        rows.div_ceil(GROUP) * (cols / BLOCK) * GROUP_BLOCK_VALUES
    }

    /// Walks the kernel's layout: `put(index, row, col)` for every weight, and returns the
    /// scales, `scale(row, block)` in layout order.
    pub(super) fn lay_out(
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

    pub(super) fn with_levels(rows: usize, cols: usize, scales: Vec<f32>, values: Levels) -> Self {
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

    pub(super) fn blocks(&self) -> usize {
        self.cols / BLOCK
    }

    /// Row `r` dequantized into `out` (`cols` floats): `scale · value`, as GGML dequantizes,
    /// plus the residual's `scale · value` when there is one.
    pub(super) fn dequantize_row_into(&self, r: usize, out: &mut [f32]) {
        self.dequantize_base_row_into(r, out);
        if let Some(residual) = &self.residual {
            let mut fine = vec![0f32; self.cols];
            residual.dequantize_base_row_into(r, &mut fine);
            for (o, f) in out.iter_mut().zip(&fine) {
                *o += f;
            }
        }
    }

    pub(super) fn dequantize_base_row_into(&self, r: usize, out: &mut [f32]) {
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
        pub(super) fn select<W: PlainLevel>(
            src: impl Fn(usize) -> W,
            ids: &[u32],
            blocks: usize,
        ) -> Vec<W> {
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
