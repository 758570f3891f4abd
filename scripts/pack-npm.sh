#!/usr/bin/env bash
# Build the npm package from www/ and the wasm build, then `npm pack` it.
#   scripts/pack-npm.sh            -> target/npm/marian-wasm/ (the package tree) and
#                                     target/npm/marian-wasm-<version>.tgz
# Needs www/pkg, www/pkg-mt and their relaxed-SIMD twins www/pkg-relaxed, www/pkg-mt-relaxed
# (scripts/build-wasm.sh [--threads] [--relaxed]) and
# tests/browser/node_modules (typescript; scripts/setup.sh).
# The .d.ts files are generated from the JSDoc of www/*.js by tsc, which also type-checks them.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
say() { printf '[pack-npm] %s\n' "$*"; }
die() { printf '[pack-npm] ERROR: %s\n' "$*" >&2; exit 1; }

[ -f www/pkg/marian_wasm_bg.wasm ] || die "www/pkg missing: run scripts/build-wasm.sh"
[ -f www/pkg-mt/marian_wasm_bg.wasm ] || die "www/pkg-mt missing: run scripts/build-wasm.sh --threads"
[ -f www/pkg-relaxed/marian_wasm_bg.wasm ] || die "www/pkg-relaxed missing: run scripts/build-wasm.sh --relaxed"
[ -f www/pkg-mt-relaxed/marian_wasm_bg.wasm ] || die "www/pkg-mt-relaxed missing: run scripts/build-wasm.sh --threads --relaxed"
for b in pkg pkg-mt pkg-relaxed pkg-mt-relaxed; do
    [ ! -f "www/$b/UNOPTIMIZED" ] || say "note: www/$b was built without wasm-opt ($(cat "www/$b/UNOPTIMIZED")): fine for tests, not for a release"
done
TSC="$ROOT/tests/browser/node_modules/.bin/tsc"
[ -x "$TSC" ] || die "$TSC missing: run scripts/setup.sh"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"

OUT="$ROOT/target/npm"
PKG="$OUT/marian-wasm"
rm -rf "$PKG"
mkdir -p "$PKG/pkg" "$PKG/models"
cp www/marian-wasm.js www/page.js www/page-translator.js www/store.js www/adapters.js www/catalog.js \
    www/worker.js www/wasm-features.js "$PKG/"
mkdir -p "$PKG/pkg-relaxed"
for b in pkg pkg-relaxed; do
    cp "www/$b/marian_wasm.js" "www/$b/marian_wasm_bg.wasm" "www/$b/marian_wasm.d.ts" "$PKG/$b/"
done
# The multi-threaded builds: their JS, wasm, types and wasm-bindgen-rayon's worker snippet.
(cd www && find pkg-mt pkg-mt-relaxed -type f \( -name '*.js' -o -name '*.wasm' -o -name '*.d.ts' \) \
    ! -name '*_bg.wasm.d.ts' -exec cp --parents {} "$PKG/" \;)
cp -r models/default "$PKG/models/default"
say "tsc: type-check www/*.js and emit declarations"
(cd www && "$TSC" -p tsconfig.json --outDir "$PKG")
node -e '
  const fs = require("fs");
  const [src, dst, version] = process.argv.slice(1);
  const p = JSON.parse(fs.readFileSync(src, "utf8"));
  p.version = version;
  fs.writeFileSync(dst, JSON.stringify(p, null, 2) + "\n");
' www/package.json "$PKG/package.json" "$VERSION"
cat > "$PKG/README.md" <<MD
# marian-wasm $VERSION

Marian (OPUS-MT) neural machine translation in the browser, in a Web Worker, with no server.
Ships an embedded English→French model (models/default). Documentation, API and figures:
the project README (https://github.com/ — see the repository this package was built from).

\`\`\`js
import { MarianTranslator } from 'marian-wasm';
const translator = await MarianTranslator.create();
console.log(await translator.translate('A little girl is playing in the park.'));
\`\`\`

Threads: the model computes on one thread unless the page is cross-origin isolated — serve it with
\`Cross-Origin-Opener-Policy: same-origin\` and \`Cross-Origin-Embedder-Policy: require-corp\` (or
\`credentialless\`). Then \`pkg-mt/\` (the multi-threaded build) runs on one thread per core (at
most 8; \`create({ threads })\` to choose) and \`translator.threads\` says how many ran;
\`translator.threadsUnavailable\` says why not otherwise. Where the browser runs WebAssembly relaxed
SIMD, the builds' relaxed twins (\`pkg-relaxed/\`, \`pkg-mt-relaxed/\`) run instead, faster on batches
where the CPU has 8-bit dot products; \`translator.wasmBuild\` names the build. All give the same
translations.
MD
(cd "$OUT" && rm -f marian-wasm-*.tgz && npm pack ./marian-wasm --pack-destination . --silent >/dev/null)
TGZ="$(ls "$OUT"/marian-wasm-*.tgz)"
say "$(du -h "$TGZ" | cut -f1) $TGZ ($(tar tzf "$TGZ" | wc -l) files)"
