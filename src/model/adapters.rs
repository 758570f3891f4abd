//! How the CPU model takes a fine-tuning adapter — the head delta (a correction of the output
//! projection on a few target tokens) and the last decoder layer's fc2 with the last-layer
//! adapter merged — and what fine-tuning reads from the frozen base model (`FrozenTail`,
//! `HeadRows`).

use super::layers::{activate, Linear};
use super::products::{dense_f32, dequantize_matrix, matrix_product};
use super::Marian;
use crate::adapter::EntryConditions;
use crate::config::Activation;
use crate::error::{Error, Result};
use crate::package::quant::Matrix;
use candle_core::{DType, Device, Tensor};

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

impl Marian {
    /// Put a fine-tuning adapter's corrections on, or with `None`s take them off: the head
    /// delta (`set_head_delta`), then the last decoder layer's fc2 delta ([d_model, ffn], the
    /// low-rank product formed; `set_last_layer_delta`). What `Translator::set_adapter` and the
    /// GPU model's `set_adapter` apply alike. Errors: shapes or ids that do not fit the model.
    pub fn set_adapter(
        &mut self,
        head: Option<HeadDelta>,
        last_fc2_delta: Option<&Tensor>,
    ) -> Result<()> {
        self.set_head_delta(head)?;
        self.set_last_layer_delta(last_fc2_delta)
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

    /// Per row of a batch of sources (ids) with `num_beams` rows each: the head delta's trigger
    /// groups the row's source hits (`DecoderState::source_groups`; `EntryConditions::
    /// sentence_groups` per sentence, repeated for its beams); empty without conditions.
    pub fn source_groups(&self, batch: &[Vec<u32>], num_beams: usize) -> Vec<u32> {
        let conditions = self.head_delta.as_ref().and_then(|d| d.conditions.as_ref());
        EntryConditions::sentence_groups(conditions, batch)
            .into_iter()
            .flat_map(|g| std::iter::repeat_n(g, num_beams))
            .collect()
    }

    /// The head delta's ids [K] and its values `h · weightᵀ + bias` [R, K] row-major, if set
    /// (0 where an entry does not apply: `EntryConditions::mask`).
    pub(super) fn head_delta_values(
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

    /// The output projection restricted to `ids` (sorted or not; columns come in that order).
    pub fn head_rows(&self, ids: &[u32]) -> Result<HeadRows> {
        Ok(HeadRows {
            proj: self.lm_head.rows(ids)?,
            bias: self
                .final_logits_bias
                .index_select(&Tensor::new(ids, &Device::Cpu)?, 0)?,
        })
    }
}
