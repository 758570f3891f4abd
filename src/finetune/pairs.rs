//! The user's sentence pairs: read from TSV or JSON lines, checked, bad ones reported by line
//! and skipped (never silently), a validation split held out deterministically.

use serde::Deserialize;
use std::collections::HashSet;

/// Longest side accepted, in characters (a pair is a sentence or two, not a document).
pub const MAX_PAIR_CHARS: usize = 2000;

#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub source: String,
    pub target: String,
    /// 1-based line (or array index + 1) it came from.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PairIssue {
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
pub struct PairSet {
    pub pairs: Vec<Pair>,
    /// Every skipped entry with why.
    pub issues: Vec<PairIssue>,
}

#[derive(Deserialize)]
struct JsonPair {
    source: String,
    target: String,
}

/// Parse a pairs file: JSON lines (`{"source": …, "target": …}` a line) when its first
/// non-empty line starts with `{`, else TSV (`source<TAB>target`). Blank lines are ignored.
pub fn parse_pairs(bytes: &[u8]) -> PairSet {
    // A byte-order mark (Windows editors write one) is not part of the first pair, and would
    // hide the `{` that says the file is JSON lines.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    let json = lines
        .iter()
        .map(|l| l.trim_ascii())
        .find(|l| !l.is_empty())
        .is_some_and(|l| l.starts_with(b"{"));
    let mut raw = Vec::new();
    let mut issues = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let n = i + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.trim_ascii().is_empty() {
            continue;
        }
        let text = match std::str::from_utf8(line) {
            Ok(t) => t,
            Err(e) => {
                issues.push(PairIssue {
                    line: n,
                    reason: format!("not UTF-8 (invalid byte at column {})", e.valid_up_to() + 1),
                });
                continue;
            }
        };
        if json {
            match serde_json::from_str::<JsonPair>(text) {
                Ok(p) => raw.push((n, p.source, p.target)),
                Err(e) => issues.push(PairIssue {
                    line: n,
                    reason: format!("not a {{\"source\", \"target\"}} JSON object ({e})"),
                }),
            }
        } else {
            let fields: Vec<&str> = text.split('\t').collect();
            if fields.len() != 2 {
                issues.push(PairIssue {
                    line: n,
                    reason: format!(
                        "expected source<TAB>target, found {} tab-separated fields",
                        fields.len()
                    ),
                });
                continue;
            }
            raw.push((n, fields[0].to_string(), fields[1].to_string()));
        }
    }
    let mut set = check_pairs(raw);
    set.issues.extend(issues);
    set.issues.sort_by_key(|i| i.line);
    set
}

/// Pairs given as `{source, target}` objects (the browser API's array), numbered from 1 in
/// array order: entries that are not such an object are reported and skipped, the rest
/// checked as `check_pairs` does.
pub fn pairs_from_objects(values: Vec<serde_json::Value>) -> PairSet {
    let mut issues = Vec::new();
    let mut entries = Vec::new();
    for (i, v) in values.into_iter().enumerate() {
        match (
            v.get("source").and_then(|x| x.as_str()),
            v.get("target").and_then(|x| x.as_str()),
        ) {
            (Some(s), Some(t)) => entries.push((i + 1, s.to_string(), t.to_string())),
            _ => issues.push(PairIssue {
                line: i + 1,
                reason: "not an object with string source and target".into(),
            }),
        }
    }
    let mut set = check_pairs(entries);
    set.issues.extend(issues);
    set.issues.sort_by_key(|i| i.line);
    set
}

/// Check pairs given as (line, source, target): empty sides, over-long sides and exact
/// duplicates are reported and skipped.
pub fn check_pairs(raw: Vec<(usize, String, String)>) -> PairSet {
    let mut seen = HashSet::new();
    let mut set = PairSet::default();
    for (line, source, target) in raw {
        let (s, t) = (source.trim(), target.trim());
        let reason = if s.is_empty() || t.is_empty() {
            Some(format!(
                "empty {}",
                if s.is_empty() { "source" } else { "target" }
            ))
        } else if s.chars().count() > MAX_PAIR_CHARS || t.chars().count() > MAX_PAIR_CHARS {
            Some(format!("a side is longer than {MAX_PAIR_CHARS} characters"))
        } else if !seen.insert((s.to_string(), t.to_string())) {
            Some("duplicate of an earlier pair".to_string())
        } else {
            None
        };
        match reason {
            Some(reason) => set.issues.push(PairIssue { line, reason }),
            None => set.pairs.push(Pair {
                source: s.to_string(),
                target: t.to_string(),
                line,
            }),
        }
    }
    set
}

/// Hold out every `1/fraction`-th pair, spread evenly (deterministic, no RNG): `(train, val)`.
/// With fewer than 10 pairs nothing is held out.
pub fn split_validation(pairs: Vec<Pair>, fraction: f64) -> (Vec<Pair>, Vec<Pair>) {
    let n = pairs.len();
    let n_val = if n < 10 || fraction <= 0.0 {
        0
    } else {
        ((n as f64 * fraction).round() as usize).clamp(1, n / 2)
    };
    if n_val == 0 {
        return (pairs, Vec::new());
    }
    let stride = n as f64 / n_val as f64;
    let picks: HashSet<usize> = (0..n_val)
        .map(|k| ((k as f64 + 0.5) * stride) as usize)
        .collect();
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (i, p) in pairs.into_iter().enumerate() {
        if picks.contains(&i) {
            val.push(p);
        } else {
            train.push(p);
        }
    }
    (train, val)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsv_issues_are_reported_by_line() {
        let input = b"a dog\tun chien\n\nno tab here\n\tempty source\na cat\tun chat\na dog\tun chien\nbad \xff byte\tx\none\ttwo\tthree\n";
        let set = parse_pairs(input);
        assert_eq!(set.pairs.len(), 2);
        assert_eq!(set.pairs[1].line, 5);
        let lines: Vec<usize> = set.issues.iter().map(|i| i.line).collect();
        assert_eq!(lines, vec![3, 4, 6, 7, 8]);
        assert!(set.issues[0].reason.contains("1 tab-separated"));
        assert!(set.issues[1].reason.contains("empty source"));
        assert!(set.issues[2].reason.contains("duplicate"));
        assert!(set.issues[3].reason.contains("not UTF-8"));
        assert!(set.issues[4].reason.contains("3 tab-separated"));
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_pair() {
        let set =
            parse_pairs("\u{FEFF}{\"source\": \"a dog\", \"target\": \"un chien\"}\n".as_bytes());
        assert!(set.issues.is_empty(), "{:?}", set.issues);
        assert_eq!(set.pairs[0].source, "a dog");
        let set = parse_pairs("\u{FEFF}a dog\tun chien\n".as_bytes());
        assert_eq!(set.pairs[0].source, "a dog");
    }

    #[test]
    fn json_lines_are_read() {
        let input = br#"{"source": "a dog", "target": "un chien"}
{"source": "a cat"}
{"source": "x", "target": ""}
"#;
        let set = parse_pairs(input);
        assert_eq!(set.pairs.len(), 1);
        assert_eq!(set.issues.len(), 2);
        assert!(set.issues[0].reason.contains("JSON"));
        assert!(set.issues[1].reason.contains("empty target"));
    }

    #[test]
    fn objects_are_read_by_array_index() {
        let values: Vec<serde_json::Value> = serde_json::from_str(
            r#"[{"source": "a dog", "target": "un chien"}, "text", {"source": "a cat", "target": 3},
                {"source": "x", "target": " "}, {"source": "a dog", "target": "un chien"},
                {"source": "a cat", "target": "un chat", "extra": true}]"#,
        )
        .unwrap();
        let set = pairs_from_objects(values);
        let kept: Vec<usize> = set.pairs.iter().map(|p| p.line).collect();
        assert_eq!(kept, vec![1, 6]);
        let lines: Vec<usize> = set.issues.iter().map(|i| i.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 5]);
        assert!(set.issues[0].reason.contains("not an object"));
        assert!(set.issues[1].reason.contains("not an object"));
        assert!(set.issues[2].reason.contains("empty target"));
        assert!(set.issues[3].reason.contains("duplicate"));
    }

    #[test]
    fn validation_split_is_deterministic_and_spread() {
        let pairs: Vec<Pair> = (0..100)
            .map(|i| Pair {
                source: format!("s{i}"),
                target: format!("t{i}"),
                line: i + 1,
            })
            .collect();
        let (train, val) = split_validation(pairs.clone(), 0.1);
        assert_eq!((train.len(), val.len()), (90, 10));
        assert_eq!(val[0].line, 6);
        assert_eq!(split_validation(pairs, 0.1).1, val);
    }
}
