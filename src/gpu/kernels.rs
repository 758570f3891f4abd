//! The compiled kernels (one WGSL file each, joined with the weight format they read) and the
//! recorder that turns a forward pass into one command buffer of dispatches.

use super::compose::{self, WeightFormat};
use std::borrow::Cow;
use std::collections::HashMap;

macro_rules! shader {
    ($name:literal) => {
        ($name, include_str!(concat!("shaders/", $name)))
    };
}

const SOURCES: [(&str, &str); 19] = [
    shader!("common.wgsl"),
    shader!("matmul_params.wgsl"),
    shader!("block_scales.wgsl"),
    shader!("dequant_f32.wgsl"),
    shader!("dequant_f16.wgsl"),
    shader!("dequant_q8.wgsl"),
    shader!("dequant_q4.wgsl"),
    shader!("dequant_q8_residual.wgsl"),
    shader!("matvec_common.wgsl"),
    shader!("matvec.wgsl"),
    shader!("matvec_subgroup.wgsl"),
    shader!("matmul_tiled.wgsl"),
    shader!("embed.wgsl"),
    shader!("layer_norm.wgsl"),
    shader!("attention.wgsl"),
    shader!("top_k.wgsl"),
    shader!("row_summary.wgsl"),
    shader!("gather_rows.wgsl"),
    shader!("head_delta.wgsl"),
];

fn source(name: &str) -> &'static str {
    SOURCES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| *s)
        .unwrap_or_else(|| panic!("shader {name} is not embedded"))
}

/// Binding kinds, by binding number (the layout every kernel of a family shares).
#[derive(Clone, Copy)]
enum Slot {
    Uniform,
    Read,
    Write,
}

pub struct Kernel {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

/// Rows up to which the matrix-vector kernel is used (its accumulator count).
pub const MATVEC_MAX_ROWS: usize = 8;
/// Bytes between two dispatches' parameters in the uniform buffer.
pub const PARAM_SLOT: u64 = 256;

pub struct Kernels {
    pub matvec: HashMap<WeightFormat, Kernel>,
    pub matmul_tiled: HashMap<WeightFormat, Kernel>,
    pub embed: HashMap<WeightFormat, Kernel>,
    pub layer_norm: Kernel,
    pub attention: Kernel,
    pub top_k: Kernel,
    pub row_summary: Kernel,
    pub gather_rows: Kernel,
    pub head_delta: Kernel,
}

fn layout(device: &wgpu::Device, slots: &[(u32, Slot)]) -> wgpu::BindGroupLayout {
    let entries: Vec<wgpu::BindGroupLayoutEntry> = slots
        .iter()
        .map(|&(binding, slot)| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: match slot {
                    Slot::Uniform => wgpu::BufferBindingType::Uniform,
                    Slot::Read => wgpu::BufferBindingType::Storage { read_only: true },
                    Slot::Write => wgpu::BufferBindingType::Storage { read_only: false },
                },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        })
        .collect();
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: None,
        entries: &entries,
    })
}

fn kernel(device: &wgpu::Device, name: &str, src: String, slots: &[(u32, Slot)]) -> Kernel {
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(name),
        source: wgpu::ShaderSource::Wgsl(Cow::Owned(src)),
    });
    let layout = layout(device, slots);
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(name),
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(name),
        layout: Some(&pipeline_layout),
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    Kernel { pipeline, layout }
}

impl Kernels {
    /// Compile every kernel; `subgroups`: the device has the subgroup feature, so the
    /// matrix-vector kernel reduces with subgroup operations.
    pub fn new(device: &wgpu::Device, subgroups: bool) -> Self {
        use Slot::*;
        let module = |file: &'static str, format: Option<WeightFormat>| {
            let files = compose::module_files(file, format);
            compose::compose(&files.into_iter().map(source).collect::<Vec<_>>())
        };
        let weight_slots = [
            (0, Uniform),
            (1, Read),
            (2, Read),
            (3, Read),
            (4, Read),
            (5, Write),
        ];
        let family = |file: &'static str| -> HashMap<WeightFormat, Kernel> {
            WeightFormat::ALL
                .iter()
                .map(|&f| {
                    (
                        f,
                        kernel(device, file, module(file, Some(f)), &weight_slots),
                    )
                })
                .collect()
        };
        let plain = |file: &'static str, slots: &[(u32, Slot)]| {
            kernel(device, file, module(file, None), slots)
        };
        Kernels {
            matvec: family(if subgroups {
                "matvec_subgroup.wgsl"
            } else {
                "matvec.wgsl"
            }),
            matmul_tiled: family("matmul_tiled.wgsl"),
            embed: family("embed.wgsl"),
            layer_norm: plain(
                "layer_norm.wgsl",
                &[(0, Uniform), (1, Read), (2, Read), (3, Read), (5, Write)],
            ),
            attention: plain(
                "attention.wgsl",
                &[
                    (0, Uniform),
                    (1, Read),
                    (2, Read),
                    (3, Read),
                    (4, Read),
                    (5, Write),
                    (6, Read),
                ],
            ),
            top_k: plain(
                "top_k.wgsl",
                &[(0, Uniform), (1, Read), (5, Write), (6, Write)],
            ),
            row_summary: plain(
                "row_summary.wgsl",
                &[(0, Uniform), (1, Read), (2, Read), (5, Write)],
            ),
            gather_rows: plain(
                "gather_rows.wgsl",
                &[(0, Uniform), (1, Read), (2, Read), (5, Write)],
            ),
            head_delta: plain(
                "head_delta.wgsl",
                &[
                    (0, Uniform),
                    (1, Read),
                    (2, Read),
                    (3, Read),
                    (4, Read),
                    (5, Write),
                ],
            ),
        }
    }
}

/// Workgroup counts for `n` workgroups along one axis, folded into y past the 65535 limit
/// (kernels recover the index as `wid.x + wid.y * num_workgroups.x`).
pub fn grid(n: usize) -> [u32; 3] {
    const MAX: usize = 65535;
    if n <= MAX {
        [n.max(1) as u32, 1, 1]
    } else {
        [MAX as u32, n.div_ceil(MAX) as u32, 1]
    }
}

/// Bind groups made once and reused on every step: dispatch `i` of a recording gets the bind
/// group made for dispatch `i` the first time, as long as it binds the same buffers.
pub struct Program {
    params: wgpu::Buffer,
    slots: usize,
    cached: Vec<(Vec<wgpu::Buffer>, wgpu::BindGroup)>,
}

impl Program {
    pub fn new(device: &wgpu::Device, slots: usize) -> Self {
        Program {
            params: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("params"),
                size: slots as u64 * PARAM_SLOT,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            slots,
            cached: Vec::new(),
        }
    }
}

struct Op<'k> {
    kernel: &'k Kernel,
    workgroups: [u32; 3],
}

/// One recording: dispatches in order, their parameters written with one buffer write.
pub struct Recorder<'a> {
    device: &'a wgpu::Device,
    program: &'a mut Program,
    params: Vec<u8>,
    ops: Vec<Op<'a>>,
}

impl<'a> Recorder<'a> {
    pub fn new(device: &'a wgpu::Device, program: &'a mut Program) -> Self {
        Recorder {
            device,
            program,
            params: Vec::new(),
            ops: Vec::new(),
        }
    }

    /// Queue one dispatch of `kernel` with `params` (a `#[repr(C)]` struct as bytes) and
    /// `buffers` at their binding numbers (binding 0 is the parameters).
    pub fn dispatch(
        &mut self,
        kernel: &'a Kernel,
        params: &[u8],
        buffers: &[(u32, &wgpu::Buffer)],
        workgroups: [u32; 3],
    ) {
        debug_assert!(params.len() as u64 <= PARAM_SLOT);
        let i = self.ops.len();
        self.params.extend_from_slice(params);
        self.params.resize((i + 1) * PARAM_SLOT as usize, 0);
        let wanted: Vec<wgpu::Buffer> = buffers.iter().map(|(_, b)| (*b).clone()).collect();
        let reuse = i < self.program.cached.len()
            && i < self.program.slots
            && self.program.cached[i].0 == wanted;
        if !reuse && i < self.program.slots {
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &self.program.params,
                    offset: i as u64 * PARAM_SLOT,
                    size: wgpu::BufferSize::new(params.len() as u64),
                }),
            }];
            for (binding, buffer) in buffers {
                entries.push(wgpu::BindGroupEntry {
                    binding: *binding,
                    resource: buffer.as_entire_binding(),
                });
            }
            let group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &kernel.layout,
                entries: &entries,
            });
            if i < self.program.cached.len() {
                self.program.cached[i] = (wanted, group);
            } else {
                self.program.cached.push((wanted, group));
            }
        }
        self.ops.push(Op { kernel, workgroups });
    }

    /// Encode everything recorded into `encoder` (parameters are written to the queue first).
    pub fn finish(self, queue: &wgpu::Queue, encoder: &mut wgpu::CommandEncoder) {
        assert!(
            self.ops.len() <= self.program.slots,
            "a recording of {} dispatches exceeds its program's {} slots",
            self.ops.len(),
            self.program.slots
        );
        if self.ops.is_empty() {
            return;
        }
        queue.write_buffer(&self.program.params, 0, &self.params);
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: None,
            timestamp_writes: None,
        });
        for (i, op) in self.ops.iter().enumerate() {
            pass.set_pipeline(&op.kernel.pipeline);
            pass.set_bind_group(0, &self.program.cached[i].1, &[]);
            let [x, y, z] = op.workgroups;
            pass.dispatch_workgroups(x, y, z);
        }
    }
}
