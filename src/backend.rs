//! The CPU backend: the candle model behind the generation loop's `Backend` seam.

use crate::adaptive_threads::{run_step, StepKind};
use crate::error::{Error, Result};
use crate::generate::{top_k_of_row, Backend, Select};
use crate::model::{DecoderState, Marian};
use crate::row_shards;
use rayon::prelude::*;

/// The CPU backend's decoding state: the batch's decoder rows as shards of whole sentences, in
/// row order, each stepped on a thread of its own (`crate::row_shards`); one shard for a small
/// batch.
pub struct CpuState {
    shards: Vec<DecoderState>,
}

impl Backend for Marian {
    type State = CpuState;

    async fn start(
        &self,
        batch: &[Vec<u32>],
        rows_per_sentence: usize,
        _max_length: usize,
    ) -> Result<CpuState> {
        let rows = batch.len() * rows_per_sentence;
        let state = run_step(None, rows, || {
            let (encoded, mask) = self.encode(batch)?;
            self.start_decoding(&encoded, &mask, rows_per_sentence)
        })?;
        let plan = row_shards::plan(
            batch.len(),
            rows_per_sentence,
            rayon::current_num_threads(),
            row_shards::requested(),
        );
        if plan.len() == 1 {
            return Ok(CpuState {
                shards: vec![state],
            });
        }
        let mut first = 0u32;
        let shards = plan
            .iter()
            .map(|&sentences| {
                let n = (sentences * rows_per_sentence) as u32;
                let rows: Vec<u32> = (first..first + n).collect();
                first += n;
                state.selected(&rows)
            })
            .collect();
        Ok(CpuState { shards })
    }

    async fn step(
        &self,
        state: &mut CpuState,
        tokens: &[u32],
        select: &Select<'_>,
    ) -> Result<Vec<Vec<(u32, f32)>>> {
        let kind = if select.forced.is_some() {
            StepKind::Forced
        } else if select.k == 1 && !select.log_softmax {
            StepKind::Greedy
        } else {
            StepKind::Scores
        };
        if let [one] = &mut state.shards[..] {
            return run_step(Some(kind), tokens.len(), || {
                self.step_rows(one, tokens, select)
            });
        }
        let rows: usize = state.shards.iter().map(DecoderState::rows).sum();
        if tokens.len() != rows {
            return Err(Error::Input(format!(
                "{} tokens for {rows} decoder rows",
                tokens.len()
            )));
        }
        run_step(Some(kind), tokens.len(), || {
            // A shard per task; a shard that has a thread to itself splits nothing further.
            let alone = state.shards.len() >= rayon::current_num_threads();
            let mut rest = tokens;
            let work: Vec<(&mut DecoderState, &[u32])> = state
                .shards
                .iter_mut()
                .map(|shard| {
                    let (mine, after) = rest.split_at(shard.rows());
                    rest = after;
                    (shard, mine)
                })
                .collect();
            let parts = work
                .into_par_iter()
                .with_max_len(1)
                .map(|(shard, tokens)| {
                    row_shards::stepping_shard(alone, || self.step_rows(shard, tokens, select))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(parts.into_iter().flatten().collect())
        })
    }

    async fn select_rows(&self, state: &mut CpuState, rows: &[u32]) -> Result<()> {
        if rows.is_empty() {
            state.shards.truncate(1);
        }
        if let [one] = &mut state.shards[..] {
            return self.retain_rows(one, rows);
        }
        // Each run of consecutive rows taken from one shard becomes a shard: the generation
        // loops keep sentences in order, so that is each shard's surviving rows.
        let mut starts = Vec::with_capacity(state.shards.len());
        let mut total = 0u32;
        for shard in &state.shards {
            starts.push(total);
            total += shard.rows() as u32;
        }
        let shard_of = |row: u32| starts.partition_point(|&s| s <= row) - 1;
        let mut runs: Vec<(usize, Vec<u32>)> = Vec::new();
        for &row in rows {
            let s = shard_of(row);
            let local = row - starts[s];
            match runs.last_mut() {
                Some((last, locals)) if *last == s => locals.push(local),
                _ => runs.push((s, vec![local])),
            }
        }
        let mut old = std::mem::take(&mut state.shards);
        state.shards = runs
            .into_iter()
            .map(|(s, locals)| old[s].selected_with_buffer(&locals))
            .collect();
        Ok(())
    }
}

impl Marian {
    /// One step of the rows of one decoder state: each row's best `select.k` candidates.
    fn step_rows(
        &self,
        state: &mut DecoderState,
        tokens: &[u32],
        select: &Select<'_>,
    ) -> Result<Vec<Vec<(u32, f32)>>> {
        if select.forced.is_some() {
            // The forced token needs no logits: advance the state only.
            self.decode_hidden(state, tokens)?;
            return Ok(tokens.iter().map(|_| top_k_of_row(&[], select)).collect());
        }
        if select.k == 1 && !select.log_softmax {
            let choice = self.decode_step_greedy(state, tokens, select.banned)?;
            return Ok(choice.into_iter().map(|c| vec![c]).collect());
        }
        let v = self.target_vocab_size();
        let logits = self.decode_step_rows(state, tokens, select.k, select.banned)?;
        // Rows are independent scans of V logits: spread them over the threads.
        Ok(logits
            .par_chunks_exact(v)
            .with_min_len(row_shards::split_min(1))
            .map(|row| top_k_of_row(row, select))
            .collect())
    }
}
