//! Which weights a Marian model has and how they are shared, walked once for everything that
//! reads or writes them: the CPU model (candle) and the GPU model (wgpu buffers) build from the
//! same `MarianWeights`, generic over how a backend holds a matrix and a vector, and the
//! converter's list of tensors (`layout::tensors`) is this walk recorded. Field names are the
//! checkpoint's, so a Hugging Face tensor name greps to the code that uses it.

use super::layout::{
    DECODER_EMBEDDING, ENCODER_EMBEDDING, FINAL_LOGITS_BIAS, LM_HEAD, SHARED_EMBEDDING,
};
use crate::config::MarianConfig;
use crate::error::Result;
use std::sync::Arc;

/// Where a backend gets its weights from (a package's weight file, uploaded or not).
pub trait WeightSource {
    type Matrix;
    type Vector;
    /// A matrix [rows, cols] as stored (quantized or not).
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Self::Matrix>;
    /// An embedding (or the output projection) [rows, cols] as stored; by default as `matrix`.
    fn embedding(&self, name: &str, rows: usize, cols: usize) -> Result<Self::Matrix> {
        self.matrix(name, rows, cols)
    }
    /// An f32 tensor of `shape`, flattened.
    fn vector(&self, name: &str, shape: &[usize]) -> Result<Self::Vector>;
}

pub struct LinearWeights<M, V> {
    /// The layer's name in the package, e.g. `decoder.layers.0.fc1` (its tensors are
    /// `<name>.weight` and `<name>.bias`).
    pub name: String,
    pub weight: M,
    pub bias: V,
}

/// A layer norm's scale (`weight`, γ) and shift (`bias`, β), as the checkpoint names them.
pub struct NormWeights<V> {
    pub weight: V,
    pub bias: V,
}

pub struct AttentionWeights<M, V> {
    pub q_proj: LinearWeights<M, V>,
    pub k_proj: LinearWeights<M, V>,
    pub v_proj: LinearWeights<M, V>,
    pub out_proj: LinearWeights<M, V>,
    pub num_heads: usize,
    pub head_dim: usize,
}

impl<M, V> AttentionWeights<M, V> {
    /// The query scaling, head_dim^-0.5 (as transformers computes it, in f64).
    pub fn scaling(&self) -> f64 {
        (self.head_dim as f64).powf(-0.5)
    }
}

/// `encoder.layers.{i}`: field names are the checkpoint's (Hugging Face `MarianEncoderLayer`).
pub struct EncoderLayerWeights<M, V> {
    pub self_attn: AttentionWeights<M, V>,
    pub self_attn_layer_norm: NormWeights<V>,
    pub fc1: LinearWeights<M, V>,
    pub fc2: LinearWeights<M, V>,
    pub final_layer_norm: NormWeights<V>,
}

/// `decoder.layers.{i}`: field names are the checkpoint's (Hugging Face `MarianDecoderLayer`;
/// `encoder_attn` is the cross-attention).
pub struct DecoderLayerWeights<M, V> {
    pub self_attn: AttentionWeights<M, V>,
    pub self_attn_layer_norm: NormWeights<V>,
    pub encoder_attn: AttentionWeights<M, V>,
    pub encoder_attn_layer_norm: NormWeights<V>,
    pub fc1: LinearWeights<M, V>,
    pub fc2: LinearWeights<M, V>,
    pub final_layer_norm: NormWeights<V>,
}

pub struct MarianWeights<M, V> {
    /// The same `Arc` when the package shares one embedding between encoder and decoder ...
    pub encoder_embed: Arc<M>,
    pub decoder_embed: Arc<M>,
    /// ... and when the output projection is tied to the decoder's embedding.
    pub lm_head: Arc<M>,
    pub final_logits_bias: V,
    pub encoder: Vec<EncoderLayerWeights<M, V>>,
    pub decoder: Vec<DecoderLayerWeights<M, V>>,
}

impl<M, V> MarianWeights<M, V> {
    pub fn load<S: WeightSource<Matrix = M, Vector = V>>(
        cfg: &MarianConfig,
        s: &S,
    ) -> Result<Self> {
        let d = cfg.d_model;
        let tv = cfg.target_vocab_size();
        let (encoder_embed, decoder_embed) = if cfg.share_encoder_decoder_embeddings {
            let shared = Arc::new(s.embedding(SHARED_EMBEDDING, cfg.vocab_size, d)?);
            (shared.clone(), shared)
        } else {
            (
                Arc::new(s.embedding(ENCODER_EMBEDDING, cfg.vocab_size, d)?),
                Arc::new(s.embedding(DECODER_EMBEDDING, tv, d)?),
            )
        };
        let lm_head = if cfg.tie_word_embeddings {
            decoder_embed.clone()
        } else {
            Arc::new(s.embedding(LM_HEAD, tv, d)?)
        };
        let final_logits_bias = s.vector(FINAL_LOGITS_BIAS, &[1, tv])?;
        let linear = |p: &str, rows: usize, cols: usize| -> Result<LinearWeights<M, V>> {
            Ok(LinearWeights {
                name: p.to_string(),
                weight: s.matrix(&format!("{p}.weight"), rows, cols)?,
                bias: s.vector(&format!("{p}.bias"), &[rows])?,
            })
        };
        let norm = |p: &str| -> Result<NormWeights<V>> {
            Ok(NormWeights {
                weight: s.vector(&format!("{p}.weight"), &[d])?,
                bias: s.vector(&format!("{p}.bias"), &[d])?,
            })
        };
        let attention = |p: &str, heads: usize| -> Result<AttentionWeights<M, V>> {
            Ok(AttentionWeights {
                q_proj: linear(&format!("{p}.q_proj"), d, d)?,
                k_proj: linear(&format!("{p}.k_proj"), d, d)?,
                v_proj: linear(&format!("{p}.v_proj"), d, d)?,
                out_proj: linear(&format!("{p}.out_proj"), d, d)?,
                num_heads: heads,
                head_dim: d / heads,
            })
        };
        let encoder = (0..cfg.encoder_layers)
            .map(|i| {
                let p = format!("encoder.layers.{i}");
                Ok(EncoderLayerWeights {
                    self_attn: attention(&format!("{p}.self_attn"), cfg.encoder_attention_heads)?,
                    self_attn_layer_norm: norm(&format!("{p}.self_attn_layer_norm"))?,
                    fc1: linear(&format!("{p}.fc1"), cfg.encoder_ffn_dim, d)?,
                    fc2: linear(&format!("{p}.fc2"), d, cfg.encoder_ffn_dim)?,
                    final_layer_norm: norm(&format!("{p}.final_layer_norm"))?,
                })
            })
            .collect::<Result<_>>()?;
        let decoder = (0..cfg.decoder_layers)
            .map(|i| {
                let p = format!("decoder.layers.{i}");
                Ok(DecoderLayerWeights {
                    self_attn: attention(&format!("{p}.self_attn"), cfg.decoder_attention_heads)?,
                    self_attn_layer_norm: norm(&format!("{p}.self_attn_layer_norm"))?,
                    encoder_attn: attention(
                        &format!("{p}.encoder_attn"),
                        cfg.decoder_attention_heads,
                    )?,
                    encoder_attn_layer_norm: norm(&format!("{p}.encoder_attn_layer_norm"))?,
                    fc1: linear(&format!("{p}.fc1"), cfg.decoder_ffn_dim, d)?,
                    fc2: linear(&format!("{p}.fc2"), d, cfg.decoder_ffn_dim)?,
                    final_layer_norm: norm(&format!("{p}.final_layer_norm"))?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(MarianWeights {
            encoder_embed,
            decoder_embed,
            lm_head,
            final_logits_bias,
            encoder,
            decoder,
        })
    }
}
