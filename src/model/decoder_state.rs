//! What the decoder keeps between steps for a batch of rows (KV caches, the encoder mask, the
//! step's logits buffer), and the row selection beam search's `reorder_cache` is made of.

use super::kv_cache::KvCache;

/// What the decoder keeps between steps for a batch of rows.
pub struct DecoderState {
    /// Per layer: self-attention keys and values of the positions so far.
    pub(super) self_kv: Vec<KvCache>,
    /// Per layer: cross-attention keys and values of the encoder's positions, projected once.
    pub(super) cross_kv: Vec<KvCache>,
    /// Additive encoder padding mask [R, S], row-major.
    pub(super) cross_mask: Vec<f32>,
    /// Decoder positions consumed so far.
    pub length: usize,
    /// The last step's logits [R, V], kept so that a step allocates no V-wide buffer.
    pub(super) logits: Vec<f32>,
    /// Per row: the head delta's trigger groups its sentence's source hits (bit mask; empty:
    /// none, as when no delta has source conditions).
    pub source_groups: Vec<u32>,
}

impl DecoderState {
    /// Decoder rows this state holds.
    pub fn rows(&self) -> usize {
        let s = self.cross_kv.first().map_or(0, KvCache::len);
        self.cross_mask.len().checked_div(s).unwrap_or(0)
    }

    /// A state of `rows` of this one (in that order; repeats allowed), this one unchanged: each
    /// row's caches and mask as they are, so its next steps give the same bits as here.
    pub fn selected(&self, rows: &[u32]) -> DecoderState {
        let s = self.cross_kv.first().map_or(0, KvCache::len);
        DecoderState {
            self_kv: self.self_kv.iter().map(|kv| kv.selected(rows)).collect(),
            cross_kv: self.cross_kv.iter().map(|kv| kv.selected(rows)).collect(),
            cross_mask: rows
                .iter()
                .flat_map(|&r| self.cross_mask[r as usize * s..][..s].iter().copied())
                .collect(),
            length: self.length,
            logits: Vec::new(),
            source_groups: if self.source_groups.is_empty() {
                Vec::new()
            } else {
                rows.iter()
                    .map(|&r| self.source_groups[r as usize])
                    .collect()
            },
        }
    }

    /// `selected`, taking over this state's logits buffer (so that the next step allocates no
    /// V-wide buffer); this one keeps its rows but loses the buffer.
    pub fn selected_with_buffer(&mut self, rows: &[u32]) -> DecoderState {
        DecoderState {
            logits: std::mem::take(&mut self.logits),
            ..self.selected(rows)
        }
    }
}
