#!/usr/bin/env bash
# Measure a trained default model the way issue 3 asks, on Multi30k test_2016_flickr:
#   - BLEU / chrF of the q8 package, greedy and beam 4 (marian-wasm eval);
#   - the same for the HF f32 model (transformers generate), for reference;
#   - greedy token identity of the q8 package vs the HF model's own output, and BLEU of the q8
#     output against the HF f32 output.
#   bash scripts/default_model_report.sh [HF_DIR] [PKG_DIR]
# defaults: target/default-train/hf and models/default. Needs target/release/marian-wasm and the
# fixtures venv (.venv: transformers, torch, sentencepiece). Data: $MARIAN_DATA (default ../shared/data).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
HF="${1:-target/default-train/hf}"
PKG="${2:-models/default}"
DATA="${MARIAN_DATA:-../shared/data}"
case "$DATA" in /*) ;; *) DATA="$ROOT/$DATA" ;; esac
SRC="$DATA/multi30k/test_2016_flickr.en"
REF="$DATA/multi30k/test_2016_flickr.fr"
[ -f "$SRC" ] || { echo "error: $SRC not found (set MARIAN_DATA to the folder holding multi30k/)" >&2; exit 1; }
BIN=target/release/marian-wasm
OUT=target/default-report
mkdir -p "$OUT"

echo "== q8 package $PKG"
for b in 1 4; do
  printf 'beam %s: ' "$b"; "$BIN" eval --model "$PKG" --src "$SRC" --ref "$REF" --beams "$b" 2>/dev/null
done

echo "== HF f32 $HF (transformers generate)"
for b in 1 4; do
  .venv/bin/python scripts/hf_reference_outputs.py "$HF" "$SRC" "$OUT/hf-beam$b" --beams "$b"
  printf 'beam %s: ' "$b"; "$BIN" eval --hyp "$OUT/hf-beam$b.txt" --ref "$REF" 2>/dev/null
done

echo "== q8 vs HF, greedy"
"$BIN" translate --model "$PKG" --beams 1 --ids < "$SRC" > "$OUT/q8-greedy.ids"
"$BIN" translate --model "$PKG" --beams 1 < "$SRC" > "$OUT/q8-greedy.txt"
same=$(paste -d '\t' "$OUT/q8-greedy.ids" "$OUT/hf-beam1.ids" | awk -F'\t' '$1 == $2' | wc -l)
total=$(wc -l < "$SRC")
echo "token-identical greedy outputs: $same / $total ($(awk -v a="$same" -v b="$total" 'BEGIN { printf "%.1f", 100 * a / b }') %)"
printf 'BLEU of q8 greedy against HF f32 greedy: '
"$BIN" eval --hyp "$OUT/q8-greedy.txt" --ref "$OUT/hf-beam1.txt" 2>/dev/null
