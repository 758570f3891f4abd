// Service worker of the demo: keeps the app shell and the wasm so the demo opens with the network
// off after a first visit. Models are not handled here: the model store (store.js, Cache API) keeps
// them, verified against their manifest.
//
// Shell requests go to the network first (a new deploy is seen at once) and fall back to the cache.

const SHELL_CACHE = 'marian-wasm-shell-v7';
const SHELL = [
  './',
  'index.html',
  'article.html',
  'style.css',
  'app.js',
  'marian-wasm.js',
  'page-translator.js',
  'page.js',
  'store.js',
  'adapters.js',
  'catalog.js',
  'worker.js',
  'wasm-features.js',
];
importScripts('wasm-features.js');

/** The wasm builds: each folder lists its files in files.json (scripts/build-wasm.sh). pkg/ is
 * required; the multi-threaded build (pkg-mt) and the relaxed-SIMD twins (pkg-relaxed,
 * pkg-mt-relaxed) are optional: without them one thread / the plain builds run. */
const BUILDS = ['pkg/', 'pkg-mt/', 'pkg-relaxed/', 'pkg-mt-relaxed/'];

/**
 * Keep the builds this browser's worker loads (worker.js): the relaxed twins where the engine runs
 * relaxed SIMD and the deploy has them, else the plain ones — not all four (6 MB of wasm each).
 * Whatever else the worker fetches is kept when fetched (below).
 * @param {Cache} cache
 */
async function cacheBuilds(cache) {
  const relaxed = Boolean(/** @type {any} */ (self).marianWasmFeatures?.relaxedSimd);
  if (relaxed && (await cacheBuild(cache, 'pkg-relaxed/', false))) {
    await cacheBuild(cache, 'pkg-mt-relaxed/', false);
  } else {
    await cacheBuild(cache, 'pkg/', true);
    await cacheBuild(cache, 'pkg-mt/', false);
  }
}

/**
 * Cache one build's files; whether it worked (a required build's failure fails the install).
 * @param {Cache} cache @param {string} dir @param {boolean} required
 */
async function cacheBuild(cache, dir, required) {
  try {
    const resp = await fetch(`${dir}files.json`, { cache: 'no-store' });
    if (!resp.ok) throw new Error(`${dir}files.json: HTTP ${resp.status}`);
    /** @type {string[]} */
    const files = await resp.json();
    await cache.addAll(files.map((f) => dir + f));
    return true;
  } catch (e) {
    if (required) throw e;
    return false;
  }
}

self.addEventListener('install', (/** @type {any} */ event) => {
  event.waitUntil(
    caches
      .open(SHELL_CACHE)
      .then((c) => Promise.all([c.addAll(SHELL), cacheBuilds(c)]))
      .then(() => /** @type {any} */ (self).skipWaiting()),
  );
});

self.addEventListener('activate', (/** @type {any} */ event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith('marian-wasm-shell-') && k !== SHELL_CACHE).map((k) => caches.delete(k))))
      .then(() => /** @type {any} */ (self).clients.claim()),
  );
});

self.addEventListener('fetch', (/** @type {any} */ event) => {
  const req = event.request;
  const url = new URL(req.url);
  if (req.method !== 'GET' || url.origin !== self.location.origin) return;
  const scope = new URL(/** @type {any} */ (self).registration.scope);
  const path = url.pathname.slice(scope.pathname.length);
  // Only the shell and the wasm builds; model packages are the model store's business.
  if (path !== '' && !SHELL.includes(path) && !BUILDS.some((dir) => path.startsWith(dir))) return;
  event.respondWith(
    (async () => {
      const cache = await caches.open(SHELL_CACHE);
      try {
        const resp = await fetch(req);
        if (resp.ok && resp.type === 'basic') await cache.put(req, resp.clone());
        return resp;
      } catch (e) {
        const hit = await cache.match(req, { ignoreSearch: true });
        if (hit) return hit;
        throw e;
      }
    })(),
  );
});
