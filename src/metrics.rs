//! Corpus BLEU and chrF exactly as sacreBLEU 2.x computes them with its default settings, single
//! reference (checked against sacreBLEU 2.6.0 on `tests/fixtures/metrics`, made by
//! `scripts/make_metric_fixtures.py`).
//!
//! - **BLEU** (`sacrebleu.corpus_bleu` / `BLEU()`): each line `rstrip()`ped, tokenized with `13a`
//!   ([`tokenize_13a`], the mteval-v13a tokenizer), n-grams 1..=4 counted per sentence and clipped
//!   by the reference, statistics summed over the corpus, `exp` smoothing (NIST: each order with no
//!   match gets precision `100 / (2^k · total)`), no lowercasing, no effective order, brevity
//!   penalty over the corpus lengths.
//! - **chrF** (`sacrebleu.corpus_chrf` / `CHRF()`): character n-grams 1..=6 after removing all
//!   whitespace, word order 0, β = 2, per-order `[hyp, ref, match]` counts summed over the corpus,
//!   then sacreBLEU 2's default averaging: precision and recall are averaged over the orders where
//!   both hypothesis and reference have n-grams (`eps_smoothing=False`), and F-β of those averages.
//!
//! Python details reproduced on purpose: "whitespace" is Python's `str.isspace` (Unicode
//! `White_Space` plus U+001C..U+001F), strings are indexed by code point, the regular expressions'
//! `[0-9]` is ASCII only, and a chrF order whose reference has no n-grams in a sentence counts none
//! of that sentence's hypothesis n-grams either.

use crate::{Error, Result};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// The sacreBLEU version whose behaviour (and signature strings) this module reproduces.
pub const SACREBLEU_VERSION: &str = "2.6.0";
/// sacreBLEU's signature for `BLEU()` with one reference.
pub const BLEU_SIGNATURE: &str = "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0";
/// sacreBLEU's signature for `CHRF()` with one reference.
pub const CHRF_SIGNATURE: &str = "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0";

/// BLEU's maximum n-gram order.
pub const BLEU_MAX_ORDER: usize = 4;
/// chrF's character n-gram order.
pub const CHRF_CHAR_ORDER: usize = 6;
/// chrF's β (recall weighs β² times as much as precision).
pub const CHRF_BETA: u32 = 2;

// ---------------------------------------------------------------------------------------------
// Python string semantics

/// Python's `str.isspace()`: Unicode White_Space plus the ASCII separators U+001C..U+001F.
pub fn is_py_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.split()` without arguments.
fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_py_whitespace).filter(|t| !t.is_empty())
}

/// Python's `str.rstrip()` without arguments.
fn py_rstrip(s: &str) -> &str {
    s.trim_end_matches(is_py_whitespace)
}

// ---------------------------------------------------------------------------------------------
// 13a tokenizer

/// sacreBLEU's `Tokenizer13a` (sacrebleu/tokenizers/tokenizer_13a.py + tokenizer_re.py).
///
/// BLEU calls it on `line.rstrip()`; this function does not strip.
pub fn tokenize_13a(line: &str) -> String {
    let mut line = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        // Sequential, in this order: "&amp;lt;" becomes "<".
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    tokenize_re(&format!(" {line} "))
}

/// `[\{-\~\[-\` -\&\(-\+\:-\@\/]`: ASCII punctuation except `'`, `,`, `-`, `.`, and the space.
fn is_13a_symbol(c: char) -> bool {
    matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/')
}

fn is_digit(c: char) -> bool {
    c.is_ascii_digit()
}

fn is_dot_comma(c: char) -> bool {
    c == '.' || c == ','
}

/// `re.sub` of a two-character pattern `(A)(B)`: leftmost, non-overlapping, left to right.
/// The replacement is `\1 \2 ` (`lead_space == false`) or ` \1 \2` (`lead_space == true`).
fn sub_pairs(s: &[char], matches: impl Fn(char, char) -> bool, lead_space: bool) -> Vec<char> {
    let mut out = Vec::with_capacity(s.len() + s.len() / 2);
    let mut i = 0;
    while i < s.len() {
        if i + 1 < s.len() && matches(s[i], s[i + 1]) {
            if lead_space {
                out.extend([' ', s[i], ' ', s[i + 1]]);
            } else {
                out.extend([s[i], ' ', s[i + 1], ' ']);
            }
            i += 2;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// sacreBLEU's `TokenizerRegexp` (the language-dependent part of 13a).
fn tokenize_re(line: &str) -> String {
    let mut s: Vec<char> = Vec::with_capacity(line.len() * 2);
    for c in line.chars() {
        if is_13a_symbol(c) {
            s.extend([' ', c, ' ']);
        } else {
            s.push(c);
        }
    }
    // Period and comma unless preceded by a digit: ([^0-9])([\.,]) -> '\1 \2 '
    let s = sub_pairs(&s, |a, b| !is_digit(a) && is_dot_comma(b), false);
    // Period and comma unless followed by a digit: ([\.,])([^0-9]) -> ' \1 \2'
    let s = sub_pairs(&s, |a, b| is_dot_comma(a) && !is_digit(b), true);
    // Dash when preceded by a digit: ([0-9])(-) -> '\1 \2 '
    let s = sub_pairs(&s, |a, b| is_digit(a) && b == '-', false);
    let s: String = s.into_iter().collect();
    py_split(&s).collect::<Vec<_>>().join(" ")
}

// ---------------------------------------------------------------------------------------------
// BLEU

/// BLEU's sufficient statistics (sacreBLEU's `[hyp_len, ref_len, correct.., total..]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BleuStats {
    pub hyp_len: u64,
    pub ref_len: u64,
    /// Clipped n-gram matches per order (1..=4).
    pub correct: [u64; BLEU_MAX_ORDER],
    /// Hypothesis n-grams per order (1..=4).
    pub total: [u64; BLEU_MAX_ORDER],
}

fn count_ngrams<T: Eq + std::hash::Hash>(items: &[T], n: usize) -> HashMap<&[T], u64> {
    let mut m: HashMap<&[T], u64> = HashMap::new();
    if items.len() >= n {
        for w in items.windows(n) {
            *m.entry(w).or_insert(0) += 1;
        }
    }
    m
}

impl BleuStats {
    /// One sentence against its reference (both untokenized).
    pub fn sentence(hyp: &str, reference: &str) -> Self {
        let hyp_tok = tokenize_13a(py_rstrip(hyp));
        let ref_tok = tokenize_13a(py_rstrip(reference));
        let hyp_words: Vec<&str> = py_split(&hyp_tok).collect();
        let ref_words: Vec<&str> = py_split(&ref_tok).collect();
        let mut st = BleuStats {
            hyp_len: hyp_words.len() as u64,
            ref_len: ref_words.len() as u64,
            ..Default::default()
        };
        for n in 1..=BLEU_MAX_ORDER {
            let refs = count_ngrams(&ref_words, n);
            for (g, c) in count_ngrams(&hyp_words, n) {
                st.total[n - 1] += c;
                if let Some(&r) = refs.get(g) {
                    st.correct[n - 1] += c.min(r);
                }
            }
        }
        st
    }

    pub fn add(&mut self, o: &BleuStats) {
        self.hyp_len += o.hyp_len;
        self.ref_len += o.ref_len;
        for n in 0..BLEU_MAX_ORDER {
            self.correct[n] += o.correct[n];
            self.total[n] += o.total[n];
        }
    }

    /// sacreBLEU's `BLEU.compute_bleu` with `smooth_method='exp'`, no effective order.
    pub fn score(&self) -> BleuScore {
        let (sys_len, ref_len) = (self.hyp_len, self.ref_len);
        let mut bp = 1.0f64;
        if sys_len < ref_len {
            bp = if sys_len > 0 {
                (1.0 - ref_len as f64 / sys_len as f64).exp()
            } else {
                0.0
            };
        }
        let mut precisions = [0.0f64; BLEU_MAX_ORDER];
        let done = |score: f64, precisions: [f64; BLEU_MAX_ORDER]| BleuScore {
            score,
            precisions,
            bp,
            stats: self.clone(),
        };
        // Early stop if there are no matches at all (sacreBLEU #141).
        if self.correct.iter().all(|&c| c == 0) {
            return done(0.0, precisions);
        }
        let mut smooth_mteval = 1.0f64;
        for ((p, &correct), &total) in precisions.iter_mut().zip(&self.correct).zip(&self.total) {
            if total == 0 {
                // The remaining precisions stay 0 and the score becomes 0 through my_log.
                break;
            }
            if correct == 0 {
                smooth_mteval *= 2.0;
                *p = 100.0 / (smooth_mteval * total as f64);
            } else {
                *p = 100.0 * correct as f64 / total as f64;
            }
        }
        // Python's sum(): left to right from 0.
        let mut log_sum = 0.0f64;
        for &p in &precisions {
            log_sum += my_log(p);
        }
        let score = bp * (log_sum / BLEU_MAX_ORDER as f64).exp();
        done(score, precisions)
    }
}

/// sacreBLEU's `my_log`: log floored to -9999999999 at 0.
fn my_log(x: f64) -> f64 {
    if x == 0.0 {
        -9_999_999_999.0
    } else {
        x.ln()
    }
}

/// A corpus BLEU score (0..=100) with sacreBLEU's details.
#[derive(Clone, Debug, PartialEq)]
pub struct BleuScore {
    pub score: f64,
    /// n-gram precisions in percent, after smoothing.
    pub precisions: [f64; BLEU_MAX_ORDER],
    /// Brevity penalty.
    pub bp: f64,
    pub stats: BleuStats,
}

impl BleuScore {
    /// hyp_len / ref_len (0 when there is no reference token).
    pub fn ratio(&self) -> f64 {
        if self.stats.ref_len == 0 {
            0.0
        } else {
            self.stats.hyp_len as f64 / self.stats.ref_len as f64
        }
    }
}

/// The same text as sacreBLEU's `str(BLEUScore)`.
impl fmt::Display for BleuScore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p: Vec<String> = self.precisions.iter().map(|p| format!("{p:.1}")).collect();
        write!(
            f,
            "BLEU = {:.2} {} (BP = {:.3} ratio = {:.3} hyp_len = {} ref_len = {})",
            self.score,
            p.join("/"),
            self.bp,
            self.ratio(),
            self.stats.hyp_len,
            self.stats.ref_len
        )
    }
}

fn check_lengths(hyps: usize, refs: usize) -> Result<()> {
    if hyps != refs {
        return Err(Error::Input(format!(
            "{hyps} hypotheses but {refs} references; they must pair up line by line"
        )));
    }
    Ok(())
}

/// Corpus BLEU of `hyps` against one reference each (sacreBLEU `corpus_bleu(hyps, [refs])`).
/// An empty corpus scores 0 (sacreBLEU raises an error).
pub fn corpus_bleu<H: AsRef<str>, R: AsRef<str>>(hyps: &[H], refs: &[R]) -> Result<BleuScore> {
    check_lengths(hyps.len(), refs.len())?;
    let mut st = BleuStats::default();
    for (h, r) in hyps.iter().zip(refs) {
        st.add(&BleuStats::sentence(h.as_ref(), r.as_ref()));
    }
    Ok(st.score())
}

// ---------------------------------------------------------------------------------------------
// chrF

/// chrF's sufficient statistics: `[hyp, ref, match]` n-gram counts per character order 1..=6.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChrfStats {
    pub orders: [[u64; 3]; CHRF_CHAR_ORDER],
}

impl ChrfStats {
    /// One sentence against its reference.
    pub fn sentence(hyp: &str, reference: &str) -> Self {
        let h: Vec<char> = hyp.chars().filter(|&c| !is_py_whitespace(c)).collect();
        let r: Vec<char> = reference
            .chars()
            .filter(|&c| !is_py_whitespace(c))
            .collect();
        let mut st = ChrfStats::default();
        for n in 1..=CHRF_CHAR_ORDER {
            let hyp_ngrams = count_ngrams(&h, n);
            let ref_ngrams = count_ngrams(&r, n);
            let (mut hyp_count, mut match_count) = (0u64, 0u64);
            for (g, c) in &hyp_ngrams {
                hyp_count += c;
                if let Some(&rc) = ref_ngrams.get(g) {
                    match_count += (*c).min(rc);
                }
            }
            st.orders[n - 1] = [
                // sacreBLEU: "Don't count hits if no reference exists for that n-gram".
                if ref_ngrams.is_empty() { 0 } else { hyp_count },
                ref_ngrams.values().sum(),
                match_count,
            ];
        }
        st
    }

    pub fn add(&mut self, o: &ChrfStats) {
        for (a, b) in self.orders.iter_mut().zip(&o.orders) {
            for k in 0..3 {
                a[k] += b[k];
            }
        }
    }

    /// sacreBLEU's `CHRF._compute_f_score` with `eps_smoothing=False` (its default).
    pub fn score(&self) -> ChrfScore {
        let factor = (CHRF_BETA * CHRF_BETA) as f64;
        let (mut avg_prec, mut avg_rec) = (0.0f64, 0.0f64);
        let mut effective_order = 0u32;
        for &[n_hyp, n_ref, n_match] in &self.orders {
            // Orders where one side has no n-grams would get eps; they are left out here.
            if n_hyp > 0 && n_ref > 0 {
                avg_prec += n_match as f64 / n_hyp as f64;
                avg_rec += n_match as f64 / n_ref as f64;
                effective_order += 1;
            }
        }
        if effective_order == 0 {
            avg_prec = 0.0;
            avg_rec = 0.0;
        } else {
            avg_prec /= effective_order as f64;
            avg_rec /= effective_order as f64;
        }
        let score = if avg_prec + avg_rec != 0.0 {
            let mut s = (1.0 + factor) * avg_prec * avg_rec;
            s /= factor * avg_prec + avg_rec;
            100.0 * s
        } else {
            0.0
        };
        ChrfScore {
            score,
            stats: self.clone(),
        }
    }
}

/// A corpus chrF score (0..=100).
#[derive(Clone, Debug, PartialEq)]
pub struct ChrfScore {
    pub score: f64,
    pub stats: ChrfStats,
}

/// The same text as sacreBLEU's `str(CHRFScore)`.
impl fmt::Display for ChrfScore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "chrF{} = {:.2}", CHRF_BETA, self.score)
    }
}

/// Corpus chrF of `hyps` against one reference each (sacreBLEU `corpus_chrf(hyps, [refs])`).
/// An empty corpus scores 0 (sacreBLEU raises an error).
pub fn corpus_chrf<H: AsRef<str>, R: AsRef<str>>(hyps: &[H], refs: &[R]) -> Result<ChrfScore> {
    check_lengths(hyps.len(), refs.len())?;
    let mut st = ChrfStats::default();
    for (h, r) in hyps.iter().zip(refs) {
        st.add(&ChrfStats::sentence(h.as_ref(), r.as_ref()));
    }
    Ok(st.score())
}

// ---------------------------------------------------------------------------------------------
// Files

/// The lines of a UTF-8 text file: split on `\n` only (other Unicode line separators stay inside
/// a line, as when Python reads with `newline="\n"`), one trailing `\r` removed per line (it is
/// whitespace to both metrics, so scores do not change), no extra empty line after a final `\n`.
/// Invalid UTF-8 is an error naming the file and line.
pub fn read_lines(path: &Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut lines = Vec::new();
    let mut parts: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    if parts.last().is_some_and(|l| l.is_empty()) {
        parts.pop();
    }
    for (i, mut line) in parts.into_iter().enumerate() {
        if let Some(stripped) = line.strip_suffix(b"\r") {
            line = stripped;
        }
        match std::str::from_utf8(line) {
            Ok(s) => lines.push(s.to_string()),
            Err(e) => {
                return Err(Error::Input(format!(
                    "{}: line {} is not valid UTF-8 (invalid byte at offset {})",
                    path.display(),
                    i + 1,
                    e.valid_up_to()
                )))
            }
        }
    }
    Ok(lines)
}
