// Runs one request in a fresh tests/browser/pages/wasm-worker.js (a wasm build driven directly, not
// through marian-wasm.js) and returns its reply. Kept outside tests/browser/tests/, where run.mjs
// would load every .mjs as a test.

/**
 * @param {import('playwright-core').Page} page  on a page served by the test server
 * @param {Record<string, unknown>} req  { build, threads, model, texts, beams?, bench? } (see wasm-worker.js)
 * @returns {Promise<any>} { ok: true, threads, loadS, ... } or { ok: false, error }
 */
export async function inWasmWorker(page, req) {
  return page.evaluate(
    (req) =>
      new Promise((resolve) => {
        const w = new Worker('/test-pages/wasm-worker.js', { type: 'module' });
        w.onmessage = (ev) => (w.terminate(), resolve(ev.data));
        w.postMessage(req);
      }),
    req,
  );
}
