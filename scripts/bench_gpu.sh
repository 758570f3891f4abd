#!/usr/bin/env bash
# GPU against CPU in one run (issue 4's benchmark): the opus-mt-en-fr-shaped package, greedy, exactly
# --tokens target tokens per sentence, batch 1 and batch 32, native wgpu (Vulkan) vs the CPU path of
# the same machine. Prints one JSON line per run and a Markdown table for BENCHMARKS.md.
#   scripts/bench_gpu.sh [PKG_DIR] [TOKENS]      (default target/bench/pkg-q8, 32)
# The package is made as BENCHMARKS.md says. MARIAN_GPU_ADAPTER=<part of a name> picks an adapter;
# MARIAN_BIN=<path> uses a prebuilt binary (e.g. one copied to a GPU machine without cargo).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PKG="${1:-$ROOT/target/bench/pkg-q8}"
TOKENS="${2:-32}"
BIN="${MARIAN_BIN:-$ROOT/target/release/marian-wasm}"
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release --bin marian-wasm)
[ -f "$PKG/manifest.json" ] || { echo "no package at $PKG (see BENCHMARKS.md)" >&2; exit 1; }
rows=()
for dev in cpu gpu; do
  for b in 1 32; do
    n=$(( b == 1 ? 16 : 64 ))
    line=$("$BIN" bench --model "$PKG" --device "$dev" --batch "$b" --tokens "$TOKENS" --count "$n" --json)
    echo "$line"
    rows+=("$line")
  done
done
echo
echo "| device | adapter | batch | tokens/s | ms/token/sentence | load s |"
echo "|---|---|---|---|---|---|"
for r in "${rows[@]}"; do
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("| %s | %s | %d | %.1f | %.2f | %.2f |" % (r["device"], r.get("adapter") or "-", r["batch"], r["tokens_per_s"], 1000*r["batch"]/r["tokens_per_s"], r["load_s"]))' "$r"
done
