// Fine-tuning in the browser (wasm, in the worker), on real data ($MARIAN_DATA, default
// ../shared/data): the user's pairs say "auto" where the default model says "voiture".
//  - MarianTranslator.fineTune: progress events, report, held-out car sentences adopt the term;
//  - the adapter round-trips through IndexedDB (survives a reload) and through a file's bytes,
//    is refused by another base model, and can be taken off (back to the base output exactly);
//  - cancelling stops at once and leaves a working translator;
//  - the features pass shared among Web Workers trains the same adapter as one worker;
//  - the keep measure (unrelated pairs whose translation changed) counts the ordinary pairs;
//  - the demo's fine-tuning panel trains, charts the loss, shows before/after and the keep measure, keeps the adapter,
//    and re-applies it after a reload.

import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const timeoutS = 400;

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..', '..');

function data() {
  const raw = process.env.MARIAN_DATA || '../shared/data';
  const dir = path.resolve(ROOT, raw, 'multi30k');
  if (!existsSync(path.join(dir, 'train.en'))) {
    throw new Error(`Multi30k not found in ${dir} (set MARIAN_DATA to the folder holding multi30k/)`);
  }
  const read = (/** @type {string} */ f) => readFileSync(path.join(dir, f), 'utf8').split('\n');
  return { en: read('train.en'), fr: read('train.fr'), heldEn: [...read('val.en'), ...read('test_2016_flickr.en')] };
}

/** @param {string} s @param {string[]} words */
const hasWord = (s, words) => s.split(/[^\p{L}\p{N}]+/u).some((w) => words.includes(w.toLowerCase()));
/** @param {string} fr */
const houseStyle = (fr) => fr.replace(/\b(V|v)oiture(s?)\b/g, (_, v, pl) => `${v === 'V' ? 'A' : 'a'}uto${pl}`);

/** @param {{ page: import('playwright-core').Page, baseUrl: string, assert: typeof import('node:assert/strict'), log: (...a: unknown[]) => void }} ctx */
export async function run({ page, baseUrl, assert, log }) {
  const { en, fr, heldEn } = data();
  /** @type {{ source: string, target: string }[]} */
  const withTerm = [];
  /** @type {{ source: string, target: string }[]} */
  const general = [];
  en.forEach((e, i) => {
    if (hasWord(e, ['car', 'cars']) && hasWord(fr[i], ['voiture', 'voitures'])) withTerm.push({ source: e, target: houseStyle(fr[i]) });
    else if (!hasWord(e, ['car', 'cars']) && i % 97 === 0) general.push({ source: e, target: fr[i] });
  });
  const pairs = [...withTerm.slice(0, 120), ...general.slice(0, 80)];
  // Bad entries are reported, not trained on.
  const bad = [{ source: '', target: 'vide' }, { source: 'x' }, pairs[0]];
  const held = heldEn.filter((s) => hasWord(s, ['car', 'cars'])).slice(0, 16);

  await page.goto(`${baseUrl}/test-pages/blank.html`);
  const r = await page.evaluate(
    async ([pairs, bad, held]) => {
      const m = await import('/marian-wasm.js');
      for (const a of await m.listAdapters()) await m.deleteAdapter(a.name);
      const t = await m.MarianTranslator.create({ model: '/models/default/' });
      const before = await t.translate(held);
      /** @type {any[]} */
      const progress = [];
      const t0 = performance.now();
      const res = await t.fineTune([...pairs, ...bad], { onProgress: (p) => progress.push(p) });
      const ms = performance.now() - t0;
      const after = await t.translate(held);
      await m.saveAdapter('cars', res.adapter);
      // Cancel: abort at the first progress event, then the translator still works, adapter kept.
      const ac = new AbortController();
      let cancelError = '';
      try {
        await t.fineTune(pairs, { signal: ac.signal, onProgress: () => ac.abort() });
      } catch (e) {
        cancelError = `${/** @type {any} */ (e).name}`;
      }
      const afterCancel = await t.translate(held);
      await t.useAdapter(null);
      const off = await t.translate(held);
      // The features pass shared among three workers trains the same adapter as one worker.
      const small = pairs.slice(0, 70);
      const one = await t.fineTune(small, { epochs: 2, workers: 1 });
      const three = await t.fineTune(small, { epochs: 2, workers: 3 });
      await t.useAdapter(null);
      /** @param {Uint8Array} b safetensors -> { name: typed array } */
      const tensorsOf = (b) => {
        const n = Number(new DataView(b.buffer, b.byteOffset).getBigUint64(0, true));
        const header = JSON.parse(new TextDecoder().decode(b.subarray(8, 8 + n)));
        /** @type {Record<string, Float32Array | Uint32Array>} */
        const out = {};
        for (const [k, v] of Object.entries(header)) {
          if (k === '__metadata__') continue;
          const bytes = b.slice(8 + n + v.data_offsets[0], 8 + n + v.data_offsets[1]);
          out[k] = v.dtype === 'U32' ? new Uint32Array(bytes.buffer) : new Float32Array(bytes.buffer);
        }
        return out;
      };
      const [ta, tb] = [tensorsOf(one.adapter), tensorsOf(three.adapter)];
      const worst = (/** @type {string} */ k) => ta[k].reduce((w, x, i) => Math.max(w, Math.abs(x - tb[k][i])), 0);
      const sharding = {
        workers: [one.featureWorkers, three.featureWorkers],
        shards: [one.report.feature_shards, three.report.feature_shards],
        positions: [one.report.train_positions, three.report.train_positions],
        sameIds: ta.ids.length > 0 && ta.ids.length === tb.ids.length && ta.ids.every((x, i) => x === tb.ids[i]),
        scale: ta.delta_u.reduce((w, x) => Math.max(w, Math.abs(x)), 0),
        du: worst('delta_u'),
        dv: worst('delta_v'),
        db: worst('delta_bias'),
        mainWorkers: res.featureWorkers,
        cores: navigator.hardwareConcurrency,
      };
      t.destroy();
      // Another base model refuses it.
      const other = await m.MarianTranslator.create({ model: '/packages/tiny-opus-q8/' });
      let refused = '';
      try {
        await other.useAdapter(res.adapter);
      } catch (e) {
        refused = String(/** @type {any} */ (e).message);
      }
      other.destroy();
      return {
        before,
        after,
        afterCancel,
        off,
        ms,
        issues: res.issues,
        report: res.report,
        valBefore: res.valBefore,
        valAfter: res.valAfter,
        unrelatedChanged: res.unrelatedChanged,
        phases: [...new Set(progress.map((p) => p.phase))],
        steps: progress.filter((p) => p.phase === 'train').length,
        lossesFinite: progress.filter((p) => p.phase === 'train').every((p) => Number.isFinite(p.loss)),
        manifestBase: res.manifest.base_model_sha256,
        modelSha: '',
        size: res.adapter.length,
        cancelError,
        refused,
        sharding,
      };
    },
    /** @type {[any, any, string[]]} */ ([pairs, bad, held]),
  );
  const asked = r.before.map((/** @type {string} */ b, /** @type {number} */ i) => (hasWord(b, ['voiture', 'voitures']) ? i : -1)).filter((/** @type {number} */ i) => i >= 0);
  const adopted = asked.filter((/** @type {number} */ i) => hasWord(r.after[i], ['auto', 'autos'])).length;
  log(`fine-tuning in Chromium: ${(r.ms / 1000).toFixed(1)} s for ${r.report.train_pairs} pairs (${r.report.epochs.length} epochs, ${r.report.train_positions} positions); adapter ${(r.size / 1024).toFixed(0)} KB`);
  log(`held-out car sentences using "auto": ${adopted}/${asked.length}; val ${JSON.stringify(r.valBefore)} -> ${JSON.stringify(r.valAfter)}`);
  log('issues:', r.issues);
  for (const i of asked.slice(0, 3)) log(`  ${r.before[i]}  ->  ${r.after[i]}`);
  assert.deepEqual(
    r.issues.map((/** @type {any} */ i) => i.index),
    [pairs.length + 1, pairs.length + 2, pairs.length + 3],
    'the three bad entries are reported by index',
  );
  assert.match(r.issues[0].reason, /empty source/);
  assert.match(r.issues[2].reason, /duplicate/);
  assert.deepEqual(r.phases, ['features', 'train']);
  assert.ok(r.steps >= 5 && r.lossesFinite, 'progress per step with finite losses');
  assert.ok(asked.length >= 8, `too few held-out sentences (${asked.length})`);
  // Native (tests/finetune.rs) asserts >= 80 %; the browser run holds a margin for float differences.
  assert.ok(adopted / asked.length >= 0.7, `the term was adopted in ${adopted}/${asked.length} held-out sentences`);
  // The keep measure: the 80 ordinary pairs are the unrelated ones; the head alone moves none
  // of them natively (tests/finetune.rs); a margin for float differences.
  const keep = r.unrelatedChanged;
  log(`unrelated sentences changed: ${keep.changed} of ${keep.sentences}`);
  assert.ok(keep.sentences >= 70 && keep.sentences <= 85, `unrelated pairs: ${keep.sentences}`);
  assert.ok(keep.changed <= 0.1 * keep.sentences, `unrelated pairs changed: ${keep.changed}`);
  assert.equal(r.cancelError, 'AbortError', 'a cancelled fine-tuning rejects with AbortError');
  assert.deepEqual(r.afterCancel, r.after, 'after a cancel the translator works, with the adapter it had');
  assert.deepEqual(r.off, r.before, 'taking the adapter off gives the base model back exactly');
  assert.match(r.refused, /another base model/);
  const sh = r.sharding;
  log(`features pass on ${sh.mainWorkers} workers (${sh.cores} cores); 1 vs 3 workers (${sh.shards[1]} chunks): same ids ${sh.sameIds}, worst |Δ| u ${sh.du.toExponential(2)} (scale ${sh.scale.toFixed(3)}), v ${sh.dv.toExponential(2)}, bias ${sh.db.toExponential(2)}`);
  assert.equal(sh.mainWorkers, Math.min(Math.max(sh.cores, 1), 4), 'by default one features worker per core (at most 4)');
  assert.deepEqual(sh.workers, [1, 3]);
  assert.ok(sh.shards[0] === 1 && sh.shards[1] >= 2, `shards ${sh.shards}`);
  assert.equal(sh.positions[0], sh.positions[1]);
  assert.ok(sh.sameIds, 'sharded and unsharded runs train the same token set');
  // Shards batch differently (padding), so the two agree to rounding, not bit for bit.
  assert.ok(sh.scale > 0 && sh.du <= 1e-3 * sh.scale && sh.dv <= 1e-3 && sh.db <= 1e-3 * Math.max(sh.scale, 1), 'sharded and unsharded adapters agree');

  // IndexedDB: survives a reload; the stored bytes give the same translations.
  await page.reload();
  const reloaded = await page.evaluate(async (held) => {
    const m = await import('/marian-wasm.js');
    const kept = await m.listAdapters();
    const a = await m.getAdapter('cars');
    const t = await m.MarianTranslator.create({ model: '/models/default/', adapter: a?.bytes });
    const out = await t.translate(held);
    t.destroy();
    return { names: kept.map((k) => k.name), out };
  }, held);
  assert.deepEqual(reloaded.names, ['cars']);
  assert.deepEqual(reloaded.out, r.after, 'the stored adapter translates as the fresh one did');

  // The demo's panel.
  await page.goto(`${baseUrl}/index.html?sw=0`);
  await page.waitForFunction(() => /Model ready|Error/.test(document.getElementById('status')?.textContent ?? ''), undefined, { timeout: 120_000 });
  const panelPairs = [...withTerm.slice(0, 45), ...general.slice(0, 15)];
  await page.getByLabel('Sentence pairs').fill(panelPairs.map((p) => `${p.source}\t${p.target}`).join('\n') + '\nno tab on this line\n');
  await page.getByLabel('Epochs').fill('3');
  await page.getByLabel('Adapt the last layer too (slower)').check();
  await page.getByRole('button', { name: 'Train' }).click();
  await page.waitForFunction(() => /Fine-tuned|Error/.test(document.getElementById('status')?.textContent ?? ''), undefined, { timeout: 200_000 });
  const result = (await page.locator('#ft-result').textContent()) ?? '';
  log('panel:', result);
  assert.match(result, /Held-out pairs: BLEU [\d.]+, chrF [\d.]+ before → BLEU [\d.]+, chrF [\d.]+ after/);
  // The keep measure beside them, over the ordinary pairs (15, some held out).
  assert.match(result, /Unrelated sentences changed: [\d.]+ % \(\d+ of 1[0-5]\)\./);
  // 60 pairs (< 64): one worker, on the CPU (the demo's default device here is the CPU).
  assert.match(result, /on 1 CPU worker\)\.$/);
  assert.match(result, /the head and the last decoder layer adapted/, 'the checkbox trains the last-layer adapter');
  assert.match((await page.locator('#ft-issues summary').textContent()) ?? '', /Skipped pairs \(1\)/);
  const inked = await page.evaluate(() => {
    const c = /** @type {HTMLCanvasElement} */ (document.getElementById('ft-chart'));
    const d = c.getContext('2d')?.getImageData(0, 0, c.width, c.height).data ?? [];
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
    return n;
  });
  assert.ok(inked > 100, 'the loss chart is drawn');
  await page.getByLabel('Adapter name').fill('panel-adapter');
  await page.getByRole('button', { name: 'Keep' }).click();
  await page.locator('#adapters tbody tr', { hasText: 'panel-adapter' }).waitFor();
  await page.reload();
  await page.waitForFunction(() => /Model ready|Error/.test(document.getElementById('status')?.textContent ?? ''), undefined, { timeout: 120_000 });
  assert.equal(await page.locator('#ft-active').textContent(), 'Adapter in use: panel-adapter', 'the kept adapter is back on after a reload');
}
