//! The compiled kernels: each WGSL file joined with the weight format it reads
//! (`compose`), compiled into a pipeline with the bind-group layout its op declares
//! (`ops`). The set of them is [`Kernels`], one op each.

use super::compose::{self, Precision, WeightFormat};
use super::ops::{self, Access, Binding};
use std::borrow::Cow;

macro_rules! shader {
    ($name:literal) => {
        ($name, include_str!(concat!("shaders/", $name)))
    };
}

const SOURCES: [(&str, &str); 22] = [
    shader!("precision_f32.wgsl"),
    shader!("precision_f16.wgsl"),
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
    shader!("matmul_split_sum.wgsl"),
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

/// The WGSL module of kernel `file` reading weights stored as `format` (None: a kernel over
/// f32 activations only), its inner products in `precision` (matrix-product kernels only).
pub fn module_source(
    file: &'static str,
    format: Option<WeightFormat>,
    precision: Precision,
) -> String {
    let files = compose::module_files(file, format, precision);
    compose::compose(&files.into_iter().map(source).collect::<Vec<_>>())
}

/// One compiled kernel: its pipeline and the bind-group layout of its bindings.
pub struct Kernel {
    /// The file and the weight format it reads, e.g. `matvec.wgsl[Q8]` or, with f16 inner
    /// products, `matvec.wgsl[Q8, f16]` (for profiles).
    pub name: String,
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

impl Kernel {
    /// Compile `file` (joined with `format`'s dequantization) with the bindings `layout`.
    pub fn new(
        device: &wgpu::Device,
        file: &'static str,
        format: Option<WeightFormat>,
        layout: &[Binding],
    ) -> Self {
        Self::with_precision(device, file, format, Precision::F32, layout)
    }

    /// `new` for a matrix-product kernel whose inner products are in `precision` (F16 needs a
    /// device with `wgpu::Features::SHADER_F16`).
    pub fn with_precision(
        device: &wgpu::Device,
        file: &'static str,
        format: Option<WeightFormat>,
        precision: Precision,
        layout: &[Binding],
    ) -> Self {
        let source = module_source(file, format, precision);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(file),
            source: wgpu::ShaderSource::Wgsl(Cow::Owned(source)),
        });
        let layout = bind_group_layout(device, layout);
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(file),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(file),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        let name = match (format, precision) {
            (Some(f), Precision::F32) => format!("{file}[{f:?}]"),
            (Some(f), Precision::F16) => format!("{file}[{f:?}, f16]"),
            (None, _) => file.to_string(),
        };
        Kernel {
            name,
            pipeline,
            layout,
        }
    }
}

fn bind_group_layout(device: &wgpu::Device, bindings: &[Binding]) -> wgpu::BindGroupLayout {
    let entries: Vec<wgpu::BindGroupLayoutEntry> = bindings
        .iter()
        .map(|b| wgpu::BindGroupLayoutEntry {
            binding: b.number,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: match b.access {
                    Access::Uniform => wgpu::BufferBindingType::Uniform,
                    Access::Read => wgpu::BufferBindingType::Storage { read_only: true },
                    Access::ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
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

/// Every kernel the model records, compiled once per device.
pub struct Kernels {
    pub linear: ops::Linear,
    pub embed: ops::Embed,
    pub layer_norm: ops::LayerNorm,
    pub attention: ops::Attention,
    pub top_k: ops::TopK,
    pub row_summary: ops::RowSummary,
    pub gather_rows: ops::GatherRows,
    pub head_delta: ops::HeadDelta,
}

impl Kernels {
    /// Compile every kernel; `subgroups`: the device has the subgroup feature, so the
    /// matrix-vector kernel reduces with subgroup operations; `split_k`: small tiled products
    /// are split along K (`ops::linear`); `f16`: which stored forms the products multiply with
    /// f16 operands (anything but Off needs shader-f16 on the device).
    pub fn new(
        device: &wgpu::Device,
        subgroups: bool,
        split_k: bool,
        f16: ops::F16Products,
    ) -> Self {
        Kernels {
            linear: ops::Linear::new(device, subgroups, split_k, f16),
            embed: ops::Embed::new(device),
            layer_norm: ops::LayerNorm::new(device),
            attention: ops::Attention::new(device),
            top_k: ops::TopK::new(device),
            row_summary: ops::RowSummary::new(device),
            gather_rows: ops::GatherRows::new(device),
            head_delta: ops::HeadDelta::new(device),
        }
    }
}
