//! Sentence splitting for input longer than the model's positions.

/// Split after `.`, `!`, `?`, `…` (and their closing quotes/brackets) followed by whitespace.
/// Every byte of the input lands in exactly one sentence (whitespace between is trimmed).
pub fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (_, c) = chars[i];
        if matches!(c, '.' | '!' | '?' | '…' | '。' | '！' | '？') {
            let mut j = i + 1;
            while j < chars.len()
                && matches!(
                    chars[j].1,
                    '.' | '!' | '?' | '"' | '\'' | '»' | '”' | ')' | ']'
                )
            {
                j += 1;
            }
            if j < chars.len() && chars[j].1.is_whitespace() {
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
    }
}
