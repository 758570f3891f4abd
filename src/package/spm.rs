//! SentencePiece model files (`*.spm`) read in Rust and turned into a `tokenizers` pipeline.
//!
//! The protobuf messages are declared by hand (only the fields we read; prost skips the
//! rest) because the upstream .proto is not shipped in any maintained crate.

use crate::error::{Error, Result};
use tokenizers::models::unigram::Unigram;
use tokenizers::normalizers::{Precompiled, Replace, Sequence, Strip};
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::{NormalizerWrapper, PreTokenizerWrapper, Tokenizer};

#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    #[prost(message, repeated, tag = "1")]
    pub pieces: Vec<SentencePiece>,
    #[prost(message, optional, tag = "2")]
    pub trainer_spec: Option<TrainerSpec>,
    #[prost(message, optional, tag = "3")]
    pub normalizer_spec: Option<NormalizerSpec>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SentencePiece {
    #[prost(string, optional, tag = "1")]
    pub piece: Option<String>,
    #[prost(float, optional, tag = "2")]
    pub score: Option<f32>,
    #[prost(int32, optional, tag = "3", default = "1")]
    pub r#type: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TrainerSpec {
    /// 1 = UNIGRAM, 2 = BPE, 3 = WORD, 4 = CHAR
    #[prost(int32, optional, tag = "3", default = "1")]
    pub model_type: Option<i32>,
    #[prost(bool, optional, tag = "24", default = "false")]
    pub treat_whitespace_as_suffix: Option<bool>,
    #[prost(bool, optional, tag = "35", default = "false")]
    pub byte_fallback: Option<bool>,
    #[prost(int32, optional, tag = "40", default = "0")]
    pub unk_id: Option<i32>,
    #[prost(string, optional, tag = "44")]
    pub unk_surface: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NormalizerSpec {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub precompiled_charsmap: Option<Vec<u8>>,
    #[prost(bool, optional, tag = "3", default = "true")]
    pub add_dummy_prefix: Option<bool>,
    #[prost(bool, optional, tag = "4", default = "true")]
    pub remove_extra_whitespaces: Option<bool>,
    #[prost(bool, optional, tag = "5", default = "true")]
    pub escape_whitespaces: Option<bool>,
}

/// SentencePiece piece types (sentencepiece_model.proto).
pub const TYPE_UNKNOWN: i32 = 2;
pub const TYPE_CONTROL: i32 = 3;

/// What decoding needs to know about a target SentencePiece model beyond its pieces.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SpmDecodeInfo {
    pub unk_piece: String,
    pub unk_surface: String,
    pub control_pieces: Vec<String>,
    pub add_dummy_prefix: bool,
}

pub struct SpmModel {
    pub proto: ModelProto,
}

impl SpmModel {
    pub fn parse(bytes: &[u8], file: &str) -> Result<Self> {
        use prost::Message;
        let proto = ModelProto::decode(bytes)
            .map_err(|e| Error::corrupt(file, format!("not a SentencePiece model: {e}")))?;
        if proto.pieces.is_empty() {
            return Err(Error::corrupt(file, "SentencePiece model has no pieces"));
        }
        let trainer = proto.trainer_spec.clone().unwrap_or_default();
        if trainer.model_type() != 1 {
            return Err(Error::corrupt(
                file,
                format!(
                    "SentencePiece model type {} is not supported (only unigram, which all OPUS-MT models use)",
                    trainer.model_type()
                ),
            ));
        }
        if trainer.treat_whitespace_as_suffix() {
            return Err(Error::corrupt(
                file,
                "treat_whitespace_as_suffix is not supported",
            ));
        }
        let unk = trainer.unk_id() as usize;
        if unk >= proto.pieces.len() {
            return Err(Error::corrupt(
                file,
                format!("unk_id {unk} is out of range"),
            ));
        }
        Ok(SpmModel { proto })
    }

    fn normalizer_spec(&self) -> NormalizerSpec {
        self.proto.normalizer_spec.clone().unwrap_or_default()
    }

    pub fn decode_info(&self) -> SpmDecodeInfo {
        let trainer = self.proto.trainer_spec.clone().unwrap_or_default();
        let unk_id = trainer.unk_id() as usize;
        SpmDecodeInfo {
            unk_piece: self.proto.pieces[unk_id].piece().to_string(),
            unk_surface: trainer
                .unk_surface
                .clone()
                .unwrap_or_else(|| " \u{2047} ".to_string()),
            control_pieces: self
                .proto
                .pieces
                .iter()
                .filter(|p| p.r#type() == TYPE_CONTROL)
                .map(|p| p.piece().to_string())
                .collect(),
            add_dummy_prefix: self.normalizer_spec().add_dummy_prefix(),
        }
    }

    /// The pieces that decoding recognises as belonging to this model.
    pub fn pieces(&self) -> impl Iterator<Item = (&str, i32)> {
        self.proto.pieces.iter().map(|p| (p.piece(), p.r#type()))
    }

    /// Each piece with its type and its score (a unigram model's log probability).
    pub fn pieces_with_scores(&self) -> impl Iterator<Item = (&str, i32, f32)> {
        self.proto
            .pieces
            .iter()
            .map(|p| (p.piece(), p.r#type(), p.score()))
    }

    /// Build the `tokenizers` pipeline that segments text exactly as SentencePiece does:
    /// charsmap normalisation, whitespace clean-up, `▁` escaping with a dummy prefix, Viterbi.
    pub fn to_tokenizer(&self, file: &str) -> Result<Tokenizer> {
        let trainer = self.proto.trainer_spec.clone().unwrap_or_default();
        let spec = self.normalizer_spec();
        let vocab: Vec<(String, f64)> = self
            .proto
            .pieces
            .iter()
            .map(|p| (p.piece().to_string(), p.score() as f64))
            .collect();
        let unigram = Unigram::from(
            vocab,
            Some(trainer.unk_id() as usize),
            trainer.byte_fallback(),
        )
        .map_err(|e| Error::corrupt(file, format!("cannot build unigram model: {e}")))?;
        let mut steps: Vec<NormalizerWrapper> = Vec::new();
        if let Some(map) = spec.precompiled_charsmap.as_ref().filter(|m| !m.is_empty()) {
            let pre = Precompiled::from(map)
                .map_err(|e| Error::corrupt(file, format!("bad precompiled charsmap: {e}")))?;
            steps.push(NormalizerWrapper::Precompiled(pre));
        }
        if spec.remove_extra_whitespaces() {
            let collapse = Replace::new(
                tokenizers::normalizers::replace::ReplacePattern::Regex(" {2,}".into()),
                " ",
            )
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
            steps.push(NormalizerWrapper::Replace(collapse));
            steps.push(NormalizerWrapper::StripNormalizer(Strip::new(true, true)));
        }
        let prepend = if spec.add_dummy_prefix() {
            PrependScheme::Always
        } else {
            PrependScheme::Never
        };
        let mut tok = Tokenizer::new(unigram);
        tok.with_normalizer(Some(NormalizerWrapper::Sequence(Sequence::new(steps))))
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        tok.with_pre_tokenizer(Some(PreTokenizerWrapper::Metaspace(Metaspace::new(
            '\u{2581}', prepend, true,
        ))));
        Ok(tok)
    }
}
