//! The frozen model's view of the training pairs, one entry per target position: the decoder's
//! hidden state (the head's input) and a summary of the full-vocabulary logits (top-k, maximum,
//! normaliser, sum) — all that training needs from the 59514-wide softmax.
//!
//! This pass is nearly all of a run's cost, and it splits by pairs: a `FeatureShard` holds the
//! positions of a range of pairs, computed on one worker (in the browser, several Web Workers
//! each run a range; their shards travel as bytes and are joined in pair order).

use super::Control;
use crate::error::{Error, Result};
use crate::generate::best_k;
use crate::model::Marian;
use crate::tensor_file::{self, Array};
use crate::translator::Translator;
use candle_core::{DType, Device, Tensor};
use web_time::Instant;

/// What the frozen model says at every target position of a set of pairs, in pair order.
pub(super) struct Positions {
    /// [N, D] decoder hidden states (the output projection's input).
    pub(super) hidden: Tensor,
    /// [N, D] the last decoder layer's FFN input (what a last-layer adapter trains on).
    pub(super) ffn_input: Tensor,
    /// Target token per position.
    pub(super) labels: Vec<u32>,
    /// The base model's top-k tokens per position (k a row).
    pub(super) top: Vec<u32>,
    /// The base model's probability of the target token per position.
    pub(super) p_target: Vec<f32>,
    /// The base model's logit of the target token per position.
    pub(super) y_logit: Vec<f32>,
    /// The previous target token of the same pair (None at its first position).
    pub(super) prev: Vec<Option<u32>>,
    /// Over the whole vocabulary, per position: the largest logit, Σ exp(logit − largest) and
    /// Σ logit — enough to get the normaliser of the logits outside any set S exactly later,
    /// from S's logits alone, without a second pass over the vocabulary.
    pub(super) max: Vec<f32>,
    pub(super) exp_sum: Vec<f64>,
    pub(super) logit_sum: Vec<f64>,
}

/// One vocabulary row's summary: its top-k ids (best first) into `top`, and max,
/// Σ exp(z − max), Σ z.
fn row_summary(row: &[f32], top: &mut [u32]) -> (f32, f64, f64) {
    let best = best_k(row, top.len());
    let max = best.first().map_or(f32::NEG_INFINITY, |b| b.1);
    for (slot, b) in top.iter_mut().zip(&best) {
        *slot = b.0;
    }
    // Eight f32 lanes per block (so the compiler vectorises), blocks summed in f64.
    let (mut exp_sum, mut sum) = (0f64, 0f64);
    for block in row.chunks(1024) {
        let (mut e, mut s) = ([0f32; 8], [0f32; 8]);
        let lanes = block.chunks_exact(8);
        let tail = lanes.remainder();
        for c in lanes {
            for l in 0..8 {
                e[l] += exp_nonpositive(c[l] - max);
                s[l] += c[l];
            }
        }
        for &z in tail {
            e[0] += exp_nonpositive(z - max);
            s[0] += z;
        }
        exp_sum += e.iter().map(|&x| x as f64).sum::<f64>();
        sum += s.iter().map(|&x| x as f64).sum::<f64>();
    }
    (max, exp_sum, sum)
}

/// e^x for x ≤ 0 to f32 precision (relative error ≈ 2e-7), written out so that the row sums
/// above vectorise (libm's expf is a call per element): 2^n · e^r with n = round(x / ln 2),
/// r split off in two parts (Cody–Waite) and a degree-6 Taylor polynomial on |r| ≤ ln2 / 2.
/// Below −87 it returns e^−87 ≈ 1.6e−38 (< 2^−126 relative to the row's maximum: nothing).
#[inline(always)]
pub(super) fn exp_nonpositive(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.max(-87.0);
    let n = (x * LOG2_E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r / 720.0)))));
    f32::from_bits(((n as i32 + 127) << 23) as u32) * p
}

/// Where the features pass spends its time (reported, for the benchmark).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct FeatureClock {
    pub(super) model: f64,
    pub(super) vocabulary: f64,
}

/// A batch of the features pass holds at most this many padded positions (source for the
/// encoder, target for the decoder): large enough for efficient matrix products, small enough
/// that a run cuts into several chunks per worker.
pub(super) const TOKENS_PER_BATCH: usize = 512;
/// Rows per full-vocabulary logits block (a block is rows × vocabulary f32s).
const LOGIT_ROWS: usize = 256;

/// Pairs (by index) in batches for one model pass: sorted by `len` (stable, so equal lengths
/// keep their order), each batch at most `tokens` padded positions and `rows` pairs (one pair
/// at least).
pub(super) fn length_batches(
    n: usize,
    tokens: usize,
    rows: usize,
    len: impl Fn(usize) -> usize,
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| len(i));
    let mut batches = Vec::new();
    let mut rest = order.as_slice();
    while !rest.is_empty() {
        // Sorted ascending: a batch's longest is its last.
        let mut take = 1;
        while take < rest.len().min(rows) && (take + 1) * len(rest[take]).max(1) <= tokens {
            take += 1;
        }
        batches.push(rest[..take].to_vec());
        rest = &rest[take..];
    }
    batches
}

/// The outputs of a features pass, each written at its position's place in pair order (pairs
/// as given, a pair's positions in step order) whatever order the batches run in.
struct PositionsBuilder {
    d: usize,
    top_k: usize,
    /// Place of each pair's first position.
    offsets: Vec<usize>,
    hidden: Vec<f32>,
    ffn_input: Vec<f32>,
    labels: Vec<u32>,
    prev: Vec<Option<u32>>,
    top: Vec<u32>,
    max: Vec<f32>,
    y_logit: Vec<f32>,
    exp_sum: Vec<f64>,
    logit_sum: Vec<f64>,
}

impl PositionsBuilder {
    fn new(pairs: &[(Vec<u32>, Vec<u32>)], top_k: usize, d: usize) -> Self {
        let mut offsets = Vec::with_capacity(pairs.len());
        let mut n = 0;
        for p in pairs {
            offsets.push(n);
            n += p.1.len();
        }
        PositionsBuilder {
            d,
            top_k,
            offsets,
            hidden: vec![0f32; n * d],
            ffn_input: vec![0f32; n * d],
            labels: pairs.iter().flat_map(|p| p.1.iter().copied()).collect(),
            prev: pairs
                .iter()
                .flat_map(|p| (0..p.1.len()).map(|s| s.checked_sub(1).map(|s| p.1[s])))
                .collect(),
            top: vec![0u32; n * top_k],
            max: vec![0f32; n],
            y_logit: vec![0f32; n],
            exp_sum: vec![0f64; n],
            logit_sum: vec![0f64; n],
        }
    }

    /// The place of position `step` of pair `pair`.
    fn place(&self, pair: usize, step: usize) -> usize {
        self.offsets[pair] + step
    }

    fn hidden_mut(&mut self, at: usize) -> &mut [f32] {
        &mut self.hidden[at * self.d..(at + 1) * self.d]
    }

    fn ffn_input_mut(&mut self, at: usize) -> &mut [f32] {
        &mut self.ffn_input[at * self.d..(at + 1) * self.d]
    }

    fn top_mut(&mut self, at: usize) -> &mut [u32] {
        &mut self.top[at * self.top_k..(at + 1) * self.top_k]
    }

    fn finish(self) -> Result<Positions> {
        let n = self.labels.len();
        let p_target = self
            .y_logit
            .iter()
            .zip(&self.max)
            .zip(&self.exp_sum)
            .map(|((&y, &m), &e)| (((y - m) as f64).exp() / e) as f32)
            .collect();
        Ok(Positions {
            hidden: Tensor::from_vec(self.hidden, (n, self.d), &Device::Cpu)?,
            ffn_input: Tensor::from_vec(self.ffn_input, (n, self.d), &Device::Cpu)?,
            labels: self.labels,
            top: self.top,
            p_target,
            y_logit: self.y_logit,
            prev: self.prev,
            max: self.max,
            exp_sum: self.exp_sum,
            logit_sum: self.logit_sum,
        })
    }
}

/// Teacher-forced decoder inputs of a pair: the start token, then its target but the last.
fn decoder_inputs(start: u32, target: &[u32]) -> Vec<u32> {
    std::iter::once(start)
        .chain(target[..target.len().saturating_sub(1)].iter().copied())
        .collect()
}

impl Positions {
    /// Run the frozen model over pairs with teacher forcing, one causal-masked decoder pass per
    /// batch of targets, and the full-vocabulary logits once per position (None when cancelled).
    pub(super) fn of_pairs(
        t: &Translator,
        model: &Marian,
        pairs: &[(Vec<u32>, Vec<u32>)],
        top_k: usize,
        clock: &mut FeatureClock,
        on_pair: &mut dyn FnMut(usize) -> Control,
    ) -> Result<Option<Positions>> {
        let start = t.generation.decoder_start_token_id;
        let d_model = model.config.d_model;
        let mut out = PositionsBuilder::new(pairs, top_k, d_model);
        // The encoder over the pairs sorted by source length and the decoder over them sorted by
        // target length: batches of similar lengths waste little on padding.
        let t_model = Instant::now();
        let mut encoded: Vec<Option<Tensor>> = vec![None; pairs.len()];
        for batch in length_batches(pairs.len(), TOKENS_PER_BATCH, usize::MAX, |i| {
            pairs[i].0.len()
        }) {
            let src: Vec<Vec<u32>> = batch.iter().map(|&i| pairs[i].0.clone()).collect();
            let (enc, _) = model.encode(&src)?;
            for (r, &i) in batch.iter().enumerate() {
                encoded[i] = Some(enc.get(r)?.narrow(0, 0, pairs[i].0.len())?);
            }
        }
        clock.model += t_model.elapsed().as_secs_f64();
        let mut done = 0;
        for batch in length_batches(pairs.len(), TOKENS_PER_BATCH, usize::MAX, |i| {
            pairs[i].1.len()
        }) {
            let t_model = Instant::now();
            // This batch's encoder outputs, right-padded to its longest source, and their mask.
            let longest = batch.iter().map(|&i| pairs[i].0.len()).max().unwrap_or(1);
            let mut rows = Vec::with_capacity(batch.len());
            let mut mask = Vec::with_capacity(batch.len() * longest);
            for &i in &batch {
                let e = encoded[i].take().expect("every pair is encoded once");
                let len = e.dim(0)?;
                rows.push(if len < longest {
                    let pad = Tensor::zeros((longest - len, d_model), DType::F32, &Device::Cpu)?;
                    Tensor::cat(&[e, pad], 0)?
                } else {
                    e
                });
                mask.extend((0..longest).map(|j| if j < len { 0f32 } else { f32::NEG_INFINITY }));
            }
            let enc = Tensor::stack(&rows, 0)?;
            let mask = Tensor::from_vec(mask, (batch.len(), 1, 1, longest), &Device::Cpu)?;
            let inputs: Vec<Vec<u32>> = batch
                .iter()
                .map(|&i| decoder_inputs(start, &pairs[i].1))
                .collect();
            let (h, ffn_input) = model.decode_teacher_forced(&enc, &mask, &inputs)?;
            clock.model += t_model.elapsed().as_secs_f64();
            let t_vocab = Instant::now();
            let (b, steps, d) = h.dims3()?;
            // The live rows (steps within their pair's target) and their places.
            let mut live = Vec::new();
            let mut places = Vec::new();
            for (r, &i) in batch.iter().enumerate() {
                for step in 0..pairs[i].1.len() {
                    live.push((r * steps + step) as u32);
                    places.push(out.place(i, step));
                }
            }
            let live = Tensor::new(live.as_slice(), &Device::Cpu)?;
            let h = h.reshape((b * steps, d))?.index_select(&live, 0)?;
            let ffn_input = ffn_input.reshape((b * steps, d))?.index_select(&live, 0)?;
            let (h_rows, x_rows) = (
                h.flatten_all()?.to_vec1::<f32>()?,
                ffn_input.flatten_all()?.to_vec1::<f32>()?,
            );
            for (j, &at) in places.iter().enumerate() {
                out.hidden_mut(at)
                    .copy_from_slice(&h_rows[j * d..(j + 1) * d]);
                out.ffn_input_mut(at)
                    .copy_from_slice(&x_rows[j * d..(j + 1) * d]);
            }
            for from in (0..places.len()).step_by(LOGIT_ROWS) {
                let rows = LOGIT_ROWS.min(places.len() - from);
                let logits = model.base_logits(&h.narrow(0, from, rows)?)?;
                let v = logits.dim(1)?;
                let flat = logits.flatten_all()?.to_vec1::<f32>()?;
                for (row, &at) in flat.chunks_exact(v).zip(&places[from..]) {
                    let (m, e, s) = row_summary(row, out.top_mut(at));
                    out.max[at] = m;
                    out.exp_sum[at] = e;
                    out.logit_sum[at] = s;
                    out.y_logit[at] = row[out.labels[at] as usize];
                }
            }
            clock.vocabulary += t_vocab.elapsed().as_secs_f64();
            done += batch.len();
            if on_pair(done) == Control::Cancel {
                return Ok(None);
            }
        }
        out.finish().map(Some)
    }

    /// `of_pairs` on the GPU: the same teacher-forced positions and summaries, computed by
    /// `GpuMarian::teacher_forced` (the vocabulary work happens inside it: all time counts as
    /// the model's).
    pub(super) async fn of_pairs_on_gpu(
        t: &Translator,
        gpu: &crate::gpu::GpuMarian,
        pairs: &[(Vec<u32>, Vec<u32>)],
        top_k: usize,
        clock: &mut FeatureClock,
        on_pair: &mut dyn FnMut(usize) -> Control,
    ) -> Result<Option<Positions>> {
        let start = t.generation.decoder_start_token_id;
        let d = gpu.config.d_model;
        let mut out = PositionsBuilder::new(pairs, top_k, d);
        let mut done = 0;
        let rows = gpu.teacher_forced_rows();
        for batch in length_batches(pairs.len(), usize::MAX, rows, |i| pairs[i].1.len()) {
            let t_model = Instant::now();
            let sources: Vec<Vec<u32>> = batch.iter().map(|&i| pairs[i].0.clone()).collect();
            let inputs: Vec<Vec<u32>> = batch
                .iter()
                .map(|&i| decoder_inputs(start, &pairs[i].1))
                .collect();
            let labels: Vec<Vec<u32>> = batch.iter().map(|&i| pairs[i].1.clone()).collect();
            let tf = gpu
                .teacher_forced(&sources, &inputs, &labels, top_k)
                .await?;
            for (r, &i) in batch.iter().enumerate() {
                for step in 0..pairs[i].1.len() {
                    let at = out.place(i, step);
                    let j = step * tf.rows + r;
                    out.hidden_mut(at)
                        .copy_from_slice(&tf.hidden[j * d..(j + 1) * d]);
                    out.ffn_input_mut(at)
                        .copy_from_slice(&tf.ffn_input[j * d..(j + 1) * d]);
                    out.top_mut(at)
                        .copy_from_slice(&tf.top[j * top_k..(j + 1) * top_k]);
                    let [m, e, s, y] = tf.summary[j];
                    out.max[at] = m;
                    out.exp_sum[at] = e as f64;
                    out.logit_sum[at] = s as f64;
                    out.y_logit[at] = y;
                }
            }
            clock.model += t_model.elapsed().as_secs_f64();
            done += batch.len();
            if on_pair(done) == Control::Cancel {
                return Ok(None);
            }
        }
        out.finish().map(Some)
    }

    pub(super) fn len(&self) -> usize {
        self.labels.len()
    }

    /// Join the positions of consecutive ranges of pairs, in order.
    pub(super) fn concat(parts: Vec<Positions>) -> Result<Positions> {
        let hidden: Vec<Tensor> = parts.iter().map(|p| p.hidden.clone()).collect();
        let ffn_input: Vec<Tensor> = parts.iter().map(|p| p.ffn_input.clone()).collect();
        let mut out = Positions {
            hidden: Tensor::cat(&hidden, 0)?,
            ffn_input: Tensor::cat(&ffn_input, 0)?,
            labels: Vec::new(),
            top: Vec::new(),
            p_target: Vec::new(),
            y_logit: Vec::new(),
            prev: Vec::new(),
            max: Vec::new(),
            exp_sum: Vec::new(),
            logit_sum: Vec::new(),
        };
        for p in parts {
            out.labels.extend(p.labels);
            out.top.extend(p.top);
            out.p_target.extend(p.p_target);
            out.y_logit.extend(p.y_logit);
            out.prev.extend(p.prev);
            out.max.extend(p.max);
            out.exp_sum.extend(p.exp_sum);
            out.logit_sum.extend(p.logit_sum);
        }
        Ok(out)
    }

    /// The positions at `rows`, in that order.
    pub(super) fn gather(&self, rows: &[u32]) -> Result<Positions> {
        let k = self.top.len().checked_div(self.len()).unwrap_or(0);
        let pick = |v: &[f32]| rows.iter().map(|&r| v[r as usize]).collect::<Vec<_>>();
        let pick64 = |v: &[f64]| rows.iter().map(|&r| v[r as usize]).collect::<Vec<_>>();
        let index = Tensor::new(rows, &Device::Cpu)?;
        Ok(Positions {
            hidden: self.hidden.index_select(&index, 0)?,
            ffn_input: self.ffn_input.index_select(&index, 0)?,
            labels: rows.iter().map(|&r| self.labels[r as usize]).collect(),
            top: rows
                .iter()
                .flat_map(|&r| {
                    self.top[r as usize * k..(r as usize + 1) * k]
                        .iter()
                        .copied()
                })
                .collect(),
            p_target: pick(&self.p_target),
            y_logit: pick(&self.y_logit),
            prev: rows.iter().map(|&r| self.prev[r as usize]).collect(),
            max: pick(&self.max),
            exp_sum: pick64(&self.exp_sum),
            logit_sum: pick64(&self.logit_sum),
        })
    }

    /// The first `at` positions and the rest.
    pub(super) fn split_at(self, at: usize) -> Result<(Positions, Positions)> {
        let n = self.len();
        let k = self.top.len().checked_div(n).unwrap_or(0);
        let part = |from: usize, to: usize| -> Result<Positions> {
            Ok(Positions {
                hidden: self.hidden.narrow(0, from, to - from)?,
                ffn_input: self.ffn_input.narrow(0, from, to - from)?,
                labels: self.labels[from..to].to_vec(),
                top: self.top[from * k..to * k].to_vec(),
                p_target: self.p_target[from..to].to_vec(),
                y_logit: self.y_logit[from..to].to_vec(),
                prev: self.prev[from..to].to_vec(),
                max: self.max[from..to].to_vec(),
                exp_sum: self.exp_sum[from..to].to_vec(),
                logit_sum: self.logit_sum[from..to].to_vec(),
            })
        };
        Ok((part(0, at)?, part(at, n)?))
    }
}

/// The positions of a range of a fine-tuning run's pairs, as one worker computed them, with what
/// is needed to check that they belong to the run they are handed to.
pub struct FeatureShard {
    pub(super) positions: Positions,
    /// How many pairs (consecutive, in the run's order) it covers.
    pub(super) pairs: usize,
    pub(super) top_k: usize,
    /// sha256 of the weights of the model that computed it.
    pub(super) model_sha256: String,
    pub(super) clock: FeatureClock,
    /// Computed by the GPU backend (reported: where the pass ran).
    pub(super) on_gpu: bool,
}

/// The safetensors metadata key of a shard's header.
const SHARD_KEY: &str = "marian_wasm_feature_shard";
const SHARD_FORMAT_VERSION: u32 = 2;
/// `prev` of a pair's first position (no previous target token).
const NO_PREV: u32 = u32::MAX;

#[derive(serde::Serialize, serde::Deserialize)]
struct ShardHeader {
    format_version: u32,
    pairs: usize,
    top_k: usize,
    d_model: usize,
    model_sha256: String,
    model_seconds: f64,
    vocabulary_seconds: f64,
    #[serde(default)]
    on_gpu: bool,
}

/// Every position keeps exactly `top_k` candidates.
fn check_top_k(t: &Translator, top_k: usize) -> Result<()> {
    let vocab = t.model.target_vocab_size();
    if top_k == 0 || top_k > vocab {
        return Err(Error::Input(format!(
            "top-k {top_k} must be between 1 and the target vocabulary ({vocab})"
        )));
    }
    Ok(())
}

impl FeatureShard {
    /// Run the frozen model over `pairs` (source and target token ids): None when `on_pair`
    /// (called with the pairs done after every batch) cancels. The model is dequantized to f32 for
    /// the pass (candle's f32 GEMM is about 3× its quantized kernels over many rows; measured
    /// in BENCHMARKS.md) and the dequantized copy dropped after it.
    pub fn compute(
        t: &Translator,
        pairs: &[(Vec<u32>, Vec<u32>)],
        top_k: usize,
        on_pair: &mut dyn FnMut(usize) -> Control,
    ) -> Result<Option<FeatureShard>> {
        let t_dequantize = Instant::now();
        let frozen = t.model.dequantized()?;
        let dequantizing = t_dequantize.elapsed().as_secs_f64();
        let mut shard = Self::compute_with(t, &frozen, pairs, top_k, on_pair)?;
        if let Some(s) = &mut shard {
            s.clock.model += dequantizing;
        }
        Ok(shard)
    }

    /// `compute` with the dequantized model at hand (`Marian::dequantized` of the translator's model):
    /// a worker that runs several shards dequantizes once.
    pub fn compute_with(
        t: &Translator,
        frozen: &Marian,
        pairs: &[(Vec<u32>, Vec<u32>)],
        top_k: usize,
        on_pair: &mut dyn FnMut(usize) -> Control,
    ) -> Result<Option<FeatureShard>> {
        check_top_k(t, top_k)?;
        let mut clock = FeatureClock::default();
        let positions = Positions::of_pairs(t, frozen, pairs, top_k, &mut clock, on_pair)?;
        Ok(positions.map(|p| Self::of(t, p, pairs.len(), top_k, clock, false)))
    }

    fn of(
        t: &Translator,
        positions: Positions,
        pairs: usize,
        top_k: usize,
        clock: FeatureClock,
        on_gpu: bool,
    ) -> FeatureShard {
        FeatureShard {
            positions,
            pairs,
            top_k,
            model_sha256: t.model_sha256.clone(),
            clock,
            on_gpu,
        }
    }

    /// `compute` on the translator's GPU (its frozen base model, weights as stored; the
    /// adapter is not applied). Fails when the translator has no GPU; a device lost mid-way
    /// fails with `Error::DeviceLost`, and the caller may compute on the CPU instead.
    pub async fn compute_on_gpu(
        t: &Translator,
        pairs: &[(Vec<u32>, Vec<u32>)],
        top_k: usize,
        on_pair: &mut dyn FnMut(usize) -> Control,
    ) -> Result<Option<FeatureShard>> {
        check_top_k(t, top_k)?;
        let gpu = t
            .gpu
            .as_ref()
            .ok_or_else(|| Error::Input("this translator has no GPU".into()))?;
        let mut clock = FeatureClock::default();
        let positions =
            Positions::of_pairs_on_gpu(t, gpu, pairs, top_k, &mut clock, on_pair).await?;
        Ok(positions.map(|p| Self::of(t, p, pairs.len(), top_k, clock, true)))
    }

    /// `compute` on the translator's device: on its GPU when it is on one, and on the CPU when
    /// not or when the device is lost during the pass (as translation falls back). Natively
    /// this future never suspends (`generate::ready` runs it).
    pub async fn compute_on_device(
        t: &Translator,
        pairs: &[(Vec<u32>, Vec<u32>)],
        top_k: usize,
        on_pair: &mut dyn FnMut(usize) -> Control,
    ) -> Result<Option<FeatureShard>> {
        if t.device() == crate::translator::Device::Gpu {
            match Self::compute_on_gpu(t, pairs, top_k, on_pair).await {
                Err(Error::DeviceLost(_)) => {}
                other => return other,
            }
        }
        Self::compute(t, pairs, top_k, on_pair)
    }

    /// Whether the GPU backend computed it.
    pub fn on_gpu(&self) -> bool {
        self.on_gpu
    }

    /// Pairs covered.
    pub fn pairs(&self) -> usize {
        self.pairs
    }

    /// Target positions covered.
    pub fn positions(&self) -> usize {
        self.positions.len()
    }

    /// The shard as a safetensors file (≈ 4 KB per position for d_model 512), to hand to the
    /// worker that trains.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let p = &self.positions;
        let (n, d) = p.hidden.dims2()?;
        let hidden = p.hidden.flatten_all()?.to_vec1::<f32>()?;
        let ffn_input = p.ffn_input.flatten_all()?.to_vec1::<f32>()?;
        let prev: Vec<u32> = p.prev.iter().map(|x| x.unwrap_or(NO_PREV)).collect();
        let header = ShardHeader {
            format_version: SHARD_FORMAT_VERSION,
            pairs: self.pairs,
            top_k: self.top_k,
            d_model: d,
            model_sha256: self.model_sha256.clone(),
            model_seconds: self.clock.model,
            vocabulary_seconds: self.clock.vocabulary,
            on_gpu: self.on_gpu,
        };
        tensor_file::write(
            "feature shard",
            &[
                Array::f32("hidden", vec![n, d], &hidden),
                Array::f32("ffn_input", vec![n, d], &ffn_input),
                Array::u32("labels", vec![n], &p.labels),
                Array::u32("top", vec![n, self.top_k], &p.top),
                Array::f32("p_target", vec![n], &p.p_target),
                Array::f32("y_logit", vec![n], &p.y_logit),
                Array::u32("prev", vec![n], &prev),
                Array::f32("max", vec![n], &p.max),
                Array::f64("exp_sum", vec![n], &p.exp_sum),
                Array::f64("logit_sum", vec![n], &p.logit_sum),
            ],
            SHARD_KEY,
            serde_json::to_string(&header).expect("shard header serializes"),
        )
    }

    /// Read a shard; every shape and count is checked (it crossed a worker boundary).
    pub fn from_bytes(bytes: &[u8]) -> Result<FeatureShard> {
        let (file, json) = tensor_file::Reader::open("feature shard", bytes, SHARD_KEY)?;
        let h: ShardHeader =
            serde_json::from_str(&json).map_err(|e| file.corrupt(format!("bad header ({e})")))?;
        if h.format_version != SHARD_FORMAT_VERSION {
            return Err(file.corrupt(format!(
                "format version {} (this build reads {SHARD_FORMAT_VERSION})",
                h.format_version
            )));
        }
        let n = file.shape("labels")?.first().copied().unwrap_or(0);
        let (d, k) = (h.d_model, h.top_k);
        let positions = Positions {
            hidden: Tensor::from_vec(file.f32s("hidden", &[n, d])?, (n, d), &Device::Cpu)?,
            ffn_input: Tensor::from_vec(file.f32s("ffn_input", &[n, d])?, (n, d), &Device::Cpu)?,
            labels: file.u32s("labels", &[n])?,
            top: file.u32s("top", &[n, k])?,
            p_target: file.f32s("p_target", &[n])?,
            y_logit: file.f32s("y_logit", &[n])?,
            prev: file
                .u32s("prev", &[n])?
                .into_iter()
                .map(|x| (x != NO_PREV).then_some(x))
                .collect(),
            max: file.f32s("max", &[n])?,
            exp_sum: file.f64s("exp_sum", &[n])?,
            logit_sum: file.f64s("logit_sum", &[n])?,
        };
        Ok(FeatureShard {
            positions,
            pairs: h.pairs,
            top_k: k,
            model_sha256: h.model_sha256,
            clock: FeatureClock {
                model: h.model_seconds,
                vocabulary: h.vocabulary_seconds,
            },
            on_gpu: h.on_gpu,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_nonpositive_matches_std() {
        let mut worst = 0f64;
        for i in 0..=200_000 {
            let x = -(i as f32) * 87.0 / 200_000.0;
            let want = (x as f64).exp();
            let got = exp_nonpositive(x) as f64;
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert!(exp_nonpositive(-1000.0) < 1e-37);
    }

    #[test]
    fn row_summary_is_exact_enough() {
        let row: Vec<f32> = (0..5000)
            .map(|i| ((i * 7919) % 1000) as f32 / 37.0 - 9.0)
            .collect();
        let mut top = [0u32; 3];
        let (max, exp_sum, sum) = row_summary(&row, &mut top);
        let m = row.iter().copied().fold(f32::MIN, f32::max);
        assert_eq!(max, m);
        let want: f64 = row.iter().map(|&z| ((z - m) as f64).exp()).sum();
        assert!(((exp_sum - want) / want).abs() < 1e-6);
        let want_sum: f64 = row.iter().map(|&z| z as f64).sum();
        assert!((sum - want_sum).abs() < 1e-3);
        // Top-3 by value, lower id first on ties.
        let mut ids: Vec<u32> = (0..row.len() as u32).collect();
        ids.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]).then(a.cmp(&b)));
        assert_eq!(top, ids[..3]);
    }
}
