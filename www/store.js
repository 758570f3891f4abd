// The model store: marian-wasm packages kept in the Cache API, so a second load needs no network.
//
// A package is a folder URL holding manifest.json and the files it lists (each with size and
// sha256). The store's rule: a cached package is trusted only when its manifest is cached, and the
// manifest is written last, after every file arrived and matched its sha256. An interrupted or
// corrupted download therefore never leaves an entry a later load trusts: the verified files it did
// store are reused (and verified again on use), the rest is fetched again. Works in a page and in a
// worker (both have `caches` and `crypto.subtle`).

/** The Cache API bucket; bump the suffix if the layout ever changes. */
export const CACHE_NAME = 'marian-wasm-models-v1';
const MANIFEST = 'manifest.json';

/**
 * @typedef {{ name: string, size: number, sha256: string }} ManifestFile
 * @typedef {{ format: string, format_version: number, quant: string, files: ManifestFile[],
 *   model: Record<string, unknown>, generation: Record<string, unknown>, [key: string]: unknown }} Manifest
 * @typedef {{ url: string, manifest: Manifest, bytes: number, quant: string, files: number }} StoredModel
 * @typedef {{ loaded: number, total: number, file: string, fromCache: boolean }} LoadProgress
 * @typedef {{ manifestBytes: Uint8Array, files: Record<string, Uint8Array>, manifest: Manifest,
 *   fromCache: boolean }} LoadedPackage
 * @typedef {{ onProgress?: (p: LoadProgress) => void, signal?: AbortSignal, store?: boolean,
 *   manifestSha256?: string }} LoadOptions
 *   store: keep a downloaded package in the store (default true); manifestSha256: the sha256 a
 *   catalog gives for manifest.json (which pins every file): a stored copy with another manifest
 *   is replaced, a downloaded one refused
 */

/** Package folder URL, absolute, ending in `/`. @param {string | URL} url */
export function packageUrl(url) {
  const base = typeof self !== 'undefined' && self.location ? self.location.href : undefined;
  const u = new URL(String(url), base);
  if (!u.pathname.endsWith('/')) u.pathname += '/';
  u.hash = '';
  return u.href;
}

function hasCacheApi() {
  return typeof caches !== 'undefined';
}

/** @param {Uint8Array} bytes */
async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', /** @type {BufferSource} */ (bytes)));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * Parse and sanity-check a manifest; throws a clear error for anything that is not one.
 * @param {Uint8Array} bytes
 * @param {string} where
 * @returns {Manifest}
 */
export function parseManifest(bytes, where) {
  let m;
  try {
    m = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    throw new Error(`${where}: manifest.json is not valid JSON (${e instanceof Error ? e.message : e})`);
  }
  if (!m || m.format !== 'marian-wasm-package' || !Array.isArray(m.files)) {
    throw new Error(`${where}: not a marian-wasm package manifest (format ${JSON.stringify(m?.format)})`);
  }
  for (const f of m.files) {
    if (typeof f?.name !== 'string' || !/^[A-Za-z0-9._-]+$/.test(f.name) || f.name === MANIFEST) {
      throw new Error(`${where}: bad file name in manifest: ${JSON.stringify(f?.name)}`);
    }
    if (!Number.isSafeInteger(f.size) || f.size < 0 || typeof f.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(f.sha256)) {
      throw new Error(`${where}: manifest entry ${f.name} lacks a valid size and sha256`);
    }
  }
  return m;
}

/**
 * Fetch a URL's body with progress; rejects on HTTP errors, network errors and abort.
 * @param {string} url
 * @param {(n: number) => void} onChunk
 * @param {AbortSignal | undefined} signal
 * @param {number | undefined} expectedSize  stop early when a server sends more than this
 */
async function fetchBytes(url, onChunk, signal, expectedSize) {
  let resp;
  try {
    resp = await fetch(url, { signal });
  } catch (e) {
    if (signal?.aborted) throw signal.reason ?? new DOMException('aborted', 'AbortError');
    throw new Error(`${url}: network error (${e instanceof Error ? e.message : e})`);
  }
  if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status}`);
  if (!resp.body) {
    const b = new Uint8Array(await resp.arrayBuffer());
    onChunk(b.length);
    return b;
  }
  const reader = resp.body.getReader();
  /** @type {Uint8Array[]} */
  const parts = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    n += value.length;
    if (expectedSize !== undefined && n > expectedSize) {
      await reader.cancel();
      throw new Error(`${url}: larger than the ${expectedSize} bytes the manifest says`);
    }
    onChunk(value.length);
  }
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Load a package: from the store when it holds a complete, verified copy, else from the network
 * (then stored, manifest last). Every file is checked against the manifest's size and sha256.
 * @param {string | URL} url  the package folder
 * @param {LoadOptions} [options]
 * @returns {Promise<LoadedPackage>}
 */
export async function loadPackage(url, options = {}) {
  const base = packageUrl(url);
  const { onProgress, signal, manifestSha256 } = options;
  const store = options.store !== false && hasCacheApi();
  const cache = hasCacheApi() ? await caches.open(CACHE_NAME) : null;

  // 1. A complete stored copy?
  const cachedManifest = cache ? await cache.match(base + MANIFEST) : undefined;
  if (cache && cachedManifest) {
    try {
      const manifestBytes = new Uint8Array(await cachedManifest.arrayBuffer());
      if (manifestSha256 && (await sha256Hex(manifestBytes)) !== manifestSha256) {
        throw new Error('the stored manifest.json is not the one the catalog names (the package was updated?)');
      }
      const manifest = parseManifest(manifestBytes, base);
      const total = manifest.files.reduce((s, f) => s + f.size, 0);
      /** @type {Record<string, Uint8Array>} */
      const files = {};
      let loaded = 0;
      for (const f of manifest.files) {
        const r = await cache.match(base + f.name);
        if (!r) throw new Error(`${f.name} missing from the store`);
        const bytes = new Uint8Array(await r.arrayBuffer());
        if (bytes.length !== f.size || (await sha256Hex(bytes)) !== f.sha256) {
          throw new Error(`${f.name} in the store does not match its sha256`);
        }
        files[f.name] = bytes;
        loaded += bytes.length;
        onProgress?.({ loaded, total, file: f.name, fromCache: true });
      }
      return { manifestBytes, files, manifest, fromCache: true };
    } catch (e) {
      // A damaged stored copy is dropped, never used: fall through to the network.
      console.warn(`marian-wasm store: ${base}: ${e instanceof Error ? e.message : e}; downloading again`);
      await cache.delete(base + MANIFEST);
    }
  }

  // 2. From the network (reusing files an earlier, interrupted download verified and stored).
  const manifestBytes = await fetchBytes(base + MANIFEST, () => {}, signal, 1 << 20);
  if (manifestSha256) {
    const got = await sha256Hex(manifestBytes);
    if (got !== manifestSha256) {
      throw new Error(
        `${base}${MANIFEST}: sha256 ${got} is not the catalog's ${manifestSha256} (the package changed after the catalog was written: run \`marian-wasm catalog add\` again)`,
      );
    }
  }
  const manifest = parseManifest(manifestBytes, base);
  const total = manifest.files.reduce((s, f) => s + f.size, 0);
  /** @type {Record<string, Uint8Array>} */
  const files = {};
  let loaded = 0;
  for (const f of manifest.files) {
    if (signal?.aborted) throw signal.reason ?? new DOMException('aborted', 'AbortError');
    let bytes;
    const partial = cache ? await cache.match(base + f.name) : undefined;
    if (partial) {
      const b = new Uint8Array(await partial.arrayBuffer());
      if (b.length === f.size && (await sha256Hex(b)) === f.sha256) bytes = b;
    }
    if (bytes) {
      loaded += bytes.length;
      onProgress?.({ loaded, total, file: f.name, fromCache: true });
    } else {
      bytes = await fetchBytes(
        base + f.name,
        (n) => {
          loaded += n;
          onProgress?.({ loaded, total, file: f.name, fromCache: false });
        },
        signal,
        f.size,
      );
      if (bytes.length !== f.size) {
        throw new Error(`${base}${f.name}: ${bytes.length} bytes, the manifest says ${f.size} (truncated download?)`);
      }
      const got = await sha256Hex(bytes);
      if (got !== f.sha256) throw new Error(`${base}${f.name}: sha256 ${got} does not match the manifest's ${f.sha256}`);
      if (store && cache) await cache.put(base + f.name, new Response(/** @type {BodyInit} */ (bytes)));
    }
    files[f.name] = bytes;
  }
  if (store && cache) await cache.put(base + MANIFEST, new Response(/** @type {BodyInit} */ (manifestBytes)));
  return { manifestBytes, files, manifest, fromCache: false };
}

/**
 * A loaded package's files as the wasm API's `Translator.fromFiles` / `fromFilesOn` take them: file
 * name -> bytes, manifest.json included.
 * @param {LoadedPackage} pkg
 * @returns {Record<string, Uint8Array>}
 */
export function packageFiles(pkg) {
  return { [MANIFEST]: pkg.manifestBytes, ...pkg.files };
}

/**
 * A raw wasm `Translator` from a package URL in one call, for code that drives a wasm build (the
 * marian_wasm.js of www/pkg, pkg-mt, …) itself: `loadPackage` (the store, else the network; every
 * file checked against the manifest; `onProgress`, `signal`, `store`, `manifestSha256` as there),
 * then `Translator.fromFilesOn(files, device)`. (`MarianTranslator` does the same in its worker.)
 * @template T
 * @param {{ Translator: { fromFilesOn(files: object, device: string): Promise<T> } }} wasm  the
 *   module of an initialized wasm build (`await init()` done)
 * @param {string | URL} url  the package folder
 * @param {LoadOptions & { device?: string }} [options]  device: "wasm" (the CPU, default),
 *   "webgpu" (fails when WebGPU cannot run the model) or "auto" (WebGPU when it can, else the CPU;
 *   the translator's `gpuUnavailable` says why not); another name is an error
 * @returns {Promise<T>}
 */
export async function loadTranslator(wasm, url, options = {}) {
  const { device = 'wasm', ...load } = options;
  const pkg = await loadPackage(url, load);
  return wasm.Translator.fromFilesOn(packageFiles(pkg), device);
}

/**
 * The complete packages in the store.
 * @returns {Promise<StoredModel[]>}
 */
export async function listModels() {
  if (!hasCacheApi()) return [];
  const cache = await caches.open(CACHE_NAME);
  /** @type {StoredModel[]} */
  const out = [];
  for (const req of await cache.keys()) {
    if (!req.url.endsWith('/' + MANIFEST)) continue;
    const r = await cache.match(req);
    if (!r) continue;
    try {
      const url = req.url.slice(0, -MANIFEST.length);
      const manifest = parseManifest(new Uint8Array(await r.arrayBuffer()), url);
      out.push({
        url,
        manifest,
        quant: manifest.quant,
        files: manifest.files.length,
        bytes: manifest.files.reduce((s, f) => s + f.size, 0),
      });
    } catch {
      /* not ours or damaged: not listed, and not trusted by loadPackage either */
    }
  }
  return out.sort((a, b) => a.url.localeCompare(b.url));
}

/**
 * Is a complete copy of this package in the store (with this manifest, when its sha256 is given)?
 * @param {string | URL} url
 * @param {string} [manifestSha256]  the sha256 of manifest.json a catalog gives
 */
export async function hasModel(url, manifestSha256) {
  if (!hasCacheApi()) return false;
  const cache = await caches.open(CACHE_NAME);
  const r = await cache.match(packageUrl(url) + MANIFEST);
  if (!r) return false;
  return !manifestSha256 || (await sha256Hex(new Uint8Array(await r.arrayBuffer()))) === manifestSha256;
}

/**
 * Remove a package (its manifest first, so a concurrent load never trusts a half-deleted entry).
 * @param {string | URL} url
 * @returns {Promise<boolean>} whether anything was removed
 */
export async function deleteModel(url) {
  if (!hasCacheApi()) return false;
  const base = packageUrl(url);
  const cache = await caches.open(CACHE_NAME);
  let removed = await cache.delete(base + MANIFEST);
  for (const req of await cache.keys()) {
    if (req.url.startsWith(base)) removed = (await cache.delete(req)) || removed;
  }
  return removed;
}
