//! The model's switches as Hugging Face writes them (config.json, generation_config.json).
//! Every field the Marian forward pass depends on is read here; nothing is assumed.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Activations Hugging Face's `ACT2FN` maps Marian's `activation_function` to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `swish` / `silu`: x * sigmoid(x)
    #[serde(alias = "silu")]
    Swish,
    /// `gelu`: the exact erf form
    Gelu,
    /// `gelu_new` / `gelu_pytorch_tanh`: the tanh approximation
    #[serde(alias = "gelu_pytorch_tanh", alias = "gelu_fast")]
    GeluNew,
    Relu,
    Tanh,
    Sigmoid,
}

fn default_true() -> bool {
    true
}
fn default_max_positions() -> usize {
    1024
}

/// The subset of transformers' `MarianConfig` that changes the computation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarianConfig {
    pub vocab_size: usize,
    /// Size of the decoder's vocabulary when it is not shared with the encoder.
    #[serde(default)]
    pub decoder_vocab_size: Option<usize>,
    pub d_model: usize,
    pub encoder_layers: usize,
    pub decoder_layers: usize,
    pub encoder_attention_heads: usize,
    pub decoder_attention_heads: usize,
    pub encoder_ffn_dim: usize,
    pub decoder_ffn_dim: usize,
    pub activation_function: Activation,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub scale_embedding: bool,
    #[serde(default = "default_true")]
    pub share_encoder_decoder_embeddings: bool,
    #[serde(default = "default_true")]
    pub tie_word_embeddings: bool,
    pub pad_token_id: u32,
    pub eos_token_id: u32,
    pub decoder_start_token_id: u32,
    #[serde(default)]
    pub forced_eos_token_id: Option<u32>,
}

/// Hard bounds that reject absurd or hostile configs before anything is allocated.
const MAX_DIM: usize = 16_384;
const MAX_LAYERS: usize = 128;
const MAX_VOCAB: usize = 2_000_000;
const MAX_POSITIONS: usize = 65_536;
const MAX_PARAMS: usize = 4_000_000_000;

impl MarianConfig {
    pub fn from_json(text: &str, file: &str) -> Result<Self> {
        let cfg: MarianConfig = serde_json::from_str(text)
            .map_err(|e| Error::corrupt(file, format!("not a valid Marian config: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn target_vocab_size(&self) -> usize {
        if self.share_encoder_decoder_embeddings {
            self.vocab_size
        } else {
            self.decoder_vocab_size.unwrap_or(self.vocab_size)
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        for (name, v, max) in [
            ("d_model", self.d_model, MAX_DIM),
            ("encoder_ffn_dim", self.encoder_ffn_dim, 4 * MAX_DIM),
            ("decoder_ffn_dim", self.decoder_ffn_dim, 4 * MAX_DIM),
            ("encoder_layers", self.encoder_layers, MAX_LAYERS),
            ("decoder_layers", self.decoder_layers, MAX_LAYERS),
            ("encoder_attention_heads", self.encoder_attention_heads, 256),
            ("decoder_attention_heads", self.decoder_attention_heads, 256),
            ("vocab_size", self.vocab_size, MAX_VOCAB),
            ("decoder_vocab_size", self.target_vocab_size(), MAX_VOCAB),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                MAX_POSITIONS,
            ),
        ] {
            if v == 0 || v > max {
                return bad(format!("{name} = {v} is outside 1..={max}"));
            }
        }
        for (name, heads) in [
            ("encoder_attention_heads", self.encoder_attention_heads),
            ("decoder_attention_heads", self.decoder_attention_heads),
        ] {
            if !self.d_model.is_multiple_of(heads) {
                return bad(format!(
                    "d_model {} is not divisible by {name} {heads}",
                    self.d_model
                ));
            }
        }
        if !self.d_model.is_multiple_of(2) {
            return bad(format!(
                "d_model {} must be even for sinusoidal positions",
                self.d_model
            ));
        }
        let tv = self.target_vocab_size();
        for (name, id) in [
            ("pad_token_id", self.pad_token_id),
            ("eos_token_id", self.eos_token_id),
            ("decoder_start_token_id", self.decoder_start_token_id),
        ] {
            if id as usize >= tv {
                return bad(format!("{name} {id} is outside the vocabulary of {tv}"));
            }
        }
        if self.parameter_count() > MAX_PARAMS {
            return bad(format!(
                "{} parameters is more than this runtime accepts ({MAX_PARAMS})",
                self.parameter_count()
            ));
        }
        Ok(())
    }

    /// Parameter count, used to refuse absurd configs and to report package sizes.
    pub fn parameter_count(&self) -> usize {
        let d = self.d_model;
        let attn = 4 * (d * d + d);
        let enc_layer = attn + 2 * d * self.encoder_ffn_dim + self.encoder_ffn_dim + d + 4 * d;
        let dec_layer = 2 * attn + 2 * d * self.decoder_ffn_dim + self.decoder_ffn_dim + d + 6 * d;
        let emb = self.vocab_size * d
            + if self.share_encoder_decoder_embeddings {
                0
            } else {
                self.target_vocab_size() * d
            };
        emb + self.encoder_layers * enc_layer + self.decoder_layers * dec_layer
    }
}

/// Decoding defaults, as `model.generate()` would take them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationConfig {
    pub num_beams: usize,
    pub max_length: usize,
    pub length_penalty: f32,
    /// `false` = HF's default heuristic, `true` = stop as soon as `num_beams` hypotheses finished.
    pub early_stopping: bool,
    pub bad_words_ids: Vec<Vec<u32>>,
    pub forced_eos_token_id: Option<u32>,
    /// The id that ends a translation (the first of generation_config.json's list).
    pub eos_token_id: u32,
    /// Further ids that end a translation, as transformers allows (`eos_token_id: [0, 12]`);
    /// the id itself is kept as the output's last token.
    #[serde(default)]
    pub more_eos_token_ids: Vec<u32>,
    pub pad_token_id: u32,
    pub decoder_start_token_id: u32,
}

/// Raw view of generation_config.json / config.json: every field optional.
#[derive(Debug, Default, Deserialize)]
struct RawGeneration {
    num_beams: Option<usize>,
    max_length: Option<usize>,
    max_new_tokens: Option<usize>,
    length_penalty: Option<f32>,
    early_stopping: Option<serde_json::Value>,
    bad_words_ids: Option<Vec<Vec<u32>>>,
    forced_eos_token_id: Option<serde_json::Value>,
    do_sample: Option<bool>,
    no_repeat_ngram_size: Option<usize>,
    repetition_penalty: Option<f32>,
    num_beam_groups: Option<usize>,
    min_length: Option<usize>,
    eos_token_id: Option<serde_json::Value>,
    pad_token_id: Option<serde_json::Value>,
    decoder_start_token_id: Option<serde_json::Value>,
    bos_token_id: Option<serde_json::Value>,
}

/// `value` (a field of generation_config.json, or `None` when the file lacks it) as one id.
fn single_id(value: Option<&serde_json::Value>, file: &str, field: &str) -> Result<Option<u32>> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .map(Some)
            .ok_or_else(|| Error::corrupt(file, format!("{field} {v} is not a single token id"))),
    }
}

impl GenerationConfig {
    /// Merge generation_config.json (preferred, as HF does) over config.json's legacy fields.
    /// As transformers 5's `generate`: when generation_config.json exists, every decoding
    /// setting and the special ids come from it alone (`GenerationConfig.from_pretrained`),
    /// with transformers' fallbacks: no `decoder_start_token_id` takes its `bos_token_id`, no
    /// `pad_token_id` takes the first eos id, and no `forced_eos_token_id` forces none. Where
    /// transformers cannot go on, config.json's id is taken instead: a file without
    /// `eos_token_id` (transformers would never stop before `max_length`), or without both
    /// `decoder_start_token_id` and `bos_token_id` (transformers refuses to generate).
    /// `eos_token_id` may be a list (any of them ends a translation). Without the file
    /// everything comes from config.json.
    /// Errors: an id that is not a non-negative integer (or a list of them, for
    /// `eos_token_id`), an empty eos list, an unsupported setting (`Error::Config`).
    pub fn from_hf(
        config_json: &str,
        generation_json: Option<&str>,
        model: &MarianConfig,
    ) -> Result<Self> {
        let raw: RawGeneration = match generation_json {
            Some(t) => serde_json::from_str(t)
                .map_err(|e| Error::corrupt("generation_config.json", e.to_string()))?,
            None => serde_json::from_str(config_json)
                .map_err(|e| Error::corrupt("config.json", e.to_string()))?,
        };
        if raw.do_sample == Some(true) {
            return Err(Error::Config(
                "do_sample=true is not supported (deterministic decoding only)".into(),
            ));
        }
        for (name, set) in [
            (
                "no_repeat_ngram_size",
                raw.no_repeat_ngram_size.is_some_and(|n| n > 0),
            ),
            (
                "repetition_penalty",
                raw.repetition_penalty.is_some_and(|p| p != 1.0),
            ),
            (
                "num_beam_groups",
                raw.num_beam_groups.is_some_and(|g| g > 1),
            ),
            ("min_length", raw.min_length.is_some_and(|m| m > 0)),
        ] {
            if set {
                return Err(Error::Config(format!(
                    "generation setting {name} is not supported yet"
                )));
            }
        }
        let early_stopping = match raw.early_stopping {
            None | Some(serde_json::Value::Bool(false)) => false,
            Some(serde_json::Value::Bool(true)) => true,
            Some(other) => {
                return Err(Error::Config(format!(
                    "early_stopping={other} is not supported"
                )))
            }
        };
        let file = if generation_json.is_some() {
            "generation_config.json"
        } else {
            "config.json"
        };
        let forced_eos_token_id = match raw.forced_eos_token_id {
            // In generation_config.json's absence transformers takes config.json's.
            None | Some(serde_json::Value::Null) if generation_json.is_none() => {
                model.forced_eos_token_id
            }
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| {
                Error::Config(format!("forced_eos_token_id {v} is not a single id"))
            })? as u32),
        };
        let (eos_token_id, more_eos_token_ids) = match &raw.eos_token_id {
            None | Some(serde_json::Value::Null) => (model.eos_token_id, Vec::new()),
            Some(serde_json::Value::Array(list)) => {
                let mut ids = Vec::with_capacity(list.len());
                for v in list {
                    ids.push(single_id(Some(v), file, "eos_token_id")?.ok_or_else(|| {
                        Error::corrupt(file, "eos_token_id holds a null".to_string())
                    })?);
                }
                let Some((&first, more)) = ids.split_first() else {
                    return Err(Error::corrupt(file, "eos_token_id is an empty list"));
                };
                (first, more.to_vec())
            }
            Some(v) => (
                single_id(Some(v), file, "eos_token_id")?.unwrap_or(model.eos_token_id),
                Vec::new(),
            ),
        };
        let (decoder_start_token_id, pad_token_id) = if generation_json.is_some() {
            let start = single_id(
                raw.decoder_start_token_id.as_ref(),
                file,
                "decoder_start_token_id",
            )?
            .or(single_id(raw.bos_token_id.as_ref(), file, "bos_token_id")?)
            // transformers would refuse to generate; config.json's is the id meant.
            .unwrap_or(model.decoder_start_token_id);
            let pad =
                single_id(raw.pad_token_id.as_ref(), file, "pad_token_id")?.unwrap_or(eos_token_id);
            (start, pad)
        } else {
            (model.decoder_start_token_id, model.pad_token_id)
        };
        let max_length = match (raw.max_length, raw.max_new_tokens) {
            (_, Some(n)) => n + 1,
            (Some(m), None) => m,
            // No max_length anywhere: transformers 5 `generate` then makes 20 new tokens (its
            // default 20 plus the decoder start token), capped at the model's positions.
            (None, None) => 21.min(model.max_position_embeddings).max(2),
        };
        let cfg = GenerationConfig {
            num_beams: raw.num_beams.unwrap_or(1),
            max_length,
            length_penalty: raw.length_penalty.unwrap_or(1.0),
            early_stopping,
            bad_words_ids: raw.bad_words_ids.unwrap_or_default(),
            forced_eos_token_id,
            eos_token_id,
            more_eos_token_ids,
            pad_token_id,
            decoder_start_token_id,
        };
        cfg.validate(model)?;
        Ok(cfg)
    }

    pub fn validate(&self, model: &MarianConfig) -> Result<()> {
        if self.num_beams == 0 || self.num_beams > 64 {
            return Err(Error::Config(format!(
                "num_beams {} is outside 1..=64",
                self.num_beams
            )));
        }
        if self.max_length < 2 || self.max_length > MAX_POSITIONS {
            return Err(Error::Config(format!(
                "max_length {} is outside 2..={MAX_POSITIONS}",
                self.max_length
            )));
        }
        if !self.length_penalty.is_finite() {
            return Err(Error::Config("length_penalty must be finite".into()));
        }
        let tv = model.target_vocab_size() as u32;
        for (name, id) in [
            ("eos_token_id", Some(self.eos_token_id)),
            ("pad_token_id", Some(self.pad_token_id)),
            ("decoder_start_token_id", Some(self.decoder_start_token_id)),
            ("forced_eos_token_id", self.forced_eos_token_id),
        ]
        .into_iter()
        .chain(
            self.more_eos_token_ids
                .iter()
                .map(|&i| ("eos_token_id", Some(i))),
        ) {
            if let Some(id) = id.filter(|&id| id >= tv) {
                return Err(Error::Config(format!(
                    "generation {name} {id} is outside the target vocabulary of {tv}"
                )));
            }
        }
        if self.bad_words_ids.iter().flatten().any(|&i| i >= tv) {
            return Err(Error::Config(
                "bad_words_ids holds an id outside the vocabulary".into(),
            ));
        }
        if self.bad_words_ids.iter().any(|w| w.len() != 1) {
            return Err(Error::Config(
                "only single-token bad_words_ids are supported".into(),
            ));
        }
        Ok(())
    }

    /// Whether `id` ends a translation (`eos_token_id` or one of `more_eos_token_ids`).
    pub fn is_eos(&self, id: u32) -> bool {
        id == self.eos_token_id || self.more_eos_token_ids.contains(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(max_positions: usize) -> (String, MarianConfig) {
        let json = format!(
            r#"{{"vocab_size": 100, "d_model": 16, "encoder_layers": 1, "decoder_layers": 1,
            "encoder_attention_heads": 2, "decoder_attention_heads": 2, "encoder_ffn_dim": 32,
            "decoder_ffn_dim": 32, "activation_function": "relu", "pad_token_id": 99,
            "eos_token_id": 0, "decoder_start_token_id": 99,
            "max_position_embeddings": {max_positions}}}"#
        );
        let cfg = MarianConfig::from_json(&json, "config.json").unwrap();
        (json, cfg)
    }

    #[test]
    fn without_a_max_length_generation_makes_twenty_new_tokens_as_transformers() {
        let (json, cfg) = model(128);
        // transformers 5: max_length = 20 + the decoder start token, at most the positions.
        let g = GenerationConfig::from_hf(&json, None, &cfg).unwrap();
        assert_eq!(g.max_length, 21);
        let g = GenerationConfig::from_hf(&json, Some(r#"{"num_beams": 4}"#), &cfg).unwrap();
        assert_eq!(g.max_length, 21);
        let (json, cfg) = model(16);
        assert_eq!(
            GenerationConfig::from_hf(&json, None, &cfg)
                .unwrap()
                .max_length,
            16
        );
        let g = GenerationConfig::from_hf(&json, Some(r#"{"max_length": 20}"#), &cfg).unwrap();
        assert_eq!(g.max_length, 20);
    }
}
