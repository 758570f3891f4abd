//! The front door: text in, text out, over a loaded package.

use crate::adapter::Adapter;
use crate::config::GenerationConfig;
use crate::error::{Error, Result};
use crate::generate::{generate, generate_observed, GenerateOptions};
use crate::model::Marian;
use crate::package::Package;
use crate::tokenizer::MarianTokenizer;

/// Longest input accepted at once (bytes); longer text is refused, not truncated.
pub const MAX_INPUT_BYTES: usize = 1 << 20;

pub struct Translator {
    pub model: Marian,
    pub tokenizer: MarianTokenizer,
    pub generation: GenerationConfig,
    pub model_sha256: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Translation {
    pub text: String,
    /// Generated ids per chunk (a long input is split into several), HF's layout:
    /// decoder start token first.
    pub ids: Vec<Vec<u32>>,
}

impl Translator {
    pub fn new(pkg: &Package) -> Result<Self> {
        Ok(Translator {
            model: Marian::from_package(pkg)?,
            tokenizer: MarianTokenizer::from_package(pkg)?,
            generation: pkg.manifest.generation.clone(),
            model_sha256: pkg.manifest.model_sha256().to_string(),
        })
    }

    /// Put a fine-tuning adapter on (or, with `None`, take it off). An adapter made for
    /// another base model is refused.
    pub fn set_adapter(&mut self, adapter: Option<&Adapter>) -> Result<()> {
        match adapter {
            None => self.model.set_head_delta(None),
            Some(a) => {
                a.check_base(
                    &self.model_sha256,
                    self.model.config.d_model,
                    self.model.target_vocab_size(),
                )?;
                self.model.set_head_delta(Some(a.head_delta()?))
            }
        }
    }

    /// Source chunks the model can take: the whole text when it fits in
    /// `max_position_embeddings` tokens (as HF would translate it), else one chunk per sentence
    /// (Marian models are trained on sentences), a sentence that alone is too long being cut at
    /// spaces into the longest runs of words that fit. Never truncates.
    pub fn split_for_model(&self, text: &str) -> Result<Vec<Vec<u32>>> {
        let limit = self.model.config.max_position_embeddings;
        let ids = self.tokenizer.encode(text)?;
        if ids.len() <= limit {
            return Ok(vec![ids]);
        }
        let mut chunks = Vec::new();
        for sentence in crate::text::sentences(text) {
            let ids = self.tokenizer.encode(sentence)?;
            if ids.len() <= limit {
                chunks.push(ids);
                continue;
            }
            let mut current = String::new();
            for word in sentence.split_whitespace() {
                let candidate = if current.is_empty() {
                    word.to_string()
                } else {
                    format!("{current} {word}")
                };
                if self.tokenizer.encode(&candidate)?.len() <= limit {
                    current = candidate;
                    continue;
                }
                if current.is_empty() {
                    return Err(Error::Input(format!(
                        "a single word of {} tokens is longer than the model's {limit} positions",
                        self.tokenizer.encode(word)?.len()
                    )));
                }
                chunks.push(self.tokenizer.encode(&current)?);
                current = word.to_string();
                if self.tokenizer.encode(&current)?.len() > limit {
                    return Err(Error::Input(format!(
                        "a single word of {} tokens is longer than the model's {limit} positions",
                        self.tokenizer.encode(word)?.len()
                    )));
                }
            }
            if !current.is_empty() {
                chunks.push(self.tokenizer.encode(&current)?);
            }
        }
        Ok(chunks)
    }

    pub fn generation_for(&self, opts: &GenerateOptions) -> Result<GenerationConfig> {
        let mut g = opts.resolve(&self.generation)?;
        // The decoder cannot look past its last position.
        g.max_length = g
            .max_length
            .min(self.model.config.max_position_embeddings + 1);
        Ok(g)
    }

    /// Translate one text, calling `on_partial` with the translation so far whenever it grows
    /// (only what the final output is certain to start with; chunks of a long text in order).
    pub fn translate_streaming(
        &self,
        text: &str,
        opts: &GenerateOptions,
        on_partial: &mut dyn FnMut(&str),
    ) -> Result<Translation> {
        let g = self.generation_for(opts)?;
        check_input_size(0, text)?;
        let mut result = Translation {
            text: String::new(),
            ids: Vec::new(),
        };
        if text.trim().is_empty() {
            return Ok(result);
        }
        for chunk in self.split_for_model(text)? {
            let done = result.text.clone();
            let mut shown = 0usize;
            let mut observe = |_: usize, ids: &[u32]| {
                if ids.len() <= shown {
                    return;
                }
                shown = ids.len();
                let piece = self.tokenizer.decode(ids);
                on_partial(&join_pieces(&done, &piece));
            };
            let ids = generate_observed(&self.model, &[chunk], &g, &mut observe)?
                .pop()
                .unwrap_or_default();
            result.text = join_pieces(&done, &self.tokenizer.decode(&ids));
            result.ids.push(ids);
        }
        on_partial(&result.text);
        Ok(result)
    }

    /// Translate many texts; `batch_size` sentences (chunks) go through the model at once.
    pub fn translate(
        &self,
        texts: &[&str],
        opts: &GenerateOptions,
        batch_size: usize,
    ) -> Result<Vec<Translation>> {
        let g = self.generation_for(opts)?;
        let batch_size = batch_size.max(1);
        // (text index, chunk ids) for every non-empty text.
        let mut work: Vec<(usize, Vec<u32>)> = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            check_input_size(i, t)?;
            if t.trim().is_empty() {
                continue;
            }
            for chunk in self.split_for_model(t)? {
                work.push((i, chunk));
            }
        }
        // Similar lengths together: less padding. The output order is restored below.
        let mut order: Vec<usize> = (0..work.len()).collect();
        order.sort_by_key(|&w| std::cmp::Reverse(work[w].1.len()));
        let mut outputs: Vec<Vec<u32>> = vec![Vec::new(); work.len()];
        for group in order.chunks(batch_size) {
            let batch: Vec<Vec<u32>> = group.iter().map(|&w| work[w].1.clone()).collect();
            let out = generate(&self.model, &batch, &g)?;
            for (&w, ids) in group.iter().zip(out) {
                outputs[w] = ids;
            }
        }
        let mut result: Vec<Translation> = texts
            .iter()
            .map(|_| Translation {
                text: String::new(),
                ids: Vec::new(),
            })
            .collect();
        for ((i, _), ids) in work.iter().zip(outputs) {
            let r = &mut result[*i];
            r.text = join_pieces(&r.text, &self.tokenizer.decode(&ids));
            r.ids.push(ids);
        }
        Ok(result)
    }
}

fn check_input_size(index: usize, text: &str) -> Result<()> {
    if text.len() > MAX_INPUT_BYTES {
        return Err(Error::Input(format!(
            "text {} is {} bytes; at most {MAX_INPUT_BYTES} are accepted at once",
            index + 1,
            text.len()
        )));
    }
    Ok(())
}

/// The translations of a long text's chunks, joined with one space.
fn join_pieces(done: &str, piece: &str) -> String {
    match (done.is_empty(), piece.is_empty()) {
        (true, _) => piece.to_string(),
        (_, true) => done.to_string(),
        _ => format!("{done} {piece}"),
    }
}
