//! `marian-wasm convert`: a Hugging Face Marian checkpoint folder into a model package.

use super::calibrate;
use super::fidelity::{self, Choice, Reference, Step, Target};
use super::quant::{encode_matrix, Quant, StoredTensor};
use super::spm::SpmModel;
use super::{
    sha256_hex, FileEntry, Manifest, Package, TokenizerFiles, FORMAT, FORMAT_VERSION, MANIFEST,
    WEIGHTS,
};
use crate::config::{GenerationConfig, MarianConfig};
use crate::error::{Error, Result};
use crate::model::layout::{self, Role, TensorSpec};
use crate::translator::Translator;
use candle_core::{Device, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// What precision each role gets under each package quantization. Embeddings (which are
/// also the tied output projection) never go below 8 bits: on tiny-opus, Q4_0 embeddings
/// took the min logit cosine from 0.99897 to 0.99619 and identical greedy outputs from 42 %
/// to 25 %, for 15 MB saved on the opus-mt-en-fr shape (see BENCHMARKS.md).
fn form_for(role: Role, quant: Quant) -> Quant {
    match (role, quant) {
        (Role::Vector, _) => Quant::F32,
        (Role::Embedding, Quant::Q4) => Quant::Q8,
        (_, q) => q,
    }
}

/// Whether part `part` (of `--keep-f16` or `--residual`) names the matrix `spec`: `embeddings`
/// every embedding and the output projection, any other part the matrices whose names contain
/// it.
fn names_matrix(spec: &TensorSpec, part: &str) -> bool {
    match (spec.role, part) {
        (Role::Vector, _) | (_, "") => false,
        (role, "embeddings") => role == Role::Embedding,
        _ => spec.name.contains(part),
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

fn read_text(path: &Path) -> Result<String> {
    String::from_utf8(read(path)?)
        .map_err(|_| Error::corrupt(path.display().to_string(), "not UTF-8 text"))
}

/// Load the checkpoint's state dict from model.safetensors or pytorch_model.bin.
fn load_state_dict(dir: &Path) -> Result<HashMap<String, Tensor>> {
    let st = dir.join("model.safetensors");
    if st.exists() {
        let bytes = read(&st)?;
        // Validate the header ourselves first so a lying header is a clear error, not a panic.
        let file = st.display().to_string();
        super::quant::WeightFile::parse(&file, &bytes)?;
        return candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| Error::corrupt(file, e.to_string()));
    }
    let bin = dir.join("pytorch_model.bin");
    if bin.exists() {
        let file = bin.display().to_string();
        let list = candle_core::pickle::read_all(&bin)
            .map_err(|e| Error::corrupt(file, format!("not a readable PyTorch checkpoint: {e}")))?;
        return Ok(list.into_iter().collect());
    }
    Err(Error::Input(format!(
        "{}: no model.safetensors or pytorch_model.bin (is this a Hugging Face Marian checkpoint folder?)",
        dir.display()
    )))
}

/// Check a vocab.json: a JSON object of piece -> id, ids inside the model's vocabulary.
/// Returns its bytes and its pieces.
fn check_vocab(path: &Path, size: usize) -> Result<(Vec<u8>, HashMap<String, u32>)> {
    let bytes = read(path)?;
    let file = path.display().to_string();
    let map: HashMap<String, u32> = serde_json::from_slice(&bytes)
        .map_err(|e| Error::corrupt(&file, format!("not a JSON object of piece -> id: {e}")))?;
    if let Some((p, id)) = map.iter().find(|(_, &id)| id as usize >= size) {
        return Err(Error::corrupt(
            &file,
            format!("piece '{p}' has id {id}, outside the model's vocabulary of {size}"),
        ));
    }
    Ok((bytes, map))
}

/// The codes of a source vocabulary's target-language tokens (`>>fra<<` → `fra`), sorted.
fn target_languages(vocab: &HashMap<String, u32>) -> Vec<String> {
    let mut codes: Vec<String> = vocab
        .keys()
        .filter(|p| crate::tokenizer::is_language_token(p))
        .map(|p| crate::tokenizer::language_code(p).to_string())
        .collect();
    codes.sort();
    codes
}

/// A package in memory: its manifest, the manifest's JSON bytes and every other file.
struct Assembled {
    manifest: Manifest,
    json: Vec<u8>,
    files: BTreeMap<String, Vec<u8>>,
}

pub struct Converted {
    pub manifest: Manifest,
    pub total_bytes: u64,
    /// What `fidelity` measured and chose (`None` when it was not asked for).
    pub fidelity: Option<Choice>,
}

/// How `convert` rounds weights to Q8_0 / Q4_0 blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    /// Each weight to the nearest level of its block's scale.
    Nearest,
    /// GPTQ against what each linear layer is fed on calibration text (`package::rounding`);
    /// embeddings round to nearest.
    Gptq,
}

/// What `convert_with` does beside the format.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    pub quant: Quant,
    pub rounding: Rounding,
    /// Source sentences to calibrate GPTQ on; `None`: text sampled from the model's source
    /// SentencePiece model (`calibrate::sampled_sentences`).
    pub calibration: Option<Vec<String>>,
    /// Matrices kept at f16 in a q8/q4 package: those whose package name contains any of
    /// these parts (`decoder.`, `fc2` …), and for the part `embeddings` every embedding and
    /// the output projection. Mixed precision for measuring which tensors a quantization's
    /// drift comes from, or for buying fidelity with size (an f16 output projection is
    /// multiplied through a q8 screen, `model::screened_head`, so it costs size, not speed);
    /// empty: none.
    pub keep_f16: Vec<String>,
    /// Matrices kept at q8 in a q4 package, named as in `keep_f16` (mixed precision: q4's
    /// drift comes mostly from the layers named `decoder.`). With any other quantization it is
    /// an error.
    pub keep_q8: Vec<String>,
    /// Q8 matrices that also store their rounding error rounded to 4 bits under the implied
    /// scale s / 16 (residual quantization, `package::quant`: 12-bit levels for 4 more bits of
    /// storage; such a matrix is rounded to nearest, not by GPTQ), named as in `keep_f16`. For
    /// `embeddings` (the tied output projection) the decoding steps multiply by the q8 part
    /// and add the residual only for the tokens that can be chosen (`model::screened_head`);
    /// any other matrix is multiplied as one of 12-bit levels at q8's speed
    /// (`PackedMatrix::from_q8_residual_folded`). Empty: none; a part naming a q4 matrix is
    /// not an error (q4 matrices take no residual).
    pub residual: Vec<String>,
    /// With a q8 or q4 package and none of `keep_f16`, `keep_q8`, `residual` given: choose
    /// them by measurement instead — the cheapest step of `fidelity::ladder` whose package
    /// meets this target against the f32 model on sampled sentences (`fidelity::choose`).
    /// `None` (the default of `new`): the package as named. The CLI's default is
    /// `fidelity::Target::default_for(quant)` (`--fidelity auto`).
    pub fidelity: Option<Target>,
}

impl ConvertOptions {
    /// `quant` with the defaults: GPTQ rounding on sampled text.
    pub fn new(quant: Quant) -> Self {
        ConvertOptions {
            quant,
            rounding: Rounding::Gptq,
            calibration: None,
            keep_f16: Vec::new(),
            keep_q8: Vec::new(),
            residual: Vec::new(),
            fidelity: None,
        }
    }
}

/// Whether `hf_dir` is a folder holding a config.json, before anything is said about converting
/// it. Errors (`Error::Input`): no such folder, or a folder without config.json; each names it.
pub fn check_checkpoint_folder(hf_dir: &Path) -> Result<()> {
    if !hf_dir.is_dir() {
        return Err(Error::Input(format!(
            "no checkpoint folder at {}: give the folder of a Hugging Face Marian checkpoint \
             (config.json, model.safetensors, source.spm, target.spm, vocab.json)",
            hf_dir.display()
        )));
    }
    if !hf_dir.join("config.json").is_file() {
        return Err(Error::Input(format!(
            "{} holds no config.json: not a Hugging Face checkpoint folder",
            hf_dir.display()
        )));
    }
    Ok(())
}

/// A Hugging Face Marian checkpoint folder into a package folder, with the default options.
pub fn convert(hf_dir: &Path, out_dir: &Path, quant: Quant) -> Result<Converted> {
    convert_with(hf_dir, out_dir, &ConvertOptions::new(quant))
}

/// A Hugging Face Marian checkpoint folder (config.json, model.safetensors or
/// pytorch_model.bin, source.spm, target.spm, vocab.json) into a package folder. Errors name
/// the file at fault: a missing or misshapen tensor, a vocabulary that disagrees with the
/// config, an unreadable SentencePiece model.
pub fn convert_with(hf_dir: &Path, out_dir: &Path, opts: &ConvertOptions) -> Result<Converted> {
    check_checkpoint_folder(hf_dir)?;
    let quant = opts.quant;
    let config_text = read_text(&hf_dir.join("config.json"))?;
    let cfg = MarianConfig::from_json(
        &config_text,
        &hf_dir.join("config.json").display().to_string(),
    )?;
    let gen_path = hf_dir.join("generation_config.json");
    let gen_text = if gen_path.exists() {
        Some(read_text(&gen_path)?)
    } else {
        None
    };
    let generation = GenerationConfig::from_hf(&config_text, gen_text.as_deref(), &cfg)?;

    // Tokenizer first: it is cheap and its errors are common.
    let mut outputs: Vec<(String, Vec<u8>)> = Vec::new();
    let src_path = hf_dir.join("source.spm");
    let tgt_path = hf_dir.join("target.spm");
    let src_spm = SpmModel::parse(&read(&src_path)?, &src_path.display().to_string())?;
    let tgt_spm = SpmModel::parse(&read(&tgt_path)?, &tgt_path.display().to_string())?;
    for (name, model, path) in [
        ("source.tokenizer.json", &src_spm, &src_path),
        ("target.tokenizer.json", &tgt_spm, &tgt_path),
    ] {
        let tok = model.to_tokenizer(&path.display().to_string())?;
        let json = tok
            .to_string(false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        outputs.push((name.to_string(), json.into_bytes()));
    }
    let (vocab_bytes, vocab) = check_vocab(&hf_dir.join("vocab.json"), cfg.vocab_size)?;
    // The tokenizer cannot load without them: refuse now rather than write a package that
    // fails at its first translation.
    for piece in ["</s>", "<unk>"] {
        if !vocab.contains_key(piece) {
            return Err(Error::corrupt(
                hf_dir.join("vocab.json").display().to_string(),
                format!("the vocabulary has no '{piece}' entry"),
            ));
        }
    }
    let target_languages = target_languages(&vocab);
    outputs.push(("vocab.json".into(), vocab_bytes));
    let target_vocab = hf_dir.join("target_vocab.json");
    let has_target_vocab = !cfg.share_encoder_decoder_embeddings && target_vocab.exists();
    if has_target_vocab {
        outputs.push((
            "target_vocab.json".into(),
            check_vocab(&target_vocab, cfg.target_vocab_size())?.0,
        ));
    }

    // Weights, each checked against the shape config.json implies.
    let state = load_state_dict(hf_dir)?;
    let weights_file = if hf_dir.join("model.safetensors").exists() {
        "model.safetensors"
    } else {
        "pytorch_model.bin"
    };
    let mut tensors: Vec<(TensorSpec, &Tensor)> = Vec::new();
    for spec in layout::tensors(&cfg) {
        let t = spec
            .hf_names
            .iter()
            .find_map(|n| state.get(n))
            .ok_or_else(|| {
                Error::corrupt(
                    weights_file,
                    format!("tensor '{}' is missing", spec.hf_names[0]),
                )
            })?;
        if t.dims() != spec.shape.as_slice() {
            return Err(Error::corrupt(
                weights_file,
                format!(
                    "tensor '{}' has shape {:?}, config.json implies {:?}",
                    spec.hf_names[0],
                    t.dims(),
                    spec.shape
                ),
            ));
        }
        tensors.push((spec, t));
    }
    if !opts.keep_q8.is_empty() && quant != Quant::Q4 {
        return Err(Error::Input(format!(
            "--keep-q8 keeps matrices of a q4 package at q8; this package is {quant}"
        )));
    }
    for (flag, parts) in [
        ("--keep-f16", &opts.keep_f16),
        ("--keep-q8", &opts.keep_q8),
        ("--residual", &opts.residual),
    ] {
        if let Some(part) = parts
            .iter()
            .find(|p| !tensors.iter().any(|(s, _)| names_matrix(s, p)))
        {
            return Err(Error::Input(format!(
                "{flag} '{part}' names no weight matrix of this model (matrices are named like {}, {} and {})",
                tensors[0].0.name,
                "encoder.layers.0.fc1.weight",
                "decoder.layers.0.self_attn.q_proj.weight"
            )));
        }
    }
    // GPTQ rounding needs what each layer is fed on calibration text.
    let calibrate = matches!(quant, Quant::Q8 | Quant::Q4) && opts.rounding == Rounding::Gptq;
    // `fidelity` measures candidates against the f32 model on sentences of their own: the
    // given text, or sampled sentences after the calibration ones (the same seeded stream).
    let named = !(opts.keep_f16.is_empty() && opts.keep_q8.is_empty() && opts.residual.is_empty());
    let target = opts
        .fidelity
        .filter(|_| matches!(quant, Quant::Q8 | Quant::Q4) && !named);
    let (sentences, measured) = match &opts.calibration {
        Some(text) => (
            if calibrate { text.clone() } else { Vec::new() },
            if target.is_some() {
                text.clone()
            } else {
                Vec::new()
            },
        ),
        None if calibrate || target.is_some() => {
            let extra = if target.is_some() {
                fidelity::SENTENCES
            } else {
                0
            };
            let mut all =
                calibrate::sampled_sentences(&src_spm, calibrate::DEFAULT_SENTENCES + extra)?;
            let measured = all.split_off(calibrate::DEFAULT_SENTENCES);
            (if calibrate { all } else { Vec::new() }, measured)
        }
        None => (Vec::new(), Vec::new()),
    };
    let rounding = match (quant, calibrate) {
        (Quant::F32 | Quant::F16, _) => String::new(),
        (_, false) => "; weights rounded to nearest".into(),
        (_, true) => format!(
            "; linear layers rounded by GPTQ on {} calibration sentences ({})",
            sentences.len(),
            if opts.calibration.is_some() {
                "given"
            } else {
                "sampled from source.spm"
            }
        ),
    };
    let source_name = hf_dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    // What the package's matrices got beside its quantization, for the provenance.
    let provenance = |step: &Step, choice: &str| {
        let named = |what: &str, parts: &[String]| {
            if parts.is_empty() || !matches!(quant, Quant::Q8 | Quant::Q4) {
                String::new()
            } else {
                format!("; matrices named like {} {what}", parts.join(", "))
            }
        };
        format!(
            "converted by marian-wasm {} from {source_name} ({weights_file}){rounding}{}{}{}{choice}",
            env!("CARGO_PKG_VERSION"),
            named("kept at f16", &opts.keep_f16),
            named("kept at q8", &step.keep_q8),
            named("with a Q4_0 residual", &step.residual),
        )
    };
    let package =
        |quant: Quant, stored: &[StoredTensor], provenance: String| -> Result<Assembled> {
            let views: Vec<(String, &StoredTensor)> =
                stored.iter().map(|s| (s.name.clone(), s)).collect();
            let weights = safetensors::serialize(views, None)
                .map_err(|e| Error::corrupt(WEIGHTS, e.to_string()))?;
            // The manifest lists the small files first and the weights last: a browser downloads
            // in this order, so an interrupted download keeps the small files it verified.
            let entries: Vec<FileEntry> = outputs
                .iter()
                .map(|(name, bytes)| (name.as_str(), bytes.as_slice()))
                .chain([(WEIGHTS, weights.as_slice())])
                .map(|(name, bytes)| FileEntry {
                    name: name.to_string(),
                    size: bytes.len() as u64,
                    sha256: sha256_hex(bytes),
                })
                .collect();
            let mut files: BTreeMap<String, Vec<u8>> = outputs.iter().cloned().collect();
            files.insert(WEIGHTS.into(), weights);
            let manifest = Manifest {
                format: FORMAT.into(),
                format_version: FORMAT_VERSION,
                quant,
                model: cfg.clone(),
                generation: generation.clone(),
                tokenizer: TokenizerFiles {
                    source: "source.tokenizer.json".into(),
                    target: "target.tokenizer.json".into(),
                    vocab: "vocab.json".into(),
                    target_vocab: has_target_vocab.then(|| "target_vocab.json".into()),
                    // MarianTokenizer decodes with the source model when the vocabulary is shared.
                    target_decode: if cfg.share_encoder_decoder_embeddings {
                        src_spm.decode_info()
                    } else {
                        tgt_spm.decode_info()
                    },
                },
                weights: WEIGHTS.into(),
                files: entries,
                provenance,
                target_languages: target_languages.clone(),
            };
            let json = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
            Ok(Assembled {
                manifest,
                json,
                files,
            })
        };

    // The f32 model: what GPTQ calibrates on and what `fidelity` measures against.
    let reference = if calibrate || target.is_some() {
        let f32_weights = tensors
            .iter()
            .map(|(spec, t)| StoredTensor::f32(&spec.name, t))
            .collect::<Result<Vec<_>>>()?;
        let f32_package = package(Quant::F32, &f32_weights, String::new())?;
        drop(f32_weights);
        Some(Translator::new(&Package::from_files(
            &f32_package.json,
            f32_package.files,
        )?)?)
    } else {
        None
    };
    let grams = match (&reference, calibrate) {
        (Some(f32_model), true) => calibrate::linear_input_grams(f32_model, &sentences)?,
        _ => HashMap::new(),
    };
    // The f32 model stays in memory only while `fidelity` measures against it.
    let reference = reference.filter(|_| target.is_some());

    // Each matrix's stored form, encoded once per (matrix, form, with a residual or not): the
    // ladder's steps share every matrix they store alike.
    let mut encoded: HashMap<(usize, Quant, bool), Vec<StoredTensor>> = HashMap::new();
    let mut quantize = |step: &Step| -> Result<Vec<StoredTensor>> {
        let mut stored: Vec<StoredTensor> = Vec::new();
        for (i, (spec, t)) in tensors.iter().enumerate() {
            let keep_f16 = opts.keep_f16.iter().any(|p| names_matrix(spec, p));
            let keep_q8 = step.keep_q8.iter().any(|p| names_matrix(spec, p));
            let form = match (keep_f16, keep_q8, quant) {
                (true, _, Quant::Q8 | Quant::Q4) => Quant::F16,
                (false, true, Quant::Q4) => form_for(spec.role, Quant::Q8),
                _ => form_for(spec.role, quant),
            };
            if form == Quant::F32 {
                stored.push(StoredTensor::f32(&spec.name, t)?);
                continue;
            }
            // A residual finishes a q8 matrix (q4 ones would need their own GPU kernels).
            let with_residual =
                form == Quant::Q8 && step.residual.iter().any(|p| names_matrix(spec, p));
            if let Some(done) = encoded.get(&(i, form, with_residual)) {
                stored.extend(done.iter().cloned());
                continue;
            }
            // Only linear layers have inputs to calibrate on: embeddings (also the tied
            // output projection) round to nearest.
            let layer = spec.name.strip_suffix(".weight").unwrap_or(&spec.name);
            let gram = (spec.role == Role::Matrix)
                .then(|| grams.get(layer))
                .flatten();
            let done = encode_matrix(&spec.name, t, form, gram, with_residual)?;
            if target.is_some() {
                stored.extend(done.iter().cloned());
                encoded.insert((i, form, with_residual), done);
            } else {
                stored.extend(done);
            }
        }
        Ok(stored)
    };

    let (step, choice) = match (reference, target) {
        (Some(f32_model), Some(target)) => {
            let reference = Reference::new(&f32_model, &measured)?;
            let choice = fidelity::choose(&reference, quant, target, |step| {
                let stored = quantize(step)?;
                let decode_step_bytes = fidelity::decode_step_bytes(&stored);
                let candidate = package(quant, &stored, String::new())?;
                Ok(fidelity::Candidate {
                    translator: Translator::new(&Package::from_files(
                        &candidate.json,
                        candidate.files,
                    )?)?,
                    decode_step_bytes,
                })
            })?;
            (choice.kept.clone(), Some(choice))
        }
        _ => (
            Step {
                keep_q8: opts.keep_q8.clone(),
                residual: opts.residual.clone(),
            },
            None,
        ),
    };
    let stored = quantize(&step)?;
    drop(encoded);
    let choice_note = choice
        .as_ref()
        .map(|c| format!("; chosen by measure: {}", c.reason))
        .unwrap_or_default();
    let Assembled {
        manifest,
        json,
        files,
    } = package(quant, &stored, provenance(&step, &choice_note))?;
    drop(stored);

    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    for (name, bytes) in &files {
        let p = out_dir.join(name);
        std::fs::write(&p, bytes).map_err(|e| Error::io(&p, e))?;
    }
    let mp = out_dir.join(MANIFEST);
    std::fs::write(&mp, &json).map_err(|e| Error::io(&mp, e))?;
    let total_bytes = manifest.files.iter().map(|f| f.size).sum::<u64>() + json.len() as u64;
    Ok(Converted {
        manifest,
        total_bytes,
        fidelity: choice,
    })
}

impl safetensors::View for &StoredTensor {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}
