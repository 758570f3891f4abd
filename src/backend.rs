//! The CPU backend: the candle model behind the generation loop's `Backend` seam.

use crate::error::Result;
use crate::generate::{top_k_of_row, Backend, Select};
use crate::model::{DecoderState, Marian};
use rayon::prelude::*;

/// Runs `f` on a thread of rayon's pool, as one job: the products and row scans inside it then
/// split among the pool's threads by work stealing instead of each being handed from the calling
/// thread to the pool and back (a wake-up and a wait per product, dozens per decoding step — in the
/// browser each is an `Atomics.wait`/`notify` round trip between Web Workers). On one thread, or
/// already on the pool, `f` runs here.
fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_num_threads() == 1 || rayon::current_thread_index().is_some() {
        return f();
    }
    let mut out = None;
    rayon::scope(|_| out = Some(f()));
    out.expect("rayon::scope ran its closure")
}

impl Backend for Marian {
    type State = DecoderState;

    async fn start(
        &self,
        batch: &[Vec<u32>],
        rows_per_sentence: usize,
        _max_length: usize,
    ) -> Result<DecoderState> {
        on_pool(|| {
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
        on_pool(|| {
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
