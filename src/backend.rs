//! The CPU backend: the candle model behind the generation loop's `Backend` seam.

use crate::adaptive_threads::{run_step, StepKind};
use crate::config::GenerationConfig;
use crate::error::Result;
use crate::generate::{decode_started, ready, top_k_of_row, Backend, Observer, Select};
use crate::model::{DecoderState, Marian};
use crate::row_shards;
use rayon::prelude::*;

impl Backend for Marian {
    type State = DecoderState;

    async fn start(
        &self,
        batch: &[Vec<u32>],
        num_beams: usize,
        _max_length: usize,
    ) -> Result<DecoderState> {
        let rows = batch.len() * num_beams;
        run_step(None, rows, || {
            let (encoded, mask) = self.encode(batch)?;
            let mut state = self.start_decoding(&encoded, &mask, num_beams)?;
            state.source_groups = self.source_groups(batch, num_beams);
            Ok(state)
        })
    }

    async fn step(
        &self,
        state: &mut DecoderState,
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
        run_step(Some(kind), tokens.len(), || {
            self.step_rows(state, tokens, select)
        })
    }

    async fn reorder_cache(&self, state: &mut DecoderState, rows: &[u32]) -> Result<()> {
        Marian::reorder_cache(self, state, rows)
    }

    /// A batch with rows enough for several shards (`row_shards::plan`) is decoded as shards of
    /// whole sentences, each by its own generation loop on a thread of its own, side by side:
    /// no step waits for another shard's, so a thread the OS preempts holds up only its own
    /// sentences. Rows never interact, so every sentence gets the bits one loop over the whole
    /// batch gives it. `observe` then hears each shard's steps once the shards are done.
    async fn decode(
        &self,
        state: DecoderState,
        sentences: usize,
        g: &GenerationConfig,
        observe: &mut Observer<'_>,
    ) -> Result<Vec<Vec<u32>>> {
        let num_beams = state.rows() / sentences.max(1);
        let plan = row_shards::plan(
            sentences,
            num_beams,
            rayon::current_num_threads(),
            row_shards::requested(),
        );
        if plan.len() == 1 {
            return decode_started(self, state, sentences, g, observe).await;
        }
        let mut first = 0u32;
        let shards: Vec<(usize, DecoderState)> = plan
            .iter()
            .map(|&n| {
                let rows = (n * num_beams) as u32;
                let shard = state.selected(&(first..first + rows).collect::<Vec<_>>());
                first += rows;
                (n, shard)
            })
            .collect();
        drop(state);
        // A shard that has a thread to itself splits nothing further.
        let alone = shards.len() >= rayon::current_num_threads();
        let done = shards
            .into_par_iter()
            .with_max_len(1)
            .map(|(n, shard)| {
                row_shards::stepping_shard(alone, || {
                    let mut heard: Vec<(usize, Vec<u32>)> = Vec::new();
                    let mut hear = |i: usize, ids: &[u32]| heard.push((i, ids.to_vec()));
                    let out = ready(decode_started(self, shard, n, g, &mut hear))?;
                    Ok((out, heard))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut out = Vec::with_capacity(sentences);
        for (seqs, heard) in done {
            for (i, ids) in heard {
                observe(out.len() + i, &ids);
            }
            out.extend(seqs);
        }
        Ok(out)
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
