#!/usr/bin/env bash
# Issue 20's profile on a machine with a real GPU, in one run (~3 min on an H100): where a decoding
# step's GPU time goes, split-K (src/gpu/ops/linear.rs) on against off, and f16 products
# (MARIAN_GPU_F16) on against off; same binary, same package, alternating.
#   scripts/real_gpu_profile.sh [PKG_DIR] [OUT_DIR]
# PKG_DIR: the opus-mt-en-fr-shaped q8 package (scripts/real_gpu_check.sh makes one in its WORK,
# default target/bench/pkg-q8); the f16 package beside it (pkg-f16) when there is one.
# MARIAN_BIN: a prebuilt binary (default target/release/marian-wasm).
# Writes profile-*.txt (the per-kernel tables `bench --profile` prints), counts-*.txt (the host's
# encoding and waiting per step, `--profile counts`), split-k.txt and f16-products.txt (tokens/s)
# into OUT_DIR (default $OUT or /tmp/real-gpu-profile).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${MARIAN_BIN:-$ROOT/target/release/marian-wasm}"
PKG="${1:-$ROOT/target/bench/pkg-q8}"
DEST="${2:-${OUT:-/tmp/real-gpu-profile}}"
TOKENS="${TOKENS:-32}"
mkdir -p "$DEST"
[ -x "$BIN" ] || { echo "no binary at $BIN (MARIAN_BIN)" >&2; exit 1; }
[ -f "$PKG/manifest.json" ] || { echo "no package at $PKG" >&2; exit 1; }

bench() { # split beams batch count [extra...]
  local split=$1 beams=$2 batch=$3 count=$4
  shift 4
  MARIAN_GPU_SPLIT_K=$split MARIAN_GPU_F16="${F16:-}" "$BIN" bench --model "${BENCH_PKG:-$PKG}" \
    --device gpu --batch "$batch" \
    --beams "$beams" --tokens "$TOKENS" --count "$count" --json "$@"
}

echo "== profile (GPU time per kernel; each dispatch timed in its own pass, so not the step's wall time)"
for shape in "1 1 16" "1 32 64" "4 32 64"; do
  read -r beams batch count <<< "$shape"
  for split in 1 0; do
    f="$DEST/profile-b${batch}-beams${beams}-split${split}.txt"
    bench "$split" "$beams" "$batch" "$count" --profile 2> "$f" > "$f.json" || echo "  failed: see $f"
    echo "-- batch $batch, beams $beams, split-K $split"
    grep -E '^profile:' "$f" || true
    grep -E '^\| ' "$f" | head -12
  done
done

echo "== the host's side (--profile counts: the work as unprofiled; encoding and waiting per step)"
for shape in "1 1 16" "1 32 64" "4 32 64"; do
  read -r beams batch count <<< "$shape"
  f="$DEST/counts-b${batch}-beams${beams}.txt"
  bench 1 "$beams" "$batch" "$count" --profile counts 2> "$f" > "$f.json" || echo "  failed: see $f"
  echo "-- batch $batch, beams $beams: $(grep -E '^profile:' "$f" || true)"
done

echo "== split-K on against off, unprofiled, alternating (tokens/s)"
{
  echo "| batch | beams | split-K | round | tokens/s | ms per step |"
  echo "|---|---|---|---|---|---|"
  for round in 1 2; do
    for shape in "1 8 64" "1 32 64" "1 64 128" "4 32 64"; do
      read -r beams batch count <<< "$shape"
      for split in 1 0; do
        line=$(bench "$split" "$beams" "$batch" "$count" 2>/dev/null) || line='{"tokens_per_s": 0}'
        python3 -c 'import json,sys; r=json.loads(sys.argv[1]); b=int(sys.argv[2]); t=r["tokens_per_s"]; print("| %s | %s | %s | %s | %.1f | %.2f |" % (b, sys.argv[3], sys.argv[4], sys.argv[5], t, 1000*b/t if t else float("nan")))' \
          "$line" "$batch" "$beams" "$split" "$round"
      done
    done
  done
} | tee "$DEST/split-k.txt"

F16_PKG="$(dirname "$PKG")/pkg-f16"
echo "== f16 products (shader-f16) on against off, unprofiled, alternating (tokens/s)"
{
  echo "| package | MARIAN_GPU_F16 | batch | beams | round | tokens/s | ms per step |"
  echo "|---|---|---|---|---|---|---|"
  for round in 1 2; do
    for shape in "1 1 16" "1 32 64" "4 32 64"; do
      read -r beams batch count <<< "$shape"
      # f16 package: off / f16 (the default on hardware); q8 package: off (the default) / all.
      for run in "$F16_PKG off" "$F16_PKG f16" "$PKG off" "$PKG all"; do
        read -r pkg f16 <<< "$run"
        [ -f "$pkg/manifest.json" ] || continue
        line=$(F16=$f16 BENCH_PKG=$pkg bench 1 "$beams" "$batch" "$count" 2>/dev/null) || line='{"tokens_per_s": 0}'
        python3 -c 'import json,sys; r=json.loads(sys.argv[1]); b=int(sys.argv[2]); t=r["tokens_per_s"]; print("| %s | %s | %s | %s | %s | %.1f | %.2f |" % (sys.argv[6], sys.argv[5], b, sys.argv[3], sys.argv[4], t, 1000*b/t if t else float("nan")))' \
          "$line" "$batch" "$beams" "$round" "$f16" "$(basename "$pkg")"
      done
    done
  done
} | tee "$DEST/f16-products.txt"
