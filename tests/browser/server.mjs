// A tiny static file server for the browser tests and for trying the demo by hand. No dependencies.
//
// - Serves one root directory at "/" and any number of extra URL prefixes from other directories
//   (e.g. "/fixtures/" -> tests/fixtures), on 127.0.0.1 (a secure context, so WebGPU is exposed).
// - Correct MIME types, including application/wasm (needed by WebAssembly.instantiateStreaming).
// - Cross-origin isolation headers (COOP same-origin + COEP require-corp), so SharedArrayBuffer and
//   wasm threads work; `crossOriginIsolated` is true in served pages (a "?coi=0" query leaves
//   COOP/COEP off that one response: a page that is not isolated).
// - No caching, no directory listings, no path traversal out of a mounted directory.
//
// CLI:  node tests/browser/server.mjs [ROOT=www] [--port N] [--mount /prefix/=DIR ...]
//       e.g. node tests/browser/server.mjs www --mount /models/=target/test-packages

import { createServer } from 'node:http';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** @type {Record<string, string>} */
export const MIME_TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.htm': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.webmanifest': 'application/manifest+json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.tsv': 'text/tab-separated-values; charset=utf-8',
  '.md': 'text/markdown; charset=utf-8',
  '.wasm': 'application/wasm',
  '.wgsl': 'text/wgsl; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.safetensors': 'application/octet-stream',
  '.bin': 'application/octet-stream',
  '.spm': 'application/octet-stream',
  '.model': 'application/octet-stream',
};

/** Headers sent with every response. */
export const COMMON_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'Cache-Control': 'no-store',
  'X-Content-Type-Options': 'nosniff',
};

/**
 * @typedef {object} ServerOptions
 * @property {string} root                       directory served at "/"
 * @property {Record<string, string>} [mounts]   URL prefix (e.g. "/fixtures/") -> directory
 * @property {string} [host]                     default 127.0.0.1
 * @property {number} [port]                     default 0 (a free port)
 * @property {(line: string) => void} [log]      request log (only errors by default)
 */

/**
 * Start the server. Resolves once it listens.
 * @param {ServerOptions} opts
 * @returns {Promise<{ url: string, port: number, close: () => Promise<void> }>}
 */
export async function startServer(opts) {
  const host = opts.host ?? '127.0.0.1';
  const log = opts.log ?? (() => {});
  // Longest prefix first, so "/a/b/" wins over "/a/" and "/".
  const table = Object.entries(opts.mounts ?? {})
    .map(([prefix, dir]) => [normalizePrefix(prefix), path.resolve(dir)])
    .concat([['/', path.resolve(opts.root)]])
    .sort((a, b) => b[0].length - a[0].length);

  const server = createServer(async (req, res) => {
    try {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        return send(res, 405, 'method not allowed\n', { Allow: 'GET, HEAD' });
      }
      const url = new URL(req.url ?? '/', 'http://localhost');
      let pathname;
      try {
        pathname = decodeURIComponent(url.pathname);
      } catch {
        return send(res, 400, 'bad url\n');
      }
      if (pathname.includes('\0')) return send(res, 400, 'bad url\n');
      const hit = table.find(([prefix]) => pathname === prefix.slice(0, -1) || pathname.startsWith(prefix));
      if (!hit) return send(res, 404, 'not found\n');
      const [prefix, dir] = hit;
      if (pathname === prefix.slice(0, -1)) {
        // "/fixtures" -> "/fixtures/"
        return send(res, 301, '', { Location: prefix + url.search });
      }
      const rel = pathname.slice(prefix.length);
      let file = path.resolve(dir, '.' + path.posix.sep + rel);
      if (file !== dir && !file.startsWith(dir + path.sep)) return send(res, 403, 'forbidden\n');

      let st = await stat(file).catch(() => null);
      if (st?.isDirectory()) {
        if (!pathname.endsWith('/')) return send(res, 301, '', { Location: pathname + '/' + url.search });
        file = path.join(file, 'index.html');
        st = await stat(file).catch(() => null);
      }
      if (!st || !st.isFile()) {
        // Browsers ask for /favicon.ico on their own; answer "no content" instead of a noisy 404.
        if (pathname === '/favicon.ico') return send(res, 204, '');
        log(`404 ${pathname}`);
        return send(res, 404, `not found: ${pathname}\n`);
      }
      const type = MIME_TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
      /** @type {Record<string, string | number>} */
      const headers = { ...COMMON_HEADERS, 'Content-Type': type, 'Content-Length': st.size };
      // "?coi=0": a page without cross-origin isolation, as most static hosts serve it (tests).
      if (url.searchParams.get('coi') === '0') {
        delete headers['Cross-Origin-Opener-Policy'];
        delete headers['Cross-Origin-Embedder-Policy'];
      }
      res.writeHead(200, headers);
      if (req.method === 'HEAD') return res.end();
      const stream = createReadStream(file);
      stream.on('error', (e) => res.destroy(e));
      stream.pipe(res);
    } catch (e) {
      log(`500 ${req.url}: ${e}`);
      if (!res.headersSent) send(res, 500, 'internal error\n');
      else res.destroy();
    }
  });
  // Do not let keep-alive sockets hold the process open.
  server.keepAliveTimeout = 1000;

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => resolve(undefined));
  });
  const addr = /** @type {import('node:net').AddressInfo} */ (server.address());
  return {
    url: `http://${host}:${addr.port}`,
    port: addr.port,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}

/** @param {string} p */
function normalizePrefix(p) {
  let s = p.startsWith('/') ? p : '/' + p;
  if (!s.endsWith('/')) s += '/';
  return s;
}

/**
 * @param {import('node:http').ServerResponse} res
 * @param {number} status
 * @param {string} body
 * @param {Record<string, string>} [headers]
 */
function send(res, status, body, headers = {}) {
  res.writeHead(status, {
    ...COMMON_HEADERS,
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    ...headers,
  });
  res.end(body);
}

// ------------------------------------------------------------------------------------------------
// CLI
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  let root = 'www';
  let port = 8000;
  /** @type {Record<string, string>} */
  const mounts = {};
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--port') port = Number(args[++i]);
    else if (a === '--mount') {
      const spec = args[++i] ?? '';
      const eq = spec.indexOf('=');
      if (eq < 1) {
        console.error(`--mount wants /prefix/=DIR, got "${spec}"`);
        process.exit(2);
      }
      mounts[spec.slice(0, eq)] = spec.slice(eq + 1);
    } else if (a === '-h' || a === '--help') {
      console.log('usage: node server.mjs [ROOT=www] [--port N] [--mount /prefix/=DIR ...]');
      process.exit(0);
    } else root = a;
  }
  const srv = await startServer({ root, mounts, port, log: (l) => console.log(l) });
  console.log(`serving ${path.resolve(root)} at ${srv.url}/`);
  for (const [p, d] of Object.entries(mounts)) console.log(`  ${p} -> ${path.resolve(d)}`);
}
