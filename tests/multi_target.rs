//! Multi-target models (opus-mt-en-ROMANCE, tc-big multi-target models): the output language is
//! a `>>xxx<<` token before the source. Parity with transformers on the committed `tiny-multi`
//! fixture (multi_target.json, made by scripts/make_fixtures.py: its references translate
//! `>>fra<< text` and `>>eng<< text`), the option that puts the token there, and its errors.

use crate::common::*;
use marian_wasm::generate::GenerateOptions;
use marian_wasm::package::quant::Quant;
use marian_wasm::Translator;
use serde_json::Value;
use std::path::PathBuf;

fn fixture() -> PathBuf {
    fixtures_dir().join("tiny-multi")
}

fn references() -> Value {
    let text = std::fs::read_to_string(fixture().join("multi_target.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn opts(beams: usize, language: Option<&str>) -> GenerateOptions {
    GenerateOptions {
        num_beams: Some(beams),
        target_language: language.map(str::to_string),
        ..Default::default()
    }
}

fn err_text<T>(r: marian_wasm::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_manifest_and_the_tokenizer_know_the_languages() {
    let (_dir, pkg) = package(&fixture(), Quant::Q8);
    assert_eq!(pkg.manifest.target_languages, ["eng", "fra"]);
    let t = Translator::new(&pkg).unwrap();
    assert_eq!(t.tokenizer.language_tokens(), [">>eng<<", ">>fra<<"]);
    // A model with one target language has none, and its manifest says nothing.
    let (_dir, single) = package(&fixtures_dir().join("tiny-opus"), Quant::Q8);
    assert!(single.manifest.target_languages.is_empty());
    let json = std::fs::read_to_string(_dir.path().join("manifest.json")).unwrap();
    assert!(!json.contains("target_languages"));
}

#[test]
fn texts_with_codes_tokenize_as_transformers_does() {
    let t = translator(&fixture(), Quant::F32);
    let refs = references();
    for case in refs["tokenize"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(
            t.tokenizer.encode(text).unwrap(),
            ids(&case["ids"]),
            "{text:?}"
        );
    }
    for case in refs["cases"].as_array().unwrap() {
        let text = format!(
            ">>{}<< {}",
            case["language"].as_str().unwrap(),
            case["src"].as_str().unwrap()
        );
        assert_eq!(t.tokenizer.encode(&text).unwrap(), ids(&case["src_ids"]));
    }
}

#[test]
fn the_target_language_option_gives_transformers_tokens() {
    let t = translator(&fixture(), Quant::F32);
    let refs = references();
    let cases = refs["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for beams in [1, 4] {
        let key = if beams == 1 { "greedy" } else { "beam4" };
        for language in ["fra", "eng"] {
            let mine: Vec<&Value> = cases.iter().filter(|c| c["language"] == language).collect();
            let srcs: Vec<&str> = mine.iter().map(|c| c["src"].as_str().unwrap()).collect();
            // `fra` and `>>fra<<` name the same token; a batch and one text at a time agree.
            for code in [language.to_string(), format!(">>{language}<<")] {
                let out = t.translate(&srcs, &opts(beams, Some(&code)), 8).unwrap();
                for (c, tr) in mine.iter().zip(&out) {
                    assert_eq!(tr.ids, [ids(&c[key])], "{language} {key}: {:?}", c["src"]);
                    if beams == 1 {
                        assert_eq!(tr.text, c["greedy_text"].as_str().unwrap());
                    }
                }
            }
            let one = t
                .translate_streaming(srcs[0], &opts(beams, Some(language)), &mut |_| {})
                .unwrap();
            assert_eq!(one.ids, [ids(&mine[0][key])], "streaming {language} {key}");
        }
    }
    // The outputs differ by language: the token is really there.
    let src = cases[0]["src"].as_str().unwrap();
    let fra = t.translate(&[src], &opts(1, Some("fra")), 1).unwrap();
    let eng = t.translate(&[src], &opts(1, Some("eng")), 1).unwrap();
    assert_ne!(fra[0].ids, eng[0].ids);
}

#[test]
fn the_translators_own_language_serves_requests_that_name_none() {
    let mut t = translator(&fixture(), Quant::F32);
    let refs = references();
    let case = &refs["cases"].as_array().unwrap()[1];
    let language = case["language"].as_str().unwrap();
    t.target_language = Some(language.to_string());
    let src = case["src"].as_str().unwrap();
    let out = t.translate(&[src], &opts(1, None), 1).unwrap();
    assert_eq!(out[0].ids, [ids(&case["greedy"])]);
    // A text that names its language itself, as transformers users write it, needs no option.
    t.target_language = None;
    let own = format!(">>{language}<< {src}");
    let out = t.translate(&[&own], &opts(1, None), 1).unwrap();
    assert_eq!(out[0].ids, [ids(&case["greedy"])]);
}

#[test]
fn a_missing_or_unknown_language_is_a_clear_error() {
    let t = translator(&fixture(), Quant::Q8);
    let e = err_text(t.translate(&["A dog runs."], &opts(1, None), 1));
    assert!(e.contains("2 languages") && e.contains("eng, fra"), "{e}");
    // One text without a code is enough: the request names no language for it.
    let e = err_text(t.translate(&[">>fra<< A dog.", "A cat."], &opts(1, None), 1));
    assert!(e.contains("eng, fra"), "{e}");
    let e = err_text(t.translate(&["A dog runs."], &opts(1, Some("deu")), 1));
    assert!(e.contains("'deu'") && e.contains("eng, fra"), "{e}");
    let e = err_text(t.translate_streaming("A dog runs.", &opts(1, Some("es")), &mut |_| {}));
    assert!(e.contains("'es'"), "{e}");
    // Empty texts need no language.
    assert!(t.translate(&["", "  "], &opts(1, None), 1).is_ok());
    // A model with one target language refuses a code rather than ignoring it.
    let single = translator(&fixtures_dir().join("tiny-opus"), Quant::Q8);
    let e = err_text(single.translate(&["A dog runs."], &opts(1, Some("fra")), 1));
    assert!(e.contains("no target-language tokens"), "{e}");
    assert!(single
        .translate(&["A dog runs."], &opts(1, None), 1)
        .is_ok());
}

#[test]
fn a_long_text_gets_the_language_token_in_every_piece() {
    let t = translator(&fixture(), Quant::F32);
    let refs = references();
    let cases: Vec<&Value> = refs["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["language"] == "eng")
        .collect();
    // Longer than the model's 128 positions: split into sentences, each translated after the
    // token (each as it is alone).
    let sentences: Vec<String> = cases
        .iter()
        .map(|c| c["src"].as_str().unwrap().trim().to_string())
        .collect();
    let long = sentences.join(" ");
    assert!(t.tokenizer.encode(&long).unwrap().len() > 128);
    let out = t.translate(&[&long], &opts(1, Some("eng")), 4).unwrap();
    assert!(out[0].ids.len() > 1);
    let first = &t
        .tokenizer
        .encode(&format!(">>eng<< {}", sentences[0]))
        .unwrap();
    let pieces = t.split_for_model(&long, Some(">>eng<<")).unwrap();
    assert!(pieces.len() > 1);
    for piece in &pieces {
        match piece {
            marian_wasm::translator::Piece::Model(ids) => assert_eq!(ids[0], first[0]),
            other => panic!("unexpected {other:?}"),
        }
    }
    // The text's own code serves every piece too, and wins over the request's: the same ids as
    // the option gives.
    let own = format!(">>eng<< {long}");
    let by_own = t.translate(&[&own], &opts(1, None), 4).unwrap();
    assert_eq!(by_own[0].ids, out[0].ids);
    let both = t.translate(&[&own], &opts(1, Some("fra")), 4).unwrap();
    assert_eq!(both[0].ids, out[0].ids);
}

/// The CLI contract: `convert` then `translate --target-language CODE --ids`, one line each;
/// without the option it fails before reading a line, naming the codes.
#[test]
fn the_cli_takes_the_target_language() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_marian-wasm");
    let converted = Command::new(bin)
        .arg("convert")
        .arg(fixture())
        .arg(dir.path())
        .args(["--quant", "f32"])
        .output()
        .unwrap();
    assert!(converted.status.success(), "convert failed");
    let refs = references();
    let fra: Vec<&Value> = refs["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["language"] == "fra")
        .collect();
    let input: String = fra
        .iter()
        .map(|c| format!("{}\n", c["src"].as_str().unwrap()))
        .collect();
    let run = |args: &[&str]| {
        let mut child = Command::new(bin)
            .arg("translate")
            .arg("--model")
            .arg(dir.path())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // The child may exit before reading (a refused option): a broken pipe is expected then.
        let _ = stdin.write_all(input.as_bytes());
        drop(stdin);
        child.wait_with_output().unwrap()
    };
    let out = run(&["--target-language", "fra", "--ids", "--beams", "1"]);
    assert!(out.status.success());
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let want: Vec<String> = fra
        .iter()
        .map(|c| {
            ids(&c["greedy"])
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    assert_eq!(lines, want);
    let out = run(&["--beams", "1"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("eng, fra"), "{stderr}");
}
