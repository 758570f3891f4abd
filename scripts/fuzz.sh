#!/usr/bin/env bash
# Fuzz every parser of outside bytes (tests/fuzz_parsers.rs) at scale: the package manifest,
# tokenizer JSON and vocabulary, model safetensors headers, adapter files, fine-tuning pairs,
# the tokenizer and span protection on arbitrary text. Zero panics allowed.
#   bash scripts/fuzz.sh [CASES] [SEED]
# CASES (default 25000) scales every target: manifest, pairs and text get 40×, adapters 30×,
# model headers 2×, each tokenizer file 0.2× (a 0.6 MB JSON parse per case) — 3.8 M cases at the
# default. The test command runs the same file with 300 (CI's short seeded pass).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CASES="${1:-25000}"
SEED="${2:-20261201}"
MARIAN_FUZZ_CASES="$CASES" MARIAN_FUZZ_SEED="$SEED" \
    cargo test --release --test integration fuzz_parsers:: -- --nocapture --test-threads 1 2>&1 \
    | grep -oE 'fuzz [^:]+: [0-9]+ cases, no panic, [0-9.]+ s|panicked.*|test result.*'
