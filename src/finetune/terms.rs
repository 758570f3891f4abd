//! What a run teaches: the words of the user's targets that the base model consistently would
//! not have written (the user's terms), found by word and tested against how often this
//! model finds any of the pairs' words unlikely; and from them the head correction's entries
//! and the positions that carry cross-entropy.
//!
//! Why by word and by test: a term the target tokenizer splits ("galurin" = "▁g al ur in",
//! "auto" = "▁au t o" in a small vocabulary) is taught as its first piece (anywhere the
//! hidden state calls for it) and its later pieces each *after its predecessor* only, so that
//! raising "t" after "▁au" does not raise "t" everywhere else. And a weak model finds 40 % of
//! all target positions unlikely (a strong one 6 %): an absolute threshold alone would teach
//! hundreds of ordinary words there and move unrelated output; a word is taught only when its
//! count of unlikely occurrences would be improbable at this model's own rate (a binomial
//! tail), which scales with the number of pairs and the model's strength.

use super::positions::Positions;
use super::FineTuneOptions;
use crate::adapter::NOT_CONDITIONED;
use std::collections::{BTreeSet, HashMap, HashSet};

/// What is taught at position `i`: its target token, conditioned on the previous token when
/// the target continues a word (`NOT_CONDITIONED` at a word's first piece); `None` for a
/// special token (`</s>`), never taught.
fn unit(pos: &Positions, i: usize, continues: &[bool], special: &[u32]) -> Option<(u32, u32)> {
    let y = pos.labels[i];
    if special.contains(&y) {
        return None;
    }
    let after = match pos.prev[i] {
        Some(p) if continues.get(y as usize).copied().unwrap_or(false) => p,
        _ => NOT_CONDITIONED,
    };
    Some((after, y))
}

/// P(X ≥ k) for X ~ Binomial(n, r), summed in log space (n is at most a few thousand).
pub(super) fn binomial_tail(k: usize, n: usize, r: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if r <= 0.0 {
        return 0.0;
    }
    if r >= 1.0 {
        return 1.0;
    }
    let (lr, lq) = (r.ln(), (1.0 - r).ln());
    // ln C(n, j) for j = k.., built up from ln C(n, k).
    let mut ln_c: f64 = (0..k)
        .map(|i| ((n - i) as f64).ln() - ((i + 1) as f64).ln())
        .sum();
    let mut total = 0.0;
    for j in k..=n {
        total += (ln_c + j as f64 * lr + (n - j) as f64 * lq).exp();
        if j < n {
            ln_c += ((n - j) as f64).ln() - ((j + 1) as f64).ln();
        }
    }
    total.min(1.0)
}

/// A taught unit: a token (after `after`, when it continues a word), how often the training
/// targets have it and how often the base model found it unlikely there.
#[derive(Debug, Clone)]
pub(super) struct Taught {
    pub(super) after: u32,
    pub(super) token: u32,
    pub(super) occurrences: usize,
    pub(super) unlikely: usize,
}

/// What a run teaches.
#[derive(Debug)]
pub(super) struct Teaching {
    pub(super) taught: Vec<Taught>,
    /// The share of the training targets' positions the base model found unlikely.
    pub(super) unlikely_rate: f64,
    /// The head correction's entries: (token id, the previous token it is conditioned on or
    /// `NOT_CONDITIONED`), sorted. A token may have several (say "in" after "ur" in "galurin",
    /// and anywhere as what the model would have said at another taught position).
    pub(super) entries: BTreeSet<(u32, u32)>,
    /// Per position of the training and the validation positions: whether it carries
    /// cross-entropy.
    pub(super) learn_train: Vec<bool>,
    pub(super) learn_val: Vec<bool>,
}

impl Teaching {
    /// The entries' ids (sorted) and conditions, as the adapter stores them (`None` when none
    /// is conditioned).
    pub(super) fn ids_and_conditions(&self) -> (Vec<u32>, Option<Vec<u32>>) {
        let ids: Vec<u32> = self.entries.iter().map(|e| e.0).collect();
        let after: Vec<u32> = self.entries.iter().map(|e| e.1).collect();
        let any = after.iter().any(|&a| a != NOT_CONDITIONED);
        (ids, any.then_some(after))
    }
}

/// Choose what `train` teaches, and mark the learn positions and the entries on both `train`
/// and `val`. `continues[id]`: the token continues the word before it
/// (`MarianTokenizer::target_continues_word`); `special`: ids never taught (`</s>`, pad).
pub(super) fn choose(
    o: &FineTuneOptions,
    train: &Positions,
    val: &Positions,
    continues: &[bool],
    special: &[u32],
) -> Teaching {
    let unlikely_at = |pos: &Positions, i: usize| (pos.p_target[i] as f64) < o.learn_below;
    let mut stats: HashMap<(u32, u32), (usize, usize)> = HashMap::new();
    let (mut all, mut unlikely_all) = (0usize, 0usize);
    for i in 0..train.labels.len() {
        let Some(u) = unit(train, i, continues, special) else {
            continue;
        };
        let e = stats.entry(u).or_default();
        e.0 += 1;
        all += 1;
        if unlikely_at(train, i) {
            e.1 += 1;
            unlikely_all += 1;
        }
    }
    let unlikely_rate = unlikely_all as f64 / all.max(1) as f64;
    let mut taught: Vec<Taught> = stats
        .iter()
        .filter(|(_, &(all, unlikely))| {
            unlikely >= o.min_taught
                && unlikely as f64 >= o.min_taught_share * all as f64
                && binomial_tail(unlikely, all, unlikely_rate) <= o.term_p_value
        })
        .map(|(&(after, token), &(occurrences, unlikely))| Taught {
            after,
            token,
            occurrences,
            unlikely,
        })
        .collect();
    taught.sort_by_key(|t| (std::cmp::Reverse(t.unlikely), t.after, t.token));
    let is_taught: HashSet<(u32, u32)> = taught.iter().map(|t| (t.after, t.token)).collect();

    let mut entries = BTreeSet::new();
    let mut mark = |pos: &Positions| -> Vec<bool> {
        let k = o.top_k;
        let n = pos.labels.len();
        let mut learn = vec![false; n];
        let mut taught_at = vec![false; n];
        for i in 0..n {
            let term = unit(pos, i, continues, special)
                .filter(|u| is_taught.contains(u) && unlikely_at(pos, i));
            // Right after a taught token the base model has read a piece it would not have
            // written, and tends to finish the word it expected ("au" + "to" + "ure"): no
            // reference to keep there, so it is learnt too, what the model would say there
            // after that token only.
            let after_term =
                o.learn_after_term && i > 0 && pos.prev[i].is_some() && taught_at[i - 1];
            let after = match term {
                Some((after, token)) => {
                    taught_at[i] = true;
                    entries.insert((token, after));
                    after
                }
                None if after_term => pos.labels[i - 1],
                None => continue,
            };
            learn[i] = true;
            for &t in &pos.top[i * k..(i + 1) * k] {
                entries.insert((t, after));
            }
        }
        learn
    };
    let learn_train = mark(train);
    let learn_val = mark(val);
    Teaching {
        taught,
        unlikely_rate,
        entries,
        learn_train,
        learn_val,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binomial_tail_matches_direct_sums() {
        // P(X ≥ 2), X ~ Bin(3, 0.5) = (3 + 1) / 8.
        assert!((binomial_tail(2, 3, 0.5) - 0.5).abs() < 1e-12);
        assert!((binomial_tail(3, 3, 0.1) - 1e-3).abs() < 1e-15);
        assert_eq!(binomial_tail(0, 5, 0.3), 1.0);
        assert_eq!(binomial_tail(1, 5, 0.0), 0.0);
        // Monotone in k and in r.
        assert!(binomial_tail(8, 20, 0.4) > binomial_tail(12, 20, 0.4));
        assert!(binomial_tail(8, 20, 0.2) < binomial_tail(8, 20, 0.4));
    }
}
