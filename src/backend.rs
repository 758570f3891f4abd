//! The CPU backend: the candle model behind the generation loop's `Backend` seam.

use crate::adaptive_threads::{run_step, StepKind};
use crate::error::Result;
use crate::generate::{top_k_of_row, Backend, Select};
use crate::model::{DecoderState, Marian};
use rayon::prelude::*;

impl Backend for Marian {
    type State = DecoderState;

    async fn start(
        &self,
        batch: &[Vec<u32>],
        rows_per_sentence: usize,
        _max_length: usize,
    ) -> Result<DecoderState> {
        let rows = batch.len() * rows_per_sentence;
        run_step(None, rows, || {
            let (encoded, mask) = self.encode(batch)?;
            self.start_decoding(&encoded, &mask, rows_per_sentence)
        })
    }

    async fn step(
        &self,
        state: &mut DecoderState,
        tokens: &[u32],
        select: &Select<'_>,
    ) -> Result<Vec<Vec<(u32, f32)>>> {
        let v = self.target_vocab_size();
        let kind = if select.forced.is_some() {
            StepKind::Forced
        } else if select.k == 1 && !select.log_softmax {
            StepKind::Greedy
        } else {
            StepKind::Scores
        };
        run_step(Some(kind), tokens.len(), || {
            if select.forced.is_some() {
                // The forced token needs no logits: advance the state only.
                self.decode_hidden(state, tokens)?;
                return Ok(tokens.iter().map(|_| top_k_of_row(&[], select)).collect());
            }
            if select.k == 1 && !select.log_softmax {
                let choice = self.decode_step_greedy(state, tokens, select.banned)?;
                return Ok(choice.into_iter().map(|c| vec![c]).collect());
            }
            let logits = self.decode_step_rows(state, tokens)?;
            // Rows are independent scans of V logits: spread them over the threads.
            Ok(logits
                .par_chunks_exact(v)
                .map(|row| top_k_of_row(row, select))
                .collect())
        })
    }

    async fn select_rows(&self, state: &mut DecoderState, rows: &[u32]) -> Result<()> {
        self.retain_rows(state, rows)
    }
}
