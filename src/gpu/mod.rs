//! The GPU backend: the Marian model in WGSL compute kernels through wgpu — Vulkan, Metal or
//! DX12 natively, WebGPU in the browser. Same generation loop as the CPU (`generate`), same
//! package bytes (quantized weights dequantized inside the kernels).

pub mod compose;
pub mod context;
pub mod kernels;
pub mod model;
pub mod weights;

pub use context::GpuContext;
pub use model::GpuMarian;
