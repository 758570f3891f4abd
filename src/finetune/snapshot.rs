//! A copy of the trained parameters — the epoch's start for a roll-back, the best epoch for the
//! adapter — and the adapter made of the kept one.

use super::head::Head;
use super::{FineTuneOptions, FineTuneReport};
use crate::adapter::{
    Adapter, AdapterManifest, EntryConditions, LastLayerAdapter, ADAPTER_FORMAT,
    ADAPTER_FORMAT_VERSION,
};
use crate::error::Result;
use crate::translator::Translator;
use candle_core::Tensor;

/// The head's parameters as `Head::vars` lists them: LoRA B [K, r], Aᵀ [D, r], the bias [K],
/// then, with a last-layer adapter, its A [r2, ffn] and B [D, r2].
pub(super) struct Snapshot(Vec<Tensor>);

impl Head {
    pub(super) fn snapshot(&self) -> Result<Snapshot> {
        Ok(Snapshot(
            self.vars()
                .iter()
                .map(|v| Ok(v.as_tensor().copy()?))
                .collect::<Result<_>>()?,
        ))
    }

    pub(super) fn restore(&self, s: &Snapshot) -> Result<()> {
        for (v, t) in self.vars().iter().zip(&s.0) {
            v.set(t)?;
        }
        Ok(())
    }
}

/// What an adapter is made of besides the kept parameters.
pub(super) struct AdapterParts<'a> {
    pub(super) translator: &'a Translator,
    pub(super) options: &'a FineTuneOptions,
    /// The entries' token ids [K] and conditions.
    pub(super) ids: Vec<u32>,
    pub(super) conditions: Option<EntryConditions>,
    /// The head correction's rank and the last-layer adapter's.
    pub(super) rank: usize,
    pub(super) last_layer_rank: usize,
}

impl Snapshot {
    /// The last-layer adapter of these parameters, when they have one (of rank `rank`).
    pub(super) fn last_layer(&self, rank: usize) -> Result<Option<LastLayerAdapter>> {
        Ok(match &self.0[3..] {
            [a, b] => Some(LastLayerAdapter {
                rank,
                a: a.flatten_all()?.to_vec1::<f32>()?,
                b: b.flatten_all()?.to_vec1::<f32>()?,
            }),
            _ => None,
        })
    }

    /// The adapter file's contents: these parameters (LoRA A stored transposed back to
    /// [r, D]), `last_layer` (`Snapshot::last_layer`), and a manifest recording the base model,
    /// what was trained, the options and `report`.
    pub(super) fn into_adapter(
        self,
        parts: AdapterParts<'_>,
        last_layer: Option<LastLayerAdapter>,
        report: &FineTuneReport,
    ) -> Result<Adapter> {
        let AdapterParts {
            translator: t,
            options: o,
            ids,
            conditions,
            rank: r,
            last_layer_rank: r_last,
        } = parts;
        let (lora_b, lora_a_t, bias) = (&self.0[0], &self.0[1], &self.0[2]);
        let k = ids.len();
        Ok(Adapter {
            manifest: AdapterManifest {
                format: ADAPTER_FORMAT.into(),
                format_version: ADAPTER_FORMAT_VERSION,
                base_model_sha256: t.model_sha256.clone(),
                d_model: t.model.config.d_model,
                target_vocab_size: t.model.target_vocab_size(),
                decoder_ffn_dim: t.model.config.decoder_ffn_dim,
                trained: if last_layer.is_some() {
                    format!(
                        "rank-{r} correction of the output projection and a final_logits_bias correction on {k} target tokens, and a rank-{r_last} adapter on the last decoder layer's fc2 (encoder, the other decoder weights and shared embeddings frozen)"
                    )
                } else {
                    format!(
                        "rank-{r} correction of the output projection and a final_logits_bias correction on {k} target tokens (decoder head; encoder, decoder and shared embeddings frozen)"
                    )
                },
                hyperparameters: serde_json::to_value(o).expect("options serialize"),
                metrics: serde_json::to_value(report).expect("report serializes"),
                created_by: format!("marian-wasm {}", env!("CARGO_PKG_VERSION")),
            },
            ids,
            rank: r,
            lora_b: lora_b.flatten_all()?.to_vec1::<f32>()?,
            lora_a: lora_a_t.t()?.flatten_all()?.to_vec1::<f32>()?,
            delta_bias: bias.to_vec1::<f32>()?,
            conditions,
            last_layer,
        })
    }
}
