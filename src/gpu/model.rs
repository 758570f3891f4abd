//! The Marian encoder-decoder on the GPU: the same layers, weights and step contract as the
//! CPU model (`crate::model`), each operation a WGSL kernel (`gpu::ops`). Weights are uploaded
//! once; a batch's buffers are made once in `start` and reused by every step; a step reads
//! back only each row's best k tokens.
//!
//! - `layers`: the encoder and decoder layers and the head, recorded step by step under the
//!   CPU layers' names;
//! - `state`: a batch's buffers and the generation contract (`Backend`: start, step,
//!   reorder_cache);
//! - `submit`: submission and read-back;
//! - `teacher_forced`: fine-tuning's features pass.

use super::context::GpuContext;
use super::kernels::Kernels;
use super::ops::attention::MAX_KEYS;
use super::weights::{upload_f32, upload_u32, GpuMatrix};
use crate::adapter::{EntryConditions, NOT_CONDITIONED};
use crate::config::{Activation, MarianConfig};
use crate::error::{Error, Result};
use crate::model::weights::{
    DecoderLayerWeights, EncoderLayerWeights, MarianWeights, WeightSource,
};
use crate::model::{sinusoidal_table, HeadDelta};
use crate::package::quant::WeightFile;
use crate::package::Package;
use std::sync::{Arc, Mutex};

mod layers;
mod state;
mod submit;
mod teacher_forced;

pub use state::GpuState;
pub use teacher_forced::TeacherForced;

/// Candidates per row a step may ask for (2 x 64 beams).
const MAX_K: usize = 128;

// The model's structure is the CPU model's (crate::model::weights); only the storage differs.
type EncoderLayer = EncoderLayerWeights<GpuMatrix, wgpu::Buffer>;
type DecoderLayer = DecoderLayerWeights<GpuMatrix, wgpu::Buffer>;

/// A head adapter on the device: [k] token ids, their weight rows [k, d_model] and biases [k].
struct Delta {
    ids: wgpu::Buffer,
    weight: wgpu::Buffer,
    bias: wgpu::Buffer,
    /// [k, 2]: (after, group) per entry.
    conditions: wgpu::Buffer,
    k: usize,
    /// The conditions as the CPU holds them (the trigger groups a batch's sources hit).
    host: Option<EntryConditions>,
}

pub struct GpuMarian {
    ctx: Arc<GpuContext>,
    pub config: MarianConfig,
    encoder_embed: Arc<GpuMatrix>,
    decoder_embed: Arc<GpuMatrix>,
    lm_head: Arc<GpuMatrix>,
    final_logits_bias: wgpu::Buffer,
    /// The sinusoidal position table [max_position_embeddings, d_model].
    positions: wgpu::Buffer,
    embed_scale: f32,
    activation_fn: Activation,
    encoder: Vec<EncoderLayer>,
    decoder: Vec<DecoderLayer>,
    delta: Mutex<Option<Arc<Delta>>>,
    /// An adapter's merged fc2 of the last decoder layer (f32), in place of the package's.
    last_fc2: Mutex<Option<Arc<GpuMatrix>>>,
    /// The banned-token list last uploaded, shared by every batch (it changes only with the
    /// generation settings).
    banned: Mutex<Option<(Vec<u32>, wgpu::Buffer)>>,
}

/// Package tensors uploaded as stored.
struct Loader<'a, 'b> {
    ctx: &'a GpuContext,
    w: &'a WeightFile<'b>,
}

impl WeightSource for Loader<'_, '_> {
    type Matrix = GpuMatrix;
    type Vector = wgpu::Buffer;
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<GpuMatrix> {
        GpuMatrix::upload(
            self.ctx,
            name,
            &self.w.stored_matrix(name, rows, cols)?,
            rows,
            cols,
        )
    }
    fn vector(&self, name: &str, shape: &[usize]) -> Result<wgpu::Buffer> {
        let t = self.w.float(name, shape)?.flatten_all()?;
        upload_f32(self.ctx, name, &t.to_vec1::<f32>()?)
    }
}

impl GpuMarian {
    pub fn from_package(pkg: &Package, ctx: Arc<GpuContext>) -> Result<Self> {
        let cfg = pkg.manifest.model.clone();
        if cfg.max_position_embeddings > MAX_KEYS {
            return Err(Error::Gpu(format!(
                "the model has {} positions; the GPU attention kernel holds at most {MAX_KEYS}",
                cfg.max_position_embeddings
            )));
        }
        for heads in [cfg.encoder_attention_heads, cfg.decoder_attention_heads] {
            if !cfg.d_model.is_multiple_of(heads) {
                return Err(Error::Gpu(format!(
                    "d_model {} does not split into {heads} heads",
                    cfg.d_model
                )));
            }
        }
        let w = WeightFile::parse(&pkg.manifest.weights, pkg.file(&pkg.manifest.weights)?)?;
        let d = cfg.d_model;
        let weights = MarianWeights::load(&cfg, &Loader { ctx: &ctx, w: &w })?;
        let positions = upload_f32(
            &ctx,
            "positions",
            &sinusoidal_table(cfg.max_position_embeddings, d),
        )?;
        ctx.check()?;
        Ok(GpuMarian {
            embed_scale: if cfg.scale_embedding {
                (d as f64).sqrt() as f32
            } else {
                1.0
            },
            activation_fn: cfg.activation_function,
            config: cfg,
            encoder_embed: weights.encoder_embed,
            decoder_embed: weights.decoder_embed,
            lm_head: weights.lm_head,
            final_logits_bias: weights.final_logits_bias,
            positions,
            encoder: weights.encoder,
            decoder: weights.decoder,
            delta: Mutex::new(None),
            last_fc2: Mutex::new(None),
            banned: Mutex::new(None),
            ctx,
        })
    }

    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    fn kernels(&self) -> &Kernels {
        &self.ctx.kernels
    }

    /// The banned-token list on the device, uploaded once per distinct list.
    fn banned_buffer(&self, ids: &[u32]) -> Result<wgpu::Buffer> {
        let mut cache = self.banned.lock().unwrap();
        if let Some((host, buffer)) = cache.as_ref() {
            if host == ids {
                return Ok(buffer.clone());
            }
        }
        let buffer = upload_u32(&self.ctx, "banned tokens", ids)?;
        *cache = Some((ids.to_vec(), buffer.clone()));
        Ok(buffer)
    }

    /// Put a fine-tuning adapter on (or, with `None`s, take it off), as the CPU model's
    /// `set_adapter` does: the head delta, then the last decoder layer's fc2 with the adapter's
    /// delta merged (`Marian::last_fc2_weight`, [d_model, ffn]). Errors: a device error.
    pub fn set_adapter(
        &self,
        head: Option<&HeadDelta>,
        last_fc2: Option<&candle_core::Tensor>,
    ) -> Result<()> {
        self.set_head_delta(head)?;
        self.set_last_fc2(last_fc2)
    }

    /// Apply (or remove) a fine-tuning adapter's output correction, as the CPU model does.
    pub fn set_head_delta(&self, delta: Option<&HeadDelta>) -> Result<()> {
        let new = match delta {
            None => None,
            Some(h) => {
                let ids = h.ids.to_vec1::<u32>()?;
                let conditions: Vec<u32> = match &h.conditions {
                    Some(c) => c
                        .after
                        .iter()
                        .zip(&c.group)
                        .flat_map(|(&a, &g)| [a, g])
                        .collect(),
                    None => vec![NOT_CONDITIONED; 2 * ids.len()],
                };
                Some(Arc::new(Delta {
                    conditions: upload_u32(&self.ctx, "adapter conditions", &conditions)?,
                    host: h.conditions.clone(),
                    k: ids.len(),
                    ids: upload_u32(&self.ctx, "adapter ids", &ids)?,
                    weight: upload_f32(
                        &self.ctx,
                        "adapter weight",
                        &h.weight.flatten_all()?.to_vec1::<f32>()?,
                    )?,
                    bias: upload_f32(&self.ctx, "adapter bias", &h.bias.to_vec1::<f32>()?)?,
                }))
            }
        };
        *self.delta.lock().unwrap() = new;
        Ok(())
    }

    /// Put (or, with `None`, take off) a last-layer adapter: `weight` is the last decoder
    /// layer's fc2 [d_model, ffn] with the adapter's delta merged (`Marian::last_fc2_weight`).
    pub fn set_last_fc2(&self, weight: Option<&candle_core::Tensor>) -> Result<()> {
        let new = match weight {
            None => None,
            Some(w) => {
                let (rows, cols) = w.dims2()?;
                let values = w.flatten_all()?.to_vec1::<f32>()?;
                let stored = crate::package::quant::StoredMatrix {
                    form: crate::package::quant::Quant::F32,
                    values: std::borrow::Cow::Borrowed(bytemuck::cast_slice(&values)),
                    scales: None,
                    residual: None,
                };
                Some(Arc::new(GpuMatrix::upload(
                    &self.ctx,
                    "adapter's last fc2",
                    &stored,
                    rows,
                    cols,
                )?))
            }
        };
        self.ctx.check()?;
        *self.last_fc2.lock().unwrap() = new;
        Ok(())
    }
}
