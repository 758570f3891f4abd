//! Scaled dot-product attention, one workgroup per (head, query row), over K/V blocks laid out
//! [positions, d_model] (heads side by side): the encoder's own K/V, the decoder's
//! self-attention cache, or the encoder output's cross-attention K/V. Keys past a block's
//! length are never read (the padding mask). Queries come already scaled (folded into q_proj).

use super::bindings;
use super::Bindings as _; // the trait of `Bindings::LAYOUT`
use crate::gpu::kernels::Kernel;
use crate::gpu::recorder::Recorder;
use bytemuck::{Pod, Zeroable};

pub const SHADER: &str = "attention.wgsl";

/// Keys one query can attend over (the kernel's workgroup array of scores, `MAX_KEYS`).
pub const MAX_KEYS: usize = 1024;

/// attention.wgsl's `Params`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct Params {
    q_rows: u32,
    q_per_kv: u32,
    heads: u32,
    head_dim: u32,
    d: u32,
    kv_stride: u32,
    fixed_len: u32,
    _pad: u32,
}

bindings!(
    /// attention.wgsl.
    Bindings {
        q: 1 Read,
        k: 2 Read,
        v: 3 Read,
        kv_block: 4 Read,
        out: 5 ReadWrite,
        kv_len: 6 Read,
    }
);

pub struct Args<'b> {
    pub num_heads: usize,
    pub d_model: usize,
    /// [q_rows, d_model] queries, scaled.
    pub q: &'b wgpu::Buffer,
    pub q_rows: usize,
    /// Consecutive query rows sharing one K/V block (S when encoding, 1 when decoding).
    pub queries_per_block: usize,
    /// K and V: blocks `block_stride` floats apart, each [positions, d_model].
    pub k: &'b wgpu::Buffer,
    pub v: &'b wgpu::Buffer,
    pub block_stride: usize,
    /// [q_rows / queries_per_block]: which block each group of queries attends over.
    pub block_of: &'b wgpu::Buffer,
    /// [blocks] each block's valid positions (the padding mask); bound but not read when
    /// `fixed_length` is set.
    pub block_lengths: &'b wgpu::Buffer,
    /// Every block's length, when all are the same (decoder self-attention: the positions
    /// decoded so far, this step's included).
    pub fixed_length: Option<usize>,
    /// [q_rows, d_model] the heads' contexts, side by side.
    pub out: &'b wgpu::Buffer,
}

pub struct Attention {
    kernel: Kernel,
}

impl Attention {
    pub fn new(device: &wgpu::Device) -> Self {
        Attention {
            kernel: Kernel::new(device, SHADER, None, Bindings::LAYOUT),
        }
    }

    pub fn record<'a>(&'a self, rec: &mut Recorder<'a>, args: Args<'_>) {
        let params = Params {
            q_rows: args.q_rows as u32,
            q_per_kv: args.queries_per_block as u32,
            heads: args.num_heads as u32,
            head_dim: (args.d_model / args.num_heads) as u32,
            d: args.d_model as u32,
            kv_stride: args.block_stride as u32,
            // 0: read each block's length.
            fixed_len: args.fixed_length.unwrap_or(0) as u32,
            _pad: 0,
        };
        let bindings = Bindings {
            q: args.q,
            k: args.k,
            v: args.v,
            kv_block: args.block_of,
            out: args.out,
            kv_len: args.block_lengths,
        };
        // One workgroup per head and query row.
        rec.dispatch(
            &self.kernel,
            &params,
            &bindings,
            [args.num_heads as u32, args.q_rows as u32, 1],
        );
    }
}
