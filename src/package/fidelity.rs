//! How closely a quantized package translates like the f32 model it was converted from, and
//! `convert`'s choice of the cheapest package that does so closely enough (issue 17).
//!
//! The measure: on source sentences, the share of outputs token-identical to the f32 model's
//! and the BLEU of the decoded outputs against its decoded outputs, greedy and with the model's
//! own beam count — how issue 17 holds packages against transformers (the f32 package is
//! token-identical to transformers, so agreeing with it is agreeing with transformers).
//!
//! The choice (`choose`): each quantization has a ladder of ever more faithful and costlier
//! packages (`ladder`); convert measures them in order and keeps the first that meets the
//! target, so a model pays in size or speed only for the fidelity it lacks.

use super::calibrate;
use super::quant::{Quant, StoredTensor};
use crate::error::Result;
use crate::generate::{generate, GenerateOptions};
use crate::translator::Translator;

/// Sentences decoded at once while measuring (padded batches, as the CLI translates).
const BATCH: usize = 32;

/// How many sampled sentences `convert` measures on (beside the calibration ones): a share near
/// 96 % is then known to about ±1 point (binomial standard error).
pub const SENTENCES: usize = 400;

/// A step costs speed when it adds more than this share to the bytes one decoder step
/// streams through its layers' matrices (`decode_step_bytes`; decoding at small batches is
/// memory-bound): on the opus-mt-en-fr shape the decoder's residual adds 50 % (every matrix is
/// q8) and costs 22 % at batch 1; where most of a decoder's matrices are not q8 (widths that
/// are not a multiple of 32 stay f32) it adds a few percent and costs nothing measurable
/// (BENCHMARKS.md 2026-12-06 (night)).
pub const COSTLY_STEP_SHARE: f64 = 0.10;

/// A step that costs speed (`COSTLY_STEP_SHARE`) is taken only when the step before it misses
/// the target by more than this many standard errors of its measured share: sampled text
/// drifts more than real text (BENCHMARKS.md 2026-12-06 (morning): on a d_model 256 model the
/// embeddings' residual measured 96.2 % in beam search on sampled text and 99.6 % on Multi30k),
/// so a miss within the measure's noise does not justify 22 % of speed.
pub const COSTLY_STEP_MARGIN_SE: f64 = 2.0;

/// Under this share of the f32 model's own translations ending with `</s>` (before twice the
/// source length plus 8 tokens), the weights are taken to be untrained — a benchmark subject
/// with random weights, whose decisions are near ties that any rounding flips — and the plain
/// package is kept without measuring: a costlier step would buy nothing there.
pub const TRAINED_MIN_FINISHED: f64 = 0.5;

/// What a package must reach against the f32 model, in both searches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// At least this share (0..=1) of sentences token-identical.
    Identical(f64),
    /// At least this BLEU (0..=100) of the decoded outputs against the f32 model's.
    Bleu(f64),
}

impl Target {
    /// Issue 17's targets against transformers: q8 ≥ 97 % of sentences identical; q4 BLEU
    /// ≥ 90 against transformers' output. `None` for f32 and f16 (nothing to choose).
    pub fn default_for(quant: Quant) -> Option<Target> {
        match quant {
            Quant::Q8 => Some(Target::Identical(0.97)),
            Quant::Q4 => Some(Target::Bleu(90.0)),
            Quant::F32 | Quant::F16 => None,
        }
    }

    /// The same kind of target at `value` given as a person writes it (percent for
    /// `Identical`, BLEU points for `Bleu`); errors outside 50..=100.
    pub fn with_value(self, value: f64) -> std::result::Result<Target, String> {
        if !(50.0..=100.0).contains(&value) {
            return Err(format!(
                "the fidelity target must be in 50..=100, got {value}"
            ));
        }
        Ok(match self {
            Target::Identical(_) => Target::Identical(value / 100.0),
            Target::Bleu(_) => Target::Bleu(value),
        })
    }

    fn met_by(self, m: &Measure) -> bool {
        match self {
            Target::Identical(share) => m.identical >= share,
            Target::Bleu(bleu) => m.bleu >= bleu,
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Identical(s) => write!(f, "{:.0} % identical", s * 100.0),
            Target::Bleu(b) => write!(f, "BLEU {b:.0}"),
        }
    }
}

/// One step of a ladder: matrices kept at q8 in a q4 package and q8 matrices given a residual,
/// named as `convert`'s `--keep-q8` / `--residual` parts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Step {
    pub keep_q8: Vec<String>,
    pub residual: Vec<String>,
}

/// Bytes one decoder step streams through its layers' stored matrices (values, scales and
/// residuals): every `decoder.layers.*` tensor except the cross-attention's key and value
/// projections, which are applied to the encoder's output once per sentence. The output
/// projection is left out: it adds an embedding residual only for the tokens that can be
/// chosen (`model::screened_head`), so that residual costs no speed.
pub fn decode_step_bytes(stored: &[StoredTensor]) -> usize {
    stored
        .iter()
        .filter(|t| {
            t.name.starts_with("decoder.layers.")
                && !t.name.contains("encoder_attn.k_proj")
                && !t.name.contains("encoder_attn.v_proj")
        })
        .map(|t| t.data.len())
        .sum()
}

/// A package `choose` may keep, built for one step.
pub struct Candidate {
    pub translator: Translator,
    /// `decode_step_bytes` of its stored tensors.
    pub decode_step_bytes: usize,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.keep_q8.is_empty() && self.residual.is_empty() {
            return f.write_str("plain");
        }
        let mut parts = Vec::new();
        if !self.keep_q8.is_empty() {
            parts.push(format!("--keep-q8 {}", self.keep_q8.join(",")));
        }
        if !self.residual.is_empty() {
            parts.push(format!("--residual {}", self.residual.join(",")));
        }
        f.write_str(&parts.join(" "))
    }
}

/// The steps `convert` tries for `quant`, cheapest first (BENCHMARKS.md 2026-12-04/05 measured
/// where each package's drift comes from and what each step costs on the opus-mt-en-fr shape):
/// - q8: plain; the residual on the embeddings (the tied output projection adds it only for the
///   tokens that can be chosen: +15 MB, no speed); also on the decoder's matrices (+28 MB,
///   −22 % at batch 1 natively). No smaller set of decoder matrices helped.
/// - q4: plain; the decoder's matrices at q8 (where q4's drift comes from: +13 MB, same speed
///   on the CPU, which unpacks q4 to 8 bits anyway). Not the embeddings' residual as well: it
///   brings a q4 package past plain q8's size (≈ 87 against 82 MB), and q8 is then the better
///   package.
///
/// Empty for f32 and f16.
pub fn ladder(quant: Quant) -> Vec<Step> {
    let parts = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    match quant {
        Quant::Q8 => vec![
            Step::default(),
            Step {
                keep_q8: vec![],
                residual: parts(&["embeddings"]),
            },
            Step {
                keep_q8: vec![],
                residual: parts(&["embeddings", "decoder."]),
            },
        ],
        Quant::Q4 => vec![
            Step::default(),
            Step {
                keep_q8: parts(&["decoder."]),
                residual: vec![],
            },
        ],
        Quant::F32 | Quant::F16 => Vec::new(),
    }
}

/// One search's agreement with the reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measure {
    /// Share (0..=1) of sentences whose output is token-identical to the reference's.
    pub identical: f64,
    /// BLEU (sacreBLEU's defaults, `metrics::corpus_bleu`) of the decoded outputs against the
    /// reference's decoded outputs.
    pub bleu: f64,
}

/// A candidate's agreement with the reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agreement {
    pub greedy: Measure,
    /// With the model's default beam count; `None` when that is 1 (greedy already) or when
    /// greedy already missed the target (not measured).
    pub beam: Option<Measure>,
}

impl Agreement {
    /// Whether both searches meet `target` (a search not measured does not).
    pub fn meets(&self, target: Target, num_beams: usize) -> bool {
        target.met_by(&self.greedy)
            && (num_beams <= 1 || self.beam.is_some_and(|b| target.met_by(&b)))
    }
}

impl std::fmt::Display for Agreement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let one =
            |m: &Measure| format!("{:.1} % identical, BLEU {:.2}", m.identical * 100.0, m.bleu);
        write!(f, "greedy {}", one(&self.greedy))?;
        if let Some(b) = &self.beam {
            write!(f, "; beam {}", one(b))?;
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

    /// Never true: `new` refuses an empty set.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// The model's default beam count: the second search measured.
    pub fn num_beams(&self) -> usize {
        self.model.generation.num_beams
    }

    /// Share of the reference's greedy outputs that ended before their length limit: near 1
    /// for a trained translator, 0 for untrained (random) weights, which never write `</s>`.
    pub fn finished(&self) -> f64 {
        self.finished as f64 / self.sources.len() as f64
    }

    /// `candidate`'s agreement with the reference on the same sentences: greedy, and with the
    /// model's default beam count only where greedy meets `target` (below it, the candidate
    /// misses the target whatever beam search gives).
    pub fn agreement(&self, candidate: &Translator, target: Target) -> Result<Agreement> {
        let greedy = self.measure(
            candidate,
            &decode(candidate, &self.sources, 1)?.0,
            &self.greedy,
        )?;
        let num_beams = self.num_beams();
        // Beam search is measured where greedy does not already miss the target clearly: a
        // miss within the noise still decides whether a costly step is worth trying.
        let near = target.met_by(&greedy) || !clearly_below(greedy.identical, target, self.len());
        let beam = if num_beams > 1 && near {
            let reference = match self.beam.get() {
                Some(r) => r,
                None => {
                    let r = decode(self.model, &self.sources, num_beams)?.0;
                    self.beam.get_or_init(|| r)
                }
            };
            let ours = decode(candidate, &self.sources, num_beams)?.0;
            Some(self.measure(candidate, &ours, reference)?)
        } else {
            None
        };
        Ok(Agreement { greedy, beam })
    }

    fn measure(&self, t: &Translator, ours: &[Vec<u32>], theirs: &[Vec<u32>]) -> Result<Measure> {
        let same = ours.iter().zip(theirs).filter(|(a, b)| a == b).count();
        let text = |v: &[Vec<u32>]| {
            v.iter()
                .map(|ids| t.tokenizer.decode(ids))
                .collect::<Vec<_>>()
        };
        Ok(Measure {
            identical: same as f64 / theirs.len() as f64,
            bleu: crate::metrics::corpus_bleu(&text(ours), &text(theirs))?.score,
        })
    }
}

/// Outputs in padded batches of `BATCH`, each at most twice its longest source plus 8 tokens
/// (and `calibrate::MAX_TARGET_TOKENS`): a longer output is degenerate anyway, and untrained
/// weights, which never write `</s>`, would otherwise always decode to the limit. Also how many
/// outputs ended before that limit.
fn decode(
    model: &Translator,
    sources: &[Vec<u32>],
    num_beams: usize,
) -> Result<(Vec<Vec<u32>>, usize)> {
    let limit = calibrate::MAX_TARGET_TOKENS.min(model.model.config.max_position_embeddings);
    let mut out = Vec::with_capacity(sources.len());
    let mut finished = 0;
    for batch in sources.chunks(BATCH) {
        let longest = batch.iter().map(Vec::len).max().unwrap_or(0);
        let g = model.generation_for(&GenerateOptions {
            num_beams: Some(num_beams),
            max_length: Some((2 * longest + 8).min(limit)),
            ..Default::default()
        })?;
        let outputs = generate(&model.model, batch, &g)?;
        finished += outputs.iter().filter(|o| o.len() < g.max_length).count();
        out.extend(outputs);
    }
    Ok((out, finished))
}

/// What `choose` measured and kept.
#[derive(Debug, Clone)]
pub struct Choice {
    pub target: Target,
    /// Each tried step and its agreement with the f32 model, in ladder order.
    pub tried: Vec<(Step, Agreement)>,
    /// The step the package is written with.
    pub kept: Step,
    /// How many sentences each agreement is over.
    pub sentences: usize,
    /// Share of those the f32 model translated to `</s>` (`Reference::finished`).
    pub finished: f64,
    /// Why that step, in a sentence.
    pub reason: String,
}

/// Measures the steps of `ladder(quant)` in order, each package made by `build`, and keeps the
/// first that meets `target` in both searches; when none does, the last (most faithful) step.
/// A step that costs speed (more than `COSTLY_STEP_SHARE` added to `decode_step_bytes` over
/// the plain step's) is tried only when the one before misses the target clearly
/// (`COSTLY_STEP_MARGIN_SE`); otherwise that one is kept.
/// Keeps the plain package without measuring when the reference model looks untrained
/// (`TRAINED_MIN_FINISHED`). Errors are `build`'s or decoding's.
pub fn choose(
    reference: &Reference,
    quant: Quant,
    target: Target,
    mut build: impl FnMut(&Step) -> Result<Candidate>,
) -> Result<Choice> {
    let sentences = reference.len();
    let finished = reference.finished();
    if finished < TRAINED_MIN_FINISHED {
        return Ok(Choice {
            target,
            tried: Vec::new(),
            kept: Step::default(),
            sentences,
            finished,
            reason: format!(
                "plain {quant}: the f32 model finished only {:.0} % of {sentences} \
                 sentences' translations (untrained weights?), so fidelity cannot be measured",
                finished * 100.0
            ),
        });
    }
    let mut tried: Vec<(Step, Agreement)> = Vec::new();
    let mut plain_bytes = None;
    let mut within_noise = false;
    let mut kept_added = 0.0;
    for step in ladder(quant) {
        let candidate = build(&step)?;
        let plain = *plain_bytes.get_or_insert(candidate.decode_step_bytes);
        let added = candidate.decode_step_bytes.saturating_sub(plain) as f64 / plain.max(1) as f64;
        if let Some((_, before)) = tried.last() {
            if added > COSTLY_STEP_SHARE && !clearly_misses(before, target, sentences) {
                within_noise = true;
                break;
            }
        }
        let agreement = reference.agreement(&candidate.translator, target)?;
        let met = agreement.meets(target, reference.num_beams());
        tried.push((step, agreement));
        kept_added = added;
        if met {
            break;
        }
    }
    let (kept, agreement) = tried.last().cloned().expect("q8 and q4 have ladders");
    let why = if agreement.meets(target, reference.num_beams()) {
        ""
    } else if within_noise {
        ", under the target by less than the measure's noise (the next step costs speed)"
    } else {
        ", the most faithful step, under the target"
    };
    let cost = if kept_added > 0.0 {
        format!(" (+{:.1} % of a decoder step's bytes)", kept_added * 100.0)
    } else {
        String::new()
    };
    let reason = format!(
        "{quant} {kept}{cost}{why}: {agreement} against the f32 model on {sentences} \
         sentences (target {target})"
    );
    Ok(Choice {
        target,
        tried,
        kept,
        sentences,
        finished,
        reason,
    })
}

/// Whether `a` misses `target` by more than `COSTLY_STEP_MARGIN_SE` standard errors of its
/// measured shares over `n` sentences (BLEU targets have no such error estimate: every miss
/// counts).
fn clearly_misses(a: &Agreement, target: Target, n: usize) -> bool {
    if let Target::Bleu(_) = target {
        return !target.met_by(&a.greedy) || a.beam.is_some_and(|b| !target.met_by(&b));
    }
    clearly_below(a.greedy.identical, target, n)
        || a.beam
            .is_some_and(|b| clearly_below(b.identical, target, n))
}

/// Whether a share `p` measured over `n` sentences is below an `Identical` target by more than
/// `COSTLY_STEP_MARGIN_SE` binomial standard errors (BLEU targets: never).
fn clearly_below(p: f64, target: Target, n: usize) -> bool {
    let Target::Identical(want) = target else {
        return false;
    };
    let se = (p * (1.0 - p) / n.max(1) as f64).sqrt();
    p < want - COSTLY_STEP_MARGIN_SE * se
}
