// Benchmark, not a test (skipped unless MARIAN_BENCH=1): translation speed of the wasm build in
// headless Chromium, the same fixed-length work as `marian-wasm bench` and scripts/bench_peers.sh
// (greedy, exactly 32 target tokens per sentence, EOS banned, one warm-up batch untimed), on the
// opus-mt-en-fr-shaped packages, batch 1 and 16, in a Web Worker: the single-threaded build (1
// thread) and the multi-threaded one (rayon on N Web Workers, the page cross-origin isolated).
//   MARIAN_BENCH=1 MARIAN_TEST_PACKAGES=target/bench node tests/browser/run.mjs 91-bench
// Knobs: MARIAN_BENCH_PACKAGES (default "pkg-q8,pkg-q4"), MARIAN_BENCH_COUNT (sentences, 64),
// MARIAN_BENCH_BATCHES ("1,16"), MARIAN_BENCH_TOKENS (32), MARIAN_BENCH_THREADS ("1,2": 1 = the
// single-threaded build, N > 1 = the multi-threaded build on N threads), MARIAN_BENCH_SIMD ("plain,relaxed":
// each build and its relaxed-SIMD twin, the latter when built), MARIAN_BENCH_RELAXED_PROPOSAL
// ("auto" by default: the twins time their proposal pass and keep it where it pays; "on"/"off"
// force it, to measure what it gains), MARIAN_BENCH_JSON (write
// the results there as JSON; scripts/bench_browser_peers.sh reads them). Sentences: the first lines of
// $MARIAN_DATA/multi30k/test_2016_flickr.en, as the native harness takes them.

import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { inWasmWorker } from '../lib/wasm-worker.mjs';

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
  const threadCounts = (process.env.MARIAN_BENCH_THREADS || '1,2').split(',').map(Number);
  const simds = (process.env.MARIAN_BENCH_SIMD || 'plain,relaxed')
    .split(',')
    .filter((s) => s === 'plain' || existsSync(path.join(dirs.www, 'pkg-relaxed', 'marian_wasm.js')));
  const data = path.resolve(ROOT, process.env.MARIAN_DATA || '../shared/data', 'multi30k');
  const sentences = readFileSync(path.join(data, 'test_2016_flickr.en'), 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .slice(0, count);
  await page.goto(`${baseUrl}/test-pages/blank.html`);
  assert.equal(await page.evaluate(() => self.crossOriginIsolated), true, 'the test server sends COOP/COEP');
  /** @type {{ package: string, build: string, threads: number, batch: number, tokensPerS: number, seconds: number, loadS: number, loadMemoryMB: number, wasmMemoryMB: number, relaxedProposal: string }[]} */
  const results = [];
  for (const name of names) {
    for (const [threads, simd] of threadCounts.flatMap((t) => simds.map((s) => /** @type {const} */ ([t, s])))) {
      const build = (threads > 1 ? 'pkg-mt' : 'pkg') + (simd === 'relaxed' ? '-relaxed' : '');
      for (const batch of batches) {
        const req = {
          build,
          threads,
          model: `/packages/${name}/`,
          texts: sentences,
          bench: { batch, tokens },
          // auto (default): the relaxed twins time their proposal pass and keep it where it pays.
          relaxedProposal: process.env.MARIAN_BENCH_RELAXED_PROPOSAL || undefined,
        };
        const r = await inWasmWorker(page, req);
        assert.ok(r.ok, r.error);
        const b = r.bench;
        log(
          `BENCH chromium wasm ${name} ${build} threads ${r.threads} batch ${batch}: ${b.tokensPerS.toFixed(1)} tokens/s ` +
            `(${b.tokens} tokens in ${b.seconds.toFixed(2)} s, load ${r.loadS.toFixed(2)} s, wasm memory ${r.loadMemoryMB.toFixed(0)} MB loaded, ${r.wasmMemoryMB.toFixed(0)} MB at the end; relaxed proposal pass: ${r.relaxedProposal})`,
        );
        assert.equal(r.threads, threads);
        assert.equal(b.tokens, sentences.length * tokens);
        assert.equal(b.device, 'wasm');
        results.push({ package: name, build, threads: r.threads, batch, tokensPerS: b.tokensPerS, seconds: b.seconds, loadS: r.loadS, loadMemoryMB: r.loadMemoryMB, wasmMemoryMB: r.wasmMemoryMB, relaxedProposal: r.relaxedProposal });
      }
    }
  }
  if (process.env.MARIAN_BENCH_JSON) {
    const chromium = page.context().browser()?.version() ?? '';
    writeFileSync(
      process.env.MARIAN_BENCH_JSON,
      JSON.stringify({ engine: 'marian-wasm', chromium, sentences: sentences.length, tokens, date: new Date().toISOString(), results }, null, 2),
    );
  }
}
