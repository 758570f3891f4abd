// Service worker of the demo: keeps the app shell and the wasm so the demo opens with the network
// off after a first visit. Models are not handled here: the model store (store.js, Cache API) keeps
// them, verified against their manifest.
//
// Shell requests go to the network first (a new deploy is seen at once) and fall back to the cache.

const SHELL_CACHE = 'marian-wasm-shell-v3';
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
  'worker.js',
];
/** The wasm builds: each folder lists its files in files.json (scripts/build-wasm.sh). The
 * multi-threaded build (pkg-mt) is optional: a deploy without it runs on one thread; so are the
 * relaxed-SIMD twins (pkg-relaxed, pkg-mt-relaxed): without them the plain builds run. */
const BUILDS = [
  { dir: 'pkg/', required: true },
  { dir: 'pkg-mt/', required: false },
  { dir: 'pkg-relaxed/', required: false },
  { dir: 'pkg-mt-relaxed/', required: false },
];

/** @param {Cache} cache @param {{ dir: string, required: boolean }} build */
async function cacheBuild(cache, build) {
  try {
    const resp = await fetch(`${build.dir}files.json`, { cache: 'no-store' });
    if (!resp.ok) throw new Error(`${build.dir}files.json: HTTP ${resp.status}`);
    /** @type {string[]} */
    const files = await resp.json();
    await cache.addAll(files.map((f) => build.dir + f));
  } catch (e) {
    if (build.required) throw e;
  }
}

self.addEventListener('install', (/** @type {any} */ event) => {
  event.waitUntil(
    caches
      .open(SHELL_CACHE)
      .then((c) => Promise.all([c.addAll(SHELL), ...BUILDS.map((b) => cacheBuild(c, b))]))
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
  if (path !== '' && !SHELL.includes(path) && !BUILDS.some((b) => path.startsWith(b.dir))) return;
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
