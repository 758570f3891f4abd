#!/usr/bin/env bash
# Build the wasm32 cdylib (release, SIMD128) and generate the JS bindings into www/pkg/.
#   scripts/build-wasm.sh [extra cargo build args, e.g. --features gpu]
#   scripts/build-wasm.sh --threads [...]   the multi-threaded build into www/pkg-mt/: shared memory
#       (+atomics,+bulk-memory), std rebuilt with them (-Z build-std), feature `threads`
#       (wasm-bindgen-rayon); the page runs it only when crossOriginIsolated (www/worker.js).
#   scripts/build-wasm.sh [--threads] --relaxed [...]   the same build plus greedy's proposal pass
#       over the output projection, its kernel compiled with relaxed SIMD (--cfg
#       marian_relaxed_simd and a function-level feature: std and the dependencies stay plain) into
#       www/pkg-relaxed/ (www/pkg-mt-relaxed/); www/worker.js loads it where the browser
#       validates relaxed SIMD, else the plain one. Same tokens either way.
# Road to the wasm32 target (see /work/shared/TOOLCHAIN.md and scripts/setup.sh):
#   rustup  — when rustup has wasm32-unknown-unknown installed;
#   debian  — Debian's rustc-web + rust-web-src: /usr/bin/cargo with -Z build-std, rust-lld from rustup.
# MARIAN_WASM_ROAD=rustup|debian forces one. Needs .tools/bin/wasm-bindgen (scripts/setup.sh).
# wasm-opt (binaryen) runs when available and its output still initializes; SKIP_WASM_OPT=1 skips it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

say() { printf '[build-wasm] %s\n' "$*"; }
die() { printf '[build-wasm] ERROR: %s\n' "$*" >&2; exit 1; }

TARGET=wasm32-unknown-unknown
THREADS=0
RELAXED=0
while [ $# -gt 0 ]; do
    case "$1" in
        --threads) THREADS=1; shift ;;
        --relaxed) RELAXED=1; shift ;;
        *) break ;;
    esac
done
WASM_BINDGEN="$ROOT/.tools/bin/wasm-bindgen"
RUSTFLAGS='--cfg getrandom_backend="wasm_js" -C target-feature=+simd128'
if [ "$THREADS" = 1 ]; then
    OUT_DIR="$ROOT/www/pkg-mt"
    # Its own target dir: other RUSTFLAGS and a rebuilt std would otherwise evict the 1-thread build.
    TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/wasm-mt"
    # An imported shared memory (what wasm-bindgen's thread support and wasm-bindgen-rayon expect)
    # with thread-local storage set up per thread; up to 4 GiB (f32 packages and fine-tuning).
    RUSTFLAGS="$RUSTFLAGS -C target-feature=+atomics,+bulk-memory"
    for a in --shared-memory --import-memory --max-memory=4294967296 --export=__wasm_init_tls \
        --export=__tls_size --export=__tls_align --export=__tls_base; do
        RUSTFLAGS="$RUSTFLAGS -C link-arg=$a"
    done
    set -- --features threads "$@"
else
    OUT_DIR="$ROOT/www/pkg"
    TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
fi
# The relaxed twin differs in this crate alone: `cargo rustc` hands the cfg to it and to none of
# its dependencies, so it shares the plain build's target dir and reuses every dependency (and the
# rebuilt std) — one crate recompiled instead of the whole tree (minutes on 2 cores). The cfg is
# part of the crate's fingerprint: switching between plain and relaxed recompiles only this crate.
CRATE_ARGS=()
if [ "$RELAXED" = 1 ]; then
    OUT_DIR="$OUT_DIR-relaxed"
    CRATE_ARGS=(--cfg marian_relaxed_simd)
fi
export RUSTFLAGS
WASM="$TARGET_DIR/$TARGET/release/marian_wasm.wasm"

[ -x "$WASM_BINDGEN" ] || die "$WASM_BINDGEN missing: run scripts/setup.sh"

road="${MARIAN_WASM_ROAD:-}"
if [ -z "$road" ]; then
    if command -v rustup >/dev/null && rustup target list --installed 2>/dev/null | grep -qx "$TARGET" \
        && { [ "$THREADS" = 0 ] || rustup component list --installed 2>/dev/null | grep -q '^rust-src'; }; then
        road=rustup
    elif [ -x /usr/bin/cargo ] && [ -x /usr/bin/rustc ]; then
        road=debian
    else
        die "no wasm32 toolchain: run scripts/setup.sh"
    fi
fi

start=$(date +%s)
case "$road" in
    rustup)
        say "cargo rustc --release --lib --target $TARGET (rustup $(rustc --version | awk '{print $2}'), threads=$THREADS, relaxed=$RELAXED)"
        if [ "$THREADS" = 1 ]; then
            # std must be rebuilt with atomics: rustup's rust-src, unlocked on stable by RUSTC_BOOTSTRAP.
            RUSTC_BOOTSTRAP=1 cargo rustc --release --lib --target "$TARGET" --target-dir "$TARGET_DIR" \
                -Z build-std=std,panic_abort "$@" -- ${CRATE_ARGS[@]+"${CRATE_ARGS[@]}"}
        else
            cargo rustc --release --lib --target "$TARGET" --target-dir "$TARGET_DIR" "$@" \
                -- ${CRATE_ARGS[@]+"${CRATE_ARGS[@]}"}
        fi
        ;;
    debian)
        # rustup's rust-lld links wasm; Debian's std sources are rebuilt with -Z build-std.
        LLD_DIR="$(rustc --print sysroot 2>/dev/null)/lib/rustlib/x86_64-unknown-linux-gnu/bin"
        say "Debian road: /usr/bin/cargo rustc -Z build-std ($(/usr/bin/rustc --version | awk '{print $2}'))"
        PATH="$PATH:$LLD_DIR" RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 \
            /usr/bin/cargo rustc --release --lib --target "$TARGET" --target-dir "$TARGET_DIR" \
            -Z build-std=std,panic_abort "$@" -- ${CRATE_ARGS[@]+"${CRATE_ARGS[@]}"}
        ;;
    *) die "unknown MARIAN_WASM_ROAD=$road (rustup|debian)" ;;
esac
[ -f "$WASM" ] || die "$WASM not produced"
say "cargo done in $(( $(date +%s) - start ))s: $(du -h "$WASM" | cut -f1) $WASM"

rm -rf "$OUT_DIR"
mkdir -p "$OUT_DIR"
say "wasm-bindgen $("$WASM_BINDGEN" --version | awk '{print $2}') --target web --out-dir ${OUT_DIR#"$ROOT"/}"
"$WASM_BINDGEN" --target web --out-dir "$OUT_DIR" "$WASM"

BG="$OUT_DIR/marian_wasm_bg.wasm"

# Does the generated module initialize? (initSync in Node: catches optimizer output that breaks
# wasm-bindgen's externref table.) Prints ok, or the error.
init_check() {
    node --input-type=module -e '
        import { readFileSync } from "node:fs";
        import { pathToFileURL } from "node:url";
        try {
            const m = await import(pathToFileURL(process.argv[1]).href);
            m.initSync({ module: readFileSync(process.argv[2]) });
            console.log("ok");
        } catch (e) { console.log(String(e && e.message || e).split("\n")[0]); }
    ' "$OUT_DIR/marian_wasm.js" "$1" 2>&1 | tail -1
}

# wasm-opt: binaryen from npm in .tools/npm (scripts/setup.sh), else a system one >= 116 (Debian's
# 108 breaks wasm-bindgen output).
WASM_OPT=""
if [ -x "$ROOT/.tools/npm/node_modules/.bin/wasm-opt" ]; then
    WASM_OPT="$ROOT/.tools/npm/node_modules/.bin/wasm-opt"
elif command -v wasm-opt >/dev/null; then
    v="$(wasm-opt --version | awk '{print $3}')"
    if [ "${v:-0}" -ge 116 ] 2>/dev/null; then WASM_OPT="$(command -v wasm-opt)"
    else say "system wasm-opt version $v is too old (< 116, breaks wasm-bindgen output): not used"
    fi
fi
if [ "${SKIP_WASM_OPT:-0}" = 1 ]; then
    say "wasm-opt skipped (SKIP_WASM_OPT=1)"
    # scripts/run.sh builds such a folder again, scripts/pack-npm.sh says it ships one.
    echo "built with SKIP_WASM_OPT=1" > "$OUT_DIR/UNOPTIMIZED"
elif [ -z "$WASM_OPT" ]; then
    say "wasm-opt not available; skipping (optional; scripts/setup.sh installs it)"
else
    opt_start=$(date +%s)
    # Rust's wasm32 target enables these features by default; binaryen must be told.
    threads_flag=()
    [ "$THREADS" = 1 ] && threads_flag=(--enable-threads)
    [ "$RELAXED" = 1 ] && threads_flag+=(--enable-relaxed-simd)
    # -O2, not -O3: the same speed in Chromium (91-bench, q8, 1 thread: batch 1 154.7 / 163.6
    # tokens/s against 163.7 / 154.7, batch 16 255.0 / 252.9 against 258.7 / 247.9) in a quarter
    # of the time (134 s against 538 s on a 2-core EPYC; BENCHMARKS.md 2026-12-07 (third)).
    if "$WASM_OPT" -O2 --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int \
        --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue \
        ${threads_flag[@]+"${threads_flag[@]}"} "$BG" -o "$BG.opt" 2>"$OUT_DIR/wasm-opt.log"; then
        before="$(init_check "$BG")"
        after="$(init_check "$BG.opt")"
        if [ "$before" = ok ] && [ "$after" != ok ]; then
            rm -f "$BG.opt"
            say "WARNING: the wasm-opt output fails to initialize ($after); kept the unoptimized module"
        else
            [ "$before" = ok ] || say "note: init check not conclusive in Node ($before)"
            mv "$BG.opt" "$BG"
            rm -f "$OUT_DIR/wasm-opt.log"
            say "wasm-opt -O2 ($("$WASM_OPT" --version | awk '{print $3}')) done in $(( $(date +%s) - opt_start ))s"
        fi
    else
        rm -f "$BG.opt"
        say "WARNING: wasm-opt failed (kept the unoptimized module); see ${OUT_DIR#"$ROOT"/}/wasm-opt.log"
    fi
fi
# The files a service worker keeps for offline use (www/sw.js), snippets included.
(cd "$OUT_DIR" && find . -type f \( -name '*.js' -o -name '*.wasm' \) | sed 's#^\./##' | sort \
    | node -e 'const l=require("fs").readFileSync(0,"utf8").split("\n").filter(Boolean);console.log(JSON.stringify(l))' \
    > files.json)
say "${OUT_DIR#"$ROOT"/}: $(du -h "$BG" | cut -f1) marian_wasm_bg.wasm, total $(( $(date +%s) - start ))s"
