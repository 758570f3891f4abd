//! MarianTokenizer, id-exact: source text -> SentencePiece pieces -> ids through vocab.json
//! (unknown piece -> `<unk>`) + `</s>`; target ids -> pieces -> SentencePiece decoding.

use crate::error::{Error, Result};
use crate::package::spm::SpmDecodeInfo;
use crate::package::Package;
use std::collections::{HashMap, HashSet};
use tokenizers::Tokenizer;

const UNK: &str = "<unk>";
const EOS: &str = "</s>";
const PAD: &str = "<pad>";

pub struct MarianTokenizer {
    source: Tokenizer,
    target: Tokenizer,
    /// vocab.json: piece -> id for the encoder side.
    source_vocab: HashMap<String, u32>,
    /// The decoder side's id -> piece (vocab.json, or target_vocab.json when separate).
    target_pieces: Vec<Option<String>>,
    target_vocab: HashMap<String, u32>,
    /// Pieces of the SentencePiece model that decoding uses.
    decode_pieces: HashSet<String>,
    decode_info: SpmDecodeInfo,
    /// ids skipped by `decode` (transformers' `all_special_ids`).
    special_ids: HashSet<u32>,
    /// The target-language tokens of a multi-target model, sorted (`language_tokens`).
    language_tokens: Vec<String>,
    unk_id: u32,
    eos_id: u32,
}

fn parse_vocab(bytes: &[u8], file: &str) -> Result<HashMap<String, u32>> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::corrupt(file, format!("not a JSON object of piece -> id: {e}")))
}

fn load_tokenizer(bytes: &[u8], file: &str) -> Result<Tokenizer> {
    check_precompiled_normalizers(bytes, file)?;
    Tokenizer::from_bytes(bytes)
        .map_err(|e| Error::corrupt(file, format!("not a tokenizers JSON file: {e}")))
}

/// The tokenizers crate (0.23) panics — `expect("Precompiled")`, an abort in WebAssembly —
/// when a `Precompiled` normalizer's character map does not parse: a damaged file would take the
/// worker down. Each such normalizer is parsed here first, so the damage is an error. (Found by
/// tests/fuzz_parsers.rs.)
fn check_precompiled_normalizers(bytes: &[u8], file: &str) -> Result<()> {
    fn walk(v: &serde_json::Value, file: &str) -> Result<()> {
        match v {
            serde_json::Value::Object(map) => {
                if map.get("type").and_then(|t| t.as_str()) == Some("Precompiled") {
                    // As tokenizers reads it: from text (its character map borrows the string).
                    let text = serde_json::to_string(v).unwrap_or_default();
                    serde_json::from_str::<tokenizers::normalizers::Precompiled>(&text).map_err(
                        |e| {
                            Error::corrupt(
                                file,
                                format!("its Precompiled normalizer is damaged: {e}"),
                            )
                        },
                    )?;
                }
                map.values().try_for_each(|x| walk(x, file))
            }
            serde_json::Value::Array(items) => items.iter().try_for_each(|x| walk(x, file)),
            _ => Ok(()),
        }
    }
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::corrupt(file, format!("not a tokenizers JSON file: {e}")))?;
    walk(&value, file)
}

/// Whether a vocabulary entry is a target-language token such as `>>fra<<`.
pub fn is_language_token(piece: &str) -> bool {
    piece.len() > 4 && piece.starts_with(">>") && piece.ends_with("<<")
}

/// A language token's code: `>>fra<<` → `fra`.
pub fn language_code(token: &str) -> &str {
    token.trim_start_matches(">>").trim_end_matches("<<")
}

/// Whether `text` starts with a language code, as MarianTokenizer takes one (`leading_code`).
pub fn starts_with_language_code(text: &str) -> bool {
    leading_code(text).is_some()
}

/// The language code `text` starts with (`>>eng<<`) and the text after it, as MarianTokenizer
/// splits them; `None` without one.
pub fn split_language_code(text: &str) -> Option<(&str, &str)> {
    leading_code(text).map(|end| text.split_at(end))
}

/// The end of the language code a text segment starts with, as transformers 5's
/// `MarianTokenizer.remove_language_code` finds it: the segment starts with `>>`, and the code
/// runs to the first `<<` (whatever lies between). Codes elsewhere are ordinary text.
fn leading_code(text: &str) -> Option<usize> {
    if !text.starts_with(">>") {
        return None;
    }
    text.find("<<").map(|i| i + 2)
}

impl MarianTokenizer {
    pub fn from_package(pkg: &Package) -> Result<Self> {
        let t = &pkg.manifest.tokenizer;
        let source = load_tokenizer(pkg.file(&t.source)?, &t.source)?;
        let target = load_tokenizer(pkg.file(&t.target)?, &t.target)?;
        let source_vocab = parse_vocab(pkg.file(&t.vocab)?, &t.vocab)?;
        let target_vocab = match &t.target_vocab {
            Some(name) => parse_vocab(pkg.file(name)?, name)?,
            None => source_vocab.clone(),
        };
        let cfg = &pkg.manifest.model;
        let mut target_pieces = vec![None; cfg.target_vocab_size()];
        for (piece, &id) in &target_vocab {
            let slot = target_pieces.get_mut(id as usize).ok_or_else(|| {
                Error::corrupt(&t.vocab, format!("id {id} is outside the vocabulary"))
            })?;
            *slot = Some(piece.clone());
        }
        // MarianTokenizer decodes with the source model unless the vocabularies are separate.
        let decoding_model = if t.target_vocab.is_some() || !cfg.share_encoder_decoder_embeddings {
            &target
        } else {
            &source
        };
        let decode_pieces = decoding_model.get_vocab(false).into_keys().collect();
        let lookup = |v: &HashMap<String, u32>, piece: &str, file: &str| {
            v.get(piece).copied().ok_or_else(|| {
                Error::corrupt(file, format!("the vocabulary has no '{piece}' entry"))
            })
        };
        let unk_id = lookup(&source_vocab, UNK, &t.vocab)?;
        let eos_id = lookup(&source_vocab, EOS, &t.vocab)?;
        let mut special_ids: HashSet<u32> = [UNK, EOS, PAD]
            .iter()
            .filter_map(|p| target_vocab.get(*p).copied())
            .collect();
        special_ids.insert(cfg.pad_token_id);
        special_ids.insert(cfg.eos_token_id);
        let mut language_tokens: Vec<String> = source_vocab
            .keys()
            .filter(|p| is_language_token(p))
            .cloned()
            .collect();
        language_tokens.sort();
        Ok(MarianTokenizer {
            source,
            target,
            source_vocab,
            target_pieces,
            target_vocab,
            decode_pieces,
            decode_info: t.target_decode.clone(),
            special_ids,
            language_tokens,
            unk_id,
            eos_id,
        })
    }

    /// The source vocabulary's piece of `id` (for reports).
    pub fn source_piece(&self, id: u32) -> Option<&str> {
        self.source_vocab
            .iter()
            .find(|(_, &v)| v == id)
            .map(|(p, _)| p.as_str())
    }

    /// Per target id [V]: whether its piece continues the word before it: no "▁" word-start
    /// mark and a letter or digit first (SentencePiece splits "galurin" as "▁g al ur in"; a ","
    /// after a word is a piece of its own, not part of the word). Special tokens never do.
    pub fn target_continues_word(&self) -> Vec<bool> {
        self.target_pieces
            .iter()
            .enumerate()
            .map(|(id, piece)| {
                piece.as_deref().is_some_and(|p| {
                    !self.special_ids.contains(&(id as u32))
                        && p.chars().next().is_some_and(char::is_alphanumeric)
                })
            })
            .collect()
    }

    /// The tokens that choose a multi-target model's output language (`>>fra<<`, `>>spa<<`, …;
    /// opus-mt-en-ROMANCE, opus-mt-en-mul, tc-big multi-target models), sorted; empty for a model
    /// with one target language. As MarianTokenizer's `supported_language_codes`: the source
    /// vocabulary's entries that start with `>>` and end with `<<`. A text that starts with one
    /// is translated into that language (`encode`).
    pub fn language_tokens(&self) -> &[String] {
        &self.language_tokens
    }

    /// `encode` of `text` after a multi-target model's language token (`>>fra<< text`, as
    /// transformers users write it), or of `text` alone without one.
    pub fn encode_after(&self, language: Option<&str>, text: &str) -> Result<Vec<u32>> {
        match language {
            Some(token) => self.encode(&format!("{token} {text}")),
            None => self.encode(text),
        }
    }

    fn pieces(tok: &Tokenizer, text: &str) -> Result<Vec<String>> {
        let enc = tok
            .encode(text, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(enc.get_tokens().to_vec())
    }

    /// Source text -> ids, ending with `</s>`, as `MarianTokenizer(text).input_ids`.
    /// Special tokens written in the text (`</s>`, `<unk>`, `<pad>`) stay single tokens and
    /// split the text around them, as transformers' added-token handling does.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        let mut rest = text;
        while let Some((at, special)) = [EOS, UNK, PAD]
            .iter()
            .filter_map(|sp| rest.find(sp).map(|i| (i, *sp)))
            .min()
        {
            self.encode_segment(&rest[..at], &mut ids)?;
            ids.push(self.source_id(special));
            rest = &rest[at + special.len()..];
        }
        self.encode_segment(rest, &mut ids)?;
        ids.push(self.eos_id);
        Ok(ids)
    }

    /// MarianTokenizer._tokenize: a leading language code is one token (`leading_code`), the
    /// rest goes through SentencePiece and vocab.json.
    fn encode_segment(&self, text: &str, ids: &mut Vec<u32>) -> Result<()> {
        let rest = match leading_code(text) {
            Some(end) => {
                ids.push(self.source_id(&text[..end]));
                &text[end..]
            }
            None => text,
        };
        for piece in Self::pieces(&self.source, rest)? {
            ids.push(self.source_id(&piece));
        }
        Ok(())
    }

    fn source_id(&self, piece: &str) -> u32 {
        self.source_vocab.get(piece).copied().unwrap_or(self.unk_id)
    }

    /// Target text -> ids with the target SentencePiece model (for training pairs).
    pub fn encode_target(&self, text: &str) -> Result<Vec<u32>> {
        let unk = self.target_vocab.get(UNK).copied().unwrap_or(self.unk_id);
        let mut ids: Vec<u32> = Self::pieces(&self.target, text)?
            .iter()
            .map(|p| self.target_vocab.get(p.as_str()).copied().unwrap_or(unk))
            .collect();
        ids.push(self.eos_id);
        Ok(ids)
    }

    /// Target ids -> text, special tokens skipped, as
    /// `MarianTokenizer.decode(ids, skip_special_tokens=True)`.
    pub fn decode(&self, ids: &[u32]) -> String {
        let info = &self.decode_info;
        let mut out = String::new();
        let mut at_start = true;
        for &id in ids {
            if self.special_ids.contains(&id) {
                continue;
            }
            let Some(Some(piece)) = self.target_pieces.get(id as usize) else {
                continue;
            };
            // SentencePiece's DecodeSentencePiece, piece by piece.
            let surface: String = if info.control_pieces.contains(piece) {
                String::new()
            } else if piece == &info.unk_piece {
                info.unk_surface.clone()
            } else if !self.decode_pieces.contains(piece) {
                // Unknown to the decoding model: SentencePiece passes it through untouched.
                piece.clone()
            } else {
                let p = if at_start && info.add_dummy_prefix {
                    piece.strip_prefix('\u{2581}').unwrap_or(piece)
                } else {
                    piece
                };
                p.replace('\u{2581}', " ")
            };
            if at_start && !surface.is_empty() {
                at_start = false;
            }
            out.push_str(&surface);
        }
        // MarianTokenizer.convert_tokens_to_string: replace leftover `▁`, then strip.
        out.replace('\u{2581}', " ").trim().to_string()
    }

    /// The source vocabulary's `<unk>`: what a piece the vocabulary cannot spell encodes to.
    pub fn unk_id(&self) -> u32 {
        self.unk_id
    }

    pub fn eos_id(&self) -> u32 {
        self.eos_id
    }
}

#[cfg(test)]
mod tests {
    use super::leading_code;

    #[test]
    fn leading_codes_end_at_the_first_closing_mark_as_in_transformers() {
        assert_eq!(leading_code(">>fra<< Hello"), Some(7));
        assert_eq!(leading_code("no code"), None);
        assert_eq!(leading_code(">><< x"), Some(4));
        assert_eq!(leading_code("a >>de<< b"), None);
        assert_eq!(leading_code(">>fra Hello"), None);
        assert_eq!(leading_code(">>fr\na<< x"), Some(8));
    }

    #[test]
    fn language_tokens_and_leading_codes() {
        use super::{is_language_token, starts_with_language_code};
        assert!(is_language_token(">>fra<<") && is_language_token(">>pt_BR<<"));
        assert!(
            !is_language_token(">><<") && !is_language_token("▁>>") && !is_language_token("fra")
        );
        assert!(starts_with_language_code(">>fra<< Hello"));
        assert!(!starts_with_language_code(" >>fra<< Hello"));
        assert!(!starts_with_language_code("Hello >>fra<<"));
    }
}
