//! The tensors a Marian package holds: one list, used by the converter to write them and
//! by the loader to find them. Names follow Hugging Face's without the `model.` prefix.

use crate::config::MarianConfig;

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

fn linear(out: &mut Vec<TensorSpec>, prefix: &str, rows: usize, cols: usize) {
    out.push(spec(
        format!("{prefix}.weight"),
        vec![rows, cols],
        Role::Matrix,
    ));
    out.push(spec(format!("{prefix}.bias"), vec![rows], Role::Vector));
}

fn norm(out: &mut Vec<TensorSpec>, prefix: &str, d: usize) {
    out.push(spec(format!("{prefix}.weight"), vec![d], Role::Vector));
    out.push(spec(format!("{prefix}.bias"), vec![d], Role::Vector));
}

fn attention(out: &mut Vec<TensorSpec>, prefix: &str, d: usize) {
    for p in ["q_proj", "k_proj", "v_proj", "out_proj"] {
        linear(out, &format!("{prefix}.{p}"), d, d);
    }
}

pub const SHARED_EMBEDDING: &str = "shared.weight";
pub const ENCODER_EMBEDDING: &str = "encoder.embed_tokens.weight";
pub const DECODER_EMBEDDING: &str = "decoder.embed_tokens.weight";
pub const LM_HEAD: &str = "lm_head.weight";
pub const FINAL_LOGITS_BIAS: &str = "final_logits_bias";

pub fn tensors(cfg: &MarianConfig) -> Vec<TensorSpec> {
    let d = cfg.d_model;
    let mut out = Vec::new();
    if cfg.share_encoder_decoder_embeddings {
        let mut s = spec(
            SHARED_EMBEDDING.into(),
            vec![cfg.vocab_size, d],
            Role::Embedding,
        );
        s.hf_names = vec![
            "model.shared.weight".into(),
            "model.encoder.embed_tokens.weight".into(),
            "model.decoder.embed_tokens.weight".into(),
            "shared.weight".into(),
        ];
        out.push(s);
    } else {
        out.push(spec(
            ENCODER_EMBEDDING.into(),
            vec![cfg.vocab_size, d],
            Role::Embedding,
        ));
        out.push(spec(
            DECODER_EMBEDDING.into(),
            vec![cfg.target_vocab_size(), d],
            Role::Embedding,
        ));
    }
    if !cfg.tie_word_embeddings {
        out.push(spec(
            LM_HEAD.into(),
            vec![cfg.target_vocab_size(), d],
            Role::Embedding,
        ));
    }
    out.push(spec(
        FINAL_LOGITS_BIAS.into(),
        vec![1, cfg.target_vocab_size()],
        Role::Vector,
    ));
    for i in 0..cfg.encoder_layers {
        let p = format!("encoder.layers.{i}");
        attention(&mut out, &format!("{p}.self_attn"), d);
        norm(&mut out, &format!("{p}.self_attn_layer_norm"), d);
        linear(&mut out, &format!("{p}.fc1"), cfg.encoder_ffn_dim, d);
        linear(&mut out, &format!("{p}.fc2"), d, cfg.encoder_ffn_dim);
        norm(&mut out, &format!("{p}.final_layer_norm"), d);
    }
    for i in 0..cfg.decoder_layers {
        let p = format!("decoder.layers.{i}");
        attention(&mut out, &format!("{p}.self_attn"), d);
        norm(&mut out, &format!("{p}.self_attn_layer_norm"), d);
        attention(&mut out, &format!("{p}.encoder_attn"), d);
        norm(&mut out, &format!("{p}.encoder_attn_layer_norm"), d);
        linear(&mut out, &format!("{p}.fc1"), cfg.decoder_ffn_dim, d);
        linear(&mut out, &format!("{p}.fc2"), d, cfg.decoder_ffn_dim);
        norm(&mut out, &format!("{p}.final_layer_norm"), d);
    }
    out
}
