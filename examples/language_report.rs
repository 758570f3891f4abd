//! Accuracy of the language detector (src/language.rs, whatlang) on a held-out set built from
//! the data at hand: Multi30k test_2016_flickr (image captions) and geeqie-ui (UI strings), both
//! in English and French — the only two languages those files have. whatlang was not built from
//! either, so all of it is held out. Reads the files in place from `MARIAN_DATA` (default
//! `../shared/data`); run through `bash scripts/language_detect_report.sh`.
//!
//! Per corpus, language and length bucket (words: 1–3, 4–8, 9+) it prints how many texts, the share
//! detected correctly among all 70 languages, the share answered `und`, the share correct when the
//! candidates are English and French only (`detect_among`, what a `sourceLanguage: "auto"`
//! translator over an en/fr catalog does), and the share of those with a confidence of at least
//! 0.5 (`AUTO_MIN_CONFIDENCE` in www/marian-wasm.js: below it the text takes its call's language).

use marian_wasm::language::{detect, detect_among, UNDETERMINED};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Default)]
struct Tally {
    n: usize,
    any: usize,
    und: usize,
    among: usize,
    sure: usize,
    wrong: BTreeMap<&'static str, usize>,
}

fn bucket(words: usize) -> &'static str {
    match words {
        0..=3 => "1-3",
        4..=8 => "4-8",
        _ => "9+",
    }
}

fn pct(k: usize, n: usize) -> String {
    if n == 0 {
        "-".into()
    } else {
        format!("{:.1}", 100.0 * k as f64 / n as f64)
    }
}

fn main() {
    let data =
        PathBuf::from(std::env::var("MARIAN_DATA").unwrap_or_else(|_| "../shared/data".into()));
    let sets = [
        ("multi30k test_2016_flickr", "multi30k/test_2016_flickr"),
        ("geeqie-ui", "geeqie-ui/pairs"),
    ];
    // (corpus, language, bucket) -> tally; "all" rows too.
    let mut tallies: BTreeMap<(String, &str, &str), Tally> = BTreeMap::new();
    for (name, stem) in sets {
        for lang in ["en", "fr"] {
            let path = data.join(format!("{stem}.{lang}"));
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                eprintln!(
                    "language_report: cannot read {} ({e}); set MARIAN_DATA to the folder holding multi30k/ and geeqie-ui/",
                    path.display()
                );
                std::process::exit(2);
            });
            for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                let words = line.split_whitespace().count();
                let best = detect(line)[0].clone();
                let among = detect_among(line, &["en", "fr"])[0].clone();
                for key in [
                    (name.to_string(), lang, bucket(words)),
                    (name.to_string(), lang, "all"),
                    ("both corpora".to_string(), lang, bucket(words)),
                    ("both corpora".to_string(), lang, "all"),
                ] {
                    let t = tallies.entry(key).or_default();
                    t.n += 1;
                    t.any += usize::from(best.language == lang);
                    t.und += usize::from(best.language == UNDETERMINED);
                    t.among += usize::from(among.language == lang);
                    t.sure += usize::from(among.language == lang && among.confidence >= 0.5);
                    if best.language != lang {
                        *t.wrong.entry(best.language).or_default() += 1;
                    }
                }
            }
        }
    }
    println!("| corpus | language | words | texts | correct (70 languages) % | und % | correct (en/fr only) % | correct, confidence ≥ 0.5 (en/fr only) % | most frequent wrong answers (70 languages) |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for ((corpus, lang, b), t) in &tallies {
        let mut wrong: Vec<_> = t.wrong.iter().collect();
        wrong.sort_by(|a, b| b.1.cmp(a.1));
        let wrong: Vec<String> = wrong
            .iter()
            .take(4)
            .map(|(l, k)| format!("{l} {k}"))
            .collect();
        println!(
            "| {corpus} | {lang} | {b} | {} | {} | {} | {} | {} | {} |",
            t.n,
            pct(t.any, t.n),
            pct(t.und, t.n),
            pct(t.among, t.n),
            pct(t.sure, t.n),
            wrong.join(", ")
        );
    }
}
