#!/usr/bin/env bash
# The main job: build everything it needs (idempotently), show the CLI translating with the
# embedded default model, then serve the demo page on http://127.0.0.1:${PORT:-8080}/ .
#   bash scripts/run.sh            demo page (Ctrl-C to stop)
#   bash scripts/run.sh cli        only the CLI: translates stdin lines (or a few samples)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
mode="${1:-demo}"

# The CLI needs only cargo (the machine's Rust toolchain); the demo needs the wasm road too.
[ "$mode" = cli ] || bash scripts/setup.sh
cargo build --release
if [ "$mode" = cli ]; then
    if [ -t 0 ]; then
        printf 'A man is riding a bicycle down the street.\nTwo dogs are playing in the snow.\n' | target/release/marian-wasm translate
    else
        exec target/release/marian-wasm translate
    fi
    exit 0
fi
echo "[run] CLI with the embedded default model:"
printf 'A little girl is playing in the park.\n' | target/release/marian-wasm translate
# Rebuild a wasm build only when a source file is newer than it (a build takes minutes):
# www/pkg (one thread) and www/pkg-mt (threads; used when the page is cross-origin isolated, as
# this server makes it), and their relaxed-SIMD twins (used where the browser runs relaxed SIMD;
# built without wasm-opt: it would make them smaller, not faster, BENCHMARKS.md 2026-12-05 (late)).
for build in pkg pkg-mt pkg-relaxed pkg-mt-relaxed; do
    if [ ! -f "www/$build/marian_wasm_bg.wasm" ] \
        || [ -n "$(find src Cargo.toml Cargo.lock -newer "www/$build/marian_wasm_bg.wasm" -print -quit)" ]; then
        flags=()
        case "$build" in pkg-mt*) flags+=(--threads) ;; esac
        case "$build" in *-relaxed) flags+=(--relaxed) ;; esac
        case "$build" in
            *-relaxed) SKIP_WASM_OPT=1 bash scripts/build-wasm.sh "${flags[@]}" ;;
            *) bash scripts/build-wasm.sh ${flags[@]+"${flags[@]}"} ;;
        esac
    fi
done
PORT="${PORT:-8080}"
echo "[run] demo: http://127.0.0.1:$PORT/   (model: models/default, Ctrl-C to stop)"
exec node tests/browser/server.mjs www --port "$PORT" --mount /models/=models
