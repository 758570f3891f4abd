// Benchmark, not a test (skipped unless MARIAN_BENCH=1): fine-tuning 500 Multi30k pairs for 3
// epochs on the opus-mt-en-fr-shaped q8 package (random weights: the work does not depend on the
// values) in headless Chromium, wasm in the worker. Prints seconds (features, training, total).
//   MARIAN_BENCH=1 MARIAN_BENCH_PKG=target/bench/pkg-q8 MARIAN_TEST_PACKAGES=target/bench \
//     node tests/browser/run.mjs 90-bench
// MARIAN_BENCH_LAST_LAYER_RANK=8 adds the last-layer adapter (option lastLayerRank);
// MARIAN_BENCH_THREADS=N creates the translator with N threads (default: one per core; 1 = the
// single-threaded build, whose features pass is shared among helper workers instead).
// The package is made as in BENCHMARKS.md and served by the test server from /packages/ (its
// folder must be in MARIAN_TEST_PACKAGES): fulfilling its 80 MB model file through page.route
// closed the browser.

import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const timeoutS = 900;

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..', '..');

/** @param {{ page: import('playwright-core').Page, baseUrl: string, assert: typeof import('node:assert/strict'), log: (...a: unknown[]) => void, skip: (why: string) => never, dirs: Record<string, string> }} ctx */
export async function run({ page, baseUrl, assert, log, skip, dirs }) {
  if (process.env.MARIAN_BENCH !== '1') skip('benchmark: set MARIAN_BENCH=1');
  const pkg = path.resolve(ROOT, process.env.MARIAN_BENCH_PKG || 'target/bench/pkg-q8');
  if (!existsSync(path.join(pkg, 'manifest.json'))) skip(`${pkg} missing (see BENCHMARKS.md)`);
  if (path.resolve(dirs.packages) !== path.dirname(pkg)) {
    skip(`set MARIAN_TEST_PACKAGES=${path.dirname(pkg)} so the test server serves ${path.basename(pkg)}`);
  }
  const data = path.resolve(ROOT, process.env.MARIAN_DATA || '../shared/data', 'multi30k');
  const en = readFileSync(path.join(data, 'train.en'), 'utf8').split('\n');
  const fr = readFileSync(path.join(data, 'train.fr'), 'utf8').split('\n');
  const pairs = Array.from({ length: 500 }, (_, i) => ({ source: en[i * 50], target: fr[i * 50] }));
  await page.goto(`${baseUrl}/test-pages/blank.html`);
  const lastLayerRank = Number(process.env.MARIAN_BENCH_LAST_LAYER_RANK || 0);
  const threads = Number(process.env.MARIAN_BENCH_THREADS) || undefined;
  const r = await page.evaluate(async ([pairs, name, lastLayerRank, threads]) => {
    const m = await import('/marian-wasm.js');
    const t = await m.MarianTranslator.create({ model: `/packages/${name}/`, store: false, threads });
    const t0 = performance.now();
    const res = await t.fineTune(pairs, { epochs: 3, valFraction: 0, lastLayerRank });
    const ms = performance.now() - t0;
    const out = { ms, report: res.report, workers: res.featureWorkers, threads: t.threads };
    t.destroy();
    return out;
  }, /** @type {const} */ ([pairs, path.basename(pkg), lastLayerRank, threads]));
  log(
    `Chromium wasm (${r.threads} thread${r.threads > 1 ? 's' : ''}), ${path.basename(pkg)}${lastLayerRank ? `, last-layer rank ${lastLayerRank}` : ''}: 500 pairs x 3 epochs in ${(r.ms / 1000).toFixed(1)} s ` +
      `(features ${r.report.feature_seconds.toFixed(1)} s wall on ${r.workers} workers in ${r.report.feature_shards} chunks; summed over them: frozen model ` +
      `${r.report.frozen_model_seconds.toFixed(1)} s, vocabulary ${r.report.vocabulary_seconds.toFixed(1)} s; training ${r.report.train_seconds.toFixed(1)} s, ` +
      `${r.report.train_positions} positions, ${r.report.trained_tokens} tokens)`,
  );
  assert.equal(r.report.epochs.length, 3);
}
