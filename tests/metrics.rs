//! BLEU and chrF against sacreBLEU 2.6.0 (tests/fixtures/metrics, made by
//! scripts/make_metric_fixtures.py), 13a tokenisation, and the `eval` command.

use marian_wasm::metrics::{
    self, corpus_bleu, corpus_chrf, tokenize_13a, BleuStats, ChrfStats, BLEU_SIGNATURE,
    CHRF_SIGNATURE, SACREBLEU_VERSION,
};
use marian_wasm::{GenerateOptions, Package, Translator};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Required by the task: 0.01. What is seen is far below (bit-identical on x86-64 Linux);
/// 1e-9 still leaves room for a different libm's last-bit differences in ln/exp.
const TOLERANCE: f64 = 1e-9;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/metrics")
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("expected.json")).unwrap()).unwrap()
}

fn sets(exp: &Value) -> &Vec<Value> {
    let sets = exp["sets"].as_array().unwrap();
    assert!(sets.len() >= 10, "expected.json lists {} sets", sets.len());
    sets
}

fn u64s(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

fn lines(set: &Value, key: &str) -> Vec<String> {
    let lines = metrics::read_lines(&dir().join(set[key].as_str().unwrap())).unwrap();
    assert_eq!(lines.len() as u64, set["lines"].as_u64().unwrap());
    lines
}

#[test]
fn fixtures_come_from_the_reproduced_version() {
    let exp = expected();
    assert_eq!(exp["sacrebleu_version"], SACREBLEU_VERSION);
    assert_eq!(exp["bleu_signature"], BLEU_SIGNATURE);
    assert_eq!(exp["chrf_signature"], CHRF_SIGNATURE);
}

#[test]
fn bleu_matches_sacrebleu_on_every_set() {
    let exp = expected();
    let (mut max_diff, mut bit_exact) = (0.0f64, 0);
    for set in sets(&exp) {
        let name = set["name"].as_str().unwrap();
        let (hyps, refs) = (lines(set, "hyp"), lines(set, "ref"));
        let got = corpus_bleu(&hyps, &refs).unwrap();
        assert_eq!(
            got.stats.correct.to_vec(),
            u64s(&set["bleu_counts"]),
            "{name}: counts"
        );
        assert_eq!(
            got.stats.total.to_vec(),
            u64s(&set["bleu_totals"]),
            "{name}: totals"
        );
        assert_eq!(
            got.stats.hyp_len,
            set["bleu_sys_len"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            got.stats.ref_len,
            set["bleu_ref_len"].as_u64().unwrap(),
            "{name}"
        );
        let want_p: Vec<f64> = set["bleu_precisions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        for (g, w) in got.precisions.iter().zip(&want_p) {
            assert!(
                (g - w).abs() <= TOLERANCE,
                "{name}: precisions {:?} vs {want_p:?}",
                got.precisions
            );
        }
        let want_bp = set["bleu_bp"].as_f64().unwrap();
        assert!(
            (got.bp - want_bp).abs() <= TOLERANCE,
            "{name}: bp {} vs {want_bp}",
            got.bp
        );
        let want = set["bleu"].as_f64().unwrap();
        let diff = (got.score - want).abs();
        assert!(
            diff <= TOLERANCE,
            "{name}: BLEU {} vs sacreBLEU {want}",
            got.score
        );
        max_diff = max_diff.max(diff);
        bit_exact += usize::from(format!("{:?}", got.score) == set["bleu_repr"].as_str().unwrap());
        assert_eq!(got.to_string(), set["bleu_str"].as_str().unwrap(), "{name}");
    }
    eprintln!(
        "BLEU: max |ours - sacreBLEU| = {max_diff:e}; same repr on {bit_exact}/{} sets",
        sets(&exp).len()
    );
}

#[test]
fn chrf_matches_sacrebleu_on_every_set() {
    let exp = expected();
    let (mut max_diff, mut bit_exact) = (0.0f64, 0);
    for set in sets(&exp) {
        let name = set["name"].as_str().unwrap();
        let (hyps, refs) = (lines(set, "hyp"), lines(set, "ref"));
        let got = corpus_chrf(&hyps, &refs).unwrap();
        let flat: Vec<u64> = got.stats.orders.iter().flatten().copied().collect();
        assert_eq!(
            flat,
            u64s(&set["chrf_stats"]),
            "{name}: [hyp, ref, match] per order"
        );
        let want = set["chrf"].as_f64().unwrap();
        let diff = (got.score - want).abs();
        assert!(
            diff <= TOLERANCE,
            "{name}: chrF {} vs sacreBLEU {want}",
            got.score
        );
        max_diff = max_diff.max(diff);
        bit_exact += usize::from(format!("{:?}", got.score) == set["chrf_repr"].as_str().unwrap());
        assert_eq!(got.to_string(), set["chrf_str"].as_str().unwrap(), "{name}");
    }
    eprintln!(
        "chrF: max |ours - sacreBLEU| = {max_diff:e}; same repr on {bit_exact}/{} sets",
        sets(&exp).len()
    );
}

#[test]
fn tokenize_13a_matches_sacrebleu() {
    let exp = expected();
    let cases = exp["tokenize_13a"].as_array().unwrap();
    assert!(cases.len() > 200);
    for c in cases {
        let (input, want) = (c[0].as_str().unwrap(), c[1].as_str().unwrap());
        assert_eq!(tokenize_13a(input), want, "input {input:?}");
    }
}

#[test]
fn tokenize_13a_tricky_strings() {
    let cases = [
        ("Hello, world.", "Hello , world ."),
        // Digits keep their separators; ASCII digits only.
        ("3.14 and 1,000", "3.14 and 1,000"),
        ("١٢٣.٤", "١٢٣ . ٤"),
        ("a..b", "a . . b"),
        ("1..2", "1 . . 2"),
        // A leading space counts as "not a digit": ".5" is split, "5." too.
        (".5 5. ,5", ". 5 5 . , 5"),
        ("10-20 a-b 5- -6", "10 - 20 a-b 5 - -6"),
        // Entities are decoded in order: &amp;lt; becomes <, &amp;quot; stays &quot;.
        ("&amp;lt; &amp;quot; &AMP;", "< & quot ; & AMP ;"),
        ("<skipped>x", "x"),
        ("line-\nbreak\nnext", "linebreak next"),
        ("l'homme d'affaires", "l'homme d'affaires"),
        ("(hi) [x] {y} $5 @a #b", "( hi ) [ x ] { y } $ 5 @ a # b"),
        // Python's str.split(): U+001C..U+001F and U+00A0 split, U+200B does not.
        ("a\u{1c}b\u{a0}c\u{200b}d", "a b c\u{200b}d"),
        ("", ""),
        ("   ", ""),
    ];
    for (input, want) in cases {
        assert_eq!(tokenize_13a(input), want, "input {input:?}");
    }
}

#[test]
fn python_whitespace() {
    for c in [
        '\u{1c}', '\u{1f}', '\u{85}', '\u{a0}', '\u{2028}', '\u{3000}', '\t', '\u{b}',
    ] {
        assert!(metrics::is_py_whitespace(c), "{c:?}");
    }
    for c in ['\u{200b}', '\u{180e}', '\u{feff}', '\u{1b}', 'a'] {
        assert!(!metrics::is_py_whitespace(c), "{c:?}");
    }
    assert_eq!(tokenize_13a("1.5,2"), "1.5,2");
}

#[test]
fn small_hand_checked_scores() {
    // Identical text: 100 for both (BLEU exactly as sacreBLEU: exp(ln(100)) = 100.00000000000004).
    let s = ["Un chat dort sur le canapé."];
    assert_eq!(corpus_bleu(&s, &s).unwrap().score, 100.00000000000004);
    assert_eq!(corpus_chrf(&s, &s).unwrap().score, 100.0);
    // Empty corpus scores 0 (sacreBLEU would raise).
    let none: [&str; 0] = [];
    assert_eq!(corpus_bleu(&none, &none).unwrap().score, 0.0);
    assert_eq!(corpus_chrf(&none, &none).unwrap().score, 0.0);
    // Mismatched lengths are an error, not a silent truncation (sacreBLEU's zip truncates).
    let err = corpus_bleu(&["a", "b"], &["a"]).unwrap_err().to_string();
    assert!(err.contains("2 hypotheses but 1 references"), "{err}");
    assert!(corpus_chrf(&["a"], &["a", "b"]).is_err());
    // chrF: a sentence with an empty reference contributes no hypothesis n-grams.
    let st = ChrfStats::sentence("abc", "");
    assert_eq!(st.orders[0], [0, 0, 0]);
    // BLEU: trailing whitespace is stripped before tokenizing.
    assert_eq!(BleuStats::sentence("a b \u{2029}", "a b").hyp_len, 2);
}

#[test]
fn read_lines_splits_on_newline_only() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("x.txt");
    std::fs::write(&p, "a\u{2028}b\r\n\nc\u{85}d").unwrap();
    assert_eq!(
        metrics::read_lines(&p).unwrap(),
        ["a\u{2028}b", "", "c\u{85}d"]
    );
    std::fs::write(&p, "").unwrap();
    assert!(metrics::read_lines(&p).unwrap().is_empty());
    std::fs::write(&p, b"ok\n\xff\n").unwrap();
    let err = metrics::read_lines(&p).unwrap_err().to_string();
    assert!(err.contains("line 2") && err.contains("x.txt"), "{err}");
}

fn eval(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_marian-wasm"))
        .arg("eval")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn cli_eval_hyp_prints_sacrebleu_scores() {
    let exp = expected();
    let set = sets(&exp)
        .iter()
        .find(|s| s["name"] == "multi30k-light")
        .unwrap();
    let hyp = dir().join(set["hyp"].as_str().unwrap());
    let reference = dir().join(set["ref"].as_str().unwrap());
    let (hyp, reference) = (hyp.to_str().unwrap(), reference.to_str().unwrap());

    let out = eval(&["--hyp", hyp, "--ref", reference, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!((v["bleu"].as_f64().unwrap() - set["bleu"].as_f64().unwrap()).abs() <= TOLERANCE);
    assert!((v["chrf"].as_f64().unwrap() - set["chrf"].as_f64().unwrap()).abs() <= TOLERANCE);
    assert_eq!(v["sentences"], set["lines"]);
    assert!(v["beams"].is_null() && v["seconds"].is_null());

    let out = eval(&["--hyp", hyp, "--ref", reference]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let want = format!(
        "BLEU = {:.2} ({BLEU_SIGNATURE}) chrF = {:.2} ({CHRF_SIGNATURE})\n",
        set["bleu"].as_f64().unwrap(),
        set["chrf"].as_f64().unwrap()
    );
    assert_eq!(text, want);
}

#[test]
fn cli_eval_rejects_mismatched_files_and_adapters() {
    let d = tempfile::tempdir().unwrap();
    let hyp = d.path().join("short.hyp");
    let reference = d.path().join("long.ref");
    std::fs::write(&hyp, "a\nb\n").unwrap();
    std::fs::write(&reference, "a\nb\nc\n").unwrap();
    let (hyp, reference) = (hyp.to_str().unwrap(), reference.to_str().unwrap());
    let out = eval(&["--hyp", hyp, "--ref", reference]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("short.hyp has 2 lines") && err.contains("long.ref has 3"),
        "{err}"
    );
    // Same check for --src, before any model is loaded.
    let out = eval(&["--src", hyp, "--ref", reference, "--model", "/nonexistent"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("short.hyp has 2 lines"),
        "{err}"
    );

    // A missing adapter file is named.
    let out = eval(&["--src", reference, "--ref", reference, "--adapter", "x.bin"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("x.bin"), "{err}");

    let out = eval(&["--ref", reference]);
    assert!(!out.status.success(), "neither --src nor --hyp");
}

#[test]
fn cli_eval_translates_with_the_embedded_default() {
    // References = the library's own translations, so the CLI must score 100.
    let src = "A man is riding a bicycle down the street.\nTwo dogs are playing in the snow.\nA girl in a red dress.\n";
    let t = Translator::new(&Package::embedded().unwrap()).unwrap();
    let lines: Vec<&str> = src.lines().collect();
    let opts = GenerateOptions {
        num_beams: Some(2),
        ..Default::default()
    };
    let refs: Vec<String> = t
        .translate(&lines, &opts, 8)
        .unwrap()
        .into_iter()
        .map(|x| x.text)
        .collect();
    assert!(refs.iter().all(|r| !r.trim().is_empty()));
    let d = tempfile::tempdir().unwrap();
    let (sp, rp) = (d.path().join("src.en"), d.path().join("ref.fr"));
    std::fs::write(&sp, src).unwrap();
    std::fs::write(&rp, refs.join("\n") + "\n").unwrap();
    let out = eval(&[
        "--src",
        sp.to_str().unwrap(),
        "--ref",
        rp.to_str().unwrap(),
        "--beams",
        "2",
        "--batch-size",
        "2",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!((v["bleu"].as_f64().unwrap() - 100.0).abs() < 1e-9);
    assert_eq!(v["chrf"].as_f64().unwrap(), 100.0);
    assert_eq!(v["sentences"], 3);
    assert_eq!(v["beams"], 2);
    assert!(v["seconds"].as_f64().unwrap() >= 0.0);
}
