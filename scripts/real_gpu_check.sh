#!/usr/bin/env bash
# Issue 4 / issue 20 on a machine with a real GPU, in one run: (1) token parity of the GPU backend
# with the CPU backend on the committed fixtures (greedy and beam 4, f32 and f16 packages), (2) the
# GPU peer benchmark (scripts/bench_gpu_peers.sh): marian-wasm on the GPU (q8, f16) against PyTorch
# transformers on CUDA (f32, f16) on the opus-mt-en-fr-shaped checkpoint, batches 1/8/32/64,
# greedy and beam 4, with marian-wasm's CPU path at batch 32 as a reference, (3) the profile
# (scripts/real_gpu_profile.sh: GPU time per kernel, split-K on against off; SKIP_PROFILE=1 skips
# it); about 8 minutes in all.
# Needs: a prebuilt binary (MARIAN_BIN, default target/release/marian-wasm), a Vulkan driver, and a
# python3 with torch (CUDA) + transformers + sentencepiece (PYTHON; default .venv/bin/python where
# it exists, else python3). No network. Writes its work under WORK (default /tmp/real-gpu-check)
# and a copy of its results (gpu-peers.json/.md/.txt) to OUT when OUT is set. Extra arguments go to
# bench_gpu_peers.py. With FT_PAIRS (a pairs TSV made as BENCHMARKS.md says) it also times
# fine-tuning, features on the GPU vs the CPU. Exit status: 1 when parity failed, else the
# benchmark's (0, or 3 when some row failed or was skipped, 2 on a setup error).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${MARIAN_BIN:-$ROOT/target/release/marian-wasm}"
WORK="${WORK:-/tmp/real-gpu-check}"
if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"
elif [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"
else PY=python3; fi
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
        echo "  $fx $q beams=$beams: DIFFERENT"; { diff "$WORK/$fx-$q-b$beams.cpu" "$WORK/$fx-$q-b$beams.gpu" || true; } | head -6 || true
        fail=1
      fi
    done
  done
done

echo "== benchmark: marian-wasm GPU (q8, f16) against PyTorch transformers (f32, f16), scripts/bench_gpu_peers.sh"
# Makes WORK/ckpt (the random-weights checkpoint), WORK/pkg-q8 and WORK/pkg-f16, then the table;
# copies gpu-peers.{json,md,txt} to OUT itself.
bench=0
PYTHON="$PY" bash "$ROOT/scripts/bench_gpu_peers.sh" "$WORK" "$@" || bench=$?
echo "== profile: GPU time per kernel, split-K on against off (scripts/real_gpu_profile.sh)"
if [ -z "${SKIP_PROFILE:-}" ] && [ -f "$WORK/pkg-q8/manifest.json" ]; then
  bash "$ROOT/scripts/real_gpu_profile.sh" "$WORK/pkg-q8" "${OUT:-$WORK/profile}" || echo "  profile failed"
fi
if [ -n "${FT_PAIRS:-}" ]; then
  echo "== fine-tuning: 500 pairs x 3 epochs, features pass on the GPU vs the CPU ($FT_PAIRS)"
  WORK="$WORK/finetune" bash "$ROOT/scripts/bench_finetune.sh" "$WORK/pkg-q8" "$FT_PAIRS" gpu cpu | tee "$WORK/bench_finetune.txt"
fi
if [ -n "${OUT:-}" ]; then cp "$WORK"/bench_*.txt "$OUT"/ 2>/dev/null || true; fi
if [ "$fail" != 0 ]; then exit 1; fi
exit $bench
