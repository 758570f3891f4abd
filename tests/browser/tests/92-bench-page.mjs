// Benchmark, not a test (skipped unless MARIAN_BENCH=1): a page-sized job in headless Chromium —
// translating a 1 000-word article in the page through MarianTranslator.translatePage: the time
// until the first paragraph shows its translation and until all of it is translated, with the
// package's own generation settings, on 1 and 2 threads.
//   MARIAN_BENCH=1 node tests/browser/run.mjs 92-bench                      # default model
//   MARIAN_BENCH=1 MARIAN_TEST_PACKAGES=target/bench node tests/browser/run.mjs 92-bench
//                                                     # + the opus-mt-shaped q8 package
// The article: paragraphs of 5 consecutive lines of $MARIAN_DATA/multi30k/test_2016_flickr.en from
// line 200 on, every other one with a <b> run, until it holds 1 000 words. The opus-mt-shaped
// package has random weights and never ends a sentence by itself: its outputs are capped at 40
// tokens (about what a trained model writes for these lines); the default model runs as shipped.

import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const timeoutS = 1800;

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..', '..');

/** @param {{ page: import('playwright-core').Page, baseUrl: string, assert: typeof import('node:assert/strict'), log: (...a: unknown[]) => void, skip: (why: string) => never, dirs: Record<string, string> }} ctx */
export async function run({ page, baseUrl, assert, log, skip, dirs }) {
  if (process.env.MARIAN_BENCH !== '1') skip('benchmark: set MARIAN_BENCH=1');
  const data = path.resolve(ROOT, process.env.MARIAN_DATA || '../shared/data', 'multi30k');
  const lines = readFileSync(path.join(data, 'test_2016_flickr.en'), 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .slice(200);
  /** @type {string[]} */
  const paragraphs = [];
  let words = 0;
  for (let i = 0; words < 1000; i += 5) {
    const sents = lines.slice(i, i + 5);
    words += sents.join(' ').split(/\s+/).length;
    const text = sents.join(' ');
    if (paragraphs.length % 2 === 1) {
      const w = text.split(' ');
      paragraphs.push(`${w.slice(0, 3).join(' ')} <b>${w.slice(3, 6).join(' ')}</b> ${w.slice(6).join(' ')}`);
    } else {
      paragraphs.push(text);
    }
  }
  const html = `<h1>${lines[0]}</h1>${paragraphs.map((p) => `<p>${p}</p>`).join('')}`;
  /** @type {[string, Record<string, number>][]} */
  const models = [['/models/default/', {}]];
  if (existsSync(path.join(dirs.packages, 'pkg-q8', 'manifest.json'))) models.push(['/packages/pkg-q8/', { maxLength: 40 }]);
  for (const [model, options] of models) {
    for (const threads of [1, 2]) {
      await page.goto(`${baseUrl}/test-pages/blank.html`);
      const r = await page.evaluate(
        async ([model, threads, html, options]) => {
          document.body.innerHTML = html;
          const { MarianTranslator } = await import('/marian-wasm.js');
          const l0 = performance.now();
          const t = await MarianTranslator.create({ model, threads, store: false, device: 'wasm' });
          const loadMs = performance.now() - l0;
          const first = /** @type {HTMLElement} */ (document.querySelector('p'));
          const original = first.textContent;
          const t0 = performance.now();
          /** @type {number | null} */
          let firstMs = null;
          const seen = new MutationObserver(() => {
            if (firstMs === null && first.textContent !== original) firstMs = performance.now() - t0;
          });
          seen.observe(document.body, { childList: true, subtree: true, characterData: true });
          const pt = await t.translatePage(document.body, options);
          const allMs = performance.now() - t0;
          seen.disconnect();
          const changed = document.querySelector('p')?.textContent !== original;
          pt.restore();
          const out = { loadMs, firstMs, allMs, changed, threads: t.threads };
          t.destroy();
          return out;
        },
        /** @type {const} */ ([model, threads, html, options]),
      );
      log(
        `BENCH page ${model} threads ${r.threads}: first paragraph ${(r.firstMs / 1000).toFixed(2)} s, ` +
          `all ${(r.allMs / 1000).toFixed(2)} s (${words} words, ${paragraphs.length} paragraphs; load ${(r.loadMs / 1000).toFixed(2)} s)`,
      );
      assert.ok(r.changed, 'the article was translated');
      assert.equal(r.threads, threads);
    }
  }
}
