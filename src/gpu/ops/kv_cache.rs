//! The KV-cache write of a decoding step: the new token's key and value, projected from the
//! rows' hidden states by the attention's k_proj and v_proj straight into the layer's caches
//! at the token's position (two linear products with a strided output, no copy).

use super::linear::{self, Linear, Rows};
use crate::gpu::recorder::Recorder;
use crate::gpu::weights::GpuMatrix;
use crate::model::weights::AttentionWeights;

pub struct Write<'b> {
    /// The self-attention whose k_proj and v_proj make the key and value.
    pub attn: &'b AttentionWeights<GpuMatrix, wgpu::Buffer>,
    /// [rows, d_model] the new token's hidden states.
    pub x: &'b wgpu::Buffer,
    pub rows: usize,
    /// The layer's caches, [rows, capacity, d_model] each.
    pub keys: &'b wgpu::Buffer,
    pub values: &'b wgpu::Buffer,
    pub capacity: usize,
    /// The new token's position (0-based), below `capacity`.
    pub position: usize,
    pub d_model: usize,
}

/// Record the write: k_proj into `keys`, then v_proj into `values`.
pub fn record<'a>(linear: &'a Linear, rec: &mut Recorder<'a>, w: Write<'_>) {
    let d = w.d_model;
    for (proj, cache) in [(&w.attn.k_proj, w.keys), (&w.attn.v_proj, w.values)] {
        let at_position = Rows {
            buffer: cache,
            base: w.position * d,
            stride: w.capacity * d,
        };
        linear.record(
            rec,
            linear::Args {
                y: at_position,
                ..linear::Args::dense(proj, w.x, w.rows, cache)
            },
        );
    }
}
