#!/usr/bin/env python3
"""How often numbers, URLs, e-mail addresses and emoji inside sentences come out of a
translation exactly as written: with marian-wasm's span protection (src/protect.rs) and without
(`--no-protect`).

Usage: python3 scripts/span_preservation.py [--bin target/release/marian-wasm] [--model PKG]
           [--count 300] [--seed 7]
Sentences: the first --count lines of $MARIAN_DATA/multi30k/test_2016_flickr.en (default
MARIAN_DATA=../shared/data), each with one span put at a random word boundary (seeded; the spans
are generated, not taken from any data). Prints the share of spans kept, per kind and overall.
"""

import argparse
import os
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def make_span(rng: random.Random) -> tuple[str, str]:
    kind = rng.choice(["number", "number", "url", "email", "emoji"])
    if kind == "number":
        form = rng.choice(["{a}-{b}", "{a}.{b}", "{n:,}", "{h}:{m:02d}", "{n}", "{a}%", "{y}-{mo:02d}-{d:02d}"])
        span = form.format(a=rng.randint(0, 99), b=rng.randint(0, 99), n=rng.randint(100, 99999),
                           h=rng.randint(0, 23), m=rng.randint(0, 59), y=rng.randint(1950, 2030),
                           mo=rng.randint(1, 12), d=rng.randint(1, 28))
    elif kind == "url":
        host = rng.choice(["example.org", "www.example.com", "docs.example.net", "shop.example.fr"])
        path = rng.choice(["", "/a/b", "/shop?id=%d" % rng.randint(1, 999), "/2024/news.html"])
        span = rng.choice(["https://", "http://", ""]) + host + path
        if not span.startswith(("http", "www.")):
            span = "https://" + span
    elif kind == "email":
        span = rng.choice(["jane.doe", "info", "team+mt", "a.b.c"]) + "@" + rng.choice(
            ["example.com", "mail.example.org", "example.fr"])
    else:
        span = rng.choice(["🎉", "👍🏽", "🐶🐶", "❤️", "🇫🇷", "😀 😀"])
    return kind, span


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(ROOT / "target/release/marian-wasm"))
    ap.add_argument("--model")
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    data = Path(os.environ.get("MARIAN_DATA", ROOT.parent / "shared" / "data"))
    src = data / "multi30k" / "test_2016_flickr.en"
    if not src.is_file():
        sys.exit(f"{src} not found: set MARIAN_DATA to the folder holding multi30k/")
    rng = random.Random(a.seed)
    lines, spans = [], []
    for line in src.read_text(encoding="utf-8").splitlines()[: a.count]:
        words = line.split()
        kind, span = make_span(rng)
        at = rng.randint(0, len(words))
        words.insert(at, span)
        lines.append(" ".join(words))
        spans.append((kind, span))
    text = "\n".join(lines) + "\n"
    results = {}
    for label, extra in [("protected", []), ("--no-protect", ["--no-protect"])]:
        cmd = [a.bin, "translate"] + (["--model", a.model] if a.model else []) + extra
        out = subprocess.run(cmd, input=text, capture_output=True, text=True, check=True).stdout
        outs = out.splitlines()
        assert len(outs) == len(lines), "one output line per input line"
        kept = {}
        for (kind, span), o in zip(spans, outs):
            k = kept.setdefault(kind, [0, 0])
            k[0] += span in o
            k[1] += 1
        results[label] = kept
    kinds = sorted({k for k, _ in spans})
    print("| run | " + " | ".join(kinds) + " | all |")
    print("|---|" + "---|" * (len(kinds) + 1))
    for label, kept in results.items():
        cells = [f"{100 * kept[k][0] / kept[k][1]:.1f} % ({kept[k][1]})" for k in kinds]
        total = sum(v[0] for v in kept.values()) / sum(v[1] for v in kept.values())
        print(f"| {label} | " + " | ".join(cells) + f" | {100 * total:.1f} % |")


if __name__ == "__main__":
    main()
