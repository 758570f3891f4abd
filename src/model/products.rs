//! The matrix products of the CPU model: `x · Wᵀ` (+ bias) over a weight that is f32/f16
//! (candle's GEMM, as transformers computes) or quantized (`qgemm`), and the no-copy views of
//! a tensor's values that feed them.

use super::qgemm;
use crate::error::{Error, Result};
use crate::package::quant::Matrix;
use candle_core::quantized::QMatMul;
use candle_core::{DType, Device, Module, Tensor};

/// `x · Wᵀ` for x [..., cols] and W [rows, cols]: f32 weights through candle's GEMM (exactly as
/// transformers computes), quantized ones through `qgemm`.
pub(super) fn matrix_product(w: &Matrix, x: &Tensor) -> Result<Tensor> {
    match w {
        // An f16 embedding's own products (not the decoding steps', which go through its
        // screen): widened for the call.
        Matrix::Dense(t) if t.dtype() != x.dtype() => {
            Ok(QMatMul::Tensor(t.to_dtype(x.dtype())?).forward(x)?)
        }
        Matrix::Dense(t) => Ok(QMatMul::Tensor(t.clone()).forward(x)?),
        Matrix::Quantized(q) => {
            let (y, shape) = quantized_product(q, x)?;
            Ok(Tensor::from_vec(y, shape, &Device::Cpu)?)
        }
    }
}

/// `x · wᵀ + bias` (a `Linear` layer): x [..., in], w [out, in], bias [out] -> [..., out]. With a
/// quantized weight the bias is added to the product's values before they become a tensor —
/// the same sums as candle's `broadcast_add`, without its second tensor and strided pass.
pub(super) fn linear_product(w: &Matrix, x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    linear_product_then(w, x, bias, None)
}

/// `linear_product`, then `epilogue` over the result's f32 values in place: for a quantized
/// weight in the same pass over each row as the bias (no tensor op between them).
pub(super) fn linear_product_then(
    w: &Matrix,
    x: &Tensor,
    bias: &Tensor,
    epilogue: Option<fn(&mut [f32])>,
) -> Result<Tensor> {
    match w {
        Matrix::Quantized(q) => {
            let (mut y, shape) = quantized_product(q, x)?;
            let rows = q.dims().0;
            if bias.dims() != [rows] {
                return Err(Error::Input(format!(
                    "a bias of shape {:?} for a [{rows}, _] weight",
                    bias.dims()
                )));
            }
            with_f32_values(bias, |bias| {
                for row in y.chunks_exact_mut(rows.max(1)) {
                    for (v, b) in row.iter_mut().zip(bias) {
                        *v += b;
                    }
                }
            })?;
            if let Some(epilogue) = epilogue {
                epilogue(&mut y);
            }
            Ok(Tensor::from_vec(y, shape, &Device::Cpu)?)
        }
        Matrix::Dense(_) => {
            let y = matrix_product(w, x)?.broadcast_add(bias)?;
            let Some(epilogue) = epilogue else {
                return Ok(y);
            };
            let dtype = y.dtype();
            let mut values = y.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            epilogue(&mut values);
            Ok(Tensor::from_vec(values, y.dims(), &Device::Cpu)?.to_dtype(dtype)?)
        }
    }
}

/// A quantized product's values and shape: x [..., in], w [out, in] -> [..., out].
pub(super) fn quantized_product(
    q: &qgemm::PackedMatrix,
    x: &Tensor,
) -> Result<(Vec<f32>, Vec<usize>)> {
    let (rows, cols) = q.dims();
    let mut shape = x.dims().to_vec();
    let m = x.elem_count() / cols.max(1);
    if shape.last() != Some(&cols) {
        return Err(Error::Input(format!(
            "matrix product of {shape:?} with a [{rows}, {cols}] weight"
        )));
    }
    let y = with_f32_values(x, |data| q.matmul(data, m))?;
    *shape.last_mut().expect("checked above") = rows;
    Ok((y, shape))
}

/// `f` of a CPU tensor's values as one row-major f32 slice (no copy when it is already f32
/// and contiguous).
pub(super) fn with_f32_values<T>(x: &Tensor, f: impl FnOnce(&[f32]) -> T) -> Result<T> {
    let x = x.to_dtype(DType::F32)?.contiguous()?;
    let (storage, layout) = x.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        return Err(Error::Input("this product runs on the CPU".into()));
    };
    let data = cpu.as_slice::<f32>()?;
    Ok(f(&data[layout.start_offset()..][..x.elem_count()]))
}

/// `f` of a contiguous f16 CPU tensor's values, without a copy; `None` for any other tensor.
pub(super) fn with_f16_values<T>(t: &Tensor, f: impl FnOnce(&[half::f16]) -> T) -> Option<T> {
    if t.dtype() != DType::F16 || !t.is_contiguous() {
        return None;
    }
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        return None;
    };
    let data = cpu.as_slice::<half::f16>().ok()?;
    Some(f(&data[layout.start_offset()..][..t.elem_count()]))
}

/// The same matrix with quantized values dequantized to f32 (candle's f32 GEMM with its
/// autograd, for fine-tuning's passes).
pub(super) fn dequantize_matrix(m: &Matrix) -> Result<Matrix> {
    Ok(Matrix::Dense(dense_f32(m)?))
}

/// A matrix as an f32 tensor (quantized values dequantized).
pub(super) fn dense_f32(m: &Matrix) -> Result<Tensor> {
    Ok(match m {
        Matrix::Quantized(q) => Tensor::from_vec(q.dequantize(), q.dims(), &Device::Cpu)?,
        Matrix::Dense(t) => t.to_dtype(DType::F32)?,
    })
}
