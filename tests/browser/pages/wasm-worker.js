// A Web Worker for tests and benchmarks that drive a wasm build directly (not through
// marian-wasm.js): the multi-threaded build blocks on Atomics.wait, which the page's own thread may
// not do. One request per worker:
//   { build: 'pkg' | 'pkg-mt' | 'pkg-relaxed' | 'pkg-mt-relaxed', threads, model, texts, beams?,
//     bench?: { batch, tokens }, relaxedProposal?: 'auto' | 'on' | 'off' }
// -> { ok: true, threads, loadS, loadMemoryMB, wasmMemoryMB, relaxedProposal, texts?, ids?, bench? }
//    or { ok: false, error } (loadMemoryMB: the heap once the model is loaded, before any work;
//    relaxedProposal: what the relaxed twins decided about their proposal pass, relaxed_probe.rs).

import { loadTranslator } from '/store.js';

self.addEventListener('message', async (/** @type {MessageEvent<any>} */ ev) => {
  const req = ev.data;
  try {
    const m = await import(`/${req.build}/marian_wasm.js`);
    const exports = await m.default();
    // The module's linear memory never shrinks: its size after the work is the wasm heap's peak.
    const memoryMB = () => (exports.memory?.buffer?.byteLength ?? NaN) / 2 ** 20;
    if (req.build.startsWith('pkg-mt')) await m.initThreadPool(req.threads);
    if (req.relaxedProposal) m.relaxedProposal(req.relaxedProposal);
    const t0 = performance.now();
    const t = await loadTranslator(m, req.model, { device: 'wasm', store: false });
    const loadS = (performance.now() - t0) / 1000;
    /** @type {Record<string, unknown>} */
    const out = { ok: true, threads: t.threads, loadS, loadMemoryMB: memoryMB() };
    if (req.bench) {
      out.bench = await t.benchmark(req.texts, req.bench.batch, req.bench.tokens);
    } else {
      const r = await t.translateWithIds(req.texts, { beams: req.beams ?? 1 });
      const field = (/** @type {string} */ k) => (r instanceof Map ? r.get(k) : r[k]);
      out.texts = Array.from(field('texts'), String);
      out.ids = Array.from(field('ids'), (a) => Array.from(a, Number));
    }
    out.wasmMemoryMB = memoryMB();
    out.relaxedProposal = m.relaxedProposal();
    t.free();
    self.postMessage(out);
  } catch (e) {
    self.postMessage({ ok: false, error: String(/** @type {any} */ (e)?.stack ?? e) });
  }
});
