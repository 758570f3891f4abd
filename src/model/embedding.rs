//! Token embeddings (the same matrix is the tied output projection) and the static
//! sinusoidal positions added to them.

use super::products::{dequantize_matrix, matrix_product};
use crate::error::{Error, Result};
use crate::package::quant::Matrix;
use candle_core::{DType, Device, Tensor};
use std::sync::Arc;

/// Token embeddings; the same matrix is the tied output projection.
#[derive(Debug, Clone)]
pub struct Embedding {
    pub(super) matrix: Matrix,
}

impl Embedding {
    pub(super) fn dequantized(&self) -> Result<Self> {
        Ok(Embedding::new(dequantize_matrix(&self.matrix)?))
    }

    pub(super) fn new(matrix: Matrix) -> Self {
        Embedding { matrix }
    }

    fn check_ids(&self, ids: &[u32]) -> Result<()> {
        let rows = self.matrix.dims().0;
        match ids.iter().find(|&&i| i as usize >= rows) {
            Some(i) => Err(Error::Input(format!(
                "token {i} is beyond the embedding's {rows} rows"
            ))),
            None => Ok(()),
        }
    }
    /// ids [B, T] -> [B, T, D]
    pub(super) fn lookup(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(match &self.matrix {
            Matrix::Dense(t) => {
                let (b, s) = ids.dims2()?;
                t.index_select(&ids.flatten_all()?, 0)?
                    .to_dtype(DType::F32)?
                    .reshape((b, s, t.dim(1)?))?
            }
            Matrix::Quantized(q) => {
                let (b, s) = ids.dims2()?;
                let flat = ids.flatten_all()?.to_vec1::<u32>()?;
                self.check_ids(&flat)?;
                Tensor::from_vec(q.dequantize_rows(&flat), (b, s, q.dims().1), &Device::Cpu)?
            }
        })
    }
    pub(super) fn project(&self, x: &Tensor) -> Result<Tensor> {
        matrix_product(&self.matrix, x)
    }

    /// The projection onto the rows `ids` only, computed as `project` computes those columns
    /// (quantized rows keep their stored values and scales, so the kernel does the same
    /// arithmetic).
    pub(super) fn rows(&self, ids: &[u32]) -> Result<Matrix> {
        self.check_ids(ids)?;
        Ok(match &self.matrix {
            Matrix::Dense(t) => Matrix::Dense(t.index_select(&Tensor::new(ids, t.device())?, 0)?),
            Matrix::Quantized(q) => Matrix::Quantized(Arc::new(q.select_rows(ids))),
        })
    }
}

/// Static sinusoidal positions exactly as transformers' MarianSinusoidalPositionalEmbedding:
/// first half sin, second half cos, computed in f64 and rounded once.
pub(super) fn sinusoidal_positions(n_pos: usize, dim: usize) -> Result<Tensor> {
    Ok(Tensor::from_vec(
        sinusoidal_table(n_pos, dim),
        (n_pos, dim),
        &Device::Cpu,
    )?)
}

/// The position table [n_pos, dim] as plain floats (both backends upload this one).
pub(crate) fn sinusoidal_table(n_pos: usize, dim: usize) -> Vec<f32> {
    let half = dim / 2;
    let mut out = vec![0f32; n_pos * dim];
    for pos in 0..n_pos {
        for j in 0..half {
            let angle = pos as f64 / 10000f64.powf((2 * j) as f64 / dim as f64);
            out[pos * dim + j] = angle.sin() as f32;
            out[pos * dim + half + j] = angle.cos() as f32;
        }
    }
    out
}
