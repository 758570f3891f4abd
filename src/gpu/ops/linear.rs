//! `y = act((x · Wᵀ + b) · scale)`: a linear layer over a stored (possibly quantized) weight,
//! dequantized inside the kernel. A few rows (one token per sentence or beam while decoding)
//! go to the matrix-vector kernel, which reads each weight row once for all of them; more rows
//! (encoding) to the tiled matrix-product kernel.

use super::bindings;
use super::Bindings as _; // the trait of `Bindings::LAYOUT`
use crate::config::Activation;
use crate::gpu::compose::WeightFormat;
use crate::gpu::kernels::Kernel;
use crate::gpu::recorder::{grid, Recorder};
use crate::gpu::weights::GpuMatrix;
use crate::model::weights::LinearWeights;
use bytemuck::{Pod, Zeroable};
use std::collections::HashMap;

/// The kernels' files: matrix-vector (plain or with subgroup reductions), tiled.
pub const SHADERS: [&str; 3] = [MATVEC, MATVEC_SUBGROUP, MATMUL_TILED];
const MATVEC: &str = "matvec.wgsl";
const MATVEC_SUBGROUP: &str = "matvec_subgroup.wgsl";
const MATMUL_TILED: &str = "matmul_tiled.wgsl";

/// Rows up to which the matrix-vector kernel is used (its accumulator count, `MAX_ROWS`).
pub const MATVEC_MAX_ROWS: usize = 8;
/// Output rows and columns of one tiled workgroup (`TILE`).
const TILE: usize = 64;

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
    _pad: [u32; 2],
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

/// The linear kernels, one per weight format each.
pub struct Linear {
    matvec: HashMap<WeightFormat, Kernel>,
    tiled: HashMap<WeightFormat, Kernel>,
}

impl Linear {
    /// `subgroups`: the matrix-vector kernel reduces with subgroup operations.
    pub fn new(device: &wgpu::Device, subgroups: bool) -> Self {
        let family = |file: &'static str| -> HashMap<WeightFormat, Kernel> {
            WeightFormat::ALL
                .iter()
                .map(|&f| (f, Kernel::new(device, file, Some(f), Bindings::LAYOUT)))
                .collect()
        };
        Linear {
            matvec: family(if subgroups { MATVEC_SUBGROUP } else { MATVEC }),
            tiled: family(MATMUL_TILED),
        }
    }

    pub fn record<'a>(&'a self, rec: &mut Recorder<'a>, args: Args<'_>) {
        let w = args.weight;
        let params = Params {
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
            _pad: [0; 2],
        };
        // Matrix-vector: one workgroup per output column; tiled: one per 64 x 64 tile.
        let (kernel, workgroups) = if args.rows <= MATVEC_MAX_ROWS {
            (&self.matvec[&w.format], grid(w.rows))
        } else {
            (
                &self.tiled[&w.format],
                [
                    w.rows.div_ceil(TILE) as u32,
                    args.rows.div_ceil(TILE) as u32,
                    1,
                ],
            )
        };
        let bindings = Bindings {
            x: args.x,
            w: &w.values,
            scales: &w.scales,
            bias: args.bias,
            y: args.y.buffer,
        };
        rec.dispatch(kernel, &params, &bindings, workgroups);
    }
}
