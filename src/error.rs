//! One error type for the whole crate: every variant names what a person must fix.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The io error is part of the message (not a `source`), so it is printed once.
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    /// A file exists but its content is not what it claims to be.
    #[error("{file}: {msg}")]
    Corrupt { file: String, msg: String },
    #[error("{file}: sha256 mismatch (manifest says {expected}, file has {actual}); the package is damaged or was modified - download or convert it again")]
    Hash {
        file: String,
        expected: String,
        actual: String,
    },
    #[error("invalid model config: {0}")]
    Config(String),
    #[error("invalid input: {0}")]
    Input(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The GPU backend cannot run (no adapter, limits too small, unsupported package).
    #[error("GPU: {0}")]
    Gpu(String),
    /// The GPU device failed while working; the translator finishes on the CPU.
    #[error("{0}")]
    DeviceLost(String),
    #[error("model computation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

impl Error {
    pub fn corrupt(file: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Corrupt {
            file: file.into(),
            msg: msg.into(),
        }
    }
    pub fn io(path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            err,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
