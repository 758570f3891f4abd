//! Each row's best k tokens, so a decoding step reads back k ids and scores instead of a
//! vocabulary of logits: log-softmax scores (beam search) or raw logits (greedy), banned
//! tokens never chosen, ties to the lower id as on the CPU. Overwrites the logits.

use super::bindings;
use super::Bindings as _; // the trait of `Bindings::LAYOUT`
use crate::gpu::kernels::Kernel;
use crate::gpu::recorder::Recorder;
use bytemuck::{Pod, Zeroable};

pub const SHADER: &str = "top_k.wgsl";

/// top_k.wgsl's `Params`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct Params {
    vocab: u32,
    k: u32,
    log_softmax: u32,
    n_banned: u32,
}

bindings!(
    /// top_k.wgsl.
    Bindings {
        banned: 1 Read,
        logits: 5 ReadWrite,
        best: 6 ReadWrite,
    }
);

pub struct Args<'b> {
    /// [rows, vocab]; overwritten.
    pub logits: &'b wgpu::Buffer,
    pub rows: usize,
    pub vocab: usize,
    pub k: usize,
    /// Scores as log-probabilities (else raw logits).
    pub log_softmax: bool,
    /// [num_banned] token ids never chosen.
    pub banned: &'b wgpu::Buffer,
    pub num_banned: usize,
    /// [rows, k] (id, score as f32 bits) pairs, best first.
    pub best: &'b wgpu::Buffer,
}

pub struct TopK {
    kernel: Kernel,
}

impl TopK {
    pub fn new(device: &wgpu::Device) -> Self {
        TopK {
            kernel: Kernel::new(device, SHADER, None, Bindings::LAYOUT),
        }
    }

    pub fn record<'a>(&'a self, rec: &mut Recorder<'a>, args: Args<'_>) {
        let params = Params {
            vocab: args.vocab as u32,
            k: args.k as u32,
            log_softmax: args.log_softmax as u32,
            n_banned: args.num_banned as u32,
        };
        let bindings = Bindings {
            banned: args.banned,
            logits: args.logits,
            best: args.best,
        };
        // One workgroup per row.
        rec.dispatch(&self.kernel, &params, &bindings, [args.rows as u32, 1, 1]);
    }
}
