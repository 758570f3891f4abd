//! Package tensors on the GPU, uploaded once per model exactly as stored: quantized matrices
//! keep their int8/int4 values and f16 scales (the kernels dequantize), f16 stays f16.

use super::compose::WeightFormat;
use super::context::GpuContext;
use crate::error::Result;
use crate::package::quant::{Quant, StoredMatrix};
use wgpu::util::DeviceExt;

/// Storage buffers are bound in whole vec4s: pad every upload to 16 bytes.
fn padded(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let len = bytes.len().next_multiple_of(16).max(16);
    if len == bytes.len() {
        std::borrow::Cow::Borrowed(bytes)
    } else {
        let mut v = bytes.to_vec();
        v.resize(len, 0);
        std::borrow::Cow::Owned(v)
    }
}

pub fn upload(ctx: &GpuContext, what: &str, bytes: &[u8]) -> Result<wgpu::Buffer> {
    let data = padded(bytes);
    ctx.check_buffer_size(what, data.len() as u64)?;
    Ok(ctx
        .device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(what),
            contents: &data,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        }))
}

pub fn upload_f32(ctx: &GpuContext, what: &str, values: &[f32]) -> Result<wgpu::Buffer> {
    upload(ctx, what, bytemuck::cast_slice(values))
}

pub fn upload_u32(ctx: &GpuContext, what: &str, values: &[u32]) -> Result<wgpu::Buffer> {
    upload(ctx, what, bytemuck::cast_slice(values))
}

/// A working buffer of `floats` f32 (or u32) values, written by kernels or the host.
pub fn scratch(ctx: &GpuContext, what: &str, floats: usize) -> Result<wgpu::Buffer> {
    let size = (floats * 4).next_multiple_of(16).max(16) as u64;
    ctx.check_buffer_size(what, size)?;
    Ok(ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(what),
        size,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    }))
}

/// A matrix [rows, cols] in its stored form.
pub struct GpuMatrix {
    pub format: WeightFormat,
    pub rows: usize,
    pub cols: usize,
    pub values: wgpu::Buffer,
    /// Block scales (quantized forms); a placeholder otherwise.
    pub scales: wgpu::Buffer,
}

impl GpuMatrix {
    pub fn upload(
        ctx: &GpuContext,
        name: &str,
        m: &StoredMatrix,
        rows: usize,
        cols: usize,
    ) -> Result<Self> {
        if !cols.is_multiple_of(4) {
            return Err(crate::Error::Gpu(format!(
                "'{name}' has {cols} columns; the GPU kernels need a multiple of 4"
            )));
        }
        let format = match m.form {
            Quant::F32 => WeightFormat::F32,
            Quant::F16 => WeightFormat::F16,
            Quant::Q8 => WeightFormat::Q8,
            Quant::Q4 => WeightFormat::Q4,
        };
        let values = upload(ctx, name, &m.values)?;
        let scales = upload(ctx, name, m.scales.unwrap_or(&[]))?;
        Ok(GpuMatrix {
            format,
            rows,
            cols,
            values,
            scales,
        })
    }
}
