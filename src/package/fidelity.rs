//! How closely a quantized package translates like the f32 model it was converted from: the
//! share of source sentences whose output tokens are identical, greedy and with the model's own
//! beam count (issue 17 measures q8 against transformers the same way; the f32 package is
//! token-identical to transformers, so agreeing with it is agreeing with transformers).
//!
//! `convert --residual auto` measures each candidate package with this and keeps the cheapest
//! that agrees often enough (`convert::ResidualChoice`).

use super::calibrate;
use crate::error::Result;
use crate::generate::{generate, GenerateOptions};
use crate::translator::Translator;

/// Sentences decoded at once while measuring (padded batches, as the CLI translates).
const BATCH: usize = 32;

/// One candidate's agreement with the reference, as shares in 0..=1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agreement {
    /// Share of sentences whose greedy output is token-identical to the reference's.
    pub greedy: f64,
    /// The same with the model's default beam count; `None` when that is 1 (greedy already)
    /// or when greedy already fell short of the share asked for (not measured).
    pub beam: Option<f64>,
}

impl Agreement {
    /// The lower of the measured shares: a package is as faithful as its worse search.
    pub fn worst(&self) -> f64 {
        self.beam.map_or(self.greedy, |b| b.min(self.greedy))
    }
}

impl std::fmt::Display for Agreement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "greedy {:.1} %", self.greedy * 100.0)?;
        if let Some(b) = self.beam {
            write!(f, ", beam {:.1} %", b * 100.0)?;
        }
        Ok(())
    }
}

/// The reference model's outputs on a set of source sentences, to hold candidates against.
/// Its beam-search outputs are made the first time a candidate needs them.
pub struct Reference<'a> {
    model: &'a Translator,
    sources: Vec<Vec<u32>>,
    greedy: Vec<Vec<u32>>,
    finished: usize,
    beam: std::cell::OnceCell<Vec<Vec<u32>>>,
}

impl<'a> Reference<'a> {
    /// Translates `sentences` (tokenized as `calibrate::encoded_sources` does: a multi-target
    /// model's language tokens in turn; sentences that do not fit are skipped) greedily with
    /// `model`. Errors when no sentence fits.
    pub fn new(model: &'a Translator, sentences: &[String]) -> Result<Self> {
        let sources = calibrate::encoded_sources(model, sentences)?;
        let (greedy, finished) = decode(model, &sources, 1)?;
        Ok(Reference {
            model,
            sources,
            greedy,
            finished,
            beam: std::cell::OnceCell::new(),
        })
    }

    /// How many sentences the measure is over.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// Share of the reference's greedy outputs that ended before their length limit: near 1
    /// for a trained translator; untrained (random) weights never write `</s>`, and their
    /// decisions are near ties that any rounding flips, so agreement says nothing there.
    pub fn finished(&self) -> f64 {
        self.finished as f64 / self.sources.len() as f64
    }

    /// Never true: `new` refuses an empty set.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// `candidate`'s agreement with the reference on the same sentences: greedy, and with the
    /// model's default beam count only where greedy reaches `at_least` (below it, the
    /// candidate is short of that share whatever beam search gives).
    pub fn agreement(&self, candidate: &Translator, at_least: f64) -> Result<Agreement> {
        let greedy = share(&decode(candidate, &self.sources, 1)?.0, &self.greedy);
        let beams = self.model.generation.num_beams;
        let beam = if beams > 1 && greedy >= at_least {
            let reference = match self.beam.get() {
                Some(r) => r,
                None => {
                    let r = decode(self.model, &self.sources, beams)?.0;
                    self.beam.get_or_init(|| r)
                }
            };
            Some(share(
                &decode(candidate, &self.sources, beams)?.0,
                reference,
            ))
        } else {
            None
        };
        Ok(Agreement { greedy, beam })
    }
}

fn share(ours: &[Vec<u32>], theirs: &[Vec<u32>]) -> f64 {
    let same = ours.iter().zip(theirs).filter(|(a, b)| a == b).count();
    same as f64 / theirs.len() as f64
}

/// Outputs in padded batches of `BATCH`, each at most twice its longest source plus 8 tokens
/// (and `calibrate::MAX_TARGET_TOKENS`): a longer output is degenerate anyway, and untrained
/// weights, which never write `</s>`, would otherwise always decode to the limit. Also how many
/// outputs ended before that limit.
fn decode(
    model: &Translator,
    sources: &[Vec<u32>],
    beams: usize,
) -> Result<(Vec<Vec<u32>>, usize)> {
    let limit = calibrate::MAX_TARGET_TOKENS.min(model.model.config.max_position_embeddings);
    let mut out = Vec::with_capacity(sources.len());
    let mut finished = 0;
    for batch in sources.chunks(BATCH) {
        let longest = batch.iter().map(Vec::len).max().unwrap_or(0);
        let max_length = (2 * longest + 8).min(limit);
        let g = model.generation_for(&GenerateOptions {
            num_beams: Some(beams),
            max_length: Some(max_length),
            ..Default::default()
        })?;
        let outputs = generate(&model.model, batch, &g)?;
        finished += outputs.iter().filter(|o| o.len() < g.max_length).count();
        out.extend(outputs);
    }
    Ok((out, finished))
}
