//! What fine-tuning needs of each row's full-vocabulary logits (see finetune/positions.rs):
//! the largest logit, Σ exp(z − max), Σ z and the label's logit. Runs before top-k, which
//! overwrites the logits.

use super::bindings;
use super::Bindings as _; // the trait of `Bindings::LAYOUT`
use crate::gpu::kernels::Kernel;
use crate::gpu::recorder::Recorder;
use bytemuck::{Pod, Zeroable};

pub const SHADER: &str = "row_summary.wgsl";

/// row_summary.wgsl's `Params`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct Params {
    vocab: u32,
    at: u32,
    _pad: [u32; 2],
}

bindings!(
    /// row_summary.wgsl.
    Bindings {
        labels: 1 Read,
        logits: 2 Read,
        summary: 5 ReadWrite,
    }
);

pub struct Args<'b> {
    /// [rows, vocab].
    pub logits: &'b wgpu::Buffer,
    pub rows: usize,
    pub vocab: usize,
    /// Row r's label is `labels[first_row + r]`, its summary goes to `summary[first_row + r]`.
    pub labels: &'b wgpu::Buffer,
    pub first_row: usize,
    /// [.., 4] (max, Σ exp(z − max), Σ z, label's logit) per row.
    pub summary: &'b wgpu::Buffer,
}

pub struct RowSummary {
    kernel: Kernel,
}

impl RowSummary {
    pub fn new(device: &wgpu::Device) -> Self {
        RowSummary {
            kernel: Kernel::new(device, SHADER, None, Bindings::LAYOUT),
        }
    }

    pub fn record<'a>(&'a self, rec: &mut Recorder<'a>, args: Args<'_>) {
        let params = Params {
            vocab: args.vocab as u32,
            at: args.first_row as u32,
            _pad: [0; 2],
        };
        let bindings = Bindings {
            labels: args.labels,
            logits: args.logits,
            summary: args.summary,
        };
        // One workgroup per row.
        rec.dispatch(&self.kernel, &params, &bindings, [args.rows as u32, 1, 1]);
    }
}
