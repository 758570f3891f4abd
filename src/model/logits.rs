//! A decoding step's logits: the output projection (tied or separate, possibly through a
//! screen), final_logits_bias, then the head delta, always added in that order so that every
//! way of computing them (tensor, in-place rows, greedy's proposal pass, the GPU) agrees bit
//! for bit.

use super::products::{with_f16_values, with_f32_values};
use super::{screened_head, DecoderState, Marian};
use crate::error::Result;
use crate::generate::{top_k_of_row, Select};
use crate::package::quant::Matrix;
use candle_core::{DType, Tensor};
use rayon::prelude::*;

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

impl Marian {
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

    /// The package's own logits [R, V] (f32), without any head delta.
    pub fn base_logits(&self, h: &Tensor) -> Result<Tensor> {
        Ok(self
            .lm_head
            .project(h)?
            .broadcast_add(&self.final_logits_bias)?
            .to_dtype(DType::F32)?)
    }
}
