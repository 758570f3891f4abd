//! The optional low-rank adapter on the last decoder layer (`last_layer_rank` > 0), trained
//! together with the head correction.
//!
//! What is trained: `fc2 += B · A` in the last decoder layer (A [r, ffn], B [d_model, r], B
//! starting at zero so training starts from the base model exactly). Its input is cached per
//! position by the features pass (the layer's FFN input x), so an epoch runs only
//! `h' = LayerNorm(x + fc2(act(fc1 x)) + B·A·act(fc1 x))` and the head — never the encoder or
//! the rest of the decoder.
//!
//! Why it costs the vocabulary: moving h' moves every one of the V logits, so the head-only
//! trick (logits outside S fixed, their log-sum-exp computed once) no longer holds. The loss
//! stays exact, computed with two V-wide products per position per step instead of autograd
//! through the V-wide graph:
//! - the log-sum-exp over all V logits is evaluated directly, and its gradient with respect to
//!   h' is E_p'[W] (one product P·W); it enters autograd as the linear term
//!   `lse + (h' − h'.detach())·E_p'[W] + (δ_S − δ_S.detach())·p'_S`, which has the right value
//!   and the right first derivative (all backpropagation needs) — candle's matmul backward would
//!   also form the unneeded [D, V] gradient of the frozen projection;
//! - the target's logit is W_y·h' + b_y (+ its head correction): one row of W per position;
//! - KL(q‖p') to the base distribution q over the whole vocabulary is
//!   `Σ q log q − q·b − (qᵀW)·h' − q_S·δ_S + LSE(z')`, where `qᵀW` and the constants are
//!   computed once per position before training (`LastLayerFeatures::of`);
//! - label smoothing's mean log-probability is linear in h' too (ΣW, Σb).

use super::features::Features;
use super::positions::{exp_nonpositive, Positions};
use super::FineTuneOptions;
use crate::error::Result;
use crate::model::FrozenTail;
use candle_core::{DType, Device, Tensor, Var, D};

/// Rows per V-wide block (a block is rows × vocabulary f32s).
pub(super) const ROWS: usize = 256;

/// The frozen tail and the vocabulary-wide constants every position shares.
pub(super) struct Tail {
    frozen: FrozenTail,
    /// Σ_v W_v [D] and Σ_v b_v: label smoothing's sum of logits, linear in h'.
    proj_sum: Tensor,
    bias_sum: f64,
    /// S as token ids [K] (u32).
    set: Tensor,
    set_ids: Vec<u32>,
    /// The output bias as values, added inside the vocabulary pass.
    bias_values: Vec<f32>,
}

/// A block of rows over the whole vocabulary, from one fused pass: the softmax's numerators
/// e = exp(z − max z) per row (p = e / Σe), and per row what the loss needs of the rest.
struct VocabularyRows {
    /// [B, V] exp(z − max z).
    e: Tensor,
    /// [B] log Σ exp(z).
    lse: Tensor,
    /// [B, 1] 1 / Σ e.
    inv_sum: Tensor,
    /// [B] Σ p log p.
    p_log_p: Tensor,
}

/// One row of logits z, in place: adds `bias`, then becomes exp(z − max z). Returns max z,
/// Σ exp(z − max) and Σ exp(z − max)·(z − max). Two passes over the row, eight f32 lanes a
/// block so that they vectorise. Written by hand because candle's log_sum_exp + softmax make
/// about ten V-wide passes with an allocation each: measured as long as the block's two V-wide
/// matrix products together.
fn exp_row_in_place(row: &mut [f32], bias: &[f32]) -> (f32, f64, f64) {
    let mut m = [f32::NEG_INFINITY; 8];
    let mut lanes = row.chunks_exact_mut(8);
    let mut b_lanes = bias.chunks_exact(8);
    for (c, b) in (&mut lanes).zip(&mut b_lanes) {
        for l in 0..8 {
            c[l] += b[l];
            m[l] = m[l].max(c[l]);
        }
    }
    for (z, b) in lanes.into_remainder().iter_mut().zip(b_lanes.remainder()) {
        *z += b;
        m[0] = m[0].max(*z);
    }
    let max = m.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let (mut sum, mut weighted) = (0f64, 0f64);
    for block in row.chunks_mut(1024) {
        let (mut e, mut w) = ([0f32; 8], [0f32; 8]);
        let mut lanes = block.chunks_exact_mut(8);
        for c in &mut lanes {
            for l in 0..8 {
                let x = c[l] - max;
                c[l] = exp_nonpositive(x);
                e[l] += c[l];
                w[l] += c[l] * x;
            }
        }
        for z in lanes.into_remainder() {
            let x = *z - max;
            *z = exp_nonpositive(x);
            e[0] += *z;
            w[0] += *z * x;
        }
        sum += e.iter().map(|&x| x as f64).sum::<f64>();
        weighted += w.iter().map(|&x| x as f64).sum::<f64>();
    }
    (max, sum, weighted)
}

impl Tail {
    pub(super) fn new(frozen: FrozenTail, set: &[u32]) -> Result<Tail> {
        Ok(Tail {
            proj_sum: frozen.proj.sum(0)?,
            bias_sum: frozen.bias.sum_all()?.to_scalar::<f32>()? as f64,
            set: Tensor::new(set, &Device::Cpu)?,
            set_ids: set.to_vec(),
            bias_values: frozen.bias.to_vec1::<f32>()?,
            frozen,
        })
    }

    fn layer_norm(&self, x: &Tensor) -> Result<Tensor> {
        // Written out in differentiable operations (candle's fused layer norm has no backward).
        let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + crate::model::LAYER_NORM_EPS)?.sqrt()?)?;
        Ok(normed
            .broadcast_mul(&self.frozen.norm_weight)?
            .broadcast_add(&self.frozen.norm_bias)?)
    }

    /// Full logits [B, V] of hidden states [B, D] (no autograd).
    #[cfg(test)]
    fn logits(&self, h: &Tensor) -> Result<Tensor> {
        Ok(h.matmul(&self.frozen.proj.t()?)?
            .broadcast_add(&self.frozen.bias)?)
    }

    /// The softmax over the whole vocabulary of hidden states h [B, D] (no autograd), with the
    /// head correction `ds` [B, K] added to S's logits when given.
    fn vocabulary(&self, h: &Tensor, ds: Option<&Tensor>) -> Result<VocabularyRows> {
        let z = h.matmul(&self.frozen.proj.t()?)?;
        let (rows, v) = z.dims2()?;
        let mut z = z.flatten_all()?.to_vec1::<f32>()?;
        if let Some(ds) = ds {
            let ds = ds.to_vec2::<f32>()?;
            for (row, ds) in z.chunks_exact_mut(v).zip(&ds) {
                for (&s, &d) in self.set_ids.iter().zip(ds) {
                    row[s as usize] += d;
                }
            }
        }
        let (mut lse, mut inv_sum, mut p_log_p) = (vec![], vec![], vec![]);
        for row in z.chunks_exact_mut(v) {
            let (max, sum, weighted) = exp_row_in_place(row, &self.bias_values);
            let log_sum = sum.ln();
            lse.push((max as f64 + log_sum) as f32);
            inv_sum.push((1.0 / sum) as f32);
            // Σ p log p = Σ e (z − max) / Σe − log Σe.
            p_log_p.push((weighted / sum - log_sum) as f32);
        }
        let cpu = &Device::Cpu;
        Ok(VocabularyRows {
            e: Tensor::from_vec(z, (rows, v), cpu)?,
            lse: Tensor::from_vec(lse, rows, cpu)?,
            inv_sum: Tensor::from_vec(inv_sum, (rows, 1), cpu)?,
            p_log_p: Tensor::from_vec(p_log_p, rows, cpu)?,
        })
    }
}

impl VocabularyRows {
    /// [B, D] E_p[W] = p · W (any [V, D] W: the projection, or the bias as a column).
    fn expected(&self, proj: &Tensor) -> Result<Tensor> {
        Ok(self.e.matmul(proj)?.broadcast_mul(&self.inv_sum)?)
    }

    /// [B, K] p on the tokens `set`.
    fn on(&self, set: &Tensor) -> Result<Tensor> {
        Ok(self.e.index_select(set, 1)?.broadcast_mul(&self.inv_sum)?)
    }
}

/// What training the last layer needs per position beyond `Features`.
pub(super) struct LastLayerFeatures {
    /// [N, D] the last layer's FFN input.
    ffn_input: Tensor,
    /// [N] target token ids (vocabulary).
    labels: Tensor,
    /// [N, D] Σ_v q_v W_v under the base distribution q.
    q_proj: Tensor,
    /// [N] Σ q log q − Σ q b.
    q_const: Tensor,
    /// [N, K] q on S.
    q_set: Tensor,
}

impl LastLayerFeatures {
    /// The base distribution's constants of every position, from the cached hidden states
    /// (one pass over the vocabulary, before training).
    pub(super) fn of(tail: &Tail, pos: &Positions) -> Result<LastLayerFeatures> {
        let n = pos.len();
        let (mut q_proj, mut q_const, mut q_set) = (Vec::new(), Vec::new(), Vec::new());
        for from in (0..n).step_by(ROWS) {
            let rows = ROWS.min(n - from);
            let q = tail.vocabulary(&pos.hidden.narrow(0, from, rows)?, None)?;
            q_proj.push(q.expected(&tail.frozen.proj)?);
            let q_b = q.expected(&tail.frozen.bias.unsqueeze(1)?)?.squeeze(1)?;
            q_const.push((&q.p_log_p - q_b)?);
            q_set.push(q.on(&tail.set)?);
        }
        let d = pos.hidden.dim(1)?;
        let k = tail.set.dim(0)?;
        let cat = |parts: Vec<Tensor>, empty: Tensor| -> Result<Tensor> {
            Ok(if parts.is_empty() {
                empty
            } else {
                Tensor::cat(&parts, 0)?
            })
        };
        Ok(LastLayerFeatures {
            ffn_input: pos.ffn_input.clone(),
            labels: Tensor::new(pos.labels.as_slice(), &Device::Cpu)?,
            q_proj: cat(q_proj, Tensor::zeros((0, d), DType::F32, &Device::Cpu)?)?,
            q_const: cat(q_const, Tensor::zeros(0, DType::F32, &Device::Cpu)?)?,
            q_set: cat(q_set, Tensor::zeros((0, k), DType::F32, &Device::Cpu)?)?,
        })
    }
}

/// The trainable low-rank correction of the last layer's fc2 (`B · A`) and the frozen tail it
/// trains through.
pub(super) struct LastLayer {
    pub(super) a: Var,
    pub(super) b: Var,
    pub(super) tail: Tail,
}

/// The head correction's parameters, as `Head` holds them.
pub(super) struct HeadParams<'a> {
    pub(super) lora_b: &'a Var,
    pub(super) lora_a_t: &'a Var,
    pub(super) bias: &'a Var,
}

impl LastLayer {
    /// Per-position cross-entropy and KL to the base distribution [B] at the positions `idx`,
    /// over the whole vocabulary (see the module's notes), tracked for autograd.
    pub(super) fn per_position(
        &self,
        head: &HeadParams<'_>,
        f: &Features,
        x: &LastLayerFeatures,
        idx: &Tensor,
        o: &FineTuneOptions,
        vocab: usize,
    ) -> Result<(Tensor, Tensor)> {
        let tail = &self.tail;
        let (act, pre) = tail.frozen.ffn(&x.ffn_input.index_select(idx, 0)?)?;
        let delta = act
            .matmul(&self.a.as_tensor().t()?)?
            .matmul(&self.b.as_tensor().t()?)?;
        let h = tail.layer_norm(&(pre + delta)?)?;
        let ds = h
            .matmul(head.lora_a_t.as_tensor())?
            .matmul(&head.lora_b.as_tensor().t()?)?
            .broadcast_add(head.bias.as_tensor())?;
        let ds = f.on_set(ds, idx)?;
        // The vocabulary-wide part, as values.
        let (h_value, ds_value) = (h.detach(), ds.detach());
        let (lse, grad_h, p_set) = {
            let p = tail.vocabulary(&h_value, Some(&ds_value))?;
            (
                p.lse.clone(),
                p.expected(&tail.frozen.proj)?,
                p.on(&tail.set)?,
            )
        };
        let lse = ((lse + ((&h - &h_value)? * grad_h)?.sum(1)?)?
            + ((&ds - &ds_value)? * p_set)?.sum(1)?)?;
        // The target's logit: its row of the projection, and its head correction when in S.
        let labels = x.labels.index_select(idx, 0)?;
        let w_y = tail.frozen.proj.index_select(&labels, 0)?;
        let b_y = tail.frozen.bias.index_select(&labels, 0)?;
        let in_s = f.label_in_s.index_select(idx, 0)?;
        let ds_y = ds
            .gather(&f.label.index_select(idx, 0)?.unsqueeze(1)?, 1)?
            .squeeze(1)?;
        let z_y = (((&h * w_y)?.sum(1)? + b_y)? + (ds_y * in_s)?)?;
        let mut ce = (&lse - z_y)?;
        if o.label_smoothing > 0.0 {
            let z_sum = ((h.matmul(&tail.proj_sum.unsqueeze(1)?)?.squeeze(1)? + tail.bias_sum)?
                + ds.sum(1)?)?;
            let all_logp = (z_sum - (&lse * vocab as f64)?)?;
            let eps = o.label_smoothing;
            ce = ((ce * (1.0 - eps))? - (all_logp * (eps / vocab as f64))?)?;
        }
        let kl = ((x.q_const.index_select(idx, 0)? + &lse)?
            - (&h * x.q_proj.index_select(idx, 0)?)?.sum(1)?)?;
        let kl = (kl - (&ds * x.q_set.index_select(idx, 0)?)?.sum(1)?)?;
        Ok((ce, kl))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Activation;
    use crate::finetune::head::combine;
    use crate::finetune::random::seeded_normal;

    fn normal(seed: u64, shape: (usize, usize), std: f64) -> Tensor {
        seeded_normal(seed, shape, std).unwrap()
    }

    fn max_abs(t: &Tensor) -> f32 {
        t.abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// The loss through the linearised vocabulary terms equals the loss written out over the
    /// whole vocabulary with plain autograd, in value and in every parameter's gradient.
    #[test]
    fn per_position_loss_matches_full_vocabulary_autograd() {
        // V not a multiple of 8: the vocabulary pass's remainder lanes run too.
        let (v, d, ffn, n) = (43, 8, 12, 7);
        let set = [1u32, 5, 9, 20, 33];
        let k = set.len();
        let frozen = FrozenTail {
            fc1_weight: normal(1, (ffn, d), 0.5),
            fc1_bias: normal(2, (1, ffn), 0.1).squeeze(0).unwrap(),
            fc2_weight: normal(3, (d, ffn), 0.5),
            fc2_bias: normal(4, (1, d), 0.1).squeeze(0).unwrap(),
            act: Activation::Swish,
            norm_weight: (normal(5, (1, d), 0.1).squeeze(0).unwrap() + 1.0).unwrap(),
            norm_bias: normal(6, (1, d), 0.1).squeeze(0).unwrap(),
            proj: normal(7, (v, d), 1.0),
            bias: normal(8, (1, v), 0.5).squeeze(0).unwrap(),
        };
        let var = |t: Tensor| Var::from_tensor(&t).unwrap();
        let last = LastLayer {
            a: var(normal(10, (3, ffn), 0.3)),
            b: var(normal(11, (d, 3), 0.3)),
            tail: Tail::new(frozen, &set).unwrap(),
        };
        let tail = &last.tail;
        let ffn_input = normal(9, (n, d), 1.0);
        let (_, pre0) = tail.frozen.ffn(&ffn_input).unwrap();
        let hidden = tail.layer_norm(&pre0).unwrap();
        // Targets: some in S, some not.
        let labels: Vec<u32> = vec![5, 2, 33, 17, 1, 39, 9];
        let pos = Positions {
            hidden: hidden.clone(),
            ffn_input: ffn_input.clone(),
            labels: labels.clone(),
            top: vec![0; n],
            p_target: vec![0.0; n],
            y_logit: vec![0.0; n],
            prev: vec![None; n],
            max: vec![0.0; n],
            exp_sum: vec![1.0; n],
            logit_sum: vec![0.0; n],
        };
        let x = LastLayerFeatures::of(tail, &pos).unwrap();
        let label_s: Vec<u32> = labels
            .iter()
            .map(|y| set.binary_search(y).unwrap_or(0) as u32)
            .collect();
        let in_s: Vec<f32> = labels
            .iter()
            .map(|y| set.binary_search(y).map_or(0.0, |_| 1.0))
            .collect();
        let learn = vec![1f32, 0., 1., 0., 0., 1., 0.];
        let cpu = &Device::Cpu;
        let f = Features {
            hidden: hidden.clone(),
            base_ext: Tensor::zeros((n, k + 1), DType::F32, cpu).unwrap(),
            rest_sum: Tensor::zeros(n, DType::F32, cpu).unwrap(),
            label: Tensor::new(label_s.as_slice(), cpu).unwrap(),
            label_in_s: Tensor::new(in_s.as_slice(), cpu).unwrap(),
            label_logit: Tensor::zeros(n, DType::F32, cpu).unwrap(),
            learn: Tensor::new(learn.as_slice(), cpu).unwrap(),
            applies: None,
            to_set: None,
            last: None,
            n,
            n_learn: 3,
        };
        let (u, w, db) = (
            var(normal(12, (k, 2), 0.3)),
            var(normal(13, (d, 2), 0.3)),
            var(normal(14, (1, k), 0.3).squeeze(0).unwrap()),
        );
        let head = HeadParams {
            lora_b: &u,
            lora_a_t: &w,
            bias: &db,
        };
        let idx = Tensor::arange(0u32, n as u32, cpu).unwrap();
        let vars = [&last.a, &last.b, &u, &w, &db];
        for eps in [0.0, 0.1] {
            let o = FineTuneOptions {
                label_smoothing: eps,
                kl_weight: 3.0,
                ..Default::default()
            };
            let (ce, kl) = last.per_position(&head, &f, &x, &idx, &o, v).unwrap();
            let ours = combine(&ce, &kl, &f.learn, o.kl_weight).unwrap();

            // Plain autograd over all V logits.
            let (act, pre) = tail.frozen.ffn(&ffn_input).unwrap();
            let delta = act
                .matmul(&last.a.as_tensor().t().unwrap())
                .unwrap()
                .matmul(&last.b.as_tensor().t().unwrap())
                .unwrap();
            let h = tail.layer_norm(&(pre + delta).unwrap()).unwrap();
            let ds = h
                .matmul(w.as_tensor())
                .unwrap()
                .matmul(&u.as_tensor().t().unwrap())
                .unwrap()
                .broadcast_add(db.as_tensor())
                .unwrap();
            let z = tail
                .logits(&h)
                .unwrap()
                .index_add(&tail.set, &ds, 1)
                .unwrap();
            let logp = candle_nn::ops::log_softmax(&z, D::Minus1).unwrap();
            let y = Tensor::new(labels.as_slice(), cpu).unwrap();
            let nll = logp
                .gather(&y.unsqueeze(1).unwrap(), 1)
                .unwrap()
                .squeeze(1)
                .unwrap()
                .neg()
                .unwrap();
            let ce_ref = ((nll * (1.0 - eps)).unwrap()
                - (logp.sum(1).unwrap() * (eps / v as f64)).unwrap())
            .unwrap();
            let logq =
                candle_nn::ops::log_softmax(&tail.logits(&hidden).unwrap(), D::Minus1).unwrap();
            let kl_ref = (logq.exp().unwrap() * (logq - &logp).unwrap())
                .unwrap()
                .sum(1)
                .unwrap();
            let want = combine(&ce_ref, &kl_ref, &f.learn, o.kl_weight).unwrap();

            let (a, b) = (
                ours.to_scalar::<f32>().unwrap(),
                want.to_scalar::<f32>().unwrap(),
            );
            assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "loss {a} vs {b}");
            let g_ours = ours.backward().unwrap();
            let g_want = want.backward().unwrap();
            for (i, p) in vars.iter().enumerate() {
                let go = g_ours.get(p.as_tensor()).unwrap();
                let gw = g_want.get(p.as_tensor()).unwrap();
                let (gap, scale) = (max_abs(&(go - gw).unwrap()), max_abs(gw));
                assert!(scale > 0.0, "parameter {i} has a gradient");
                assert!(
                    gap <= 1e-4 * scale.max(1e-3),
                    "eps {eps}: parameter {i}: gradient differs by {gap} (scale {scale})"
                );
            }
        }
    }

    /// One vocabulary row crossing a block boundary, with a remainder, against f64.
    #[test]
    fn exp_row_matches_f64() {
        let v = 2 * 1024 + 13;
        let z: Vec<f32> = (0..v)
            .map(|i| ((i * 7919) % 997) as f32 / 41.0 - 12.0)
            .collect();
        let b: Vec<f32> = (0..v).map(|i| ((i * 31) % 17) as f32 / 9.0 - 1.0).collect();
        let mut row = z.clone();
        let (max, sum, weighted) = exp_row_in_place(&mut row, &b);
        let x: Vec<f64> = z.iter().zip(&b).map(|(&z, &b)| (z + b) as f64).collect();
        let m = x.iter().copied().fold(f64::MIN, f64::max);
        assert_eq!(max as f64, m);
        let e: Vec<f64> = x.iter().map(|&x| (x - m).exp()).collect();
        let want_sum: f64 = e.iter().sum();
        let want_weighted: f64 = e.iter().zip(&x).map(|(e, x)| e * (x - m)).sum();
        assert!(
            ((sum - want_sum) / want_sum).abs() < 1e-6,
            "{sum} vs {want_sum}"
        );
        assert!(((weighted - want_weighted) / want_weighted).abs() < 1e-5);
        // z − max rounds to f32 (≈ 1e-6 absolute at |z − max| ≈ 20), e^x's error ≈ 2e-7.
        let worst = row
            .iter()
            .zip(&e)
            .map(|(&got, &want)| (got as f64 - want).abs() / want)
            .fold(0f64, f64::max);
        assert!(worst < 3e-6, "worst relative error {worst}");
    }
}
