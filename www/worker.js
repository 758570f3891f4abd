// marian-wasm translation worker (module worker).
//
// Protocol (all messages are plain objects):
//   page -> worker  { type: 'load', url }                        load the model package at url
//                   { type: 'translate', id, texts, options? }    options: { beams?, maxLength? }
//   worker -> page  { type: 'progress', loaded, total, file }
//                   { type: 'ready', loadMs }
//                   { type: 'result', id, texts, ms }
//                   { type: 'error', id?, message }
// Translation runs here, off the page's main thread; the page stays responsive.

import init, { Translator } from './pkg/marian_wasm.js';

/** @typedef {{ type: 'load', url: string }} LoadMessage */
/** @typedef {{ type: 'translate', id: number, texts: string[], options?: { beams?: number, maxLength?: number | null } }} TranslateMessage */

/** @type {Promise<unknown> | null} */
let wasmReady = null;
/** @type {Translator | null} */
let translator = null;

/** @param {Record<string, unknown>} msg */
const post = (msg) => self.postMessage(msg);

/** @param {unknown} e */
const message = (e) => (e instanceof Error ? e.message : String(e));

/** @param {LoadMessage} msg */
async function load(msg) {
  wasmReady ??= init();
  await wasmReady;
  translator?.free();
  translator = null;
  const t0 = performance.now();
  translator = await Translator.fromUrl(msg.url, (/** @type {number} */ loaded, /** @type {number} */ total, /** @type {string} */ file) =>
    post({ type: 'progress', loaded: Number(loaded), total: Number(total), file }),
  );
  post({ type: 'ready', loadMs: performance.now() - t0 });
}

/** @param {TranslateMessage} msg */
async function translate(msg) {
  if (!translator) throw new Error('no model loaded');
  const t0 = performance.now();
  // Unset options fall back to the model's generation config (as HF generate does).
  const options = { maxLength: null, ...msg.options };
  const out = await translator.translateWithIds(msg.texts, options);
  const texts = Array.from(out instanceof Map ? out.get('texts') : out.texts, String);
  post({ type: 'result', id: msg.id, texts, ms: performance.now() - t0 });
}

// Messages are handled one at a time, in order (a translate sent during a load waits for it).
let queue = Promise.resolve();
self.addEventListener('message', (/** @type {MessageEvent<LoadMessage | TranslateMessage>} */ ev) => {
  const msg = ev.data;
  queue = queue.then(async () => {
    try {
      if (msg.type === 'load') await load(msg);
      else if (msg.type === 'translate') await translate(msg);
      else throw new Error(`unknown message type ${JSON.stringify(/** @type {any} */ (msg).type)}`);
    } catch (e) {
      post({ type: 'error', id: /** @type {any} */ (msg).id, message: message(e) });
    }
  });
});
