//! `dst[i, :words] = src[index[i], :words]` over rows laid out `stride` floats apart: beam
//! search's reordering of the self-attention cache (only the positions filled so far), and
//! the copy of rows as they are (index = identity).

use super::bindings;
use super::Bindings as _; // the trait of `Bindings::LAYOUT`
use crate::gpu::kernels::Kernel;
use crate::gpu::recorder::Recorder;
use bytemuck::{Pod, Zeroable};

pub const SHADER: &str = "gather_rows.wgsl";
/// Words per workgroup (`@workgroup_size`).
const WORKGROUP: usize = 256;

/// gather_rows.wgsl's `Params`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct Params {
    rows: u32,
    words: u32,
    stride: u32,
    _pad: u32,
}

bindings!(
    /// gather_rows.wgsl.
    Bindings {
        index: 1 Read,
        src: 2 Read,
        dst: 5 ReadWrite,
    }
);

pub struct Args<'b> {
    /// [rows] the source row of each destination row.
    pub index: &'b wgpu::Buffer,
    pub src: &'b wgpu::Buffer,
    pub dst: &'b wgpu::Buffer,
    pub rows: usize,
    /// Words (f32) copied per row, from its start.
    pub words: usize,
    /// Words from one row to the next, in `src` and `dst` alike.
    pub stride: usize,
}

pub struct GatherRows {
    kernel: Kernel,
}

impl GatherRows {
    pub fn new(device: &wgpu::Device) -> Self {
        GatherRows {
            kernel: Kernel::new(device, SHADER, None, Bindings::LAYOUT),
        }
    }

    pub fn record<'a>(&'a self, rec: &mut Recorder<'a>, args: Args<'_>) {
        let params = Params {
            rows: args.rows as u32,
            words: args.words as u32,
            stride: args.stride as u32,
            _pad: 0,
        };
        let bindings = Bindings {
            index: args.index,
            src: args.src,
            dst: args.dst,
        };
        let workgroups = [args.words.div_ceil(WORKGROUP) as u32, args.rows as u32, 1];
        rec.dispatch(&self.kernel, &params, &bindings, workgroups);
    }
}
