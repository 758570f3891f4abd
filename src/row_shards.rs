//! Decoding a batch as shards of whole sentences, each decoded on a thread of its own.
//!
//! Within one decoding step the products split among threads by output features: a batch-16 step
//! is about 50 fork-joins, each a few hundred microseconds of work. Where the pool's threads have
//! the cores to themselves that is cheap; on a busy machine the OS preempts a thread in the middle
//! of its part, and each join then waits for it — measured on a 2-core VM with two CPU-bound
//! processes beside it, one process on 2 threads did 350–372 tokens/s at batch 16 while two
//! processes of one thread each, on the same halves of the work, did 405–514 between them.
//! So a batch with enough rows is cut into shards of whole sentences (a sentence's beams stay
//! together) after the encoder, one per thread, and each shard runs its own generation loop to
//! the end (`Backend::decode` in `crate::backend`): no step waits for another shard's, and inside
//! a shard nothing splits further. Rows never interact (every product, attention and layer norm is
//! computed row by row, in a fixed order), so a row gives the same bits in any shard: the output
//! does not depend on the shard count (tests/cli.rs compares thread counts and sharding off).
//!
//! `MARIAN_SHARDS=off` (or `1`) keeps one shard, `MARIAN_SHARDS=N` asks for N.

use std::cell::Cell;

/// Fewest decoder rows a shard gets: every shard reads all the weights once a step, and below
/// this the products are bound by that reading (the output projection does 53 GMAC/s at 16 rows
/// on one AVX2 core, 12–19 at one row); 16 threads on 2 cores at batch 32 ran slower with
/// shards of 4 rows than unsharded, not with shards of 8.
pub const MIN_SHARD_ROWS: usize = 8;

thread_local! {
    /// Set while this thread decodes a shard: rayon loops inside run here, unsplit.
    static IN_SHARD: Cell<bool> = const { Cell::new(false) };
}

/// Whether parallel loops on this thread may split their work among threads (not inside a shard
/// that has a thread of its own).
pub fn splits_allowed() -> bool {
    !IN_SHARD.with(Cell::get)
}

/// The `with_min_len` for a rayon loop whose pieces would otherwise be `min` items long: `min`,
/// or no split at all inside a shard.
pub fn split_min(min: usize) -> usize {
    if splits_allowed() {
        min
    } else {
        usize::MAX
    }
}

/// Runs `f` with parallel loops on this thread unsplit when `alone` (a shard with a thread of its
/// own), as they are otherwise.
pub fn stepping_shard<R>(alone: bool, f: impl FnOnce() -> R) -> R {
    let before = IN_SHARD.with(|c| c.replace(alone));
    let out = f();
    IN_SHARD.with(|c| c.set(before));
    out
}

/// Sentences per shard for a batch of `sentences` with `num_beams` decoder rows each, on
/// a pool of `threads`: one shard per thread while each keeps at least [`MIN_SHARD_ROWS`] rows,
/// sizes differing by one sentence at most, larger ones first. `requested` (from
/// `MARIAN_SHARDS`) overrides the count, within the same row minimum.
pub fn plan(
    sentences: usize,
    num_beams: usize,
    threads: usize,
    requested: Option<usize>,
) -> Vec<usize> {
    let rows = sentences * num_beams;
    let most = (rows / MIN_SHARD_ROWS).min(sentences).max(1);
    let shards = requested.unwrap_or(threads).clamp(1, most);
    (0..shards)
        .map(|i| sentences / shards + usize::from(i < sentences % shards))
        .collect()
}

/// The shard count `MARIAN_SHARDS` asks for: `Some(1)` for `off`, `None` when unset (one per
/// thread) or unreadable.
pub fn requested() -> Option<usize> {
    static REQUESTED: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    *REQUESTED.get_or_init(|| match std::env::var("MARIAN_SHARDS").ok()?.as_str() {
        "off" => Some(1),
        n => n.parse().ok().filter(|&n| n > 0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_hold_whole_sentences_and_enough_rows() {
        assert_eq!(plan(16, 1, 2, None), vec![8, 8]);
        assert_eq!(plan(17, 1, 2, None), vec![9, 8]);
        assert_eq!(plan(1, 1, 2, None), vec![1]);
        assert_eq!(
            plan(15, 1, 2, None),
            vec![15],
            "two shards would have 8 and 7 rows"
        );
        assert_eq!(plan(16, 1, 16, None), vec![8, 8]);
        assert_eq!(plan(5, 4, 2, None), vec![3, 2], "beams count as rows");
        assert_eq!(plan(32, 1, 16, None), vec![8; 4]);
        assert_eq!(plan(64, 1, 3, None), vec![22, 21, 21]);
        assert_eq!(plan(16, 1, 2, Some(1)), vec![16]);
        assert_eq!(plan(32, 1, 2, Some(4)), vec![8; 4]);
        assert_eq!(plan(32, 1, 2, Some(64)), vec![8; 4]);
        assert_eq!(plan(0, 1, 2, None), vec![0]);
    }

    #[test]
    fn loops_inside_a_lone_shard_do_not_split() {
        assert!(splits_allowed());
        let inside = stepping_shard(true, || (splits_allowed(), split_min(3)));
        assert_eq!(inside, (false, usize::MAX));
        assert_eq!(stepping_shard(false, || split_min(3)), 3);
        assert!(splits_allowed());
    }
}
