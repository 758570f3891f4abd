//! Bad input gets a clear error naming the file and the problem, never a panic.

mod common;

use common::*;
use marian_wasm::package::convert::convert;
use marian_wasm::package::quant::Quant;
use marian_wasm::{Error, Package, Translator};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

fn tiny() -> std::path::PathBuf {
    fixtures_dir().join("tiny-opus")
}

/// A copy of the tiny-opus checkpoint that a test may damage.
fn hf_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(tiny()).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    dir
}

fn converted() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    convert(&tiny(), dir.path(), Quant::Q8).unwrap();
    dir
}

fn err_text<T>(r: marian_wasm::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

/// Rewrite one manifest entry so that it vouches for the file as it now is.
fn reseal(pkg: &Path, name: &str) {
    let mpath = pkg.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&mpath).unwrap()).unwrap();
    let bytes = std::fs::read(pkg.join(name)).unwrap();
    for f in m["files"].as_array_mut().unwrap() {
        if f["name"] == name {
            f["size"] = bytes.len().into();
            f["sha256"] = marian_wasm::package::sha256_hex(&bytes).into();
        }
    }
    std::fs::write(&mpath, serde_json::to_vec(&m).unwrap()).unwrap();
}

#[test]
fn missing_checkpoint_file_is_named() {
    let hf = hf_copy();
    std::fs::remove_file(hf.path().join("target.spm")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let e = err_text(convert(hf.path(), out.path(), Quant::Q8));
    assert!(e.contains("target.spm"), "{e}");
}

#[test]
fn truncated_checkpoint_weights_are_reported() {
    let hf = hf_copy();
    let p = hf.path().join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let out = tempfile::tempdir().unwrap();
    let e = err_text(convert(hf.path(), out.path(), Quant::Q8));
    assert!(
        e.contains("model.safetensors") && e.contains("safetensors"),
        "{e}"
    );
}

#[test]
fn absurd_config_is_refused_before_allocation() {
    let hf = hf_copy();
    let p = hf.path().join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    cfg["d_model"] = 1_000_000_000u64.into();
    std::fs::write(&p, cfg.to_string()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let e = err_text(convert(hf.path(), out.path(), Quant::Q8));
    assert!(e.contains("d_model"), "{e}");
    cfg["d_model"] = 64.into();
    cfg["encoder_attention_heads"] = 7.into();
    std::fs::write(&p, cfg.to_string()).unwrap();
    let e = err_text(convert(hf.path(), out.path(), Quant::Q8));
    assert!(e.contains("not divisible"), "{e}");
}

#[test]
fn garbage_spm_is_reported() {
    let hf = hf_copy();
    std::fs::write(
        hf.path().join("source.spm"),
        b"definitely not protobuf \xff\xff\xff",
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let e = err_text(convert(hf.path(), out.path(), Quant::Q8));
    assert!(e.contains("source.spm"), "{e}");
}

#[test]
fn truncated_package_file_is_detected_by_size() {
    let pkg = converted();
    let p = pkg.path().join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
    let e = err_text(Package::read_dir(pkg.path()));
    assert!(
        e.contains("model.safetensors") && e.contains("truncated"),
        "{e}"
    );
}

#[test]
fn modified_package_file_fails_its_sha256() {
    let pkg = converted();
    let p = pkg.path().join("vocab.json");
    let mut bytes = std::fs::read(&p).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x20;
    std::fs::write(&p, &bytes).unwrap();
    match Package::read_dir(pkg.path()) {
        Err(Error::Hash { file, .. }) => assert_eq!(file, "vocab.json"),
        Err(other) => panic!("expected a hash error, got {other}"),
        Ok(_) => panic!("a modified file was accepted"),
    }
}

#[test]
fn safetensors_header_that_lies_about_sizes_is_reported() {
    let pkg = converted();
    let p = pkg.path().join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + n].to_vec()).unwrap();
    // Claim the first tensor ends far beyond the file.
    let lying = header.replacen("\"data_offsets\":[0,", "\"data_offsets\":[0,999999999", 1);
    assert_ne!(lying, header);
    let mut out = Vec::new();
    out.extend_from_slice(&(lying.len() as u64).to_le_bytes());
    out.extend_from_slice(lying.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(&p, &out).unwrap();
    reseal(pkg.path(), "model.safetensors");
    let pkg = Package::read_dir(pkg.path()).unwrap();
    let e = err_text(Translator::new(&pkg));
    assert!(e.contains("model.safetensors"), "{e}");
}

#[test]
fn manifest_with_path_in_file_name_is_refused() {
    let pkg = converted();
    let mpath = pkg.path().join("manifest.json");
    let text = std::fs::read_to_string(&mpath).unwrap();
    std::fs::write(&mpath, text.replace("\"vocab.json\"", "\"../vocab.json\"")).unwrap();
    let e = err_text(Package::read_dir(pkg.path()));
    assert!(e.contains("../vocab.json"), "{e}");
}

#[test]
fn manifest_with_absurd_config_is_refused() {
    let pkg = converted();
    let mpath = pkg.path().join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&mpath).unwrap()).unwrap();
    m["model"]["vocab_size"] = 1_000_000_000_000u64.into();
    std::fs::write(&mpath, m.to_string()).unwrap();
    let e = err_text(Package::read_dir(pkg.path()));
    assert!(e.contains("vocab_size"), "{e}");
}

#[test]
fn not_a_package_folder_says_what_to_do() {
    let e = err_text(Package::read_dir(Path::new("/nonexistent/package")));
    assert!(e.contains("convert"), "{e}");
}

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_marian-wasm"))
}

fn translate_cli(pkg: &Path, input: &[u8]) -> std::process::Output {
    let mut child = cli()
        .args(["translate", "--model"])
        .arg(pkg)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The process may exit before reading (e.g. a bad --model): a broken pipe is fine.
    let _ = child.stdin.take().unwrap().write_all(input);
    child.wait_with_output().unwrap()
}

#[test]
fn cli_keeps_one_line_per_input_line_and_empty_lines() {
    let pkg = converted();
    let out = translate_cli(
        pkg.path(),
        b"A dog runs.\n\nTwo men are talking.\n   \nA girl.\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.split('\n').collect();
    assert_eq!(lines.len(), 6, "{text:?}"); // five lines + the final newline
    assert!(!lines[0].is_empty() && !lines[2].is_empty() && !lines[4].is_empty());
    assert_eq!(lines[1], "");
    assert_eq!(lines[3], "");
}

#[test]
fn cli_rejects_non_utf8_input_after_translating_what_came_before() {
    let pkg = converted();
    let out = translate_cli(pkg.path(), b"A dog runs.\nbad \xff\xfe byte\nA cat.\n");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2") && err.contains("UTF-8"), "{err}");
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 1);
}

#[test]
fn cli_reports_a_missing_model_folder() {
    let out = translate_cli(Path::new("/nonexistent/pkg"), b"hello\n");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/pkg"), "{err}");
}

#[test]
fn huge_and_long_inputs_are_split_not_truncated() {
    let t = translator(&tiny(), Quant::Q8);
    let sentence = "A man in a blue shirt is standing on a ladder. ";
    let long = sentence.repeat(40);
    assert!(t.tokenizer.encode(&long).unwrap().len() > t.model.config.max_position_embeddings);
    let chunks = t.split_for_model(&long).unwrap();
    assert!(chunks.len() > 1);
    assert!(chunks
        .iter()
        .all(|c| c.len() <= t.model.config.max_position_embeddings));
    // Every source token is kept: the chunks hold all sentences.
    let per = t.tokenizer.encode(sentence.trim()).unwrap().len() - 1;
    let total: usize = chunks.iter().map(|c| c.len() - 1).sum();
    assert_eq!(total, per * 40);
    let opts = marian_wasm::GenerateOptions {
        num_beams: Some(1),
        max_length: Some(12),
        ..Default::default()
    };
    let out = t.translate(&[&long], &opts, 4).unwrap();
    assert_eq!(out[0].ids.len(), chunks.len());
    let too_big = "a".repeat(marian_wasm::translator::MAX_INPUT_BYTES + 1);
    assert!(t.translate(&[&too_big], &opts, 1).is_err());
}
