//! The tensors a Marian package holds, as the converter writes them: the loader's walk
//! (`weights::MarianWeights::load`) recorded, so both always agree. Names follow Hugging
//! Face's without the `model.` prefix.

use super::weights::{MarianWeights, WeightSource};
use crate::config::MarianConfig;
use crate::error::Result;
use std::cell::RefCell;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A vocabulary-sized embedding (also the tied output projection).
    Embedding,
    /// A linear layer's weight [out, in].
    Matrix,
    /// Biases, layer norms, final_logits_bias: always f32.
    Vector,
}

#[derive(Debug, Clone)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub role: Role,
    /// Names to look for in a Hugging Face state dict, in order of preference.
    pub hf_names: Vec<String>,
}

fn spec(name: String, shape: Vec<usize>, role: Role) -> TensorSpec {
    let hf = if name.starts_with("final_logits_bias") || name.starts_with("lm_head") {
        vec![name.clone()]
    } else {
        vec![format!("model.{name}"), name.clone()]
    };
    TensorSpec {
        name,
        shape,
        role,
        hf_names: hf,
    }
}

pub const SHARED_EMBEDDING: &str = "shared.weight";
pub const ENCODER_EMBEDDING: &str = "encoder.embed_tokens.weight";
pub const DECODER_EMBEDDING: &str = "decoder.embed_tokens.weight";
pub const LM_HEAD: &str = "lm_head.weight";
pub const FINAL_LOGITS_BIAS: &str = "final_logits_bias";

/// Every tensor of a package for `cfg`, in the order the loader reads them: the walk of
/// `MarianWeights::load`, recorded (so the converter writes exactly what the loader finds).
pub fn tensors(cfg: &MarianConfig) -> Vec<TensorSpec> {
    let recorder = Recorder::default();
    MarianWeights::load(cfg, &recorder).expect("recording the walk cannot fail");
    recorder.specs.into_inner()
}

/// A `WeightSource` that loads nothing and notes each tensor asked for.
#[derive(Default)]
struct Recorder {
    specs: RefCell<Vec<TensorSpec>>,
}

impl Recorder {
    fn note(&self, name: &str, shape: &[usize], role: Role) {
        let mut s = spec(name.to_string(), shape.to_vec(), role);
        if name == SHARED_EMBEDDING {
            // Checkpoints store the shared embedding under any of these (all the same tensor).
            s.hf_names = vec![
                "model.shared.weight".into(),
                "model.encoder.embed_tokens.weight".into(),
                "model.decoder.embed_tokens.weight".into(),
                "shared.weight".into(),
            ];
        }
        self.specs.borrow_mut().push(s);
    }
}

impl WeightSource for Recorder {
    type Matrix = ();
    type Vector = ();
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<()> {
        self.note(name, &[rows, cols], Role::Matrix);
        Ok(())
    }
    fn embedding(&self, name: &str, rows: usize, cols: usize) -> Result<()> {
        self.note(name, &[rows, cols], Role::Embedding);
        Ok(())
    }
    fn vector(&self, name: &str, shape: &[usize]) -> Result<()> {
        self.note(name, shape, Role::Vector);
        Ok(())
    }
}
