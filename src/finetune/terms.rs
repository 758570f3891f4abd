//! What a run teaches: the units of the user's targets that the base model consistently would
//! not have written (the user's terms), tested against how often this model finds any of the
//! pairs' positions unlikely and tied to the source tokens they translate; and from them the
//! head correction's entries and the positions that carry cross-entropy.
//!
//! Why units: a term the target tokenizer splits ("galurin" = "▁g al ur in", "auto" = "▁au t
//! o" in a small vocabulary) is taught as its first piece (anywhere the hidden state calls for
//! it) and its later pieces each *after its predecessor* only, so that raising "t" after "▁au"
//! does not raise "t" everywhere else.
//! Why the test: a weak model finds 45 % of all target positions unlikely (the default model
//! 10 %): an absolute threshold alone teaches a hundred ordinary tokens there and moves
//! unrelated output; a unit is taught only when its count of unlikely occurrences would be
//! improbable at this model's own rate (a binomial tail), which scales with the number of pairs
//! and the model's strength.
//! Why source triggers: a weak model's hidden states do not tell "a car here" from "a noun
//! here", so even the right few entries fired in half of the unrelated sentences. A term
//! translates something in the source: each unit applies only where the source holds one of
//! the tokens that cover the pairs teaching it ("▁car", "▁cars"); elsewhere the output is the
//! base model's, exactly.
//! Why a second test within a term's sentences: what agrees with a term ("une" before
//! "bicyclette" where the model says "un vélo", the lone "▁" that starts "voie") is common
//! everywhere else, so over all its places it is rarely unlikely; over the places of the pairs
//! whose source hits the term's triggers it is unlikely improbably often, and it is taught
//! there (under the same triggers). Without it the model, having written "un", never starts
//! the term.

use super::positions::Positions;
use super::FineTuneOptions;
use crate::adapter::{MAX_TRIGGER_GROUPS, NOT_CONDITIONED};
use std::collections::{BTreeSet, HashMap};

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
/// targets have it and how often the base model found it unlikely there, and the source
/// tokens whose presence it goes with (`group` into `Teaching::triggers`; `NOT_CONDITIONED`
/// when not source-conditioned).
#[derive(Debug, Clone)]
pub(super) struct Taught {
    pub(super) after: u32,
    pub(super) token: u32,
    pub(super) occurrences: usize,
    pub(super) unlikely: usize,
    pub(super) group: u32,
}

/// An entry of the head correction: a token, the previous token it is conditioned on and the
/// trigger group its sentence's source must hit (`NOT_CONDITIONED`: none), in that order.
pub(super) type Entry = (u32, u32, u32);

/// What a run teaches.
#[derive(Debug)]
pub(super) struct Teaching {
    pub(super) taught: Vec<Taught>,
    /// The share of the training targets' positions the base model found unlikely.
    pub(super) unlikely_rate: f64,
    /// The head correction's entries, sorted. A token may have several (say "in" after "ur"
    /// in "galurin", and anywhere as what the model would have said at another taught
    /// position).
    pub(super) entries: BTreeSet<Entry>,
    /// Trigger groups: source token sets; a group is hit by a source holding any of them.
    pub(super) triggers: Vec<Vec<u32>>,
    /// Per position of the training and the validation positions: whether it carries
    /// cross-entropy.
    pub(super) learn_train: Vec<bool>,
    pub(super) learn_val: Vec<bool>,
}

/// Each position's pair (positions in pair order; a pair starts where `prev` is `None`).
pub(super) fn pair_of_positions(pos: &Positions) -> Vec<usize> {
    let mut pair = 0usize;
    pos.prev
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if p.is_none() && i > 0 {
                pair += 1;
            }
            pair
        })
        .collect()
}

/// The source tokens a taught unit goes with: greedily the token found in most of the pairs
/// that teach it (`teaching`, indices into `sources`) not yet covered, in two pairs at least,
/// while any is left (inflections: "dog", "dogs"), among tokens that pass `Trigger`. `None` when under 80 % can be
/// covered: the unit is then no consistent translation of anything.
/// `with`: per source token, how many of `sources` hold it (`pairs_with`).
fn triggers_of(
    teaching: &BTreeSet<usize>,
    allowed: &Trigger<'_>,
    sources: &[&[u32]],
    with: &HashMap<u32, usize>,
    skip: &[u32],
) -> Option<Vec<u32>> {
    let mut left: BTreeSet<usize> = teaching.clone();
    let mut chosen = Vec::new();
    while !left.is_empty() && chosen.len() < MAX_TRIGGERS_PER_UNIT {
        let mut count: HashMap<u32, usize> = HashMap::new();
        for &p in &left {
            let mut seen: Vec<u32> = sources[p].to_vec();
            seen.sort_unstable();
            seen.dedup();
            for t in seen {
                *count.entry(t).or_default() += 1;
            }
        }
        let best = count
            .iter()
            .filter(|(t, &c)| {
                !skip.contains(t)
                    && c >= 2
                    && match allowed {
                        // Most pairs with the token have the unit in their target: 80 %, and
                        // twice the unit's share of all pairs (up to 95 %), so that a unit
                        // found in most pairs is not "predicted" by "." or "a".
                        Trigger::Predicts(having) => {
                            let hit = having.iter().filter(|&&p| sources[p].contains(t)).count();
                            let base = having.len() as f64 / sources.len().max(1) as f64;
                            hit as f64 >= (2.0 * base).clamp(0.8, 0.95) * with[t] as f64
                        }
                        Trigger::Among(tokens) => tokens.contains(t),
                    }
            })
            // The most pairs covered; then the most specific token.
            .max_by_key(|(&t, &c)| (c, std::cmp::Reverse((with[&t], t))));
        let Some((&t, _)) = best else { break };
        chosen.push(t);
        left.retain(|&p| !sources[p].contains(&t));
    }
    let covered = teaching.len() - left.len();
    (covered as f64 >= 0.8 * teaching.len() as f64 && !chosen.is_empty()).then(|| {
        chosen.sort_unstable();
        chosen
    })
}

/// Per source token (but `skip`), how many of `sources` hold it.
fn pairs_with(sources: &[&[u32]], skip: &[u32]) -> HashMap<u32, usize> {
    let mut with: HashMap<u32, usize> = HashMap::new();
    for s in sources {
        let mut seen: Vec<u32> = s.iter().copied().filter(|t| !skip.contains(t)).collect();
        seen.sort_unstable();
        seen.dedup();
        for t in seen {
            *with.entry(t).or_default() += 1;
        }
    }
    with
}

/// At most this many source tokens trigger a unit.
const MAX_TRIGGERS_PER_UNIT: usize = 6;

/// Which source tokens may trigger a unit.
enum Trigger<'a> {
    /// Tokens most of whose pairs have the unit in their target (these pairs).
    Predicts(&'a BTreeSet<usize>),
    /// Tokens that trigger a unit of the first kind (for units, like an agreeing determiner,
    /// that only some of a term's sentences need).
    Among(&'a BTreeSet<u32>),
}

/// Choose what `train` teaches, and mark the learn positions and the entries on both `train`
/// and `val`. `continues[id]`: the token continues the word before it
/// (`MarianTokenizer::target_continues_word`); `special`: target ids never taught (`</s>`,
/// pad); `train_sources`: each training pair's source ids; `source_skip`: source ids that are
/// no trigger (`</s>`, pad, unknown, a language token).
pub(super) fn choose(
    o: &FineTuneOptions,
    (train, val): (&Positions, &Positions),
    train_sources: &[&[u32]],
    continues: &[bool],
    special: &[u32],
    source_skip: &[u32],
) -> Teaching {
    let unlikely_at = |pos: &Positions, i: usize| (pos.p_target[i] as f64) < o.learn_below;
    let train_pair = pair_of_positions(train);
    // Per unit: occurrences, unlikely ones, the pairs where it is unlikely, the pairs having it.
    type Stats = (usize, usize, BTreeSet<usize>, BTreeSet<usize>);
    let mut stats: HashMap<(u32, u32), Stats> = HashMap::new();
    let (mut all, mut unlikely_all) = (0usize, 0usize);
    for (i, &pair) in train_pair.iter().enumerate() {
        let Some(u) = unit(train, i, continues, special) else {
            continue;
        };
        let e = stats.entry(u).or_default();
        e.0 += 1;
        e.3.insert(pair);
        all += 1;
        if unlikely_at(train, i) {
            e.1 += 1;
            e.2.insert(pair);
            unlikely_all += 1;
        }
    }
    let unlikely_rate = unlikely_all as f64 / all.max(1) as f64;
    // The three tests a unit's (occurrences, unlikely ones) must pass to be taught.
    let passes = |(all, unlikely): (usize, usize)| {
        unlikely >= o.min_taught
            && unlikely as f64 >= o.min_taught_share * all as f64
            && binomial_tail(unlikely, all, unlikely_rate) <= o.term_p_value
    };
    let mut candidates: Vec<(&(u32, u32), &Stats)> = stats
        .iter()
        .filter(|(_, (all, unlikely, _, _))| passes((*all, *unlikely)))
        .collect();
    // The pieces before a candidate piece of a word are candidates too: "▁v" of "voie" (as "▁v
    // o ie", or "v" after a lone "▁") is unlikely at too few of its many places ("vert",
    // "vélo") to pass alone, and without it the word never starts. Its source triggers confine
    // it to the term's sentences.
    let mut work: Vec<u32> = candidates
        .iter()
        .map(|(u, _)| u.0)
        .filter(|&a| a != NOT_CONDITIONED)
        .collect();
    while let Some(a) = work.pop() {
        for (u, st) in stats.iter().filter(|(u, _)| u.1 == a) {
            if st.1 >= o.min_taught && !candidates.iter().any(|c| c.0 == u) {
                candidates.push((u, st));
                if u.0 != NOT_CONDITIONED {
                    work.push(u.0);
                }
            }
        }
    }
    candidates.sort_by_key(|(u, (_, unlikely, _, _))| (std::cmp::Reverse(*unlikely), **u));
    let mut triggers: Vec<Vec<u32>> = Vec::new();
    let mut taught: Vec<Taught> = Vec::new();
    let mut add = |(after, token): (u32, u32), (occurrences, unlikely): (usize, usize), t| {
        let group = match t {
            None => NOT_CONDITIONED,
            Some(t) => match triggers.iter().position(|g| *g == t) {
                Some(g) => g as u32,
                None if triggers.len() < MAX_TRIGGER_GROUPS => {
                    triggers.push(t);
                    (triggers.len() - 1) as u32
                }
                None => return,
            },
        };
        taught.push(Taught {
            after,
            token,
            occurrences,
            unlikely,
            group,
        });
    };
    if !o.source_triggers {
        for (&u, (all, unlikely, _, _)) in &candidates {
            add(u, (*all, *unlikely), None);
        }
    } else {
        // Units whose own source tokens predict them first (the terms: "auto" with "car"),
        // then the others among those tokens only (what agrees with a term: "sa" with "bike").
        let mut rest = Vec::new();
        let mut term_tokens = BTreeSet::new();
        let mut term_sets: Vec<Vec<u32>> = Vec::new();
        let mut done: BTreeSet<(u32, u32)> = BTreeSet::new();
        let with = pairs_with(train_sources, source_skip);
        for &(&u, (all, unlikely, pairs, having)) in &candidates {
            match triggers_of(
                pairs,
                &Trigger::Predicts(having),
                train_sources,
                &with,
                source_skip,
            ) {
                Some(t) => {
                    term_tokens.extend(t.iter().copied());
                    if !term_sets.contains(&t) {
                        term_sets.push(t.clone());
                    }
                    done.insert(u);
                    add(u, (*all, *unlikely), Some(t));
                }
                None => rest.push((u, (*all, *unlikely), pairs)),
            }
        }
        for (u, counts, pairs) in rest {
            if let Some(t) = triggers_of(
                pairs,
                &Trigger::Among(&term_tokens),
                train_sources,
                &with,
                source_skip,
            ) {
                done.insert(u);
                add(u, counts, Some(t));
            }
        }
        // What agrees with a term: a unit the pairs want where the term's source word is, but
        // too common elsewhere to pass the tests over all its places ("▁une" before
        // "bicyclette" for "bike", where the model says "▁un"), is tested again over the
        // positions of the pairs whose source hits the term's triggers, and taught there. The
        // share test is left out: such a unit is also right at other places of those sentences
        // ("une femme"); the binomial test alone says its unlikely count is no chance.
        for set in &term_sets {
            let hits: Vec<bool> = train_sources
                .iter()
                .map(|s| set.iter().any(|t| s.contains(t)))
                .collect();
            let mut counts: HashMap<(u32, u32), (usize, usize)> = HashMap::new();
            for (i, &pair) in train_pair.iter().enumerate() {
                let Some(u) = unit(train, i, continues, special).filter(|_| hits[pair]) else {
                    continue;
                };
                let c = counts.entry(u).or_default();
                c.0 += 1;
                c.1 += usize::from(unlikely_at(train, i));
            }
            let mut agreeing: Vec<((u32, u32), (usize, usize))> = counts
                .into_iter()
                .filter(|&(u, (all, unlikely))| {
                    // Not the share test: "▁une" is also right elsewhere in these sentences.
                    !done.contains(&u)
                        && unlikely >= o.min_taught
                        && binomial_tail(unlikely, all, unlikely_rate) <= o.term_p_value
                })
                .collect();
            agreeing.sort_by_key(|&(u, (_, unlikely))| (std::cmp::Reverse(unlikely), u));
            for (u, c) in agreeing {
                done.insert(u);
                add(u, c, Some(set.clone()));
            }
        }
    }
    let group_of: HashMap<(u32, u32), u32> = taught
        .iter()
        .map(|t| ((t.after, t.token), t.group))
        .collect();

    let mut entries = BTreeSet::new();
    let mut mark = |pos: &Positions| -> Vec<bool> {
        let k = o.top_k;
        let n = pos.labels.len();
        let mut learn = vec![false; n];
        // The group of the taught unit at each position (None: none taught there).
        let mut taught_at: Vec<Option<u32>> = vec![None; n];
        for i in 0..n {
            let term = unit(pos, i, continues, special)
                .filter(|_| unlikely_at(pos, i))
                .and_then(|u| group_of.get(&u).map(|&g| (u, g)));
            // Right after a taught token the base model has read a piece it would not have
            // written, and tends to finish the word it expected ("au" + "to" + "ure"): no
            // reference to keep there, so it is learnt too, what the model would say there
            // after that token only.
            let after_term = (o.learn_after_term && i > 0 && pos.prev[i].is_some())
                .then(|| taught_at[i - 1])
                .flatten();
            let (after, group) = match (term, after_term) {
                (Some(((after, token), group)), _) => {
                    taught_at[i] = Some(group);
                    entries.insert((token, after, group));
                    (after, group)
                }
                (None, Some(group)) => (pos.labels[i - 1], group),
                (None, None) => continue,
            };
            learn[i] = true;
            for &t in &pos.top[i * k..(i + 1) * k] {
                entries.insert((t, after, group));
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
        triggers,
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
