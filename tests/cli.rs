//! The CLI contract (DESIGN.md): translate without --model uses the embedded default.

mod common;

use marian_wasm::{GenerateOptions, Package, Translator};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

fn default_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default")
}

#[test]
fn embedded_default_is_the_committed_package() {
    let embedded = Package::embedded().unwrap();
    let on_disk = Package::read_dir(&default_dir()).unwrap();
    assert_eq!(embedded.manifest, on_disk.manifest);
    // Pinned: changing the default model must be a deliberate, reviewed change.
    assert_eq!(
        embedded.manifest.model_sha256(),
        PINNED_DEFAULT_WEIGHTS_SHA256,
        "models/default changed; update the pin (and README figures) deliberately"
    );
}

const PINNED_DEFAULT_WEIGHTS_SHA256: &str =
    include_str!("fixtures/default-model.sha256").trim_ascii();

#[test]
fn translate_without_model_uses_the_default_and_matches_the_library() {
    let input = "A man is riding a bicycle down the street.\nTwo dogs are playing in the snow.\n";
    let mut child = Command::new(env!("CARGO_BIN_EXE_marian-wasm"))
        .arg("translate")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let got: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let t = Translator::new(&Package::read_dir(&default_dir()).unwrap()).unwrap();
    let lines: Vec<&str> = input.lines().collect();
    let want: Vec<String> = t
        .translate(&lines, &GenerateOptions::default(), 8)
        .unwrap()
        .into_iter()
        .map(|x| x.text)
        .collect();
    assert_eq!(got, want);
    assert!(got.iter().all(|l| !l.is_empty()));
}
