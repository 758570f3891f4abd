//! `x[r, :] = E[ids[r], :] · scale + positions[pos_offset + r mod pos_period, :]`: the token
//! embedding read from the stored (possibly quantized) matrix, plus Marian's sinusoidal
//! positions.

use super::bindings;
use super::Bindings as _; // the trait of `Bindings::LAYOUT`
use crate::gpu::compose::WeightFormat;
use crate::gpu::kernels::Kernel;
use crate::gpu::recorder::{grid, Recorder};
use crate::gpu::weights::GpuMatrix;
use bytemuck::{Pod, Zeroable};
use std::collections::HashMap;

pub const SHADER: &str = "embed.wgsl";

/// embed.wgsl's `Params`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct Params {
    rows: u32,
    d: u32,
    /// Tokens per sequence in this buffer (S when encoding, 1 when decoding).
    pos_period: u32,
    /// The first token's position (decoding: the tokens already consumed).
    pos_offset: u32,
    scale: f32,
    _pad: [u32; 3],
}

bindings!(
    /// embed.wgsl, and the weight format's `w` and `scales`.
    Bindings {
        ids: 1 Read,
        w: 2 Read,
        scales: 3 Read,
        positions: 4 Read,
        out: 5 ReadWrite,
    }
);

pub struct Args<'b> {
    /// E [vocab, d_model], as stored.
    pub table: &'b GpuMatrix,
    /// [rows] token ids.
    pub ids: &'b wgpu::Buffer,
    pub rows: usize,
    /// The sinusoidal table [max_position_embeddings, d_model].
    pub positions: &'b wgpu::Buffer,
    /// Tokens per sequence: row r is at position `first_position + r mod tokens_per_sequence`.
    pub tokens_per_sequence: usize,
    pub first_position: usize,
    pub d_model: usize,
    /// √d_model when the model scales its embeddings, else 1.
    pub scale: f32,
    /// [rows, d_model].
    pub out: &'b wgpu::Buffer,
}

/// The embedding kernel, one per weight format.
pub struct Embed {
    kernels: HashMap<WeightFormat, Kernel>,
}

impl Embed {
    pub fn new(device: &wgpu::Device) -> Self {
        Embed {
            kernels: WeightFormat::ALL
                .iter()
                .map(|&f| (f, Kernel::new(device, SHADER, Some(f), Bindings::LAYOUT)))
                .collect(),
        }
    }

    pub fn record<'a>(&'a self, rec: &mut Recorder<'a>, args: Args<'_>) {
        let params = Params {
            rows: args.rows as u32,
            d: args.d_model as u32,
            pos_period: args.tokens_per_sequence as u32,
            pos_offset: args.first_position as u32,
            scale: args.scale,
            _pad: [0; 3],
        };
        let bindings = Bindings {
            ids: args.ids,
            w: &args.table.values,
            scales: &args.table.scales,
            positions: args.positions,
            out: args.out,
        };
        // One workgroup per row.
        rec.dispatch(
            &self.kernels[&args.table.format],
            &params,
            &bindings,
            grid(args.rows),
        );
    }
}
