//! A fine-tuning head adapter's correction of the output projection on its few tokens:
//! `logits[r, ids[j]] += hidden[r, :] · delta_w[j, :] + delta_b[j]` for the entries j that
//! apply in row r (`adapter::EntryConditions`: after which token, for which sources).

use super::bindings;
use super::Bindings as _; // the trait of `Bindings::LAYOUT`
use crate::gpu::kernels::Kernel;
use crate::gpu::recorder::Recorder;
use bytemuck::{Pod, Zeroable};

pub const SHADER: &str = "head_delta.wgsl";
/// Tokens per workgroup (`@workgroup_size`).
const WORKGROUP: usize = 64;

/// head_delta.wgsl's `Params`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct Params {
    rows: u32,
    k: u32,
    d: u32,
    vocab: u32,
}

bindings!(
    /// head_delta.wgsl.
    Bindings {
        hidden: 1 Read,
        delta_w: 2 Read,
        delta_b: 3 Read,
        ids: 4 Read,
        logits: 5 ReadWrite,
        conditions: 6 Read,
        row_state: 7 Read,
    }
);

pub struct Args<'b> {
    /// [rows, d_model] the head's input.
    pub hidden: &'b wgpu::Buffer,
    pub rows: usize,
    pub d_model: usize,
    /// The adapter: [k] sorted token ids (a token's entries adjacent), their weights
    /// [k, d_model], biases [k] and conditions [k, 2] (after, group; `NOT_CONDITIONED`: none).
    pub ids: &'b wgpu::Buffer,
    pub weight: &'b wgpu::Buffer,
    pub bias: &'b wgpu::Buffer,
    pub conditions: &'b wgpu::Buffer,
    pub k: usize,
    /// [rows, 2]: each row's step input token and the trigger groups its source hits.
    pub row_state: &'b wgpu::Buffer,
    /// [rows, vocab], corrected in place.
    pub logits: &'b wgpu::Buffer,
    pub vocab: usize,
}

pub struct HeadDelta {
    kernel: Kernel,
}

impl HeadDelta {
    pub fn new(device: &wgpu::Device) -> Self {
        HeadDelta {
            kernel: Kernel::new(device, SHADER, None, Bindings::LAYOUT),
        }
    }

    pub fn record<'a>(&'a self, rec: &mut Recorder<'a>, args: Args<'_>) {
        let params = Params {
            rows: args.rows as u32,
            k: args.k as u32,
            d: args.d_model as u32,
            vocab: args.vocab as u32,
        };
        let bindings = Bindings {
            hidden: args.hidden,
            delta_w: args.weight,
            delta_b: args.bias,
            ids: args.ids,
            logits: args.logits,
            conditions: args.conditions,
            row_state: args.row_state,
        };
        let workgroups = [args.k.div_ceil(WORKGROUP) as u32, args.rows as u32, 1];
        rec.dispatch(&self.kernel, &params, &bindings, workgroups);
    }
}
