// Benchmark, not a test (skipped unless MARIAN_BENCH=1): translation speed of the wasm build in
// headless Chromium, the same fixed-length work as `marian-wasm bench` and scripts/bench_peers.sh
// (greedy, exactly 32 target tokens per sentence, EOS banned, one warm-up batch untimed), on the
// opus-mt-en-fr-shaped packages, batch 1 and 16, on the page's thread (one wasm thread).
//   MARIAN_BENCH=1 MARIAN_TEST_PACKAGES=target/bench node tests/browser/run.mjs 91-bench
// Knobs: MARIAN_BENCH_PACKAGES (default "pkg-q8,pkg-q4"), MARIAN_BENCH_COUNT (sentences, 64),
// MARIAN_BENCH_BATCHES ("1,16"), MARIAN_BENCH_TOKENS (32). Sentences: the first lines of
// $MARIAN_DATA/multi30k/test_2016_flickr.en, as the native harness takes them.

import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const timeoutS = 1800;

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..', '..');

/** @param {{ page: import('playwright-core').Page, baseUrl: string, assert: typeof import('node:assert/strict'), log: (...a: unknown[]) => void, skip: (why: string) => never, dirs: Record<string, string> }} ctx */
export async function run({ page, baseUrl, assert, log, skip, dirs }) {
  if (process.env.MARIAN_BENCH !== '1') skip('benchmark: set MARIAN_BENCH=1');
  const names = (process.env.MARIAN_BENCH_PACKAGES || 'pkg-q8,pkg-q4').split(',');
  for (const n of names) {
    if (!existsSync(path.join(dirs.packages, n, 'manifest.json'))) {
      skip(`${n} missing in ${dirs.packages} (set MARIAN_TEST_PACKAGES=target/bench; see BENCHMARKS.md)`);
    }
  }
  const count = Number(process.env.MARIAN_BENCH_COUNT || 64);
  const tokens = Number(process.env.MARIAN_BENCH_TOKENS || 32);
  const batches = (process.env.MARIAN_BENCH_BATCHES || '1,16').split(',').map(Number);
  const data = path.resolve(ROOT, process.env.MARIAN_DATA || '../shared/data', 'multi30k');
  const sentences = readFileSync(path.join(data, 'test_2016_flickr.en'), 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .slice(0, count);
  await page.goto(`${baseUrl}/test-pages/blank.html`);
  for (const name of names) {
    for (const batch of batches) {
      const r = await page.evaluate(
        async ([name, sentences, batch, tokens]) => {
          const m = await import('/pkg/marian_wasm.js');
          await m.default();
          const t0 = performance.now();
          const t = await m.Translator.fromUrl(`/packages/${name}/`, () => {}, 'wasm');
          const loadS = (performance.now() - t0) / 1000;
          const res = await t.benchmark(sentences, batch, tokens);
          t.free();
          return { ...res, loadS };
        },
        /** @type {const} */ ([name, sentences, batch, tokens]),
      );
      log(
        `BENCH chromium wasm ${name} batch ${batch}: ${r.tokensPerS.toFixed(1)} tokens/s ` +
          `(${r.tokens} tokens in ${r.seconds.toFixed(2)} s, ${r.threads} thread(s), load ${r.loadS.toFixed(2)} s)`,
      );
      assert.equal(r.tokens, sentences.length * tokens);
      assert.equal(r.device, 'wasm');
    }
  }
}
