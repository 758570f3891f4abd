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

use crate::config::{Activation, MarianConfig};
use crate::error::{Error, Result};
use crate::generate::{top_k_of_row, Select};
use crate::package::quant::{Matrix, WeightFile};
use crate::package::Package;
use candle_core::quantized::QMatMul;
use candle_core::{DType, Device, Module, Tensor};
use kv_cache::KvCache;
use layers::{activate, DecoderContext, DecoderLayer, EncoderLayer, Linear};
use rayon::prelude::*;
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

/// `x · Wᵀ` for x [..., cols] and W [rows, cols]: f32 weights through candle's GEMM (exactly as
/// transformers computes), quantized ones through `qgemm`.
fn matrix_product(w: &Matrix, x: &Tensor) -> Result<Tensor> {
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
fn linear_product(w: &Matrix, x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    linear_product_then(w, x, bias, None)
}

/// `linear_product`, then `epilogue` over the result's f32 values in place: for a quantized
/// weight in the same pass over each row as the bias (no tensor op between them).
fn linear_product_then(
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
fn quantized_product(q: &qgemm::PackedMatrix, x: &Tensor) -> Result<(Vec<f32>, Vec<usize>)> {
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
fn with_f32_values<T>(x: &Tensor, f: impl FnOnce(&[f32]) -> T) -> Result<T> {
    let x = x.to_dtype(DType::F32)?.contiguous()?;
    let (storage, layout) = x.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        return Err(Error::Input("this product runs on the CPU".into()));
    };
    let data = cpu.as_slice::<f32>()?;
    Ok(f(&data[layout.start_offset()..][..x.elem_count()]))
}

/// Adds to each row of `logits` ([R, V] row-major) `bias` ([V], final_logits_bias), then
/// `extra` (ids [K] and values [R, K], a head delta's) at those ids: the order every way of
/// computing a step's logits keeps, so that they agree bit for bit.
pub(crate) fn add_bias_and_extra(
    logits: &mut [f32],
    v: usize,
    bias: &[f32],
    extra: Option<(&[u32], &[f32])>,
) {
    let k = extra.map_or(0, |(ids, _)| ids.len());
    for (r, row) in logits.chunks_exact_mut(v).enumerate() {
        for (x, b) in row.iter_mut().zip(bias) {
            *x += b;
        }
        if let Some((ids, values)) = extra {
            for (&id, e) in ids.iter().zip(&values[r * k..][..k]) {
                row[id as usize] += e;
            }
        }
    }
}

/// `f` of a contiguous f16 CPU tensor's values, without a copy; `None` for any other tensor.
fn with_f16_values<T>(t: &Tensor, f: impl FnOnce(&[half::f16]) -> T) -> Option<T> {
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
fn dequantize_matrix(m: &Matrix) -> Result<Matrix> {
    Ok(Matrix::Dense(dense_f32(m)?))
}

/// A matrix as an f32 tensor (quantized values dequantized).
fn dense_f32(m: &Matrix) -> Result<Tensor> {
    Ok(match m {
        Matrix::Quantized(q) => Tensor::from_vec(q.dequantize(), q.dims(), &Device::Cpu)?,
        Matrix::Dense(t) => t.to_dtype(DType::F32)?,
    })
}

/// The base model from the last decoder layer's FFN input to the logits, in f32:
/// `h = LayerNorm(x + fc2(act(fc1 x)))`, `logits = h · projᵀ + bias`.
pub struct FrozenTail {
    /// [ffn, D], [ffn]
    pub fc1_weight: Tensor,
    pub fc1_bias: Tensor,
    /// [D, ffn], [D]
    pub fc2_weight: Tensor,
    pub fc2_bias: Tensor,
    pub act: Activation,
    pub norm_weight: Tensor,
    pub norm_bias: Tensor,
    /// [V, D] output projection, [V] final_logits_bias.
    pub proj: Tensor,
    pub bias: Tensor,
}

impl FrozenTail {
    /// The FFN activations a = act(fc1 x) [N, ffn] and the layer norm's input x + fc2(a) [N, D]
    /// of FFN inputs x [N, D].
    pub fn ffn(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let a = activate(
            self.act,
            &x.matmul(&self.fc1_weight.t()?)?
                .broadcast_add(&self.fc1_bias)?,
        )?;
        let pre = (x + a
            .matmul(&self.fc2_weight.t()?)?
            .broadcast_add(&self.fc2_bias)?)?;
        Ok((a, pre))
    }
}

/// Token embeddings; the same matrix is the tied output projection.
#[derive(Debug, Clone)]
pub struct Embedding {
    matrix: Matrix,
}

impl Embedding {
    fn dequantized(&self) -> Result<Self> {
        Ok(Embedding::new(dequantize_matrix(&self.matrix)?))
    }

    fn new(matrix: Matrix) -> Self {
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
    fn lookup(&self, ids: &Tensor) -> Result<Tensor> {
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
    fn project(&self, x: &Tensor) -> Result<Tensor> {
        matrix_product(&self.matrix, x)
    }

    /// The projection onto the rows `ids` only, computed as `project` computes those columns
    /// (quantized rows keep their stored values and scales, so the kernel does the same
    /// arithmetic).
    fn rows(&self, ids: &[u32]) -> Result<Matrix> {
        self.check_ids(ids)?;
        Ok(match &self.matrix {
            Matrix::Dense(t) => Matrix::Dense(t.index_select(&Tensor::new(ids, t.device())?, 0)?),
            Matrix::Quantized(q) => Matrix::Quantized(Arc::new(q.select_rows(ids))),
        })
    }
}

/// The package's output projection (with final_logits_bias) restricted to a few target tokens:
/// their base logits at the cost of |ids| rows instead of the vocabulary.
pub struct HeadRows {
    proj: Matrix,
    bias: Tensor,
}

impl HeadRows {
    /// Logits [R, |ids|] (f32) of decoder hidden states [R, D]: the columns `ids` of
    /// `Marian::base_logits`.
    pub fn logits(&self, h: &Tensor) -> Result<Tensor> {
        Ok(matrix_product(&self.proj, h)?
            .broadcast_add(&self.bias)?
            .to_dtype(DType::F32)?)
    }

    /// The same rows in f32 (quantized rows dequantized): logits equal to the columns of a
    /// `Marian::dequantized` model's `base_logits`, without dequantizing the whole model.
    pub fn dequantized(&self) -> Result<HeadRows> {
        Ok(HeadRows {
            proj: dequantize_matrix(&self.proj)?,
            bias: self.bias.clone(),
        })
    }
}

/// Static sinusoidal positions exactly as transformers' MarianSinusoidalPositionalEmbedding:
/// first half sin, second half cos, computed in f64 and rounded once.
fn sinusoidal_positions(n_pos: usize, dim: usize) -> Result<Tensor> {
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

/// A learned correction of the output projection on a few target tokens (what a fine-tuning
/// adapter holds): `logits[ids] += h · weight^T + bias`. The package's weights are untouched.
#[derive(Debug, Clone)]
pub struct HeadDelta {
    /// Target token ids [K] (u32), sorted; distinct unless `conditions` tell repeats apart.
    pub ids: Tensor,
    /// [K, D] f32.
    pub weight: Tensor,
    /// [K] f32.
    pub bias: Tensor,
    /// When to apply each entry (after which previous token, for which sources); `None`:
    /// every entry always applies.
    pub conditions: Option<crate::adapter::EntryConditions>,
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

/// What the decoder keeps between steps for a batch of rows.
pub struct DecoderState {
    /// Per layer: self-attention keys and values of the positions so far.
    self_kv: Vec<KvCache>,
    /// Per layer: cross-attention keys and values of the encoder's positions, projected once.
    cross_kv: Vec<KvCache>,
    /// Additive encoder padding mask [R, S], row-major.
    cross_mask: Vec<f32>,
    /// Decoder positions consumed so far.
    pub length: usize,
    /// The last step's logits [R, V], kept so that a step allocates no V-wide buffer.
    logits: Vec<f32>,
    /// Per row: the head delta's trigger groups its sentence's source hits (bit mask; empty:
    /// none, as when no delta has source conditions).
    pub source_groups: Vec<u32>,
}

impl DecoderState {
    /// Decoder rows this state holds.
    pub fn rows(&self) -> usize {
        let s = self.cross_kv.first().map_or(0, KvCache::len);
        self.cross_mask.len().checked_div(s).unwrap_or(0)
    }

    /// A state of `rows` of this one (in that order; repeats allowed), this one unchanged: each
    /// row's caches and mask as they are, so its next steps give the same bits as here.
    pub fn selected(&self, rows: &[u32]) -> DecoderState {
        let s = self.cross_kv.first().map_or(0, KvCache::len);
        DecoderState {
            self_kv: self.self_kv.iter().map(|kv| kv.selected(rows)).collect(),
            cross_kv: self.cross_kv.iter().map(|kv| kv.selected(rows)).collect(),
            cross_mask: rows
                .iter()
                .flat_map(|&r| self.cross_mask[r as usize * s..][..s].iter().copied())
                .collect(),
            length: self.length,
            logits: Vec::new(),
            source_groups: if self.source_groups.is_empty() {
                Vec::new()
            } else {
                rows.iter()
                    .map(|&r| self.source_groups[r as usize])
                    .collect()
            },
        }
    }

    /// `selected`, taking over this state's logits buffer (so that the next step allocates no
    /// V-wide buffer); this one keeps its rows but loses the buffer.
    pub fn selected_with_buffer(&mut self, rows: &[u32]) -> DecoderState {
        DecoderState {
            logits: std::mem::take(&mut self.logits),
            ..self.selected(rows)
        }
    }
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

    /// Apply (or, with `None`, remove) a correction of the output projection.
    pub fn set_head_delta(&mut self, delta: Option<HeadDelta>) -> Result<()> {
        if let Some(d) = &delta {
            let k = d.ids.dim(0)?;
            let (rows, cols) = d.weight.dims2()?;
            if rows != k || cols != self.config.d_model || d.bias.dims1()? != k {
                return Err(Error::Input(format!(
                    "head delta shapes do not fit the model: ids {k}, weight [{rows}, {cols}], bias {} (d_model {})",
                    d.bias.dims1()?,
                    self.config.d_model
                )));
            }
            if d.conditions
                .as_ref()
                .is_some_and(|c| c.after.len() != k || c.group.len() != k)
            {
                return Err(Error::Input(format!(
                    "head delta's conditions do not cover its {k} ids"
                )));
            }
            let max = d.ids.max(0)?.to_scalar::<u32>()? as usize;
            if max >= self.target_vocab_size() {
                return Err(Error::Input(format!(
                    "head delta names token {max}, beyond the target vocabulary ({})",
                    self.target_vocab_size()
                )));
            }
        }
        self.head_delta = delta;
        Ok(())
    }

    pub fn head_delta(&self) -> Option<&HeadDelta> {
        self.head_delta.as_ref()
    }

    /// Apply (or, with `None`, remove) an adapter's correction of the last decoder layer's fc2
    /// ([d_model, decoder_ffn_dim], the low-rank product already formed): merged into the
    /// weight, which becomes f32 (`base + delta`), so inference costs what it did.
    pub fn set_last_layer_delta(&mut self, delta: Option<&Tensor>) -> Result<()> {
        let (d, f) = (self.config.d_model, self.config.decoder_ffn_dim);
        let Some(last) = self.decoder.last_mut() else {
            return Err(Error::Input("the model has no decoder layer".into()));
        };
        if let Some(base) = self.base_last_fc2.take() {
            last.fc2 = base;
        }
        let Some(delta) = delta else { return Ok(()) };
        if delta.dims() != [d, f] {
            return Err(Error::Input(format!(
                "last-layer delta has shape {:?}; the model's fc2 is [{d}, {f}]",
                delta.dims()
            )));
        }
        let merged = Linear {
            name: last.fc2.name.clone(),
            weight: Matrix::Dense((last.fc2.weight_f32()? + delta)?),
            bias: last.fc2.bias.clone(),
        };
        self.base_last_fc2 = Some(std::mem::replace(&mut last.fc2, merged));
        Ok(())
    }

    /// The last decoder layer's fc2 weight [d_model, ffn] in f32 as inference uses it (with an
    /// adapter's delta merged, when one is on): what the GPU backend uploads in its place.
    pub fn last_fc2_weight(&self) -> Result<Option<Tensor>> {
        match (&self.base_last_fc2, self.decoder.last()) {
            (Some(_), Some(last)) => Ok(Some(last.fc2.weight_f32()?)),
            _ => Ok(None),
        }
    }

    /// The frozen part of the decoder after the last layer's FFN input, in f32: what training a
    /// last-layer adapter runs through (the base model's, whatever adapter is on).
    pub fn frozen_tail(&self) -> Result<FrozenTail> {
        let last = self
            .decoder
            .last()
            .ok_or_else(|| Error::Input("the model has no decoder layer".into()))?;
        let fc2 = self.base_last_fc2.as_ref().unwrap_or(&last.fc2);
        Ok(FrozenTail {
            fc1_weight: last.fc1.weight_f32()?,
            fc1_bias: last.fc1.bias.clone(),
            fc2_weight: fc2.weight_f32()?,
            fc2_bias: fc2.bias.clone(),
            act: last.activation_fn,
            norm_weight: last.final_layer_norm.weight().clone(),
            norm_bias: last
                .final_layer_norm
                .bias()
                .cloned()
                .ok_or_else(|| Error::Input("the last layer norm has no bias".into()))?,
            proj: dense_f32(&self.lm_head.matrix)?,
            bias: self.final_logits_bias.to_dtype(DType::F32)?,
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

    /// Per row of a batch of sources (ids) with `num_beams` rows each: the head delta's trigger
    /// groups the row's source hits (`DecoderState::source_groups`); empty without conditions.
    pub fn source_groups(&self, batch: &[Vec<u32>], num_beams: usize) -> Vec<u32> {
        let Some(c) = self.head_delta.as_ref().and_then(|d| d.conditions.as_ref()) else {
            return Vec::new();
        };
        if c.triggers.is_empty() {
            return Vec::new();
        }
        batch
            .iter()
            .flat_map(|s| std::iter::repeat_n(c.source_groups(s), num_beams))
            .collect()
    }

    /// Output logits [R, V] (f32) of decoder hidden states [R, D] whose previous tokens (the
    /// steps' inputs) are `prev` [R] and whose sources hit the trigger groups `groups` [R] (or
    /// none: empty): the tied (or separate) projection, final_logits_bias and, when set, the
    /// head delta (its conditioned entries where they apply).
    pub fn logits(&self, h: &Tensor, prev: &[u32], groups: &[u32]) -> Result<Tensor> {
        let base = self.base_logits(h)?;
        match self.head_delta_values(h, prev, groups)? {
            None => Ok(base),
            Some((ids, values)) => {
                let (r, k) = (h.dim(0)?, ids.len());
                let extra = Tensor::from_vec(values, (r, k), h.device())?;
                let ids = Tensor::from_vec(ids, k, h.device())?;
                Ok(base.index_add(&ids, &extra, 1)?)
            }
        }
    }

    /// One decoding step's logits, row-major [R, V], into the state's own buffer: what
    /// `decode_step` returns, without building a tensor (the CPU generation loop reads the rows
    /// in place; the same f32 operations in the same order, so the same bits). Through a
    /// screened f16 projection (`screened_head`) only each row's best `top_n` tokens that are
    /// not `banned`, and those that might be, are the f16 product's; the rest are within its
    /// screening bound.
    pub fn decode_step_rows<'s>(
        &self,
        state: &'s mut DecoderState,
        tokens: &[u32],
        top_n: usize,
        banned: &[u32],
    ) -> Result<&'s [f32]> {
        let h = self.decode_hidden(state, tokens)?;
        let bias = self.final_logits_bias.to_vec1::<f32>()?;
        let extra = self.head_delta_values(&h, tokens, &state.source_groups)?;
        self.logits_into(
            &h,
            &bias,
            extra.as_ref(),
            (top_n, banned),
            &mut state.logits,
        )?;
        Ok(&state.logits)
    }

    /// One decoding step that returns, per row, greedy search's choice: the highest logit's
    /// (id, logit), ties to the lower id, `banned` ids never — what scanning `decode_step_rows`'
    /// logits gives, bit for bit. A quantized output projection on AVX-512 VNNI (or in a
    /// relaxed-SIMD wasm build) gets there with an 8-bit (7-bit) proposal pass and exact
    /// products of the few tokens it cannot rule out
    /// (`PackedMatrix::greedy_choice`); otherwise the full logits are scanned.
    pub fn decode_step_greedy(
        &self,
        state: &mut DecoderState,
        tokens: &[u32],
        banned: &[u32],
    ) -> Result<Vec<(u32, f32)>> {
        let h = self.decode_hidden(state, tokens)?;
        let r = tokens.len();
        let bias = self.final_logits_bias.to_vec1::<f32>()?;
        let extra = self.head_delta_values(&h, tokens, &state.source_groups)?;
        if let Matrix::Quantized(q) = &self.lm_head.matrix {
            let extra = extra.as_ref().map(|(ids, v)| (&ids[..], &v[..]));
            let choice = with_f32_values(&h, |x| {
                q.greedy_choice(x, r, &bias, extra, banned, &mut state.logits)
            })?;
            if let Some(choice) = choice {
                return Ok(choice);
            }
        }
        // The full product, reusing the bias and head-delta values computed above.
        self.logits_into(&h, &bias, extra.as_ref(), (1, banned), &mut state.logits)?;
        let select = Select {
            k: 1,
            log_softmax: false,
            banned,
            forced: None,
        };
        Ok(state
            .logits
            .par_chunks_exact(self.target_vocab_size())
            .with_min_len(crate::row_shards::split_min(1))
            .map(|row| top_k_of_row(row, &select)[0])
            .collect())
    }

    /// Logits [R, V] row-major of hidden states [R, D] into `out`: projection, then `bias`
    /// (final_logits_bias, [V]), then `extra` (`head_delta_values`), each added in that order.
    /// `(top_n, banned)`: what the caller chooses, for a screened projection (`decode_step_rows`).
    fn logits_into(
        &self,
        h: &Tensor,
        bias: &[f32],
        extra: Option<&(Vec<u32>, Vec<f32>)>,
        (top_n, banned): (usize, &[u32]),
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let (r, v) = (h.dim(0)?, self.target_vocab_size());
        let screened = extra.map(|(ids, v)| (&ids[..], &v[..]));
        match (&self.head_screen, &self.lm_head.matrix) {
            (Some(screen), Matrix::Dense(w)) => {
                let done = with_f32_values(h, |x| {
                    with_f16_values(w, |w| {
                        screen.logits_into(w, x, r, bias, screened, top_n, banned, out)
                    })
                })?;
                if done.is_some() {
                    return Ok(());
                }
            }
            // A residual's screen needs no table of its own (`screened_head`).
            (_, Matrix::Quantized(w)) if w.residual().is_some() => {
                with_f32_values(h, |x| {
                    screened_head::residual_logits_into(w, x, r, bias, screened, top_n, banned, out)
                })?;
                return Ok(());
            }
            _ => {}
        }
        match &self.lm_head.matrix {
            Matrix::Quantized(q) => {
                out.resize(r * v, 0.0);
                with_f32_values(h, |x| q.matmul_into(x, r, out))?;
            }
            Matrix::Dense(_) => *out = self.lm_head.project(h)?.flatten_all()?.to_vec1()?,
        }
        add_bias_and_extra(out, v, bias, extra.map(|(ids, e)| (&ids[..], &e[..])));
        Ok(())
    }

    /// The head delta's ids [K] and its values `h · weightᵀ + bias` [R, K] row-major, if set
    /// (0 where an entry does not apply: `EntryConditions::mask`).
    fn head_delta_values(
        &self,
        h: &Tensor,
        prev: &[u32],
        groups: &[u32],
    ) -> Result<Option<(Vec<u32>, Vec<f32>)>> {
        let Some(d) = &self.head_delta else {
            return Ok(None);
        };
        let extra = h.matmul(&d.weight.t()?)?.broadcast_add(&d.bias)?;
        let mut values = extra.flatten_all()?.to_vec1::<f32>()?;
        let ids = d.ids.to_vec1::<u32>()?;
        let Some(c) = &d.conditions else {
            return Ok(Some((ids, values)));
        };
        c.mask(prev, groups, &mut values);
        // A token's entries summed (in entry order), so that every consumer sees distinct ids.
        let mut distinct = ids.clone();
        distinct.dedup();
        if distinct.len() == ids.len() {
            return Ok(Some((ids, values)));
        }
        let (k, kd) = (ids.len(), distinct.len());
        let mut out = vec![0f32; prev.len() * kd];
        for (row, out_row) in values.chunks_exact(k).zip(out.chunks_exact_mut(kd)) {
            let mut col = 0;
            for (j, &v) in row.iter().enumerate() {
                if j > 0 && ids[j] != ids[j - 1] {
                    col += 1;
                }
                out_row[col] += v;
            }
        }
        Ok(Some((distinct, out)))
    }

    /// The package's own logits [R, V] (f32), without any head delta.
    pub fn base_logits(&self, h: &Tensor) -> Result<Tensor> {
        Ok(self
            .lm_head
            .project(h)?
            .broadcast_add(&self.final_logits_bias)?
            .to_dtype(DType::F32)?)
    }

    /// The output projection restricted to `ids` (sorted or not; columns come in that order).
    pub fn head_rows(&self, ids: &[u32]) -> Result<HeadRows> {
        Ok(HeadRows {
            proj: self.lm_head.rows(ids)?,
            bias: self
                .final_logits_bias
                .index_select(&Tensor::new(ids, &Device::Cpu)?, 0)?,
        })
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
