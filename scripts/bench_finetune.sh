#!/usr/bin/env bash
# Fine-tuning speed (issue 5 item 7), one device against another in one run: 500 pairs x 3 epochs
# on the opus-mt-en-fr-shaped q8 package, the features pass on each DEVICE in turn (training runs
# on the CPU either way). Prints one JSON report per device and a Markdown table.
#   scripts/bench_finetune.sh PKG_DIR PAIRS_TSV [DEVICE...]      (default devices: cpu gpu)
# The package and the pairs are made as BENCHMARKS.md says. MARIAN_BIN=<path> uses a prebuilt
# binary (a GPU machine without cargo); WORK (default /tmp/bench-finetune) keeps the adapters.
# FT_ARGS adds finetune flags to every run (e.g. FT_ARGS="--last-layer-rank 8"; reported).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PKG="${1:?package folder}"
PAIRS="${2:?pairs TSV}"
shift 2
[ $# -gt 0 ] && DEVICES=("$@") || DEVICES=(cpu gpu)
BIN="${MARIAN_BIN:-$ROOT/target/release/marian-wasm}"
WORK="${WORK:-/tmp/bench-finetune}"
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release --bin marian-wasm)
[ -f "$PKG/manifest.json" ] || { echo "no package at $PKG (see BENCHMARKS.md)" >&2; exit 1; }
[ -f "$PAIRS" ] || { echo "no pairs file $PAIRS (see BENCHMARKS.md)" >&2; exit 1; }
mkdir -p "$WORK"
for dev in "${DEVICES[@]}"; do
  t0=$(date +%s.%N)
  "$BIN" finetune --model "$PKG" --pairs "$PAIRS" --val-fraction 0 --epochs 3 --device "$dev" \
    --out "$WORK/ft-$dev.safetensors" --json ${FT_ARGS:-} > "$WORK/ft-$dev.json" 2> "$WORK/ft-$dev.log"
  t1=$(date +%s.%N)
  FT_ARGS="${FT_ARGS:-}" python3 - "$WORK/ft-$dev.json" "$t0" "$t1" <<'PY'
import json, os, sys
r = json.load(open(sys.argv[1]))
rep = r["report"]
print(json.dumps({
    "asked": sys.argv[1].rsplit("ft-", 1)[1].split(".")[0],
    "flags": os.environ.get("FT_ARGS", ""),
    "feature_device": rep["feature_device"],
    "wall_s": round(float(sys.argv[3]) - float(sys.argv[2]), 2),
    "feature_s": round(rep["feature_seconds"], 2),
    "frozen_model_s": round(rep["frozen_model_seconds"], 2),
    "vocabulary_s": round(rep["vocabulary_seconds"], 2),
    "train_s": round(rep["train_seconds"], 2),
    "positions": rep["train_positions"],
    "trained_tokens": rep["trained_tokens"],
    "losses": [round(e["train_loss"], 5) for e in rep["epochs"]],
}))
PY
done | tee "$WORK/results.jsonl"
echo
echo "| features on | flags | wall s | features s | training s | positions | tokens in S | loss per epoch |"
echo "|---|---|---|---|---|---|---|---|"
python3 -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print("| %s | %s | %.1f | %.1f | %.1f | %d | %d | %s |" % (r["feature_device"], r.get("flags") or "—", r["wall_s"], r["feature_s"], r["train_s"], r["positions"], r["trained_tokens"], ", ".join("%.4f" % l for l in r["losses"])))
' "$WORK/results.jsonl"
