#!/usr/bin/env bash
# How often f16 products (shader-f16; MARIAN_GPU_F16) change a translation from the f32 path's:
# each package translated on the GPU twice, MARIAN_GPU_F16=off and =all, greedy and beam 4, in
# batches of 32; prints identical lines / lines per package and search.
#   scripts/gpu_f16_fidelity.sh [N] [PKG_DIR...]
# N: held-out lines (default 500) from $MARIAN_DATA/multi30k/test_2016_flickr.en (MARIAN_DATA
# defaults to ../shared/data). PKG_DIRs: packages to compare (default: tiny-opus f32/q8 and
# tiny-switches f16/q8 converted into WORK, and the embedded default model's folder).
# Needs an adapter with shader-f16 (lavapipe has it) and a built binary (MARIAN_BIN).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${MARIAN_BIN:-$ROOT/target/release/marian-wasm}"
DATA="${MARIAN_DATA:-$ROOT/../shared/data}"
WORK="${WORK:-/tmp/gpu-f16-fidelity}"
N="${1:-500}"
shift || true
SRC="$DATA/multi30k/test_2016_flickr.en"
[ -f "$SRC" ] || { echo "no $SRC: set MARIAN_DATA to the shared data folder" >&2; exit 2; }
[ -x "$BIN" ] || { echo "no binary at $BIN (cargo build --release, or MARIAN_BIN)" >&2; exit 2; }
mkdir -p "$WORK"
head -n "$N" "$SRC" > "$WORK/src.txt"
pkgs=("$@")
if [ ${#pkgs[@]} -eq 0 ]; then
  for spec in tiny-opus:f32 tiny-opus:q8 tiny-switches:f16 tiny-switches:q8; do
    fx=${spec%%:*} q=${spec##*:}
    pkg="$WORK/$fx-$q"
    [ -f "$pkg/manifest.json" ] || "$BIN" convert "$ROOT/tests/fixtures/$fx" "$pkg" --quant "$q" > /dev/null 2>> "$WORK/convert.log"
    pkgs+=("$pkg")
  done
  pkgs+=("$ROOT/models/default")
fi
for pkg in "${pkgs[@]}"; do
  for beams in 1 4; do
    for f16 in off all; do
      MARIAN_GPU_F16=$f16 "$BIN" translate --model "$pkg" --device gpu --beams "$beams" \
        --batch-size 32 --ids < "$WORK/src.txt" > "$WORK/out.$f16" 2> "$WORK/err.$f16"
    done
    same=$(paste -d'|' "$WORK/out.off" "$WORK/out.all" | awk -F'|' '$1 == $2' | wc -l)
    echo "$(basename "$pkg") beams $beams: $same / $(wc -l < "$WORK/out.off") identical"
  done
done
