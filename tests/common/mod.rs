//! Shared helpers for the native integration tests: fixture discovery and conversion.

use marian_wasm::package::convert::convert;
use marian_wasm::package::quant::Quant;
use marian_wasm::{Package, Translator};
use serde_json::Value;
use std::path::{Path, PathBuf};

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every fixture checkpoint folder (holding config.json and expected.json).
pub fn fixtures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("tests/fixtures exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("config.json").exists() && p.join("expected.json").exists())
        .collect();
    v.sort();
    assert!(
        v.len() >= 2,
        "expected at least two fixture checkpoints, found {v:?}"
    );
    v
}

pub fn expected(fixture: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture.join("expected.json")).unwrap()).unwrap()
}

/// Convert a fixture into a fresh temporary package folder.
pub fn package(fixture: &Path, quant: Quant) -> (tempfile::TempDir, Package) {
    let dir = tempfile::tempdir().unwrap();
    convert(fixture, dir.path(), quant).unwrap();
    let pkg = Package::read_dir(dir.path()).unwrap();
    (dir, pkg)
}

pub fn translator(fixture: &Path, quant: Quant) -> Translator {
    let (_dir, pkg) = package(fixture, quant);
    Translator::new(&pkg).unwrap()
}

pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an id list: {v}"))
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

pub fn name(fixture: &Path) -> String {
    fixture.file_name().unwrap().to_string_lossy().to_string()
}
