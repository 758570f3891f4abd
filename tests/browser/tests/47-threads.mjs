// Multi-threaded WebAssembly through the public API: on a cross-origin isolated page the
// translator computes on rayon's pool (the multi-threaded build, www/pkg-mt) and gives exactly the
// tokens of the single-threaded build, greedy and beam 4; on a page that is not isolated it runs on
// one thread and says why. Chromium runs relaxed SIMD, so the API picks the relaxed-SIMD twins
// (pkg-relaxed, pkg-mt-relaxed) where they are built; the plain multi-threaded build is held to the
// same ids directly (tests/browser/pages/wasm-worker.js).

import { inWasmWorker } from '../lib/wasm-worker.mjs';

export const timeoutS = 300;

const SENTENCES = [
  'A man in a blue shirt is standing on a ladder cleaning windows.',
  'Two young girls are playing in the sand at the beach.',
  'A group of people are sitting at tables in a restaurant.',
  'A dog runs through the snow.',
  'Several men in hard hats are operating a giant pulley system.',
];

/** @param {{ page: import('playwright-core').Page, baseUrl: string, assert: typeof import('node:assert/strict'), log: (...a: unknown[]) => void, dirs: Record<string, string> }} ctx */
export async function run({ page, baseUrl, assert, log, dirs }) {
  const { existsSync } = await import('node:fs');
  const path = await import('node:path');
  const relaxed = existsSync(path.join(dirs.www, 'pkg-relaxed', 'marian_wasm.js'))
    && existsSync(path.join(dirs.www, 'pkg-mt-relaxed', 'marian_wasm.js'));
  if (!relaxed) log('relaxed-SIMD builds not built (scripts/build-wasm.sh [--threads] --relaxed): the plain builds run');
  // Batch 5 on the opus-shaped fixture: products above the kernel's parallel threshold, so the
  // pool really splits the work.
  for (const model of ['/packages/tiny-opus-q8/', '/models/default/']) {
    await page.goto(`${baseUrl}/test-pages/blank.html`);
    assert.equal(await page.evaluate(() => self.crossOriginIsolated), true, 'the test server sends COOP/COEP');
    const r = await page.evaluate(
      async ([model, sentences]) => {
        const { MarianTranslator } = await import('/marian-wasm.js');
        /** @type {Record<string, any>} */
        const out = {};
        for (const threads of [1, 2, 3]) {
          const t = await MarianTranslator.create({ model, threads, store: false, device: 'wasm' });
          out[threads] = {
            threads: t.threads,
            why: t.threadsUnavailable,
            build: t.wasmBuild,
            greedy: await t.translate(sentences, { beams: 1 }),
            beam: await t.translate(sentences, { beams: 4 }),
          };
          t.destroy();
        }
        return out;
      },
      /** @type {const} */ ([model, SENTENCES]),
    );
    log(model, JSON.stringify(Object.fromEntries(Object.entries(r).map(([k, v]) => [k, { threads: v.threads, why: v.why, build: v.build }]))));
    assert.equal(r[1].threads, 1);
    assert.equal(r[1].build, relaxed ? 'pkg-relaxed' : 'pkg');
    for (const n of [2, 3]) assert.equal(r[n].build, relaxed ? 'pkg-mt-relaxed' : 'pkg-mt');
    for (const n of [2, 3]) {
      assert.equal(r[n].threads, n, `threads: ${n} runs on ${n} threads (${r[n].why})`);
      assert.equal(r[n].why, null);
      assert.deepEqual(r[n].greedy, r[1].greedy, `${model}: greedy on ${n} threads == 1 thread`);
      assert.deepEqual(r[n].beam, r[1].beam, `${model}: beam 4 on ${n} threads == 1 thread`);
    }
    log(model, r[1].greedy[0]);
  }

  // Every build directly, greedy in one batch (rows enough for the relaxed builds' proposal pass):
  // the single-threaded plain build's ids.
  const builds = relaxed ? ['pkg', 'pkg-mt', 'pkg-relaxed', 'pkg-mt-relaxed'] : ['pkg', 'pkg-mt'];
  await page.goto(`${baseUrl}/test-pages/blank.html`);
  /** @type {Record<string, number[][]>} */
  const ids = {};
  for (const build of builds) {
    // The relaxed twins' proposal pass forced on: it must give the same ids on any CPU, also
    // where a timing would switch it off (relaxed_probe.rs).
    const relaxedProposal = build.endsWith('-relaxed') ? 'on' : undefined;
    const res = await inWasmWorker(page, { build, threads: build.startsWith('pkg-mt') ? 2 : 1, model: '/packages/tiny-opus-q8/', texts: SENTENCES, relaxedProposal });
    assert.ok(res.ok, `${build}: ${res.error}`);
    if (relaxedProposal) assert.equal(res.relaxedProposal, 'forced on');
    assert.equal(res.threads, build.startsWith('pkg-mt') ? 2 : 1, `${build} runs on its threads`);
    ids[build] = res.ids;
    assert.deepEqual(ids[build], ids.pkg, `${build} (${res.threads} threads) gives the ids of pkg`);
  }
  log('same ids from', builds.join(', '));

  // Not isolated: one thread, and the reason.
  await page.goto(`${baseUrl}/test-pages/blank.html?coi=0`);
  assert.equal(await page.evaluate(() => self.crossOriginIsolated), false);
  const plain = await page.evaluate(async (sentences) => {
    const { MarianTranslator } = await import('/marian-wasm.js');
    const t = await MarianTranslator.create({ model: '/packages/tiny-opus-q8/', threads: 4, store: false, device: 'wasm' });
    const out = { threads: t.threads, why: t.threadsUnavailable, greedy: await t.translate(sentences, { beams: 1 }) };
    t.destroy();
    return out;
  }, SENTENCES);
  log('not isolated:', plain.threads, plain.why);
  assert.equal(plain.threads, 1);
  assert.match(String(plain.why), /cross-origin isolated/);
  assert.ok(plain.greedy.every((t) => typeof t === 'string' && t.length > 0));
}
