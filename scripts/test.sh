#!/usr/bin/env bash
# Run every test: setup, fixture packages, native tests, lints, the wasm build, browser tests.
# Fails fast; prints a summary of the steps at the end (also on failure).
#   scripts/test.sh            everything
# Knobs: SKIP_SETUP=1 (skip scripts/setup.sh), SKIP_BROWSER=1 (stop after the wasm build),
#        BROWSER_TEST_TIMEOUT_S (browser run hard limit, default 600), CARGO_TEST_ARGS (extra args).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

STEPS=()
CURRENT=""
STEP_START=0
T0=$(date +%s)

step() {
    finish_step
    CURRENT="$1"
    STEP_START=$(date +%s)
    printf '\n==== [test] %s ====\n' "$CURRENT"
}
finish_step() {
    if [ -n "$CURRENT" ]; then
        STEPS+=("ok    $(( $(date +%s) - STEP_START ))s  $CURRENT")
        CURRENT=""
    fi
}
summary() {
    local rc=$?
    if [ -n "$CURRENT" ]; then
        STEPS+=("FAIL  $(( $(date +%s) - STEP_START ))s  $CURRENT")
    fi
    printf '\n==== [test] summary ====\n'
    local s
    for s in "${STEPS[@]}"; do printf '  %s\n' "$s"; done
    if [ "$rc" -eq 0 ]; then
        printf '  ALL PASSED in %ss\n' "$(( $(date +%s) - T0 ))"
    else
        printf '  FAILED (exit %s) in %ss\n' "$rc" "$(( $(date +%s) - T0 ))"
    fi
    exit "$rc"
}
trap summary EXIT

# ---------------------------------------------------------------------------------------------------
if [ "${SKIP_SETUP:-0}" != 1 ]; then
    step "setup (scripts/setup.sh)"
    bash scripts/setup.sh
fi

# ---------------------------------------------------------------------------------------------------
# FIXTURE PACKAGES: convert every fixture checkpoint into target/test-packages/<name>-<quant> with the
# CLI, so native and browser tests load real packages. A fixture's HF directory is
# tests/fixtures/<name>/hf when that exists, else tests/fixtures/<name> itself (config.json there).
step "build CLI (cargo build --release)"
cargo build --release

step "convert fixtures -> target/test-packages"
mkdir -p target/test-packages
shopt -s nullglob
converted=0
for dir in tests/fixtures/*/; do
    dir="${dir%/}"
    name="$(basename "$dir")"
    if [ -f "$dir/hf/config.json" ]; then hf="$dir/hf"
    elif [ -f "$dir/config.json" ]; then hf="$dir"
    else echo "skip $dir (no config.json)"; continue
    fi
    # q4 plain (`--fidelity none`: the q4 kernels, not a decoder kept at q8); q8 twice: plain
    # (-q8) and as `convert` makes it by default (-q8auto: the residual chosen by measuring
    # against the f32 model; on these small models the embeddings' and the decoder's), so the
    # browser tests both kinds of q8 package.
    for q in f32 q8 q8auto q4; do
        out="target/test-packages/$name-$q"
        case "$q" in
            q8|q4) flags=(--quant "$q" --fidelity none) ;;
            q8auto) flags=(--quant q8) ;;
            *) flags=(--quant "$q") ;;
        esac
        echo "convert $hf -> $out (${flags[*]})"
        rm -rf "$out"
        target/release/marian-wasm convert "$hf" "$out" "${flags[@]}"
        [ -f "$out/manifest.json" ] || { echo "convert wrote no $out/manifest.json" >&2; exit 1; }
        converted=$((converted + 1))
    done
done
shopt -u nullglob
echo "converted $converted packages"
# END FIXTURE PACKAGES
# ---------------------------------------------------------------------------------------------------

step "native tests (cargo test --release)"
# shellcheck disable=SC2086
cargo test --release ${CARGO_TEST_ARGS:-}

step "fine-tuning scenario suite, CI subset (scripts/finetune_suite.sh --fast --assert: 4 scenarios on tiny-opus-q8, every cell must meet adoption >= 80 % and collateral BLEU >= 90)"
bash scripts/finetune_suite.sh --fast --assert

step "peer benchmark harness, smoke run (PEERS_SMOKE=1 scripts/bench_peers.sh: tiny fixture, times nothing)"
PEERS_SMOKE=1 bash scripts/bench_peers.sh

step "clippy (cargo clippy --release --all-targets -- -D warnings)"
cargo clippy --release --all-targets -- -D warnings

step "format (cargo fmt --check)"
cargo fmt --check

step "wasm build (scripts/build-wasm.sh)"
bash scripts/build-wasm.sh

step "multi-threaded wasm build (scripts/build-wasm.sh --threads)"
bash scripts/build-wasm.sh --threads

# The relaxed-SIMD twins differ from the builds above in one kernel (only this crate is recompiled
# for them): the suite checks their tokens, so it skips wasm-opt on them (it makes them smaller,
# not faster), as scripts/run.sh does; they are marked (www/<build>/UNOPTIMIZED) and
# scripts/pack-npm.sh says so.
step "relaxed-SIMD wasm builds (SKIP_WASM_OPT=1 scripts/build-wasm.sh [--threads] --relaxed)"
SKIP_WASM_OPT=1 bash scripts/build-wasm.sh --relaxed
SKIP_WASM_OPT=1 bash scripts/build-wasm.sh --threads --relaxed

step "npm package (scripts/pack-npm.sh: tsc type-check, declarations, npm pack)"
bash scripts/pack-npm.sh

if [ "${SKIP_BROWSER:-0}" != 1 ]; then
    step "browser tests (node tests/browser/run.mjs)"
    node tests/browser/run.mjs
fi
finish_step
