//! The GPU backend: the Marian model in WGSL compute kernels through wgpu — Vulkan, Metal or
//! DX12 natively, WebGPU in the browser. Same generation loop as the CPU (`generate`), same
//! package bytes (quantized weights dequantized inside the kernels).

// In the browser wgpu's handles are neither Send nor Sync (one JS thread owns the GPU); the `Arc`s
// that share them natively are then plain shared ownership on that thread.
#![cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]

pub mod compose;
pub mod context;
pub mod kernels;
pub mod model;
pub mod ops;
pub mod profile;
pub mod recorder;
pub mod weights;

pub use context::{GpuContext, KernelOptions};
pub use model::GpuMarian;
pub use ops::F16Products;
