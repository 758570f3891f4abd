//! `y = act((x · Wᵀ + b) · scale)`: a linear layer over a stored (possibly quantized) weight,
//! dequantized inside the kernel. A few rows (one token per sentence or beam while decoding)
//! go to the matrix-vector kernel, which reads each weight row once for all of them; more rows
//! (encoding, large batches) to the tiled matrix-product kernel. Where its 64 x 64 tiles are too
//! few workgroups to fill a GPU (d_model 512 gives 8 tiles for 64 rows), the tiled product is
//! split along K (split-K, as CUTLASS does for such shapes): each slice's sums go to a scratch
//! buffer and a second kernel adds them, the bias and the activation.

use super::bindings;
use super::Bindings as _; // the trait of `Bindings::LAYOUT`
use crate::config::Activation;
use crate::gpu::compose::{Precision, WeightFormat};
use crate::gpu::kernels::Kernel;
use crate::gpu::recorder::{grid, Recorder};
use crate::gpu::weights::GpuMatrix;
use crate::model::weights::LinearWeights;
use bytemuck::{Pod, Zeroable};
use std::collections::HashMap;
use std::sync::Mutex;

/// The kernels' files that read the weight: matrix-vector (plain or with subgroup
/// reductions), tiled.
pub const SHADERS: [&str; 3] = [MATVEC, MATVEC_SUBGROUP, MATMUL_TILED];
/// Split-K's sum of the slices.
pub const SPLIT_SUM_SHADER: &str = SPLIT_SUM;
const MATVEC: &str = "matvec.wgsl";
const MATVEC_SUBGROUP: &str = "matvec_subgroup.wgsl";
const MATMUL_TILED: &str = "matmul_tiled.wgsl";
const SPLIT_SUM: &str = "matmul_split_sum.wgsl";

/// Rows up to which the matrix-vector kernel is used (its accumulator count, `MAX_ROWS`).
pub const MATVEC_MAX_ROWS: usize = 8;
/// Output rows and columns of one tiled workgroup (`TILE`).
const TILE: usize = 64;
/// K of one step of the tiled kernel (`KT`): a K slice is a multiple of it.
const TILE_K: usize = 16;
/// Workgroups a tiled product should have: fewer tiles than this are split along K. A few per
/// compute unit of a large GPU (an H100 has 132); WebGPU does not say how many a device has.
const SPLIT_K_TARGET_WORKGROUPS: usize = 256;
/// The least K one slice sums (two steps of the tiled kernel), so a slice's work stays larger
/// than its share of the scratch traffic.
const MIN_K_SLICE: usize = 2 * TILE_K;

/// matmul_params.wgsl's `Params`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct Params {
    /// Rows of x.
    m: u32,
    /// Output columns = weight rows.
    n: u32,
    /// Inner size = weight columns (a multiple of 4).
    k: u32,
    /// x's first row, in vec4s.
    x_base: u32,
    /// From one row of x to the next, in vec4s.
    x_stride: u32,
    /// y's first row, in floats.
    y_base: u32,
    /// From one row of y to the next, in floats.
    y_stride: u32,
    /// The activation's code (`activation_code`).
    act: u32,
    scale: f32,
    /// 1: every Marian linear layer has a bias.
    has_bias: u32,
    /// matmul_tiled.wgsl: K per z slice (`k` when not split).
    k_slice: u32,
    _pad: u32,
}

/// matmul_split_sum.wgsl's `Params`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct SplitSumParams {
    m: u32,
    n: u32,
    slices: u32,
    y_base: u32,
    y_stride: u32,
    act: u32,
    scale: f32,
    has_bias: u32,
}

bindings!(
    /// matvec_common.wgsl / matmul_tiled.wgsl, and the weight format's `w` and `scales`.
    Bindings {
        x: 1 Read,
        w: 2 Read,
        scales: 3 Read,
        bias: 4 Read,
        y: 5 ReadWrite,
    }
);

bindings!(
    /// matmul_split_sum.wgsl.
    SplitSumBindings {
        partial: 1 Read,
        bias: 4 Read,
        y: 5 ReadWrite,
    }
);

/// How many K slices a tiled product of `tiles` workgroups over `k` is split into (1: none):
/// enough for [`SPLIT_K_TARGET_WORKGROUPS`], each slice at least [`MIN_K_SLICE`] long and a
/// multiple of the kernel's K step. Returns (slices, K per slice).
pub fn split_k(tiles: usize, k: usize) -> (usize, usize) {
    let wanted = SPLIT_K_TARGET_WORKGROUPS.div_ceil(tiles.max(1));
    let most = (k / MIN_K_SLICE).max(1);
    let slices = wanted.min(most);
    if slices <= 1 {
        return (1, k);
    }
    let k_slice = k.div_ceil(slices).div_ceil(TILE_K) * TILE_K;
    (k.div_ceil(k_slice), k_slice)
}

/// Which stored matrices are multiplied with f16 operands (WebGPU's "shader-f16"; products and
/// sums stay f32, so only the operands' rounding differs from the f32 path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum F16Products {
    Off,
    /// Matrices stored as f16 (the package's choice of half precision): their weights are f16
    /// already, only the activations are rounded — as PyTorch's f16 inference does.
    F16Weights,
    /// Every stored form (a measure: on 500 held-out sentences it changed up to 1.4 % of the
    /// tiny fixtures' q8 translations from the f32 path's, BENCHMARKS.md 2026-12-07).
    All,
}

impl F16Products {
    /// The operands of the products over matrices stored as `format`.
    pub fn precision(self, format: WeightFormat) -> Precision {
        match (self, format) {
            (F16Products::All, _) | (F16Products::F16Weights, WeightFormat::F16) => Precision::F16,
            _ => Precision::F32,
        }
    }
}

/// The code of an activation in common.wgsl's `activate` (0: none).
pub fn activation_code(act: Option<Activation>) -> u32 {
    match act {
        None => 0,
        Some(Activation::Swish) => 1,
        Some(Activation::Gelu) => 2,
        Some(Activation::GeluNew) => 3,
        Some(Activation::Relu) => 4,
        Some(Activation::Tanh) => 5,
        Some(Activation::Sigmoid) => 6,
    }
}

/// Where the output rows go: row m at floats `base + m · stride` of `buffer`.
pub struct Rows<'b> {
    pub buffer: &'b wgpu::Buffer,
    pub base: usize,
    pub stride: usize,
}

impl<'b> Rows<'b> {
    /// Rows `width` floats long, side by side from the start of `buffer`.
    pub fn dense(buffer: &'b wgpu::Buffer, width: usize) -> Self {
        Rows {
            buffer,
            base: 0,
            stride: width,
        }
    }
}

/// One linear layer's product.
pub struct Args<'b> {
    /// W [n, k], as stored.
    pub weight: &'b GpuMatrix,
    /// b [n].
    pub bias: &'b wgpu::Buffer,
    /// x [rows, k], dense.
    pub x: &'b wgpu::Buffer,
    pub rows: usize,
    /// y: `rows` rows of n floats.
    pub y: Rows<'b>,
    /// Applied after the scale (None: identity).
    pub activation: Option<Activation>,
    /// Multiplies x · Wᵀ + b (attention folds its query scaling in here).
    pub scale: f32,
}

impl<'b> Args<'b> {
    /// `layer`'s y [rows, n] = x [rows, k] · Wᵀ + b, rows dense.
    pub fn dense(
        layer: &'b LinearWeights<GpuMatrix, wgpu::Buffer>,
        x: &'b wgpu::Buffer,
        rows: usize,
        y: &'b wgpu::Buffer,
    ) -> Self {
        Args {
            weight: &layer.weight,
            bias: &layer.bias,
            x,
            rows,
            y: Rows::dense(y, layer.weight.rows),
            activation: None,
            scale: 1.0,
        }
    }

    /// The same product times `scale`.
    pub fn scaled(self, scale: f32) -> Self {
        Args { scale, ..self }
    }

    /// The same product through `activation`.
    pub fn activated(self, activation: Activation) -> Self {
        Args {
            activation: Some(activation),
            ..self
        }
    }
}

/// The linear kernels, one per weight format each, and split-K's sum and scratch.
pub struct Linear {
    matvec: HashMap<WeightFormat, Kernel>,
    tiled: HashMap<WeightFormat, Kernel>,
    split_sum: Kernel,
    /// Whether small tiled products are split along K.
    split: bool,
    /// Split-K's partial sums [slices, m, n], grown to the largest product recorded. Products
    /// in one submission take turns on it (each slice pass and its sum are consecutive
    /// dispatches, ordered by the pass's barriers), and submissions run in queue order.
    scratch: Mutex<Option<wgpu::Buffer>>,
}

impl Linear {
    /// `subgroups`: the matrix-vector kernel reduces with subgroup operations; `split`: tiled
    /// products with fewer tiles than a GPU has room for are split along K; `f16`: which stored
    /// forms multiply with f16 operands (anything but Off needs shader-f16 on the device).
    pub fn new(device: &wgpu::Device, subgroups: bool, split: bool, f16: F16Products) -> Self {
        let family = |file: &'static str| -> HashMap<WeightFormat, Kernel> {
            WeightFormat::ALL
                .iter()
                .map(|&f| {
                    let kernel = Kernel::with_precision(
                        device,
                        file,
                        Some(f),
                        f16.precision(f),
                        Bindings::LAYOUT,
                    );
                    (f, kernel)
                })
                .collect()
        };
        Linear {
            matvec: family(if subgroups { MATVEC_SUBGROUP } else { MATVEC }),
            tiled: family(MATMUL_TILED),
            split_sum: Kernel::new(device, SPLIT_SUM, None, SplitSumBindings::LAYOUT),
            split,
            scratch: Mutex::new(None),
        }
    }

    /// The scratch buffer with room for `floats`.
    fn scratch(&self, device: &wgpu::Device, floats: usize) -> wgpu::Buffer {
        let bytes = (floats * 4) as u64;
        let mut held = self.scratch.lock().unwrap();
        match held.as_ref() {
            Some(b) if b.size() >= bytes => b.clone(),
            _ => {
                let b = device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("split-K partial sums"),
                    size: bytes.next_power_of_two(),
                    usage: wgpu::BufferUsages::STORAGE,
                    mapped_at_creation: false,
                });
                *held = Some(b.clone());
                b
            }
        }
    }

    pub fn record<'a>(&'a self, rec: &mut Recorder<'a>, args: Args<'_>) {
        let w = args.weight;
        let mut params = Params {
            m: args.rows as u32,
            n: w.rows as u32,
            k: w.cols as u32,
            x_base: 0,
            x_stride: (w.cols / 4) as u32,
            y_base: args.y.base as u32,
            y_stride: args.y.stride as u32,
            act: activation_code(args.activation),
            scale: args.scale,
            has_bias: 1,
            k_slice: w.cols as u32,
            _pad: 0,
        };
        let mut bindings = Bindings {
            x: args.x,
            w: &w.values,
            scales: &w.scales,
            bias: args.bias,
            y: args.y.buffer,
        };
        // Matrix-vector: one workgroup per output column.
        if args.rows <= MATVEC_MAX_ROWS {
            rec.dispatch(&self.matvec[&w.format], &params, &bindings, grid(w.rows));
            return;
        }
        // Tiled: one workgroup per 64 x 64 tile, per K slice.
        let tiles = [w.rows.div_ceil(TILE), args.rows.div_ceil(TILE)];
        let (slices, k_slice) = match self.split {
            true => split_k(tiles[0] * tiles[1], w.cols),
            false => (1, w.cols),
        };
        let workgroups = [tiles[0] as u32, tiles[1] as u32, slices as u32];
        if slices == 1 {
            rec.dispatch(&self.tiled[&w.format], &params, &bindings, workgroups);
            return;
        }
        let partial = self.scratch(rec.device(), slices * args.rows * w.rows);
        params.k_slice = k_slice as u32;
        bindings.y = &partial;
        rec.dispatch(&self.tiled[&w.format], &params, &bindings, workgroups);
        let sum = SplitSumParams {
            m: args.rows as u32,
            n: w.rows as u32,
            slices: slices as u32,
            y_base: params.y_base,
            y_stride: params.y_stride,
            act: params.act,
            scale: params.scale,
            has_bias: params.has_bias,
        };
        let sum_bindings = SplitSumBindings {
            partial: &partial,
            bias: args.bias,
            y: args.y.buffer,
        };
        let outputs = args.rows * w.rows;
        rec.dispatch(
            &self.split_sum,
            &sum,
            &sum_bindings,
            grid(outputs.div_ceil(256)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::split_k;

    #[test]
    fn split_k_fills_the_target_with_whole_steps() {
        // d_model 512, 32 rows: 8 tiles; K 512 -> 16 slices of 32 (128 workgroups).
        assert_eq!(split_k(8, 512), (16, 32));
        // fc2 (K 2048): 32 slices of 64 -> 256 workgroups.
        assert_eq!(split_k(8, 2048), (32, 64));
        // The output projection: 930 tiles, no split.
        assert_eq!(split_k(930, 512), (1, 512));
        // K too short to split.
        assert_eq!(split_k(1, 32), (1, 32));
        // Uneven: K 100 -> at most 3 slices of 48 (rounded to the K step): 48 + 48 + 4.
        assert_eq!(split_k(1, 100), (3, 48));
        // Every slice count covers K and leaves no slice empty.
        for tiles in 1..300 {
            for k in (4..3000).step_by(4) {
                let (s, ks) = split_k(tiles, k);
                assert!(ks % 16 == 0 || s == 1);
                assert!(
                    s * ks >= k && (s - 1) * ks < k,
                    "tiles {tiles} k {k}: {s} x {ks}"
                );
            }
        }
    }
}
