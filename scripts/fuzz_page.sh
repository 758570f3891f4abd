#!/usr/bin/env bash
# Fuzz the page translator (www/page-translator.js) with random DOM trees at scale, in headless
# Chromium: tests/browser/tests/33-page-fuzz.mjs with its generator and invariants in
# tests/browser/pages/page-fuzz.js. Any broken invariant fails, printing the seed and the tree.
#   bash scripts/fuzz_page.sh [TREES] [SEED]      (default 10000 trees; CI's pass runs 300)
# A tree takes ~17 ms on the 2-core VM: 10 000 in about three minutes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
TREES="${1:-10000}"
SEED="${2:-20261206}"
MARIAN_PAGE_FUZZ_CASES="$TREES" MARIAN_PAGE_FUZZ_SEED="$SEED" BROWSER_TEST_QUIET=1 \
    BROWSER_TEST_TIMEOUT_S=$((TREES / 10 + 300)) \
    node tests/browser/run.mjs 33-page-fuzz
