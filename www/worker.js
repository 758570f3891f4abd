// The marian-wasm Web Worker: the model lives and runs here, off the page's main thread.
// marian-wasm.js starts it and is its only intended client.
//
// Requests (page -> worker), each with a numeric id:
//   { type: 'create',    id, model, device, store, threads, targetLanguage, manifestSha256 }
//                                                      load a package (from the store, else the
//                                                      network); threads: see wasmBuild below;
//                                                      manifestSha256: a catalog's pin (store.js)
//   { type: 'translate', id, texts, options }         -> { texts, tokens, issues, ms }
//   { type: 'stream',    id, text, options }          -> 'partial' messages, then { text, tokens, ms }
//   { type: 'cancel',    id }                         handled at once, not queued: drops a queued
//                                                      request and aborts a download in progress
//   { type: 'finetune',  id, pairs, options }         -> 'ftprogress' messages, then
//                                                      { adapter, report, issues, valBefore, valAfter, unrelatedChanged }
//   { type: 'ftjob',     id, pairs, options, workers } check, split and tokenize the pairs; keep the
//                                                      job here -> { shards, topK, pairs }
//   { type: 'ftfeatures', id, inputs, topK, gpu }     the features pass over one shard (any worker
//                                                      with the model) -> 'ftprogress', then bytes
//   { type: 'ftrun',     id, shards | null }          train the kept job on the shards' bytes (null:
//                                                      run the features pass here) -> as 'finetune'
//   { type: 'adapter',   id, bytes | null }           put an adapter on (or take it off)
//   { type: 'destroy',   id }                         free the model's memory
//   { type: 'memory',    id }                         -> { wasmBytes }: the size of the wasm
//                                                      module's linear memory (it never shrinks)
//   { type: 'detect',    id, texts, expected }        -> per text [{ detectedLanguage, confidence }]
//                                                      best first (language detection; no model
//                                                      needed: loads the plain build if none is)
// Replies (worker -> page):
//   { type: 'progress', id, loaded, total, file, fromCache }
//   { type: 'partial',  id, text }                     the translation so far (stable prefix)
//   { type: 'ftprogress', id, phase, epoch, epochs, step, steps, loss, etaSeconds }
//   { type: 'result',   id, value }
//   { type: 'error',    id, name, message }
// Requests run one at a time in arrival order (a translate sent during a load waits for it).

import { loadPackage, packageFiles } from './store.js';
import './wasm-features.js';

/** @typedef {typeof import('./pkg/marian_wasm.js')} WasmModule */
/** @typedef {WasmModule & { initThreadPool(n: number): Promise<unknown> }} ThreadedModule */
/** @typedef {import('./pkg/marian_wasm.js').Translator} Translator */

/** The build in use, its thread count, its name and its linear memory. @type {Promise<{ wasm: WasmModule, threads: number, threadsUnavailable: string | null, wasmBuild: string, memory: WebAssembly.Memory }> | null} */
let wasmReady = null;
/** @type {Translator | null} */
let translator = null;
/** Ids the page cancelled. @type {Set<number>} */
const cancelled = new Set();
/** Downloads in progress, by request id. @type {Map<number, AbortController>} */
const downloads = new Map();
/** The fine-tuning job between 'ftjob' and 'ftrun'. @type {import('./pkg/marian_wasm.js').FineTuneJob | null} */
let job = null;

/** @param {Record<string, unknown>} msg */
const post = (msg) => self.postMessage(msg);

/**
 * @param {string} name
 * @param {string} message
 */
function namedError(name, message) {
  const e = new Error(message);
  e.name = name;
  return e;
}

/** How long the thread pool may take to start before the single-threaded build is used. */
const POOL_START_TIMEOUT_MS = 20000;

/** Whether this engine runs relaxed SIMD (wasm-features.js). */
const RELAXED_SIMD = Boolean(/** @type {any} */ (self).marianWasmFeatures?.relaxedSimd);

/**
 * Import and instantiate one wasm build: its relaxed-SIMD twin (greedy's 8-bit proposal pass; same
 * tokens) where the engine runs relaxed SIMD and the deploy has it, else the plain one.
 * @template {WasmModule} T
 * @param {() => Promise<T>} relaxed
 * @param {() => Promise<T>} plain
 * @returns {Promise<{ module: T, memory: WebAssembly.Memory, relaxed: boolean }>}
 */
async function importBuild(relaxed, plain) {
  if (RELAXED_SIMD) {
    try {
      const module = await relaxed();
      const { memory } = await module.default();
      return { module, memory, relaxed: true };
    } catch (e) {
      console.warn(`marian-wasm: the relaxed-SIMD build did not load (${e instanceof Error ? e.message : String(e)}); using the plain one`);
    }
  }
  const module = await plain();
  const { memory } = await module.default();
  return { module, memory, relaxed: false };
}

/**
 * Load the wasm build: the multi-threaded one (www/pkg-mt, rayon's pool on `threads` Web Workers
 * over shared memory) when more than one thread is asked for and the page is cross-origin isolated
 * (COOP/COEP: SharedArrayBuffer), else the single-threaded one (www/pkg); each in its relaxed-SIMD
 * form (www/pkg-mt-relaxed, www/pkg-relaxed) where the browser runs relaxed SIMD. All give the same
 * tokens.
 * @param {number | undefined} asked  threads asked for; default one per core, at most 8
 * @returns {Promise<{ wasm: WasmModule, threads: number, threadsUnavailable: string | null, wasmBuild: string, memory: WebAssembly.Memory }>}
 */
async function wasmBuild(asked) {
  const cores = self.navigator?.hardwareConcurrency ?? 1;
  const want = asked ?? Math.min(cores, 8);
  /** @type {string | null} */
  let why = null;
  if (want > 1 && !self.crossOriginIsolated) {
    why = 'the page is not cross-origin isolated (serve it with COOP: same-origin and COEP: require-corp)';
  } else if (want > 1 && typeof SharedArrayBuffer === 'undefined') {
    why = 'this browser has no SharedArrayBuffer';
  } else if (want > 1) {
    // The relaxed twin first where it runs, then the plain build: a twin whose pool does not start
    // falls back to plain threads, not to one thread.
    /** @type {{ name: string, load: () => Promise<ThreadedModule> }[]} */
    const tries = [{ name: 'pkg-mt', load: () => import('./pkg-mt/marian_wasm.js') }];
    if (RELAXED_SIMD) tries.unshift({ name: 'pkg-mt-relaxed', load: () => import('./pkg-mt-relaxed/marian_wasm.js') });
    for (const { name, load } of tries) {
      try {
        const mt = await load();
        const { memory } = await mt.default();
        let timer;
        const timeout = new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`the thread pool did not start in ${POOL_START_TIMEOUT_MS} ms`)), POOL_START_TIMEOUT_MS);
        });
        await Promise.race([mt.initThreadPool(want), timeout]).finally(() => clearTimeout(timer));
        return { wasm: mt, threads: mt.computeThreads(), threadsUnavailable: null, wasmBuild: name, memory };
      } catch (e) {
        why = `the multi-threaded build did not start: ${e instanceof Error ? e.message : String(e)}`;
        console.warn(`marian-wasm: ${name}: ${why}`);
      }
    }
    console.warn('marian-wasm: computing on one thread');
  }
  const { module: st, memory, relaxed } = await importBuild(
    () => /** @type {Promise<WasmModule>} */ (import('./pkg-relaxed/marian_wasm.js')),
    () => /** @type {Promise<WasmModule>} */ (import('./pkg/marian_wasm.js')),
  );
  return { wasm: st, threads: 1, threadsUnavailable: why, wasmBuild: relaxed ? 'pkg-relaxed' : 'pkg', memory };
}

/** @param {any} msg */
async function create(msg) {
  if (msg.threads !== undefined && !(Number.isInteger(msg.threads) && msg.threads >= 1)) {
    throw namedError('TypeError', `threads must be a positive integer, not ${JSON.stringify(msg.threads)}`);
  }
  wasmReady ??= wasmBuild(msg.threads);
  const { wasm, threads, threadsUnavailable, wasmBuild: build } = await wasmReady;
  translator?.free();
  translator = null;
  const t0 = performance.now();
  const abort = new AbortController();
  downloads.set(msg.id, abort);
  try {
    const pkg = await loadPackage(msg.model, {
      signal: abort.signal,
      store: msg.store !== false,
      manifestSha256: msg.manifestSha256,
      onProgress: (p) => post({ type: 'progress', id: msg.id, ...p }),
    });
    try {
      translator = await wasm.Translator.fromFilesOn(packageFiles(pkg), msg.device ?? 'wasm');
    } catch (e) {
      // Asked for WebGPU by name and it cannot run the model: say why, in the API's terms.
      throw namedError('NotSupportedError', `WebGPU: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (msg.adapter) translator.setAdapter(msg.adapter);
    if (msg.targetLanguage != null) {
      try {
        translator.setTargetLanguage(msg.targetLanguage);
      } catch (e) {
        throw namedError('TypeError', e instanceof Error ? e.message : String(e));
      }
    }
    return {
      device: translator.device,
      gpuAdapter: translator.gpuAdapter ?? null,
      gpuUnavailable: translator.gpuUnavailable ?? null,
      threads,
      threadsUnavailable,
      wasmBuild: build,
      manifest: pkg.manifest,
      targetLanguages: translator.targetLanguages,
      modelSha256: translator.modelSha256,
      fromCache: pkg.fromCache,
      loadMs: performance.now() - t0,
    };
  } finally {
    downloads.delete(msg.id);
  }
}

function needModel() {
  if (!translator) throw namedError('InvalidStateError', 'no model loaded (the translator was destroyed or never created)');
  return translator;
}

/** @param {any} out */
function field(out, name) {
  return out instanceof Map ? out.get(name) : out[name];
}

/** @param {any} msg */
async function translate(msg) {
  const t = needModel();
  const t0 = performance.now();
  const out = await t.translateWithIds(msg.texts, msg.options ?? {});
  const texts = Array.from(field(out, 'texts'), String);
  /** @type {number[][]} */
  const ids = Array.from(field(out, 'ids'), (a) => Array.from(a, Number));
  // Generated tokens: everything after each chunk's decoder start token.
  const tokens = ids.reduce((s, a) => s + Math.max(0, a.length - 1), 0);
  // What passed through untranslated (a word longer than the model's positions) and why.
  /** @type {string[][]} */
  const issues = Array.from(field(out, 'issues') ?? [], (a) => Array.from(a, String));
  issues.forEach((list, i) => list.forEach((why) => console.warn(`marian-wasm: text ${i + 1}: ${why}`)));
  return { texts, tokens, issues, ms: performance.now() - t0, device: String(field(out, 'device')) };
}

/** @param {any} msg */
async function stream(msg) {
  const t = needModel();
  const t0 = performance.now();
  const out = await t.translateStreaming(msg.text, msg.options ?? {}, (/** @type {string} */ partial) =>
    post({ type: 'partial', id: msg.id, text: partial }),
  );
  return {
    text: String(field(out, 'text')),
    tokens: Number(field(out, 'tokens')),
    ms: performance.now() - t0,
    device: String(field(out, 'device')),
  };
}

/** Fine-tuning progress reports of request `id`, relayed to the page. @param {number} id */
const progressTo = (id) => (/** @type {any} */ p) => post({ type: 'ftprogress', id, ...p });

/** @param {any} msg */
function fineTune(msg) {
  const t = needModel();
  const t0 = performance.now();
  const out = t.fineTune(msg.pairs, msg.options ?? {}, progressTo(msg.id));
  out.ms = performance.now() - t0;
  return out;
}

/** @param {any} msg */
function startFineTuneJob(msg) {
  const t = needModel();
  job?.free();
  job = null;
  job = t.fineTuneJob(msg.pairs, msg.options ?? {});
  return { shards: Array.from(job.shardInputs(msg.workers ?? 1)), topK: job.topK, pairs: job.pairs };
}

/** @param {any} msg */
function fineTuneFeatures(msg) {
  const t = needModel();
  // On the GPU (WebGPU) when asked: the worker's own translator is then on it.
  if (msg.gpu) return t.fineTuneFeaturesGpu(msg.inputs, msg.topK, progressTo(msg.id));
  return t.fineTuneFeatures(msg.inputs, msg.topK, progressTo(msg.id));
}

/** @param {any} msg */
function fineTuneRun(msg) {
  const t = needModel();
  if (!job) throw namedError('InvalidStateError', 'no fine-tuning job (ftjob) on this worker');
  const t0 = performance.now();
  try {
    const out = t.fineTuneRun(job, msg.shards ?? undefined, progressTo(msg.id));
    out.ms = performance.now() - t0;
    return out;
  } finally {
    job.free();
    job = null;
  }
}

/** The plain build, loaded for language detection alone. @type {Promise<WasmModule> | null} */
let detectReady = null;

/**
 * A build that exports detectLanguage: the one the model runs on when it has it (builds from
 * before language detection do not), else the plain single-threaded one.
 * @returns {Promise<WasmModule>}
 */
async function detectionBuild() {
  if (wasmReady) {
    const { wasm } = await wasmReady;
    if (typeof wasm.detectLanguage === 'function') return wasm;
  }
  detectReady ??= import('./pkg/marian_wasm.js').then(async (m) => {
    await m.default();
    return m;
  });
  return detectReady;
}

/** @param {any} msg */
async function detect(msg) {
  const wasm = await detectionBuild();
  if (typeof wasm.detectLanguage !== 'function') {
    throw namedError('NotSupportedError', 'this deploy of marian-wasm was built without language detection (rebuild www/pkg)');
  }
  /** @type {string[]} */
  const texts = msg.texts ?? [];
  return texts.map((t) => wasm.detectLanguage(t, msg.expected ?? undefined));
}

/** @param {any} msg */
async function handle(msg) {
  switch (msg.type) {
    case 'create':
      return create(msg);
    case 'translate':
      return translate(msg);
    case 'stream':
      return stream(msg);
    case 'finetune':
      return fineTune(msg);
    case 'ftjob':
      return startFineTuneJob(msg);
    case 'ftfeatures':
      return fineTuneFeatures(msg);
    case 'ftrun':
      return fineTuneRun(msg);
    case 'adapter':
      return needModel().setAdapter(msg.bytes ?? undefined) ?? null;
    case 'detect':
      return detect(msg);
    case 'memory':
      return { wasmBytes: wasmReady ? (await wasmReady).memory.buffer.byteLength : 0 };
    case 'destroy':
      translator?.free();
      translator = null;
      return true;
    default:
      throw namedError('TypeError', `unknown request type ${JSON.stringify(msg.type)}`);
  }
}

let queue = Promise.resolve();
self.addEventListener('message', (/** @type {MessageEvent<any>} */ ev) => {
  const msg = ev.data;
  if (msg?.type === 'cancel') {
    cancelled.add(msg.id);
    downloads.get(msg.id)?.abort(new DOMException('the request was cancelled', 'AbortError'));
    return;
  }
  queue = queue.then(async () => {
    if (cancelled.delete(msg.id)) {
      post({ type: 'error', id: msg.id, name: 'AbortError', message: 'the request was cancelled' });
      return;
    }
    try {
      const value = await handle(msg);
      // A features shard (megabytes) moves to the page instead of being copied.
      const transfer = value instanceof Uint8Array ? [value.buffer] : [];
      self.postMessage({ type: 'result', id: msg.id, value }, transfer);
    } catch (e) {
      const err = /** @type {any} */ (e);
      post({ type: 'error', id: msg.id, name: err?.name ?? 'Error', message: String(err?.message ?? err) });
    }
  });
});
