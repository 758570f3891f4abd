//! The keep measure of a fine-tuning run: of the user's own sentences that the adapter has no
//! business with, how many translate differently once it is on ("unrelated sentences changed:
//! N %", shown beside the held-out scores by the CLI and the demo).
//!
//! "No business with" is read off the adapter and the pair's reference translation: along the
//! reference (teacher-forced), no entry of the head correction applies at a position that holds
//! the entry's token under the entry's conditions (previous token, source trigger group). A
//! sentence about something else, or one without the term's source word, is unrelated; what the
//! measure then catches is the last-layer adapter (which moves every logit) and entries firing
//! where the reference shows they should not.

use super::pairs::Pair;
use crate::adapter::{Adapter, EntryConditions};
use crate::error::Result;
use crate::translator::Translator;
use serde::Serialize;

/// At most this many unrelated sentences are translated twice (before and after): the held-out
/// pairs first, then the training pairs in order. 100 keeps the measure's standard error under
/// 5 points and its cost to ~2 × 100 translations.
pub const KEEP_SAMPLE: usize = 100;

/// How many unrelated sentences were translated before and after, and how many changed.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct KeepMeasure {
    pub sentences: usize,
    pub changed: usize,
}

impl KeepMeasure {
    /// The share of unrelated sentences whose translation changed, in [0, 1]; `None` when no
    /// sentence was unrelated.
    pub fn changed_share(&self) -> Option<f64> {
        (self.sentences > 0).then(|| self.changed as f64 / self.sentences as f64)
    }

    /// "3.0 % (3 of 100)", or why there is no figure.
    pub fn describe(&self) -> String {
        match self.changed_share() {
            Some(s) => format!(
                "{:.1} % ({} of {})",
                100.0 * s,
                self.changed,
                self.sentences
            ),
            None => "n/a (every pair holds something the adapter teaches)".into(),
        }
    }
}

/// Whether any head-correction entry (`ids`, sorted, under `conditions`) applies along
/// `target` (ids ending with `</s>`, decoding starting from `start`) at a position holding its
/// token, in a sentence whose source (ids) is `source`.
pub fn touches(
    ids: &[u32],
    conditions: Option<&EntryConditions>,
    start: u32,
    source: &[u32],
    target: &[u32],
) -> bool {
    let groups = conditions.map_or(0, |c| c.source_groups(source));
    let mut prev = start;
    for &y in target {
        // `ids` is sorted; a conditioned token may have several entries.
        let first = ids.partition_point(|&id| id < y);
        let applies = (first..ids.len())
            .take_while(|&j| ids[j] == y)
            .any(|j| conditions.is_none_or(|c| c.applies(j, prev, groups)));
        if applies {
            return true;
        }
        prev = y;
    }
    false
}

/// Indices into `pairs` of the first `KEEP_SAMPLE` pairs that `adapter` does not touch (in
/// order). Errors: tokenizing a pair (as `prepare` does).
pub fn unrelated(t: &Translator, adapter: &Adapter, pairs: &[&Pair]) -> Result<Vec<usize>> {
    let start = t.model.config.decoder_start_token_id;
    let mut out = Vec::new();
    for (i, p) in pairs.iter().enumerate() {
        if out.len() == KEEP_SAMPLE {
            break;
        }
        let ids = super::encode_pairs(t, std::slice::from_ref(*p))?;
        let (s, y) = &ids[0];
        if !touches(&adapter.ids, adapter.conditions.as_ref(), start, s, y) {
            out.push(i);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::NOT_CONDITIONED as NONE;

    #[test]
    fn touches_follows_the_entries_conditions() {
        let ids = [5, 9];
        assert!(touches(&ids, None, 0, &[1], &[3, 9, 2]));
        assert!(!touches(&ids, None, 0, &[1], &[3, 4, 2]));
        // Entry 0: token 5 after 7; entry 1: token 9 where the source hits group 0 ({42}).
        let c = EntryConditions {
            after: vec![7, NONE],
            group: vec![NONE, 0],
            triggers: vec![vec![42]],
        };
        let c = Some(&c);
        assert!(touches(&ids, c, 0, &[1], &[7, 5, 2]));
        assert!(!touches(&ids, c, 0, &[1], &[3, 5, 2]), "5 not after 7");
        assert!(touches(&ids, c, 7, &[1], &[5, 2]), "after the start token");
        assert!(touches(&ids, c, 0, &[42, 2], &[9, 2]));
        assert!(!touches(&ids, c, 0, &[41, 2], &[9, 2]), "source misses");
    }

    #[test]
    fn the_measure_describes_itself() {
        let m = KeepMeasure {
            sentences: 40,
            changed: 3,
        };
        assert_eq!(m.describe(), "7.5 % (3 of 40)");
        assert_eq!(KeepMeasure::default().changed_share(), None);
    }
}
