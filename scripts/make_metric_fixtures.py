#!/usr/bin/env python3
"""Build the BLEU / chrF test fixtures under tests/fixtures/metrics/ and record sacreBLEU's scores.

Usage (from the repository root):

    .venv/bin/python scripts/make_metric_fixtures.py

Needs sacrebleu (pinned in scripts/requirements-fixtures.txt; the recorded version is written into
expected.json) and the data directory named by MARIAN_DATA (default: ../shared/data relative to the
repository root; a relative MARIAN_DATA is also taken relative to the repository root). Only
multi30k/test_2016_flickr.fr is read, in place; deterministically perturbed versions of a subset
of its lines (never a verbatim line) are written as references, and further perturbations of
those as hypotheses.

Every set is a pair of files `<name>.hyp` / `<name>.ref`: UTF-8, lines joined with "\\n" and a final
"\\n" (so a line never contains "\\n"; other Unicode line separators such as U+2028 or U+0085 may
appear *inside* a line and must not split it). Readers split on "\\n" only.

expected.json records, per set, sacreBLEU's corpus_bleu and corpus_chrf with default settings
(BLEU: tokenize 13a, 4-grams, smooth exp, mixed case; chrF: char order 6, word order 0, beta 2,
whitespace removed, no eps smoothing) at full precision (JSON floats are Python's repr, and the
repr strings are kept too), BLEU's counts / totals / precisions / brevity penalty / lengths and chrF's
summed [hyp, ref, match] statistics per order. It also records the 13a tokenizer's output for a list
of tricky strings and for deterministic random strings over an alphabet of the characters its
regular expressions treat specially.
"""

import json
import os
import random
import sys
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "metrics"


def data_file() -> Path:
    raw = os.environ.get("MARIAN_DATA", "../shared/data")
    p = Path(raw)
    if not p.is_absolute():
        p = (ROOT / p).resolve()
    f = p / "multi30k" / "test_2016_flickr.fr"
    if not f.is_file():
        sys.exit(
            f"error: {f} not found.\n"
            "  Set MARIAN_DATA to the directory holding multi30k/test_2016_flickr.fr; the default is "
            "../shared/data relative to the repository root."
        )
    return f


try:
    import sacrebleu
    from sacrebleu.metrics import BLEU, CHRF
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
    from sacrebleu.utils import sum_of_lists
except ImportError:
    sys.exit(
        "error: sacrebleu is not installed; run "
        ".venv/bin/pip install -r scripts/requirements-fixtures.txt"
    )


# ---------------------------------------------------------------------------------------------
# (a) perturbed Multi30k French references


def strip_accents(s: str) -> str:
    return "".join(
        c for c in unicodedata.normalize("NFD", s) if unicodedata.category(c) != "Mn"
    )


def perturb(ref: str, rng: random.Random, heavy: bool) -> str:
    words = ref.split()
    n_ops = rng.randint(2, 5) if heavy else rng.randint(0, 3)
    if rng.random() < (0.08 if heavy else 0.04):
        return ""  # an empty hypothesis line
    for _ in range(n_ops):
        op = rng.choice(
            ["drop", "swap", "punct", "case", "accents", "number", "dup", "entity", "split"]
        )
        if op == "drop" and len(words) > 1:
            del words[rng.randrange(len(words))]
        elif op == "swap" and len(words) > 1:
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
        elif op == "punct" and words:
            kind = rng.randrange(6)
            if kind == 0:  # drop the final full stop
                words[-1] = words[-1].rstrip(".")
            elif kind == 1:  # pre-tokenized full stop
                words[-1] = words[-1].rstrip(".")
                words.append(".")
            elif kind == 2:
                words[-1] = words[-1].rstrip(".") + " !"
            elif kind == 3:
                i = rng.randrange(len(words))
                words[i] = words[i] + ","
            elif kind == 4:
                i = rng.randrange(len(words))
                words[i] = "(" + words[i] + ")"
            else:
                i = rng.randrange(len(words))
                words[i] = '"' + words[i] + '"'
        elif op == "case" and words:
            kind = rng.randrange(3)
            if kind == 0:
                words = [w.lower() for w in words]
            elif kind == 1:
                i = rng.randrange(len(words))
                words[i] = words[i].upper()
            else:
                words[0] = words[0][:1].lower() + words[0][1:]
        elif op == "accents":
            words = strip_accents(" ".join(words)).split()
        elif op == "number":
            num = rng.choice(["2", "3,5", "1.000", "10-12", "2.", "19h30", "1er", "0,5.", "7-"])
            words.insert(rng.randrange(len(words) + 1), num)
        elif op == "dup" and words:
            i = rng.randrange(len(words))
            words.insert(i, words[i])
        elif op == "entity" and words:
            i = rng.randrange(len(words))
            words.insert(i, rng.choice(["&amp;", "&quot;x&quot;", "&lt;b&gt;", "-", "--"]))
        elif op == "split" and words:
            i = rng.randrange(len(words))
            w = words[i]
            if len(w) > 3:
                k = rng.randrange(1, len(w) - 1)
                words[i : i + 1] = [w[:k], w[k:]]
    return " ".join(words)


def multi30k_sets(path: Path):
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    rng = random.Random(20240605)
    # The data stays in MARIAN_DATA: references are derived (lightly perturbed) lines, never
    # verbatim copies; hypotheses are perturbations of those references.
    ref_rng = random.Random(20240606)
    derived = []
    for line in lines[:800]:
        d = perturb(line, ref_rng, heavy=False)
        while d == line:
            d = perturb(line, ref_rng, heavy=False)
        derived.append(d)
    refs_a = derived[:300]
    hyps_a = [perturb(r, rng, heavy=False) for r in refs_a]
    refs_b = derived[500:620]
    hyps_b = [perturb(r, rng, heavy=True) for r in refs_b]
    # Shifted: every hypothesis is a (lightly perturbed) neighbouring reference: low scores.
    refs_c = derived[700:780]
    hyps_c = [perturb(derived[701 + i], rng, heavy=False) for i in range(80)]
    return [
        ("multi30k-light", hyps_a, refs_a),
        ("multi30k-heavy", hyps_b, refs_b),
        ("multi30k-shifted", hyps_c, refs_c),
    ]


# ---------------------------------------------------------------------------------------------
# (b) handmade edge cases

EDGE_SETS = [
    (
        "identical",
        ["Un chat dort sur le canapé.", "Deux chiens jouent dans la neige.", "Bonjour !"],
        ["Un chat dort sur le canapé.", "Deux chiens jouent dans la neige.", "Bonjour !"],
    ),
    (
        "no-overlap",
        ["xyz qqq", "vvv www"],
        ["Un chat dort.", "Bonjour à tous."],
    ),
    (
        "empty-hyp-lines",
        ["", "Deux chiens jouent dans la neige.", "", "Un homme court."],
        ["Un chat dort.", "Deux chiens jouent dans la neige.", "Il pleut.", "Un homme marche."],
    ),
    (
        "all-empty-hyp",
        ["", "", ""],
        ["Un chat dort.", "Deux chiens.", "Oui."],
    ),
    (
        "empty-ref-lines",
        ["Un chat dort.", "Du texte en trop ici.", "Deux chiens jouent.", "x"],
        ["Un chat dort.", "", "Deux chiens jouent dans la neige.", ""],
    ),
    (
        "unicode",
        [
            "Ein Mädchen ißt Straße — «très» bien…",
            "日本語のテキストです。東京タワー",
            "😀 emoji 👨‍👩‍👧 famille 🇫🇷",
            "e\u0301te\u0301 composé",
            "Ελληνικά κείμενα και العربية",
            "nbsp\u00a0here thin\u2009space ideo\u3000graphic",
            "sep\x1cunit\x1fline\u2028para\u2029next\x85end",
            "tab\there\x0bvt\x0cff",
        ],
        [
            "Ein Mädchen isst Strasse - « très » bien...",
            "日本語のテキスト。東京タワーです",
            "😀 emoji 👨‍👩‍👧 famille 🇫🇷 !",
            "été composé",
            "Ελληνικά κείμενα και العربية",
            "nbsp here thin space ideo graphic",
            "sep unit line para next end",
            "tab here vt ff",
        ],
    ),
    (
        "very-short",
        ["Oui.", "Non", "a", "b c"],
        ["Oui.", "Non.", "a", "b d"],
    ),
    (
        "single-token-corpus",
        ["oui", "non"],
        ["oui", "si"],
    ),
    (
        "single-line",
        ["Le chat noir dort sur le tapis rouge près de la porte."],
        ["Le chat noir dormait sur le tapis près de la porte rouge."],
    ),
    (
        "brevity",
        ["Un homme avec un chapeau.", "Deux chiens jouent."],
        [
            "Un homme avec un chapeau orange regardant quelque chose.",
            "Deux chiens jouent dans la neige fraîche du matin.",
        ],
    ),
    (
        "longer-hyp",
        [
            "Un homme avec un grand chapeau orange vif regardant attentivement quelque chose.",
            "Deux petits chiens noirs jouent ensemble dans la neige.",
        ],
        ["Un homme avec un chapeau orange.", "Deux chiens jouent."],
    ),
    (
        "smoothing-zero-4grams",
        ["le chat noir a dormi", "un b c d e"],
        ["le chat noir dormait", "un x c y e"],
    ),
    (
        "tokenizer-tricky",
        [
            "Il a payé 3,50 € le 12.05.2020 à 10h-11h.",
            "U.S.A. et e.g., etc... (voir p. 3-4).",
            "&amp;quot; &lt;b&gt; Tom &amp; Jerry <skipped> fin",
            "l'homme d'affaires -- « aujourd'hui » ?!",
            "x-ray 10-20 a-b 5- -6",
            "1,000,000.50 .5 5. ,5 5, a.b a,b",
            "[crochets] {accolades} ~tilde~ `backtick` ^chapeau^ _sous_ \\barre\\ |pipe|",
            "  espaces   multiples   et fin   ",
        ],
        [
            "Il a payé 3,50 € le 12.05.2020 de 10h à 11h.",
            "USA et par exemple, etc. (voir p. 3-4).",
            '"Tom & Jerry" <b> fin',
            "l' homme d' affaires - « aujourd' hui » ?",
            "x-ray 10 - 20 a-b 5 - 6",
            "1,000,000.50 0.5 5 , 5 5, a. b a, b",
            "[crochets] {accolades} ~tilde~ `backtick` ^chapeau^ _sous_ \\barre\\ |pipe|",
            "espaces multiples et fin",
        ],
    ),
]


# Tricky inputs for the 13a tokenizer alone.
TOKENIZE_CASES = [
    "",
    " ",
    "Hello, world.",
    "3.14 and 1,000 and 2.5.6",
    "a.b.c, d,e",
    "end with dot.",
    "..,,..",
    "a..b",
    "1..2",
    ".1 ,2 1. 2,",
    "10-20 a-b -5 5- 5--6",
    "&amp;quot; &quot;q&quot; &lt;tag&gt; &amp;amp; &AMP;",
    "<skipped>x<skipped> y",
    "line-\nbreak and\nnewline",
    "tabs\tand\x0bvt\x0cff\rcr",
    "file\x1csep\x1dgs\x1ers\x1fus",
    "nbsp\u00a0x\u2009y\u3000z\u2028w\u2029v\x85u\u200bzw\u180emvs\ufeffbom",
    "quote's \"double\" `back` 'single'",
    "{}[]()<>|\\/^_~@#$%*+=:;?!",
    "trailing spaces   \t",
    "  leading",
    "Ünïcödé, ÀÉÎ. ١٢٣.٤ ５．６ ５,６",
    "e.g., i.e. U.S. Ph.D.",
    "$5.00 - 20% off!",
    "don't won't can't",
    "3.a a.3 3,a a,3",
    "日本語。テスト、です.",
]

# Characters the 13a regular expressions distinguish, plus letters, digits and whitespace kinds.
FUZZ_ALPHABET = list("ab Z09.,-'&;<>\"()[]{}~`^_|/\\:?!@#$%*+=") + [
    "&amp;",
    "&quot;",
    "&lt;",
    "&gt;",
    "<skipped>",
    "\t",
    "\n",
    "-\n",
    "\u00a0",
    "\x1c",
    "é",
    "٣",
    "５",
]


def fuzz_cases(n: int):
    rng = random.Random(13)
    out = []
    for _ in range(n):
        k = rng.randint(1, 24)
        out.append("".join(rng.choice(FUZZ_ALPHABET) for _ in range(k)))
    return out


# ---------------------------------------------------------------------------------------------


def write_lines(path: Path, lines):
    for line in lines:
        assert "\n" not in line, f"{path.name}: a line contains a newline: {line!r}"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8", newline="")


def read_lines(path: Path):
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def score_set(name, hyps, refs):
    assert len(hyps) == len(refs), name
    OUT.mkdir(parents=True, exist_ok=True)
    write_lines(OUT / f"{name}.hyp", hyps)
    write_lines(OUT / f"{name}.ref", refs)
    # Score what the Rust side will read back.
    hyps, refs = read_lines(OUT / f"{name}.hyp"), read_lines(OUT / f"{name}.ref")

    bleu = sacrebleu.corpus_bleu(hyps, [refs])
    chrf = sacrebleu.corpus_chrf(hyps, [refs])
    chrf_metric = CHRF()
    chrf_stats = sum_of_lists(chrf_metric._extract_corpus_statistics(hyps, [refs]))
    assert chrf_metric._compute_f_score(chrf_stats) == chrf.score
    return {
        "name": name,
        "hyp": f"{name}.hyp",
        "ref": f"{name}.ref",
        "lines": len(hyps),
        "bleu": bleu.score,
        "bleu_repr": repr(bleu.score),
        "bleu_counts": list(bleu.counts),
        "bleu_totals": list(bleu.totals),
        "bleu_precisions": list(bleu.precisions),
        "bleu_bp": bleu.bp,
        "bleu_sys_len": bleu.sys_len,
        "bleu_ref_len": bleu.ref_len,
        "bleu_str": str(bleu),
        "chrf": chrf.score,
        "chrf_repr": repr(chrf.score),
        "chrf_stats": [int(x) for x in chrf_stats],
        "chrf_str": str(chrf),
    }


def main():
    src = data_file()
    sets = multi30k_sets(src) + EDGE_SETS
    records = [score_set(name, hyps, refs) for name, hyps, refs in sets]

    tok = Tokenizer13a()
    bleu_sig = BLEU()
    bleu_sig.corpus_score(["a"], [["a"]])
    chrf_sig = CHRF()
    chrf_sig.corpus_score(["a"], [["a"]])
    expected = {
        "generator": "scripts/make_metric_fixtures.py",
        "sacrebleu_version": sacrebleu.__version__,
        "source": "perturbed lines derived from multi30k/test_2016_flickr.fr (1-300, 501-620, 701-781) + handmade",
        "bleu_signature": bleu_sig.get_signature().format(),
        "chrf_signature": chrf_sig.get_signature().format(),
        "sets": records,
        # [input, Tokenizer13a()(input)]; BLEU applies rstrip() before the tokenizer, these do not.
        "tokenize_13a": [[s, tok(s)] for s in TOKENIZE_CASES + fuzz_cases(300)],
    }
    (OUT / "expected.json").write_text(
        json.dumps(expected, indent=1, ensure_ascii=True) + "\n", encoding="utf-8"
    )
    total = sum(f.stat().st_size for f in OUT.iterdir())
    for r in records:
        print(f"{r['name']:24s} {r['lines']:4d} lines  BLEU {r['bleu']:8.4f}  chrF {r['chrf']:8.4f}")
    print(f"wrote {OUT} ({total / 1024:.1f} KiB)")


if __name__ == "__main__":
    main()
