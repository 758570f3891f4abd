#!/usr/bin/env bash
# Build the wasm32 cdylib (release, SIMD128) and generate the JS bindings into www/pkg/.
#   scripts/build-wasm.sh [extra cargo build args, e.g. --features gpu]
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
OUT_DIR="$ROOT/www/pkg"
WASM_BINDGEN="$ROOT/.tools/bin/wasm-bindgen"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
WASM="$TARGET_DIR/$TARGET/release/marian_wasm.wasm"
export RUSTFLAGS='--cfg getrandom_backend="wasm_js" -C target-feature=+simd128'

[ -x "$WASM_BINDGEN" ] || die "$WASM_BINDGEN missing: run scripts/setup.sh"

road="${MARIAN_WASM_ROAD:-}"
if [ -z "$road" ]; then
    if command -v rustup >/dev/null && rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
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
        say "cargo build --release --lib --target $TARGET (rustup $(rustc --version | awk '{print $2}'))"
        cargo build --release --lib --target "$TARGET" "$@"
        ;;
    debian)
        # rustup's rust-lld links wasm; Debian's std sources are rebuilt with -Z build-std.
        LLD_DIR="$(rustc --print sysroot 2>/dev/null)/lib/rustlib/x86_64-unknown-linux-gnu/bin"
        say "Debian road: /usr/bin/cargo build -Z build-std ($(/usr/bin/rustc --version | awk '{print $2}'))"
        PATH="$PATH:$LLD_DIR" RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 \
            /usr/bin/cargo build --release --lib --target "$TARGET" -Z build-std=std,panic_abort "$@"
        ;;
    *) die "unknown MARIAN_WASM_ROAD=$road (rustup|debian)" ;;
esac
[ -f "$WASM" ] || die "$WASM not produced"
say "cargo done in $(( $(date +%s) - start ))s: $(du -h "$WASM" | cut -f1) $WASM"

mkdir -p "$OUT_DIR"
say "wasm-bindgen $("$WASM_BINDGEN" --version | awk '{print $2}') --target web --out-dir www/pkg"
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
elif [ -z "$WASM_OPT" ]; then
    say "wasm-opt not available; skipping (optional; scripts/setup.sh installs it)"
else
    opt_start=$(date +%s)
    # Rust's wasm32 target enables these features by default; binaryen must be told.
    if "$WASM_OPT" -O3 --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int \
        --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue \
        "$BG" -o "$BG.opt" 2>"$OUT_DIR/wasm-opt.log"; then
        before="$(init_check "$BG")"
        after="$(init_check "$BG.opt")"
        if [ "$before" = ok ] && [ "$after" != ok ]; then
            rm -f "$BG.opt"
            say "WARNING: the wasm-opt output fails to initialize ($after); kept the unoptimized module"
        else
            [ "$before" = ok ] || say "note: init check not conclusive in Node ($before)"
            mv "$BG.opt" "$BG"
            rm -f "$OUT_DIR/wasm-opt.log"
            say "wasm-opt -O3 ($("$WASM_OPT" --version | awk '{print $3}')) done in $(( $(date +%s) - opt_start ))s"
        fi
    else
        rm -f "$BG.opt"
        say "WARNING: wasm-opt failed (kept the unoptimized module); see www/pkg/wasm-opt.log"
    fi
fi
say "www/pkg: $(du -h "$BG" | cut -f1) marian_wasm_bg.wasm, total $(( $(date +%s) - start ))s"
