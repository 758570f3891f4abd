//! A batch on the GPU: its buffers, made once in `start` and reused by every step, and the
//! generation contract (`Backend`): start (the encoder pass), step, reorder_cache.

use super::layers::EncoderBatch;
use super::submit::BufferCopy;
use super::{GpuMarian, MAX_K};
use crate::adapter::EntryConditions;
use crate::error::{Error, Result};
use crate::generate::{top_k_of_row, Backend, Select};
use crate::gpu::ops::{embed, gather_rows, linear};
use crate::gpu::recorder::{Program, Recorder};
use crate::gpu::weights::{scratch, upload_u32};
use std::cell::RefCell;

/// A batch's buffers, made in `start` and reused by every step. Shapes: r = rows (sentences ×
/// beams), c = `capacity` positions, s = `src_len`, d = d_model.
pub struct GpuState {
    pub(super) rows: usize,
    /// Positions decoded so far (filled in the self-attention caches).
    pub(super) length: usize,
    pub(super) capacity: usize,
    pub(super) src_len: usize,
    /// [r, d] the rows' hidden states.
    pub(super) x: wgpu::Buffer,
    pub(super) q: wgpu::Buffer,
    pub(super) ctx_buf: wgpu::Buffer,
    pub(super) h: wgpu::Buffer,
    /// [r, ffn_dim].
    pub(super) ffn: wgpu::Buffer,
    /// [r, target vocabulary].
    pub(super) logits: wgpu::Buffer,
    /// [r] this step's input tokens.
    pub(super) tokens: wgpu::Buffer,
    /// [r, 2] this step's input token and the head delta's trigger groups the row's source
    /// hits (what the head delta's conditions read).
    pub(super) row_state: wgpu::Buffer,
    /// [b] the head delta's trigger groups each sentence's source hits (bit masks; empty: it
    /// has no trigger groups, `EntryConditions::sentence_groups`).
    sentence_groups: Vec<u32>,
    /// Per decoder layer, [r, c, d]: the self-attention KV cache.
    pub(super) self_k: Vec<wgpu::Buffer>,
    pub(super) self_v: Vec<wgpu::Buffer>,
    /// Per decoder layer, [b, s, d]: the encoder output's keys and values.
    pub(super) cross_k: Vec<wgpu::Buffer>,
    pub(super) cross_v: Vec<wgpu::Buffer>,
    /// [b] each sentence's length.
    pub(super) src_lens: wgpu::Buffer,
    /// 0, 1, 2, …
    pub(super) identity: wgpu::Buffer,
    /// [r] the sentence of each row (its cross-attention block).
    pub(super) row_block: wgpu::Buffer,
    row_block_host: Vec<u32>,
    reorder_index: wgpu::Buffer,
    reorder_tmp: wgpu::Buffer,
    pub(super) banned: wgpu::Buffer,
    banned_host: Vec<u32>,
    /// [r, MAX_K] (id, score bits) pairs.
    pub(super) best: wgpu::Buffer,
    staging: wgpu::Buffer,
    /// A step's dispatches (in a cell: a step records from the state's buffers while its
    /// program is borrowed mutably).
    pub(super) step_program: RefCell<Program>,
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
        let sentence_groups = EntryConditions::sentence_groups(
            self.delta
                .lock()
                .unwrap()
                .as_ref()
                .and_then(|d| d.host.as_ref()),
            batch,
        );
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
        // The encoder pass: embed, the layers, then every decoder layer's cross-attention K/V.
        let mut program = Program::default();
        let mut rec = Recorder::new(&ctx.device, &mut program);
        self.kernels().embed.record(
            &mut rec,
            embed::Args {
                table: &self.encoder_embed,
                ids: &enc_ids,
                rows: n,
                positions: &self.positions,
                tokens_per_sequence: s,
                first_position: 0,
                d_model: d,
                scale: self.embed_scale,
                out: &ex,
            },
        );
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
            let linear = &self.kernels().linear;
            linear.record(
                &mut rec,
                linear::Args::dense(&a.k_proj, &ex, n, &cross_k[i]),
            );
            linear.record(
                &mut rec,
                linear::Args::dense(&a.v_proj, &ex, n, &cross_v[i]),
            );
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
            row_state: scratch(ctx, "row state", 2 * rows)?,
            sentence_groups,
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
            step_program: RefCell::new(Program::default()),
            reorder_program: Program::default(),
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
        if let Some(p) = &self.ctx.profiler {
            p.note_step();
        }
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
        if self.delta.lock().unwrap().is_some() {
            let row_state: Vec<u32> = tokens
                .iter()
                .zip(&st.row_block_host)
                .flat_map(|(&t, &b)| [t, st.sentence_groups.get(b as usize).copied().unwrap_or(0)])
                .collect();
            self.ctx
                .queue
                .write_buffer(&st.row_state, 0, bytemuck::cast_slice(&row_state));
        }
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
            self.ctx
                .queue
                .write_buffer(&st.reorder_index, 0, bytemuck::cast_slice(rows));
            let gather = &self.kernels().gather_rows;
            let mut rec = Recorder::new(&self.ctx.device, &mut st.reorder_program);
            // Each cache through the scratch buffer: rows gathered into it, then copied back.
            let (words, stride) = (st.length * d, st.capacity * d);
            for cache in st.self_k.iter().chain(st.self_v.iter()) {
                let gathered = gather_rows::Args {
                    index: &st.reorder_index,
                    src: cache,
                    dst: &st.reorder_tmp,
                    rows: rows.len(),
                    words,
                    stride,
                };
                gather.record(&mut rec, gathered);
                let back = gather_rows::Args {
                    index: &st.identity,
                    src: &st.reorder_tmp,
                    dst: cache,
                    rows: rows.len(),
                    words,
                    stride,
                };
                gather.record(&mut rec, back);
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
