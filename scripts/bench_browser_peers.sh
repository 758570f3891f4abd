#!/usr/bin/env bash
# Browser peer for the CPU speed benchmark, one command: transformers.js (npm
# @huggingface/transformers, ONNX Runtime Web, wasm backend, dtype q8) translating in headless
# Chromium with the same opus-mt-en-fr-shaped random checkpoint and the same fixed-length work as
# marian-wasm's benchmark (tests/browser/tests/91-bench-translate.mjs, scripts/bench_peers.sh):
# the first 64 lines of $MARIAN_DATA/multi30k/test_2016_flickr.en, greedy, exactly 32 new target
# tokens per sentence (EOS banned), one untimed warm-up batch, tokenization included in the time.
#
#   bash scripts/bench_browser_peers.sh
#
# Runs marian-wasm's own browser benchmark first (91-bench: the q8 package, the single-threaded
# build and the multi-threaded one on 2 threads, each plain and in its relaxed-SIMD form when built,
# in Web Workers), then transformers.js, in the same
# Chromium build, back to back; prints one markdown table with the ratios (engine, threads, batch,
# tokens/s, load s, model MB, wasm heap) and writes JSON to target/bench/marian-browser-results.json
# and target/bench/tjs-results.json, and a chart of them to target/bench/peers-browser.svg. Needs the wasm builds (scripts/build-wasm.sh [--threads] [--relaxed]) and
# target/bench/pkg-q8 (BENCHMARKS.md). Everything it needs is made on first use and reused afterwards
# (all git-ignored):
#   target/bench/opus-mt-en-fr-random  the checkpoint (scripts/make_bench_checkpoint.py, main .venv)
#   .venv-onnx                         transformers 4.57 + optimum-onnx (scripts/requirements-onnx.txt)
#   target/bench/tjs-model             ONNX export, q8 (onnx/*_quantized.onnx), tokenizer.json
#   .tools/tjs                         npm @huggingface/transformers (onnxruntime-web's dist inside)
# Knobs (environment): MARIAN_DATA (default ../shared/data), TJS_THREADS (default 1,2),
# TJS_BATCHES (1,16), TJS_COUNT (64), TJS_TOKENS (32), TJS_TIMEOUT_S (per configuration, 900),
# CHROMIUM (/usr/bin/chromium). While /tmp/QUIET_PLEASE exists (someone else is timing), every
# CPU-heavy step waits.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
say() { printf '[bench-browser] %s\n' "$*" >&2; }
die() { printf '[bench-browser] ERROR: %s\n' "$*" >&2; exit 1; }
wait_quiet() {
    while [ -e /tmp/QUIET_PLEASE ]; do
        say "/tmp/QUIET_PLEASE exists: waiting 30 s before: $1"
        sleep 30
    done
}

TJS_VERSION=4.3.1
RECIPE=1  # bump when the export / quantization / tokenizer.json recipe below changes
DATA="${MARIAN_DATA:-$ROOT/../shared/data}"
SENTENCES="$DATA/multi30k/test_2016_flickr.en"
[ -f "$SENTENCES" ] || die "$SENTENCES not found: set MARIAN_DATA to the folder holding multi30k/"
BENCH="$ROOT/target/bench"
CKPT="$BENCH/opus-mt-en-fr-random"
MODEL="$BENCH/tjs-model"
VENV="$ROOT/.venv-onnx"
TOOLS="$ROOT/.tools/tjs"
REQ="$ROOT/scripts/requirements-onnx.txt"
sha() { sha256sum "$@" | awk '{print $1}'; }

# ---- 1. the checkpoint (the main .venv, as BENCHMARKS.md makes it)
if [ ! -f "$CKPT/model.safetensors" ] || [ ! -f "$CKPT/source.spm" ]; then
    [ -x .venv/bin/python ] || die ".venv missing: python3 -m venv .venv && .venv/bin/pip install -r scripts/requirements-fixtures.txt"
    wait_quiet "making the checkpoint"
    say "making the random-weights opus-mt-en-fr-shaped checkpoint in $CKPT"
    .venv/bin/python scripts/make_bench_checkpoint.py "$CKPT" >&2
fi

# ---- 2. .venv-onnx: optimum-onnx needs transformers < 4.58, the main .venv has 5.x
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$(sha "$REQ")" ]; then
    say "installing $VENV from $REQ (torch's wheels are large)"
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q -r "$REQ" >&2
    sha "$REQ" > "$VENV/.requirements.sha256"
fi

# ---- 3. ONNX export + q8 + tokenizer.json, redone when the checkpoint, the pins or RECIPE change
STAMP="$(cat "$CKPT/config.json" "$CKPT/source.spm" "$CKPT/vocab.json" "$REQ" | sha256sum | awk '{print $1}')"
STAMP="$STAMP $(stat -c %s "$CKPT/model.safetensors") recipe $RECIPE"
if [ "$(cat "$MODEL/.stamp" 2>/dev/null)" != "$STAMP" ]; then
    TMP="$BENCH/tjs-model.tmp"
    rm -rf "$TMP" && mkdir -p "$TMP/onnx"
    wait_quiet "the ONNX export"
    say "exporting $CKPT to ONNX (optimum-cli, text2text-generation-with-past)"
    HF_HUB_OFFLINE=1 "$VENV/bin/optimum-cli" export onnx --model "$CKPT" \
        --task text2text-generation-with-past "$TMP/export" >&2
    wait_quiet "the q8 quantization"
    say "quantizing (dynamic, QUInt8 weights, per-tensor) to $TMP/onnx/*_quantized.onnx"
    "$VENV/bin/python" - "$TMP/export" "$TMP/onnx" >&2 <<'PY'
import sys, time
from onnxruntime.quantization import QuantType, quantize_dynamic
src, dst = sys.argv[1], sys.argv[2]
# transformers.js loads the encoder and the merged decoder (with and without past in one graph)
for name in ("encoder_model", "decoder_model_merged"):
    t0 = time.time()
    quantize_dynamic(f"{src}/{name}.onnx", f"{dst}/{name}_quantized.onnx",
                     weight_type=QuantType.QUInt8, per_channel=False,
                     extra_options={"EnableSubgraph": True})
    print(f"  {name}_quantized.onnx in {time.time() - t0:.0f}s")
PY
    for f in config.json generation_config.json tokenizer_config.json special_tokens_map.json \
             source.spm target.spm vocab.json; do
        cp "$TMP/export/$f" "$TMP/$f"
    done
    say "writing tokenizer.json (Unigram over vocab.json's ids, source.spm's scores)"
    "$VENV/bin/python" - "$TMP" >&2 <<'PY'
import base64, json, sys
from pathlib import Path
from sentencepiece import sentencepiece_model_pb2
out = Path(sys.argv[1])
vocab = json.loads((out / "vocab.json").read_text(encoding="utf-8"))
tcfg = json.loads((out / "tokenizer_config.json").read_text(encoding="utf-8"))
spm = sentencepiece_model_pb2.ModelProto()
spm.ParseFromString((out / "source.spm").read_bytes())
scores = {p.piece: p.score for p in spm.pieces}
specials = [tcfg["eos_token"], tcfg["unk_token"], tcfg["pad_token"]]
eos, unk = tcfg["eos_token"], tcfg["unk_token"]
ids = sorted(vocab.items(), key=lambda kv: kv[1])
assert [i for _, i in ids] == list(range(len(ids))), "vocab.json ids must be 0..n-1"
# The slow MarianTokenizer segments with source.spm, then maps pieces through vocab.json. A Unigram
# model over vocab.json's pieces (ids unchanged) with source.spm's scores does the same; pieces that
# source.spm lacks (target-side and padding pieces) get a score no real segmentation would pick.
model_vocab = [[p, 0.0 if p in specials else float(scores.get(p, -100.0))] for p, _ in ids]
charsmap = spm.normalizer_spec.precompiled_charsmap
tok = {
    "version": "1.0",
    "truncation": None,
    "padding": None,
    "added_tokens": [
        {"id": vocab[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}
        for t in specials
    ],
    "normalizer": ({"type": "Precompiled", "precompiled_charsmap": base64.b64encode(charsmap).decode()}
                   if charsmap else None),
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "WhitespaceSplit"},
        {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
    ]},
    "post_processor": {
        "type": "TemplateProcessing",
        "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": eos, "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": eos, "type_id": 0}},
                 {"Sequence": {"id": "B", "type_id": 0}}, {"SpecialToken": {"id": eos, "type_id": 0}}],
        "special_tokens": {eos: {"id": eos, "ids": [vocab[eos]], "tokens": [eos]}},
    },
    "decoder": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
    "model": {"type": "Unigram", "unk_id": vocab[unk], "vocab": model_vocab, "byte_fallback": False},
}
(out / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False), encoding="utf-8")
print(f"  tokenizer.json: {len(model_vocab)} pieces, {len(scores)} scored by source.spm")
PY
    rm -rf "$TMP/export"
    echo "$STAMP" > "$TMP/.stamp"
    rm -rf "$MODEL" && mv "$TMP" "$MODEL"
    du -sh "$MODEL"/onnx/* >&2
fi

# ---- 4. reference input ids: the slow MarianTokenizer (sentencepiece + vocab.json) and tokenizer.json
# in Python on the benchmark sentences; the page checks that transformers.js produces the same ids.
COUNT="${TJS_COUNT:-64}"
EXPECTED="$BENCH/tjs-expected-input.json"
"$VENV/bin/python" - "$MODEL" "$SENTENCES" "$COUNT" "$EXPECTED" >&2 <<'PY'
import json, sys, warnings
warnings.filterwarnings("ignore")
import transformers
from tokenizers import Tokenizer
from transformers import MarianTokenizer
model, sentences, count, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
transformers.logging.set_verbosity_error()
with open(sentences, encoding="utf-8") as f:
    lines = [l.strip() for l in f if l.strip()][:count]
slow = MarianTokenizer.from_pretrained(model)
fast = Tokenizer.from_file(f"{model}/tokenizer.json")
ids = [slow(l).input_ids for l in lines]
bad = [i for i, l in enumerate(lines) if fast.encode(l).ids != ids[i]]
if bad:
    sys.exit(f"tokenizer.json differs from MarianTokenizer on lines {bad[:10]} (e.g. {lines[bad[0]]!r})")
n = sum(len(x) for x in ids)
print(f"  {len(lines)} sentences, {n} input tokens with </s> ({n / len(lines):.1f} each);"
      " tokenizer.json == MarianTokenizer (Python)")
json.dump({"sentences": lines, "input_ids": ids}, open(out, "w", encoding="utf-8"), ensure_ascii=False)
PY

# ---- 5. transformers.js
if [ "$(node -p "require('$TOOLS/node_modules/@huggingface/transformers/package.json').version" 2>/dev/null)" != "$TJS_VERSION" ]; then
    say "npm install --ignore-scripts @huggingface/transformers@$TJS_VERSION in $TOOLS"
    mkdir -p "$TOOLS"
    [ -f "$TOOLS/package.json" ] || echo '{ "name": "tjs-bench", "private": true }' > "$TOOLS/package.json"
    (cd "$TOOLS" && npm install --ignore-scripts --no-audit --no-fund "@huggingface/transformers@$TJS_VERSION" >&2)
fi
[ -d tests/browser/node_modules/playwright-core ] || (cd tests/browser && npm ci --ignore-scripts >&2)

# ---- 6. Chromium: marian-wasm, then transformers.js (the driver waits on /tmp/QUIET_PLEASE before
# each configuration)
[ -f "$BENCH/pkg-q8/manifest.json" ] || die "$BENCH/pkg-q8 missing: convert the checkpoint (BENCHMARKS.md)"
wait_quiet "the marian-wasm Chromium runs"
say "marian-wasm in Chromium (tests/browser/tests/91-bench-translate.mjs)"
MARIAN_BENCH=1 MARIAN_TEST_PACKAGES="$BENCH" MARIAN_BENCH_PACKAGES=pkg-q8 MARIAN_BENCH_COUNT="${TJS_COUNT:-64}" \
    MARIAN_BENCH_TOKENS="${TJS_TOKENS:-32}" MARIAN_BENCH_BATCHES="${TJS_BATCHES:-1,16}" \
    MARIAN_BENCH_THREADS="${MARIAN_THREADS:-1,2}" MARIAN_BENCH_JSON="$BENCH/marian-browser-results.json" \
    node tests/browser/run.mjs 91-bench >&2
node scripts/bench_browser_peers.mjs --model "$MODEL" --expected "$EXPECTED" \
    --tools "$TOOLS" --json "$BENCH/tjs-results.json" \
    --threads "${TJS_THREADS:-1,2}" --batches "${TJS_BATCHES:-1,16}" --tokens "${TJS_TOKENS:-32}" \
    --timeout-s "${TJS_TIMEOUT_S:-900}" > "$BENCH/tjs-table.md"
# One table: both engines, with the ratio to transformers.js on 2 threads at the same batch, the
# model's bytes each loads (marian-wasm: the package; transformers.js: the two q8 ONNX graphs and
# tokenizer.json) and marian-wasm's wasm heap at the end (ONNX Runtime Web does not report its own).
node - "$BENCH/marian-browser-results.json" "$BENCH/tjs-results.json" "$BENCH/pkg-q8" "$MODEL" <<'JS'
const fs = require('fs');
const path = require('path');
const [mFile, tFile, pkg, tjsModel] = process.argv.slice(2);
const [m, t] = [mFile, tFile].map((f) => JSON.parse(fs.readFileSync(f, 'utf8')));
const mb = (files) => files.reduce((n, f) => n + fs.statSync(f).size, 0) / 1e6;
const pkgMB = mb(fs.readdirSync(pkg).map((f) => path.join(pkg, f)).filter((f) => fs.statSync(f).isFile()));
const tjsMB = mb(['onnx/encoder_model_quantized.onnx', 'onnx/decoder_model_merged_quantized.onnx', 'tokenizer.json']
  .map((f) => path.join(tjsModel, f)));
const peer = (batch) => t.results.find((r) => r.threads === 2 && r.batch === batch)?.tokensPerS;
console.log(`${t.date} — Chromium ${t.chromium}, ${m.sentences} sentences × ${m.tokens} tokens, greedy\n`);
console.log('| engine | threads | batch | tokens/s | × transformers.js (2 threads) | load s | model MB | wasm heap MB |');
console.log('|---|---|---|---|---|---|---|---|');
const rows = [
  ...m.results.map((r) => ({ engine: `marian-wasm q8 (${r.build ?? 'pkg'})`, modelMB: pkgMB, ...r })),
  ...t.results.map((r) => ({ engine: `transformers.js ${t.transformers_js} q8`, modelMB: tjsMB, ...r })),
].sort((a, b) => a.batch - b.batch);
for (const r of rows) {
  const ratio = peer(r.batch) ? (r.tokensPerS / peer(r.batch)).toFixed(2) : '-';
  const heap = r.wasmMemoryMB ? r.wasmMemoryMB.toFixed(0) : '—';
  console.log(`| ${r.engine} | ${r.threads} | ${r.batch} | ${r.tokensPerS.toFixed(1)} | ${ratio} | ${r.loadS.toFixed(2)} | ${r.modelMB.toFixed(1)} | ${heap} |`);
}
JS
# The chart (scripts/bench_chart.py) where the main .venv has matplotlib (bench_peers.sh installs it).
if [ -x .venv/bin/python ] && .venv/bin/python -c 'import matplotlib' 2>/dev/null; then
    .venv/bin/python scripts/bench_chart.py --browser "$BENCH/marian-browser-results.json" \
        "$BENCH/tjs-results.json" --out "$BENCH/peers-browser.svg"
else
    say "no chart: .venv lacks matplotlib (bash scripts/bench_peers.sh installs it)"
fi
