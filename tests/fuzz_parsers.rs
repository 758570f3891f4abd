//! Parsers fuzzed: every reader of outside bytes gets mutated versions of valid inputs and must
//! return `Ok` or an error — never panic. Targets: the package manifest; a package's tokenizer
//! JSON and vocabulary and its safetensors weights (each with the manifest's hashes updated, so
//! the bytes reach the parser behind the sha256 check); adapter files (safetensors header and
//! JSON metadata); fine-tuning pairs (TSV and JSON lines); the tokenizer on arbitrary text and ids;
//! span protection (`protect` + `restore`) on arbitrary text.
//!
//! Mutations (by hand: the stable toolchain has no libFuzzer; a seeded ChaCha8 stream keeps every
//! run reproducible): bit flips, bytes set to JSON/number syntax, ranges deleted, duplicated or
//! filled with random bytes, truncation, splices of two inputs, decimal numbers replaced by
//! extreme values. `MARIAN_FUZZ_CASES` (default 300 per target: CI's short seeded pass) scales
//! the run, `MARIAN_FUZZ_SEED` picks the stream; `scripts/fuzz.sh` runs 1 M+ cases in all.

use crate::common::*;
use marian_wasm::adapter::{Adapter, AdapterManifest, ADAPTER_FORMAT, ADAPTER_FORMAT_VERSION};
use marian_wasm::finetune::pairs::parse_pairs;
use marian_wasm::model::Marian;
use marian_wasm::package::{sha256_hex, Manifest, Package};
use marian_wasm::protect::{protect, restore};
use marian_wasm::tokenizer::MarianTokenizer;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

fn cases(weight: f64) -> usize {
    let base: usize = std::env::var("MARIAN_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    ((base as f64 * weight) as usize).max(1)
}

fn rng(target: u64) -> ChaCha8Rng {
    let seed: u64 = std::env::var("MARIAN_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20261201);
    ChaCha8Rng::seed_from_u64(seed ^ target.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

const SYNTAX: &[u8] = b"{}[]\",:0123456789-+.eE \\nt\x00\xff";
const EXTREMES: &[&str] = &[
    "0",
    "-1",
    "4294967296",
    "18446744073709551616",
    "1e308",
    "-0.0",
    "NaN",
    "99999999999999999999999",
];

/// One mutated copy of `seed` (`other`: a second input to splice from).
fn mutate(rng: &mut ChaCha8Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let n = b.len();
        match rng.random_range(0..8) {
            0 if n > 0 => {
                let i = rng.random_range(0..n);
                b[i] ^= 1 << rng.random_range(0..8);
            }
            1 if n > 0 => {
                let i = rng.random_range(0..n);
                b[i] = SYNTAX[rng.random_range(0..SYNTAX.len())];
            }
            2 if n > 0 => {
                let i = rng.random_range(0..n);
                let len = rng.random_range(1..=16.min(n - i));
                b.drain(i..i + len);
            }
            3 if n > 0 => {
                let i = rng.random_range(0..n);
                let len = rng.random_range(1..=32.min(n - i));
                let chunk = b[i..i + len].to_vec();
                let at = rng.random_range(0..=n);
                b.splice(at..at, chunk);
            }
            4 => {
                let at = rng.random_range(0..=n);
                let len = rng.random_range(1..=8);
                let junk: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                b.splice(at..at, junk);
            }
            5 if n > 0 => b.truncate(rng.random_range(0..n)),
            6 if !other.is_empty() => {
                let cut = rng.random_range(0..=n);
                let from = rng.random_range(0..other.len());
                b.truncate(cut);
                b.extend_from_slice(&other[from..]);
            }
            _ => {
                // A decimal number replaced by an extreme one.
                let digits: Vec<usize> = (0..n).filter(|&i| b[i].is_ascii_digit()).collect();
                if let Some(&i) = digits.get(rng.random_range(0..digits.len().max(1))) {
                    let mut e = i;
                    while e < n && b[e].is_ascii_digit() {
                        e += 1;
                    }
                    let x = EXTREMES[rng.random_range(0..EXTREMES.len())];
                    b.splice(i..e, x.bytes());
                }
            }
        }
    }
    b
}

thread_local! {
    /// Set while this thread runs a fuzz case: its panics are expected, recorded, not printed.
    static FUZZING: Cell<bool> = const { Cell::new(false) };
    /// The message of this thread's last panic while fuzzing.
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Installs (once per process) a panic hook that records the panics of threads running a fuzz
/// case and hands every other panic to the hook before it. The hook is process-wide and the
/// other modules' tests run beside these (one test binary), so it is never swapped per test.
fn quiet_panics_while_fuzzing() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let before = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if FUZZING.with(Cell::get) {
                LAST_PANIC.with(|last| *last.borrow_mut() = info.to_string());
            } else {
                before(info);
            }
        }));
    });
}

/// Runs `f` on `n` mutated inputs; panics (failing the test) with the first input that panicked.
fn fuzz(name: &str, n: usize, rng: &mut ChaCha8Rng, seeds: &[Vec<u8>], f: impl Fn(&[u8])) {
    let t0 = std::time::Instant::now();
    quiet_panics_while_fuzzing();
    for case in 0..n {
        let s = &seeds[rng.random_range(0..seeds.len())];
        let o = &seeds[rng.random_range(0..seeds.len())];
        let input = mutate(rng, s, o);
        FUZZING.with(|on| on.set(true));
        let outcome = catch_unwind(AssertUnwindSafe(|| f(&input)));
        FUZZING.with(|on| on.set(false));
        if outcome.is_err() {
            let shown = String::from_utf8_lossy(&input[..input.len().min(400)]).into_owned();
            let why = LAST_PANIC.with(|last| last.take());
            panic!(
                "{name}: case {case} panicked ({why}) on input ({} bytes): {shown:?}",
                input.len()
            );
        }
    }
    eprintln!(
        "fuzz {name}: {n} cases, no panic, {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

fn embedded_files() -> (Vec<u8>, BTreeMap<String, Vec<u8>>) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default");
    let manifest = std::fs::read(dir.join("manifest.json")).unwrap();
    let m = Manifest::parse(&manifest).unwrap();
    let files = m
        .files
        .iter()
        .map(|f| (f.name.clone(), std::fs::read(dir.join(&f.name)).unwrap()))
        .collect();
    (manifest, files)
}

/// The manifest with `name`'s size and sha256 set to those of `bytes`.
fn rehash(manifest: &[u8], name: &str, bytes: &[u8]) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(manifest).unwrap();
    for f in v["files"].as_array_mut().unwrap() {
        if f["name"] == name {
            f["size"] = bytes.len().into();
            f["sha256"] = sha256_hex(bytes).into();
        }
    }
    serde_json::to_vec_pretty(&v).unwrap()
}

#[test]
fn manifest_parser_never_panics() {
    let (manifest, _) = embedded_files();
    let mut r = rng(1);
    fuzz("manifest", cases(40.0), &mut r, &[manifest], |b| {
        let _ = Manifest::parse(b);
    });
}

#[test]
fn tokenizer_files_never_panic() {
    // The tokenizer JSON files are 0.6 MB each: fewer cases, each parses a whole file.
    let (manifest, files) = embedded_files();
    let mut r = rng(2);
    for name in ["vocab.json", "source.tokenizer.json"] {
        let seed = files[name].clone();
        fuzz(name, cases(0.2), &mut r, &[seed], |b| {
            let m = rehash(&manifest, name, b);
            let mut f = files.clone();
            f.insert(name.to_string(), b.to_vec());
            if let Ok(pkg) = Package::from_files(&m, f) {
                if let Ok(t) = MarianTokenizer::from_package(&pkg) {
                    let ids = t.encode("A man is riding a bike.").unwrap_or_default();
                    let _ = t.decode(&ids);
                }
            }
        });
    }
}

/// The first panic this fuzzing found: tokenizers 0.23 `expect`s a parsable `Precompiled`
/// character map; a damaged one is now an error naming the file.
#[test]
fn a_damaged_precompiled_charsmap_is_an_error() {
    let (manifest, files) = embedded_files();
    let name = "source.tokenizer.json";
    let text = String::from_utf8(files[name].clone()).unwrap();
    let damaged = text.replacen(
        "\"precompiled_charsmap\":\"",
        "\"precompiled_charsmap\":\"AAAA",
        1,
    );
    assert_ne!(damaged, text, "the fixture has a precompiled_charsmap");
    let m = rehash(&manifest, name, damaged.as_bytes());
    let mut f = files.clone();
    f.insert(name.to_string(), damaged.into_bytes());
    let pkg = Package::from_files(&m, f).unwrap();
    let err = MarianTokenizer::from_package(&pkg)
        .err()
        .expect("an error")
        .to_string();
    assert!(
        err.contains(name) && err.contains("Precompiled normalizer is damaged"),
        "{err}"
    );
}

#[test]
fn model_weights_header_never_panics() {
    // Mutations inside the safetensors header (names, dtypes, shapes, offsets) of a small
    // converted package, then the model built from it.
    let dir = tempfile::tempdir().unwrap();
    marian_wasm::package::convert::convert_with(
        &fixtures_dir().join("tiny-opus"),
        dir.path(),
        &marian_wasm::package::convert::ConvertOptions {
            rounding: marian_wasm::package::convert::Rounding::Nearest,
            ..marian_wasm::package::convert::ConvertOptions::new(
                marian_wasm::package::quant::Quant::Q8,
            )
        },
    )
    .unwrap();
    let manifest = std::fs::read(dir.path().join("manifest.json")).unwrap();
    let m = Manifest::parse(&manifest).unwrap();
    let files: BTreeMap<String, Vec<u8>> = m
        .files
        .iter()
        .map(|f| {
            (
                f.name.clone(),
                std::fs::read(dir.path().join(&f.name)).unwrap(),
            )
        })
        .collect();
    let weights = files[&m.weights].clone();
    let header_end = 8 + u64::from_le_bytes(weights[..8].try_into().unwrap()) as usize;
    let (head, body) = weights.split_at(header_end);
    let mut r = rng(3);
    fuzz(
        "model.safetensors header",
        cases(2.0),
        &mut r,
        &[head.to_vec()],
        |h| {
            let mut w = h.to_vec();
            w.extend_from_slice(body);
            let mm = rehash(&manifest, &m.weights, &w);
            let mut f = files.clone();
            f.insert(m.weights.clone(), w);
            if let Ok(pkg) = Package::from_files(&mm, f) {
                let _ = Marian::from_package(&pkg);
            }
        },
    );
}

fn adapter_seed() -> Vec<u8> {
    let (d, f) = (8, 16);
    Adapter {
        manifest: AdapterManifest {
            format: ADAPTER_FORMAT.into(),
            format_version: ADAPTER_FORMAT_VERSION,
            base_model_sha256: "0".repeat(64),
            d_model: d,
            target_vocab_size: 100,
            decoder_ffn_dim: f,
            trained: "head".into(),
            hyperparameters: serde_json::json!({"lr": 0.001}),
            metrics: serde_json::json!({}),
            created_by: "tests/fuzz_parsers.rs".into(),
        },
        ids: vec![3, 7],
        rank: 2,
        lora_b: vec![0.5; 4],
        lora_a: vec![0.25; 2 * d],
        delta_bias: vec![0.1; 2],
        conditions: None,
        last_layer: Some(marian_wasm::adapter::LastLayerAdapter {
            rank: 1,
            a: vec![0.0; f],
            b: vec![0.0; d],
        }),
    }
    .to_bytes()
    .unwrap()
}

#[test]
fn adapter_files_never_panic() {
    let seed = adapter_seed();
    assert!(
        Adapter::from_bytes(&seed).is_ok(),
        "the seed is a valid adapter"
    );
    let mut r = rng(4);
    fuzz("adapter", cases(30.0), &mut r, &[seed], |b| {
        let _ = Adapter::from_bytes(b);
    });
}

#[test]
fn pairs_files_never_panic() {
    let tsv =
        b"A man.\tUn homme.\nTwo dogs play.\tDeux chiens jouent.\r\n\n\tonly target\nno tab\n"
            .to_vec();
    let jsonl = br#"{"source": "A man.", "target": "Un homme."}
{"source": "Two dogs.", "target": "Deux chiens."}
{"source": 3, "target": null}
"#
    .to_vec();
    let mut r = rng(5);
    fuzz("pairs", cases(40.0), &mut r, &[tsv, jsonl], |b| {
        let _ = parse_pairs(b);
    });
}

#[test]
fn tokenizer_and_span_protection_take_any_text() {
    let t = MarianTokenizer::from_package(&Package::embedded().unwrap()).unwrap();
    let seeds: Vec<Vec<u8>> = [
        "The score was 6-3 at 12:30, see https://example.org/a?b=1 or mail jane@example.com 🎉.",
        "🇫🇷👍🏽 1,000.5 www.x.y/z – «quoted» \u{00AD}soft\u{200D}joiner </s> <unk> <pad>",
        "Un homme fait du vélo. 2024-05-17 50% ❤️",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let mut r = rng(6);
    let vocab = 60_000u32;
    fuzz("tokenizer + protect", cases(40.0), &mut r, &seeds, |b| {
        let text = String::from_utf8_lossy(b);
        if let Ok(ids) = t.encode(&text) {
            let _ = t.decode(&ids);
        }
        // Ids as the model could emit them, in range or not.
        let ids: Vec<u32> = b.chunks(2).map(|c| c[0] as u32 * 251 % vocab).collect();
        let _ = t.decode(&ids);
        let p = protect(&text, |s| s.len() % 3 == 0);
        // The translation: another mutated text (spans found, respelled or missing).
        let other = String::from_utf8_lossy(&b[b.len() / 2..]);
        let _ = restore(&other, &p.spans);
        let _ = restore(&p.model_text, &p.spans);
    });
}
