#!/usr/bin/env bash
# CPU peer benchmark, one command: marian-wasm (q8, q4) against CTranslate2 int8 and PyTorch
# transformers f32 on the same opus-mt-en-fr-shaped checkpoint, the same sentences and the same
# work (greedy, exactly --tokens target tokens each), one process per engine, in one run.
#   bash scripts/bench_peers.sh                      # 2 threads, batch 1 and 16, quiet machine
#   bash scripts/bench_peers.sh --busy 2             # with 2 CPU-bound processes beside it
#   bash scripts/bench_peers.sh --busy-share 2 --rounds 3   # quiet vs busy, share kept, CPU used
#   bash scripts/bench_peers.sh --isa avx2           # every engine on AVX2 kernels only
#   bash scripts/bench_peers.sh --threads 16 --batches 1,32
#   bash scripts/bench_peers.sh --engines marian-q8,marian-q8e,ct2-int8   # + q8 with f16 embeddings
#   bash scripts/bench_peers.sh --engines marian-q8,marian-q8r,ct2-int8   # + q8 with residual embeddings
# Extra arguments go to scripts/bench_peers.py (--engines, --tokens, --count, --json OUT ...).
# Writes the table (stdout), the results as JSON ($BENCH/native-results.json unless --json says)
# and a chart of them, $BENCH/peers-native.svg (scripts/bench_chart.py).
# Sentences: the first --count lines of $MARIAN_DATA/multi30k/test_2016_flickr.en (default
# MARIAN_DATA=../shared/data). Work files: $BENCH_DIR (default target/bench).
# Installs what it needs: .venv from scripts/requirements-fixtures.txt + requirements-bench.txt.
# PEERS_SMOKE=1: the marian-wasm engines only, on the tiny-opus test fixture, 8 sentences x 4
# tokens, system python3 without the venv (what the test command runs so the harness cannot rot;
# it times nothing).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
say() { printf '[bench-peers] %s\n' "$*" >&2; }
die() { printf '[bench-peers] ERROR: %s\n' "$*" >&2; exit 1; }

DATA="${MARIAN_DATA:-$ROOT/../shared/data}"
SENTENCES="$DATA/multi30k/test_2016_flickr.en"
[ -f "$SENTENCES" ] || die "$SENTENCES not found: set MARIAN_DATA to the folder holding multi30k/"
BENCH="${BENCH_DIR:-$ROOT/target/bench}"
BIN="$ROOT/target/release/marian-wasm"

say "cargo build --release --bin marian-wasm"
cargo build --release --bin marian-wasm >&2

if [ "${PEERS_SMOKE:-0}" = 1 ]; then
    SMOKE="$BENCH/smoke"
    mkdir -p "$SMOKE"
    for q in q8 q4; do
        [ -f "$SMOKE/pkg-$q/manifest.json" ] \
            || "$BIN" convert tests/fixtures/tiny-opus "$SMOKE/pkg-$q" --quant "$q" >&2
    done
    # The system python3 runs the parent (the table); no venv, no peer engines.
    python3 scripts/bench_peers.py --checkpoint tests/fixtures/tiny-opus --packages "$SMOKE" \
        --bin "$BIN" --sentences "$SENTENCES" --engines marian-q8,marian-q4 \
        --batches 1,4 --tokens 4 --count 8 --json "$SMOKE/native-results.json" "$@"
    # The chart too where this python3 has matplotlib (exit 2: it has not, said on stderr).
    rc=0
    python3 scripts/bench_chart.py --native "$SMOKE/native-results.json" \
        --out "$SMOKE/peers-native.svg" || rc=$?
    [ "$rc" = 0 ] || [ "$rc" = 2 ] || die "bench_chart.py failed ($rc)"
    exit 0
fi

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import torch, transformers, ctranslate2, matplotlib' 2>/dev/null; then
    say "installing .venv (torch, transformers, ctranslate2, matplotlib; torch's wheels are large)"
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/pip install -q -r scripts/requirements-fixtures.txt -r scripts/requirements-bench.txt
fi
CKPT="$BENCH/opus-mt-en-fr-random"
if [ ! -f "$CKPT/model.safetensors" ]; then
    say "making the random-weights opus-mt-en-fr-shaped checkpoint"
    .venv/bin/python scripts/make_bench_checkpoint.py "$CKPT" >&2
fi
# A package is made again when the binary is newer than it (the package format may have moved).
stale() { [ ! -f "$1/manifest.json" ] || [ "$BIN" -nt "$1/manifest.json" ]; }
for q in q8 q4; do
    if stale "$BENCH/pkg-$q"; then
        "$BIN" convert "$CKPT" "$BENCH/pkg-$q" --quant "$q" >&2
    fi
done
# marian-q8e: q8 with the embeddings (and so the tied output projection) kept at f16.
if [[ " $* " == *marian-q8e* ]] && stale "$BENCH/pkg-q8e"; then
    "$BIN" convert "$CKPT" "$BENCH/pkg-q8e" --quant q8 --keep-f16 embeddings >&2
fi
# marian-q8r: q8 with a Q4_0 residual on the embeddings (and so the tied output projection);
# marian-q8rd: on the decoder's matrices too.
if [[ " $* " == *marian-q8r* ]] && stale "$BENCH/pkg-q8r"; then
    "$BIN" convert "$CKPT" "$BENCH/pkg-q8r" --quant q8 --residual embeddings >&2
fi
if [[ " $* " == *marian-q8rd* ]] && stale "$BENCH/pkg-q8rd"; then
    "$BIN" convert "$CKPT" "$BENCH/pkg-q8rd" --quant q8 --residual embeddings,decoder. >&2
fi
if [ ! -f "$BENCH/ct2-int8/model.bin" ]; then
    say "converting the checkpoint for CTranslate2 (int8)"
    .venv/bin/python -c "
import ctranslate2, sys
ctranslate2.converters.TransformersConverter(sys.argv[1]).convert(sys.argv[2], quantization='int8', force=True)
" "$CKPT" "$BENCH/ct2-int8" >&2
fi
# The results as JSON (where --json says, else native-results.json) and the chart drawn from them.
JSON="$BENCH/native-results.json"
ARGS=("$@")
for ((i = 0; i + 1 < ${#ARGS[@]}; i++)); do
    [ "${ARGS[i]}" = --json ] && JSON="${ARGS[i + 1]}"
done
.venv/bin/python scripts/bench_peers.py --checkpoint "$CKPT" --packages "$BENCH" \
    --ct2-model "$BENCH/ct2-int8" --bin "$BIN" --sentences "$SENTENCES" --json "$JSON" "$@"
.venv/bin/python scripts/bench_chart.py --native "$JSON" --out "$BENCH/peers-native.svg"
