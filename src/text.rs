//! Sentence splitting: a text of several sentences is translated one sentence at a time.

/// Words whose `.` ends an abbreviation, not a sentence (compared without case).
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc", "inc", "ltd", "co", "no", "mt",
    "fig", "approx", "cf", "ca", "vol", "p", "pp", "ave", "dept", "est", "gen", "gov",
];

/// Does the `.` at `chars[i]` end an abbreviation or an initial ("Dr.", "J.", "e.g.", "U.S.")?
fn abbreviation_before(chars: &[(usize, char)], i: usize) -> bool {
    let start = chars[..i]
        .iter()
        .rposition(|(_, c)| c.is_whitespace() || matches!(c, '(' | '"' | '\'' | '«' | '“'))
        .map_or(0, |k| k + 1);
    let word: String = chars[start..i].iter().map(|(_, c)| *c).collect();
    let letters = word.chars().filter(|c| c.is_alphabetic()).count();
    (letters == 1 && word.chars().count() == 1)
        || (word.contains('.') && letters > 0)
        || ABBREVIATIONS.contains(&word.to_lowercase().as_str())
}

/// Split after `.`, `!`, `?`, `…` (and their closing quotes/brackets) followed by whitespace
/// and a word that does not start in lower case, except after an abbreviation or an initial;
/// and after the full-width `。`, `！`, `？` whatever follows (Chinese and Japanese put no space
/// between sentences). Every byte of the input lands in exactly one sentence (whitespace between
/// is trimmed).
pub fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (_, c) = chars[i];
        if matches!(c, '.' | '!' | '?' | '…' | '。' | '！' | '？') {
            let full_width = matches!(c, '。' | '！' | '？');
            let mut j = i + 1;
            while j < chars.len()
                && matches!(
                    chars[j].1,
                    '.' | '!'
                        | '?'
                        | '"'
                        | '\''
                        | '»'
                        | '”'
                        | ')'
                        | ']'
                        | '。'
                        | '！'
                        | '？'
                        | '」'
                        | '』'
                        | '）'
                )
            {
                j += 1;
            }
            let next = chars[j..]
                .iter()
                .map(|(_, c)| *c)
                .find(|c| !c.is_whitespace());
            let ends = j < chars.len()
                && (full_width
                    || (chars[j].1.is_whitespace()
                        && !next.is_some_and(char::is_lowercase)
                        && !(c == '.' && abbreviation_before(&chars, i))));
            if ends {
                let end = chars[j].0;
                let s = text[start..end].trim();
                if !s.is_empty() {
                    out.push(s);
                }
                start = end;
            }
            i = j;
        } else {
            i += 1;
        }
    }
    let s = text[start..].trim();
    if !s.is_empty() {
        out.push(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::sentences;

    #[test]
    fn splits_at_sentence_ends_only() {
        assert_eq!(
            sentences("A dog runs. A cat sits!  Why? "),
            vec!["A dog runs.", "A cat sits!", "Why?"]
        );
        assert_eq!(sentences("Version 3.5 is out"), vec!["Version 3.5 is out"]);
        assert_eq!(
            sentences("He said \"stop.\" Then left."),
            vec!["He said \"stop.\"", "Then left."]
        );
        assert!(sentences("   ").is_empty());
        assert_eq!(
            sentences("Dr. Smith met J. Doe, e.g. at the U.S. office etc. and left. He sat."),
            vec![
                "Dr. Smith met J. Doe, e.g. at the U.S. office etc. and left.",
                "He sat."
            ]
        );
        assert_eq!(
            sentences("A sign says E.S.E. Electronics."),
            vec!["A sign says E.S.E. Electronics."]
        );
        assert_eq!(sentences("It is 5 p.m. now."), vec!["It is 5 p.m. now."]);
    }

    #[test]
    fn splits_after_full_width_enders_without_a_space() {
        assert_eq!(
            sentences("我有一只狗。它很小！「你呢？」好的"),
            vec!["我有一只狗。", "它很小！", "「你呢？」", "好的"]
        );
        assert_eq!(sentences("今日は。 "), vec!["今日は。"]);
        assert_eq!(sentences("好。好。"), vec!["好。", "好。"]);
    }
}
