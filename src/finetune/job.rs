//! A fine-tuning job: the pairs checked and tokenized (`prepare`), the plan of its features
//! pass in shards (`FineTuneJob::shard_plan`), the shards' inputs as one flat array for
//! another worker (`shard_inputs` / `decode_shard_inputs`) and their results joined back in
//! pair order (`join_shards`).

use super::pairs::Pair;
use super::positions::{self, FeatureClock, FeatureShard, Positions};
use super::FineTuneOptions;
use crate::error::{Error, Result};
use crate::translator::Translator;
use web_time::Instant;

/// Each pair's source ids (after the translator's target-language token on a multi-target
/// model, as translation puts it: `Translator::language_prefix`) and target ids.
pub(super) fn encode_pairs(t: &Translator, pairs: &[Pair]) -> Result<Vec<(Vec<u32>, Vec<u32>)>> {
    let limit = t.model.config.max_position_embeddings;
    let sources: Vec<&str> = pairs.iter().map(|p| p.source.as_str()).collect();
    let language = t.language_prefix(None, &sources)?;
    pairs
        .iter()
        .map(|p| {
            // A source with its own code keeps it (as translation does).
            let own = crate::tokenizer::starts_with_language_code(&p.source);
            let s = t
                .tokenizer
                .encode_after(language.as_deref().filter(|_| !own), &p.source)?;
            let y = t.tokenizer.encode_target(&p.target)?;
            if s.len() > limit || y.len() > limit {
                return Err(Error::Input(format!(
                    "pair on line {}: {} source / {} target tokens, the model takes at most {limit}",
                    p.line,
                    s.len(),
                    y.len()
                )));
            }
            Ok((s, y))
        })
        .collect()
}

/// A fine-tuning job (the browser's `fineTuneJob`): a run's pairs, checked and tokenized, the
/// training pairs, then the validation pairs. The features pass runs over them in one piece
/// or in shards (`shard_plan`), on one worker or several; `train_adapter` takes the shards
/// back.
pub struct FineTuneJob {
    pub(super) ids: Vec<(Vec<u32>, Vec<u32>)>,
    pub(super) n_train: usize,
    pub(super) started: Instant,
}

impl FineTuneJob {
    /// Pairs in all (training and validation).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Source and target token ids of the pairs `which` (a shard of `shard_plan`), in that order.
    pub fn pairs_of(&self, which: &[usize]) -> Vec<(Vec<u32>, Vec<u32>)> {
        which.iter().map(|&i| self.ids[i].clone()).collect()
    }

    /// The pairs `which` (a shard of `shard_plan`) as one flat array for another worker's
    /// features pass: [pairs, then per pair: source length, source ids, target length, target
    /// ids]; `decode_shard_inputs` reads it back.
    pub fn shard_inputs(&self, which: &[usize]) -> Vec<u32> {
        encode_shard_inputs(&self.pairs_of(which))
    }

    /// The features pass cut into at most `n` shards of about equal work, each a list of pair
    /// indices: whole batches of the pass in one piece (pairs sorted by target length), so a
    /// shard batches its pairs exactly as the pass in one piece would. A target token costs
    /// about three source tokens (decoder layers with cross-attention, then the 59514-wide
    /// projection, against the encoder's layers).
    pub fn shard_plan(&self, n: usize) -> Vec<Vec<usize>> {
        let batches = positions::length_batches(
            self.ids.len(),
            positions::TOKENS_PER_BATCH,
            usize::MAX,
            |i| self.ids[i].1.len(),
        );
        let cost = |b: &Vec<usize>| -> f64 {
            b.iter()
                .map(|&i| (self.ids[i].0.len() + 3 * self.ids[i].1.len()) as f64)
                .sum()
        };
        let total: f64 = batches.iter().map(cost).sum();
        let n = n.clamp(1, batches.len().max(1));
        let mut plan: Vec<Vec<usize>> = vec![Vec::new()];
        let mut acc = 0.0;
        let last = batches.len().saturating_sub(1);
        for (j, b) in batches.iter().enumerate() {
            acc += cost(b);
            plan.last_mut().expect("one shard at least").extend(b);
            if acc >= total * plan.len() as f64 / n as f64 && plan.len() < n && j < last {
                plan.push(Vec::new());
            }
        }
        plan
    }

    /// The plan of the pass in one piece: every pair, in order.
    pub fn whole(&self) -> Vec<Vec<usize>> {
        vec![(0..self.ids.len()).collect()]
    }
}

/// The start of a run: check the options, tokenize the pairs (a pair longer than the model
/// takes is an error naming its line).
pub fn prepare(
    t: &Translator,
    train: &[Pair],
    val: &[Pair],
    o: &FineTuneOptions,
) -> Result<FineTuneJob> {
    o.validate()?;
    let vocab = t.model.target_vocab_size();
    if o.top_k > vocab {
        // Every position keeps exactly top_k candidates.
        return Err(Error::Input(format!(
            "top-k {} exceeds the target vocabulary ({vocab})",
            o.top_k
        )));
    }
    if train.is_empty() {
        return Err(Error::Input("no training pairs".into()));
    }
    let started = Instant::now();
    let mut ids = encode_pairs(t, train)?;
    ids.extend(encode_pairs(t, val)?);
    Ok(FineTuneJob {
        ids,
        n_train: train.len(),
        started,
    })
}

/// Join the shards of `plan` (one per entry, in order) into pair order after checking that
/// they are this run's: same model, top-k and width, and exactly its pairs' targets.
pub(super) fn join_shards(
    t: &Translator,
    job: &FineTuneJob,
    plan: &[Vec<usize>],
    shards: Vec<FeatureShard>,
    o: &FineTuneOptions,
) -> Result<(Positions, FeatureClock)> {
    let vocab = t.model.target_vocab_size() as u32;
    let d = t.model.config.d_model;
    let mut clock = FeatureClock::default();
    if shards.len() != plan.len() {
        return Err(Error::Input(format!(
            "{} feature shards for a plan of {}",
            shards.len(),
            plan.len()
        )));
    }
    for (i, s) in shards.iter().enumerate() {
        let why = if s.pairs != plan[i].len() {
            Some(format!(
                "it covers {} pairs, the plan {}",
                s.pairs,
                plan[i].len()
            ))
        } else if s.model_sha256 != t.model_sha256 {
            Some("it was computed by another model".to_string())
        } else if s.top_k != o.top_k {
            Some(format!("its top-k is {}, the run's {}", s.top_k, o.top_k))
        } else if s.positions.hidden.dim(1)? != d {
            Some(format!("its hidden states are not {d} wide"))
        } else if s.positions.top.iter().any(|&x| x >= vocab) {
            Some("it names tokens outside the vocabulary".to_string())
        } else {
            None
        };
        if let Some(why) = why {
            return Err(Error::Input(format!(
                "feature shard {i} does not fit this run: {why}"
            )));
        }
        clock.model += s.clock.model;
        clock.vocabulary += s.clock.vocabulary;
    }
    // Row of each pair's first position in the shards joined as they come.
    let mut first_row = vec![usize::MAX; job.len()];
    let mut row = 0;
    for &i in plan.iter().flatten() {
        if i >= job.len() || first_row[i] != usize::MAX {
            return Err(Error::Input(
                "the shard plan names a pair twice or one beyond the run".into(),
            ));
        }
        first_row[i] = row;
        row += job.ids[i].1.len();
    }
    let joined = Positions::concat(shards.into_iter().map(|s| s.positions).collect())?;
    if first_row.contains(&usize::MAX) || joined.len() != row {
        return Err(Error::Input(format!(
            "the feature shards cover {} positions, not this run's {row} positions of {} pairs",
            joined.len(),
            job.len()
        )));
    }
    let rows: Vec<u32> = job
        .ids
        .iter()
        .zip(&first_row)
        .flat_map(|(p, &r)| (r..r + p.1.len()).map(|x| x as u32))
        .collect();
    let positions = joined.gather(&rows)?;
    let targets = job.ids.iter().flat_map(|p| p.1.iter().copied());
    if !positions.labels.iter().copied().eq(targets) {
        return Err(Error::Input(
            "the feature shards are not this run's pairs in the plan's order".into(),
        ));
    }
    Ok((positions, clock))
}

/// `FineTuneJob::shard_inputs`' encoding of source and target token ids.
pub(super) fn encode_shard_inputs(pairs: &[(Vec<u32>, Vec<u32>)]) -> Vec<u32> {
    let mut flat = vec![pairs.len() as u32];
    for (s, t) in pairs {
        flat.push(s.len() as u32);
        flat.extend(s.iter().copied());
        flat.push(t.len() as u32);
        flat.extend(t.iter().copied());
    }
    flat
}

/// The pairs' token ids from `FineTuneJob::shard_inputs`' encoding.
/// Errors: `Error::Input` when the array is cut short or runs past its last pair.
pub fn decode_shard_inputs(flat: &[u32]) -> Result<Vec<(Vec<u32>, Vec<u32>)>> {
    let bad = || Error::Input("malformed fine-tuning shard inputs".into());
    let mut it = flat.iter().copied();
    let n = it.next().ok_or_else(bad)? as usize;
    let mut take = || -> Result<Vec<u32>> {
        let len = it.next().ok_or_else(bad)? as usize;
        let v: Vec<u32> = it.by_ref().take(len).collect();
        if v.len() == len {
            Ok(v)
        } else {
            Err(bad())
        }
    };
    let mut pairs = Vec::with_capacity(n.min(flat.len()));
    for _ in 0..n {
        let s = take()?;
        let t = take()?;
        pairs.push((s, t));
    }
    if it.next().is_some() {
        return Err(bad());
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_inputs_round_trip_and_malformed_ones_are_refused() {
        let pairs = vec![
            (vec![5, 6, 0], vec![7, 0]),
            (vec![0], vec![]),
            (vec![9; 40], vec![3, 4, 5, 0]),
        ];
        let flat = encode_shard_inputs(&pairs);
        assert_eq!(decode_shard_inputs(&flat).unwrap(), pairs);
        assert_eq!(decode_shard_inputs(&[0]).unwrap(), vec![]);
        for cut in 0..flat.len() {
            assert!(decode_shard_inputs(&flat[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = flat.clone();
        longer.push(1);
        assert!(decode_shard_inputs(&longer).is_err());
        assert!(decode_shard_inputs(&[u32::MAX, 1, 2]).is_err());
    }
}
