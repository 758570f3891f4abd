//! Teacher forcing on the GPU, for fine-tuning's features pass: the frozen model decodes a
//! batch of given target prefixes with the same recorded step as generation, and keeps at
//! every position the hidden state, the last layer's FFN input and a summary of the
//! full-vocabulary logits (row_summary + top_k kernels), read back once per batch rather than
//! once per step.

use super::submit::BufferCopy;
use super::{GpuMarian, MAX_K};
use crate::error::{Error, Result};
use crate::generate::Backend;
use crate::gpu::ops::{row_summary, top_k};
use crate::gpu::recorder::Recorder;
use crate::gpu::weights::{scratch, upload_u32};

/// The frozen model at every (step, row) of a teacher-forced batch.
pub struct TeacherForced {
    pub steps: usize,
    pub rows: usize,
    /// [steps, rows, d_model]: hidden states after the last layer norm (the head's input).
    pub hidden: Vec<f32>,
    /// [steps, rows, d_model]: the last decoder layer's FFN input.
    pub ffn_input: Vec<f32>,
    /// [steps, rows]: the largest logit, Σ exp(z − max), Σ z, and the label's logit.
    pub summary: Vec<[f32; 4]>,
    /// [steps, rows, k]: the k best token ids, best first (the lower id on ties).
    pub top: Vec<u32>,
}

/// Rows of a teacher-forced batch at most (larger batches gain little on a GPU).
const MAX_TEACHER_ROWS: usize = 256;

impl GpuMarian {
    /// How many pairs one `teacher_forced` call may take: its logits (rows × vocabulary f32)
    /// must fit one storage binding.
    pub fn teacher_forced_rows(&self) -> usize {
        let row_bytes = (self.config.target_vocab_size() * 4) as u64;
        let fit = self.ctx.limits.max_storage_buffer_binding_size / row_bytes;
        (fit as usize).clamp(1, MAX_TEACHER_ROWS)
    }

    /// Decode `inputs[r]` (decoder inputs: the start token and the target but its last token)
    /// over `sources[r]` with teacher forcing; `labels[r]` (the target) names the logit to
    /// report per position. Steps past a row's end are computed and their values meaningless.
    /// The fine-tuning adapter, if any, is not applied: this is the frozen base model.
    pub async fn teacher_forced(
        &self,
        sources: &[Vec<u32>],
        inputs: &[Vec<u32>],
        labels: &[Vec<u32>],
        top_k: usize,
    ) -> Result<TeacherForced> {
        let cfg = &self.config;
        let (d, tv, rows) = (cfg.d_model, cfg.target_vocab_size(), sources.len());
        if inputs.len() != rows || labels.len() != rows {
            return Err(Error::Input(format!(
                "teacher forcing with {rows} sources, {} inputs and {} label rows",
                inputs.len(),
                labels.len()
            )));
        }
        if top_k == 0 || top_k > MAX_K.min(tv) {
            return Err(Error::Input(format!(
                "top-k {top_k} on the GPU must be between 1 and {}",
                MAX_K.min(tv)
            )));
        }
        if rows > self.teacher_forced_rows() {
            return Err(Error::Input(format!(
                "{rows} rows in one teacher-forced batch; this GPU takes {}",
                self.teacher_forced_rows()
            )));
        }
        if labels.iter().flatten().any(|&y| y as usize >= tv) {
            return Err(Error::Input("a label is outside the vocabulary".into()));
        }
        let steps = inputs.iter().map(Vec::len).max().unwrap_or(0);
        if rows == 0 || steps == 0 {
            return Ok(TeacherForced {
                steps: 0,
                rows,
                hidden: Vec::new(),
                ffn_input: Vec::new(),
                summary: Vec::new(),
                top: Vec::new(),
            });
        }
        let mut st = self.start(sources, 1, steps).await?;
        let ctx = &*self.ctx;
        let positions = steps * rows;
        let step_labels: Vec<u32> = (0..steps)
            .flat_map(|t| labels.iter().map(move |y| y.get(t).copied().unwrap_or(0)))
            .collect();
        let labels_buf = upload_u32(ctx, "labels", &step_labels)?;
        let hidden = scratch(ctx, "teacher-forced hidden states", positions * d)?;
        let ffn_input = scratch(ctx, "teacher-forced FFN inputs", positions * d)?;
        let ffn_step = scratch(ctx, "a step's last FFN input", rows * d)?;
        let summary = scratch(ctx, "teacher-forced summaries", positions * 4)?;
        let top = scratch(ctx, "teacher-forced top-k", positions * top_k * 2)?;
        let (hidden_bytes, top_bytes) = ((rows * d * 4) as u64, (rows * top_k * 8) as u64);
        for t in 0..steps {
            ctx.tick();
            ctx.check()?;
            let tokens: Vec<u32> = inputs
                .iter()
                .map(|x| x.get(t).copied().unwrap_or(cfg.pad_token_id))
                .collect();
            ctx.queue
                .write_buffer(&st.tokens, 0, bytemuck::cast_slice(&tokens));
            let mut program = st.step_program.borrow_mut();
            let mut rec = Recorder::new(&ctx.device, &mut program);
            self.record_decoder_step(&mut rec, &st, rows, t, Some(&ffn_step));
            self.record_base_logits(&mut rec, &st, rows);
            ctx.kernels.row_summary.record(
                &mut rec,
                row_summary::Args {
                    logits: &st.logits,
                    rows,
                    vocab: tv,
                    labels: &labels_buf,
                    first_row: t * rows,
                    summary: &summary,
                },
            );
            // Raw logits (no log-softmax), nothing banned.
            ctx.kernels.top_k.record(
                &mut rec,
                top_k::Args {
                    logits: &st.logits,
                    rows,
                    vocab: tv,
                    k: top_k,
                    log_softmax: false,
                    banned: &st.banned,
                    num_banned: 0,
                    best: &st.best,
                },
            );
            self.submit(
                rec,
                &[
                    BufferCopy {
                        from: &st.x,
                        from_offset: 0,
                        to: &hidden,
                        to_offset: t as u64 * hidden_bytes,
                        bytes: hidden_bytes,
                    },
                    BufferCopy {
                        from: &ffn_step,
                        from_offset: 0,
                        to: &ffn_input,
                        to_offset: t as u64 * hidden_bytes,
                        bytes: hidden_bytes,
                    },
                    BufferCopy {
                        from: &st.best,
                        from_offset: 0,
                        to: &top,
                        to_offset: t as u64 * top_bytes,
                        bytes: top_bytes,
                    },
                ],
            );
            drop(program);
            st.length += 1;
        }
        // One read-back of all four.
        let sizes = [
            steps as u64 * hidden_bytes,
            steps as u64 * hidden_bytes,
            (positions * 16) as u64,
            steps as u64 * top_bytes,
        ];
        let total: u64 = sizes.iter().sum();
        ctx.check_buffer_size("teacher-forced read-back", total)?;
        let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("teacher-forced read-back"),
            size: total,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        let mut offset = 0;
        for (from, bytes) in [&hidden, &ffn_input, &summary, &top].into_iter().zip(sizes) {
            encoder.copy_buffer_to_buffer(from, 0, &staging, offset, bytes);
            offset += bytes;
        }
        ctx.queue.submit([encoder.finish()]);
        let data = self.read_back(&staging, total).await?;
        let (h, rest) = data.split_at(sizes[0] as usize);
        let (x, rest) = rest.split_at(sizes[1] as usize);
        let (s, tk) = rest.split_at(sizes[2] as usize);
        // The read-back bytes need not be aligned for f32 / u32: collect, do not cast in place.
        let words: Vec<u32> = bytemuck::pod_collect_to_vec(tk);
        Ok(TeacherForced {
            steps,
            rows,
            hidden: bytemuck::pod_collect_to_vec(h),
            ffn_input: bytemuck::pod_collect_to_vec(x),
            summary: bytemuck::pod_collect_to_vec::<u8, f32>(s)
                .chunks_exact(4)
                .map(|c| [c[0], c[1], c[2], c[3]])
                .collect(),
            top: words.chunks_exact(2).map(|c| c[0]).collect(),
        })
    }
}
