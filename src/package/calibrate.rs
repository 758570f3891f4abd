//! Calibration for GPTQ rounding: what each linear layer of the f32 model is fed on a set of
//! source sentences — by default text sampled from the model's own source SentencePiece
//! model, so that converting needs no data beside the checkpoint.
//!
//! The decoder is fed what the model itself would write: each sentence is first translated
//! greedily (f32), then the encoder and the decoder run once more over the sentence and that
//! translation (teacher forcing) with recording on.

use super::spm::SpmModel;
use crate::error::{Error, Result};
use crate::generate::{generate, GenerateOptions};
use crate::model::observe::{record_linear_inputs, InputGram};
use crate::translator::Translator;
use rand::distr::{weighted::WeightedIndex, Distribution};
use rand::{Rng, SeedableRng};
use std::collections::HashMap;

/// How many sentences calibrate by default: about 5 000 source and 6 000 target positions for
/// the sampled text, as many as GPTQ needs for layers of 512–2 048 inputs (the paper used 128
/// sequences for models far larger), and a few seconds of the f32 model's time.
pub const DEFAULT_SENTENCES: usize = 256;

/// Translations made for calibration stop after this many tokens (random-weight checkpoints
/// never write `</s>`).
pub const MAX_TARGET_TOKENS: usize = 64;

/// `count` pseudo-sentences of 6–30 pieces each, drawn independently from the SentencePiece
/// model's unigram distribution (each normal piece with probability ∝ exp(score)), pieces
/// joined as SentencePiece decodes them. Deterministic: a fixed seed (ChaCha8).
pub fn sampled_sentences(spm: &SpmModel, count: usize) -> Result<Vec<String>> {
    const NORMAL: i32 = 1;
    let pieces: Vec<(&str, f32)> = spm
        .pieces_with_scores()
        .filter(|&(p, kind, _)| kind == NORMAL && !p.is_empty())
        .map(|(p, _, score)| (p, score))
        .collect();
    let top = pieces
        .iter()
        .map(|&(_, s)| s)
        .fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f64> = pieces
        .iter()
        .map(|&(_, s)| ((s - top) as f64).exp())
        .collect();
    let pick = WeightedIndex::new(&weights).map_err(|e| {
        Error::Input(format!(
            "the source SentencePiece model has no pieces to sample calibration text from ({e})"
        ))
    })?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x6d61_7269_616e);
    Ok((0..count)
        .map(|_| {
            let n = rng.random_range(6..=30);
            let text: String = (0..n).map(|_| pieces[pick.sample(&mut rng)].0).collect();
            text.replace('\u{2581}', " ").trim().to_string()
        })
        .collect())
}

/// `sentences` as the model's source ids, each after one of a multi-target model's language
/// tokens in turn (such a model only ever sees sources after one); sentences that tokenize to
/// nothing or exceed the model's positions (at most 128) are skipped. Errors when none is left.
pub fn encoded_sources(translator: &Translator, sentences: &[String]) -> Result<Vec<Vec<u32>>> {
    let max_source = translator.model.config.max_position_embeddings.min(128);
    let languages = translator.tokenizer.language_tokens();
    let sources: Vec<Vec<u32>> = sentences
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let token = (!languages.is_empty()).then(|| languages[i % languages.len()].as_str());
            translator.tokenizer.encode_after(token, s).ok()
        })
        .filter(|ids| ids.len() > 1 && ids.len() <= max_source)
        .collect();
    if sources.is_empty() {
        return Err(Error::Input(
            "no calibration sentence fits the model (empty, or longer than its positions)".into(),
        ));
    }
    Ok(sources)
}

/// The Gram matrix of each linear layer's inputs (keyed by the layer's package name, e.g.
/// `decoder.layers.0.fc1`) over `sentences` and the f32 model's own greedy translations of
/// them. Sentences that tokenize to nothing are skipped; errors when none is left.
pub fn linear_input_grams(
    translator: &Translator,
    sentences: &[String],
) -> Result<HashMap<String, InputGram>> {
    let sources = encoded_sources(translator, sentences)?;
    let g = translator.generation_for(&GenerateOptions {
        num_beams: Some(1),
        max_length: Some(MAX_TARGET_TOKENS.min(translator.model.config.max_position_embeddings)),
        length_penalty: None,
        ..Default::default()
    })?;
    let mut targets = Vec::with_capacity(sources.len());
    for batch in sources.chunks(32) {
        targets.extend(generate(&translator.model, batch, &g)?);
    }
    let model = &translator.model;
    let (done, grams) = record_linear_inputs(|| -> Result<()> {
        // One sentence at a time: no padding rows among the recorded inputs.
        for (src, out) in sources.iter().zip(&targets) {
            // The decoder's inputs: the start token and the translation, minus its last token.
            let inputs = &out[..out.len().saturating_sub(1).max(1)];
            let (encoded, mask) = model.encode(std::slice::from_ref(src))?;
            model.decode_teacher_forced(&encoded, &mask, &[inputs.to_vec()])?;
        }
        Ok(())
    })?;
    done?;
    Ok(grams)
}
