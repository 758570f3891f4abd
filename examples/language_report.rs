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
//! 0.5 (`AUTO_MIN_CONFIDENCE` in www/marian-wasm.js: below it the text takes its call's language),
//! and the share a `sourceLanguage: "auto"` translator over an en/fr catalog routes right when the
//! texts come in calls of 16 consecutive lines of one file (as a page's batches do): a text under
//! 0.5 takes the language of its call's texts joined, else the previous call's, else `en` — the
//! rule of `languagesOf` in www/marian-wasm.js. Every call here is in one language; a call that
//! mixes languages routes its unsure texts to the majority's.

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
    routed: usize,
    wrong: BTreeMap<&'static str, usize>,
}

/// Texts per call in the 'auto' routing column.
const CALL: usize = 16;

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
            let lines: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            // What an 'auto' translator takes each text to be, calls of CALL texts.
            let sure = |t: &str| {
                let d = detect_among(t, &["en", "fr"])[0].clone();
                (d.language != UNDETERMINED && d.confidence >= 0.5).then_some(d.language)
            };
            let mut routed = Vec::with_capacity(lines.len());
            let mut last: Option<&'static str> = None;
            for call in lines.chunks(CALL) {
                let found: Vec<Option<&'static str>> = call.iter().map(|t| sure(t)).collect();
                let fallback = if found.iter().any(Option::is_none) && call.len() > 1 {
                    sure(&call.join("\n"))
                } else {
                    None
                };
                let fallback = fallback.or(last).unwrap_or("en");
                let langs: Vec<&'static str> =
                    found.iter().map(|x| x.unwrap_or(fallback)).collect();
                let en = langs.iter().filter(|&&l| l == "en").count();
                last = Some(if 2 * en >= langs.len() { "en" } else { "fr" });
                routed.extend(langs);
            }
            for (line, routed_as) in lines.iter().zip(routed) {
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
                    t.routed += usize::from(routed_as == lang);
                    if best.language != lang {
                        *t.wrong.entry(best.language).or_default() += 1;
                    }
                }
            }
        }
    }
    println!("| corpus | language | words | texts | correct (70 languages) % | und % | correct (en/fr only) % | correct, confidence ≥ 0.5 (en/fr only) % | routed right by 'auto' (calls of {CALL}) % | most frequent wrong answers (70 languages) |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for ((corpus, lang, b), t) in &tallies {
        let mut wrong: Vec<_> = t.wrong.iter().collect();
        wrong.sort_by(|a, b| b.1.cmp(a.1));
        let wrong: Vec<String> = wrong
            .iter()
            .take(4)
            .map(|(l, k)| format!("{l} {k}"))
            .collect();
        println!(
            "| {corpus} | {lang} | {b} | {} | {} | {} | {} | {} | {} | {} |",
            t.n,
            pct(t.any, t.n),
            pct(t.und, t.n),
            pct(t.among, t.n),
            pct(t.sure, t.n),
            pct(t.routed, t.n),
            wrong.join(", ")
        );
    }
}
