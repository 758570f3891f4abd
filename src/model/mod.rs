//! The Marian encoder-decoder (post-layer-norm Transformer) on candle, CPU.
//!
//! Unlike candle-transformers' reference `marian` module this one batches sentences with
//! padding masks, projects cross-attention K/V once per sentence, keeps a per-row self
//! attention KV cache that beam search can reorder, and multiplies quantized weights as
//! stored in the package (GGML Q8_0/Q4_0 through candle's `QMatMul`).

mod activation;
pub mod kv_cache;
mod layers;
pub mod layout;
#[cfg(not(target_arch = "wasm32"))]
pub mod observe;
pub mod qgemm;
pub mod screened_head;
pub mod weights;

// The model's pieces, each with one job; `Marian` below ties them into a forward pass.
mod adapters;
mod decoder_state;
mod embedding;
mod logits;
mod products;

pub use adapters::{FrozenTail, HeadDelta, HeadRows};
pub use decoder_state::DecoderState;
pub(crate) use embedding::sinusoidal_table;
pub use embedding::Embedding;
pub(crate) use logits::add_bias_and_extra;

use crate::config::MarianConfig;
use crate::error::{Error, Result};
use crate::package::quant::{Matrix, WeightFile};
use crate::package::Package;
use candle_core::{DType, Device, Tensor};
use embedding::sinusoidal_positions;
use kv_cache::KvCache;
use layers::{DecoderContext, DecoderLayer, EncoderLayer, Linear};
use products::with_f16_values;
use screened_head::ScreenedHead;
use std::sync::Arc;
use weights::{MarianWeights, WeightSource};

pub(crate) const LAYER_NORM_EPS: f64 = 1e-5;

/// The CPU model's weights come straight from the package's weight file.
impl WeightSource for WeightFile<'_> {
    type Matrix = Matrix;
    type Vector = Tensor;
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix> {
        WeightFile::matrix(self, name, rows, cols)
    }
    fn embedding(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix> {
        WeightFile::embedding_matrix(self, name, rows, cols)
    }
    fn vector(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        Ok(self.float(name, shape)?.flatten_all()?)
    }
}

/// The whole model, weights loaded once and shared by every translation.
#[derive(Debug, Clone)]
pub struct Marian {
    pub config: MarianConfig,
    encoder_embed: Embedding,
    decoder_embed: Embedding,
    lm_head: Embedding,
    final_logits_bias: Tensor,
    positions: Tensor,
    embed_scale: f64,
    encoder: Vec<EncoderLayer>,
    decoder: Vec<DecoderLayer>,
    head_delta: Option<HeadDelta>,
    /// The q8 screen of an f16 output projection (`screened_head`): decoding steps multiply
    /// through it and recompute only the tokens that can be chosen from the f16 weights.
    head_screen: Option<Arc<ScreenedHead>>,
    /// The last decoder layer's fc2 as the package has it, while an adapter's merged one
    /// (`set_last_layer_delta`) is in its place.
    base_last_fc2: Option<Linear>,
}

impl Marian {
    pub fn from_package(pkg: &Package) -> Result<Self> {
        Self::load(pkg, false)
    }

    /// The package with quantized matrices dequantized to f32: what the GPU kernels compute
    /// (they dequantize weights but keep activations in f32, where candle's q8 path
    /// quantizes activations too). The reference of the GPU parity tests.
    pub fn from_package_dequantized(pkg: &Package) -> Result<Self> {
        Self::load(pkg, true)
    }

    fn load(pkg: &Package, dequantize: bool) -> Result<Self> {
        let cfg = pkg.manifest.model.clone();
        let mut w = WeightFile::parse(&pkg.manifest.weights, pkg.file(&pkg.manifest.weights)?)?;
        w.dequantize = dequantize;
        let d = cfg.d_model;
        let weights = MarianWeights::load(&cfg, &w)?;
        let embedding = |m: &Arc<Matrix>| Embedding::new(m.as_ref().clone());
        let encoder_embed = embedding(&weights.encoder_embed);
        let decoder_embed = embedding(&weights.decoder_embed);
        let lm_head = embedding(&weights.lm_head);
        let head_screen = match &lm_head.matrix {
            Matrix::Dense(t) if !dequantize && t.dim(1)? % qgemm::BLOCK == 0 => {
                let (rows, cols) = t.dims2()?;
                with_f16_values(t, |w| Arc::new(ScreenedHead::new(w, rows, cols)))
            }
            _ => None,
        };
        let final_logits_bias = weights.final_logits_bias;
        let act = cfg.activation_function;
        let encoder = weights
            .encoder
            .into_iter()
            .map(|l| EncoderLayer::new(l, act))
            .collect();
        let decoder = weights
            .decoder
            .into_iter()
            .map(|l| DecoderLayer::new(l, act))
            .collect();
        Ok(Marian {
            positions: sinusoidal_positions(cfg.max_position_embeddings, d)?,
            embed_scale: if cfg.scale_embedding {
                (d as f64).sqrt()
            } else {
                1.0
            },
            config: cfg,
            encoder_embed,
            decoder_embed,
            lm_head,
            final_logits_bias,
            encoder,
            decoder,
            head_delta: None,
            head_screen,
            base_last_fc2: None,
        })
    }

    /// The frozen base model (no adapter) with every quantized matrix dequantized to f32: for
    /// passes over many rows at once (fine-tuning's teacher forcing), where candle's f32 GEMM
    /// outruns its quantized kernels. Costs the f32 size of the model while it lives.
    pub fn dequantized(&self) -> Result<Self> {
        if self.head_delta.is_some() || self.base_last_fc2.is_some() {
            let mut base = self.clone();
            base.set_head_delta(None)?;
            base.set_last_layer_delta(None)?;
            return base.dequantized();
        }
        // Shared and tied matrices stay shared, as `MarianWeights::load` decided them.
        let decoder_embed = self.decoder_embed.dequantized()?;
        let encoder_embed = if self.config.share_encoder_decoder_embeddings {
            decoder_embed.clone()
        } else {
            self.encoder_embed.dequantized()?
        };
        let lm_head = if self.config.tie_word_embeddings {
            decoder_embed.clone()
        } else {
            self.lm_head.dequantized()?
        };
        Ok(Marian {
            encoder_embed,
            decoder_embed,
            lm_head,
            encoder: self
                .encoder
                .iter()
                .map(EncoderLayer::dequantized)
                .collect::<Result<_>>()?,
            decoder: self
                .decoder
                .iter()
                .map(DecoderLayer::dequantized)
                .collect::<Result<_>>()?,
            head_screen: None,
            ..self.clone()
        })
    }

    fn embed(&self, table: &Embedding, ids: &Tensor, offset: usize) -> Result<Tensor> {
        let (_, t) = ids.dims2()?;
        if offset + t > self.config.max_position_embeddings {
            return Err(Error::Input(format!(
                "sequence of {} tokens is longer than the model's {} positions",
                offset + t,
                self.config.max_position_embeddings
            )));
        }
        let x = (table.lookup(ids)? * self.embed_scale)?;
        Ok(x.broadcast_add(&self.positions.narrow(0, offset, t)?)?)
    }

    /// Encode a batch of id sequences (each ending in `</s>`), right-padded with `<pad>`.
    /// Returns the hidden states [B, S, D] and the additive padding mask [B, 1, 1, S].
    pub fn encode(&self, batch: &[Vec<u32>]) -> Result<(Tensor, Tensor)> {
        let b = batch.len();
        let s = batch.iter().map(|x| x.len()).max().unwrap_or(0).max(1);
        let pad = self.config.pad_token_id;
        let mut ids = Vec::with_capacity(b * s);
        let mut mask = Vec::with_capacity(b * s);
        for seq in batch {
            for i in 0..s {
                ids.push(seq.get(i).copied().unwrap_or(pad));
                mask.push(if i < seq.len() {
                    0f32
                } else {
                    f32::NEG_INFINITY
                });
            }
        }
        let ids = Tensor::from_vec(ids, (b, s), &Device::Cpu)?;
        let mask = Tensor::from_vec(mask, (b, 1, 1, s), &Device::Cpu)?;
        let mut x = self.embed(&self.encoder_embed, &ids, 0)?;
        for layer in &self.encoder {
            x = layer.forward(&x, &mask)?;
        }
        Ok((x, mask))
    }

    /// Start decoding: each encoded sentence gets `num_beams` decoder rows (beams).
    pub fn start_decoding(
        &self,
        encoded: &Tensor,
        mask: &Tensor,
        num_beams: usize,
    ) -> Result<DecoderState> {
        let (enc, mask) = if num_beams > 1 {
            let b = encoded.dim(0)?;
            let idx: Vec<u32> = (0..b as u32)
                .flat_map(|i| std::iter::repeat_n(i, num_beams))
                .collect();
            let idx = Tensor::new(idx.as_slice(), &Device::Cpu)?;
            (encoded.index_select(&idx, 0)?, mask.index_select(&idx, 0)?)
        } else {
            (encoded.clone(), mask.clone())
        };
        let cross_kv = self
            .decoder
            .iter()
            .map(|l| l.encoder_attn.cache_of(&enc))
            .collect::<Result<Vec<_>>>()?;
        let rows = enc.dim(0)?;
        Ok(DecoderState {
            self_kv: self
                .decoder
                .iter()
                .map(|l| KvCache::new(rows, l.self_attn.num_heads, l.self_attn.head_dim))
                .collect(),
            cross_kv,
            cross_mask: mask.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?,
            length: 0,
            logits: Vec::new(),
            source_groups: Vec::new(),
        })
    }

    /// One decoding step: one token per row in, logits [R, V] out (f32, with final_logits_bias).
    pub fn decode_step(&self, state: &mut DecoderState, tokens: &[u32]) -> Result<Tensor> {
        let h = self.decode_hidden(state, tokens)?;
        self.logits(&h, tokens, &state.source_groups)
    }

    /// Teacher forcing in one pass: decoder hidden states [B, T, D] for each row's whole input
    /// sequence (decoder start token, then the target shifted right), right-padded, under a
    /// causal mask — what `decode_hidden` gives step by step, without T sequential steps.
    /// Outputs at padded positions are meaningless; the caller drops them. Also returns the last
    /// layer's FFN input [B, T, D] (what a last-layer adapter is trained on).
    pub fn decode_teacher_forced(
        &self,
        encoded: &Tensor,
        mask: &Tensor,
        inputs: &[Vec<u32>],
    ) -> Result<(Tensor, Tensor)> {
        let b = inputs.len();
        let t = inputs.iter().map(|x| x.len()).max().unwrap_or(0).max(1);
        let pad = self.config.pad_token_id;
        let ids: Vec<u32> = inputs
            .iter()
            .flat_map(|seq| (0..t).map(move |i| seq.get(i).copied().unwrap_or(pad)))
            .collect();
        let ids = Tensor::from_vec(ids, (b, t), &Device::Cpu)?;
        let causal: Vec<f32> = (0..t)
            .flat_map(|i| (0..t).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
            .collect();
        let causal = Tensor::from_vec(causal, (1, 1, t, t), &Device::Cpu)?;
        let mut x = self.embed(&self.decoder_embed, &ids, 0)?;
        let mut ffn_input = x.clone();
        for layer in &self.decoder {
            let context = DecoderContext::Sequence {
                causal: &causal,
                encoded,
                mask,
            };
            (x, ffn_input) = layer.forward(&x, context)?;
        }
        Ok((x, ffn_input))
    }

    /// Decoder hidden states [R, D] after one step (the input of the output projection).
    pub fn decode_hidden(&self, state: &mut DecoderState, tokens: &[u32]) -> Result<Tensor> {
        let r = tokens.len();
        let ids = Tensor::from_vec(tokens.to_vec(), (r, 1), &Device::Cpu)?;
        let mut x = self.embed(&self.decoder_embed, &ids, state.length)?;
        for (i, layer) in self.decoder.iter().enumerate() {
            let context = DecoderContext::Step {
                self_kv: &mut state.self_kv[i],
                cross_kv: &mut state.cross_kv[i],
                cross_mask: &state.cross_mask,
            };
            (x, _) = layer.forward(&x, context)?;
        }
        state.length += 1;
        Ok(x.squeeze(1)?)
    }

    /// Keep only `rows` (in that order) of the decoder state: beam search's reindexing and
    /// dropping rows whose sentences are finished (self and cross K/V and the mask in step).
    pub fn reorder_cache(&self, state: &mut DecoderState, rows: &[u32]) -> Result<()> {
        *state = state.selected_with_buffer(rows);
        Ok(())
    }

    pub fn target_vocab_size(&self) -> usize {
        self.config.target_vocab_size()
    }
}

/// Logits of a row as plain floats (the generation loop's input on the CPU backend).
pub fn rows_to_vec(logits: &Tensor) -> Result<Vec<Vec<f32>>> {
    Ok(logits.to_dtype(DType::F32)?.to_vec2::<f32>()?)
}
