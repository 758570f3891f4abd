//! The layers as recordings: `record_encoder_layer` and `record_decoder_layer` take the CPU
//! `EncoderLayer::forward` / `DecoderLayer::forward` (src/model/layers.rs) step by step, in
//! its order and under its names — self_attn, self_attn_layer_norm, (encoder_attn,
//! encoder_attn_layer_norm,) fc1/fc2, final_layer_norm — each step one op of `gpu::ops`.

use super::state::GpuState;
use super::{DecoderLayer, EncoderLayer, GpuMarian};
use crate::generate::Select;
use crate::gpu::ops::{
    attention, embed, gather_rows, head_delta, kv_cache, layer_norm, linear, top_k,
};
use crate::gpu::recorder::Recorder;
use crate::gpu::weights::GpuMatrix;

/// An encoder pass's batch: its shape and working buffers ([n, d] each, `ffn` [n,
/// encoder_ffn_dim], n = b·s positions).
pub(super) struct EncoderBatch<'b> {
    pub positions: usize,
    /// s, the longest sentence (every sentence is padded to it).
    pub src_len: usize,
    /// [b] each sentence's length.
    pub src_lens: &'b wgpu::Buffer,
    /// 0, 1, 2, …: sentence i attends over key block i (its own).
    pub identity: &'b wgpu::Buffer,
    pub q: wgpu::Buffer,
    pub k: wgpu::Buffer,
    pub v: wgpu::Buffer,
    pub context: wgpu::Buffer,
    pub h: wgpu::Buffer,
    pub ffn: wgpu::Buffer,
}

/// One decoder layer's part of a step.
struct LayerStep<'a> {
    /// The layer's index (its K/V caches in the state).
    index: usize,
    rows: usize,
    /// The new token's position (where its K/V go in the cache).
    position: usize,
    /// The fc2 weight to multiply: the layer's, or an adapter's merged one.
    fc2: &'a GpuMatrix,
    /// Where to copy the feed-forward input (fine-tuning's features pass, last layer only).
    keep_ffn_input: Option<&'a wgpu::Buffer>,
}

impl GpuMarian {
    /// Record one encoder layer over all n = b·s positions of `x` [n, d]: the CPU
    /// `EncoderLayer::forward`'s steps in its order and under its names — self_attn (q/k/v/out
    /// projections, attention within each sentence's `src_lens`), self_attn_layer_norm, fc1/fc2,
    /// final_layer_norm.
    pub(super) fn record_encoder_layer<'a>(
        &'a self,
        rec: &mut Recorder<'a>,
        layer: &'a EncoderLayer,
        x: &wgpu::Buffer,
        b: &EncoderBatch<'_>,
    ) {
        let k = self.kernels();
        let d = self.config.d_model;
        let (n, s) = (b.positions, b.src_len);
        let a = &layer.self_attn;
        let q_scale = a.scaling() as f32;
        k.linear.record(
            rec,
            linear::Args::dense(&a.q_proj, x, n, &b.q).scaled(q_scale),
        );
        k.linear
            .record(rec, linear::Args::dense(&a.k_proj, x, n, &b.k));
        k.linear
            .record(rec, linear::Args::dense(&a.v_proj, x, n, &b.v));
        k.attention.record(
            rec,
            attention::Args {
                num_heads: a.num_heads,
                d_model: d,
                q: &b.q,
                q_rows: n,
                queries_per_block: s,
                k: &b.k,
                v: &b.v,
                block_stride: s * d,
                block_of: b.identity,
                block_lengths: b.src_lens,
                fixed_length: None,
                out: &b.context,
            },
        );
        k.linear
            .record(rec, linear::Args::dense(&a.out_proj, &b.context, n, &b.h));
        self.record_layer_norm(rec, &layer.self_attn_layer_norm, x, &b.h, n);
        k.linear.record(
            rec,
            linear::Args::dense(&layer.fc1, x, n, &b.ffn).activated(self.activation_fn),
        );
        k.linear
            .record(rec, linear::Args::dense(&layer.fc2, &b.ffn, n, &b.h));
        self.record_layer_norm(rec, &layer.final_layer_norm, x, &b.h, n);
    }

    /// x = LayerNorm(x + h) over `rows` rows, in place.
    fn record_layer_norm<'a>(
        &'a self,
        rec: &mut Recorder<'a>,
        norm: &crate::model::weights::NormWeights<wgpu::Buffer>,
        x: &wgpu::Buffer,
        h: &wgpu::Buffer,
        rows: usize,
    ) {
        self.kernels().layer_norm.record(
            rec,
            layer_norm::Args {
                x,
                h,
                norm,
                rows,
                d_model: self.config.d_model,
            },
        );
    }

    /// Record one decoding step up to the last layer norm, for `r` rows at position `t`: the
    /// embedding of `st.tokens`, every decoder layer (the new token's K/V go into the cache),
    /// the rows' hidden states left in `st.x`. With `base_pass` (fine-tuning's features pass)
    /// it is the frozen base model, no adapter, and the last layer's FFN input is copied there.
    pub(super) fn record_decoder_step<'a>(
        &'a self,
        rec: &mut Recorder<'a>,
        st: &GpuState,
        r: usize,
        t: usize,
        base_pass: Option<&wgpu::Buffer>,
    ) {
        let last_fc2 = match base_pass {
            Some(_) => None,
            None => self.last_fc2.lock().unwrap().clone(),
        };
        let last = self.decoder.len().saturating_sub(1);
        self.kernels().embed.record(
            rec,
            embed::Args {
                table: &self.decoder_embed,
                ids: &st.tokens,
                rows: r,
                positions: &self.positions,
                tokens_per_sequence: 1,
                first_position: t,
                d_model: self.config.d_model,
                scale: self.embed_scale,
                out: &st.x,
            },
        );
        for (i, layer) in self.decoder.iter().enumerate() {
            let fc2 = match (&last_fc2, i == last) {
                (Some(merged), true) => merged.as_ref(),
                _ => &layer.fc2.weight,
            };
            let step = LayerStep {
                index: i,
                rows: r,
                position: t,
                fc2,
                keep_ffn_input: base_pass.filter(|_| i == last),
            };
            self.record_decoder_layer(rec, layer, st, &step);
        }
    }

    /// Record one decoder layer of a step: the CPU `DecoderLayer::forward`'s steps in its order
    /// and under its names — self-attention (the new token's K/V written into the cache at
    /// `position`), self_attn_layer_norm, encoder_attn over the cached encoder K/V,
    /// encoder_attn_layer_norm, fc1/fc2, final_layer_norm — on the rows' hidden states `st.x`.
    fn record_decoder_layer<'a>(
        &'a self,
        rec: &mut Recorder<'a>,
        layer: &'a DecoderLayer,
        st: &GpuState,
        step: &LayerStep<'_>,
    ) {
        let k = self.kernels();
        let d = self.config.d_model;
        let (i, r, t) = (step.index, step.rows, step.position);
        let a = &layer.self_attn;
        k.linear.record(
            rec,
            linear::Args::dense(&a.q_proj, &st.x, r, &st.q).scaled(a.scaling() as f32),
        );
        kv_cache::record(
            &k.linear,
            rec,
            kv_cache::Write {
                attn: a,
                x: &st.x,
                rows: r,
                keys: &st.self_k[i],
                values: &st.self_v[i],
                capacity: st.capacity,
                position: t,
                d_model: d,
            },
        );
        k.attention.record(
            rec,
            attention::Args {
                num_heads: a.num_heads,
                d_model: d,
                q: &st.q,
                q_rows: r,
                queries_per_block: 1,
                k: &st.self_k[i],
                v: &st.self_v[i],
                block_stride: st.capacity * d,
                block_of: &st.identity,
                block_lengths: &st.src_lens,
                fixed_length: Some(t + 1),
                out: &st.ctx_buf,
            },
        );
        k.linear
            .record(rec, linear::Args::dense(&a.out_proj, &st.ctx_buf, r, &st.h));
        self.record_layer_norm(rec, &layer.self_attn_layer_norm, &st.x, &st.h, r);
        let c = &layer.encoder_attn;
        k.linear.record(
            rec,
            linear::Args::dense(&c.q_proj, &st.x, r, &st.q).scaled(c.scaling() as f32),
        );
        k.attention.record(
            rec,
            attention::Args {
                num_heads: c.num_heads,
                d_model: d,
                q: &st.q,
                q_rows: r,
                queries_per_block: 1,
                k: &st.cross_k[i],
                v: &st.cross_v[i],
                block_stride: st.src_len * d,
                block_of: &st.row_block,
                block_lengths: &st.src_lens,
                fixed_length: None,
                out: &st.ctx_buf,
            },
        );
        k.linear
            .record(rec, linear::Args::dense(&c.out_proj, &st.ctx_buf, r, &st.h));
        self.record_layer_norm(rec, &layer.encoder_attn_layer_norm, &st.x, &st.h, r);
        if let Some(keep) = step.keep_ffn_input {
            k.gather_rows.record(
                rec,
                gather_rows::Args {
                    index: &st.identity,
                    src: &st.x,
                    dst: keep,
                    rows: r,
                    words: d,
                    stride: d,
                },
            );
        }
        k.linear.record(
            rec,
            linear::Args::dense(&layer.fc1, &st.x, r, &st.ffn).activated(self.activation_fn),
        );
        k.linear.record(
            rec,
            linear::Args {
                weight: step.fc2,
                ..linear::Args::dense(&layer.fc2, &st.ffn, r, &st.h)
            },
        );
        self.record_layer_norm(rec, &layer.final_layer_norm, &st.x, &st.h, r);
    }

    /// Record the frozen model's logits of `r` rows (`st.x` through the output projection and
    /// `final_logits_bias`) into `st.logits`.
    pub(super) fn record_base_logits<'a>(
        &'a self,
        rec: &mut Recorder<'a>,
        st: &GpuState,
        r: usize,
    ) {
        let tv = self.config.target_vocab_size();
        self.kernels().linear.record(
            rec,
            linear::Args {
                weight: &self.lm_head,
                bias: &self.final_logits_bias,
                x: &st.x,
                rows: r,
                y: linear::Rows::dense(&st.logits, tv),
                activation: None,
                scale: 1.0,
            },
        );
    }

    /// Record the head of a generation step: logits (with the fine-tuning adapter, if any),
    /// then each row's best `k` into `st.best`.
    pub(super) fn record_head<'a>(
        &'a self,
        rec: &mut Recorder<'a>,
        st: &GpuState,
        r: usize,
        k: usize,
        select: &Select<'_>,
    ) {
        let (d, tv) = (self.config.d_model, self.config.target_vocab_size());
        let delta = self.delta.lock().unwrap().clone();
        self.record_base_logits(rec, st, r);
        if let Some(delta) = &delta {
            self.kernels().head_delta.record(
                rec,
                head_delta::Args {
                    hidden: &st.x,
                    rows: r,
                    d_model: d,
                    ids: &delta.ids,
                    weight: &delta.weight,
                    bias: &delta.bias,
                    conditions: &delta.conditions,
                    k: delta.k,
                    row_state: &st.row_state,
                    logits: &st.logits,
                    vocab: tv,
                },
            );
        }
        self.kernels().top_k.record(
            rec,
            top_k::Args {
                logits: &st.logits,
                rows: r,
                vocab: tv,
                k,
                log_softmax: select.log_softmax,
                banned: &st.banned,
                num_banned: select.banned.len(),
                best: &st.best,
            },
        );
    }
}
