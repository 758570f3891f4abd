//! The CLI contract (DESIGN.md): translate without --model uses the embedded default.

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
    let got: Vec<String> = cli_translate(input, &[], &[])
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

/// A few translations of the default model, pinned (with the package hash above): they change
/// only when models/default does. Made with `marian-wasm translate` (package defaults, beam 4).
const PINNED_TRANSLATIONS: &str = include_str!("fixtures/default-model-translations.tsv");

#[test]
fn default_model_gives_the_pinned_translations() {
    let pairs: Vec<(&str, &str)> = PINNED_TRANSLATIONS
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split_once('\t').expect("source<TAB>translation"))
        .collect();
    assert!(pairs.len() >= 5);
    let t = Translator::new(&Package::embedded().unwrap()).unwrap();
    let src: Vec<&str> = pairs.iter().map(|p| p.0).collect();
    let got = t.translate(&src, &GenerateOptions::default(), 8).unwrap();
    for ((s, want), got) in pairs.iter().zip(got) {
        assert_eq!(&got.text, want, "{s}");
    }
}

/// Out-of-domain input still gives something sensible and never fails: unknown characters,
/// a long multi-sentence text, empty lines, UI strings.
#[test]
fn default_model_survives_out_of_domain_input() {
    let t = Translator::new(&Package::embedded().unwrap()).unwrap();
    let long = "A man is walking his dog in the park. ".repeat(120);
    let inputs = [
        "Click Save to keep your changes.",
        "Ω≈ç√∫ 😀 — « quoted » text with symbols ©®™ and ünïcödé",
        "",
        "   ",
        long.as_str(),
        "x",
    ];
    let out = t
        .translate(&inputs, &GenerateOptions::default(), 4)
        .unwrap();
    assert_eq!(out.len(), inputs.len());
    assert_eq!(out[2].text, "");
    assert_eq!(out[3].text, "");
    assert!(!out[0].text.is_empty() && !out[1].text.is_empty() && !out[5].text.is_empty());
    // The long text is split into chunks the model can take, each translated: output of
    // comparable length, not truncated.
    assert!(out[4].ids.len() >= 2, "long input was not split");
    assert!(
        out[4].text.len() > long.len() / 2,
        "long input lost content: {} of {} bytes",
        out[4].text.len(),
        long.len()
    );
}

/// Standard output of `marian-wasm translate ARGS` (the embedded default model unless ARGS
/// name one) fed `input`, with `env` set; the command must succeed.
fn cli_translate(input: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_marian-wasm"));
    cmd.arg("translate").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
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
    assert!(out.status.success(), "translate {args:?} {env:?} failed");
    String::from_utf8(out.stdout).unwrap()
}

/// The q8 products are the same bits whatever the thread count and whichever kernel the CPU
/// picks (AVX-512 VNNI, AVX2 or portable Rust, as far as this CPU has them; the WebAssembly
/// kernel does the same arithmetic), so the translations are too: greedy and beam 4, batches
/// of 16, one shard of rows or several (src/row_shards.rs: 2 and more threads shard a batch of 16;
/// one thread does not); also for a package with residuals (issue 17: 1, 2, 4 and 16 threads).
#[test]
fn output_does_not_depend_on_threads_or_instruction_set() {
    let mut input: String = PINNED_TRANSLATIONS
        .lines()
        .filter_map(|l| l.split_once('\t').map(|p| p.0))
        .collect::<Vec<_>>()
        .join("\n");
    input.push_str(
        "\nA man in a blue shirt is standing on a ladder cleaning windows.\n\
         Several people are waiting for the bus in the rain.\n\
         An old man sits on a bench and feeds the pigeons.\n\
         A musician plays the guitar on a busy street corner.\n\
         Three workers in orange vests are repairing the road.\n\
         The children are laughing while they play with a kite.\n\
         A chef is preparing food in a large restaurant kitchen.\n\
         People are dancing at a wedding under colorful lights.\n\
         A boy jumps into the swimming pool with his clothes on.\n\
         Two women are walking their dogs along the river.\n",
    );
    // The trained default model (near-ties are rare, so real drift shows), and tiny-opus with a
    // residual on its embeddings and decoder (`convert --residual`: the screened output
    // projection and the proposal pass add the residual's products for a few tokens a row).
    let residual = tempfile::tempdir().unwrap();
    let tiny_opus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-opus");
    let converted = Command::new(env!("CARGO_BIN_EXE_marian-wasm"))
        .arg("convert")
        .arg(&tiny_opus)
        .arg(residual.path())
        .args(["--quant", "q8", "--residual", "embeddings,decoder."])
        .output()
        .unwrap();
    assert!(converted.status.success(), "convert --residual failed");
    let residual_dir = residual.path().to_str().unwrap();
    for (model, beams) in [
        (None, "1"),
        (None, "4"),
        (Some(residual_dir), "1"),
        (Some(residual_dir), "4"),
    ] {
        let mut args = vec!["--ids", "--beams", beams, "--batch-size", "16"];
        if let Some(dir) = model {
            args.extend(["--model", dir]);
        }
        let reference = cli_translate(&input, &args, &[("RAYON_NUM_THREADS", "1")]);
        assert_eq!(reference.lines().count(), input.lines().count());
        let runs: [&[(&str, &str)]; 8] = [
            &[("RAYON_NUM_THREADS", "2")],
            &[("RAYON_NUM_THREADS", "2"), ("MARIAN_SHARDS", "off")],
            &[("RAYON_NUM_THREADS", "2"), ("MARIAN_SHARDS", "3")],
            &[("RAYON_NUM_THREADS", "4")],
            &[("RAYON_NUM_THREADS", "16")],
            // Every step on the next of 1, 2, 4, 8, 16 threads (src/adaptive_threads.rs).
            &[
                ("RAYON_NUM_THREADS", "16"),
                ("MARIAN_ADAPTIVE_THREADS", "cycle"),
            ],
            &[("MARIAN_QGEMM", "avx2")],
            &[("MARIAN_QGEMM", "portable")],
        ];
        for env in runs {
            let got = cli_translate(&input, &args, env);
            assert_eq!(
                got, reference,
                "{model:?} beams {beams}: {env:?} changed the output"
            );
        }
    }
}
