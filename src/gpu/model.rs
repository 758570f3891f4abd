//! The Marian encoder-decoder on the GPU: the same layers, weights and step contract as the
//! CPU model (`crate::model`), each operation a WGSL kernel. Weights are uploaded once;
//! a batch's buffers are made once in `start` and reused by every step; a step reads back
//! only each row's best k tokens.

use super::context::GpuContext;
use super::kernels::{grid, Program, Recorder, MATVEC_MAX_ROWS};
use super::weights::{scratch, upload_f32, upload_u32, GpuMatrix};
use crate::config::{Activation, MarianConfig};
use crate::error::{Error, Result};
use crate::generate::{top_k_of_row, Backend, Select};
use crate::model::weights::{
    AttentionWeights, DecoderLayerWeights, EncoderLayerWeights, LinearWeights, MarianWeights,
    NormWeights, WeightSource,
};
use crate::model::{sinusoidal_table, HeadDelta, LAYER_NORM_EPS};
use crate::package::quant::WeightFile;
use crate::package::Package;
use bytemuck::{bytes_of, Pod, Zeroable};
mod teacher_forced;

use std::cell::RefCell;
use std::sync::{Arc, Mutex};
pub use teacher_forced::TeacherForced;

/// Keys one attention row can see (the kernel's workgroup array).
const MAX_KEYS: usize = 1024;
/// Candidates per row a step may ask for (2 x 64 beams).
const MAX_K: usize = 128;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    x_base: u32,
    x_stride: u32,
    y_base: u32,
    y_stride: u32,
    act: u32,
    scale: f32,
    has_bias: u32,
    pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct EmbedParams {
    rows: u32,
    d: u32,
    pos_period: u32,
    pos_offset: u32,
    scale: f32,
    pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct NormParams {
    rows: u32,
    d: u32,
    eps: f32,
    pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct AttentionParams {
    q_rows: u32,
    q_per_kv: u32,
    heads: u32,
    head_dim: u32,
    d: u32,
    kv_stride: u32,
    fixed_len: u32,
    pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Quad {
    a: u32,
    b: u32,
    c: u32,
    d: u32,
}

fn act_code(a: Activation) -> u32 {
    match a {
        Activation::Swish => 1,
        Activation::Gelu => 2,
        Activation::GeluNew => 3,
        Activation::Relu => 4,
        Activation::Tanh => 5,
        Activation::Sigmoid => 6,
    }
}

// The model's structure is the CPU model's (crate::model::weights); only the storage differs.
type Linear = LinearWeights<GpuMatrix, wgpu::Buffer>;
type Norm = NormWeights<wgpu::Buffer>;
type Attention = AttentionWeights<GpuMatrix, wgpu::Buffer>;
type EncoderLayer = EncoderLayerWeights<GpuMatrix, wgpu::Buffer>;
type DecoderLayer = DecoderLayerWeights<GpuMatrix, wgpu::Buffer>;

struct Delta {
    ids: wgpu::Buffer,
    weight: wgpu::Buffer,
    bias: wgpu::Buffer,
    k: usize,
}

/// A buffer-to-buffer copy recorded after a submission's dispatches.
struct BufferCopy<'b> {
    from: &'b wgpu::Buffer,
    from_offset: u64,
    to: &'b wgpu::Buffer,
    to_offset: u64,
    bytes: u64,
}

impl<'b> BufferCopy<'b> {
    /// The first `bytes` of `from` to the start of `to`.
    fn whole(from: &'b wgpu::Buffer, to: &'b wgpu::Buffer, bytes: u64) -> Self {
        BufferCopy {
            from,
            from_offset: 0,
            to,
            to_offset: 0,
            bytes,
        }
    }
}

pub struct GpuMarian {
    ctx: Arc<GpuContext>,
    pub config: MarianConfig,
    encoder_embed: Arc<GpuMatrix>,
    decoder_embed: Arc<GpuMatrix>,
    lm_head: Arc<GpuMatrix>,
    final_logits_bias: wgpu::Buffer,
    positions: wgpu::Buffer,
    embed_scale: f32,
    act: u32,
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
            act: act_code(cfg.activation_function),
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

    /// Apply (or remove) a fine-tuning adapter's output correction, as the CPU model does.
    pub fn set_head_delta(&self, delta: Option<&HeadDelta>) -> Result<()> {
        let new = match delta {
            None => None,
            Some(h) if h.conditions.is_some() => {
                return Err(Error::Gpu(
                    "this adapter conditions entries on the previous token, which the GPU head does not apply yet".into(),
                ))
            }
            Some(h) => {
                let ids = h.ids.to_vec1::<u32>()?;
                Some(Arc::new(Delta {
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

    /// y = act((x W^T + b) * scale) over `rows` rows of x, written at `y_base` + row * `y_stride`.
    #[allow(clippy::too_many_arguments)]
    fn linear<'a>(
        &'a self,
        rec: &mut Recorder<'a>,
        w: &GpuMatrix,
        bias: Option<&wgpu::Buffer>,
        x: &wgpu::Buffer,
        rows: usize,
        y: &wgpu::Buffer,
        y_base: usize,
        y_stride: usize,
        act: u32,
        scale: f32,
    ) {
        let params = MatmulParams {
            m: rows as u32,
            n: w.rows as u32,
            k: w.cols as u32,
            x_base: 0,
            x_stride: (w.cols / 4) as u32,
            y_base: y_base as u32,
            y_stride: y_stride as u32,
            act,
            scale,
            has_bias: bias.is_some() as u32,
            pad: [0; 2],
        };
        let k = &self.ctx.kernels;
        let (kernel, groups) = if rows <= MATVEC_MAX_ROWS {
            (&k.matvec[&w.format], grid(w.rows))
        } else {
            (
                &k.matmul_tiled[&w.format],
                [w.rows.div_ceil(64) as u32, rows.div_ceil(64) as u32, 1],
            )
        };
        let b = bias.unwrap_or(&self.final_logits_bias);
        rec.dispatch(
            kernel,
            bytes_of(&params),
            &[(1, x), (2, &w.values), (3, &w.scales), (4, b), (5, y)],
            groups,
        );
    }

    /// y[rows, n] = x W^T + b, rows laid out densely.
    #[allow(clippy::too_many_arguments)] // a kernel launch: its parameters, spelled out
    fn dense<'a>(
        &'a self,
        rec: &mut Recorder<'a>,
        l: &'a Linear,
        x: &wgpu::Buffer,
        rows: usize,
        y: &wgpu::Buffer,
        act: u32,
        scale: f32,
    ) {
        self.linear(
            rec,
            &l.weight,
            Some(&l.bias),
            x,
            rows,
            y,
            0,
            l.weight.rows,
            act,
            scale,
        );
    }

    #[allow(clippy::too_many_arguments)] // a kernel launch: its parameters, spelled out
    fn embed<'a>(
        &'a self,
        rec: &mut Recorder<'a>,
        table: &'a GpuMatrix,
        ids: &wgpu::Buffer,
        rows: usize,
        period: usize,
        offset: usize,
        out: &wgpu::Buffer,
    ) {
        let params = EmbedParams {
            rows: rows as u32,
            d: self.config.d_model as u32,
            pos_period: period as u32,
            pos_offset: offset as u32,
            scale: self.embed_scale,
            pad: [0; 3],
        };
        rec.dispatch(
            &self.ctx.kernels.embed[&table.format],
            bytes_of(&params),
            &[
                (1, ids),
                (2, &table.values),
                (3, &table.scales),
                (4, &self.positions),
                (5, out),
            ],
            grid(rows),
        );
    }

    fn norm<'a>(
        &'a self,
        rec: &mut Recorder<'a>,
        n: &'a Norm,
        x: &wgpu::Buffer,
        h: &wgpu::Buffer,
        rows: usize,
    ) {
        let params = NormParams {
            rows: rows as u32,
            d: self.config.d_model as u32,
            eps: LAYER_NORM_EPS as f32,
            pad: 0,
        };
        rec.dispatch(
            &self.ctx.kernels.layer_norm,
            bytes_of(&params),
            &[(1, h), (2, &n.weight), (3, &n.bias), (5, x)],
            grid(rows),
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn attend<'a>(
        &'a self,
        rec: &mut Recorder<'a>,
        heads: usize,
        q: &wgpu::Buffer,
        q_rows: usize,
        q_per_kv: usize,
        k: &wgpu::Buffer,
        v: &wgpu::Buffer,
        kv_block: &wgpu::Buffer,
        kv_len: &wgpu::Buffer,
        kv_stride: usize,
        fixed_len: usize,
        out: &wgpu::Buffer,
    ) {
        let d = self.config.d_model;
        let params = AttentionParams {
            q_rows: q_rows as u32,
            q_per_kv: q_per_kv as u32,
            heads: heads as u32,
            head_dim: (d / heads) as u32,
            d: d as u32,
            kv_stride: kv_stride as u32,
            fixed_len: fixed_len as u32,
            pad: 0,
        };
        rec.dispatch(
            &self.ctx.kernels.attention,
            bytes_of(&params),
            &[(1, q), (2, k), (3, v), (4, kv_block), (5, out), (6, kv_len)],
            [heads as u32, q_rows as u32, 1],
        );
    }

    /// Submit recorded work and then `copies` as one command buffer.
    fn submit(&self, rec: Recorder<'_>, copies: &[BufferCopy<'_>]) {
        let mut encoder = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        rec.finish(&self.ctx.queue, &mut encoder);
        for c in copies {
            encoder.copy_buffer_to_buffer(c.from, c.from_offset, c.to, c.to_offset, c.bytes);
        }
        self.ctx.queue.submit([encoder.finish()]);
    }

    async fn read_back(&self, buffer: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        let slice = buffer.slice(..bytes);
        let (done, wait) = oneshot();
        slice.map_async(wgpu::MapMode::Read, move |r| done.send(r));
        // Natively, wait on the device here, so the future never suspends. With a device shared
        // by several threads, another thread's poll may be the one running our callback: poll
        // until it has run.
        #[cfg(not(target_arch = "wasm32"))]
        let mapped = loop {
            self.ctx
                .device
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| self.ctx.fail(format!("GPU device stopped answering: {e}")))?;
            if let Some(v) = wait.try_take() {
                break v;
            }
            std::thread::yield_now();
        };
        #[cfg(target_arch = "wasm32")]
        let mapped = wait.await;
        mapped.map_err(|e| self.ctx.fail(format!("GPU read-back failed: {e}")))?;
        let data = slice
            .get_mapped_range()
            .map_err(|e| self.ctx.fail(format!("GPU read-back failed: {e}")))?
            .to_vec();
        buffer.unmap();
        self.ctx.check()?;
        Ok(data)
    }

    /// Record one encoder layer over all n = b·s positions of `x` [n, d]: the CPU
    /// `EncoderLayer::forward`'s steps in its order and under its names — self_attn (q/k/v/out
    /// projections, attention within each sentence's `src_lens`), self_attn_layer_norm, fc1/fc2,
    /// final_layer_norm.
    fn record_encoder_layer<'a>(
        &'a self,
        rec: &mut Recorder<'a>,
        layer: &'a EncoderLayer,
        x: &wgpu::Buffer,
        b: &EncoderBatch<'_>,
    ) {
        let d = self.config.d_model;
        let (n, s) = (b.positions, b.src_len);
        let a = &layer.self_attn;
        self.dense(rec, &a.q_proj, x, n, &b.q, 0, a.scaling() as f32);
        self.dense(rec, &a.k_proj, x, n, &b.k, 0, 1.0);
        self.dense(rec, &a.v_proj, x, n, &b.v, 0, 1.0);
        self.attend(
            rec,
            a.num_heads,
            &b.q,
            n,
            s,
            &b.k,
            &b.v,
            b.identity,
            b.src_lens,
            s * d,
            0,
            &b.context,
        );
        self.dense(rec, &a.out_proj, &b.context, n, &b.h, 0, 1.0);
        self.norm(rec, &layer.self_attn_layer_norm, x, &b.h, n);
        self.dense(rec, &layer.fc1, x, n, &b.ffn, self.act, 1.0);
        self.dense(rec, &layer.fc2, &b.ffn, n, &b.h, 0, 1.0);
        self.norm(rec, &layer.final_layer_norm, x, &b.h, n);
    }

    /// Record one decoding step up to the last layer norm, for `r` rows at position `t`: the
    /// embedding of `st.tokens`, every decoder layer (the new token's K/V go into the cache),
    /// the rows' hidden states left in `st.x`. With `base_pass` (fine-tuning's features pass)
    /// it is the frozen base model, no adapter, and the last layer's FFN input is copied there.
    fn record_decoder_step<'a>(
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
        self.embed(rec, &self.decoder_embed, &st.tokens, r, 1, t, &st.x);
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
        let d = self.config.d_model;
        let (i, r, t, fc2) = (step.index, step.rows, step.position, step.fc2);
        let kv_stride = st.capacity * d;
        let a = &layer.self_attn;
        self.dense(rec, &a.q_proj, &st.x, r, &st.q, 0, a.scaling() as f32);
        self.write_kv(rec, a, st, step);
        self.attend(
            rec,
            a.num_heads,
            &st.q,
            r,
            1,
            &st.self_k[i],
            &st.self_v[i],
            &st.identity,
            &st.src_lens,
            kv_stride,
            t + 1,
            &st.ctx_buf,
        );
        self.dense(rec, &a.out_proj, &st.ctx_buf, r, &st.h, 0, 1.0);
        self.norm(rec, &layer.self_attn_layer_norm, &st.x, &st.h, r);
        let c = &layer.encoder_attn;
        self.dense(rec, &c.q_proj, &st.x, r, &st.q, 0, c.scaling() as f32);
        self.attend(
            rec,
            c.num_heads,
            &st.q,
            r,
            1,
            &st.cross_k[i],
            &st.cross_v[i],
            &st.row_block,
            &st.src_lens,
            st.src_len * d,
            0,
            &st.ctx_buf,
        );
        self.dense(rec, &c.out_proj, &st.ctx_buf, r, &st.h, 0, 1.0);
        self.norm(rec, &layer.encoder_attn_layer_norm, &st.x, &st.h, r);
        if let Some(keep) = step.keep_ffn_input {
            let copy = Quad {
                a: r as u32,
                b: d as u32,
                c: d as u32,
                d: 0,
            };
            rec.dispatch(
                &self.ctx.kernels.gather_rows,
                bytes_of(&copy),
                &[(1, &st.identity), (2, &st.x), (5, keep)],
                [d.div_ceil(256) as u32, r as u32, 1],
            );
        }
        self.dense(rec, &layer.fc1, &st.x, r, &st.ffn, self.act, 1.0);
        self.linear(
            rec,
            fc2,
            Some(&layer.fc2.bias),
            &st.ffn,
            r,
            &st.h,
            0,
            fc2.rows,
            0,
            1.0,
        );
        self.norm(rec, &layer.final_layer_norm, &st.x, &st.h, r);
    }

    /// The step's KV-cache write: the new token's key and value, projected from `st.x` by
    /// `attn`'s k_proj and v_proj straight into layer `step.index`'s caches at `step.position`
    /// (each row's cache is `capacity · d` floats long).
    fn write_kv<'a>(
        &'a self,
        rec: &mut Recorder<'a>,
        attn: &Attention,
        st: &GpuState,
        step: &LayerStep<'_>,
    ) {
        let d = self.config.d_model;
        let caches = [
            (&attn.k_proj, &st.self_k[step.index]),
            (&attn.v_proj, &st.self_v[step.index]),
        ];
        let (y_base, y_stride) = (step.position * d, st.capacity * d);
        for (proj, cache) in caches {
            self.linear(
                rec,
                &proj.weight,
                Some(&proj.bias),
                &st.x,
                step.rows,
                cache,
                y_base,
                y_stride,
                0,
                1.0,
            );
        }
    }

    /// Record the frozen model's logits of `r` rows (`st.x` through the output projection and
    /// `final_logits_bias`) into `st.logits`.
    fn record_base_logits<'a>(&'a self, rec: &mut Recorder<'a>, st: &GpuState, r: usize) {
        let tv = self.config.target_vocab_size();
        self.linear(
            rec,
            &self.lm_head,
            Some(&self.final_logits_bias),
            &st.x,
            r,
            &st.logits,
            0,
            tv,
            0,
            1.0,
        );
    }

    /// Record the head of a generation step: logits (with the fine-tuning adapter, if any),
    /// then each row's best `k` into `st.best`.
    fn record_head<'a>(
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
            let params = Quad {
                a: r as u32,
                b: delta.k as u32,
                c: d as u32,
                d: tv as u32,
            };
            rec.dispatch(
                &self.ctx.kernels.head_delta,
                bytes_of(&params),
                &[
                    (1, &st.x),
                    (2, &delta.weight),
                    (3, &delta.bias),
                    (4, &delta.ids),
                    (5, &st.logits),
                ],
                [delta.k.div_ceil(64) as u32, r as u32, 1],
            );
        }
        let params = Quad {
            a: tv as u32,
            b: k as u32,
            c: select.log_softmax as u32,
            d: select.banned.len() as u32,
        };
        rec.dispatch(
            &self.ctx.kernels.top_k,
            bytes_of(&params),
            &[(1, &st.banned), (5, &st.logits), (6, &st.best)],
            [r as u32, 1, 1],
        );
    }

    fn steps_slots(&self) -> usize {
        // embed + 13 per decoder layer (+1: the features pass's copy of the last FFN input) +
        // head (logits, adapter, top-k), with room to spare.
        4 + 13 * self.decoder.len() + 1 + 4
    }
}

/// An encoder pass's batch: its shape and working buffers ([n, d] each, `ffn` [n,
/// encoder_ffn_dim], n = b·s positions).
struct EncoderBatch<'b> {
    positions: usize,
    /// s, the longest sentence (every sentence is padded to it).
    src_len: usize,
    /// [b] each sentence's length.
    src_lens: &'b wgpu::Buffer,
    /// 0, 1, 2, …: sentence i attends over key block i (its own).
    identity: &'b wgpu::Buffer,
    q: wgpu::Buffer,
    k: wgpu::Buffer,
    v: wgpu::Buffer,
    context: wgpu::Buffer,
    h: wgpu::Buffer,
    ffn: wgpu::Buffer,
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

/// A batch's buffers, made in `start` and reused by every step.
pub struct GpuState {
    rows: usize,
    length: usize,
    capacity: usize,
    src_len: usize,
    x: wgpu::Buffer,
    q: wgpu::Buffer,
    ctx_buf: wgpu::Buffer,
    h: wgpu::Buffer,
    ffn: wgpu::Buffer,
    logits: wgpu::Buffer,
    tokens: wgpu::Buffer,
    self_k: Vec<wgpu::Buffer>,
    self_v: Vec<wgpu::Buffer>,
    cross_k: Vec<wgpu::Buffer>,
    cross_v: Vec<wgpu::Buffer>,
    src_lens: wgpu::Buffer,
    identity: wgpu::Buffer,
    row_block: wgpu::Buffer,
    row_block_host: Vec<u32>,
    reorder_index: wgpu::Buffer,
    reorder_tmp: wgpu::Buffer,
    banned: wgpu::Buffer,
    banned_host: Vec<u32>,
    best: wgpu::Buffer,
    staging: wgpu::Buffer,
    /// A step's dispatches (in a cell: a step records from the state's buffers while its
    /// program is borrowed mutably).
    step_program: RefCell<Program>,
    reorder_program: Program,
}

impl Backend for GpuMarian {
    type State = GpuState;

    async fn start(
        &self,
        batch: &[Vec<u32>],
        num_beams: usize,
        max_length: usize,
    ) -> Result<GpuState> {
        self.ctx.check()?;
        let cfg = &self.config;
        let d = cfg.d_model;
        let b = batch.len();
        let s = batch.iter().map(|x| x.len()).max().unwrap_or(0).max(1);
        if s > cfg.max_position_embeddings {
            return Err(Error::Input(format!(
                "sequence of {s} tokens is longer than the model's {} positions",
                cfg.max_position_embeddings
            )));
        }
        let rows = b * num_beams;
        let capacity = max_length.min(cfg.max_position_embeddings).max(1);
        let ctx = &*self.ctx;
        let ffn_dim = cfg.encoder_ffn_dim.max(cfg.decoder_ffn_dim);
        let tv = cfg.target_vocab_size();

        // Encoder inputs and working buffers (this batch only).
        let mut ids = Vec::with_capacity(b * s);
        for seq in batch {
            ids.extend((0..s).map(|i| seq.get(i).copied().unwrap_or(cfg.pad_token_id)));
        }
        let lens: Vec<u32> = batch.iter().map(|x| x.len().max(1) as u32).collect();
        let identity: Vec<u32> = (0..rows.max(b) as u32).collect();
        let enc_ids = upload_u32(ctx, "source ids", &ids)?;
        let src_lens = upload_u32(ctx, "source lengths", &lens)?;
        let identity = upload_u32(ctx, "identity", &identity)?;
        let n = b * s;
        let ex = scratch(ctx, "encoder x", n * d)?;
        let eq = scratch(ctx, "encoder q", n * d)?;
        let ek = scratch(ctx, "encoder k", n * d)?;
        let ev = scratch(ctx, "encoder v", n * d)?;
        let ec = scratch(ctx, "encoder context", n * d)?;
        let eh = scratch(ctx, "encoder h", n * d)?;
        let ef = scratch(ctx, "encoder ffn", n * cfg.encoder_ffn_dim)?;
        let mut cross_k = Vec::new();
        let mut cross_v = Vec::new();
        for _ in &self.decoder {
            cross_k.push(scratch(ctx, "cross keys", n * d)?);
            cross_v.push(scratch(ctx, "cross values", n * d)?);
        }
        let mut program = Program::new(
            &ctx.device,
            2 + 9 * self.encoder.len() + 2 * self.decoder.len(),
        );
        let mut rec = Recorder::new(&ctx.device, &mut program);
        self.embed(&mut rec, &self.encoder_embed, &enc_ids, n, s, 0, &ex);
        let batch = EncoderBatch {
            positions: n,
            src_len: s,
            src_lens: &src_lens,
            identity: &identity,
            q: eq,
            k: ek,
            v: ev,
            context: ec,
            h: eh,
            ffn: ef,
        };
        for layer in &self.encoder {
            self.record_encoder_layer(&mut rec, layer, &ex, &batch);
        }
        for (i, layer) in self.decoder.iter().enumerate() {
            let a = &layer.encoder_attn;
            self.dense(&mut rec, &a.k_proj, &ex, n, &cross_k[i], 0, 1.0);
            self.dense(&mut rec, &a.v_proj, &ex, n, &cross_v[i], 0, 1.0);
        }
        self.submit(rec, &[]);

        let mut self_k = Vec::new();
        let mut self_v = Vec::new();
        for _ in &self.decoder {
            self_k.push(scratch(ctx, "self-attention keys", rows * capacity * d)?);
            self_v.push(scratch(ctx, "self-attention values", rows * capacity * d)?);
        }
        let row_block_host: Vec<u32> = (0..b as u32)
            .flat_map(|i| std::iter::repeat_n(i, num_beams))
            .collect();
        let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("read-back"),
            size: (rows * MAX_K * 8) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let state = GpuState {
            rows,
            length: 0,
            capacity,
            src_len: s,
            x: scratch(ctx, "decoder x", rows * d)?,
            q: scratch(ctx, "decoder q", rows * d)?,
            ctx_buf: scratch(ctx, "decoder context", rows * d)?,
            h: scratch(ctx, "decoder h", rows * d)?,
            ffn: scratch(ctx, "decoder ffn", rows * ffn_dim)?,
            logits: scratch(ctx, "logits", rows * tv)?,
            tokens: scratch(ctx, "tokens", rows)?,
            self_k,
            self_v,
            cross_k,
            cross_v,
            src_lens,
            identity,
            row_block: upload_u32(ctx, "row blocks", &row_block_host)?,
            row_block_host,
            reorder_index: scratch(ctx, "reorder index", rows)?,
            reorder_tmp: scratch(ctx, "reorder scratch", rows * capacity * d)?,
            banned: scratch(ctx, "banned tokens", 1)?,
            banned_host: Vec::new(),
            best: scratch(ctx, "best tokens", rows * MAX_K * 2)?,
            staging,
            step_program: RefCell::new(Program::new(&ctx.device, self.steps_slots())),
            reorder_program: Program::new(&ctx.device, 4 * self.decoder.len() + 2),
        };
        ctx.check()?;
        Ok(state)
    }

    async fn step(
        &self,
        st: &mut GpuState,
        tokens: &[u32],
        select: &Select<'_>,
    ) -> Result<Vec<Vec<(u32, f32)>>> {
        self.ctx.tick();
        self.ctx.check()?;
        let cfg = &self.config;
        let r = tokens.len();
        if r != st.rows {
            return Err(Error::Input(format!(
                "step with {r} tokens for {} rows",
                st.rows
            )));
        }
        let t = st.length;
        if t >= st.capacity {
            return Err(Error::Input(format!(
                "decoding past the {} positions this batch was started for",
                st.capacity
            )));
        }
        let tv = cfg.target_vocab_size();
        let k = select.k.min(tv);
        if select.k > MAX_K {
            return Err(Error::Input(format!(
                "at most {MAX_K} candidates per row on the GPU"
            )));
        }
        if select.banned != st.banned_host.as_slice() {
            st.banned = self.banned_buffer(select.banned)?;
            st.banned_host = select.banned.to_vec();
        }
        self.ctx
            .queue
            .write_buffer(&st.tokens, 0, bytemuck::cast_slice(tokens));
        let bytes = (r * k * 8) as u64;
        // Forced EOS: the step only has to fill the cache; nothing to choose.
        let choose = select.forced.is_none();
        {
            let mut program = st.step_program.borrow_mut();
            let mut rec = Recorder::new(&self.ctx.device, &mut program);
            self.record_decoder_step(&mut rec, st, r, t, None);
            if choose {
                self.record_head(&mut rec, st, r, k, select);
                self.submit(rec, &[BufferCopy::whole(&st.best, &st.staging, bytes)]);
            } else {
                self.submit(rec, &[]);
            }
        }
        st.length += 1;
        if !choose {
            self.ctx.check()?;
            return Ok(tokens.iter().map(|_| top_k_of_row(&[], select)).collect());
        }
        let data = self.read_back(&st.staging, bytes).await?;
        let words: &[u32] = bytemuck::cast_slice(&data);
        Ok(words
            .chunks_exact(2 * k)
            .map(|row| {
                row.chunks_exact(2)
                    .filter(|c| (c[0] as usize) < tv)
                    .map(|c| {
                        let s = f32::from_bits(c[1]);
                        (c[0], if s <= -1e38 { f32::NEG_INFINITY } else { s })
                    })
                    .collect()
            })
            .collect())
    }

    async fn reorder_cache(&self, st: &mut GpuState, rows: &[u32]) -> Result<()> {
        self.ctx.check()?;
        if rows.iter().any(|&r| r as usize >= st.rows) {
            return Err(Error::Input(format!(
                "row index out of range ({} rows)",
                st.rows
            )));
        }
        let moved = rows.iter().enumerate().any(|(i, &r)| r as usize != i);
        if moved && st.length > 0 {
            let d = self.config.d_model;
            let stride = st.capacity * d;
            self.ctx
                .queue
                .write_buffer(&st.reorder_index, 0, bytemuck::cast_slice(rows));
            let words = st.length * d;
            let there = Quad {
                a: rows.len() as u32,
                b: words as u32,
                c: stride as u32,
                d: 0,
            };
            let groups = [words.div_ceil(256) as u32, rows.len() as u32, 1];
            let kernel = &self.ctx.kernels.gather_rows;
            let mut rec = Recorder::new(&self.ctx.device, &mut st.reorder_program);
            for cache in st.self_k.iter().chain(st.self_v.iter()) {
                rec.dispatch(
                    kernel,
                    bytes_of(&there),
                    &[(1, &st.reorder_index), (2, cache), (5, &st.reorder_tmp)],
                    groups,
                );
                rec.dispatch(
                    kernel,
                    bytes_of(&there),
                    &[(1, &st.identity), (2, &st.reorder_tmp), (5, cache)],
                    groups,
                );
            }
            self.submit(rec, &[]);
        }
        st.row_block_host = rows
            .iter()
            .map(|&r| st.row_block_host[r as usize])
            .collect();
        self.ctx
            .queue
            .write_buffer(&st.row_block, 0, bytemuck::cast_slice(&st.row_block_host));
        st.rows = rows.len();
        self.ctx.check()
    }
}

type MapResult = std::result::Result<(), wgpu::BufferAsyncError>;

struct Shared {
    value: Option<MapResult>,
    waker: Option<std::task::Waker>,
}

struct Sender(Arc<Mutex<Shared>>);
struct Receiver(Arc<Mutex<Shared>>);

/// A one-value channel from wgpu's map callback to the awaiting step (no executor needed).
fn oneshot() -> (Sender, Receiver) {
    let s = Arc::new(Mutex::new(Shared {
        value: None,
        waker: None,
    }));
    (Sender(s.clone()), Receiver(s))
}

impl Sender {
    fn send(self, v: MapResult) {
        let mut s = self.0.lock().unwrap();
        s.value = Some(v);
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }
}

impl Receiver {
    /// The value, if it has been sent.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    fn try_take(&self) -> Option<MapResult> {
        self.0.lock().unwrap().value.take()
    }
}

impl std::future::Future for Receiver {
    type Output = MapResult;
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<MapResult> {
        let mut s = self.0.lock().unwrap();
        match s.value.take() {
            Some(v) => std::task::Poll::Ready(v),
            None => {
                s.waker = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
        }
    }
}
