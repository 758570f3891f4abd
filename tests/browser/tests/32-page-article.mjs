// A page-sized run (issue 18): an article of at least 2 000 nodes, made here from the real English
// of $MARIAN_DATA/multi30k/test_2016_flickr.en (default ../shared/data; skipped, saying so, when
// absent) in realistic markup — a nav, headings, paragraphs with inline <b>/<i>/<a>/<code> and
// footnote <sup>s, lists, figures with captions, tables, footnotes — translated in the page by the
// embedded default model through MarianTranslator.translatePage (greedy, to keep CI short).
// Asserted:
//  - visible text first: every block in the viewport is translated before any block below it;
//  - the main thread is not held: the translator's DOM work runs in slices of at most SLICE_WORK
//    units (www/page-translator.js) with yields to the event loop between them, and a second pass
//    over the same page — every text cached, so no model reply ever breaks it up — lets a timer
//    of the page's own run many times while it works; long tasks (PerformanceObserver 'longtask')
//    are logged and held to a bound generous enough for a loaded 2-core machine;
//  - every block with letters is translated, nothing failed or was kept, restore() is exact.

import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const timeoutS = 240;

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..', '..');
/** page-translator.js's SLICE_WORK: the most work units between two yields. */
const SLICE_WORK = 200;
/** Issue 18 asks for no main-thread block over 50 ms; measured: no long task at all (> 50 ms) in
 * runs beside a Rust build. Twice that as the bound leaves room for a loaded CI machine while a
 * slice-less walk of this page (one 59 ms task measured, more on a slow machine) or a slice that
 * grew would still be caught beside the work bound below. */
const LONGEST_TASK_MS = 100;

/** @param {{ page: import('playwright-core').Page, baseUrl: string, assert: typeof import('node:assert/strict'), log: (...a: unknown[]) => void, skip: (why: string) => never }} ctx */
export async function run({ page, baseUrl, assert, log, skip }) {
  const file = path.resolve(ROOT, process.env.MARIAN_DATA || '../shared/data', 'multi30k', 'test_2016_flickr.en');
  if (!existsSync(file)) skip(`needs ${file} (set MARIAN_DATA to the shared data directory)`);
  const lines = readFileSync(file, 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  await page.goto(`${baseUrl}/test-pages/blank.html`);
  const r = await page.evaluate(async (lines) => {
    const html = article(lines);
    document.body.innerHTML = html;
    const root = document.body;
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_ELEMENT | NodeFilter.SHOW_TEXT);
    let nodes = 0;
    while (walker.nextNode()) nodes++;
    // The blocks holding text, and which are on screen before anything changes.
    const blocks = [...document.querySelectorAll('nav, h1, h2, p, li, figcaption, th, td')].filter((b) => /\p{L}/u.test(b.textContent ?? ''));
    blocks.forEach((b, i) => b.setAttribute('data-k', String(i)));
    const visible = blocks.map((b) => {
      const rc = b.getBoundingClientRect();
      return rc.bottom >= 0 && rc.top <= innerHeight && rc.width + rc.height > 0;
    });
    const before = root.innerHTML;
    const beforeText = blocks.map((b) => b.textContent);

    const { MarianTranslator } = await import('/marian-wasm.js');
    const t = await MarianTranslator.create({ model: '/models/default/', store: false });

    /** @type {number[]} */
    const longTasks = [];
    const po = new PerformanceObserver((list) => longTasks.push(...list.getEntries().map((e) => e.duration)));
    po.observe({ type: 'longtask' });
    /** Block indices in the order their text was first swapped. @type {number[]} */
    const order = [];
    const seen = new Set();
    const mo = new MutationObserver((records) => {
      for (const rec of records) {
        const el = /** @type {Element} */ (rec.target.nodeType === Node.ELEMENT_NODE ? rec.target : rec.target.parentElement);
        const k = el?.closest('[data-k]')?.getAttribute('data-k');
        if (k != null && !seen.has(k)) seen.add(k), order.push(Number(k));
      }
    });
    mo.observe(root, { childList: true, subtree: true });
    const t0 = performance.now();
    const pt = await t.translatePage(root, { observe: false, beams: 1 });
    const modelMs = performance.now() - t0;
    mo.disconnect();
    await new Promise((r) => setTimeout(r, 100)); // let the observer deliver the last long tasks
    const modelPass = { longTasks: longTasks.splice(0), yields: pt.slicer.yields, maxWork: pt.slicer.maxWork, ms: modelMs };
    const changed = blocks.map((b, i) => b.textContent !== beforeText[i]);
    const translatedHtml = root.innerHTML;
    const sample = blocks.slice(0, 4).map((b) => b.innerHTML);

    // The same page again from the cache: no model reply breaks the work up, only the slices do.
    const r0 = performance.now();
    pt.restore();
    const restoreMs = performance.now() - r0;
    const restored = root.innerHTML === before;
    const calls = pt.modelCalls;
    const yields0 = pt.slicer.yields;
    let ticks = 0;
    let beating = true;
    const beat = () => {
      ticks++;
      if (beating) setTimeout(beat, 0);
    };
    setTimeout(beat, 0);
    await new Promise((r) => setTimeout(r, 20));
    const ticks0 = ticks;
    const c0 = performance.now();
    await pt.translate();
    const cachedMs = performance.now() - c0;
    const cachedTicks = ticks - ticks0;
    beating = false;
    await new Promise((r) => setTimeout(r, 100));
    const cachedPass = {
      longTasks: longTasks.splice(0),
      yields: pt.slicer.yields - yields0,
      maxWork: pt.slicer.maxWork,
      ms: cachedMs,
      ticks: cachedTicks,
      modelCalls: pt.modelCalls - calls,
      same: root.innerHTML === translatedHtml,
    };
    pt.restore();
    po.disconnect();
    const res = {
      nodes,
      blocks: blocks.length,
      visible,
      order,
      changed,
      restored,
      restoreMs,
      restoredAgain: root.innerHTML === before,
      failures: pt.failures.length,
      kept: pt.kept.length,
      modelCalls: calls,
      modelPass,
      cachedPass,
      sample,
    };
    t.destroy();
    return res;

    /**
     * The article: sections of a heading, two paragraphs (inline markup, a footnote mark), a
     * list, a figure and a table, until the tree holds 2 000 nodes; every sentence used once.
     * @param {string[]} lines
     */
    function article(lines) {
      let next = 0;
      const line = () => lines[next++ % lines.length];
      const words = (/** @type {string} */ s) => s.split(' ');
      let notes = 0;
      /** A paragraph of three sentences with inline markup and a footnote mark. @param {number} k */
      const paragraph = (k) => {
        const [a, b, c] = [line(), line(), line()].map(words);
        const inline = [
          `${a.slice(0, 2).join(' ')} <b>${a.slice(2, 4).join(' ')}</b> ${a.slice(4).join(' ')}`,
          `${b.slice(0, 3).join(' ')} <i>${b.slice(3, 5).join(' ')}</i> ${b.slice(5).join(' ')}`,
          k % 2
            ? `${c.slice(0, -2).join(' ')} <a href="#s${k}">${c.slice(-2).join(' ')}</a>`
            : `${c.slice(0, 3).join(' ')} <code>x = ${k}</code> ${c.slice(3).join(' ')}`,
        ];
        notes++;
        inline[1] = inline[1].replace(/\.$/, `<sup><a href="#fn${notes}" id="r${notes}">${notes}</a></sup>.`);
        return `<p>${inline.join(' ')}</p>`;
      };
      const nav = ['Home', 'World', 'Sports', 'Travel', 'Photos', 'About us', 'Contact'];
      let out = `<nav class="site">${nav.map((n, i) => `<a href="/n${i}">${n}</a>`).join(' · ')}</nav><article id="article"><h1>${line()}</h1>`;
      const count = () => {
        const d = document.createElement('div');
        d.innerHTML = out;
        const w = document.createTreeWalker(d, NodeFilter.SHOW_ELEMENT | NodeFilter.SHOW_TEXT);
        let n = 0;
        while (w.nextNode()) n++;
        return n;
      };
      for (let k = 0; count() < 2000; k++) {
        out += `<section id="s${k}"><h2>${line().replace(/\.$/, '')}</h2>${paragraph(k)}${paragraph(k + 1)}`;
        out += `<ul>${[line(), line(), line()].map((l) => `<li>${l}</li>`).join('')}</ul>`;
        out += `<figure><img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" width="320" height="180" alt="${line()}"><figcaption>${line()}</figcaption></figure>`;
        out += `<table><thead><tr><th>Scene</th><th>People</th></tr></thead><tbody>${[1, 2]
          .map((n) => `<tr><td>${line()}</td><td>${n + k}</td></tr>`)
          .join('')}</tbody></table></section>`;
      }
      out += `<footer><ol class="notes">${Array.from({ length: notes }, (_, i) => `<li id="fn${i + 1}">${line()}</li>`).join('')}</ol></footer></article>`;
      return out;
    }
  }, lines);

  const fmt = (/** @type {number[]} */ d) => `${d.length} long tasks, longest ${d.length ? Math.max(...d).toFixed(0) : 0} ms`;
  log(`article: ${r.nodes} nodes, ${r.blocks} text blocks (${r.visible.filter(Boolean).length} on screen), ${r.modelCalls} texts to the model`);
  log(`model pass: ${(r.modelPass.ms / 1000).toFixed(1)} s, ${fmt(r.modelPass.longTasks)} [${r.modelPass.longTasks.map((x) => x.toFixed(0))}], ${r.modelPass.yields} yields, largest slice ${r.modelPass.maxWork} units`);
  log(`cached pass: ${r.cachedPass.ms.toFixed(0)} ms, ${fmt(r.cachedPass.longTasks)} [${r.cachedPass.longTasks.map((x) => x.toFixed(0))}], ${r.cachedPass.yields} yields, page timer ran ${r.cachedPass.ticks} times`);
  log(`restore(): ${r.restoreMs.toFixed(0)} ms (one synchronous pass)`);
  log('first blocks translated:', r.sample);
  assert.ok(r.nodes >= 2000, `the article has ${r.nodes} nodes`);

  // Visible first.
  const pos = new Map(r.order.map((k, i) => [k, i]));
  const onScreen = r.visible.flatMap((v, k) => (v ? [k] : []));
  const below = r.visible.flatMap((v, k) => (v ? [] : [k]));
  assert.ok(onScreen.length >= 3 && below.length > 100, `${onScreen.length} blocks on screen, ${below.length} below`);
  const lastVisible = Math.max(...onScreen.map((k) => pos.get(k) ?? Infinity));
  const firstBelow = Math.min(...below.map((k) => pos.get(k) ?? Infinity));
  assert.ok(lastVisible < firstBelow, `every block on screen is translated before any below the fold (last on-screen swap #${lastVisible}, first below #${firstBelow})`);

  // All of it translated.
  const untouched = r.changed.flatMap((c, k) => (c ? [] : [k]));
  assert.deepEqual(untouched, [], 'every block with letters is translated');
  assert.equal(r.failures, 0);
  assert.equal(r.kept, 0);
  assert.equal(r.restored, true, 'restore() after the model pass is byte-identical');
  assert.equal(r.restoredAgain, true, 'restore() after the cached pass is byte-identical');

  // The main thread is not held.
  for (const [name, p] of /** @type {const} */ ([['model', r.modelPass], ['cached', r.cachedPass]])) {
    assert.ok(p.maxWork <= SLICE_WORK, `${name} pass: a slice held ${p.maxWork} work units (at most ${SLICE_WORK})`);
    const longest = Math.max(0, ...p.longTasks);
    assert.ok(longest < LONGEST_TASK_MS, `${name} pass: a long task of ${longest.toFixed(0)} ms`);
  }
  assert.equal(r.cachedPass.modelCalls, 0, 'the second pass is served from the cache');
  assert.equal(r.cachedPass.same, true, 'the cached pass gives the same page');
  assert.ok(r.cachedPass.yields >= 10, `the cached pass yielded ${r.cachedPass.yields} times`);
  assert.ok(r.cachedPass.ticks >= 3, `a timer of the page ran ${r.cachedPass.ticks} times during the cached pass (the translator yields to the event loop)`);
}
