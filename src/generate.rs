//! Generation as transformers' `generate` does it for Marian: greedy and beam search with
//! HF's length normalisation and stopping rule, `bad_words_ids`, forced EOS at
//! `max_length`, over a batch of sentences. Backends (CPU now, GPU later) only run the
//! network and pick each row's best candidates; all bookkeeping lives here, once.

use crate::config::GenerationConfig;
use crate::error::{Error, Result};

/// How a step's logits are turned into candidates.
#[derive(Debug, Clone)]
pub struct Select<'a> {
    /// How many candidates per row.
    pub k: usize,
    /// Score with log-softmax (beam search) rather than raw logits (greedy).
    pub log_softmax: bool,
    /// Tokens that may never be chosen (`bad_words_ids`).
    pub banned: &'a [u32],
    /// When set, only this token may be chosen (forced EOS at the last position).
    pub forced: Option<u32>,
}

/// The seam between the generation loop and a compute backend. Async because a browser's
/// GPU answers read-backs through its event loop; the CPU backend (and the native GPU
/// backend, which waits on its device) never suspends, so `ready` runs them synchronously.
#[allow(async_fn_in_trait)]
pub trait Backend {
    type State;
    /// Encode `batch` (ids ending in `</s>`) and prepare `num_beams` decoder rows each,
    /// for outputs of at most `max_length` tokens (decoder start token included).
    async fn start(
        &self,
        batch: &[Vec<u32>],
        num_beams: usize,
        max_length: usize,
    ) -> Result<Self::State>;
    /// Feed one token per row; return each row's best `select.k` (token, score), best first,
    /// ties broken by the lower token id.
    async fn step(
        &self,
        state: &mut Self::State,
        tokens: &[u32],
        select: &Select<'_>,
    ) -> Result<Vec<Vec<(u32, f32)>>>;
    /// Continue with these rows of the cache, in this order: beam search's reordering (as
    /// transformers' `_reorder_cache`) and dropping finished rows.
    async fn reorder_cache(&self, state: &mut Self::State, rows: &[u32]) -> Result<()>;
    /// Decode a started state of `sentences` sentences to the end: greedy or beam search as
    /// `g` says, `observe` told along the way; each sentence's full sequence, in order. A
    /// backend may override it to decode independent groups of sentences side by side (the
    /// CPU's row shards, `crate::backend`), which must give the same sequences.
    async fn decode(
        &self,
        state: Self::State,
        sentences: usize,
        g: &GenerationConfig,
        observe: &mut Observer<'_>,
    ) -> Result<Vec<Vec<u32>>>
    where
        Self: Sized,
    {
        decode_started(self, state, sentences, g, observe).await
    }
}

/// Run a future that never suspends (a CPU backend's, or a native GPU backend's) to its end.
/// Panics if it does suspend: such a backend must be awaited from an async caller.
pub fn ready<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => {
            panic!("a backend suspended inside a synchronous call; use the async API")
        }
    }
}

/// The reference candidate selection over a row of logits (CPU; a GPU does this on device):
/// scores are the logits (greedy) or their log-softmax (beam search), banned tokens score
/// -inf; the k best, best first, ties to the lower id. Reads the row in place.
pub fn top_k_of_row(logits: &[f32], select: &Select) -> Vec<(u32, f32)> {
    if let Some(tok) = select.forced {
        // ForcedEOSTokenLogitsProcessor: every other score is -inf, this one 0.
        return vec![(tok, 0.0)];
    }
    let lse = select.log_softmax.then(|| {
        let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = logits.iter().map(|&x| (x - max).exp()).sum();
        max + sum.ln()
    });
    let k = select.k.min(logits.len());
    if k == 0 {
        return Vec::new();
    }
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    let full = |best: &Vec<(u32, f32)>, s: f32| best.len() == k && s <= best[k - 1].1;
    for (i, &x) in logits.iter().enumerate() {
        let mut s = match lse {
            Some(l) => x - l,
            None => x,
        };
        if full(&best, s) {
            continue;
        }
        // Only candidates that would enter the list are checked against the (short) ban list.
        if select.banned.contains(&(i as u32)) {
            s = f32::NEG_INFINITY;
            if full(&best, s) {
                continue;
            }
        }
        let pos = best.partition_point(|&(_, bs)| bs >= s);
        best.insert(pos, (i as u32, s));
        best.truncate(k);
    }
    best
}

/// The k highest scores of a row with their ids, best first; ties keep the lower id first.
pub fn best_k(scores: &[f32], k: usize) -> Vec<(u32, f32)> {
    let k = k.min(scores.len());
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    for (i, &s) in scores.iter().enumerate() {
        if best.len() == k && s <= best[k - 1].1 {
            continue;
        }
        let pos = best.partition_point(|&(_, bs)| bs >= s);
        best.insert(pos, (i as u32, s));
        best.truncate(k);
    }
    best
}

/// Options a caller may override per request; `None` means the package's default.
#[derive(Debug, Clone, Default)]
pub struct GenerateOptions {
    pub num_beams: Option<usize>,
    pub max_length: Option<usize>,
    pub length_penalty: Option<f32>,
    /// A multi-target model's output language: one of `MarianTokenizer::language_tokens`, with
    /// or without its `>>`/`<<` (`fra` or `>>fra<<`), put before every text as transformers
    /// users write it; `None`: the translator's own (`Translator::target_language`). Used by
    /// `Translator`'s methods, not by `generate` itself.
    pub target_language: Option<String>,
}

impl GenerateOptions {
    pub fn resolve(&self, base: &GenerationConfig) -> Result<GenerationConfig> {
        let mut g = base.clone();
        if let Some(b) = self.num_beams {
            if b == 0 || b > 64 {
                return Err(Error::Input(format!("beams must be in 1..=64, got {b}")));
            }
            g.num_beams = b;
        }
        if let Some(m) = self.max_length {
            if m < 2 {
                return Err(Error::Input(format!(
                    "max length must be at least 2, got {m}"
                )));
            }
            g.max_length = m;
        }
        if let Some(lp) = self.length_penalty {
            g.length_penalty = lp;
        }
        Ok(g)
    }
}

fn banned(g: &GenerationConfig) -> Vec<u32> {
    g.bad_words_ids.iter().flatten().copied().collect()
}

fn forced_at(g: &GenerationConfig, cur_len: usize) -> Option<u32> {
    g.forced_eos_token_id
        .filter(|_| cur_len == g.max_length - 1)
}

/// Called after every decoding step with a sentence's index in the batch and the tokens its
/// final output is certain to start with (decoder start token first): for streaming output.
pub type Observer<'a> = dyn FnMut(usize, &[u32]) + 'a;

/// Greedy decoding of `sentences` sentences from a started state (one row each); returns each
/// sentence's full sequence as HF does: the decoder start token, the generated tokens, and EOS
/// when one was produced.
async fn greedy_from<B: Backend>(
    backend: &B,
    mut state: B::State,
    sentences: usize,
    g: &GenerationConfig,
    observe: &mut Observer<'_>,
) -> Result<Vec<Vec<u32>>> {
    let mut seqs: Vec<Vec<u32>> = vec![vec![g.decoder_start_token_id]; sentences];
    let mut live: Vec<usize> = (0..sentences).collect();
    let banned = banned(g);
    let mut cur_len = 1;
    while !live.is_empty() && cur_len < g.max_length {
        let tokens: Vec<u32> = live.iter().map(|&i| *seqs[i].last().unwrap()).collect();
        let select = Select {
            k: 1,
            log_softmax: false,
            banned: &banned,
            forced: forced_at(g, cur_len),
        };
        let best = backend.step(&mut state, &tokens, &select).await?;
        let mut keep = Vec::with_capacity(live.len());
        let mut still = Vec::with_capacity(live.len());
        for (row, &i) in live.iter().enumerate() {
            let tok = best[row][0].0;
            seqs[i].push(tok);
            observe(i, &seqs[i]);
            if !g.is_eos(tok) {
                keep.push(row as u32);
                still.push(i);
            }
        }
        cur_len += 1;
        if still.len() != live.len() && !still.is_empty() {
            backend.reorder_cache(&mut state, &keep).await?;
        }
        live = still;
    }
    Ok(seqs)
}

/// Finished hypotheses of one sentence: transformers' BeamHypotheses.
struct Hypotheses {
    /// (score, the sequence with the eos that ended it, if one did)
    beams: Vec<(f64, Vec<u32>)>,
    worst: f64,
    num_beams: usize,
    length_penalty: f64,
    early_stopping: bool,
}

impl Hypotheses {
    fn new(g: &GenerationConfig) -> Self {
        Hypotheses {
            beams: Vec::new(),
            worst: 1e9,
            num_beams: g.num_beams,
            length_penalty: g.length_penalty as f64,
            early_stopping: g.early_stopping,
        }
    }

    /// `generated_len` counts generated tokens (EOS included), not the start token.
    fn add(&mut self, seq: Vec<u32>, sum_logprobs: f32, generated_len: usize) {
        let score = sum_logprobs as f64 / (generated_len as f64).powf(self.length_penalty);
        if self.beams.len() < self.num_beams || score > self.worst {
            self.beams.push((score, seq));
            if self.beams.len() > self.num_beams {
                let mut order: Vec<(f64, usize)> = self
                    .beams
                    .iter()
                    .enumerate()
                    .map(|(i, b)| (b.0, i))
                    .collect();
                order.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
                self.beams.remove(order[0].1);
                self.worst = order[1].0;
            } else {
                self.worst = self.worst.min(score);
            }
        }
    }

    fn is_done(&self, best_sum_logprobs: f32, generated_len: usize) -> bool {
        if self.beams.len() < self.num_beams {
            return false;
        }
        if self.early_stopping {
            return true;
        }
        let best = best_sum_logprobs as f64 / (generated_len as f64).powf(self.length_penalty);
        self.worst >= best
    }

    /// The highest score; among equal scores the last added (Python's sorted + pop).
    fn best(self) -> Vec<u32> {
        let mut best: Option<(f64, Vec<u32>)> = None;
        for b in self.beams {
            if best.as_ref().is_none_or(|x| b.0 >= x.0) {
                best = Some(b);
            }
        }
        best.expect("at least one hypothesis").1
    }
}

/// The tokens all of a sentence's running beams and finished hypotheses share: every later
/// hypothesis extends a running beam, so the final output starts with them.
fn agreed_prefix<'a>(mut seqs: impl Iterator<Item = &'a [u32]>) -> &'a [u32] {
    let Some(first) = seqs.next() else {
        return &[];
    };
    let mut n = first.len();
    for s in seqs {
        n = n.min(first.iter().zip(s).take_while(|(a, b)| a == b).count());
    }
    &first[..n]
}

/// Beam search exactly as transformers 5's `_beam_search`: 2×beams candidates per step over
/// beams × vocabulary; only candidates ranked within the first `num_beams` may finish (EOS,
/// or anything at max_length), scored sum-logprob / generated_len^length_penalty (EOS
/// counted, start token not); the rest continue as the `num_beams` best running beams.
/// Here over `n` sentences from a started state (`g.num_beams` rows each).
async fn beam_search_from<B: Backend>(
    backend: &B,
    mut state: B::State,
    n: usize,
    g: &GenerationConfig,
    observe: &mut Observer<'_>,
) -> Result<Vec<Vec<u32>>> {
    let nb = g.num_beams;
    let banned = banned(g);
    // Per sentence: its running beams (tokens, score); the first beam alone is live at start.
    let mut beams: Vec<Vec<(Vec<u32>, f32)>> = (0..n)
        .map(|_| {
            (0..nb)
                .map(|j| {
                    (
                        vec![g.decoder_start_token_id],
                        if j == 0 { 0.0 } else { -1e9 },
                    )
                })
                .collect()
        })
        .collect();
    let mut hyps: Vec<Hypotheses> = (0..n).map(|_| Hypotheses::new(g)).collect();
    let mut live: Vec<usize> = (0..n).collect();
    let mut cur_len = 1;
    while !live.is_empty() {
        let tokens: Vec<u32> = live
            .iter()
            .flat_map(|&s| beams[s].iter().map(|b| *b.0.last().unwrap()))
            .collect();
        let select = Select {
            k: 2 * nb,
            log_softmax: true,
            banned: &banned,
            forced: forced_at(g, cur_len),
        };
        let cands = backend.step(&mut state, &tokens, &select).await?;
        let mut next_live = Vec::with_capacity(live.len());
        let mut rows = Vec::with_capacity(live.len() * nb);
        for (li, &s) in live.iter().enumerate() {
            // Merge this sentence's rows into one ranking, as topk over beams × vocab.
            let mut all: Vec<(f32, usize, u32)> = Vec::with_capacity(nb * 2 * nb);
            for j in 0..nb {
                let base = beams[s][j].1;
                for &(tok, sc) in &cands[li * nb + j] {
                    all.push((base + sc, j, tok));
                }
            }
            all.sort_by(|a, b| {
                b.0.partial_cmp(&a.0)
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then(a.1.cmp(&b.1))
                    .then(a.2.cmp(&b.2))
            });
            all.truncate(2 * nb);
            // At max_length every candidate hits a stopping criterion: the top `nb` finish.
            let last_step = cur_len + 1 >= g.max_length;
            let mut next: Vec<(Vec<u32>, f32)> = Vec::with_capacity(nb);
            let mut src_rows = Vec::with_capacity(nb);
            for (rank, &(score, j, tok)) in all.iter().enumerate() {
                if g.is_eos(tok) || last_step {
                    if rank < nb {
                        // The eos that ended it too (there may be several), as HF outputs it.
                        let mut seq = beams[s][j].0.clone();
                        seq.push(tok);
                        hyps[s].add(seq, score, cur_len);
                    }
                    continue;
                }
                if next.len() < nb {
                    let mut seq = beams[s][j].0.clone();
                    seq.push(tok);
                    next.push((seq, score));
                    src_rows.push((li * nb + j) as u32);
                }
            }
            if last_step {
                continue;
            }
            // Fewer than `nb` running candidates only happens with forced EOS, one step
            // before max_length; the padding beams are never extended.
            let best_running = next.first().map(|b| b.1).unwrap_or(-1e9);
            while next.len() < nb {
                next.push((beams[s][0].0.clone(), -1e9));
                src_rows.push((li * nb) as u32);
            }
            // transformers 5: done once the best running beam cannot beat the worst kept one.
            let done = hyps[s].is_done(best_running, cur_len);
            beams[s] = next;
            observe(
                s,
                agreed_prefix(
                    beams[s]
                        .iter()
                        .filter(|b| b.1 > -1e9)
                        .map(|b| b.0.as_slice())
                        .chain(hyps[s].beams.iter().map(|h| h.1.as_slice())),
                ),
            );
            if !done {
                next_live.push(s);
                rows.extend(src_rows);
            }
        }
        cur_len += 1;
        if next_live.is_empty() || cur_len >= g.max_length {
            break;
        }
        backend.reorder_cache(&mut state, &rows).await?;
        live = next_live;
    }
    Ok(hyps.into_iter().map(Hypotheses::best).collect())
}

/// Greedy when `num_beams` is 1, beam search otherwise.
pub fn generate<B: Backend>(
    backend: &B,
    batch: &[Vec<u32>],
    g: &GenerationConfig,
) -> Result<Vec<Vec<u32>>> {
    generate_observed(backend, batch, g, &mut |_, _| {})
}

/// `generate`, telling `observe` after each step what each sentence's output will start with.
pub fn generate_observed<B: Backend>(
    backend: &B,
    batch: &[Vec<u32>],
    g: &GenerationConfig,
    observe: &mut Observer<'_>,
) -> Result<Vec<Vec<u32>>> {
    ready(generate_async(backend, batch, g, observe))
}

/// `generate_observed` for backends that suspend (WebGPU in a browser).
pub async fn generate_async<B: Backend>(
    backend: &B,
    batch: &[Vec<u32>],
    g: &GenerationConfig,
    observe: &mut Observer<'_>,
) -> Result<Vec<Vec<u32>>> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let state = backend.start(batch, g.num_beams, g.max_length).await?;
    backend.decode(state, batch.len(), g, observe).await
}

/// The generation loop from a started state of `sentences` sentences: greedy when
/// `g.num_beams` is 1 (one row a sentence), beam search otherwise (`g.num_beams` rows a
/// sentence). What [`Backend::decode`] runs unless a backend overrides it.
pub async fn decode_started<B: Backend>(
    backend: &B,
    state: B::State,
    sentences: usize,
    g: &GenerationConfig,
    observe: &mut Observer<'_>,
) -> Result<Vec<Vec<u32>>> {
    if g.num_beams == 1 {
        greedy_from(backend, state, sentences, g, observe).await
    } else {
        beam_search_from(backend, state, sentences, g, observe).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_breaks_ties_by_lower_id_and_masks() {
        let sel = Select {
            k: 2,
            log_softmax: false,
            banned: &[3],
            forced: None,
        };
        assert_eq!(
            top_k_of_row(&[1.0, 5.0, 5.0, 9.0], &sel),
            vec![(1, 5.0), (2, 5.0)]
        );
        let forced = Select {
            k: 4,
            log_softmax: true,
            banned: &[],
            forced: Some(0),
        };
        assert_eq!(top_k_of_row(&[1.0, 2.0], &forced), vec![(0, 0.0)]);
    }

    #[test]
    fn log_softmax_scores_sum_to_one() {
        let sel = Select {
            k: 3,
            log_softmax: true,
            banned: &[],
            forced: None,
        };
        let got = top_k_of_row(&[0.5, -1.0, 2.0], &sel);
        let total: f32 = got.iter().map(|x| x.1.exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
        assert_eq!(got[0].0, 2);
    }
}
