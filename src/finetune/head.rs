//! The trainable head correction (LoRA A/B on S, a bias on S, optionally the last-layer
//! adapter) and its loss: cross-entropy where a position learns, KL toward the base model
//! where it keeps.

use super::features::Features;
use super::last_layer::{self, HeadParams, LastLayer, Tail};
use super::random::seeded_normal;
use super::FineTuneOptions;
use crate::error::Result;
use candle_core::{DType, Device, Tensor, Var, D};

/// The trainable correction: ΔW = B·A on S (LoRA: B [K, r] starts at zero, so training starts
/// from the base model exactly; A [r, D] starts random; held as Aᵀ [D, r]), Δb on S.
pub(super) struct Head {
    pub(super) lora_b: Var,
    pub(super) lora_a_t: Var,
    pub(super) bias: Var,
    /// The optional last-layer adapter.
    pub(super) last: Option<LastLayer>,
}

/// Mean cross-entropy over the learn positions + `kl_weight` × mean KL over the others.
pub(super) fn combine(ce: &Tensor, kl: &Tensor, learn: &Tensor, kl_weight: f64) -> Result<Tensor> {
    let keep = (1.0 - learn)?;
    let n_learn = learn.sum_all()?.to_scalar::<f32>()?.max(1.0) as f64;
    let n_keep = keep.sum_all()?.to_scalar::<f32>()?.max(1.0) as f64;
    let ce_term = ((ce * learn)?.sum_all()? / n_learn)?;
    let kl_term = ((kl * &keep)?.sum_all()? / n_keep)?;
    Ok((ce_term + (kl_term * kl_weight)?)?)
}

impl Head {
    /// A head at the base model: LoRA B [K, r] and the bias at zero, A random (`seed`); with a
    /// last-layer adapter (`tail`; its rank `r_last`, the FFN `ffn` wide) its B at zero, its A
    /// random.
    pub(super) fn new(
        d: usize,
        k: usize,
        r: usize,
        (ffn, r_last): (usize, usize),
        tail: Option<Tail>,
        seed: u64,
    ) -> Result<Head> {
        let last = match tail {
            None => None,
            // B at zero (the base model exactly), A random, as in LoRA.
            Some(tail) => Some(LastLayer {
                a: Var::from_tensor(&seeded_normal(
                    seed ^ 0xA11,
                    (r_last, ffn),
                    1.0 / (ffn as f64).sqrt(),
                )?)?,
                b: Var::zeros((d, r_last), DType::F32, &Device::Cpu)?,
                tail,
            }),
        };
        Ok(Head {
            lora_b: Var::zeros((k, r), DType::F32, &Device::Cpu)?,
            lora_a_t: Var::from_tensor(&seeded_normal(seed, (d, r), 1.0 / (d as f64).sqrt())?)?,
            bias: Var::zeros(k, DType::F32, &Device::Cpu)?,
            last,
        })
    }

    /// The loss over all positions of `f`, without gradients, in blocks (the last-layer path
    /// holds a vocabulary-wide block per position).
    pub(super) fn loss_value(
        &self,
        f: &Features,
        o: &FineTuneOptions,
        vocab: usize,
    ) -> Result<f64> {
        let Some(last) = &self.last else {
            let idx = Tensor::arange(0u32, f.n as u32, &Device::Cpu)?;
            return Ok(self.loss(f, &idx, o, vocab)?.to_scalar::<f32>()? as f64);
        };
        let x = f.last.as_ref().expect("last-layer features");
        let (mut ce, mut kl) = (Vec::new(), Vec::new());
        for from in (0..f.n).step_by(last_layer::ROWS) {
            let to = (from + last_layer::ROWS).min(f.n);
            let idx = Tensor::arange(from as u32, to as u32, &Device::Cpu)?;
            let (c, k) = last.per_position(&self.params(), f, x, &idx, o, vocab)?;
            ce.push(c.detach());
            kl.push(k.detach());
        }
        if ce.is_empty() {
            return Ok(0.0);
        }
        let loss = combine(
            &Tensor::cat(&ce, 0)?,
            &Tensor::cat(&kl, 0)?,
            &f.learn,
            o.kl_weight,
        )?;
        Ok(loss.to_scalar::<f32>()? as f64)
    }

    pub(super) fn params(&self) -> HeadParams<'_> {
        HeadParams {
            lora_b: &self.lora_b,
            lora_a_t: &self.lora_a_t,
            bias: &self.bias,
        }
    }

    /// Loss over the positions `idx` of `f` (mean CE over learn positions + kl_weight × mean
    /// KL over the others).
    pub(super) fn loss(
        &self,
        f: &Features,
        idx: &Tensor,
        o: &FineTuneOptions,
        vocab: usize,
    ) -> Result<Tensor> {
        if let (Some(last), Some(x)) = (&self.last, &f.last) {
            let (ce, kl) = last.per_position(&self.params(), f, x, idx, o, vocab)?;
            return combine(&ce, &kl, &f.learn.index_select(idx, 0)?, o.kl_weight);
        }
        let h = f.hidden.index_select(idx, 0)?;
        let base = f.base_ext.index_select(idx, 0)?;
        let label = f.label.index_select(idx, 0)?;
        let learn = f.learn.index_select(idx, 0)?;
        let n = h.dim(0)?;
        let delta = h
            .matmul(self.lora_a_t.as_tensor())?
            .matmul(&self.lora_b.as_tensor().t()?)?
            .broadcast_add(self.bias.as_tensor())?;
        let delta = f.on_set(delta, idx)?;
        let delta = Tensor::cat(
            &[delta, Tensor::zeros((n, 1), DType::F32, &Device::Cpu)?],
            1,
        )?;
        let z = (&base + delta)?;
        let logp = candle_nn::ops::log_softmax(&z, D::Minus1)?;
        // log p(target) = z_target − LSE(z); z_target is the fixed base logit outside S.
        let in_s = f.label_in_s.index_select(idx, 0)?;
        let z_y = z.gather(&label.unsqueeze(1)?, 1)?.squeeze(1)?;
        let z_y = ((&z_y * &in_s)? + (f.label_logit.index_select(idx, 0)? * (1.0 - &in_s)?)?)?;
        let mut ce = (z.log_sum_exp(1)? - z_y)?;
        if o.label_smoothing > 0.0 {
            // mean log-prob over the whole vocabulary, exactly: S part + the rest.
            let k = z.dim(1)? - 1;
            let lse_new = (z.narrow(1, k, 1)?.squeeze(1)? - logp.narrow(1, k, 1)?.squeeze(1)?)?;
            let rest_sum = f.rest_sum.index_select(idx, 0)?;
            let rest_logp = (rest_sum - (lse_new * (vocab - k) as f64)?)?;
            let all_logp = (logp.narrow(1, 0, k)?.sum(1)? + rest_logp)?;
            let eps = o.label_smoothing;
            ce = ((ce * (1.0 - eps))? - (all_logp * (eps / vocab as f64))?)?;
        }
        let q = candle_nn::ops::softmax(&base, D::Minus1)?;
        let logq = candle_nn::ops::log_softmax(&base, D::Minus1)?;
        let kl = (q * (logq - &logp)?)?.sum(1)?;
        let keep = (1.0 - &learn)?;
        if o.kl_learn_weight > 0.0 {
            // KL over every token but the label: the taught token may rise, the others keep
            // their relative order and spacing.
            let k1 = z.dim(1)?;
            let labels = label.to_vec1::<u32>()?;
            let mut m = vec![0f32; n * k1];
            let in_s = in_s.to_vec1::<f32>()?;
            for (i, &y) in labels.iter().enumerate() {
                if in_s[i] > 0.0 {
                    m[i * k1 + y as usize] = -1e9;
                }
            }
            let m = Tensor::from_vec(m, (n, k1), &Device::Cpu)?;
            let zb = (&base + &m)?;
            let zt = (&z + &m)?;
            let q2 = candle_nn::ops::softmax(&zb, D::Minus1)?;
            let kl2 = (q2
                * (candle_nn::ops::log_softmax(&zb, D::Minus1)?
                    - candle_nn::ops::log_softmax(&zt, D::Minus1)?)?)?
            .sum(1)?;
            let n_learn = learn.sum_all()?.to_scalar::<f32>()?.max(1.0) as f64;
            let extra = (((kl2 * &learn)?.sum_all()? / n_learn)? * o.kl_learn_weight)?;
            let n_keep = keep.sum_all()?.to_scalar::<f32>()?.max(1.0) as f64;
            let ce_term = ((ce * &learn)?.sum_all()? / n_learn)?;
            let kl_term = ((kl * &keep)?.sum_all()? / n_keep)?;
            return Ok(((ce_term + (kl_term * o.kl_weight)?)? + extra)?);
        }
        combine(&ce, &kl, &learn, o.kl_weight)
    }

    pub(super) fn vars(&self) -> Vec<&Var> {
        let mut vars = vec![&self.lora_b, &self.lora_a_t, &self.bias];
        if let Some(last) = &self.last {
            vars.extend([&last.a, &last.b]);
        }
        vars
    }
}

pub(super) fn finite(t: &Tensor) -> Result<bool> {
    Ok(t.flatten_all()?
        .to_vec1::<f32>()?
        .iter()
        .all(|x| x.is_finite()))
}
