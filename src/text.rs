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

/// Marks after which a clause ends: a sentence too long for the model is cut here first
/// (Latin, CJK full-width and Arabic commas, semicolons, colons; the ideographic comma; dashes).
const CLAUSE_ENDS: &[char] = &[',', ';', ':', '，', '；', '：', '、', '،', '؛', '—', '–'];

/// Full-width clause marks: Chinese and Japanese put no space after them, so a clause may end
/// inside a run of non-space characters.
const GLUED_CLAUSE_ENDS: &[char] = &['，', '；', '：', '、'];

/// The places a sentence may be cut: byte ranges of its units (whitespace-separated words;
/// a run without spaces is also cut after a full-width clause mark), in order, and for each
/// unit whether a clause ends after it (its last character is a `CLAUSE_ENDS` mark, or the
/// next unit is a dash: "word - word", "word — word").
pub fn cut_units(sentence: &str) -> Vec<(usize, usize, bool)> {
    let mut units: Vec<(usize, usize, bool)> = Vec::new();
    let mut start = None;
    for (i, c) in sentence.char_indices() {
        if c.is_whitespace() {
            if let Some(s) = start.take() {
                units.push((s, i, false));
            }
            continue;
        }
        let s = *start.get_or_insert(i);
        if GLUED_CLAUSE_ENDS.contains(&c) {
            units.push((s, i + c.len_utf8(), false));
            start = None;
        }
    }
    if let Some(s) = start {
        units.push((s, sentence.len(), false));
    }
    for j in 0..units.len() {
        let (s, e, _) = units[j];
        let word = &sentence[s..e];
        let next_is_dash = units.get(j + 1).is_some_and(|&(ns, ne, _)| {
            let next = &sentence[ns..ne];
            next == "-" || next.starts_with(['—', '–'])
        });
        units[j].2 = word.ends_with(CLAUSE_ENDS) || word == "-" || next_is_dash;
    }
    units
}

/// Cuts a run of units (`costs[i]`: unit i's tokens; `clause_after[i]`: a clause ends after
/// it) into consecutive pieces of at most `budget` tokens each (a unit alone over `budget` is
/// a piece alone), as even as they can be, cutting at clause ends before anywhere else.
/// Returns each piece's range of unit indices. Linear in the units for a fixed budget (each
/// piece is chosen among the at most `budget` units before it), so a sentence of 20 000 words
/// is cut in milliseconds.
///
/// The score minimized, per piece: 1 (fewer pieces: more context each), plus its squared
/// relative distance from the even size (total / the fewest pieces that fit), plus 2 when it
/// ends between words that end no clause (so a piece more, cut at commas, is preferred to a
/// cut in mid-clause).
pub fn balanced_cuts(
    costs: &[usize],
    clause_after: &[bool],
    budget: usize,
) -> Vec<std::ops::Range<usize>> {
    let n = costs.len();
    if n == 0 {
        return Vec::new();
    }
    let budget = budget.max(1);
    let total: usize = costs.iter().sum();
    let even = total as f64 / total.div_ceil(budget).max(1) as f64;
    // best[j]: the least score of units 0..j cut into pieces; from[j]: where its last piece starts.
    let mut best = vec![f64::INFINITY; n + 1];
    let mut from = vec![0usize; n + 1];
    best[0] = 0.0;
    for j in 1..=n {
        let end_penalty = if j == n || clause_after[j - 1] {
            0.0
        } else {
            2.0
        };
        let mut len = 0usize;
        for i in (0..j).rev() {
            len += costs[i];
            if len > budget && i + 1 < j {
                break;
            }
            let off = (len as f64 - even) / even.max(1.0);
            let score = best[i] + 1.0 + off * off + end_penalty;
            if score < best[j] {
                best[j] = score;
                from[j] = i;
            }
        }
    }
    let mut pieces = Vec::new();
    let mut j = n;
    while j > 0 {
        pieces.push(from[j]..j);
        j = from[j];
    }
    pieces.reverse();
    pieces
}

#[cfg(test)]
mod tests {
    use super::{balanced_cuts, cut_units, sentences};

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

    #[test]
    fn cut_units_mark_clause_ends_and_glued_cjk_clauses() {
        let s = "Dogs run, cats sit; birds fly - fish swim 我有狗，它很小、好";
        let units: Vec<(&str, bool)> = cut_units(s)
            .into_iter()
            .map(|(a, b, c)| (&s[a..b], c))
            .collect();
        assert_eq!(
            units,
            vec![
                ("Dogs", false),
                ("run,", true),
                ("cats", false),
                ("sit;", true),
                ("birds", false),
                ("fly", true),
                ("-", true),
                ("fish", false),
                ("swim", false),
                ("我有狗，", true),
                ("它很小、", true),
                ("好", false),
            ]
        );
    }

    #[test]
    fn balanced_cuts_are_even_and_prefer_clause_ends() {
        // 10 units of 10 tokens, budget 40: three pieces of 40, 30, 30 at most; even ones.
        let costs = [10; 10];
        let none = [false; 10];
        let cuts = balanced_cuts(&costs, &none, 40);
        assert_eq!(cuts.len(), 3);
        let sizes: Vec<usize> = cuts.iter().map(|r| costs[r.clone()].iter().sum()).collect();
        assert!(sizes.iter().all(|&s| (30..=40).contains(&s)), "{sizes:?}");
        // A clause end after unit 1 (20 tokens) and after unit 5 (60): cut there, not at 30/70.
        let mut clause = [false; 10];
        clause[1] = true;
        clause[5] = true;
        assert_eq!(balanced_cuts(&costs, &clause, 40), vec![0..2, 2..6, 6..10]);
        // A unit over the budget is a piece alone; everything is covered in order.
        let cuts = balanced_cuts(&[5, 50, 5], &[false; 3], 20);
        assert_eq!(cuts, vec![0..1, 1..2, 2..3]);
        assert!(balanced_cuts(&[], &[], 10).is_empty());
    }
}
