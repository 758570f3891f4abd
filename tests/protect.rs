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

/// A text of two paragraphs keeps its paragraph break and every span: `restore` runs over the
/// joined translation, whose pieces are joined by the source's own line breaks.
#[test]
fn spans_and_paragraph_breaks_come_back_together() {
    let t = translator(true);
    let text = "The score was 6-3 at the end of the game.\n\nA man looks at https://example.com/a?b=1 on his phone. A dog \u{1F436} runs in the park.";
    let out = translate(&t, &[text]);
    let paragraphs: Vec<&str> = out[0].split("\n\n").collect();
    assert_eq!(paragraphs.len(), 2, "{}", out[0]);
    assert!(paragraphs[0].contains("6-3"), "{}", out[0]);
    assert!(
        paragraphs[1].contains("https://example.com/a?b=1") && paragraphs[1].contains('\u{1F436}'),
        "{}",
        out[0]
    );
    for span in ["6-3", "https://example.com/a?b=1", "\u{1F436}"] {
        assert_eq!(out[0].matches(span).count(), 1, "{span}: {}", out[0]);
    }
}
