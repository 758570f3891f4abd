//! Spans of a source text that must come out exactly as they went in — numbers, URLs, e-mail
//! addresses, emoji — and their repair in the translation.
//!
//! The model sees the text as written (its translation of the words around a number or a URL is
//! best with them in place), except for spans its vocabulary cannot spell (emoji and most other
//! symbols become `<unk>`, and a model invents words for them): those are taken out of its input.
//! After translation each span is looked for in the output, in source order:
//! - found verbatim: nothing to do (the usual case: no effect on the translation at all);
//! - a number the model rewrote (`6-3` → `63`, `1,000` → `1 000`): the output number with the
//!   same digits, not yet claimed by another span, is replaced by the source form; then a number
//!   the model got wrong (`number 1102` → `numéro 3000`): the output's next unclaimed number;
//! - a URL or an address the model respelled (spaces inserted, a letter changed): the run of up
//!   to three output words most similar to it (character-bigram Dice ≥ [`MIN_SIMILARITY`]) is
//!   replaced;
//! - a plain number of one or two digits that is missing was most likely written as a word
//!   ("2 children" → "deux enfants"): left so;
//! - otherwise (also every span taken out of the input), the span is inserted at the word boundary
//!   of the output nearest to its relative position in the source: a span that started or ended
//!   the source starts or ends the output.
//!
//! Written by hand: this is the re-insertion "by alignment" that issue 18 asks to weigh against
//! placeholders; the alignment is by form (same digits, similar spelling) and position, not by
//! the model's attention, which OPUS-MT models are not trained to align with.

use regex::Regex;
use std::sync::OnceLock;

/// What a protected span is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Url,
    Email,
    Number,
    Emoji,
}

/// One span of the source that must appear verbatim in the translation.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub kind: SpanKind,
    /// The source text of the span.
    pub text: String,
    /// Where the span sat in the source: the fraction of the source's non-span characters
    /// before it (0 = at the start, 1 = at the end).
    pub position: f64,
    /// Taken out of the model's input (its vocabulary cannot spell it).
    pub removed: bool,
}

/// A source text prepared for the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Protected {
    /// What the model translates: the source without the removed spans.
    pub model_text: String,
    pub spans: Vec<Span>,
}

/// A run of output words replaces a URL or an address it resembles at least this much
/// (Dice coefficient of character bigrams, 0..1).
pub const MIN_SIMILARITY: f64 = 0.6;

fn pattern() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(concat!(
            // URLs: a scheme or www., up to whitespace; trailing punctuation is the sentence's.
            r"(?P<url>(?:[a-zA-Z][a-zA-Z0-9+.-]*://|www\.)[^\s<>]*[^\s<>.,;:!?'\x22)\]}])",
            r"|(?P<email>[\w.+-]+@[\w-]+(?:\.[\w-]+)+)",
            // Numbers with their inner separators (6-3, 3.14, 1,000, 12:30, 2024-01-05, 50%).
            r"|(?P<number>\d+(?:[.,:/-]\d+)*%?)",
            // Emoji with their modifiers and joined sequences; runs of them (and spaces
            // between) are one span.
            r"|(?P<emoji>(?:\p{Extended_Pictographic}|\p{Regional_Indicator})",
            r"(?:[\x{FE0F}\x{20E3}\x{1F3FB}-\x{1F3FF}]|\x{200D}\p{Extended_Pictographic}",
            r"|\p{Regional_Indicator})*",
            r"(?:\s*(?:\p{Extended_Pictographic}|\p{Regional_Indicator})",
            r"(?:[\x{FE0F}\x{20E3}\x{1F3FB}-\x{1F3FF}]|\x{200D}\p{Extended_Pictographic}",
            r"|\p{Regional_Indicator})*)*)"
        ))
        .expect("the span pattern compiles")
    })
}

/// Finds the spans of `text` to protect; `unspellable(span)` says whether the model's
/// vocabulary cannot spell a span (then it is taken out of the model's input).
pub fn protect(text: &str, unspellable: impl Fn(&str) -> bool) -> Protected {
    let mut spans = Vec::new();
    let mut model_text = String::with_capacity(text.len());
    let mut last = 0;
    for caps in pattern().captures_iter(text) {
        let (kind, m) = if let Some(m) = caps.name("url") {
            (SpanKind::Url, m)
        } else if let Some(m) = caps.name("email") {
            (SpanKind::Email, m)
        } else if let Some(m) = caps.name("number") {
            (SpanKind::Number, m)
        } else if let Some(m) = caps.name("emoji") {
            (SpanKind::Emoji, m)
        } else {
            continue;
        };
        // A number inside a word (a model name, "mp3") is the word's, not a span.
        if kind == SpanKind::Number && touches_letter(text, m.start(), m.end()) {
            continue;
        }
        let removed = kind == SpanKind::Emoji || unspellable(m.as_str());
        model_text.push_str(&text[last..m.start()]);
        if removed {
            // Keep one space where the span separated two words.
            if !model_text.ends_with(char::is_whitespace)
                && !model_text.is_empty()
                && text[m.end()..].starts_with(|c: char| !c.is_whitespace())
            {
                model_text.push(' ');
            }
            if model_text.ends_with(char::is_whitespace)
                && text[m.end()..].starts_with(char::is_whitespace)
            {
                model_text.pop();
            }
        } else {
            model_text.push_str(m.as_str());
        }
        spans.push((kind, m.start(), m.end(), removed));
        last = m.end();
    }
    model_text.push_str(&text[last..]);
    let model_text = model_text.trim().to_string();
    // Relative positions over the text outside spans.
    let outside: usize = text.chars().count()
        - spans
            .iter()
            .map(|&(_, s, e, _)| text[s..e].chars().count())
            .sum::<usize>();
    let mut before = 0usize;
    let mut prev_end = 0;
    let spans = spans
        .into_iter()
        .map(|(kind, s, e, removed)| {
            before += text[prev_end..s].chars().count();
            prev_end = e;
            let only_space_before = text[..s].trim().is_empty();
            let only_space_after = text[e..].trim().is_empty();
            let position = if only_space_before {
                0.0
            } else if only_space_after {
                1.0
            } else {
                before as f64 / outside.max(1) as f64
            };
            Span {
                kind,
                text: text[s..e].to_string(),
                position,
                removed,
            }
        })
        .collect();
    Protected { model_text, spans }
}

fn touches_letter(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    before.is_some_and(char::is_alphabetic) || after.is_some_and(char::is_alphabetic)
}

/// The translation with every span of `spans` in it exactly (see the module's doc for how).
pub fn restore(translation: &str, spans: &[Span]) -> String {
    if spans.is_empty() {
        return translation.to_string();
    }
    let mut out = translation.to_string();
    // Byte ranges of `out` already claimed by a span, shifted on every edit.
    let mut claimed: Vec<(usize, usize)> = Vec::new();
    let mut done = vec![false; spans.len()];
    let todo = |done: &[bool], kinds: &[SpanKind]| -> Vec<usize> {
        (0..spans.len())
            .filter(|&i| !done[i] && !spans[i].removed && kinds.contains(&spans[i].kind))
            .collect()
    };
    // 1. Verbatim, in source order: these claim their place before any repair looks around.
    let mut cursor = 0;
    for i in todo(
        &done,
        &[
            SpanKind::Url,
            SpanKind::Email,
            SpanKind::Number,
            SpanKind::Emoji,
        ],
    ) {
        if let Some(at) = find_unclaimed(&out, &spans[i].text, cursor, &claimed) {
            claimed.push((at, at + spans[i].text.len()));
            cursor = at + spans[i].text.len();
            done[i] = true;
        }
    }
    // 2. Numbers rewritten with the same digits; 3. then a number the model got wrong (the
    // remaining output numbers, in order).
    for i in todo(&done, &[SpanKind::Number]) {
        if let Some((s, e)) = same_digits(&out, &spans[i].text, &claimed) {
            replace(&mut out, &mut claimed, s, e, &spans[i].text);
            done[i] = true;
        }
    }
    for i in todo(&done, &[SpanKind::Number]) {
        let next = number_tokens(&out).find(|&(s, e)| !overlaps(&claimed, s, e));
        if let Some((s, e)) = next {
            replace(&mut out, &mut claimed, s, e, &spans[i].text);
            done[i] = true;
        } else if may_be_a_word(&spans[i].text) {
            done[i] = true;
        }
    }
    // 4. URLs and addresses respelled.
    for i in todo(&done, &[SpanKind::Url, SpanKind::Email]) {
        if let Some((s, e)) = most_similar_words(&out, &spans[i].text, &claimed) {
            replace(&mut out, &mut claimed, s, e, &spans[i].text);
            done[i] = true;
        }
    }
    // 5. Whatever is still missing (and every span the model did not see) goes in at its
    // relative position.
    for (span, _) in spans.iter().zip(&done).filter(|(_, &d)| !d) {
        let at = insertion_point(&out, span.position, &claimed);
        let mut insert = span.text.clone();
        let (s, e) = if at == 0 {
            insert.push(' ');
            (0, span.text.len())
        } else if at == out.len() {
            insert.insert(0, ' ');
            (at + 1, at + 1 + span.text.len())
        } else {
            // At a space: the span gets its own word.
            insert.push(' ');
            (at, at + span.text.len())
        };
        shift(&mut claimed, at, insert.len() as isize);
        out.insert_str(at, &insert);
        claimed.push((s, e));
    }
    out.trim().to_string()
}

fn overlaps(claimed: &[(usize, usize)], s: usize, e: usize) -> bool {
    claimed.iter().any(|&(a, b)| s < b && a < e)
}

fn find_unclaimed(
    out: &str,
    needle: &str,
    cursor: usize,
    claimed: &[(usize, usize)],
) -> Option<usize> {
    let from_cursor = out
        .match_indices(needle)
        .map(|(i, _)| i)
        .filter(|&i| !overlaps(claimed, i, i + needle.len()));
    // Prefer the first match after the previous span (source order), else any.
    let all: Vec<usize> = from_cursor.collect();
    all.iter()
        .copied()
        .find(|&i| i >= cursor)
        .or_else(|| all.first().copied())
}

fn number_tokens(out: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    static RE: OnceLock<Regex> = OnceLock::new();
    // Digits with the separators a model may put between them (spaces, dots, commas, dashes).
    let re = RE.get_or_init(|| {
        Regex::new(r"\d(?:[\d.,:/%-]|[\x{A0}\x{202F} ]\d)*").expect("number pattern")
    });
    re.find_iter(out)
        .map(|m| {
            let t = m.as_str().trim_end_matches(['.', ',', ':', '/', '-']);
            (m.start(), m.start() + t.len())
        })
        // Digits inside a word ("P3") are the word's.
        .filter(|&(s, e)| !touches_letter(out, s, e))
}

/// A plain number of one or two digits: a model may write it as a word ("2 children" →
/// "deux enfants"), so when it is missing it is not inserted.
fn may_be_a_word(number: &str) -> bool {
    number.len() <= 2 && number.chars().all(|c| c.is_ascii_digit())
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

fn same_digits(out: &str, number: &str, claimed: &[(usize, usize)]) -> Option<(usize, usize)> {
    let want = digits(number);
    number_tokens(out)
        .filter(|&(s, e)| !overlaps(claimed, s, e))
        .find(|&(s, e)| digits(&out[s..e]) == want)
}

/// Byte ranges of runs of one to three whitespace-separated words.
fn word_runs(out: &str) -> Vec<(usize, usize)> {
    let words: Vec<(usize, usize)> = out
        .split_whitespace()
        .map(|w| {
            let s = w.as_ptr() as usize - out.as_ptr() as usize;
            (s, s + w.len())
        })
        .collect();
    let mut runs = Vec::new();
    for i in 0..words.len() {
        for j in i..(i + 3).min(words.len()) {
            runs.push((words[i].0, words[j].1));
        }
    }
    runs
}

fn bigrams(s: &str) -> Vec<(char, char)> {
    let chars: Vec<char> = s
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect();
    let mut b: Vec<(char, char)> = chars.windows(2).map(|w| (w[0], w[1])).collect();
    b.sort_unstable();
    b
}

/// Dice coefficient of two strings' character bigrams (whitespace ignored, case folded).
pub fn similarity(a: &str, b: &str) -> f64 {
    let (x, y) = (bigrams(a), bigrams(b));
    if x.is_empty() || y.is_empty() {
        return if a.trim() == b.trim() { 1.0 } else { 0.0 };
    }
    let (mut i, mut j, mut common) = (0, 0, 0);
    while i < x.len() && j < y.len() {
        match x[i].cmp(&y[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                common += 1;
                i += 1;
                j += 1;
            }
        }
    }
    2.0 * common as f64 / (x.len() + y.len()) as f64
}

fn most_similar_words(
    out: &str,
    target: &str,
    claimed: &[(usize, usize)],
) -> Option<(usize, usize)> {
    let mut best: Option<((usize, usize), f64)> = None;
    for (s, e) in word_runs(out) {
        // The run without the sentence's punctuation around it.
        let run = &out[s..e];
        let trimmed = run.trim_end_matches(['.', ',', ';', ':', '!', '?', ')', '"', '»']);
        let trimmed = trimmed.trim_start_matches(['(', '"', '«']);
        let s2 = s + run.find(trimmed).unwrap_or(0);
        let e2 = s2 + trimmed.len();
        if trimmed.is_empty() || overlaps(claimed, s2, e2) {
            continue;
        }
        let score = similarity(trimmed, target);
        if score >= MIN_SIMILARITY && best.is_none_or(|(_, b)| score > b) {
            best = Some(((s2, e2), score));
        }
    }
    best.map(|(r, _)| r)
}

/// The byte offset where a span at relative `position` goes: 0, the end, or a space between
/// two words (the one nearest to that position, outside claimed spans).
fn insertion_point(out: &str, position: f64, claimed: &[(usize, usize)]) -> usize {
    if position <= 0.0 || out.is_empty() {
        return 0;
    }
    if position >= 1.0 {
        return out.len();
    }
    let target = position * out.len() as f64;
    out.char_indices()
        .filter(|&(i, c)| c == ' ' && !overlaps(claimed, i, i + 1))
        .map(|(i, _)| i + 1)
        .min_by(|&a, &b| {
            (a as f64 - target)
                .abs()
                .partial_cmp(&(b as f64 - target).abs())
                .unwrap_or(std::cmp::Ordering::Equal)
        })
        .unwrap_or(out.len())
}

fn shift(claimed: &mut [(usize, usize)], at: usize, by: isize) {
    for r in claimed.iter_mut() {
        if r.0 >= at {
            r.0 = (r.0 as isize + by) as usize;
            r.1 = (r.1 as isize + by) as usize;
        }
    }
}

fn replace(out: &mut String, claimed: &mut Vec<(usize, usize)>, s: usize, e: usize, with: &str) {
    out.replace_range(s..e, with);
    shift(claimed, e, with.len() as isize - (e - s) as isize);
    claimed.push((s, s + with.len()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(text: &str) -> Vec<(SpanKind, String)> {
        protect(text, |_| false)
            .spans
            .into_iter()
            .map(|s| (s.kind, s.text))
            .collect()
    }

    #[test]
    fn finds_numbers_urls_addresses_and_emoji() {
        use SpanKind::*;
        assert_eq!(
            spans("The score was 6-3 at 12:30, see https://example.org/a?b=1."),
            [
                (Number, "6-3".into()),
                (Number, "12:30".into()),
                (Url, "https://example.org/a?b=1".into())
            ]
        );
        assert_eq!(
            spans("Write to jane.doe@example.com 🎉🎉 or 👍🏽!"),
            [
                (Email, "jane.doe@example.com".into()),
                (Emoji, "🎉🎉".into()),
                (Emoji, "👍🏽".into())
            ]
        );
        // Digits inside a word belong to the word.
        assert!(spans("An mp3 player and a B52 plane.").is_empty());
        assert_eq!(spans("It costs 50% more."), [(Number, "50%".into())]);
    }

    #[test]
    fn emoji_leave_the_model_input_and_come_back_in_place() {
        let p = protect("🎉 Great job, team! 👍", |_| false);
        assert_eq!(p.model_text, "Great job, team!");
        assert_eq!(
            restore("Bon travail, l'équipe !", &p.spans),
            "🎉 Bon travail, l'équipe ! 👍"
        );
        let p = protect("I love 🍕 and beer.", |_| false);
        assert_eq!(p.model_text, "I love and beer.");
        let out = restore("J'aime et la bière.", &p.spans);
        assert!(out.contains("🍕") && out.starts_with("J'aime"), "{out}");
    }

    #[test]
    fn rewritten_numbers_get_their_source_form_back() {
        let p = protect("The score was 6-3 and 1,000 people came.", |_| false);
        assert_eq!(p.model_text, "The score was 6-3 and 1,000 people came.");
        assert_eq!(
            restore(
                "Le score était de 63 et 1 000 personnes sont venues.",
                &p.spans
            ),
            "Le score était de 6-3 et 1,000 personnes sont venues."
        );
        // Already verbatim: untouched.
        assert_eq!(restore("Le score : 6-3.", &p.spans[..1]), "Le score : 6-3.");
        // A wrong number is replaced.
        let p = protect("The number 1102 on her jersey.", |_| false);
        assert_eq!(
            restore("Le numéro 3000 sur son maillot.", &p.spans),
            "Le numéro 1102 sur son maillot."
        );
        // A small number the model wrote as a word stays a word.
        let p = protect("A woman with 2 children.", |_| false);
        assert_eq!(
            restore("Une femme avec deux enfants.", &p.spans),
            "Une femme avec deux enfants."
        );
    }

    #[test]
    fn respelled_urls_are_replaced_and_lost_ones_inserted() {
        let p = protect("Visit www.example.com/shop today.", |_| false);
        assert_eq!(
            restore("Visitez www.exemple.com / shop aujourd'hui.", &p.spans),
            "Visitez www.example.com/shop aujourd'hui."
        );
        let out = restore("Visitez aujourd'hui.", &p.spans);
        assert!(out.contains("www.example.com/shop"), "{out}");
    }

    #[test]
    fn unspellable_spans_are_removed_from_the_model_input() {
        let p = protect("Call 555-0199 now.", |s| s.contains('5'));
        assert_eq!(p.model_text, "Call now.");
        assert!(p.spans[0].removed);
        assert_eq!(
            restore("Appelez maintenant.", &p.spans)
                .matches("555-0199")
                .count(),
            1
        );
    }

    #[test]
    fn text_without_spans_is_untouched() {
        let p = protect("A man is riding a bike.", |_| false);
        assert!(p.spans.is_empty());
        assert_eq!(p.model_text, "A man is riding a bike.");
        assert_eq!(
            restore("Un homme fait du vélo.", &p.spans),
            "Un homme fait du vélo."
        );
    }

    #[test]
    fn similarity_is_dice_of_bigrams() {
        assert_eq!(similarity("abc", "abc"), 1.0);
        assert_eq!(similarity("ab", "cd"), 0.0);
        assert!(similarity("www.example.com", "www.exemple.com") > 0.8);
    }
}
