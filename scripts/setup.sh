#!/usr/bin/env bash
# Prepare this machine to build and test marian-wasm: native + wasm32 + a headless Chromium with WebGPU.
# Idempotent: every step checks first and installs only what is missing, so a second run takes seconds.
# Needs no Python. Follows /work/shared/TOOLCHAIN.md (two roads to the wasm32 target).
#
# Environment knobs:
#   MARIAN_WASM_ROAD=rustup|debian   force a road to the wasm32 target (default: try rustup, then Debian)
#   RUSTUP_TIMEOUT_S                 how long `rustup target add` may take before we fall back (default 300)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# ---------------------------------------------------------------------------------------------------
# apt helpers: one `apt-get update` at most, only when something is missing.
APT_UPDATED=0
pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
apt_install() {
    command -v apt-get >/dev/null || die "apt-get not found; install these by hand: $*"
    if [ "$APT_UPDATED" -eq 0 ]; then
        say "apt-get update"
        $SUDO apt-get update -qq
        APT_UPDATED=1
    fi
    say "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

# ---------------------------------------------------------------------------------------------------
# 1. System packages: compilers, a browser with WebGPU (SwiftShader), lavapipe for native wgpu tests.
missing=()
for p in build-essential pkg-config chromium chromium-driver mesa-vulkan-drivers; do
    pkg_installed "$p" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
else
    say "apt packages present"
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    apt_install nodejs npm
fi

# ---------------------------------------------------------------------------------------------------
# 2. Rust: native toolchain (+ clippy, rustfmt) and the wasm32 target.
command -v cargo >/dev/null || die "cargo not found; install rustup (https://rustup.rs) first"
if command -v rustup >/dev/null; then
    for c in clippy rustfmt; do
        if ! rustup component list --installed 2>/dev/null | grep -q "^$c"; then
            say "rustup component add $c"
            timeout "${RUSTUP_TIMEOUT_S:-300}" rustup component add "$c" || say "WARNING: could not add $c"
        fi
    done
fi

rustup_has_wasm() {
    command -v rustup >/dev/null && rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown
}
debian_road_ready() {
    [ -x /usr/bin/cargo ] && [ -x /usr/bin/rustc ] && pkg_installed rustc-web && pkg_installed rust-web-src
}
rustup_has_src() {
    command -v rustup >/dev/null && rustup component list --installed 2>/dev/null | grep -q '^rust-src'
}
road="${MARIAN_WASM_ROAD:-}"
if [ "$road" != "debian" ] && rustup_has_wasm; then
    say "wasm32 target: rustup (installed)"
elif [ "$road" != "debian" ] && command -v rustup >/dev/null \
    && { say "rustup target add wasm32-unknown-unknown"; timeout "${RUSTUP_TIMEOUT_S:-300}" rustup target add wasm32-unknown-unknown; } \
    && rustup_has_wasm; then
    say "wasm32 target: rustup (added)"
else
    [ "$road" = "rustup" ] && die "MARIAN_WASM_ROAD=rustup but rustup could not add wasm32-unknown-unknown"
    if debian_road_ready; then
        say "wasm32 target: Debian rustc-web + rust-web-src road (installed)"
    else
        say "wasm32 target: Debian road (rustup unavailable or MARIAN_WASM_ROAD=debian): installing rustc-web + rust-web-src + cargo-web"
        apt_install rustc-web rust-web-src cargo-web
    fi
    # The Debian road links with rust-lld; rustup ships it, else look on PATH.
    lld="$(rustc --print sysroot 2>/dev/null)/lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld"
    [ -x "$lld" ] || command -v rust-lld >/dev/null || command -v wasm-ld >/dev/null \
        || die "no rust-lld/wasm-ld found for the Debian road (install rustup, or Debian's lld package)"
fi
# The multi-threaded build rebuilds std with atomics (-Z build-std): on the rustup road that needs
# rustup's rust-src; without it, that build takes the Debian road.
if [ "$road" != "debian" ] && rustup_has_wasm && ! rustup_has_src; then
    say "rustup component add rust-src (std sources for the multi-threaded wasm build)"
    timeout "${RUSTUP_TIMEOUT_S:-300}" rustup component add rust-src || say "WARNING: could not add rust-src"
fi
if [ "$road" != "debian" ] && rustup_has_wasm && ! rustup_has_src && ! debian_road_ready; then
    say "no rust-src from rustup: installing Debian's rustc-web + rust-web-src for the multi-threaded build"
    apt_install rustc-web rust-web-src cargo-web
fi

# ---------------------------------------------------------------------------------------------------
# 3. wasm-bindgen CLI, exactly the version of the wasm-bindgen crate in Cargo.lock, in a repo-local root.
[ -f Cargo.lock ] || die "Cargo.lock missing; run 'cargo generate-lockfile' first"
WB_VERSION="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)"
[ -n "$WB_VERSION" ] || die "no wasm-bindgen entry in Cargo.lock"
have_wb="$(.tools/bin/wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)"
if [ "$have_wb" = "$WB_VERSION" ]; then
    say "wasm-bindgen-cli $WB_VERSION present (.tools/bin)"
else
    say "cargo install wasm-bindgen-cli $WB_VERSION into .tools/ (a few minutes)"
    # --locked first (reproducible); the registry reachable here may lack a crate version that
    # wasm-bindgen-cli's own lockfile pins (seen: webpki-roots 1.0.11), so fall back to a fresh resolve.
    if ! cargo install wasm-bindgen-cli --version "$WB_VERSION" --locked --root "$ROOT/.tools" --force --quiet; then
        say "--locked install failed; retrying without --locked"
        cargo install wasm-bindgen-cli --version "$WB_VERSION" --root "$ROOT/.tools" --force --quiet
    fi
    .tools/bin/wasm-bindgen --version
fi

# ---------------------------------------------------------------------------------------------------
# 4. Browser test harness: playwright-core (uses /usr/bin/chromium; never `playwright install`),
#    typescript (declarations of the npm package), vite (the bundler test).
BROWSER_DIR="$ROOT/tests/browser"
missing_dev="$(node -e '
  const dir = process.argv[1];
  const want = require(dir + "/package.json").devDependencies;
  const bad = Object.entries(want).filter(([n, v]) => {
    try { return require(dir + "/node_modules/" + n + "/package.json").version !== v; } catch { return true; }
  });
  console.log(bad.map(([n, v]) => n + "@" + v).join(" "));
' "$BROWSER_DIR")"
if [ -z "$missing_dev" ]; then
    say "browser test harness present (tests/browser/node_modules)"
else
    say "missing in tests/browser/node_modules: $missing_dev"
    export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
    if [ -f "$BROWSER_DIR/package-lock.json" ]; then
        say "npm ci (tests/browser)"
        (cd "$BROWSER_DIR" && npm ci --no-audit --no-fund --loglevel=error)
    else
        say "npm install (tests/browser)"
        (cd "$BROWSER_DIR" && npm install --no-audit --no-fund --loglevel=error)
    fi
fi

# ---------------------------------------------------------------------------------------------------
# 5. wasm-opt, optional: binaryen from npm, pinned, in .tools/npm. Debian's binaryen 108 is too old:
#    its -O3 output of a wasm-bindgen 0.2.130 module fails at init ("WebAssembly.Table.set(): Argument 1
#    is invalid for table"), so build-wasm.sh ignores a system wasm-opt older than 116.
BINARYEN_VERSION=132.0.0
have_bin="$(node -p "try { require('$ROOT/.tools/npm/node_modules/binaryen/package.json').version } catch { '' }")"
if [ "$have_bin" = "$BINARYEN_VERSION" ]; then
    say "binaryen $BINARYEN_VERSION present (.tools/npm, wasm-opt)"
else
    say "npm install binaryen@$BINARYEN_VERSION into .tools/npm (optional wasm-opt)"
    mkdir -p .tools/npm
    (cd .tools/npm && { [ -f package.json ] || echo '{ "private": true }' > package.json; } \
        && npm install --no-audit --no-fund --loglevel=error --save-exact "binaryen@$BINARYEN_VERSION") \
        || say "WARNING: binaryen install failed; build-wasm.sh will skip wasm-opt"
fi

say "done"
