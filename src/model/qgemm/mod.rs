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
mod kernel;
mod levels;
mod pack;
mod proposal;
#[cfg(all(target_arch = "wasm32", marian_relaxed_simd))]
pub use proposal::relaxed_probe;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128;
#[cfg(test)]
mod speed;
#[cfg(test)]
mod tests;

use kernel::{for_each_tile, Kernel, QuantizedRows};
use levels::{Form, Level, Levels, Q8rByte};

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

impl PackedMatrix {
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
