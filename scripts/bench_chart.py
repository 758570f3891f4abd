#!/usr/bin/env python3
"""The speed harnesses' chart: target tokens per second of every engine at each batch size, as
grouped bars, from the JSON the harnesses write (one panel per harness given).

    python scripts/bench_chart.py --out target/bench/peers.svg \
        [--native target/bench/native-results.json] \
        [--browser target/bench/marian-browser-results.json target/bench/tjs-results.json]

`--native`: what `scripts/bench_peers.py --json` writes (medians over its rounds, quiet runs only).
`--browser`: what `scripts/bench_browser_peers.sh` writes (marian-wasm's 91-bench, transformers.js).
Needs matplotlib (in the bench .venv: scripts/requirements-bench.txt); the format follows the
`--out` suffix (.svg, .png). Exits 2 with a message when matplotlib is missing.
"""

import argparse
import json
import statistics
import sys
from pathlib import Path


def native_series(doc: dict) -> tuple[str, dict]:
    """(panel title, {engine: {batch: tokens/s}}) from bench_peers.py's JSON: the median of each
    engine's quiet rounds (busy runs are left out: their chart is the share table)."""
    runs: dict = {}
    for r in doc["results"]:
        if "tokens_per_s" in r and r.get("busy", 0) == 0:
            runs.setdefault(r["engine"], {}).setdefault(r["batch"], []).append(r["tokens_per_s"])
    series = {e: {b: statistics.median(v) for b, v in bs.items()} for e, bs in runs.items()}
    rounds = f", median of {doc['rounds']} rounds" if doc.get("rounds", 1) > 1 else ""
    title = (f"native, {doc.get('threads', '?')} threads{rounds}\n"
             f"{doc.get('date', '')} {doc.get('cpu', '')}".rstrip())
    return title, series


def browser_series(docs: list) -> tuple[str, dict]:
    """(panel title, {engine: {batch: tokens/s}}) from 91-bench's and transformers.js's JSON."""
    series: dict = {}
    chromium = date = ""
    for doc in docs:
        chromium = chromium or doc.get("chromium", "")
        date = date or doc.get("date", "")[:16].replace("T", " ")
        tjs = doc.get("transformers_js")
        for r in doc["results"]:
            if r.get("error") or "tokensPerS" not in r:
                continue
            name = (f"transformers.js {tjs}" if tjs else f"marian-wasm {r.get('build', 'pkg')}")
            series.setdefault(f"{name}, {r['threads']}T", {})[r["batch"]] = r["tokensPerS"]
    return f"headless Chromium {chromium}\n{date} UTC".strip(), series


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--native")
    ap.add_argument("--browser", nargs="+", default=[])
    a = ap.parse_args()
    panels = []
    if a.native:
        panels.append(native_series(json.loads(Path(a.native).read_text())))
    if a.browser:
        panels.append(browser_series([json.loads(Path(p).read_text()) for p in a.browser]))
    if not panels:
        ap.error("nothing to draw: give --native and/or --browser")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench_chart.py: matplotlib is not installed (pip install -r "
              "scripts/requirements-bench.txt); no chart written", file=sys.stderr)
        return 2

    fig, axes = plt.subplots(1, len(panels), figsize=(7.5 * len(panels), 5.2), squeeze=False)
    for ax, (title, series) in zip(axes[0], panels):
        batches = sorted({b for per in series.values() for b in per})
        width = 0.8 / max(1, len(series))
        for i, (engine, per) in enumerate(series.items()):
            xs = [j + (i - (len(series) - 1) / 2) * width for j, b in enumerate(batches) if b in per]
            ys = [per[b] for b in batches if b in per]
            bars = ax.bar(xs, ys, width, label=engine)
            ax.bar_label(bars, fmt="%.0f", fontsize=7, rotation=90, padding=2)
        ax.set_xticks(range(len(batches)), [f"batch {b}" for b in batches])
        ax.set_ylabel("target tokens / s (higher is better)")
        ax.set_title(title, fontsize=9)
        ax.margins(y=0.18)
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, metadata={"Date": None} if a.out.endswith(".svg") else None)
    print(f"bench_chart.py: wrote {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
