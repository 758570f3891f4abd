//! The model package: what `convert` writes and every front end loads.
//!
//! A package is a flat folder (or the same files fetched over HTTP):
//! `manifest.json` (format version, config, generation defaults, quantization, and every
//! other file with its size and sha256), `model.safetensors`, `vocab.json`
//! (+ `target_vocab.json` for models with separate vocabularies), and the SentencePiece
//! models converted to `tokenizers` JSON (`source.tokenizer.json`, `target.tokenizer.json`).

pub mod quant;
pub mod spm;

#[cfg(not(target_arch = "wasm32"))]
pub mod calibrate;
#[cfg(not(target_arch = "wasm32"))]
pub mod convert;
#[cfg(not(target_arch = "wasm32"))]
pub mod fidelity;
#[cfg(not(target_arch = "wasm32"))]
pub mod rounding;

use crate::config::{GenerationConfig, MarianConfig};
use crate::error::{Error, Result};
use quant::Quant;
use sha2::{Digest, Sha256};
use spm::SpmDecodeInfo;
use std::collections::BTreeMap;

pub const FORMAT: &str = "marian-wasm-package";
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST: &str = "manifest.json";
pub const WEIGHTS: &str = "model.safetensors";

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TokenizerFiles {
    pub source: String,
    pub target: String,
    pub vocab: String,
    /// Present when the decoder has its own vocabulary (`separate_vocabs`).
    pub target_vocab: Option<String>,
    pub target_decode: SpmDecodeInfo,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub quant: Quant,
    pub model: MarianConfig,
    pub generation: GenerationConfig,
    pub tokenizer: TokenizerFiles,
    pub weights: String,
    pub files: Vec<FileEntry>,
    /// Free text: where the package came from (tool version, source folder name).
    #[serde(default)]
    pub provenance: String,
    /// A multi-target model's output languages: the codes of its `>>xxx<<` tokens (`fra`,
    /// `spa`, …), sorted; empty (and absent from the file) for a model with one target
    /// language. For catalogs and front ends that show the choice before loading the model;
    /// translation reads the tokens from the vocabulary itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_languages: Vec<String>,
}

/// Names inside a package are plain file names: no folders, nothing to escape with.
pub fn check_file_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::corrupt(
            MANIFEST,
            format!("file name '{name}' is not a plain file name"),
        ))
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl Manifest {
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let text =
            std::str::from_utf8(bytes).map_err(|_| Error::corrupt(MANIFEST, "not UTF-8 text"))?;
        let m: Manifest = serde_json::from_str(text)
            .map_err(|e| Error::corrupt(MANIFEST, format!("not a valid package manifest: {e}")))?;
        if m.format != FORMAT {
            return Err(Error::corrupt(
                MANIFEST,
                format!("format is '{}', expected '{FORMAT}'", m.format),
            ));
        }
        if m.format_version != FORMAT_VERSION {
            return Err(Error::corrupt(
                MANIFEST,
                format!(
                    "format version {} is not supported by this build (it reads version {FORMAT_VERSION}); convert the model again",
                    m.format_version
                ),
            ));
        }
        m.model.validate()?;
        m.generation.validate(&m.model)?;
        for f in &m.files {
            check_file_name(&f.name)?;
        }
        for needed in [
            &m.weights,
            &m.tokenizer.source,
            &m.tokenizer.target,
            &m.tokenizer.vocab,
        ]
        .into_iter()
        .chain(m.tokenizer.target_vocab.as_ref())
        {
            if m.entry(needed).is_none() {
                return Err(Error::corrupt(
                    MANIFEST,
                    format!("'{needed}' is used but not listed in files"),
                ));
            }
        }
        Ok(m)
    }

    pub fn entry(&self, name: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.name == name)
    }

    /// Check one file's bytes against the manifest (size first: cheap and catches truncation).
    pub fn verify(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let entry = self
            .entry(name)
            .ok_or_else(|| Error::corrupt(name, "not listed in manifest.json"))?;
        if entry.size != bytes.len() as u64 {
            return Err(Error::corrupt(
                name,
                format!(
                    "size is {} bytes, manifest says {} (truncated or replaced?)",
                    bytes.len(),
                    entry.size
                ),
            ));
        }
        let actual = sha256_hex(bytes);
        if actual != entry.sha256 {
            return Err(Error::Hash {
                file: name.to_string(),
                expected: entry.sha256.clone(),
                actual,
            });
        }
        Ok(())
    }

    /// The sha256 that identifies this package (the weights'), used to bind adapters to it.
    pub fn model_sha256(&self) -> &str {
        self.entry(&self.weights)
            .map(|e| e.sha256.as_str())
            .unwrap_or("")
    }
}

/// A package's files in memory, every one checked against the manifest.
pub struct Package {
    pub manifest: Manifest,
    files: BTreeMap<String, Vec<u8>>,
}

impl Package {
    /// Assemble from bytes already fetched (browser) or read (native); verifies everything.
    pub fn from_files(manifest_bytes: &[u8], mut files: BTreeMap<String, Vec<u8>>) -> Result<Self> {
        let manifest = Manifest::parse(manifest_bytes)?;
        let mut kept = BTreeMap::new();
        for entry in &manifest.files {
            let bytes = files
                .remove(&entry.name)
                .ok_or_else(|| Error::corrupt(&entry.name, "file is missing from the package"))?;
            manifest.verify(&entry.name, &bytes)?;
            kept.insert(entry.name.clone(), bytes);
        }
        Ok(Package {
            manifest,
            files: kept,
        })
    }

    /// Read a package folder from disk.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_dir(dir: &std::path::Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::Input(format!(
                "{}: not a model package folder (convert a Hugging Face checkpoint with `marian-wasm convert`)",
                dir.display()
            )));
        }
        let mpath = dir.join(MANIFEST);
        let manifest_bytes = std::fs::read(&mpath).map_err(|e| Error::io(&mpath, e))?;
        let manifest = Manifest::parse(&manifest_bytes)?;
        let mut files = BTreeMap::new();
        for entry in &manifest.files {
            let p = dir.join(&entry.name);
            let meta = std::fs::metadata(&p).map_err(|e| Error::io(&p, e))?;
            // Refuse before reading: a file far larger than promised is not read into memory.
            if meta.len() != entry.size {
                return Err(Error::corrupt(
                    p.display().to_string(),
                    format!(
                        "size is {} bytes, manifest says {} (truncated or replaced?)",
                        meta.len(),
                        entry.size
                    ),
                ));
            }
            files.insert(
                entry.name.clone(),
                std::fs::read(&p).map_err(|e| Error::io(&p, e))?,
            );
        }
        Self::from_files(&manifest_bytes, files)
    }

    pub fn file(&self, name: &str) -> Result<&[u8]> {
        self.files
            .get(name)
            .map(|v| v.as_slice())
            .ok_or_else(|| Error::corrupt(name, "file is missing from the package"))
    }

    pub fn text(&self, name: &str) -> Result<&str> {
        std::str::from_utf8(self.file(name)?).map_err(|_| Error::corrupt(name, "not UTF-8 text"))
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_model.rs"));
}

impl Package {
    /// The default model compiled into the native binary (models/default at build time).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn embedded() -> Result<Self> {
        let mut files: BTreeMap<String, Vec<u8>> = embedded::EMBEDDED_MODEL
            .iter()
            .map(|(n, b)| (n.to_string(), b.to_vec()))
            .collect();
        let manifest = files.remove(MANIFEST).ok_or_else(|| {
            Error::Input(
                "this build has no embedded default model (models/default was missing at build time); pass --model PKG_DIR".into(),
            )
        })?;
        Self::from_files(&manifest, files)
    }
}
