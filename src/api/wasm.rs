//! The browser API (wasm-bindgen): build a translator from a package's bytes, translate,
//! fine-tune (`fine_tune`). Glue over the core: every rule lives in the crate, this module
//! converts values and errors. It downloads nothing: www/store.js's `loadPackage` fetches,
//! verifies and caches a package's files (`loadTranslator` there: a URL to a `Translator`). The
//! JS side (www/worker.js) runs it inside a Web Worker so the page never blocks.

mod fine_tune;

pub use fine_tune::FineTuneJob;

use crate::generate::GenerateOptions;
use crate::package::{Manifest, Package, MANIFEST};
use js_sys::{Function, Object, Reflect, Uint8Array};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use wasm_bindgen::prelude::*;

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// `initThreadPool(n) -> Promise`: starts rayon's pool on `n` Web Workers sharing this module's memory
/// (wasm-bindgen-rayon). Only in the multi-threaded build (feature `threads`); call it once, from a
/// Worker, after `init()` and before the first translation.
#[cfg(feature = "threads")]
pub use wasm_bindgen_rayon::init_thread_pool;

/// The relaxed-SIMD proposal pass of greedy steps (`model::qgemm::relaxed_probe`): `mode`
/// `"on"` or `"off"` forces it (tests that must run it on any CPU; measuring what it gains),
/// `"auto"` measures (the default), `undefined` changes nothing. Set it before the first
/// translation. Returns what holds: `"on (0.45)"`/`"off (1.08)"` (the kernels' time ratio),
/// `"forced on"`, `"forced off"`, `"not measured yet"`, or in a build without relaxed SIMD
/// `"not in this build"`. Errors for any other mode.
#[wasm_bindgen(js_name = relaxedProposal)]
pub fn relaxed_proposal(mode: Option<String>) -> Result<String, JsError> {
    #[cfg(marian_relaxed_simd)]
    {
        use crate::model::qgemm::relaxed_probe;
        match mode.as_deref() {
            None => {}
            Some("auto") => relaxed_probe::force(None),
            Some("on") => relaxed_probe::force(Some(true)),
            Some("off") => relaxed_probe::force(Some(false)),
            Some(other) => {
                return Err(js_err(format!(
                    "relaxedProposal: unknown mode '{other}' (auto, on, off)"
                )))
            }
        }
        Ok(relaxed_probe::describe())
    }
    #[cfg(not(marian_relaxed_simd))]
    {
        match mode.as_deref() {
            None | Some("auto") | Some("on") | Some("off") => Ok("not in this build".into()),
            Some(other) => Err(js_err(format!(
                "relaxedProposal: unknown mode '{other}' (auto, on, off)"
            ))),
        }
    }
}

/// The threads this build computes on: rayon's pool size after `initThreadPool(n)` in the
/// multi-threaded build, 1 in the single-threaded one.
#[wasm_bindgen(js_name = computeThreads)]
pub fn compute_threads() -> usize {
    rayon::current_num_threads()
}

/// One candidate of `detectLanguage`, as Chrome's LanguageDetector gives it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DetectedJs {
    detected_language: &'static str,
    confidence: f64,
}

/// `detectLanguage(text, expected?) -> [{detectedLanguage, confidence}]`: the languages of `text`
/// best first (src/language.rs, the whatlang crate): a canonical BCP 47 tag (`"en"`, `"fr"`,
/// `"zh"`) with whatlang's confidence in 0..1, then `"und"` with the rest; `[{"und", 1}]` for text
/// it cannot judge (no letters, or no language ahead). `expected` (BCP 47 tags) restricts the
/// candidates to those languages (tags whatlang does not know are left out). Needs no model.
#[wasm_bindgen(js_name = detectLanguage)]
pub fn detect_language(text: &str, expected: Option<Vec<String>>) -> Result<JsValue, JsError> {
    let found = match expected {
        Some(tags) => {
            let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
            crate::language::detect_among(text, &tags)
        }
        None => crate::language::detect(text),
    };
    let out: Vec<DetectedJs> = found
        .into_iter()
        .map(|d| DetectedJs {
            detected_language: d.language,
            confidence: d.confidence,
        })
        .collect();
    let ser = serde_wasm_bindgen::Serializer::json_compatible();
    out.serialize(&ser).map_err(js_err)
}

/// `detectableLanguages() -> string[]`: the BCP 47 tags `detectLanguage` can answer (70).
#[wasm_bindgen(js_name = detectableLanguages)]
pub fn detectable_languages() -> Vec<String> {
    crate::language::supported_languages()
        .into_iter()
        .map(String::from)
        .collect()
}

fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Options {
    beams: Option<usize>,
    max_length: Option<usize>,
    length_penalty: Option<f32>,
    batch_size: Option<usize>,
    /// A multi-target model's output language (`GenerateOptions::target_language`).
    target_language: Option<String>,
}

#[derive(Serialize)]
struct WithIds {
    texts: Vec<String>,
    ids: Vec<Vec<u32>>,
    /// Per text, what passed through untranslated and why (`Translation::issues`).
    issues: Vec<Vec<String>>,
    /// The device that served (the CPU after a GPU failure).
    device: &'static str,
}

#[derive(Serialize)]
struct Streamed {
    text: String,
    tokens: usize,
    device: &'static str,
}

fn generate_options(o: Options) -> GenerateOptions {
    GenerateOptions {
        num_beams: o.beams,
        max_length: o.max_length,
        length_penalty: o.length_penalty,
        target_language: o.target_language,
    }
}

fn parse_options(v: JsValue) -> Result<Options, JsError> {
    if v.is_undefined() || v.is_null() {
        return Ok(Options::default());
    }
    serde_wasm_bindgen::from_value(v).map_err(|e| js_err(format!("invalid options: {e}")))
}

#[wasm_bindgen]
pub struct Translator {
    inner: crate::Translator,
    manifest: Manifest,
    /// The model dequantized to f32 while this worker runs fine-tuning feature shards (dropped
    /// when training starts; a helper worker is terminated after its shards).
    frozen: Option<crate::model::Marian>,
}

#[wasm_bindgen]
impl Translator {
    /// Build from bytes already at hand, on the CPU: `files` maps file names (manifest.json
    /// included) to `Uint8Array`s (`{'manifest.json': pkg.manifestBytes, ...pkg.files}` of
    /// www/store.js's `loadPackage`). Every file is checked against the manifest's sha256.
    #[wasm_bindgen(js_name = fromFiles)]
    pub fn from_files(files: Object) -> Result<Translator, JsError> {
        let (manifest, map) = files_map(files)?;
        Self::build(&manifest, map)
    }

    /// `fromFiles` on a device: "wasm" (the CPU), "webgpu" (fails when WebGPU cannot run the
    /// model) or "auto" (WebGPU when it can, else the CPU; `gpuUnavailable` says why not).
    #[wasm_bindgen(js_name = fromFilesOn)]
    pub async fn from_files_on(files: Object, device: String) -> Result<Translator, JsError> {
        let (manifest, map) = files_map(files)?;
        Self::build_on(&manifest, map, &device).await
    }

    /// The device the next translation runs on: "wasm" or "webgpu".
    #[wasm_bindgen(getter)]
    pub fn device(&self) -> String {
        device_name(self.inner.device()).into()
    }

    /// The threads the CPU path computes on (rayon's pool; 1 in the single-threaded build).
    #[wasm_bindgen(getter)]
    pub fn threads(&self) -> usize {
        rayon::current_num_threads()
    }

    /// Why "auto" serves from the CPU (no WebGPU adapter, limits too small, …), or undefined.
    #[wasm_bindgen(getter, js_name = gpuUnavailable)]
    pub fn gpu_unavailable(&self) -> Option<String> {
        self.inner.gpu_unavailable.clone()
    }

    /// A description of the GPU adapter in use, or undefined.
    #[wasm_bindgen(getter, js_name = gpuAdapter)]
    pub fn gpu_adapter(&self) -> Option<String> {
        self.inner.gpu.as_ref().map(|g| g.context().describe())
    }

    /// Destroy the GPU device as a driver reset would, now or at the `afterSteps`-th decoding
    /// step from now (mid-translation): for tests of the CPU fallback.
    #[wasm_bindgen(js_name = simulateGpuLoss)]
    pub fn simulate_gpu_loss(&self, after_steps: Option<usize>) {
        if let Some(g) = &self.inner.gpu {
            match after_steps {
                Some(n) if n > 0 => g.context().simulate_loss_after(n),
                _ => g.context().simulate_loss(),
            }
        }
    }
}

fn device_name(d: crate::translator::Device) -> &'static str {
    match d {
        crate::translator::Device::Cpu => "wasm",
        crate::translator::Device::Gpu => "webgpu",
    }
}

type Files = (Vec<u8>, BTreeMap<String, Vec<u8>>);

/// A JS object of file name -> Uint8Array, split into manifest bytes and the other files.
fn files_map(files: Object) -> Result<Files, JsError> {
    let mut map = BTreeMap::new();
    for key in Object::keys(&files).iter() {
        let name = key
            .as_string()
            .ok_or_else(|| js_err("file names must be strings"))?;
        let value: Uint8Array = Reflect::get(&files, &key)
            .map_err(|_| js_err("unreadable file"))?
            .dyn_into()
            .map_err(|_| js_err(format!("{name}: expected a Uint8Array")))?;
        map.insert(name, value.to_vec());
    }
    let manifest = map
        .remove(MANIFEST)
        .ok_or_else(|| js_err("manifest.json is missing"))?;
    Ok((manifest, map))
}

#[wasm_bindgen]
impl Translator {
    async fn build_on(
        manifest_bytes: &[u8],
        files: BTreeMap<String, Vec<u8>>,
        device: &str,
    ) -> Result<Translator, JsError> {
        let choice: crate::translator::DeviceChoice = device.parse().map_err(js_err)?;
        let pkg = Package::from_files(manifest_bytes, files).map_err(js_err)?;
        let inner = crate::Translator::with_device(&pkg, choice)
            .await
            .map_err(js_err)?;
        Ok(Translator {
            inner,
            manifest: pkg.manifest,
            frozen: None,
        })
    }

    fn build(
        manifest_bytes: &[u8],
        files: BTreeMap<String, Vec<u8>>,
    ) -> Result<Translator, JsError> {
        let pkg = Package::from_files(manifest_bytes, files).map_err(js_err)?;
        let inner = crate::Translator::new(&pkg).map_err(js_err)?;
        Ok(Translator {
            inner,
            manifest: pkg.manifest,
            frozen: None,
        })
    }

    async fn run(
        &self,
        texts: Vec<String>,
        options: JsValue,
    ) -> Result<Vec<crate::Translation>, JsError> {
        let o = parse_options(options)?;
        let batch_size = o.batch_size.unwrap_or(8);
        let opts = generate_options(o);
        let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
        self.inner
            .translate_async(&refs, &opts, batch_size)
            .await
            .map_err(js_err)
    }

    /// The fixed-length benchmark `marian-wasm bench` runs (greedy, exactly `tokens` target
    /// tokens per sentence, EOS banned, one warm-up batch untimed), on this translator's
    /// device. Returns `{tokens, seconds, tokensPerS, device, threads}`.
    pub async fn benchmark(
        &self,
        texts: Vec<String>,
        batch: usize,
        tokens: usize,
    ) -> Result<JsValue, JsError> {
        let ids = texts
            .iter()
            .map(|t| self.inner.tokenizer.encode(t))
            .collect::<crate::Result<Vec<_>>>()
            .map_err(js_err)?;
        let run = self
            .inner
            .bench_fixed_length(&ids, batch, tokens, 1)
            .await
            .map_err(js_err)?;
        let out = serde_json::json!({
            "tokens": run.tokens,
            "seconds": run.seconds,
            "tokensPerS": run.tokens as f64 / run.seconds,
            "device": device_name(run.device),
            "threads": rayon::current_num_threads(),
        });
        out.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
            .map_err(js_err)
    }

    /// Translate a batch of strings; options `{beams, maxLength, lengthPenalty, batchSize,
    /// targetLanguage}`.
    pub async fn translate(
        &self,
        texts: Vec<String>,
        options: JsValue,
    ) -> Result<Vec<String>, JsError> {
        Ok(self
            .run(texts, options)
            .await?
            .into_iter()
            .map(|t| t.text)
            .collect())
    }

    /// Like `translate`, also returning the generated ids (HF layout, decoder start first;
    /// the chunks of a long input concatenated).
    #[wasm_bindgen(js_name = translateWithIds)]
    pub async fn translate_with_ids(
        &self,
        texts: Vec<String>,
        options: JsValue,
    ) -> Result<JsValue, JsError> {
        let out = self.run(texts, options).await?;
        let result = WithIds {
            texts: out.iter().map(|t| t.text.clone()).collect(),
            ids: out.iter().map(|t| t.ids.concat()).collect(),
            issues: out.iter().map(|t| t.issues.clone()).collect(),
            device: device_name(out.last().map_or(self.inner.device(), |t| t.device)),
        };
        result
            .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
            .map_err(js_err)
    }

    /// Translate one text, calling `onPartial(textSoFar)` as the output grows (only what the
    /// final output is certain to start with). Returns `{ text, tokens }`.
    #[wasm_bindgen(js_name = translateStreaming)]
    pub async fn translate_streaming(
        &self,
        text: String,
        options: JsValue,
        on_partial: Function,
    ) -> Result<JsValue, JsError> {
        let opts = generate_options(parse_options(options)?);
        let mut notify = |partial: &str| {
            let _ = on_partial.call1(&JsValue::NULL, &partial.into());
        };
        let out = self
            .inner
            .translate_streaming_async(&text, &opts, &mut notify)
            .await
            .map_err(js_err)?;
        let result = Streamed {
            tokens: out.ids.iter().map(|c| c.len().saturating_sub(1)).sum(),
            device: device_name(out.device),
            text: out.text,
        };
        result
            .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
            .map_err(js_err)
    }

    /// Put an adapter (the bytes of its file) on, or take it off with `null`. Returns the
    /// adapter's manifest. An adapter made for another base model is refused.
    #[wasm_bindgen(js_name = setAdapter)]
    pub fn set_adapter(&mut self, bytes: Option<Vec<u8>>) -> Result<JsValue, JsError> {
        match bytes {
            None => {
                self.inner.set_adapter(None).map_err(js_err)?;
                Ok(JsValue::NULL)
            }
            Some(b) => {
                let a = crate::adapter::Adapter::from_bytes(&b).map_err(js_err)?;
                self.inner.set_adapter(Some(&a)).map_err(js_err)?;
                a.manifest
                    .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
                    .map_err(js_err)
            }
        }
    }

    /// sha256 of the model's weights (what adapters are tied to).
    #[wasm_bindgen(getter, js_name = modelSha256)]
    pub fn model_sha256(&self) -> String {
        self.inner.model_sha256.clone()
    }

    /// The package manifest (config, generation defaults, quantization, files).
    #[wasm_bindgen(getter)]
    pub fn manifest(&self) -> Result<JsValue, JsError> {
        self.manifest
            .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
            .map_err(js_err)
    }

    /// Source text -> ids, as MarianTokenizer.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, JsError> {
        self.inner.tokenizer.encode(text).map_err(js_err)
    }

    /// A multi-target model's output languages: the codes of its `>>xxx<<` tokens (`fra`, …),
    /// sorted; empty for a model with one target language.
    #[wasm_bindgen(getter, js_name = targetLanguages)]
    pub fn target_languages(&self) -> Vec<String> {
        self.inner
            .tokenizer
            .language_tokens()
            .iter()
            .map(|t| crate::tokenizer::language_code(t).to_string())
            .collect()
    }

    /// The output language of requests that name none (`Translator::target_language`: `fra`
    /// or `>>fra<<`; `undefined` clears it). Errors, changing nothing, for a code the model does
    /// not have (the message lists its codes) and for any code on a model without them.
    #[wasm_bindgen(js_name = setTargetLanguage)]
    pub fn set_target_language(&mut self, code: Option<String>) -> Result<(), JsError> {
        if code.is_some() {
            self.inner
                .language_prefix(code.as_deref(), &[])
                .map_err(js_err)?;
        }
        self.inner.target_language = code;
        Ok(())
    }
}
