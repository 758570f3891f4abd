//! The Marian layers on the CPU, each with its own forward: linear, multi-head attention, the
//! encoder layer and the decoder layer (post-layer-norm Transformer, as Hugging Face's
//! `MarianEncoderLayer` / `MarianDecoderLayer`). Structs and fields are named as the checkpoint
//! names the tensors (`decoder.layers.{i}.encoder_attn.q_proj` is `DecoderLayer::encoder_attn
//! .q_proj`); the GPU backend records the same steps in the same order under the same names
//! (`gpu::model`).

use super::activation;
use super::kv_cache::KvCache;
#[cfg(not(target_arch = "wasm32"))]
use super::observe;
use super::products::{
    dense_f32, dequantize_matrix, linear_product, linear_product_then, with_f32_values,
};
use super::weights::{
    AttentionWeights, DecoderLayerWeights, EncoderLayerWeights, LinearWeights, NormWeights,
};
use super::LAYER_NORM_EPS;
use crate::config::Activation;
use crate::error::Result;
use crate::package::quant::Matrix;
use candle_core::{Device, Module, Tensor};
use candle_nn::LayerNorm;
use std::sync::Arc;

/// A linear layer `y = x · Wᵀ + b` whose weight may be quantized.
#[derive(Debug, Clone)]
pub struct Linear {
    /// The layer's name in the package (`decoder.layers.0.fc1`).
    pub(super) name: Arc<str>,
    /// [out, in]
    pub(super) weight: Matrix,
    /// [out]
    pub(super) bias: Tensor,
}

impl Linear {
    /// The same layer with a quantized weight dequantized to f32.
    pub(super) fn dequantized(&self) -> Result<Self> {
        Ok(Linear {
            name: self.name.clone(),
            weight: dequantize_matrix(&self.weight)?,
            bias: self.bias.clone(),
        })
    }

    fn from_weights(l: LinearWeights<Matrix, Tensor>) -> Self {
        Linear {
            name: l.name.into(),
            weight: l.weight,
            bias: l.bias,
        }
    }

    /// x [..., in] -> [..., out]
    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        #[cfg(not(target_arch = "wasm32"))]
        observe::linear_input(&self.name, x)?;
        linear_product(&self.weight, x, &self.bias)
    }

    /// x [..., in] -> [..., out], then `epilogue` applied to the output's f32 values in place
    /// (an element-wise activation, fused into the pass that adds the bias where the weight is
    /// quantized).
    fn forward_then(&self, x: &Tensor, epilogue: fn(&mut [f32])) -> Result<Tensor> {
        #[cfg(not(target_arch = "wasm32"))]
        observe::linear_input(&self.name, x)?;
        linear_product_then(&self.weight, x, &self.bias, Some(epilogue))
    }

    /// The weight [out, in] in f32 (dequantized when quantized).
    pub(super) fn weight_f32(&self) -> Result<Tensor> {
        dense_f32(&self.weight)
    }
}

fn layer_norm(n: NormWeights<Tensor>) -> LayerNorm {
    LayerNorm::new(n.weight, n.bias, LAYER_NORM_EPS)
}

/// The feed-forward activation (`activation_fn` of the config).
pub(crate) fn activate(act: Activation, x: &Tensor) -> Result<Tensor> {
    Ok(match act {
        Activation::Swish => x.silu()?,
        Activation::Gelu => x.gelu_erf()?,
        Activation::GeluNew => x.gelu()?,
        Activation::Relu => x.relu()?,
        Activation::Tanh => x.tanh()?,
        Activation::Sigmoid => candle_nn::ops::sigmoid(x)?,
    })
}

/// Multi-head attention (`self_attn`, `encoder_attn`): queries scaled by head_dim^-0.5 before
/// the score product, as transformers' `MarianAttention`.
#[derive(Debug, Clone)]
pub(super) struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    pub(super) num_heads: usize,
    pub(super) head_dim: usize,
    scaling: f64,
}

impl Attention {
    fn dequantized(&self) -> Result<Self> {
        Ok(Attention {
            q_proj: self.q_proj.dequantized()?,
            k_proj: self.k_proj.dequantized()?,
            v_proj: self.v_proj.dequantized()?,
            out_proj: self.out_proj.dequantized()?,
            ..self.clone()
        })
    }

    fn from_weights(a: AttentionWeights<Matrix, Tensor>) -> Self {
        let scaling = a.scaling();
        Attention {
            q_proj: Linear::from_weights(a.q_proj),
            k_proj: Linear::from_weights(a.k_proj),
            v_proj: Linear::from_weights(a.v_proj),
            out_proj: Linear::from_weights(a.out_proj),
            num_heads: a.num_heads,
            head_dim: a.head_dim,
            scaling,
        }
    }

    /// [B, T, D] -> [B, H, T, hd]
    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        Ok(x.reshape((b, t, self.num_heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()?)
    }

    /// Keys already transposed for the score product, kᵀ [B, H, hd, S], and values
    /// [B, H, S, hd] of x [B, S, D].
    fn keys_values(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((
            self.split_heads(&self.k_proj.forward(x)?)?
                .transpose(2, 3)?
                .contiguous()?,
            self.split_heads(&self.v_proj.forward(x)?)?,
        ))
    }

    /// Keys and values [R, S, D] of x [R, S, D] in a cache (the encoder's side of
    /// cross-attention, projected once per batch).
    pub(super) fn cache_of(&self, x: &Tensor) -> Result<KvCache> {
        let (r, s, _) = x.dims3()?;
        let (k, v) = (self.k_proj.forward(x)?, self.v_proj.forward(x)?);
        with_f32_values(&k, |k| {
            with_f32_values(&v, |v| {
                KvCache::from_projected(k, v, r, s, self.num_heads, self.head_dim)
            })
        })?
    }

    /// One decoding step of attention: x [R, 1, D] (one new position per row), its key and
    /// value appended to `cache` first when `append` (self-attention), then one query per row
    /// and head over the cache (`mask` additive [R, len]); returns [R, 1, D]. The same steps as
    /// `attend`, by hand (see `kv_cache`).
    fn attend_step(
        &self,
        x: &Tensor,
        cache: &mut KvCache,
        append: bool,
        mask: Option<&[f32]>,
    ) -> Result<Tensor> {
        let (r, _, d) = x.dims3()?;
        if append {
            let (k, v) = (self.k_proj.forward(x)?, self.v_proj.forward(x)?);
            with_f32_values(&k, |k| with_f32_values(&v, |v| cache.push(k, v)))??;
        }
        let q = (self.q_proj.forward(x)? * self.scaling)?;
        let ctx = with_f32_values(&q, |q| cache.attend(q, mask))?;
        let ctx = Tensor::from_vec(ctx, (r, 1, d), &Device::Cpu)?.to_dtype(x.dtype())?;
        self.out_proj.forward(&ctx)
    }

    /// Attend from x [B, T, D] over kᵀ [B, H, hd, S] and v [B, H, S, hd]; `mask` is additive,
    /// broadcast to [B, H, T, S] ([B, 1, 1, S] padding, [1, 1, T, T] causal).
    fn attend(&self, x: &Tensor, kt: &Tensor, v: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let q = self.split_heads(&(self.q_proj.forward(x)? * self.scaling)?)?;
        let scores = q.matmul(kt)?.broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let ctx = probs.matmul(v)?.transpose(1, 2)?.reshape((b, t, d))?;
        self.out_proj.forward(&ctx)
    }

    /// Attention of x [B, T, D] over itself, all positions at once under `mask`.
    fn attend_all(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (kt, v) = self.keys_values(x)?;
        self.attend(x, &kt, &v, mask)
    }
}

/// `fc2(activation_fn(fc1 x))`, the feed-forward block of both layer kinds.
fn feed_forward(fc1: &Linear, fc2: &Linear, act: Activation, x: &Tensor) -> Result<Tensor> {
    let hidden = match act {
        // The vectorized SiLU (`activation`), in the pass that adds fc1's bias.
        Activation::Swish => fc1.forward_then(x, activation::silu_in_place)?,
        _ => activate(act, &fc1.forward(x)?)?,
    };
    fc2.forward(&hidden)
}

/// `encoder.layers.{i}`.
#[derive(Debug, Clone)]
pub(super) struct EncoderLayer {
    self_attn: Attention,
    self_attn_layer_norm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    activation_fn: Activation,
    final_layer_norm: LayerNorm,
}

impl EncoderLayer {
    pub(super) fn new(l: EncoderLayerWeights<Matrix, Tensor>, act: Activation) -> Self {
        EncoderLayer {
            self_attn: Attention::from_weights(l.self_attn),
            self_attn_layer_norm: layer_norm(l.self_attn_layer_norm),
            fc1: Linear::from_weights(l.fc1),
            fc2: Linear::from_weights(l.fc2),
            activation_fn: act,
            final_layer_norm: layer_norm(l.final_layer_norm),
        }
    }

    pub(super) fn dequantized(&self) -> Result<Self> {
        Ok(EncoderLayer {
            self_attn: self.self_attn.dequantized()?,
            fc1: self.fc1.dequantized()?,
            fc2: self.fc2.dequantized()?,
            ..self.clone()
        })
    }

    /// x [B, S, D] -> [B, S, D]: self-attention under the padding `mask` [B, 1, 1, S] (additive),
    /// then the feed-forward block, each added to its input and layer-normed.
    pub(super) fn forward(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let h = self.self_attn.attend_all(x, mask)?;
        let x = self.self_attn_layer_norm.forward(&(x + h)?)?;
        let h = feed_forward(&self.fc1, &self.fc2, self.activation_fn, &x)?;
        Ok(self.final_layer_norm.forward(&(x + h)?)?)
    }
}

/// What a decoder layer's two attentions attend over.
pub(super) enum DecoderContext<'a> {
    /// One decoding step (x holds one new position per row): self-attention appends its key
    /// and value to `self_kv` and attends over it; cross-attention attends over the encoder's
    /// keys and values in `cross_kv` under the additive padding mask `cross_mask` [R, S].
    Step {
        self_kv: &'a mut KvCache,
        cross_kv: &'a mut KvCache,
        cross_mask: &'a [f32],
    },
    /// Teacher forcing (x holds T positions per row, what T steps would feed): self-attention
    /// under `causal` [1, 1, T, T], cross-attention over `encoded` [B, S, D] under `mask`
    /// [B, 1, 1, S] — the same results as T steps, without the sequence of them.
    Sequence {
        causal: &'a Tensor,
        encoded: &'a Tensor,
        mask: &'a Tensor,
    },
}

/// `decoder.layers.{i}`.
#[derive(Debug, Clone)]
pub(super) struct DecoderLayer {
    pub(super) self_attn: Attention,
    self_attn_layer_norm: LayerNorm,
    pub(super) encoder_attn: Attention,
    encoder_attn_layer_norm: LayerNorm,
    pub(super) fc1: Linear,
    pub(super) fc2: Linear,
    pub(super) activation_fn: Activation,
    pub(super) final_layer_norm: LayerNorm,
}

impl DecoderLayer {
    pub(super) fn new(l: DecoderLayerWeights<Matrix, Tensor>, act: Activation) -> Self {
        DecoderLayer {
            self_attn: Attention::from_weights(l.self_attn),
            self_attn_layer_norm: layer_norm(l.self_attn_layer_norm),
            encoder_attn: Attention::from_weights(l.encoder_attn),
            encoder_attn_layer_norm: layer_norm(l.encoder_attn_layer_norm),
            fc1: Linear::from_weights(l.fc1),
            fc2: Linear::from_weights(l.fc2),
            activation_fn: act,
            final_layer_norm: layer_norm(l.final_layer_norm),
        }
    }

    pub(super) fn dequantized(&self) -> Result<Self> {
        Ok(DecoderLayer {
            self_attn: self.self_attn.dequantized()?,
            encoder_attn: self.encoder_attn.dequantized()?,
            fc1: self.fc1.dequantized()?,
            fc2: self.fc2.dequantized()?,
            ..self.clone()
        })
    }

    /// x [R, T, D] -> (output [R, T, D], the feed-forward block's input [R, T, D]: what a
    /// last-layer adapter trains on): self-attention, cross-attention, feed-forward, each added
    /// to its input and layer-normed (T = 1 for a `Step`).
    pub(super) fn forward(
        &self,
        x: &Tensor,
        context: DecoderContext<'_>,
    ) -> Result<(Tensor, Tensor)> {
        let (h_self, cross) = match context {
            DecoderContext::Step {
                self_kv,
                cross_kv,
                cross_mask,
            } => (
                self.self_attn.attend_step(x, self_kv, true, None)?,
                Cross::Cached(cross_kv, cross_mask),
            ),
            DecoderContext::Sequence {
                causal,
                encoded,
                mask,
            } => (
                self.self_attn.attend_all(x, causal)?,
                Cross::Encoded(encoded, mask),
            ),
        };
        let x = self.self_attn_layer_norm.forward(&(x + h_self)?)?;
        let h = match cross {
            Cross::Cached(kv, mask) => self.encoder_attn.attend_step(&x, kv, false, Some(mask))?,
            Cross::Encoded(encoded, mask) => {
                let (kt, v) = self.encoder_attn.keys_values(encoded)?;
                self.encoder_attn.attend(&x, &kt, &v, mask)?
            }
        };
        let x = self.encoder_attn_layer_norm.forward(&(x + h)?)?;
        let h = feed_forward(&self.fc1, &self.fc2, self.activation_fn, &x)?;
        let out = self.final_layer_norm.forward(&(&x + h)?)?;
        Ok((out, x))
    }
}

/// The cross-attention's side of a `DecoderContext`.
enum Cross<'a> {
    Cached(&'a mut KvCache, &'a [f32]),
    Encoded(&'a Tensor, &'a Tensor),
}
