// marian-wasm: neural machine translation in the page, no server.
//
//   import { MarianTranslator } from 'marian-wasm';
//   const t = await MarianTranslator.create({ monitor(m) { m.addEventListener('downloadprogress', (e) => …) } });
//   await t.translate('A man is riding a bicycle.');     // → "Un homme fait du vélo."
//
// The shape follows Chrome's built-in Translator API (availability / create / translate /
// translateStreaming / destroy): `create({ sourceLanguage: 'en', targetLanguage: 'de', catalog })`
// picks the package from a model catalog (catalog.js) — or, when no model translates the pair but
// the catalog has X→en and en→Y, chains the two (pivoting through English; `translator.route`) —
// or `create({ model })` names one. The model runs in a Web Worker this module starts itself, so the
// page's main thread never blocks; packages are kept in the Cache API (store.js) after the first load.
// `MarianLanguageDetector` (Chrome's LanguageDetector shape) tells a text's language without a
// model, and `create({ sourceLanguage: 'auto', targetLanguage, catalog })` uses it to send each
// text to the catalog's model for its language.

import { deleteModel, hasModel, listModels, packageUrl } from './store.js';
import {
  builtinCatalog,
  canonicalLanguage,
  catalogPairs,
  findModel,
  findRoute,
  isEnglish,
  PIVOT_LANGUAGE,
  languageDistance,
  loadCatalog,
  parseCatalog,
} from './catalog.js';
import { PageTranslator } from './page-translator.js';
import { deleteAdapter, getAdapter, listAdapters, readAdapterManifest, saveAdapter } from './adapters.js';

export { PageTranslator, listModels, deleteModel };
export { loadCatalog, parseCatalog, findModel, findRoute, canonicalLanguage };
export { saveAdapter, listAdapters, getAdapter, deleteAdapter, readAdapterManifest };

/** The package shipped with this module (the embedded default en→fr model). */
export const DEFAULT_MODEL = new URL(/* @vite-ignore */ './models/default/', import.meta.url).href;

/** The catalog used when none is given: the embedded default en→fr model only. */
export const BUILTIN_CATALOG = builtinCatalog(DEFAULT_MODEL);

/**
 * @typedef {'auto' | 'webgpu' | 'wasm'} Device
 * @typedef {'available' | 'downloadable' | 'unavailable'} Availability
 * @typedef {{ beams?: number, maxLength?: number, lengthPenalty?: number, batchSize?: number,
 *   targetLanguage?: string, signal?: AbortSignal }} TranslateOptions
 *   `targetLanguage`: a multi-target model's output language for this call (one of
 *   `translator.targetLanguages`, e.g. "fra"; for a translator created by language also one of
 *   its catalog entry's BCP 47 tags, e.g. "es"), instead of the one given to `create`.
 * @typedef {{ text: string, issues: string[] }} TranslateResult
 *   `issues`: why parts of the text were kept as they were instead of translated (a word longer
 *   than the model's positions, a text over 1 MiB); empty when the model translated all of it.
 *   Texts without letters (numbers, emoji) pass through by rule, with no issue.
 * @typedef {{ tokens: number, ms: number, device: string, issues: string[][] | null,
 *   legs?: RunFigures[], languages?: string[] }} RunFigures
 *   `languages` (a `sourceLanguage: "auto"` translator): per input, the language its text was
 *   taken to be (a canonical tag from the detector, or the fallback; see "Language detection").
 *   `issues`: per input text, as in TranslateResult; null after translateStreaming (which does
 *   not report them). A pivot translator (`route` of two legs) sums `tokens` and `ms` over its
 *   legs (they run one after the other), gives the legs' issues of each input together (each
 *   prefixed with its leg, "de → en: …"), and lists each leg's own figures in `legs`; `device`
 *   is the translator's.
 * @typedef {{ sourceLanguage: string | null, targetLanguage: string | null,
 *   targetCode: string | null, url: string, catalogEntry: CatalogEntry | null }} RouteLeg
 *   One model a translator runs: the BCP 47 tags it translates between (for a pivot, the
 *   requested source → "en", then "en" → the requested target; by `model` URL: null / the code
 *   given), the model's own target code put before every text, or null, its package URL and the
 *   catalog entry it was picked from (null by URL).
 * @typedef {import('./catalog.js').Catalog} Catalog
 * @typedef {import('./catalog.js').CatalogEntry} CatalogEntry
 * @typedef {{ model?: string | URL, sourceLanguage?: string, targetLanguage?: string,
 *   catalog?: string | URL | Catalog, signal?: AbortSignal }} AvailabilityOptions
 *   Either `model` (a package URL) or `sourceLanguage` + `targetLanguage` (BCP 47 tags; the
 *   package is picked from `catalog`, default BUILTIN_CATALOG), not both (TypeError).
 * @typedef {{ model?: string | URL, sourceLanguage?: string, catalog?: string | URL | Catalog,
 *   device?: Device, store?: boolean, signal?: AbortSignal,
 *   monitor?: (m: EventTarget) => void, adapter?: Uint8Array, threads?: number,
 *   targetLanguage?: string }} CreateOptions
 *   By language: `sourceLanguage` and `targetLanguage` are BCP 47 tags (canonicalized: "FR-ca",
 *   "iw", "pt_BR" are fine; an invalid tag is a RangeError), matched against `catalog` (a URL, or
 *   a parsed catalog object; default BUILTIN_CATALOG, the embedded en→fr model) with BCP 47 lookup
 *   fallback ("fr-CA" → "fr", "zh-Hant-TW" → "zh-Hant" → "zh") and likely subtags ("zh-TW" → a
 *   "zh-Hant" model), preferring the closest tags, then a single-target model; a multi-target
 *   model gets the matching code of its own (`>>fra<<`). No model for the pair: a
 *   NotSupportedError DOMException naming the pair. With a catalog, the downloaded manifest.json
 *   must have the catalog's sha256.
 *   Pivoting: when no model translates the pair but the catalog has one for source → "en" and
 *   one for "en" → target (each matched by the same rules), the translator chains them (two
 *   workers, two downloads; `translator.route` lists the legs). A direct model always wins; never
 *   a pivot when the source or target is English. An `adapter` is refused for a pivot (put it on
 *   a leg's model, created by URL).
 *   By model: `model` is a package URL and `targetLanguage`, if given, a multi-target model's own
 *   code (opus-mt-en-ROMANCE, tc-big multi-target models: one of `translator.targetLanguages`,
 *   e.g. "fra"), put before every text as `>>fra<< ` is in transformers. A model with several
 *   needs one (here or per call); a code the model lacks, or any code for a model with one target
 *   language, is a TypeError naming the model's codes. `model` together with `sourceLanguage` or
 *   `catalog` is a TypeError (one way to choose the model at a time).
 *   Neither: the embedded default en→fr model.
 *   `threads`: CPU threads to translate on (default: one per core, at most 8). More than one needs a
 *   cross-origin isolated page (COOP: same-origin, COEP: require-corp); elsewhere one thread runs and
 *   `threadsUnavailable` says why.
 * @typedef {{ phase: 'features' | 'train', epoch: number, epochs: number, step: number,
 *   steps: number, loss: number, etaSeconds: number }} FineTuneProgress
 * @typedef {{ epochs?: number, minSteps?: number, lr?: number, rank?: number, lastLayerRank?: number,
 *   klWeight?: number, labelSmoothing?: number, termPValue?: number, sourceTriggers?: boolean,
 *   weightDecay?: number, batchPositions?: number, learnBelow?: number, minTaught?: number,
 *   minTaughtShare?: number, trainBias?: boolean, klLearnWeight?: number, topK?: number,
 *   learnAfterTerm?: boolean, valFraction?: number, beams?: number, workers?: number,
 *   onProgress?: (p: FineTuneProgress) => void, signal?: AbortSignal }} FineTuneOptions
 * @typedef {{ adapter: Uint8Array, manifest: import('./adapters.js').AdapterManifest, report: any,
 *   issues: { index: number, reason: string }[], valBefore: { bleu: number, chrf: number } | null,
 *   valAfter: { bleu: number, chrf: number } | null,
 *   unrelatedChanged: { sentences: number, changed: number },
 *   ms: number, featureWorkers: number }} FineTuneResult
 *   `unrelatedChanged`: of the pairs the adapter does not touch (held-out ones first, then
 *   training ones; at most 100), how many translate differently with it — the keep measure.
 */

/**
 * The `downloadprogress` event: like Chrome's, `loaded` is a fraction of `total` (1); the byte
 * counts and the current file are given as well.
 */
export class DownloadProgressEvent extends Event {
  /** @param {{ loaded: number, total: number, file: string, fromCache: boolean }} p */
  constructor(p) {
    super('downloadprogress');
    /** Fraction of the package loaded, 0..1. */
    this.loaded = p.total > 0 ? p.loaded / p.total : 1;
    this.total = 1;
    this.bytesLoaded = p.loaded;
    this.bytesTotal = p.total;
    this.file = p.file;
    /** Whether the bytes came from the model store rather than the network. */
    this.fromCache = p.fromCache;
  }
}

/** @param {string} name @param {string} message */
function domError(name, message) {
  return new DOMException(message, name);
}

/** One worker and the requests in flight on it. */
class WorkerClient {
  /** @param {Worker} worker */
  constructor(worker) {
    this.worker = worker;
    this.nextId = 1;
    /** @type {Map<number, { resolve: (v: any) => void, reject: (e: any) => void, onMessage?: (m: any) => void }>} */
    this.pending = new Map();
    worker.addEventListener('message', (ev) => this.receive(ev.data));
    worker.addEventListener('error', (ev) => {
      ev.preventDefault?.();
      this.failAll(new Error(`the translation worker failed: ${ev.message || 'unknown error'}`));
    });
  }

  /** @param {any} m */
  receive(m) {
    const p = this.pending.get(m?.id);
    if (!p) return;
    if (m.type === 'result') {
      this.pending.delete(m.id);
      p.resolve(m.value);
    } else if (m.type === 'error') {
      this.pending.delete(m.id);
      const e =
        m.name === 'TypeError' ? new TypeError(m.message) : m.name === 'Error' ? new Error(m.message) : domError(m.name, m.message);
      p.reject(e);
    } else {
      p.onMessage?.(m);
    }
  }

  /** @param {Error} e */
  failAll(e) {
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }

  /**
   * @param {Record<string, unknown>} msg
   * @param {{ signal?: AbortSignal, onMessage?: (m: any) => void }} [opts]
   * @returns {Promise<any>}
   */
  request(msg, opts = {}) {
    const { signal, onMessage } = opts;
    if (signal?.aborted) return Promise.reject(signal.reason ?? domError('AbortError', 'aborted'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        if (!this.pending.delete(id)) return;
        this.worker.postMessage({ type: 'cancel', id });
        reject(signal?.reason ?? domError('AbortError', 'aborted'));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const done = () => signal?.removeEventListener('abort', onAbort);
      this.pending.set(id, {
        resolve: (v) => (done(), resolve(v)),
        reject: (e) => (done(), reject(e)),
        onMessage,
      });
      this.worker.postMessage({ ...msg, id });
    });
  }

  terminate() {
    this.failAll(domError('InvalidStateError', 'the translator was destroyed'));
    this.worker.terminate();
  }
}

function startWorker() {
  return new WorkerClient(new Worker(new URL('./worker.js', import.meta.url), { type: 'module', name: 'marian-wasm' }));
}

function wasmSupported() {
  try {
    // The build uses SIMD128: a module with one v128 function must validate.
    return (
      typeof WebAssembly === 'object' &&
      WebAssembly.validate(
        new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11]),
      )
    );
  } catch {
    return false;
  }
}

/**
 * The languages the detector can tell apart (canonical BCP 47 tags): whatlang's 70, as
 * src/language.rs maps them (tests/browser 16-language-detection holds this list to the wasm
 * export's).
 */
export const DETECTABLE_LANGUAGES = Object.freeze([
  'af', 'ak', 'am', 'ar', 'az', 'be', 'bg', 'bn', 'ca', 'cs', 'cy', 'da', 'de', 'el', 'en', 'eo', 'es', 'et',
  'fa', 'fi', 'fil', 'fr', 'gu', 'he', 'hi', 'hr', 'hu', 'hy', 'id', 'it', 'ja', 'jv', 'ka', 'km', 'kn', 'ko',
  'la', 'lt', 'lv', 'mk', 'ml', 'mr', 'my', 'nb', 'ne', 'nl', 'or', 'pa', 'pl', 'pt', 'ro', 'ru', 'si', 'sk',
  'sl', 'sn', 'sr', 'sv', 'ta', 'te', 'th', 'tk', 'tr', 'uk', 'ur', 'uz', 'vi', 'yi', 'zh', 'zu',
]);

/**
 * The detector's language for a tag (its language subtag, as the detector names it), or null.
 * @param {string} tag  canonical
 */
function detectableLanguage(tag) {
  let lang = new Intl.Locale(tag).language;
  if (lang === 'no') lang = 'nb';
  return DETECTABLE_LANGUAGES.includes(lang) ? lang : null;
}

/**
 * @typedef {{ detectedLanguage: string, confidence: number }} LanguageDetectionResult
 *   `detectedLanguage`: a canonical BCP 47 language tag ("en", "fr", "zh"), or "und" (cannot tell).
 *   `confidence`: 0..1, the detector's (whatlang's) measure of how far the language is ahead of
 *   the next one given the length of the text; over 0.9 it calls a result reliable. Not a
 *   calibrated probability. A result's confidences sum to 1 ("und" takes the rest).
 * @typedef {{ expectedInputLanguages?: string[], signal?: AbortSignal,
 *   monitor?: (m: EventTarget) => void }} LanguageDetectorOptions
 *   `expectedInputLanguages`: BCP 47 tags; when given, detection chooses among these languages
 *   only (far more accurate on short text when the possible languages are known; unlike Chrome,
 *   where it is a hint). An invalid tag is a RangeError; a language the detector lacks makes
 *   `availability` "unavailable" and `create` a NotSupportedError.
 */

/**
 * Language detection in the shape of Chrome's LanguageDetector API, on the whatlang crate compiled
 * into marian-wasm's WebAssembly (src/language.rs): 70 languages, no model to download. It runs in
 * a Web Worker of its own.
 *
 *   const detector = await MarianLanguageDetector.create();
 *   await detector.detect('Une petite fille joue dans le parc.');
 *   // → [{ detectedLanguage: 'fr', confidence: 1 }]
 */
export class MarianLanguageDetector {
  /**
   * "available" where WebAssembly SIMD and workers are (nothing to download), else
   * "unavailable"; also "unavailable" when `expectedInputLanguages` has a language the detector
   * lacks. An invalid tag is a RangeError.
   * @param {LanguageDetectorOptions} [options]
   * @returns {Promise<Availability>}
   */
  static async availability(options = {}) {
    const expected = expectedLanguages(options.expectedInputLanguages);
    if (!wasmSupported() || typeof Worker === 'undefined') return 'unavailable';
    return expected && expected.some((t) => !detectableLanguage(t)) ? 'unavailable' : 'available';
  }

  /**
   * Start the detector's worker and load the WebAssembly (no model).
   * @param {LanguageDetectorOptions} [options]
   * @returns {Promise<MarianLanguageDetector>}
   */
  static async create(options = {}) {
    const expected = expectedLanguages(options.expectedInputLanguages);
    if (!wasmSupported()) throw domError('NotSupportedError', 'this browser lacks WebAssembly SIMD, which marian-wasm needs');
    const missing = expected?.filter((t) => !detectableLanguage(t)) ?? [];
    if (missing.length) {
      throw domError('NotSupportedError', `the language detector cannot detect ${missing.join(', ')} (it knows ${DETECTABLE_LANGUAGES.join(', ')})`);
    }
    options.monitor?.(new EventTarget());
    const client = startWorker();
    try {
      await client.request({ type: 'detect', texts: [] }, { signal: options.signal });
    } catch (e) {
      client.terminate();
      throw e;
    }
    return new MarianLanguageDetector(client, expected);
  }

  /**
   * @param {WorkerClient} client
   * @param {string[] | null} expected
   * @private
   */
  constructor(client, expected) {
    /** @private */
    this.client = client;
    /** The languages detection chooses among, or null for all it knows. @type {readonly string[] | null} */
    this.expectedInputLanguages = expected ? Object.freeze([...expected]) : null;
    /** @private */
    this.expected_ = expected ? [...new Set(expected.map((t) => /** @type {string} */ (detectableLanguage(t))))] : undefined;
    /** @private */
    this.destroyed = false;
  }

  /**
   * The languages of `text`, best first, ending with "und" unless the first is certain;
   * `[{ detectedLanguage: 'und', confidence: 1 }]` for text without letters or with no language
   * ahead.
   * @param {string} text
   * @param {{ signal?: AbortSignal }} [options]
   * @returns {Promise<LanguageDetectionResult[]>}
   */
  async detect(text, options = {}) {
    if (typeof text !== 'string') throw new TypeError('detect() takes a string');
    const [r] = await this.detectAll(/** @type {string[]} */ ([text]), options);
    return r;
  }

  /**
   * detect() for many texts in one message to the worker.
   * @param {string[]} texts
   * @param {{ signal?: AbortSignal }} [options]
   * @returns {Promise<LanguageDetectionResult[][]>}
   */
  async detectAll(texts, options = {}) {
    if (this.destroyed) throw domError('InvalidStateError', 'the language detector was destroyed');
    for (const t of texts) if (typeof t !== 'string') throw new TypeError('detectAll() takes an array of strings');
    return this.client.request({ type: 'detect', texts, expected: this.expected_ }, { signal: options.signal });
  }

  /** Stop the worker. Pending detections reject. */
  destroy() {
    if (this.destroyed) return;
    this.destroyed = true;
    this.client.terminate();
  }
}

/** @param {unknown} list @returns {string[] | null} */
function expectedLanguages(list) {
  if (list == null) return null;
  if (!Array.isArray(list)) throw new TypeError('expectedInputLanguages must be an array of BCP 47 tags');
  return list.map((t) => canonicalLanguage(t));
}

/** Split options for the worker (plain data) from the signal. @param {TranslateOptions} [o] */
function generationOptions(o = {}) {
  const { signal, ...rest } = o;
  return { options: rest, signal };
}

export class MarianTranslator {
  /**
   * Can a translator be created for this model or language pair here, and must it be downloaded
   * first? "unavailable" when no model in the catalog translates the pair, directly or by
   * pivoting through English (X → en, then en → Y; never an exception), or the browser cannot
   * run one; "available" when every model of the route is in the store. An invalid tag is a
   * RangeError, contradictory options a TypeError, a catalog that cannot be loaded or is not
   * valid an error naming it.
   * @param {AvailabilityOptions} [options]
   * @returns {Promise<Availability>}
   */
  static async availability(options = {}) {
    if (options.sourceLanguage === AUTO) return autoAvailability(options);
    const route = await chooseRoute(options);
    if (!wasmSupported() || typeof Worker === 'undefined' || !route) return 'unavailable';
    for (const leg of route) if (!(await hasModel(leg.model, leg.manifestSha256))) return 'downloadable';
    return 'available';
  }

  /**
   * Start a worker, load the model (store first, then network) and resolve when it can translate.
   * @param {CreateOptions} [options]
   * @returns {Promise<MarianTranslator>}
   */
  static async create(options = {}) {
    const device = options.device ?? 'auto';
    if (!['auto', 'webgpu', 'wasm'].includes(device)) {
      throw new TypeError(`device must be "auto", "webgpu" or "wasm", not ${JSON.stringify(device)}`);
    }
    if (!wasmSupported()) throw domError('NotSupportedError', 'this browser lacks WebAssembly SIMD, which marian-wasm needs');
    if (options.threads !== undefined && !(Number.isInteger(options.threads) && options.threads >= 1)) {
      throw new TypeError(`threads must be a positive integer, not ${JSON.stringify(options.threads)}`);
    }
    if (options.targetLanguage != null && typeof options.targetLanguage !== 'string') {
      throw new TypeError(`targetLanguage must be a string, not ${JSON.stringify(options.targetLanguage)}`);
    }
    if (options.sourceLanguage === AUTO) return MarianTranslator.createAuto_(options, device);
    const route = await chooseRoute(options);
    if (!route) {
      const c = await loadCatalog(options.catalog ?? BUILTIN_CATALOG);
      const pivot = !isEnglish(canonicalLanguage(options.sourceLanguage)) && !isEnglish(canonicalLanguage(options.targetLanguage));
      throw domError(
        'NotSupportedError',
        `no model in the catalog translates ${options.sourceLanguage} → ${options.targetLanguage}${pivot ? ' (nor a pair of models through English)' : ''} (it offers ${catalogPairs(c)})`,
      );
    }
    const monitor = new EventTarget();
    options.monitor?.(monitor);
    if (route.length === 1) {
      return MarianTranslator.load_(route[0], options, device, options.signal, (p) => monitor.dispatchEvent(new DownloadProgressEvent(p)));
    }
    if (options.adapter) {
      throw new TypeError(
        `an adapter is made for one model, and ${options.sourceLanguage} → ${options.targetLanguage} runs two (${describeRoute(route)}): put it on a leg's model, created by model URL`,
      );
    }
    // The legs load side by side, each in its own worker; the monitor sees one download (both
    // packages together; a leg's size is its catalog entry's until its first progress report).
    const progress = route.map((leg) => ({ loaded: 0, total: leg.entry?.size ?? 0 }));
    const report = (/** @type {number} */ i, /** @type {{ loaded: number, total: number, file: string, fromCache: boolean }} */ p) => {
      progress[i] = { loaded: p.loaded, total: p.total };
      const sum = (/** @type {'loaded' | 'total'} */ k) => progress.reduce((a, x) => a + x[k], 0);
      monitor.dispatchEvent(new DownloadProgressEvent({ loaded: sum('loaded'), total: sum('total'), file: p.file, fromCache: p.fromCache }));
    };
    const stop = new AbortController();
    const signal = options.signal ? anySignal([options.signal, stop.signal]) : stop.signal;
    const loads = route.map((leg, i) =>
      MarianTranslator.load_(leg, options, device, signal, (p) => report(i, p)).catch((e) => {
        // One leg failing stops the other's load.
        stop.abort(e);
        throw e;
      }),
    );
    const settled = await Promise.allSettled(loads);
    const failed = settled.find((r) => r.status === 'rejected');
    if (failed) {
      for (const r of settled) if (r.status === 'fulfilled') r.value.destroy();
      throw options.signal?.aborted ? options.signal.reason : /** @type {PromiseRejectedResult} */ (failed).reason;
    }
    const legs = settled.map((r) => /** @type {PromiseFulfilledResult<MarianTranslator>} */ (r).value);
    return MarianTranslator.pivot_(legs, canonicalLanguage(options.sourceLanguage), canonicalLanguage(options.targetLanguage));
  }

  /**
   * A `sourceLanguage: "auto"` translator: a language detector now, each language's model (or
   * pivot) when a text in it first comes.
   * @private
   * @param {CreateOptions} options
   * @param {Device} device
   * @returns {Promise<MarianTranslator>}
   */
  static async createAuto_(options, device) {
    if (options.adapter) {
      throw new TypeError('an adapter is made for one model, and a sourceLanguage "auto" translator picks a model per language: put it on a model created by URL');
    }
    const plan = await autoPlan(options);
    if (!plan.sources.length) {
      throw domError('NotSupportedError', `no model in the catalog translates into ${plan.target} (it offers ${catalogPairs(plan.catalog)})`);
    }
    const expected = [...plan.sources, plan.target].filter((t) => detectableLanguage(t));
    const detector = await MarianLanguageDetector.create({ expectedInputLanguages: expected, signal: options.signal });
    const monitor = new EventTarget();
    options.monitor?.(monitor);
    const t = new MarianTranslator(/** @type {any} */ (null), '', {
      device: device === 'webgpu' ? 'webgpu' : 'wasm',
      gpuAdapter: null,
      gpuUnavailable: null,
      threads: 0,
      threadsUnavailable: null,
      wasmBuild: '',
      manifest: null,
      targetLanguages: [],
      modelSha256: '',
      fromCache: true,
      loadMs: 0,
    });
    t.auto_ = {
      detector,
      catalog: plan.catalog,
      sources: plan.sources,
      target: plan.target,
      monitor,
      create: { device, threads: options.threads, store: options.store },
      translators: new Map(),
      lastLanguage: null,
    };
    t.sourceLanguage = AUTO;
    t.targetLanguage = plan.target;
    t.device_ = device;
    t.threads_ = options.threads;
    return t;
  }

  /**
   * Load one model in a new worker: a direct translator.
   * @private
   * @param {ModelChoice} choice
   * @param {CreateOptions} options
   * @param {Device} device
   * @param {AbortSignal | undefined} signal
   * @param {(p: { loaded: number, total: number, file: string, fromCache: boolean }) => void} onProgress
   * @returns {Promise<MarianTranslator>}
   */
  static async load_(choice, options, device, signal, onProgress) {
    const model = choice.model;
    const client = startWorker();
    try {
      const info = await client.request(
        {
          type: 'create',
          model,
          device,
          store: options.store !== false,
          adapter: options.adapter,
          threads: options.threads,
          targetLanguage: choice.targetCode ?? undefined,
          manifestSha256: choice.manifestSha256,
        },
        {
          signal,
          onMessage: (m) => {
            if (m.type === 'progress') onProgress(m);
          },
        },
      );
      const t = new MarianTranslator(client, model, info);
      t.device_ = device;
      t.threads_ = options.threads;
      t.sourceLanguage = choice.sourceLanguage;
      t.targetLanguage = choice.targetLanguage;
      t.targetCode = choice.targetCode;
      t.catalogEntry = choice.entry;
      t.route = [{ sourceLanguage: t.sourceLanguage, targetLanguage: t.targetLanguage, targetCode: t.targetCode, url: model, catalogEntry: t.catalogEntry }];
      t.manifestSha256_ = choice.manifestSha256;
      t.store = options.store !== false;
      if (options.adapter) t.adapterBytes = options.adapter;
      return t;
    } catch (e) {
      client.terminate();
      throw e;
    }
  }

  /**
   * A translator that runs `legs` one after the other (pivoting through English). What describes
   * one model (model, manifest, modelSha256, targetLanguages, targetCode, catalogEntry) is the
   * last leg's, the model that writes the target language.
   * @private
   * @param {MarianTranslator[]} legs
   * @param {string} sourceLanguage
   * @param {string} targetLanguage
   */
  static pivot_(legs, sourceLanguage, targetLanguage) {
    const last = legs[legs.length - 1];
    const firstOf = (/** @type {(t: MarianTranslator) => string | null} */ f) => legs.map(f).find((x) => x != null) ?? null;
    const t = new MarianTranslator(/** @type {any} */ (null), last.model, {
      device: pivotDevice(legs),
      gpuAdapter: firstOf((l) => l.gpuAdapter),
      gpuUnavailable: firstOf((l) => l.gpuUnavailable),
      threads: Math.min(...legs.map((l) => l.threads)),
      threadsUnavailable: firstOf((l) => l.threadsUnavailable),
      wasmBuild: [...new Set(legs.map((l) => l.wasmBuild))].join('+'),
      manifest: last.manifest,
      targetLanguages: last.targetLanguages,
      modelSha256: last.modelSha256,
      fromCache: legs.every((l) => l.fromCache),
      loadMs: Math.max(...legs.map((l) => l.loadMs)),
    });
    t.legs_ = legs;
    t.sourceLanguage = sourceLanguage;
    t.targetLanguage = targetLanguage;
    t.targetCode = last.targetCode;
    t.catalogEntry = last.catalogEntry;
    t.route = legs.flatMap((l) => l.route);
    t.device_ = last.device_;
    t.threads_ = last.threads_;
    t.store = last.store;
    return t;
  }

  /**
   * @param {WorkerClient} client
   * @param {string} model
   * @param {{ device: 'wasm' | 'webgpu', gpuAdapter: string | null, gpuUnavailable: string | null, threads: number, threadsUnavailable: string | null, wasmBuild: string, manifest: any, targetLanguages: string[], modelSha256: string, fromCache: boolean, loadMs: number }} info
   * @private
   */
  constructor(client, model, info) {
    /** @private */
    this.client = client;
    // A pivot translator (route of two legs): sourceLanguage / targetLanguage are the pair asked
    // for; model, manifest, modelSha256, targetLanguages, targetCode and catalogEntry are the last
    // leg's (the model that writes the target language; `route` has both); device is "webgpu"
    // only while every leg runs there; threads the fewest of any leg; gpuAdapter, gpuUnavailable,
    // threadsUnavailable the first leg's that is not null; wasmBuild the legs' builds ("pkg-mt",
    // or "pkg+pkg-mt" if they differ); fromCache whether every leg came from the store; loadMs
    // the slowest leg's (they load side by side).
    /** The package folder URL (a pivot's: its last leg's). */
    this.model = model;
    /** The device that runs the model: "wasm" (CPU) or "webgpu". After a lost GPU device
     * the translation in flight completes on the CPU and this becomes "wasm". */
    this.device = info.device;
    /** The WebGPU adapter in use, or null. */
    this.gpuAdapter = info.gpuAdapter;
    /** Why "auto" runs on the CPU (no WebGPU adapter, limits too small, …), or null. */
    this.gpuUnavailable = info.gpuUnavailable;
    /** The CPU threads the model computes on: rayon's pool in the multi-threaded build, else 1. */
    this.threads = info.threads;
    /** Why fewer threads than asked run (no cross-origin isolation, …), or null. */
    this.threadsUnavailable = info.threadsUnavailable;
    /** The wasm build that runs: "pkg" or "pkg-mt" (one thread, threads), or its relaxed-SIMD form
     * "pkg-relaxed" / "pkg-mt-relaxed" where the browser runs relaxed SIMD (faster batches on CPUs
     * with 8-bit dot products; the same tokens). */
    this.wasmBuild = info.wasmBuild;
    /** The package manifest (architecture, generation defaults, quantization, files). */
    this.manifest = info.manifest;
    /** A multi-target model's output languages (the codes of its `>>xxx<<` tokens, sorted);
     * empty for a model with one target language. @type {string[]} */
    this.targetLanguages = info.targetLanguages ?? [];
    /** The source language as a BCP 47 tag (canonical): the one asked for when created by
     * language, "en" for the default model, null when created by `model` URL. @type {string | null} */
    this.sourceLanguage = null;
    /** The target language: the BCP 47 tag asked for when created by language ("fr" for the
     * default model), else the model's own code given to `create` (multi-target models), or null.
     * @type {string | null} */
    this.targetLanguage = null;
    /** The model's own code put before every text (`"fra"` for `>>fra<<`; multi-target models),
     * or null. @type {string | null} */
    this.targetCode = null;
    /** The catalog entry the model was picked from (absolute URL, canonical tags), or null when
     * created by `model` URL. @type {CatalogEntry | null} */
    this.catalogEntry = null;
    /** The models that run, in order: one leg for a direct translator; for a pivot through
     * English two (`{sourceLanguage: 'de', targetLanguage: 'en', …}`, then `{sourceLanguage:
     * 'en', targetLanguage: 'it', …}`), each with its package `url`, `targetCode` and
     * `catalogEntry`. @type {RouteLeg[]} */
    this.route = [];
    /** A pivot's legs, each a direct translator with its own worker; null for a direct one.
     * @private @type {MarianTranslator[] | null} */
    this.legs_ = null;
    /** A `sourceLanguage: "auto"` translator's detector and per-language translators; else null.
     * @private @type {AutoState | null} */
    this.auto_ = null;
    /** The catalog's sha256 of manifest.json, checked on reload. @private @type {string | undefined} */
    this.manifestSha256_ = undefined;
    /** sha256 of the model's weights: adapters are made for exactly one base model. */
    this.modelSha256 = info.modelSha256;
    /** The adapter in use (its file's bytes), or null. @type {Uint8Array | null} */
    this.adapterBytes = null;
    /** @private @type {Device} */
    this.device_ = 'auto';
    /** The threads asked for at create (reused when the worker is restarted). @private @type {number | undefined} */
    this.threads_ = undefined;
    /** Whether packages are kept in the model store (helper workers load from it). @private */
    this.store = true;
    /** Whether the package came from the model store (no download). */
    this.fromCache = info.fromCache;
    /** Milliseconds to load the package and build the model. */
    this.loadMs = info.loadMs;
    /** Figures of the last translate / translateStreaming call (a pivot's: summed over its legs,
     * each leg's in `legs`). @type {RunFigures | null} */
    this.lastRun = null;
    /** @private */
    this.destroyed = false;
    /** @private @type {Promise<unknown> | null} */
    this.reloading = null;
  }

  /** @private */
  live() {
    if (this.destroyed) throw domError('InvalidStateError', 'the translator was destroyed');
    return this.client;
  }

  /** The route as words: "de → en (https://…/) then en → it (https://…/)". @private */
  routeText() {
    return this.route.map((l) => `${l.sourceLanguage} → ${l.targetLanguage} (${l.url})`).join(' then ');
  }

  /**
   * A per-call `targetLanguage` that is one of the catalog entry's BCP 47 tags (or falls back to
   * one: "es-MX" → "es") becomes the model's code; anything else goes to the model as given.
   * @private
   * @param {TranslateOptions | undefined} options
   * @returns {TranslateOptions | undefined}
   */
  withCode(options) {
    const asked = options?.targetLanguage;
    const codes = this.catalogEntry?.target_codes;
    if (asked == null || !codes) return options;
    let tag;
    try {
      tag = canonicalLanguage(asked);
    } catch {
      return options;
    }
    let best = '';
    let d = Infinity;
    for (const t of Object.keys(codes)) {
      const k = languageDistance(tag, t);
      if (k < d) [d, best] = [k, t];
    }
    return d === Infinity ? options : { ...options, targetLanguage: codes[best] };
  }

  /**
   * Translate a string, or an array of strings (one result per entry, same order).
   * @overload
   * @param {string} text
   * @param {TranslateOptions} [options]
   * @returns {Promise<string>}
   */
  /**
   * @overload
   * @param {string[]} text
   * @param {TranslateOptions} [options]
   * @returns {Promise<string[]>}
   */
  /**
   * @param {string | string[]} text
   * @param {TranslateOptions} [options]
   * @returns {Promise<string | string[]>}
   */
  async translate(text, options) {
    const many = Array.isArray(text);
    const r = await this.run(many ? text : [text], options, 'translate');
    return many ? r.map((x) => x.text) : r[0].text;
  }

  /**
   * Like translate(), and says what was kept as is: `{ text, issues }` per input (see
   * TranslateResult). The same is in `lastRun.issues` after translate().
   * @overload
   * @param {string} text
   * @param {TranslateOptions} [options]
   * @returns {Promise<TranslateResult>}
   */
  /**
   * @overload
   * @param {string[]} text
   * @param {TranslateOptions} [options]
   * @returns {Promise<TranslateResult[]>}
   */
  /**
   * @param {string | string[]} text
   * @param {TranslateOptions} [options]
   * @returns {Promise<TranslateResult | TranslateResult[]>}
   */
  async translateWithIssues(text, options) {
    const many = Array.isArray(text);
    const r = await this.run(many ? text : [text], options, 'translateWithIssues');
    return many ? r : r[0];
  }

  /**
   * One translate request to the worker; keeps its figures in lastRun.
   * @private
   * @param {string[]} texts
   * @param {TranslateOptions | undefined} options
   * @param {string} method  named in the error for a wrong argument
   * @returns {Promise<TranslateResult[]>}
   */
  async run(texts, options, method) {
    for (const t of texts) if (typeof t !== 'string') throw new TypeError(`${method}() takes a string or an array of strings`);
    if (this.legs_) return this.runLegs(texts, options, method);
    if (this.auto_) return this.runAuto(texts, options, method);
    const { options: o, signal } = generationOptions(this.withCode(options));
    const r = await this.live().request({ type: 'translate', texts, options: o }, { signal });
    /** @type {string[][]} */
    const issues = texts.map((_, i) => r.issues?.[i] ?? []);
    this.lastRun = { tokens: r.tokens, ms: r.ms, device: r.device, issues };
    this.device = r.device;
    return r.texts.map((/** @type {string} */ t, /** @type {number} */ i) => ({ text: t, issues: issues[i] }));
  }

  /**
   * A pivot's run: all texts through the first leg in one request, its outputs through the next
   * in one request. Options apply to every leg, except `targetLanguage`, the last leg's only.
   * @private
   * @param {string[]} texts
   * @param {TranslateOptions | undefined} options
   * @param {string} method
   * @returns {Promise<TranslateResult[]>}
   */
  async runLegs(texts, options, method) {
    this.live();
    const legs = /** @type {MarianTranslator[]} */ (this.legs_);
    /** @type {string[][]} */
    const issues = texts.map(() => []);
    /** @type {RunFigures[]} */
    const figures = [];
    let current = texts;
    for (const [i, leg] of legs.entries()) {
      const last = i === legs.length - 1;
      const r = await leg.run(current, last ? options : withoutTarget(options), method);
      const { sourceLanguage: s, targetLanguage: t } = leg.route[0];
      r.forEach((x, k) => issues[k].push(...x.issues.map((why) => `${s} → ${t}: ${why}`)));
      figures.push(/** @type {RunFigures} */ (leg.lastRun));
      current = r.map((x) => x.text);
    }
    this.device = pivotDevice(legs);
    this.lastRun = { ...sumFigures(figures, this.device), issues };
    return current.map((text, k) => ({ text, issues: issues[k] }));
  }

  /**
   * A `sourceLanguage: "auto"` run: detect every text's language (among the catalog's source
   * languages and the target), then each language's texts through its model in one request.
   * @private
   * @param {string[]} texts
   * @param {TranslateOptions | undefined} options
   * @param {string} method
   * @param {string | null} [hint]  the page's language (translatePage), for unsure texts
   * @returns {Promise<TranslateResult[]>}
   */
  async runAuto(texts, options, method, hint = null) {
    for (const t of texts) if (typeof t !== 'string') throw new TypeError(`${method}() takes a string or an array of strings`);
    const a = this.liveAuto();
    const languages = await this.languagesOf(texts, options?.signal, hint);
    /** @type {TranslateResult[]} */
    const out = texts.map((text) => ({ text, issues: [] }));
    /** @type {Map<string, number[]>} */
    const groups = new Map();
    languages.forEach((lang, i) => {
      const source = autoSource(a, lang);
      if (source.tag == null) out[i].issues.push(source.keep);
      else groups.set(source.tag, [...(groups.get(source.tag) ?? []), i]);
    });
    /** @type {RunFigures[]} */
    const figures = [];
    for (const [tag, indices] of groups) {
      const t = await this.autoTranslator(tag, options?.signal);
      const r = await t.run(indices.map((i) => texts[i]), options, method);
      indices.forEach((i, k) => (out[i] = r[k]));
      figures.push(/** @type {RunFigures} */ (t.lastRun));
    }
    this.lastRun = {
      tokens: figures.reduce((s, f) => s + f.tokens, 0),
      ms: figures.reduce((s, f) => s + f.ms, 0),
      device: this.device,
      issues: out.map((r) => r.issues),
      languages,
    };
    return out;
  }

  /**
   * translateStreaming on a `sourceLanguage: "auto"` translator: the text's language picks the
   * model, which streams; a text kept as is comes as one chunk.
   * @private
   * @param {string} text
   * @param {TranslateOptions | undefined} options
   * @returns {ReadableStream<string>}
   */
  streamAuto(text, options) {
    const a = this.liveAuto();
    return new ReadableStream({
      start: async (controller) => {
        try {
          const [lang] = await this.languagesOf([text], options?.signal);
          const source = autoSource(a, lang);
          if (source.tag == null) {
            if (text) controller.enqueue(text);
            this.lastRun = { tokens: 0, ms: 0, device: this.device, issues: null, languages: [lang] };
          } else {
            const t = await this.autoTranslator(source.tag, options?.signal);
            const reader = t.translateStreaming(text, options).getReader();
            for (let r = await reader.read(); !r.done; r = await reader.read()) controller.enqueue(r.value);
            this.lastRun = { .../** @type {RunFigures} */ (t.lastRun), languages: [lang] };
          }
          controller.close();
        } catch (e) {
          controller.error(e);
        }
      },
    });
  }

  /**
   * The language each text is taken to be in: the detector's answer where its confidence is at
   * least AUTO_MIN_CONFIDENCE; else (translatePage) the page's `lang`, else the language of all
   * the texts of the call together (when that is sure), else the last call's language, else the
   * catalog's first source language.
   * @private
   * @param {string[]} texts
   * @param {AbortSignal | undefined} signal
   * @param {string | null} [hint]  a language to take for unsure texts before any detection of
   *   the call's texts together (translatePage: the page's `lang`)
   * @returns {Promise<string[]>}
   */
  async languagesOf(texts, signal, hint = null) {
    const a = /** @type {AutoState} */ (this.auto_);
    const sure = (/** @type {LanguageDetectionResult[]} */ d) =>
      d[0].detectedLanguage !== 'und' && d[0].confidence >= AUTO_MIN_CONFIDENCE ? d[0].detectedLanguage : null;
    const found = (await a.detector.detectAll(texts, { signal })).map(sure);
    let fallback = hint;
    if (fallback == null && found.some((x) => x == null) && texts.length > 1) {
      fallback = sure((await a.detector.detectAll([texts.join('\n')], { signal }))[0]);
    }
    fallback ??= a.lastLanguage ?? new Intl.Locale(a.sources[0]).language;
    const langs = found.map((x) => x ?? /** @type {string} */ (fallback));
    const counts = new Map();
    for (const l of langs) counts.set(l, (counts.get(l) ?? 0) + 1);
    if (langs.length) a.lastLanguage = [...counts].sort((x, y) => y[1] - x[1])[0][0];
    return langs;
  }

  /**
   * The translator for one source tag (created on first use; its downloads report to the
   * monitor given to create). Its properties become this translator's.
   * @private
   * @param {string} tag
   * @param {AbortSignal | undefined} signal
   * @returns {Promise<MarianTranslator>}
   */
  async autoTranslator(tag, signal) {
    const a = /** @type {AutoState} */ (this.auto_);
    let p = a.translators.get(tag);
    if (!p) {
      p = MarianTranslator.create({
        ...a.create,
        sourceLanguage: tag,
        targetLanguage: a.target,
        catalog: a.catalog,
        signal,
        monitor: (m) => m.addEventListener('downloadprogress', (e) => a.monitor.dispatchEvent(new DownloadProgressEvent({
          loaded: /** @type {DownloadProgressEvent} */ (e).bytesLoaded,
          total: /** @type {DownloadProgressEvent} */ (e).bytesTotal,
          file: /** @type {DownloadProgressEvent} */ (e).file,
          fromCache: /** @type {DownloadProgressEvent} */ (e).fromCache,
        }))),
      });
      a.translators.set(tag, p);
      p.catch(() => a.translators.get(tag) === p && a.translators.delete(tag));
    }
    const t = await p;
    if (this.destroyed) {
      t.destroy();
      throw domError('InvalidStateError', 'the translator was destroyed');
    }
    // What describes one model is the one that ran last.
    Object.assign(this, {
      model: t.model,
      device: t.device,
      gpuAdapter: t.gpuAdapter,
      gpuUnavailable: t.gpuUnavailable,
      threads: t.threads,
      threadsUnavailable: t.threadsUnavailable,
      wasmBuild: t.wasmBuild,
      manifest: t.manifest,
      targetLanguages: t.targetLanguages,
      targetCode: t.targetCode,
      catalogEntry: t.catalogEntry,
      route: t.route,
      modelSha256: t.modelSha256,
      fromCache: t.fromCache,
      loadMs: t.loadMs,
    });
    return t;
  }

  /** @private */
  liveAuto() {
    if (this.destroyed) throw domError('InvalidStateError', 'the translator was destroyed');
    return /** @type {AutoState} */ (this.auto_);
  }

  /**
   * Translate one text, yielding the output as it is decoded: each chunk continues the previous
   * ones (only the part every beam agrees on is streamed, so nothing is ever taken back).
   * A pivot translator translates the text through its first leg whole (nothing is streamed
   * meanwhile), then streams the last leg's output.
   * @param {string} text
   * @param {TranslateOptions} [options]
   * @returns {ReadableStream<string>}
   */
  translateStreaming(text, options) {
    if (typeof text !== 'string') throw new TypeError('translateStreaming() takes a string');
    if (this.legs_) return this.streamLegs(text, options);
    if (this.auto_) return this.streamAuto(text, options);
    const client = this.live();
    const { options: o, signal } = generationOptions(this.withCode(options));
    let sent = '';
    return new ReadableStream({
      start: async (controller) => {
        const push = (/** @type {string} */ full) => {
          if (full.length > sent.length && full.startsWith(sent)) {
            controller.enqueue(full.slice(sent.length));
            sent = full;
          }
        };
        try {
          const r = await client.request(
            { type: 'stream', text, options: o },
            { signal, onMessage: (m) => m.type === 'partial' && push(m.text) },
          );
          this.lastRun = { tokens: r.tokens, ms: r.ms, device: r.device, issues: null };
          this.device = r.device;
          if (r.text.startsWith(sent)) push(r.text);
          else controller.enqueue(r.text.slice(commonPrefix(sent, r.text)));
          controller.close();
        } catch (e) {
          controller.error(e);
        }
      },
    });
  }

  /**
   * translateStreaming through a pivot's legs.
   * @private
   * @param {string} text
   * @param {TranslateOptions | undefined} options
   * @returns {ReadableStream<string>}
   */
  streamLegs(text, options) {
    this.live();
    const legs = /** @type {MarianTranslator[]} */ (this.legs_);
    const lastLeg = legs[legs.length - 1];
    return new ReadableStream({
      start: async (controller) => {
        try {
          /** @type {RunFigures[]} */
          const figures = [];
          let current = text;
          for (const leg of legs.slice(0, -1)) {
            [{ text: current }] = await leg.run([current], withoutTarget(options), 'translateStreaming');
            figures.push(/** @type {RunFigures} */ (leg.lastRun));
          }
          const reader = lastLeg.translateStreaming(current, options).getReader();
          for (let r = await reader.read(); !r.done; r = await reader.read()) controller.enqueue(r.value);
          figures.push(/** @type {RunFigures} */ (lastLeg.lastRun));
          this.device = pivotDevice(legs);
          this.lastRun = { ...sumFigures(figures, this.device), issues: null };
          controller.close();
        } catch (e) {
          controller.error(e);
        }
      },
    });
  }

  /**
   * Translate a DOM subtree in place, keeping its markup; resolves when the text present now is
   * translated. The returned PageTranslator keeps following changes (unless `observe: false`) and
   * puts the original back with `restore()`; its `kept` lists the texts the model kept (in part)
   * as they were, and why.
   * @param {Element} [root]
   * @param {Omit<import('./page-translator.js').PageTranslatorOptions, 'translate'> & TranslateOptions} [options]
   */
  async translatePage(root = document.body, options = {}) {
    const { beams, maxLength, lengthPenalty, batchSize, targetLanguage, signal, ...pageOptions } = options;
    // A sourceLanguage "auto" translator: the root's nearest `lang` (<html lang>) decides the texts
    // the detector is unsure of; without one, the batch's text does.
    const hint = this.auto_ ? pageLanguage(root) : null;
    const page = new PageTranslator(root, {
      ...pageOptions,
      translate: async (texts) => {
        const out = this.auto_
          ? await this.runAuto(texts, { beams, maxLength, lengthPenalty, batchSize, targetLanguage, signal }, 'translatePage', hint)
          : await this.translateWithIssues(texts, { beams, maxLength, lengthPenalty, batchSize, targetLanguage, signal });
        out.forEach((r, i) => r.issues.length && page.kept.push({ text: texts[i], issues: r.issues }));
        return out.map((r) => r.text);
      },
    });
    await page.translate();
    return page;
  }

  /**
   * Fine-tune the decoder head on sentence pairs, in the worker; the resulting adapter is put on
   * at once (keep it with saveAdapter, take it off with useAdapter(null)). Bad pairs are skipped
   * and listed in `issues` (1-based index). The frozen model's pass over the pairs — nearly all
   * of the time — is shared among `workers` Web Workers (default: one per core, at most 4, for
   * 64 pairs or more), each holding a copy of the model while it runs; on a WebGPU translator it
   * runs on the GPU instead, in the translator's worker (falling back to the CPU there if the
   * device is lost; `report.feature_device` says which ran it). Aborting the signal stops
   * the training at once: the workers are stopped and the model reloaded from the store, with
   * the adapter used before.
   * @param {{ source: string, target: string }[]} pairs
   * @param {FineTuneOptions} [options]
   * @returns {Promise<FineTuneResult>}
   */
  async fineTune(pairs, options = {}) {
    if (this.auto_) {
      this.liveAuto();
      throw domError('NotSupportedError', 'fineTune() cannot train a sourceLanguage "auto" translator, which picks a model per language: fine-tune one model directly (MarianTranslator.create({ model: url }), then fineTune)');
    }
    if (this.legs_) {
      this.live();
      throw domError(
        'NotSupportedError',
        `fineTune() cannot train a pivot translator, which runs ${this.route.length} models (${this.routeText()}): fine-tune one leg's model directly (MarianTranslator.create({ model: url }) with that leg's url, then fineTune)`,
      );
    }
    if (!Array.isArray(pairs)) throw new TypeError('fineTune() takes an array of { source, target }');
    const { onProgress, signal, workers, ...rest } = options;
    const client = this.live();
    const onGpu = this.device === 'webgpu';
    // Helper workers also for a multi-threaded translator: the features pass runs the model
    // widened to f32 through candle, one thread per worker (measured: 500 pairs x 3 epochs in
    // 33.8 s on 2 workers against 58.1 s in one worker with a 2-thread pool).
    const n = onGpu ? 1 : featureWorkers(workers, pairs.length);
    /** The features pass's helper workers and their shares (settled or not), for abort and cleanup. @type {{ helpers: WorkerClient[], shares: Promise<any>[] }} */
    const pool = { helpers: [], shares: [] };
    // On abort the busy workers are stopped and the translator's worker replaced; the call
    // rejects with the signal's reason (AbortError), whichever request noticed first.
    const onAbort = () => {
      for (const h of pool.helpers) h.terminate();
      this.restart();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    const relay = (/** @type {any} */ m) => m.type === 'ftprogress' && onProgress?.(progressOf(m));
    try {
      /** @type {any} */
      let r;
      let used = 1;
      if (!onGpu && n <= 1) {
        // One worker on the CPU: it runs the whole job, features pass included.
        r = await client.request({ type: 'finetune', pairs, options: rest }, { signal, onMessage: relay });
      } else {
        const t0 = performance.now();
        // The features pass on a pool: the GPU (a pool of one), or the translator's worker and
        // helpers, the pass cut into several chunks per worker (whole batches of pairs).
        const job = await client.request({ type: 'ftjob', pairs, options: rest, workers: onGpu ? 1 : 4 * n }, { signal });
        /** @type {Uint8Array[] | null} */
        let shards = null;
        if (onGpu || job.shards.length > 1) {
          const startHelper = () => {
            const h = startWorker();
            const created = h.request({ type: 'create', model: this.model, device: 'wasm', store: this.store, threads: 1 }, { signal });
            return { worker: h, created };
          };
          shards = await featuresOnPool(job, { client, size: n, gpu: onGpu, pool, startHelper, t0, epochs: rest.epochs ?? 0, signal, onProgress, relay });
          used += pool.helpers.length;
          for (const h of pool.helpers.splice(0)) h.terminate();
        }
        r = await client.request({ type: 'ftrun', shards }, { signal, onMessage: relay });
        r.ms = performance.now() - t0;
      }
      this.adapterBytes = r.adapter;
      return { ...r, featureWorkers: used, manifest: readAdapterManifest(r.adapter) };
    } catch (e) {
      if (signal?.aborted) throw signal.reason ?? domError('AbortError', 'aborted');
      throw e;
    } finally {
      for (const h of pool.helpers) h.terminate();
      // Shares left behind by a failure or an abort reject on their own: already reported.
      for (const p of pool.shares) p.catch(() => {});
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * Put an adapter (the bytes of its file) on, or take it off with null. An adapter made for
   * another base model is refused.
   * @param {Uint8Array | null} bytes
   * @returns {Promise<import('./adapters.js').AdapterManifest | null>}
   */
  async useAdapter(bytes) {
    if (this.auto_) {
      this.liveAuto();
      if (!bytes) return null;
      throw domError('NotSupportedError', 'an adapter is made for one model, and a sourceLanguage "auto" translator picks a model per language: put it on a model created by URL');
    }
    if (this.legs_) {
      this.live();
      if (!bytes) return null;
      throw domError(
        'NotSupportedError',
        `an adapter is made for one model, and this pivot translator runs ${this.route.length} (${this.routeText()}): put it on a leg's model, created by model URL`,
      );
    }
    const manifest = bytes ? readAdapterManifest(bytes) : null;
    await this.live().request({ type: 'adapter', bytes });
    this.adapterBytes = bytes;
    return manifest;
  }

  /** Replace a busy worker (cancelled training) with a fresh one holding the same model. @private */
  restart() {
    if (this.destroyed) return;
    const old = this.client;
    this.client = startWorker();
    old.terminate();
    this.reloading = this.client
      .request({
        type: 'create',
        model: this.model,
        device: this.device_,
        store: true,
        adapter: this.adapterBytes,
        threads: this.threads_,
        targetLanguage: this.targetCode ?? undefined,
        manifestSha256: this.manifestSha256_,
      })
      .catch((e) => console.error('marian-wasm: reloading the model after a cancel failed:', e));
  }

  /**
   * The worker's memory: `wasmBytes`, the size of the WebAssembly module's linear memory (the
   * model, its buffers, the allocator's free space). It never shrinks, so it is the peak so far.
   * A pivot translator's is the sum over its legs' workers.
   * @returns {Promise<{ wasmBytes: number }>}
   */
  async memoryUsage() {
    if (this.auto_) {
      const a = this.liveAuto();
      const each = await Promise.allSettled([...a.translators.values()].map(async (p) => (await p).memoryUsage()));
      return { wasmBytes: each.reduce((s, r) => s + (r.status === 'fulfilled' ? r.value.wasmBytes : 0), 0) };
    }
    if (this.legs_) {
      this.live();
      const each = await Promise.all(this.legs_.map((l) => l.memoryUsage()));
      return { wasmBytes: each.reduce((a, m) => a + m.wasmBytes, 0) };
    }
    return this.live().request({ type: 'memory' });
  }

  /** Stop the worker and free the model's memory (a pivot's: every leg's). Pending requests reject. */
  destroy() {
    if (this.destroyed) return;
    this.destroyed = true;
    if (this.auto_) {
      this.auto_.detector.destroy();
      for (const p of this.auto_.translators.values()) p.then((t) => t.destroy(), () => {});
    } else if (this.legs_) for (const l of this.legs_) l.destroy();
    else this.client.terminate();
  }
}

/** The `sourceLanguage` that asks for detection. */
const AUTO = 'auto';

/**
 * A `sourceLanguage: "auto"` translator trusts the detector's answer for a text from this
 * confidence on; below it the text is taken to be in the call's language (see languagesOf).
 */
export const AUTO_MIN_CONFIDENCE = 0.5;

/**
 * @typedef {{ detector: MarianLanguageDetector, catalog: Catalog, sources: string[], target: string,
 *   monitor: EventTarget, create: { device: Device, threads?: number, store?: boolean },
 *   translators: Map<string, Promise<MarianTranslator>>, lastLanguage: string | null }} AutoState
 */

/**
 * What a `sourceLanguage: "auto"` call can use: the target tag, the catalog, and the catalog's
 * source languages with a route (direct or through English) into the target, other than the
 * target's own language.
 * @param {AvailabilityOptions} options
 */
async function autoPlan(options) {
  if (options.model != null) {
    throw new TypeError('give either model (a package URL) or sourceLanguage and targetLanguage (a catalog picks the package), not both');
  }
  if (options.targetLanguage == null) throw new TypeError('sourceLanguage "auto" needs targetLanguage (a BCP 47 tag)');
  const target = canonicalLanguage(options.targetLanguage);
  const catalog = await loadCatalog(options.catalog ?? BUILTIN_CATALOG, { signal: options.signal });
  const own = new Intl.Locale(target).language;
  const sources = [...new Set(catalog.models.flatMap((m) => m.source_languages))].filter(
    (s) => new Intl.Locale(s).language !== own && findRoute(catalog, s, target),
  );
  return { target, catalog, sources };
}

/**
 * availability() for `sourceLanguage: "auto"`: the best over the catalog's source languages
 * that reach the target ("available" if one route is stored).
 * @param {AvailabilityOptions} options
 * @returns {Promise<Availability>}
 */
async function autoAvailability(options) {
  const { target, catalog, sources } = await autoPlan(options);
  if (!wasmSupported() || typeof Worker === 'undefined' || !sources.length) return 'unavailable';
  /** @type {Availability} */
  let best = 'unavailable';
  for (const s of sources) {
    const a = await MarianTranslator.availability({ sourceLanguage: s, targetLanguage: target, catalog, signal: options.signal });
    if (a === 'available') return a;
    if (a === 'downloadable') best = a;
  }
  return best;
}

/**
 * The language subtag of the nearest `lang` attribute at or above `root` (`<html lang="de-AT">` →
 * "de"), or null when there is none or it is empty or not a tag.
 * @param {Element} root
 */
function pageLanguage(root) {
  const lang = root.closest?.('[lang]')?.getAttribute('lang');
  if (!lang) return null;
  try {
    const l = new Intl.Locale(canonicalLanguage(lang)).language;
    return l === 'und' ? null : l;
  } catch {
    return null;
  }
}

/**
 * Where a text in detected language `lang` goes: the catalog source tag whose model takes it, or
 * why it is kept as is (already in the target language; no model for it).
 * @param {AutoState} a
 * @param {string} lang
 * @returns {{ tag: string, keep?: undefined } | { keep: string, tag?: undefined }}
 */
function autoSource(a, lang) {
  if (lang === new Intl.Locale(a.target).language) return { keep: `detected as ${lang}, the target language: kept as is` };
  const tag = a.sources.includes(lang) ? lang : a.sources.find((s) => new Intl.Locale(s).language === lang);
  return tag ? { tag } : { keep: `detected as ${lang}, and no model in the catalog translates ${lang} → ${a.target}: kept as is` };
}

/**
 * One model a create/availability call needs.
 * @typedef {{ model: string, manifestSha256?: string, sourceLanguage: string | null,
 *   targetLanguage: string | null, targetCode: string | null, entry: CatalogEntry | null }} ModelChoice
 */

/**
 * The models a create/availability call asks for: by `model` URL, by language pair from a
 * catalog (one model, or two through English: findRoute), or the default model. null when the
 * catalog has no route for the pair.
 * @param {AvailabilityOptions & { targetLanguage?: string }} options
 * @returns {Promise<ModelChoice[] | null>}
 */
async function chooseRoute(options) {
  const { model, sourceLanguage, targetLanguage, catalog } = options;
  const byLanguage = sourceLanguage != null || catalog != null;
  if (model != null) {
    if (byLanguage) {
      throw new TypeError('give either model (a package URL) or sourceLanguage and targetLanguage (a catalog picks the package), not both');
    }
    const code = targetLanguage ?? null;
    return [{ model: packageUrl(model), sourceLanguage: null, targetLanguage: code, targetCode: code, entry: null }];
  }
  if (!byLanguage) {
    if (targetLanguage != null) {
      throw new TypeError('targetLanguage needs sourceLanguage (to pick a model by language) or model (a multi-target package whose code it is)');
    }
    // The built-in catalog's one entry, loaded like any package given by URL.
    return [{ model: DEFAULT_MODEL, sourceLanguage: 'en', targetLanguage: 'fr', targetCode: null, entry: BUILTIN_CATALOG.models[0] }];
  }
  if (sourceLanguage == null || targetLanguage == null) {
    throw new TypeError('choosing a model by language needs both sourceLanguage and targetLanguage (BCP 47 tags)');
  }
  const source = canonicalLanguage(sourceLanguage);
  const target = canonicalLanguage(targetLanguage);
  const c = await loadCatalog(catalog ?? BUILTIN_CATALOG, { signal: options.signal });
  const route = findRoute(c, source, target);
  if (!route) return null;
  // A direct model is asked for the requested tags; a pivot's legs for source → en → target.
  const tags = route.length === 1 ? [source, target] : [source, ...route.slice(1).map(() => PIVOT_LANGUAGE), target];
  return route.map((m, i) => ({
    model: packageUrl(m.entry.url),
    manifestSha256: m.entry.sha256,
    sourceLanguage: tags[i],
    targetLanguage: tags[i + 1],
    targetCode: m.targetCode,
    entry: m.entry,
  }));
}

/** A route for messages: "de → en (url) then en → it (url)". @param {ModelChoice[]} route */
function describeRoute(route) {
  return route.map((l) => `${l.sourceLanguage} → ${l.targetLanguage} (${l.model})`).join(' then ');
}

/**
 * A signal that aborts when any of `signals` does (AbortSignal.any, where the browser lacks it).
 * @param {AbortSignal[]} signals
 */
function anySignal(signals) {
  if (typeof AbortSignal.any === 'function') return AbortSignal.any(signals);
  const c = new AbortController();
  for (const s of signals) {
    if (s.aborted) {
      c.abort(s.reason);
      break;
    }
    s.addEventListener('abort', () => c.abort(s.reason), { once: true });
  }
  return c.signal;
}

/** A pivot's device: "webgpu" while every leg runs there, else "wasm". @param {MarianTranslator[]} legs */
function pivotDevice(legs) {
  return legs.every((l) => l.device === 'webgpu') ? 'webgpu' : 'wasm';
}

/** Options for a leg before the last: the output language is the last leg's business. @param {TranslateOptions | undefined} o */
function withoutTarget(o) {
  if (!o || !('targetLanguage' in o)) return o;
  const { targetLanguage, ...rest } = o;
  return rest;
}

/**
 * A pivot's figures: tokens and milliseconds summed over the legs, each leg's own in `legs`.
 * @param {RunFigures[]} legs
 * @param {string} device
 * @returns {RunFigures}
 */
function sumFigures(legs, device) {
  return {
    tokens: legs.reduce((a, f) => a + f.tokens, 0),
    ms: legs.reduce((a, f) => a + f.ms, 0),
    device,
    issues: null,
    legs,
  };
}

/**
 * The features pass of a fine-tuning job (`job.shards`, from an 'ftjob' request) on a pool of
 * workers: `client` (the job's worker: the GPU when `gpu`, a pool of one) and up to `size - 1`
 * helpers started with `startHelper` (each loads the model first). Each worker takes the next
 * shard when it is free, so helpers that start late or run slower just take fewer; a helper
 * that fails gives its shards back to the others. Progress: one shard's is its worker's own,
 * several shards' is summed here. Returns the shards' bytes in the job's order for 'ftrun'.
 * @param {{ shards: Uint32Array[], topK: number, pairs: number }} job
 * @param {{ client: WorkerClient, size: number, gpu: boolean, pool: { helpers: WorkerClient[], shares: Promise<any>[] },
 *   startHelper: () => { worker: WorkerClient, created: Promise<any> }, t0: number, epochs: number,
 *   signal: AbortSignal | undefined, onProgress: ((p: any) => void) | undefined, relay: (m: any) => any }} o
 * @returns {Promise<Uint8Array[]>}
 */
async function featuresOnPool(job, o) {
  const { client, signal, onProgress } = o;
  const chunks = job.shards.length;
  const done = new Array(chunks).fill(0);
  const report = (/** @type {number} */ i, /** @type {any} */ m) => {
    if (chunks === 1) return o.relay({ ...m, epochs: o.epochs });
    if (m.type !== 'ftprogress') return;
    done[i] = m.step;
    const d = done.reduce((a, b) => a + b, 0);
    const s = (performance.now() - o.t0) / 1000;
    onProgress?.({ phase: 'features', epoch: 0, epochs: o.epochs, step: d, steps: job.pairs, loss: NaN, etaSeconds: d > 0 ? (s / d) * (job.pairs - d) : NaN });
  };
  /** @type {(Uint8Array | undefined)[]} */
  const results = new Array(chunks);
  const queue = [...Array(chunks).keys()];
  const features = (/** @type {WorkerClient} */ c, /** @type {number} */ i) =>
    c.request({ type: 'ftfeatures', inputs: job.shards[i], topK: job.topK, ...(o.gpu ? { gpu: true } : {}) }, { signal, onMessage: (m) => report(i, m) });
  const drain = async (/** @type {WorkerClient} */ c) => {
    for (let i = queue.shift(); i !== undefined; i = queue.shift()) {
      try {
        results[i] = await features(c, i);
      } catch (e) {
        queue.unshift(i);
        throw e;
      }
    }
  };
  for (let i = 1; i < Math.min(o.size, chunks); i++) {
    const { worker, created } = o.startHelper();
    o.pool.helpers.push(worker);
    const j = o.pool.helpers.length;
    o.pool.shares.push(
      created
        .then(() => drain(worker))
        .catch((e) => {
          if (signal?.aborted) throw e;
          // A helper that cannot load the model (memory, say) or fails: its chunks run elsewhere.
          console.warn(`marian-wasm: fine-tuning helper ${j} failed (${e?.message ?? e}); its share runs on the other workers`);
        }),
    );
  }
  await drain(client);
  await Promise.all(o.pool.shares);
  // Chunks a failing helper gave back after the main worker had finished.
  for (let i = 0; i < chunks; i++) results[i] ??= await features(client, i);
  return /** @type {Uint8Array[]} */ (results);
}

/**
 * How many workers share a fine-tuning run's features pass.
 * @param {number | undefined} asked
 * @param {number} pairs
 */
function featureWorkers(asked, pairs) {
  if (asked !== undefined) {
    if (!Number.isInteger(asked) || asked < 1) throw new TypeError(`workers must be a positive integer, not ${asked}`);
    return Math.min(asked, 16);
  }
  // Each helper holds a copy of the model and loads it first: worth it from a few dozen pairs.
  if (pairs < 64) return 1;
  return Math.max(1, Math.min(globalThis.navigator?.hardwareConcurrency ?? 1, 4));
}

/** A worker's progress message as the public FineTuneProgress. @param {any} m */
function progressOf(m) {
  const { type, id, ...p } = m;
  return p;
}

/** @param {string} a @param {string} b */
function commonPrefix(a, b) {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

export { hasModel, packageUrl };
