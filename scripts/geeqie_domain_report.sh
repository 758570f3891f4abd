#!/usr/bin/env bash
# Domain BLEU before and after fine-tuning (issue 5), on the geeqie-ui set of UI strings:
#   bash scripts/geeqie_domain_report.sh [extra `finetune` flags, e.g. --epochs 8]
# Data: $MARIAN_DATA (default ../shared/data) holding geeqie-ui/pairs.{en,fr}. Deterministic split
# by a fixed stride: every 5th pair (lines 5, 10, ...) is the test set (20 %), the others train
# (80 %; `finetune` holds out every ~10th of those for its own early stopping). The split files are
# written under target/geeqie-domain/ (never into the repository). Model: the embedded default.
# Needs target/release/marian-wasm (cargo build --release).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DATA="${MARIAN_DATA:-../shared/data}"
case "$DATA" in /*) ;; *) DATA="$ROOT/$DATA" ;; esac
EN="$DATA/geeqie-ui/pairs.en"
FR="$DATA/geeqie-ui/pairs.fr"
[ -f "$EN" ] && [ -f "$FR" ] || { echo "error: $EN / $FR not found (set MARIAN_DATA)" >&2; exit 1; }
BIN="${MARIAN_BIN:-target/release/marian-wasm}"
[ -x "$BIN" ] || { echo "error: $BIN missing: cargo build --release" >&2; exit 1; }
OUT=target/geeqie-domain
mkdir -p "$OUT"

paste -d '\t' "$EN" "$FR" | awk -F'\t' -v out="$OUT" '
  NR % 5 == 0 { print $1 > (out "/test.en"); print $2 > (out "/test.fr"); next }
  { print > (out "/train.tsv") }'
echo "split: $(wc -l < "$OUT/train.tsv") train pairs, $(wc -l < "$OUT/test.en") test pairs ($EN)"

printf 'before (base model):   '
"$BIN" eval --src "$OUT/test.en" --ref "$OUT/test.fr" --json 2>/dev/null
/usr/bin/time -f 'finetune wall %e s, peak RSS %M KB' \
  "$BIN" finetune --pairs "$OUT/train.tsv" --out "$OUT/adapter.safetensors" "$@"
printf 'after (with adapter):  '
"$BIN" eval --src "$OUT/test.en" --ref "$OUT/test.fr" --adapter "$OUT/adapter.safetensors" --json 2>/dev/null
