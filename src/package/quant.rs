//! Quantized matrices as stored in a package, and their rebuild into candle types.
//!
//! GGML blocks (Q8_0: f16 scale + 32 int8, 34 bytes; Q4_0: f16 scale + 16 nibble bytes,
//! 18 bytes) are not 4-byte aligned, which WGSL storage buffers need. So a package keeps
//! each quantized matrix as two plain tensors, both row-major over (row, block):
//!   `<name>.q8`  U8 [rows, cols]      int8 values (two's complement) in GGML order
//!   `<name>.q4`  U8 [rows, cols / 2]  Q4_0 nibbles in GGML order (low nibbles = first 16)
//!   `<name>.scales` F16 [rows, cols / 32]
//! and, for a q8 matrix converted with a residual (`convert --residual`), its rounding error
//! rounded to Q4_0 levels r (−8 … 7) under the implied scale s / 16 of each block's Q8_0 scale
//! s (residual quantization: the weight is q·s + r·s/16 = (16q + r)·s/16, a 12-bit level, at
//! 4 more bits of storage):
//!   `<name>.residual.q4` U8 [rows, cols / 2]
//! The CPU folds such a pair into one matrix of 12-bit levels (`PackedMatrix::
//! from_q8_residual_folded`) except where the screened output projection wants them apart.
//! The CPU path re-interleaves them into GGML blocks (one copy at load); a GPU kernel reads
//! them as stored. How weights are rounded to those blocks (to nearest, or by GPTQ) is
//! `package::rounding`'s.

use crate::error::{Error, Result};
use crate::model::qgemm::PackedMatrix;
use candle_core::{DType, Device, Tensor};
use std::borrow::Cow;
use std::sync::Arc;

pub const BLOCK: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quant {
    F32,
    F16,
    Q8,
    Q4,
}

impl std::str::FromStr for Quant {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(Quant::F32),
            "f16" => Ok(Quant::F16),
            "q8" => Ok(Quant::Q8),
            "q4" => Ok(Quant::Q4),
            other => Err(Error::Input(format!(
                "unknown quantization '{other}' (expected f32, f16, q8 or q4)"
            ))),
        }
    }
}

impl std::fmt::Display for Quant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Quant::F32 => "f32",
            Quant::F16 => "f16",
            Quant::Q8 => "q8",
            Quant::Q4 => "q4",
        };
        f.write_str(s)
    }
}

/// A tensor ready to be written into a safetensors file.
#[derive(Clone)]
pub struct StoredTensor {
    pub name: String,
    pub dtype: safetensors::Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl StoredTensor {
    pub fn f32(name: &str, t: &Tensor) -> Result<Self> {
        let t = t.to_dtype(DType::F32)?.contiguous()?;
        let v = t.flatten_all()?.to_vec1::<f32>()?;
        Ok(StoredTensor {
            name: name.to_string(),
            dtype: safetensors::Dtype::F32,
            shape: t.dims().to_vec(),
            data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        })
    }
    #[cfg(not(target_arch = "wasm32"))]
    fn f16(name: &str, t: &Tensor) -> Result<Self> {
        let t = t.to_dtype(DType::F16)?.contiguous()?;
        let v = t.flatten_all()?.to_vec1::<half::f16>()?;
        Ok(StoredTensor {
            name: name.to_string(),
            dtype: safetensors::Dtype::F16,
            shape: t.dims().to_vec(),
            data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        })
    }
}

/// Which stored form a [rows, cols] matrix gets under `quant`. Matrices whose rows do not
/// split into 32-wide blocks cannot use GGML blocks and fall back to f16 (or f32).
pub fn matrix_form(quant: Quant, cols: usize) -> Quant {
    match quant {
        Quant::Q8 | Quant::Q4 if !cols.is_multiple_of(BLOCK) => Quant::F16,
        q => q,
    }
}

/// Encode one weight matrix [rows, cols] in the package's form: f32 or f16 as is; Q8_0 / Q4_0
/// rounded by GPTQ against `gram` (the Gram matrix of the layer's inputs) when given, else to
/// the nearest level (`package::rounding`). With `residual`, a Q8_0 matrix also stores its
/// rounding error as a Q4_0 residual under the implied scale s / 16 (`<name>.residual.q4`,
/// module docs); such a matrix is rounded to nearest (the pair is within s / 32 of every
/// weight, which leaves GPTQ nothing to compensate). `residual` with a Q4_0 form is an error.
#[cfg(not(target_arch = "wasm32"))]
pub fn encode_matrix(
    name: &str,
    w: &Tensor,
    quant: Quant,
    gram: Option<&crate::model::observe::InputGram>,
    residual: bool,
) -> Result<Vec<StoredTensor>> {
    use super::rounding::{round_gptq, round_nearest, round_nearest_with_residual};
    let (rows, cols) = w.dims2()?;
    let form = matrix_form(quant, cols);
    let tag = match form {
        Quant::F32 => return Ok(vec![StoredTensor::f32(name, w)?]),
        Quant::F16 => return Ok(vec![StoredTensor::f16(name, w)?]),
        Quant::Q8 => "q8",
        Quant::Q4 => "q4",
    };
    if residual && form != Quant::Q8 {
        return Err(Error::Input(format!(
            "'{name}' is {form}: only q8 matrices take a residual"
        )));
    }
    let values = w.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let (rounded, nibbles) = if residual {
        let (q8, nibbles) = round_nearest_with_residual(&values, rows, cols);
        (q8, Some(nibbles))
    } else if let Some(g) = gram {
        (round_gptq(&values, rows, cols, form, g)?, None)
    } else {
        (round_nearest(&values, rows, cols, form), None)
    };
    let value_cols = if form == Quant::Q8 { cols } else { cols / 2 };
    let mut stored = vec![
        StoredTensor {
            name: format!("{name}.{tag}"),
            dtype: safetensors::Dtype::U8,
            shape: vec![rows, value_cols],
            data: rounded.values,
        },
        StoredTensor {
            name: format!("{name}.scales"),
            dtype: safetensors::Dtype::F16,
            shape: vec![rows, cols / BLOCK],
            data: rounded.scales,
        },
    ];
    if let Some(nibbles) = nibbles {
        stored.push(StoredTensor {
            name: format!("{name}.{RESIDUAL}.q4"),
            dtype: safetensors::Dtype::U8,
            shape: vec![rows, cols / 2],
            data: nibbles,
        });
    }
    Ok(stored)
}

/// The infix of a matrix's residual tensor (`<name>.residual.q4`).
pub const RESIDUAL: &str = "residual";

/// A weight matrix as the CPU backend uses it.
/// A matrix's stored bytes: little-endian f32 or f16 values, or GGML Q8_0/Q4_0 values with
/// their f16 block scales kept apart (the package's aligned layout).
pub struct StoredMatrix<'a> {
    pub form: Quant,
    pub values: Cow<'a, [u8]>,
    pub scales: Option<&'a [u8]>,
    /// A Q8_0 matrix's Q4_0 residual, if it has one: nibbles [rows, cols / 2] under the
    /// implied scale s / 16 of each block's Q8_0 scale s; the matrix is `values` + this.
    pub residual: Option<&'a [u8]>,
}

#[derive(Clone, Debug)]
pub enum Matrix {
    /// f32 (f16 packages are widened once at load: candle's CPU f16 matmul is slow).
    Dense(Tensor),
    /// Q8_0 / Q4_0 values and scales, laid out for the quantized kernel (`model::qgemm`).
    Quantized(Arc<PackedMatrix>),
}

impl Matrix {
    pub fn dims(&self) -> (usize, usize) {
        match self {
            Matrix::Dense(t) => {
                let d = t.dims();
                (d[0], d[1])
            }
            Matrix::Quantized(q) => q.dims(),
        }
    }
}

/// Read access to one safetensors file, with its name for error messages.
pub struct WeightFile<'a> {
    pub file: String,
    pub st: safetensors::SafeTensors<'a>,
    /// Widen quantized matrices to f32 on load: the exact reference the GPU kernels (which
    /// dequantize in place) are tested against.
    pub dequantize: bool,
}

impl<'a> WeightFile<'a> {
    pub fn parse(file: &str, bytes: &'a [u8]) -> Result<Self> {
        let st = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| Error::corrupt(file, format!("not a valid safetensors file: {e}")))?;
        Ok(WeightFile {
            file: file.to_string(),
            st,
            dequantize: false,
        })
    }

    pub fn has(&self, name: &str) -> bool {
        self.st.tensor(name).is_ok()
    }

    fn view(&self, name: &str) -> Result<safetensors::tensor::TensorView<'a>> {
        self.st
            .tensor(name)
            .map_err(|_| Error::corrupt(&self.file, format!("tensor '{name}' is missing")))
    }

    /// A float tensor (F32/F16/BF16 as stored), widened to f32, with its shape checked.
    pub fn float(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let v = self.view(name)?;
        if v.shape() != shape {
            return Err(Error::corrupt(
                &self.file,
                format!(
                    "tensor '{name}' has shape {:?}, expected {shape:?}",
                    v.shape()
                ),
            ));
        }
        let dtype = match v.dtype() {
            safetensors::Dtype::F32 => DType::F32,
            safetensors::Dtype::F16 => DType::F16,
            safetensors::Dtype::BF16 => DType::BF16,
            d => {
                return Err(Error::corrupt(
                    &self.file,
                    format!("tensor '{name}' has dtype {d:?}, expected a float type"),
                ))
            }
        };
        let t = Tensor::from_raw_buffer(v.data(), dtype, v.shape(), &Device::Cpu)?;
        Ok(t.to_dtype(DType::F32)?)
    }

    fn bytes(&self, name: &str, dtype: safetensors::Dtype, shape: &[usize]) -> Result<&'a [u8]> {
        let v = self.view(name)?;
        if v.dtype() != dtype || v.shape() != shape {
            return Err(Error::corrupt(
                &self.file,
                format!(
                    "tensor '{name}' is {:?} {:?}, expected {dtype:?} {shape:?}",
                    v.dtype(),
                    v.shape()
                ),
            ));
        }
        Ok(v.data())
    }

    /// A [rows, cols] matrix's bytes exactly as stored, for backends that read them in place
    /// (the GPU dequantizes inside its kernels).
    pub fn stored_matrix(&self, name: &str, rows: usize, cols: usize) -> Result<StoredMatrix<'a>> {
        for (tag, form, value_cols) in [("q8", Quant::Q8, cols), ("q4", Quant::Q4, cols / 2)] {
            if !self.has(&format!("{name}.{tag}")) {
                continue;
            }
            if !cols.is_multiple_of(BLOCK) {
                return Err(Error::corrupt(
                    &self.file,
                    format!("'{name}' is quantized but its {cols} columns do not split into blocks of {BLOCK}"),
                ));
            }
            let residual_values = format!("{name}.{RESIDUAL}.q4");
            if self.has(&format!("{name}.{RESIDUAL}.scales")) {
                return Err(Error::corrupt(
                    &self.file,
                    format!("'{name}' has a residual with scales of its own, a form only earlier builds of marian-wasm wrote; convert the model again"),
                ));
            }
            let residual = if self.has(&residual_values) {
                if form != Quant::Q8 {
                    return Err(Error::corrupt(
                        &self.file,
                        format!("'{name}' is {form} with a residual; only q8 matrices take one"),
                    ));
                }
                Some(self.bytes(&residual_values, safetensors::Dtype::U8, &[rows, cols / 2])?)
            } else {
                None
            };
            return Ok(StoredMatrix {
                form,
                values: Cow::Borrowed(self.bytes(
                    &format!("{name}.{tag}"),
                    safetensors::Dtype::U8,
                    &[rows, value_cols],
                )?),
                scales: Some(self.bytes(
                    &format!("{name}.scales"),
                    safetensors::Dtype::F16,
                    &[rows, cols / BLOCK],
                )?),
                residual,
            });
        }
        let v = self.view(name)?;
        let form = match v.dtype() {
            safetensors::Dtype::F32 => Quant::F32,
            safetensors::Dtype::F16 => Quant::F16,
            _ => {
                // bf16 and friends: widen once (packages written by `convert` never hold them).
                let t = self.float(name, &[rows, cols])?;
                return Ok(StoredMatrix {
                    form: Quant::F32,
                    values: Cow::Owned(StoredTensor::f32(name, &t)?.data),
                    scales: None,
                    residual: None,
                });
            }
        };
        Ok(StoredMatrix {
            form,
            values: Cow::Borrowed(self.bytes(name, v.dtype(), &[rows, cols])?),
            scales: None,
            residual: None,
        })
    }

    /// An embedding [rows, cols]: as `matrix`, except that one stored as f16 stays an f16
    /// tensor (half the memory of widening it; the CPU model looks its rows up, widened, and
    /// multiplies through `model::screened_head`) unless this file dequantizes.
    pub fn embedding_matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix> {
        let stored = self.stored_matrix(name, rows, cols)?;
        // Only where the screen can run (whole blocks of 32): elsewhere a product would widen
        // the whole matrix every step.
        if stored.form != Quant::F16 || self.dequantize || !cols.is_multiple_of(BLOCK) {
            // A residual stays apart: the screen multiplies every token by the q8 part alone.
            return self.packed(name, rows, cols, false);
        }
        Ok(Matrix::Dense(Tensor::from_raw_buffer(
            &stored.values,
            DType::F16,
            &[rows, cols],
            &Device::Cpu,
        )?))
    }

    /// Load a [rows, cols] matrix in whichever form the package stored it (a q8 matrix with a
    /// residual as one matrix of 12-bit levels: one product, `PackedMatrix::from_q8_residual`).
    pub fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix> {
        self.packed(name, rows, cols, true)
    }

    /// `matrix`, with a residual folded in or kept apart (`PackedMatrix::residual`).
    fn packed(&self, name: &str, rows: usize, cols: usize, fold_residual: bool) -> Result<Matrix> {
        let stored = self.stored_matrix(name, rows, cols)?;
        let values = &stored.values[..];
        let packed = match (stored.form, stored.scales, stored.residual) {
            (Quant::Q8, Some(scales), Some(nibbles)) if fold_residual => {
                PackedMatrix::from_q8_residual(rows, cols, values, scales, nibbles)
            }
            (Quant::Q8, Some(scales), Some(nibbles)) => {
                PackedMatrix::from_q8_and_residual(rows, cols, values, scales, nibbles)
            }
            (Quant::Q8, Some(scales), None) => PackedMatrix::from_q8(rows, cols, values, scales),
            (Quant::Q4, Some(scales), _) => PackedMatrix::from_q4(rows, cols, values, scales),
            _ => return Ok(Matrix::Dense(self.float(name, &[rows, cols])?)),
        };
        if self.dequantize {
            let t = Tensor::from_vec(packed.dequantize(), (rows, cols), &Device::Cpu)?;
            return Ok(Matrix::Dense(t));
        }
        Ok(Matrix::Quantized(Arc::new(packed)))
    }
}
