//! `x = LayerNorm(x + h) · weight + bias`: Marian's post-norm residual, in place on x.

use super::bindings;
use super::Bindings as _; // the trait of `Bindings::LAYOUT`
use crate::gpu::kernels::Kernel;
use crate::gpu::recorder::{grid, Recorder};
use crate::model::weights::NormWeights;
use crate::model::LAYER_NORM_EPS;
use bytemuck::{Pod, Zeroable};

pub const SHADER: &str = "layer_norm.wgsl";

/// layer_norm.wgsl's `Params`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct Params {
    rows: u32,
    d: u32,
    eps: f32,
    _pad: u32,
}

bindings!(
    /// layer_norm.wgsl.
    Bindings {
        h: 1 Read,
        weight: 2 Read,
        bias: 3 Read,
        x: 5 ReadWrite,
    }
);

pub struct Args<'b> {
    /// [rows, d_model], the residual stream: read, and overwritten with the result.
    pub x: &'b wgpu::Buffer,
    /// [rows, d_model], the sublayer's output added to x.
    pub h: &'b wgpu::Buffer,
    /// The norm's weight and bias [d_model].
    pub norm: &'b NormWeights<wgpu::Buffer>,
    pub rows: usize,
    pub d_model: usize,
}

pub struct LayerNorm {
    kernel: Kernel,
}

impl LayerNorm {
    pub fn new(device: &wgpu::Device) -> Self {
        LayerNorm {
            kernel: Kernel::new(device, SHADER, None, Bindings::LAYOUT),
        }
    }

    pub fn record<'a>(&'a self, rec: &mut Recorder<'a>, args: Args<'_>) {
        let params = Params {
            rows: args.rows as u32,
            d: args.d_model as u32,
            eps: LAYER_NORM_EPS as f32,
            _pad: 0,
        };
        let bindings = Bindings {
            h: args.h,
            weight: &args.norm.weight,
            bias: &args.norm.bias,
            x: args.x,
        };
        // One workgroup per row.
        rec.dispatch(&self.kernel, &params, &bindings, grid(args.rows));
    }
}
