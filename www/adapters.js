// Fine-tuning adapters kept in IndexedDB (they are the user's own work: they survive reloads and
// stay on the device), plus reading an adapter file's manifest without the wasm module.
//
// An adapter file is safetensors: 8 bytes little-endian header length, the JSON header, the
// tensors. Its manifest (base model sha256, what was trained, hyper-parameters, metrics) is the
// JSON string at header.__metadata__.marian_wasm_adapter.

const DB_NAME = 'marian-wasm';
const DB_VERSION = 1;
const STORE = 'adapters';

/**
 * @typedef {{ format: string, format_version: number, base_model_sha256: string, d_model: number,
 *   target_vocab_size: number, decoder_ffn_dim?: number, trained: string, hyperparameters: Record<string, unknown>,
 *   metrics: Record<string, any>, created_by: string }} AdapterManifest
 * @typedef {{ name: string, bytes: Uint8Array, manifest: AdapterManifest, baseModelSha256: string,
 *   created: number, size: number }} StoredAdapter
 */

/**
 * The manifest inside an adapter file; throws a clear error when the bytes are not an adapter.
 * @param {Uint8Array} bytes
 * @returns {AdapterManifest}
 */
export function readAdapterManifest(bytes) {
  if (!(bytes instanceof Uint8Array) || bytes.length < 8) throw new Error('not an adapter file (too short)');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const len = Number(view.getBigUint64(0, true));
  if (len <= 0 || 8 + len > bytes.length) throw new Error('not an adapter file (bad safetensors header length)');
  let header;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + len)));
  } catch {
    throw new Error('not an adapter file (unreadable header)');
  }
  const raw = header?.__metadata__?.marian_wasm_adapter;
  if (typeof raw !== 'string') throw new Error('not a marian-wasm adapter (no adapter manifest in the file)');
  const manifest = JSON.parse(raw);
  if (manifest.format !== 'marian-wasm-adapter') throw new Error(`not a marian-wasm adapter (format ${manifest.format})`);
  return manifest;
}

/** @returns {Promise<IDBDatabase>} */
function open() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB_NAME, DB_VERSION);
    req.onupgradeneeded = () => {
      const db = req.result;
      if (!db.objectStoreNames.contains(STORE)) db.createObjectStore(STORE, { keyPath: 'name' });
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

/**
 * @template T
 * @param {'readonly' | 'readwrite'} mode
 * @param {(s: IDBObjectStore) => IDBRequest<T>} f
 * @returns {Promise<T>}
 */
async function tx(mode, f) {
  const db = await open();
  try {
    return await new Promise((resolve, reject) => {
      const t = db.transaction(STORE, mode);
      const req = f(t.objectStore(STORE));
      t.oncomplete = () => resolve(req.result);
      t.onerror = () => reject(t.error);
      t.onabort = () => reject(t.error ?? new Error('IndexedDB transaction aborted'));
    });
  } finally {
    db.close();
  }
}

/**
 * Keep an adapter under a name (replacing one of the same name).
 * @param {string} name
 * @param {Uint8Array} bytes
 * @returns {Promise<StoredAdapter>}
 */
export async function saveAdapter(name, bytes) {
  if (!name || typeof name !== 'string') throw new TypeError('an adapter needs a name');
  const manifest = readAdapterManifest(bytes);
  /** @type {StoredAdapter} */
  const entry = {
    name,
    bytes: new Uint8Array(bytes),
    manifest,
    baseModelSha256: manifest.base_model_sha256,
    created: Date.now(),
    size: bytes.length,
  };
  await tx('readwrite', (s) => s.put(entry));
  return entry;
}

/**
 * Stored adapters (all, or those made for one base model).
 * @param {string} [baseModelSha256]
 * @returns {Promise<StoredAdapter[]>}
 */
export async function listAdapters(baseModelSha256) {
  /** @type {StoredAdapter[]} */
  const all = await tx('readonly', (s) => s.getAll());
  return all.filter((a) => !baseModelSha256 || a.baseModelSha256 === baseModelSha256).sort((a, b) => a.created - b.created);
}

/**
 * @param {string} name
 * @returns {Promise<StoredAdapter | undefined>}
 */
export async function getAdapter(name) {
  return tx('readonly', (s) => s.get(name));
}

/** @param {string} name */
export async function deleteAdapter(name) {
  await tx('readwrite', (s) => s.delete(name));
}
