//! marian-wasm: Marian (OPUS-MT) translation with quantized packages, on candle natively
//! and in the browser through WebAssembly.
//!
//! Data path: `package::convert` (HF checkpoint -> package) → `package::Package` (verified
//! files) → `tokenizer::MarianTokenizer` + `model::Marian` → `generate` (greedy / beam over
//! a `generate::Backend`) → text, wrapped by `translator::Translator`.

pub mod adapter;
pub mod adaptive_threads;
pub mod backend;
#[cfg(not(target_arch = "wasm32"))]
pub mod catalog;
pub mod config;
pub mod error;
pub mod finetune;
pub mod generate;
pub mod gpu;
pub mod language;
pub mod metrics;
pub mod model;
pub mod package;
pub mod protect;
pub mod row_shards;
pub mod tensor_file;
pub mod text;
pub mod thread_times;
pub mod tokenizer;
pub mod translator;

#[cfg(target_arch = "wasm32")]
pub mod api;

pub use error::{Error, Result};
pub use generate::GenerateOptions;
pub use package::Package;
pub use translator::{Translation, Translator};
