//! `marian-wasm catalog add` on real packages (the tiny-opus and tiny-multi fixtures converted
//! here): what it writes, replacing by URL, its errors, and that www/catalog.js's built-in entry
//! is the committed default model's.

use crate::common::*;
use marian_wasm::catalog::Catalog;
use marian_wasm::package::convert::convert;
use marian_wasm::package::quant::Quant;
use marian_wasm::package::sha256_hex;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_marian-wasm"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "failed: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

fn fails(out: Output) -> String {
    assert!(!out.status.success(), "expected a failure, got {out:?}");
    String::from_utf8(out.stderr).unwrap()
}

fn converted(fixture: &str, into: &Path) -> PathBuf {
    let dir = into.join(fixture);
    convert(&fixtures_dir().join(fixture), &dir, Quant::F32).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The package's own size and manifest hash, computed independently of src/catalog.rs.
fn size_and_sha(dir: &Path) -> (u64, String) {
    let manifest = std::fs::read(dir.join("manifest.json")).unwrap();
    let size = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    (size, sha256_hex(&manifest))
}

#[test]
fn add_writes_entries_and_replaces_by_url() {
    let tmp = tempfile::tempdir().unwrap();
    let opus = converted("tiny-opus", tmp.path());
    let multi = converted("tiny-multi", tmp.path());
    let file = tmp.path().join("catalog.json");

    let said = ok(cli(&[
        "catalog",
        "add",
        s(&opus),
        "--url",
        "tiny-opus",
        "--catalog",
        s(&file),
        "--source",
        "en",
        "--target",
        "fr",
        "--quality",
        "tiny random model",
    ]));
    assert!(said.starts_with("added tiny-opus/ in "), "{said}");
    assert!(said.contains("en -> fr; f32"), "{said}");
    let said = ok(cli(&[
        "catalog",
        "add",
        s(&multi),
        "--url",
        "https://cdn.example/m/",
        "--catalog",
        s(&file),
        "--source",
        "eng",
    ]));
    assert!(said.contains("en -> en (>>eng<<), fr (>>fra<<)"), "{said}");

    let c = Catalog::parse(&std::fs::read_to_string(&file).unwrap(), "catalog.json").unwrap();
    assert_eq!(c.models.len(), 2);
    let (o, m) = (&c.models[0], &c.models[1]);
    assert_eq!(o.url, "tiny-opus/");
    assert_eq!(
        (o.source_languages.as_slice(), o.target_languages.as_slice()),
        (&["en".to_string()][..], &["fr".to_string()][..])
    );
    assert!(o.target_codes.is_empty());
    assert_eq!((o.size, o.sha256.clone()), size_and_sha(&opus));
    assert_eq!(o.quant, "f32");
    assert_eq!(o.quality.as_deref(), Some("tiny random model"));
    assert_eq!(m.url, "https://cdn.example/m/");
    assert_eq!(m.source_languages, ["en"]);
    assert_eq!(m.target_languages, ["en", "fr"]);
    assert_eq!(m.target_codes["en"], "eng");
    assert_eq!(m.target_codes["fr"], "fra");
    assert_eq!((m.size, m.sha256.clone()), size_and_sha(&multi));
    assert_eq!(m.quality, None);

    // The same URL again: replaced in place, the other entry untouched. --target on a
    // multi-target model keeps those of its languages only.
    let said = ok(cli(&[
        "catalog",
        "add",
        s(&multi),
        "--url",
        "https://cdn.example/m",
        "--catalog",
        s(&file),
        "--source",
        "en",
        "--target",
        "FR",
        "--quality",
        "French only",
    ]));
    assert!(
        said.starts_with("replaced https://cdn.example/m/"),
        "{said}"
    );
    let c2 = Catalog::parse(&std::fs::read_to_string(&file).unwrap(), "catalog.json").unwrap();
    assert_eq!(c2.models.len(), 2);
    assert_eq!(c2.models[0], c.models[0]);
    assert_eq!(c2.models[1].target_languages, ["fr"]);
    assert_eq!(c2.models[1].target_codes.len(), 1);
    assert_eq!(c2.models[1].target_codes["fr"], "fra");
    assert_eq!(c2.models[1].quality.as_deref(), Some("French only"));
}

#[test]
fn add_refuses_with_messages_a_person_can_act_on() {
    let tmp = tempfile::tempdir().unwrap();
    let opus = converted("tiny-opus", tmp.path());
    let multi = converted("tiny-multi", tmp.path());
    let file = tmp.path().join("catalog.json");
    let add = |pkg: &Path, extra: &[&str]| {
        let mut a = vec![
            "catalog",
            "add",
            s(pkg),
            "--url",
            "x/",
            "--catalog",
            s(&file),
        ];
        a.extend_from_slice(extra);
        cli(&a)
    };

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = fails(add(&empty, &["--source", "en", "--target", "fr"]));
    assert!(
        e.contains("no manifest.json") && e.contains("marian-wasm convert"),
        "{e}"
    );
    // One target language, not named and not in the provenance ("from tiny-opus").
    let e = fails(add(&opus, &["--source", "en"]));
    assert!(e.contains("--target"), "{e}");
    let e = fails(add(&opus, &["--target", "fr"]));
    assert!(e.contains("--source"), "{e}");
    let e = fails(add(&opus, &["--source", "en", "--target", "fr,de"]));
    assert!(
        e.contains("writes one language") && e.contains("fr, de"),
        "{e}"
    );
    let e = fails(add(&opus, &["--source", "en!", "--target", "fr"]));
    assert!(e.contains("'en!' is not a language tag"), "{e}");
    let e = fails(add(&multi, &["--source", "en", "--target", "de"]));
    assert!(e.contains("writes no 'de'") && e.contains("en, fr"), "{e}");
    let e = fails(add(&multi, &["--source", "en", "--map", "de=deu"]));
    assert!(
        e.contains("no >>deu<< token") && e.contains("eng, fra"),
        "{e}"
    );
    let e = fails(add(&multi, &["--source", "en", "--map", "de"]));
    assert!(e.contains("TAG=CODE"), "{e}");
    assert!(!file.exists(), "nothing is written on an error");

    // A damaged package: a file whose size is not the manifest's.
    let bad = tmp.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    for f in std::fs::read_dir(&opus).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), bad.join(f.file_name())).unwrap();
    }
    std::fs::write(bad.join("vocab.json"), b"{}").unwrap();
    let e = fails(add(&bad, &["--source", "en", "--target", "fr"]));
    assert!(
        e.contains("vocab.json") && e.contains("manifest says"),
        "{e}"
    );

    // A catalog that is not one is reported and left alone.
    std::fs::write(
        &file,
        r#"{"format":"marian-wasm-catalog","format_version":7,"models":[]}"#,
    )
    .unwrap();
    let e = fails(add(&opus, &["--source", "en", "--target", "fr"]));
    assert!(
        e.contains("catalog.json") && e.contains("format version 7"),
        "{e}"
    );
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .contains("\"format_version\":7"));
}

#[test]
fn the_builtin_catalog_entry_is_the_committed_default_model() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("catalog.json");
    ok(cli(&[
        "catalog",
        "add",
        s(&root.join("models/default")),
        "--url",
        "models/default/",
        "--catalog",
        s(&file),
        "--source",
        "en",
        "--target",
        "fr",
    ]));
    let c = Catalog::parse(&std::fs::read_to_string(&file).unwrap(), "catalog.json").unwrap();
    let e = &c.models[0];
    let js = std::fs::read_to_string(root.join("www/catalog.js")).unwrap();
    assert!(
        js.contains(&format!("size: {},", e.size))
            && js.contains(&format!("sha256: '{}',", e.sha256)),
        "www/catalog.js's built-in entry must say size {} and sha256 {} (models/default changed?)",
        e.size,
        e.sha256
    );
    assert!(js.contains(&format!("quant: '{}',", e.quant)));
}
