#!/usr/bin/env bash
# GPU peer benchmark, one command, no network: marian-wasm on the GPU (q8, f16 packages) against
# PyTorch transformers on CUDA (f32, f16) on the same opus-mt-en-fr-shaped checkpoint, batches
# 32, 1, 8, 64, greedy and beam 4, plus marian-wasm's CPU path at batch 32 as a reference
# (scripts/bench_gpu_peers.py says what is measured and how). About 5 minutes on an H100.
#   scripts/bench_gpu_peers.sh [WORK] [extra arguments for bench_gpu_peers.py]
#   MARIAN_BIN=.devbin/marian-wasm OUT=/somewhere scripts/bench_gpu_peers.sh /tmp/real-gpu-check
#   scripts/bench_gpu_peers.sh /tmp/gpu-peers --torch-device cpu --batches 1,8 --count 16 --tokens 8
# WORK (default /tmp/gpu-peers) holds ckpt/ (made by make_bench_checkpoint.py when missing),
# pkg-q8/ and pkg-f16/ (converted when missing or older than the binary), sentences.en, and the
# results: gpu-peers.json (every row, the machine's facts), gpu-peers.md (the table for
# BENCHMARKS.md) and gpu-peers.txt (everything printed); copied to $OUT when OUT is set.
# MARIAN_BIN: the prebuilt binary (default target/release/marian-wasm; this script builds
# nothing). PYTHON: a python with torch + transformers + sentencepiece (default .venv/bin/python
# where it exists, else python3). Sentences: the first lines of
# $MARIAN_DATA/multi30k/test_2016_flickr.en (held out; MARIAN_DATA defaults to ../shared/data, then
# shared/data in the checkout) where it exists, else the 16 everyday sentences `marian-wasm bench`
# has built in, written to WORK/sentences.en. MARIAN_GPU_ADAPTER picks marian-wasm's adapter.
# Exit status: bench_gpu_peers.py's (0 all rows measured, 3 some failed or skipped, 2 setup).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { printf '[bench-gpu-peers] %s\n' "$*" >&2; }
die() { printf '[bench-gpu-peers] ERROR: %s\n' "$*" >&2; exit 2; }

WORK="/tmp/gpu-peers"
if [ $# -gt 0 ] && [[ "$1" != -* ]]; then WORK="$1"; shift; fi
BIN="${MARIAN_BIN:-$ROOT/target/release/marian-wasm}"
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
mkdir -p "$WORK"
t0=$(date +%s)

# ---- the checkpoint (random weights, opus-mt-en-fr shape)
CKPT="$WORK/ckpt"
if [ ! -f "$CKPT/model.safetensors" ] || [ ! -f "$CKPT/generation_config.json" ]; then
    say "making the random-weights opus-mt-en-fr-shaped checkpoint in $CKPT"
    "$PYTHON" "$ROOT/scripts/make_bench_checkpoint.py" "$CKPT" > /dev/null \
        || die "make_bench_checkpoint.py failed (PYTHON=$PYTHON needs torch + transformers)"
fi

# ---- the packages; a binary that cannot run leaves its rows failed, the others still run
if [ -x "$BIN" ]; then
    # Made again when the binary is newer (the package format may have moved). q8 is rounded to
    # nearest with no fidelity pass: the same layout and speed as the default GPTQ + `auto`, which
    # on random weights finds nothing to measure and writes plain q8 too, in a second instead of
    # a minute or more.
    stale() { [ ! -f "$1/manifest.json" ] || [ "$BIN" -nt "$1/manifest.json" ]; }
    for q in q8 f16; do
        if stale "$WORK/pkg-$q"; then
            say "converting the $q package"
            extra=()
            [ "$q" = q8 ] && extra=(--rounding nearest --fidelity none)
            "$BIN" convert "$CKPT" "$WORK/pkg-$q" --quant "$q" ${extra[@]+"${extra[@]}"} > /dev/null \
                || say "WARNING: converting $q failed: its rows will be failed rows"
        fi
    done
else
    say "WARNING: $BIN is not an executable (set MARIAN_BIN): the marian-wasm rows will fail"
fi

# ---- the sentences
SENTENCES="$WORK/sentences.en"
DATA="${MARIAN_DATA:-$ROOT/../shared/data}"
[ -d "$DATA/multi30k" ] || [ -n "${MARIAN_DATA:-}" ] || DATA="$ROOT/shared/data"
HELDOUT="$DATA/multi30k/test_2016_flickr.en"
if [ -f "$HELDOUT" ]; then
    say "sentences: $HELDOUT"
    FROM="multi30k $(basename "$HELDOUT")"
    grep -v "^[[:space:]]*$" "$HELDOUT" > "$SENTENCES"
else
    say "sentences: no $HELDOUT; the 16 built into marian-wasm bench"
    FROM="marian-wasm bench's 16 built-in sentences"
    cat > "$SENTENCES" <<'EOF'
A man in a blue shirt is standing on a ladder cleaning windows.
Two young children are playing in the sand at the beach.
A woman is reading a book in a quiet cafe near the station.
The dog runs across the green field to catch a red ball.
Several people are waiting for the bus in the rain.
A group of friends is having dinner together on a terrace.
An old man sits on a bench and feeds the pigeons.
The little girl is wearing a yellow dress and a hat.
A cyclist rides down a narrow street in the old town.
Three workers in orange vests are repairing the road.
A musician plays the guitar on a busy street corner.
The children are laughing while they play with a kite.
A chef is preparing food in a large restaurant kitchen.
Two women are walking their dogs along the river.
A boy jumps into the swimming pool with his clothes on.
People are dancing at a wedding under colorful lights.
EOF
fi
say "prepared in $(( $(date +%s) - t0 )) s"

# ---- the benchmark
rc=0
set -o pipefail
PYTHONUNBUFFERED=1 "$PYTHON" "$ROOT/scripts/bench_gpu_peers.py" --checkpoint "$CKPT" \
    --packages "$WORK" --bin "$BIN" --sentences "$SENTENCES" \
    --sentences-from "$FROM" --json "$WORK/gpu-peers.json" --md "$WORK/gpu-peers.md" "$@" 2>&1 \
    | tee "$WORK/gpu-peers.txt" || rc=$?
if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    for f in gpu-peers.json gpu-peers.md gpu-peers.txt; do
        [ -f "$WORK/$f" ] && cp "$WORK/$f" "$OUT/"
    done
fi
say "done in $(( $(date +%s) - t0 )) s (exit $rc)"
exit $rc
