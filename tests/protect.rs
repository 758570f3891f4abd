//! Numbers, URLs, e-mail addresses and emoji inside sentences come out of a translation exactly
//! as written (src/protect.rs), with the embedded default model — a caption model that copies
//! none of them by itself (`scripts/span_preservation.py`: 0 % kept without protection).

use marian_wasm::{GenerateOptions, Package, Translator};

fn translator(protect: bool) -> Translator {
    let mut t = Translator::new(&Package::embedded().unwrap()).unwrap();
    t.protect_spans = protect;
    t
}

fn translate(t: &Translator, texts: &[&str]) -> Vec<String> {
    t.translate(texts, &GenerateOptions::default(), 8)
        .unwrap()
        .into_iter()
        .map(|r| r.text)
        .collect()
}

#[test]
fn every_span_comes_back_exactly_once() {
    let cases: [(&str, &[&str]); 8] = [
        ("The score was 6-3 at the end of the game.", &["6-3"]),
        (
            "A girl with the number 1102 on her jersey runs across the grass.",
            &["1102"],
        ),
        (
            "A man sells 1,000 apples at 12:30 in the market.",
            &["1,000", "12:30"],
        ),
        (
            "Visit https://example.org/shop?id=42 to see the dogs.",
            &["https://example.org/shop?id=42"],
        ),
        (
            "Two women write to jane.doe@example.com from the beach.",
            &["jane.doe@example.com"],
        ),
        (
            "🎉 A group of people celebrate a wedding! 👍🏽",
            &["🎉", "👍🏽"],
        ),
        ("Two dogs 🐶🐶 play in the snow.", &["🐶🐶"]),
        (
            "A man reads www.example.com/news on his phone on 2024-05-17.",
            &["www.example.com/news", "2024-05-17"],
        ),
    ];
    let texts: Vec<&str> = cases.iter().map(|c| c.0).collect();
    let out = translate(&translator(true), &texts);
    for ((src, spans), got) in cases.iter().zip(&out) {
        for span in *spans {
            assert_eq!(
                got.matches(span).count(),
                1,
                "{src:?} -> {got:?}: {span} not kept once"
            );
        }
        // The words around the spans were translated (not passed through).
        assert_ne!(got, src);
    }
    // Emoji that opened or closed the source open or close the translation.
    assert!(
        out[5].starts_with("🎉 ") && out[5].ends_with(" 👍🏽"),
        "{}",
        out[5]
    );
}

/// Text without spans reaches the model unchanged, so its translation is too; a small number
/// the model writes as a word stays a word.
#[test]
fn text_without_spans_translates_as_before() {
    let texts = [
        "A man in a blue shirt is standing on a ladder cleaning windows.",
        "Several people are waiting for the bus in the rain.",
        "A woman with 2 children is walking on the street.",
    ];
    let with = translate(&translator(true), &texts);
    let without = translate(&translator(false), &texts);
    assert_eq!(with[..2], without[..2]);
    if !without[2].contains('2') {
        assert_eq!(
            with[2], without[2],
            "a number written as a word was inserted again"
        );
    }
}
