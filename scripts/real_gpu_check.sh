#!/usr/bin/env bash
# Issue 4 on a machine with a real GPU, in one run: (1) token parity of the GPU backend with the CPU
# backend on the committed fixtures (greedy and beam 4, f32 and f16 packages), (2) the
# opus-mt-en-fr-shaped benchmark, GPU against that machine's CPU path (scripts/bench_gpu.sh).
# Needs: a prebuilt binary (MARIAN_BIN, default target/release/marian-wasm), a Vulkan driver, and a
# python3 with torch + transformers to make the random-weights checkpoint. Writes its work under
# WORK (default /tmp/real-gpu-check) and a copy of its results to OUT when OUT is set. With FT_PAIRS
# (a pairs TSV made as BENCHMARKS.md says) it also times fine-tuning, features on the GPU vs the CPU.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${MARIAN_BIN:-$ROOT/target/release/marian-wasm}"
WORK="${WORK:-/tmp/real-gpu-check}"
PY="${PYTHON:-python3}"
mkdir -p "$WORK"
export MARIAN_BIN="$BIN"

echo "== parity: GPU vs CPU token ids on the fixtures"
fail=0
for fx in tiny-opus tiny-switches; do
  "$PY" -c 'import json,sys; [print(s["src"]) for s in json.load(open(sys.argv[1]))["sentences"]]' \
    "$ROOT/tests/fixtures/$fx/expected.json" > "$WORK/$fx.src"
  # f32 and f16 (widened to f32 on the CPU): the same weights on both; the CPU's q8/q4 kernels also
  # quantize activations, so those are compared by tests/gpu.rs against the widened CPU model.
  for q in f32 f16; do
    pkg="$WORK/$fx-$q"
    [ -f "$pkg/manifest.json" ] || "$BIN" convert "$ROOT/tests/fixtures/$fx" "$pkg" --quant "$q" > /dev/null
    for beams in 1 4; do
      for dev in cpu gpu; do
        "$BIN" translate --model "$pkg" --device "$dev" --beams "$beams" --ids < "$WORK/$fx.src" > "$WORK/$fx-$q-b$beams.$dev"
      done
      if cmp -s "$WORK/$fx-$q-b$beams.cpu" "$WORK/$fx-$q-b$beams.gpu"; then
        echo "  $fx $q beams=$beams: identical ($(wc -l < "$WORK/$fx.src") sentences)"
      else
        echo "  $fx $q beams=$beams: DIFFERENT"; diff "$WORK/$fx-$q-b$beams.cpu" "$WORK/$fx-$q-b$beams.gpu" | head -6
        fail=1
      fi
    done
  done
done

echo "== benchmark package (opus-mt-en-fr shape, random weights)"
t0=$(date +%s)
[ -f "$WORK/ckpt/config.json" ] || "$PY" "$ROOT/scripts/make_bench_checkpoint.py" "$WORK/ckpt" > /dev/null
[ -f "$WORK/pkg-q8/manifest.json" ] || "$BIN" convert "$WORK/ckpt" "$WORK/pkg-q8" --quant q8 > /dev/null
echo "  made in $(( $(date +%s) - t0 )) s"
echo "== benchmark: GPU vs CPU, batch 1 and 32, 32 tokens"
bash "$ROOT/scripts/bench_gpu.sh" "$WORK/pkg-q8" 32 | tee "$WORK/bench_q8.txt"
if [ -n "${FT_PAIRS:-}" ]; then
  echo "== fine-tuning: 500 pairs x 3 epochs, features pass on the GPU vs the CPU ($FT_PAIRS)"
  WORK="$WORK/finetune" bash "$ROOT/scripts/bench_finetune.sh" "$WORK/pkg-q8" "$FT_PAIRS" gpu cpu | tee "$WORK/bench_finetune.txt"
fi
if [ -n "${OUT:-}" ]; then cp "$WORK"/bench_*.txt "$OUT"/ 2>/dev/null || true; fi
exit $fail
