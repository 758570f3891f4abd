//! The browser's fine-tuning: `Translator.fineTune`, or in parts `fineTuneJob` (pairs checked,
//! split and tokenized: a `FineTuneJob`), `fineTuneFeatures` / `fineTuneFeaturesGpu` on any
//! worker per shard of `job.shardInputs(n)`, and `fineTuneRun` (training, held-out scores, the
//! keep measure, the adapter put on) — `finetune::run` as the CLI calls it.

use super::{js_err, Translator};
use crate::finetune::HeldOutScores;
use crate::generate::GenerateOptions;
use js_sys::{Function, Reflect, Uint8Array};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FineTuneJsOptions {
    #[serde(flatten)]
    overrides: crate::finetune::FineTuneOverrides,
    val_fraction: Option<f64>,
    beams: Option<usize>,
}

#[derive(Serialize)]
struct IssueJs {
    index: usize,
    reason: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FineTuneResult {
    report: crate::finetune::FineTuneReport,
    issues: Vec<IssueJs>,
    val_before: Option<HeldOutScores>,
    val_after: Option<HeldOutScores>,
    unrelated_changed: crate::finetune::keep::KeepMeasure,
}

#[wasm_bindgen]
impl Translator {
    /// Fine-tune the decoder head on `pairs` (an array of `{source, target}`); options
    /// `{epochs, minSteps, lr, batchPositions, labelSmoothing, klWeight, weightDecay, rank,
    /// lastLayerRank, learnBelow, minTaught, minTaughtShare, termPValue, sourceTriggers,
    /// trainBias, klLearnWeight, topK, learnAfterTerm, valFraction, beams}` (the fields of `FineTuneOverrides`, camelCase).
    /// `onProgress({phase, epoch, epochs, step, steps, loss, etaSeconds})` is called as it runs.
    /// Bad pairs are skipped and reported by index (1-based). The adapter is put on at once;
    /// returns `{adapter: Uint8Array, report, issues, valBefore, valAfter, unrelatedChanged}`
    /// (`unrelatedChanged`: `{sentences, changed}`, the pairs the adapter does not touch and how
    /// many of them translate differently with it).
    /// The same as `fineTuneJob` then `fineTuneRun` without shards (all on this thread).
    #[wasm_bindgen(js_name = fineTune)]
    pub fn fine_tune(
        &mut self,
        pairs: JsValue,
        options: JsValue,
        on_progress: Option<Function>,
    ) -> Result<JsValue, JsError> {
        let job = self.fine_tune_job(pairs, options)?;
        self.fine_tune_run(&job, None, on_progress)
    }

    /// The first part of a fine-tuning run: pairs checked (bad ones listed), split into
    /// training and validation, tokenized. Its features pass can be shared among workers:
    /// `job.shardInputs(n)` → `fineTuneFeatures` on each (any worker holding this model) →
    /// `fineTuneRun(job, shards)` here.
    #[wasm_bindgen(js_name = fineTuneJob)]
    pub fn fine_tune_job(&self, pairs: JsValue, options: JsValue) -> Result<FineTuneJob, JsError> {
        use crate::finetune::pairs::{pairs_from_objects, split_validation};
        use crate::finetune::FineTuneOptions;
        let raw: Vec<serde_json::Value> = serde_wasm_bindgen::from_value(pairs)
            .map_err(|e| js_err(format!("pairs must be an array of {{source, target}}: {e}")))?;
        let set = pairs_from_objects(raw);
        let issues = set.issues;
        let o: FineTuneJsOptions = if options.is_undefined() || options.is_null() {
            FineTuneJsOptions::default()
        } else {
            serde_wasm_bindgen::from_value(options)
                .map_err(|e| js_err(format!("invalid options: {e}")))?
        };
        let opts = FineTuneOptions::with_overrides(&o.overrides);
        if set.pairs.is_empty() {
            return Err(js_err("no usable pairs"));
        }
        let (train, val) = split_validation(set.pairs, o.val_fraction.unwrap_or(0.1));
        let job = crate::finetune::prepare(&self.inner, &train, &val, &opts).map_err(js_err)?;
        Ok(FineTuneJob {
            inner: job,
            train,
            val,
            issues,
            opts,
            beams: o.beams,
            plan: Default::default(),
        })
    }

    /// The features pass over one shard of a job's pairs (a `job.shardInputs` entry), on this
    /// worker: returns the shard's bytes for `fineTuneRun` on the job's worker.
    /// `onProgress({phase: "features", step, steps, ...})` after every batch.
    #[wasm_bindgen(js_name = fineTuneFeatures)]
    pub fn fine_tune_features(
        &mut self,
        inputs: Vec<u32>,
        top_k: usize,
        on_progress: Option<Function>,
    ) -> Result<Vec<u8>, JsError> {
        let pairs = crate::finetune::decode_shard_inputs(&inputs).map_err(js_err)?;
        let mut on_pair = features_progress(&on_progress, pairs.len());
        if self.frozen.is_none() {
            self.frozen = Some(self.inner.model.dequantized().map_err(js_err)?);
        }
        let frozen = self.frozen.as_ref().expect("dequantized above");
        let shard = crate::finetune::FeatureShard::compute_with(
            &self.inner,
            frozen,
            &pairs,
            top_k,
            &mut on_pair,
        )
        .map_err(js_err)?
        .ok_or_else(|| js_err("fine-tuning cancelled"))?;
        shard.to_bytes().map_err(js_err)
    }

    /// `fineTuneFeatures` on this translator's device: on its GPU (WebGPU) the frozen model's
    /// teacher-forced pass and the full-vocabulary summaries run as compute shaders. When the
    /// translator is not on a GPU, or the device is lost during the pass, the pass runs on the
    /// CPU instead (the shard says which ran it: `report.feature_device` after `fineTuneRun`).
    #[wasm_bindgen(js_name = fineTuneFeaturesGpu)]
    pub async fn fine_tune_features_gpu(
        &self,
        inputs: Vec<u32>,
        top_k: usize,
        on_progress: Option<Function>,
    ) -> Result<Vec<u8>, JsError> {
        use crate::finetune::FeatureShard;
        let pairs = crate::finetune::decode_shard_inputs(&inputs).map_err(js_err)?;
        let mut on_pair = features_progress(&on_progress, pairs.len());
        let shard = FeatureShard::compute_on_device(&self.inner, &pairs, top_k, &mut on_pair)
            .await
            .map_err(js_err)?
            .ok_or_else(|| js_err("fine-tuning cancelled"))?;
        shard.to_bytes().map_err(js_err)
    }

    /// The rest of a fine-tuning run: the features pass on this thread unless `shards` (the
    /// bytes `fineTuneFeatures` returned for `job.shardInputs(n)`, in order) are given, then
    /// training; validation scores before and after; the adapter put on. Returns
    /// `{adapter: Uint8Array, report, issues, valBefore, valAfter, unrelatedChanged}`.
    #[wasm_bindgen(js_name = fineTuneRun)]
    pub fn fine_tune_run(
        &mut self,
        job: &FineTuneJob,
        shards: Option<js_sys::Array>,
        on_progress: Option<Function>,
    ) -> Result<JsValue, JsError> {
        use crate::finetune::{FeatureShard, Progress};
        let gen = GenerateOptions {
            num_beams: job.beams,
            ..Default::default()
        };
        self.frozen = None;
        let mut progress = |p: &Progress| notify(&on_progress, p);
        let whole = job.inner.whole();
        let plan = match (&shards, job.plan.borrow().clone()) {
            (Some(_), Some(plan)) => plan,
            (Some(_), None) => {
                return Err(js_err("shards given but job.shardInputs was not called"))
            }
            (None, _) => whole.clone(),
        };
        let shards: Vec<FeatureShard> = match shards {
            Some(list) => list
                .iter()
                .map(|b| FeatureShard::from_bytes(&Uint8Array::new(&b).to_vec()))
                .collect::<crate::Result<_>>()
                .map_err(js_err)?,
            None => {
                let n = job.inner.len();
                let t0 = web_time::Instant::now();
                let mut on_pair = |done: usize| {
                    progress(&Progress::features(
                        done,
                        n,
                        job.opts.epochs,
                        t0.elapsed().as_secs_f64(),
                    ))
                };
                let shard = FeatureShard::compute(
                    &self.inner,
                    &job.inner.pairs_of(&whole[0]),
                    job.opts.top_k,
                    &mut on_pair,
                )
                .map_err(js_err)?
                .ok_or_else(|| js_err("fine-tuning cancelled"))?;
                vec![shard]
            }
        };
        let opts = &job.opts;
        let crate::finetune::FineTuneRun {
            adapter,
            report,
            val_before,
            val_after,
            unrelated_changed,
        } = crate::finetune::run(&mut self.inner, &job.train, &job.val, &gen, |t| {
            crate::finetune::train_adapter(t, &job.inner, &plan, shards, opts, &mut progress)
        })
        .map_err(js_err)?;
        let bytes = adapter.to_bytes().map_err(js_err)?;
        let out = FineTuneResult {
            report,
            issues: job
                .issues
                .iter()
                .map(|i| IssueJs {
                    index: i.line,
                    reason: i.reason.clone(),
                })
                .collect(),
            val_before,
            val_after,
            unrelated_changed,
        };
        let value = out
            .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
            .map_err(js_err)?;
        Reflect::set(
            &value,
            &"adapter".into(),
            &Uint8Array::from(&bytes[..]).into(),
        )
        .map_err(|_| js_err("cannot build the result"))?;
        Ok(value)
    }
}

/// A fine-tuning run between `Translator.fineTuneJob` and `Translator.fineTuneRun`.
#[wasm_bindgen]
pub struct FineTuneJob {
    inner: crate::finetune::FineTuneJob,
    train: Vec<crate::finetune::pairs::Pair>,
    val: Vec<crate::finetune::pairs::Pair>,
    issues: Vec<crate::finetune::pairs::PairIssue>,
    opts: crate::finetune::FineTuneOptions,
    beams: Option<usize>,
    /// The shard plan `shardInputs` handed out (what `fineTuneRun`'s shards follow).
    plan: std::cell::RefCell<Option<Vec<Vec<usize>>>>,
}

#[wasm_bindgen]
impl FineTuneJob {
    /// Usable pairs (training and validation).
    #[wasm_bindgen(getter)]
    pub fn pairs(&self) -> usize {
        self.inner.len()
    }

    /// The top-k the shards must be computed with.
    #[wasm_bindgen(getter, js_name = topK)]
    pub fn top_k(&self) -> usize {
        self.opts.top_k
    }

    /// The token ids of at most `n` shards of about equal work, in order, each a Uint32Array
    /// for `fineTuneFeatures`: [pairs, then per pair: source length, source ids, target
    /// length, target ids]. `fineTuneRun` takes their results in this order.
    #[wasm_bindgen(js_name = shardInputs)]
    pub fn shard_inputs(&self, n: usize) -> js_sys::Array {
        let plan = self.inner.shard_plan(n);
        let out = plan
            .iter()
            .map(|which| {
                let flat = self.inner.shard_inputs(which);
                JsValue::from(js_sys::Uint32Array::from(&flat[..]))
            })
            .collect();
        *self.plan.borrow_mut() = Some(plan);
        out
    }
}

/// Progress of a features pass over `total` pairs, reported to `cb` (a shard's worker does not
/// know the run's epochs: 0).
fn features_progress(
    cb: &Option<Function>,
    total: usize,
) -> impl FnMut(usize) -> crate::finetune::Control + '_ {
    let t0 = web_time::Instant::now();
    move |done| {
        let p = crate::finetune::Progress::features(done, total, 0, t0.elapsed().as_secs_f64());
        notify(cb, &p)
    }
}

/// Hand a progress report to the page's callback (always goes on: the page cancels by
/// terminating the worker).
fn notify(cb: &Option<Function>, p: &crate::finetune::Progress) -> crate::finetune::Control {
    if let Some(cb) = cb {
        if let Ok(v) = p.serialize(&serde_wasm_bindgen::Serializer::json_compatible()) {
            let _ = cb.call1(&JsValue::NULL, &v);
        }
    }
    crate::finetune::Control::Continue
}
