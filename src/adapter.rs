//! Fine-tuning adapters: a small safetensors file holding a correction of the output
//! projection on the target tokens that fine-tuning touched, with its manifest (base model,
//! what was trained, hyper-parameters, metrics) in the safetensors header's metadata.
//!
//! Tensors: `ids` U32 [K] (sorted, distinct target token ids), `delta_u` F32 [K, r] (LoRA B),
//! `delta_v` F32 [r, D] (LoRA A), `delta_bias` F32 [K]. Applied as
//! `logits[ids] += (h · Aᵀ) · Bᵀ + delta_bias` (a rank-r correction). The stored names predate
//! the code's `lora_a` / `lora_b` and stay, so that every adapter file written so far loads.
//!
//! Optionally (format version 2) a low-rank adapter on the last decoder layer's fc2:
//! `last_fc2_a` F32 [r2, ffn], `last_fc2_b` F32 [D, r2]; the layer's fc2 weight becomes
//! `fc2 + last_fc2_b · last_fc2_a` (merged once when the adapter is put on).
//!
//! Optionally (format version 3) conditions on the entries (`EntryConditions`): `after` U32
//! [K] — entry j applies only at decoding steps whose previous token is `after[j]`; `group`
//! U32 [K] — and only in sentences whose source holds one of trigger group `group[j]`'s
//! tokens (`trigger_ids` U32 [T], group g being `trigger_ids[trigger_offsets[g]..
//! trigger_offsets[g + 1]]`, `trigger_offsets` U32 [G + 1]); `NOT_CONDITIONED` for no
//! condition. A token may then have several entries (sorted by (id, after, group), distinct),
//! whose values add up. Why: a term the target tokenizer splits into pieces is taught piece
//! by piece, each after its predecessor (raising "t" after "▁au" for "auto" does not raise "t"
//! everywhere), and a term is the translation of something in the source ("car"): where the
//! source has none of it, the base model's output stays exactly as it was.

use crate::error::{Error, Result};
use crate::model::HeadDelta;
use crate::tensor_file::{self, Array};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

pub const ADAPTER_FORMAT: &str = "marian-wasm-adapter";
/// Version 1: the head correction only; version 2 adds the last-layer adapter (written only
/// when an adapter has one, so head-only adapters stay readable by older builds).
/// Version 3 adds the entries' conditions (written only when an adapter has them).
pub const ADAPTER_FORMAT_VERSION: u32 = 3;
const HEAD_ONLY_FORMAT_VERSION: u32 = 1;
const LAST_LAYER_FORMAT_VERSION: u32 = 2;
/// The file's names of the head correction's LoRA A [r, D] and B [K, r] (older than the code's
/// names; kept so that files stay byte-identical and old ones load).
const STORED_LORA_A: &str = "delta_v";
const STORED_LORA_B: &str = "delta_u";
/// An `after` or `group` value that sets no condition.
pub const NOT_CONDITIONED: u32 = u32::MAX;
/// At most this many trigger groups (a sentence's hits are one u32 bit mask).
pub const MAX_TRIGGER_GROUPS: usize = 32;

/// Conditions on a head correction's entries (see the module's notes).
#[derive(Debug, Clone, PartialEq)]
pub struct EntryConditions {
    /// Per entry [K]: the previous token (the step's input) it applies after.
    pub after: Vec<u32>,
    /// Per entry [K]: the trigger group the sentence's source must hit.
    pub group: Vec<u32>,
    /// Trigger groups: source token ids; a source hits group g when it holds any of them.
    pub triggers: Vec<Vec<u32>>,
}

impl EntryConditions {
    /// The groups a source (its ids) hits, as a bit mask (bit g: group g).
    pub fn source_groups(&self, source: &[u32]) -> u32 {
        self.triggers
            .iter()
            .enumerate()
            .filter(|(_, g)| g.iter().any(|t| source.contains(t)))
            .fold(0, |m, (g, _)| m | (1 << g))
    }

    /// Per source of a batch (ids): the trigger groups it hits (`source_groups`), the list both
    /// backends and fine-tuning read per sentence. Empty without conditions or trigger groups,
    /// where no source hits any: read a missing entry as 0, as `mask` does.
    pub fn sentence_groups<S: AsRef<[u32]>>(conditions: Option<&Self>, sources: &[S]) -> Vec<u32> {
        match conditions {
            Some(c) if !c.triggers.is_empty() => sources
                .iter()
                .map(|s| c.source_groups(s.as_ref()))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Whether entry `j` applies in a row whose previous token is `prev` and whose source hits
    /// the groups `groups`.
    pub fn applies(&self, j: usize, prev: u32, groups: u32) -> bool {
        let (a, g) = (self.after[j], self.group[j]);
        (a == NOT_CONDITIONED || a == prev) && (g == NOT_CONDITIONED || groups & (1 << g) != 0)
    }

    /// Zero the values [R, K] (row-major) of the entries that do not apply in row r (previous
    /// token `prev[r]`, source groups `groups[r]`, 0 when `groups` is empty).
    pub fn mask(&self, prev: &[u32], groups: &[u32], values: &mut [f32]) {
        let k = self.after.len();
        for (r, (row, &p)) in values.chunks_exact_mut(k).zip(prev).enumerate() {
            let g = groups.get(r).copied().unwrap_or(0);
            for (j, v) in row.iter_mut().enumerate() {
                if !self.applies(j, p, g) {
                    *v = 0.0;
                }
            }
        }
    }

    fn validate(&self, ids: &[u32], vocab: usize) -> std::result::Result<(), String> {
        let k = ids.len();
        if self.after.len() != k || self.group.len() != k {
            return Err(format!(
                "{} and {} conditions for {k} ids",
                self.after.len(),
                self.group.len()
            ));
        }
        if self.triggers.len() > MAX_TRIGGER_GROUPS {
            return Err(format!(
                "{} trigger groups (at most {MAX_TRIGGER_GROUPS})",
                self.triggers.len()
            ));
        }
        if let Some(&t) = self
            .after
            .iter()
            .find(|&&t| t != NOT_CONDITIONED && t as usize >= vocab)
        {
            return Err(format!(
                "an entry is conditioned on token {t}, outside the vocabulary ({vocab})"
            ));
        }
        if let Some(&g) = self
            .group
            .iter()
            .find(|&&g| g != NOT_CONDITIONED && g as usize >= self.triggers.len())
        {
            return Err(format!(
                "an entry names trigger group {g} of {}",
                self.triggers.len()
            ));
        }
        let sorted = (1..k).all(|j| {
            (ids[j - 1], self.after[j - 1], self.group[j - 1])
                < (ids[j], self.after[j], self.group[j])
        });
        if !sorted {
            return Err("ids are not sorted and distinct".into());
        }
        Ok(())
    }
}
const METADATA_KEY: &str = "marian_wasm_adapter";

/// What an adapter says about itself (kept in the safetensors metadata as JSON).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AdapterManifest {
    pub format: String,
    pub format_version: u32,
    /// sha256 of the base package's weights file: an adapter fits exactly one base model.
    pub base_model_sha256: String,
    pub d_model: usize,
    pub target_vocab_size: usize,
    /// The decoder's FFN width (the last-layer adapter's input); 0 in head-only adapters.
    #[serde(default)]
    pub decoder_ffn_dim: usize,
    /// Human-readable: which parameters were trained.
    pub trained: String,
    /// Hyper-parameters and data figures of the run (free-form JSON object).
    pub hyperparameters: serde_json::Value,
    /// Loss and BLEU/chrF before and after (free-form JSON object).
    pub metrics: serde_json::Value,
    pub created_by: String,
}

#[derive(Debug, Clone)]
pub struct Adapter {
    pub manifest: AdapterManifest,
    pub ids: Vec<u32>,
    pub rank: usize,
    /// LoRA A of the head correction, row-major [rank, d_model] (stored as `delta_v`).
    pub lora_a: Vec<f32>,
    /// LoRA B of the head correction, row-major [ids.len(), rank] (stored as `delta_u`).
    pub lora_b: Vec<f32>,
    pub delta_bias: Vec<f32>,
    /// The entries' conditions, `None` when no entry has any.
    pub conditions: Option<EntryConditions>,
    pub last_layer: Option<LastLayerAdapter>,
}

/// A low-rank correction of the last decoder layer's fc2 weight [D, ffn]: `b · a`.
#[derive(Debug, Clone)]
pub struct LastLayerAdapter {
    pub rank: usize,
    /// Row-major [rank, ffn].
    pub a: Vec<f32>,
    /// Row-major [d_model, rank].
    pub b: Vec<f32>,
}

impl Adapter {
    /// Check shapes and values (also after reading a file that may be damaged).
    pub fn validate(&self) -> Result<()> {
        let m = &self.manifest;
        let k = self.ids.len();
        let bad = |msg: String| Err(Error::corrupt("adapter", msg));
        if m.format != ADAPTER_FORMAT {
            return bad(format!("format {:?} is not {ADAPTER_FORMAT:?}", m.format));
        }
        if !(HEAD_ONLY_FORMAT_VERSION..=ADAPTER_FORMAT_VERSION).contains(&m.format_version) {
            return bad(format!(
                "format version {} is not supported (this build reads {HEAD_ONLY_FORMAT_VERSION} to {ADAPTER_FORMAT_VERSION})",
                m.format_version
            ));
        }
        if let Some(l) = &self.last_layer {
            if l.rank == 0
                || m.decoder_ffn_dim == 0
                || l.a.len() != l.rank * m.decoder_ffn_dim
                || l.b.len() != m.d_model * l.rank
            {
                return bad(format!(
                    "last-layer adapter sizes do not match: rank {}, {} + {} values (d_model {}, ffn {})",
                    l.rank,
                    l.a.len(),
                    l.b.len(),
                    m.d_model,
                    m.decoder_ffn_dim
                ));
            }
            if !l.a.iter().chain(&l.b).all(|x| x.is_finite()) {
                return bad("non-finite values in the last-layer adapter".into());
            }
        }
        if self.rank == 0
            || self.lora_b.len() != k * self.rank
            || self.lora_a.len() != self.rank * m.d_model
            || self.delta_bias.len() != k
        {
            return bad(format!(
                "tensor sizes do not match: {k} ids, rank {}, {} + {} factor values (d_model {}), {} biases",
                self.rank,
                self.lora_b.len(),
                self.lora_a.len(),
                m.d_model,
                self.delta_bias.len()
            ));
        }
        // Sorted; a token repeats only under distinct conditions.
        match &self.conditions {
            None if self.ids.windows(2).any(|w| w[0] >= w[1]) => {
                return bad("ids are not sorted and distinct".into())
            }
            None => {}
            Some(c) => {
                if let Err(e) = c.validate(&self.ids, m.target_vocab_size) {
                    return bad(e);
                }
            }
        }
        if let Some(&max) = self.ids.last() {
            if max as usize >= m.target_vocab_size {
                return bad(format!(
                    "token id {max} is outside the vocabulary ({})",
                    m.target_vocab_size
                ));
            }
        }
        if !self
            .lora_b
            .iter()
            .chain(&self.lora_a)
            .chain(&self.delta_bias)
            .all(|x| x.is_finite())
        {
            return bad("non-finite values".into());
        }
        Ok(())
    }

    /// The safetensors file.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.validate()?;
        let (k, r, d) = (self.ids.len(), self.rank, self.manifest.d_model);
        let mut arrays = vec![
            Array::u32("ids", vec![k], &self.ids),
            Array::f32(STORED_LORA_B, vec![k, r], &self.lora_b),
            Array::f32(STORED_LORA_A, vec![r, d], &self.lora_a),
            Array::f32("delta_bias", vec![k], &self.delta_bias),
        ];
        let mut manifest = self.manifest.clone();
        manifest.format_version = HEAD_ONLY_FORMAT_VERSION;
        if let Some(l) = &self.last_layer {
            let f = manifest.decoder_ffn_dim;
            arrays.push(Array::f32("last_fc2_a", vec![l.rank, f], &l.a));
            arrays.push(Array::f32("last_fc2_b", vec![d, l.rank], &l.b));
            manifest.format_version = LAST_LAYER_FORMAT_VERSION;
        }
        let (trigger_ids, trigger_offsets);
        if let Some(c) = &self.conditions {
            trigger_ids = c.triggers.concat();
            trigger_offsets = std::iter::once(0)
                .chain(c.triggers.iter().scan(0u32, |at, g| {
                    *at += g.len() as u32;
                    Some(*at)
                }))
                .collect::<Vec<u32>>();
            arrays.push(Array::u32("after", vec![k], &c.after));
            arrays.push(Array::u32("group", vec![k], &c.group));
            arrays.push(Array::u32(
                "trigger_ids",
                vec![trigger_ids.len()],
                &trigger_ids,
            ));
            arrays.push(Array::u32(
                "trigger_offsets",
                vec![trigger_offsets.len()],
                &trigger_offsets,
            ));
            manifest.format_version = ADAPTER_FORMAT_VERSION;
        }
        tensor_file::write(
            "adapter",
            &arrays,
            METADATA_KEY,
            serde_json::to_string(&manifest).expect("manifest serializes"),
        )
    }

    /// Read an adapter file; every problem is reported, nothing is trusted unchecked.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let (file, json) = tensor_file::Reader::open("adapter", bytes, METADATA_KEY)?;
        let manifest: AdapterManifest =
            serde_json::from_str(&json).map_err(|e| file.corrupt(format!("bad manifest ({e})")))?;
        let (k, r) = match file.shape(STORED_LORA_B)?[..] {
            [k, r] => (k, r),
            ref other => return Err(file.corrupt(format!("{STORED_LORA_B} has shape {other:?}"))),
        };
        // Version 2 always has the last-layer part; version 3 when it was trained.
        let last_layer = if manifest.format_version == LAST_LAYER_FORMAT_VERSION
            || (manifest.format_version > LAST_LAYER_FORMAT_VERSION && file.has("last_fc2_a"))
        {
            let (r2, f) = match file.shape("last_fc2_a")?[..] {
                [r2, f] => (r2, f),
                ref other => return Err(file.corrupt(format!("last_fc2_a has shape {other:?}"))),
            };
            if f != manifest.decoder_ffn_dim {
                return Err(file.corrupt(format!(
                    "last_fc2_a is {f} wide, the manifest's ffn {}",
                    manifest.decoder_ffn_dim
                )));
            }
            Some(LastLayerAdapter {
                rank: r2,
                a: file.f32s("last_fc2_a", &[r2, f])?,
                b: file.f32s("last_fc2_b", &[manifest.d_model, r2])?,
            })
        } else {
            None
        };
        let adapter = Adapter {
            last_layer,
            ids: file.u32s("ids", &[k])?,
            rank: r,
            lora_b: file.f32s(STORED_LORA_B, &[k, r])?,
            lora_a: file.f32s(STORED_LORA_A, &[r, manifest.d_model])?,
            delta_bias: file.f32s("delta_bias", &[k])?,
            conditions: if manifest.format_version >= 3 && file.has("after") {
                let offsets = file.u32s(
                    "trigger_offsets",
                    &[file.shape("trigger_offsets")?.first().copied().unwrap_or(0)],
                )?;
                let n = file.shape("trigger_ids")?.first().copied().unwrap_or(0);
                let ids = file.u32s("trigger_ids", &[n])?;
                if offsets.first() != Some(&0)
                    || offsets.windows(2).any(|w| w[0] > w[1])
                    || offsets.last().map(|&x| x as usize) != Some(n)
                {
                    return Err(file.corrupt("trigger_offsets do not cut trigger_ids".into()));
                }
                Some(EntryConditions {
                    after: file.u32s("after", &[k])?,
                    group: file.u32s("group", &[k])?,
                    triggers: offsets
                        .windows(2)
                        .map(|w| ids[w[0] as usize..w[1] as usize].to_vec())
                        .collect(),
                })
            } else {
                None
            },
            manifest,
        };
        adapter.validate()?;
        Ok(adapter)
    }

    pub fn read(path: &std::path::Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes).map_err(|e| match e {
            Error::Corrupt { msg, .. } => Error::corrupt(path.display().to_string(), msg),
            other => other,
        })
    }

    pub fn write(&self, path: &std::path::Path) -> Result<()> {
        let bytes = self.to_bytes()?;
        // Write then rename: an interrupted save never leaves half an adapter under the name.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    }

    /// Refuse an adapter made for another base model.
    pub fn check_base(
        &self,
        model_sha256: &str,
        d_model: usize,
        vocab: usize,
        ffn: usize,
    ) -> Result<()> {
        let m = &self.manifest;
        if m.base_model_sha256 != model_sha256 {
            return Err(Error::Input(format!(
                "this adapter was made for another base model (weights sha256 {}…); the loaded model is {}…",
                &m.base_model_sha256.get(..12).unwrap_or(&m.base_model_sha256),
                model_sha256.get(..12).unwrap_or(model_sha256)
            )));
        }
        if m.d_model != d_model || m.target_vocab_size != vocab {
            return Err(Error::Input(format!(
                "adapter shape (d_model {}, vocabulary {}) does not fit the model (d_model {d_model}, vocabulary {vocab})",
                m.d_model, m.target_vocab_size
            )));
        }
        if self.last_layer.is_some() && m.decoder_ffn_dim != ffn {
            return Err(Error::Input(format!(
                "adapter's last-layer part is {} wide; the model's decoder FFN is {ffn}",
                m.decoder_ffn_dim
            )));
        }
        Ok(())
    }

    /// The last-layer correction of fc2 [D, ffn] (`b · a`), when the adapter has one.
    pub fn last_layer_delta(&self) -> Result<Option<Tensor>> {
        let Some(l) = &self.last_layer else {
            return Ok(None);
        };
        let (d, f) = (self.manifest.d_model, self.manifest.decoder_ffn_dim);
        let a = Tensor::from_vec(l.a.clone(), (l.rank, f), &Device::Cpu)?;
        let b = Tensor::from_vec(l.b.clone(), (d, l.rank), &Device::Cpu)?;
        Ok(Some(b.matmul(&a)?))
    }

    /// The correction as the model applies it (the product B·A formed once, [K, D]).
    pub fn head_delta(&self) -> Result<HeadDelta> {
        let k = self.ids.len();
        let b = Tensor::from_vec(self.lora_b.clone(), (k, self.rank), &Device::Cpu)?;
        let a = Tensor::from_vec(
            self.lora_a.clone(),
            (self.rank, self.manifest.d_model),
            &Device::Cpu,
        )?;
        Ok(HeadDelta {
            ids: Tensor::from_vec(self.ids.clone(), k, &Device::Cpu)?,
            weight: b.matmul(&a)?,
            bias: Tensor::from_vec(self.delta_bias.clone(), k, &Device::Cpu)?,
            conditions: self.conditions.clone(),
        })
    }
}
