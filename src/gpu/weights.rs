//! Package tensors on the GPU, uploaded once per model exactly as stored: quantized matrices
//! keep their int8/int4 values and f16 scales (the kernels dequantize), f16 stays f16.

use super::compose::WeightFormat;
use super::context::GpuContext;
use crate::error::Result;
use crate::package::quant::{Quant, StoredMatrix};
use std::borrow::Cow;
use wgpu::util::DeviceExt;

/// Storage buffers are bound in whole vec4s: pad every upload to 16 bytes.
fn padded(bytes: &[u8]) -> Cow<'_, [u8]> {
    let len = bytes.len().next_multiple_of(16).max(16);
    if len == bytes.len() {
        Cow::Borrowed(bytes)
    } else {
        let mut v = bytes.to_vec();
        v.resize(len, 0);
        Cow::Owned(v)
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
        let (format, values, scales) = match (m.form, m.residual, m.scales) {
            // Only q8 matrices carry a residual (`WeightFile::stored_matrix` refuses others).
            (Quant::Q8, Some(nibbles), Some(scales)) => {
                let values = interleave_residual(&m.values, nibbles);
                (
                    WeightFormat::Q8Residual,
                    Cow::Owned(values),
                    Cow::Borrowed(scales),
                )
            }
            (form, _, scales) => {
                let format = match form {
                    Quant::F32 => WeightFormat::F32,
                    Quant::F16 => WeightFormat::F16,
                    Quant::Q8 => WeightFormat::Q8,
                    Quant::Q4 => WeightFormat::Q4,
                };
                (
                    format,
                    Cow::Borrowed(&m.values[..]),
                    Cow::Borrowed(scales.unwrap_or(&[])),
                )
            }
        };
        let values = upload(ctx, name, &values)?;
        let scales = upload(ctx, name, &scales)?;
        Ok(GpuMatrix {
            format,
            rows,
            cols,
            values,
            scales,
        })
    }
}

/// A Q8_0 matrix's values and its Q4_0 residual's nibbles as `dequant_q8_residual.wgsl` reads
/// them: per block of 32 weights, its 32 int8 values then the residual's 16 nibble bytes (48
/// bytes, 12 u32 words); the scales stay as stored.
fn interleave_residual(values: &[u8], nibbles: &[u8]) -> Vec<u8> {
    let blocks = values.len() / 32;
    let mut packed = Vec::with_capacity(blocks * 48);
    for b in 0..blocks {
        packed.extend_from_slice(&values[b * 32..][..32]);
        packed.extend_from_slice(&nibbles[b * 16..][..16]);
    }
    packed
}
