//! Fine-tuning adapters: a small safetensors file holding a correction of the output
//! projection on the target tokens that fine-tuning touched, with its manifest (base model,
//! what was trained, hyper-parameters, metrics) in the safetensors header's metadata.
//!
//! Tensors: `ids` U32 [K] (sorted, distinct target token ids), `delta_u` F32 [K, r],
//! `delta_v` F32 [r, D], `delta_bias` F32 [K]. Applied as
//! `logits[ids] += (h · delta_vᵀ) · delta_uᵀ + delta_bias` (a rank-r correction).

use crate::error::{Error, Result};
use crate::model::HeadDelta;
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

pub const ADAPTER_FORMAT: &str = "marian-wasm-adapter";
pub const ADAPTER_FORMAT_VERSION: u32 = 1;
const METADATA_KEY: &str = "marian_wasm_adapter";

/// What an adapter says about itself (kept in the safetensors metadata as JSON).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AdapterManifest {
    pub format: String,
    pub format_version: u32,
    /// sha256 of the base package's weights file: an adapter fits exactly one base model.
    pub base_model_sha256: String,
    pub d_model: usize,
    pub target_vocab_size: usize,
    /// Human-readable: which parameters were trained.
    pub trained: String,
    /// Hyper-parameters and data figures of the run (free-form JSON object).
    pub hyperparameters: serde_json::Value,
    /// Loss and BLEU/chrF before and after (free-form JSON object).
    pub metrics: serde_json::Value,
    pub created_by: String,
}

#[derive(Debug, Clone)]
pub struct Adapter {
    pub manifest: AdapterManifest,
    pub ids: Vec<u32>,
    pub rank: usize,
    /// Row-major [ids.len(), rank].
    pub delta_u: Vec<f32>,
    /// Row-major [rank, d_model].
    pub delta_v: Vec<f32>,
    pub delta_bias: Vec<f32>,
}

fn bytes_of(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

impl Adapter {
    /// Check shapes and values (also after reading a file that may be damaged).
    pub fn validate(&self) -> Result<()> {
        let m = &self.manifest;
        let k = self.ids.len();
        let bad = |msg: String| Err(Error::corrupt("adapter", msg));
        if m.format != ADAPTER_FORMAT {
            return bad(format!("format {:?} is not {ADAPTER_FORMAT:?}", m.format));
        }
        if m.format_version != ADAPTER_FORMAT_VERSION {
            return bad(format!(
                "format version {} is not supported (this build reads {ADAPTER_FORMAT_VERSION})",
                m.format_version
            ));
        }
        if self.rank == 0
            || self.delta_u.len() != k * self.rank
            || self.delta_v.len() != self.rank * m.d_model
            || self.delta_bias.len() != k
        {
            return bad(format!(
                "tensor sizes do not match: {k} ids, rank {}, {} + {} factor values (d_model {}), {} biases",
                self.rank,
                self.delta_u.len(),
                self.delta_v.len(),
                m.d_model,
                self.delta_bias.len()
            ));
        }
        if self.ids.windows(2).any(|w| w[0] >= w[1]) {
            return bad("ids are not sorted and distinct".into());
        }
        if let Some(&max) = self.ids.last() {
            if max as usize >= m.target_vocab_size {
                return bad(format!(
                    "token id {max} is outside the vocabulary ({})",
                    m.target_vocab_size
                ));
            }
        }
        if !self
            .delta_u
            .iter()
            .chain(&self.delta_v)
            .chain(&self.delta_bias)
            .all(|x| x.is_finite())
        {
            return bad("non-finite values".into());
        }
        Ok(())
    }

    /// The safetensors file.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.validate()?;
        let ids: Vec<u8> = self.ids.iter().flat_map(|x| x.to_le_bytes()).collect();
        let u = bytes_of(&self.delta_u);
        let v = bytes_of(&self.delta_v);
        let b = bytes_of(&self.delta_bias);
        let (k, r) = (self.ids.len(), self.rank);
        let view = |dtype, shape: Vec<usize>, data| {
            safetensors::tensor::TensorView::new(dtype, shape, data)
                .map_err(|e| Error::corrupt("adapter", e.to_string()))
        };
        let tensors = vec![
            ("ids", view(safetensors::Dtype::U32, vec![k], &ids[..])?),
            (
                "delta_u",
                view(safetensors::Dtype::F32, vec![k, r], &u[..])?,
            ),
            (
                "delta_v",
                view(
                    safetensors::Dtype::F32,
                    vec![r, self.manifest.d_model],
                    &v[..],
                )?,
            ),
            (
                "delta_bias",
                view(safetensors::Dtype::F32, vec![k], &b[..])?,
            ),
        ];
        let meta = HashMap::from([(
            METADATA_KEY.to_string(),
            serde_json::to_string(&self.manifest).expect("manifest serializes"),
        )]);
        safetensors::tensor::serialize(tensors, Some(meta))
            .map_err(|e| Error::corrupt("adapter", e.to_string()))
    }

    /// Read an adapter file; every problem is reported, nothing is trusted unchecked.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let corrupt = |msg: String| Error::corrupt("adapter", msg);
        let st = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| corrupt(format!("not a safetensors file ({e})")))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| corrupt(format!("unreadable header ({e})")))?;
        let json = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(METADATA_KEY))
            .ok_or_else(|| corrupt("no marian-wasm adapter manifest in the header".into()))?;
        let manifest: AdapterManifest =
            serde_json::from_str(json).map_err(|e| corrupt(format!("bad manifest ({e})")))?;
        let get = |name: &str, dtype: safetensors::Dtype| {
            let t = st
                .tensor(name)
                .map_err(|_| corrupt(format!("tensor {name} missing")))?;
            if t.dtype() != dtype {
                return Err(corrupt(format!("tensor {name} is {:?}", t.dtype())));
            }
            Ok(t.data().to_vec())
        };
        let rank = st
            .tensor("delta_u")
            .map_err(|_| corrupt("tensor delta_u missing".into()))?
            .shape()
            .get(1)
            .copied()
            .unwrap_or(0);
        let words = |b: Vec<u8>| -> Vec<[u8; 4]> {
            b.chunks_exact(4)
                .map(|c| [c[0], c[1], c[2], c[3]])
                .collect()
        };
        let adapter = Adapter {
            ids: words(get("ids", safetensors::Dtype::U32)?)
                .into_iter()
                .map(u32::from_le_bytes)
                .collect(),
            rank,
            delta_u: words(get("delta_u", safetensors::Dtype::F32)?)
                .into_iter()
                .map(f32::from_le_bytes)
                .collect(),
            delta_v: words(get("delta_v", safetensors::Dtype::F32)?)
                .into_iter()
                .map(f32::from_le_bytes)
                .collect(),
            delta_bias: words(get("delta_bias", safetensors::Dtype::F32)?)
                .into_iter()
                .map(f32::from_le_bytes)
                .collect(),
            manifest,
        };
        adapter.validate()?;
        Ok(adapter)
    }

    pub fn read(path: &std::path::Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes).map_err(|e| match e {
            Error::Corrupt { msg, .. } => Error::corrupt(path.display().to_string(), msg),
            other => other,
        })
    }

    pub fn write(&self, path: &std::path::Path) -> Result<()> {
        let bytes = self.to_bytes()?;
        // Write then rename: an interrupted save never leaves half an adapter under the name.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    }

    /// Refuse an adapter made for another base model.
    pub fn check_base(&self, model_sha256: &str, d_model: usize, vocab: usize) -> Result<()> {
        let m = &self.manifest;
        if m.base_model_sha256 != model_sha256 {
            return Err(Error::Input(format!(
                "this adapter was made for another base model (weights sha256 {}…); the loaded model is {}…",
                &m.base_model_sha256.get(..12).unwrap_or(&m.base_model_sha256),
                model_sha256.get(..12).unwrap_or(model_sha256)
            )));
        }
        if m.d_model != d_model || m.target_vocab_size != vocab {
            return Err(Error::Input(format!(
                "adapter shape (d_model {}, vocabulary {}) does not fit the model (d_model {d_model}, vocabulary {vocab})",
                m.d_model, m.target_vocab_size
            )));
        }
        Ok(())
    }

    /// The correction as the model applies it (the product U·V formed once, [K, D]).
    pub fn head_delta(&self) -> Result<HeadDelta> {
        let k = self.ids.len();
        let u = Tensor::from_vec(self.delta_u.clone(), (k, self.rank), &Device::Cpu)?;
        let v = Tensor::from_vec(
            self.delta_v.clone(),
            (self.rank, self.manifest.d_model),
            &Device::Cpu,
        )?;
        Ok(HeadDelta {
            ids: Tensor::from_vec(self.ids.clone(), k, &Device::Cpu)?,
            weight: u.matmul(&v)?,
            bias: Tensor::from_vec(self.delta_bias.clone(), k, &Device::Cpu)?,
        })
    }
}
