// Driver for scripts/bench_browser_peers.sh (run that: it makes the model, tokenizer.json, the
// reference input ids and the npm install this needs). Serves scripts/bench_browser_peers.html,
// transformers.js, onnxruntime-web's dist files and the model from 127.0.0.1 with COOP/COEP (so
// `crossOriginIsolated` is true and ONNX Runtime Web can use wasm threads), runs every
// (threads, batch) configuration in a fresh page of one headless Chromium, prints a markdown table
// on stdout and writes JSON.
//
//   node scripts/bench_browser_peers.mjs --model target/bench/tjs-model \
//     --expected target/bench/tjs-expected-input.json --tools .tools/tjs \
//     [--json OUT] [--threads 1,2] [--batches 1,16] [--tokens 32] [--dtype q8] [--timeout-s 900]
//
// CHROMIUM: browser binary (default /usr/bin/chromium). Waits while /tmp/QUIET_PLEASE exists
// before each configuration. Chromium is always killed at the end (browser.close() can hang after
// multi-threaded wasm).

import { createServer } from 'node:http';
import { createReadStream, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
const { chromium } = createRequire(path.join(ROOT, 'tests/browser/package.json'))('playwright-core');

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
// The flags tests/browser/run.mjs uses on this machine.
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const QUIET_FILE = '/tmp/QUIET_PLEASE';

const err = (/** @type {string} */ s) => process.stderr.write(`[bench-browser] ${s}\n`);
const sleep = (/** @type {number} */ ms) => new Promise((r) => setTimeout(r, ms));

function parseArgs(argv) {
  const a = { json: '', threads: '1,2', batches: '1,16', tokens: '32', dtype: 'q8', 'timeout-s': '900' };
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i].replace(/^--/, '');
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) throw new Error(`bad argument ${argv[i]}`);
    a[k] = argv[i + 1];
  }
  for (const k of ['model', 'expected', 'tools']) if (!a[k]) throw new Error(`--${k} is required`);
  return a;
}

// ---------------------------------------------------------------- static server (COOP/COEP)
const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.onnx': 'application/octet-stream',
  '.spm': 'application/octet-stream',
};
const HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'Cache-Control': 'no-store',
};

/**
 * @param {Record<string, string>} mounts URL prefix ("/x/") -> directory, or exact path -> file
 * @returns {Promise<{ url: string, close: () => void }>}
 */
function startServer(mounts) {
  const table = Object.entries(mounts).sort((a, b) => b[0].length - a[0].length);
  const server = createServer((req, res) => {
    const fail = (/** @type {number} */ code) => {
      res.writeHead(code, { ...HEADERS, 'Content-Type': 'text/plain' });
      res.end(`${code}\n`);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return fail(405);
    let urlPath;
    try {
      urlPath = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    } catch {
      return fail(400);
    }
    let file = '';
    for (const [prefix, target] of table) {
      if (prefix.endsWith('/') ? urlPath.startsWith(prefix) : urlPath === prefix) {
        if (!prefix.endsWith('/')) file = target;
        else {
          file = path.resolve(target, `.${urlPath.slice(prefix.length - 1)}`);
          if (file !== target && !file.startsWith(target + path.sep)) return fail(403);
        }
        break;
      }
    }
    let st;
    try {
      st = file ? statSync(file) : null;
    } catch {
      st = null;
    }
    if (!st || !st.isFile()) {
      err(`  server: 404 ${urlPath}`);
      return fail(404);
    }
    res.writeHead(200, {
      ...HEADERS,
      'Content-Type': MIME[path.extname(file)] ?? 'application/octet-stream',
      'Content-Length': st.size,
    });
    if (req.method === 'HEAD') return res.end();
    createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const addr = /** @type {import('node:net').AddressInfo} */ (server.address());
      resolve({
        url: `http://127.0.0.1:${addr.port}`,
        close: () => {
          server.closeAllConnections?.();
          server.close();
        },
      });
    });
  });
}

// ---------------------------------------------------------------- chromium lifetime
let userDataDir = '';
/** Every process of our chromium carries our fresh --user-data-dir (Linux /proc). */
function killChromium() {
  if (!userDataDir) return;
  const needle = `--user-data-dir=${userDataDir}`;
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    let cmd = '';
    try {
      cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (cmd.split('\0').includes(needle)) {
      try {
        process.kill(Number(e), 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
  const dir = userDataDir;
  userDataDir = '';
  // Killed processes may still be flushing into the profile for a moment: retry, best effort.
  for (let i = 0; i < 10; i++) {
    try {
      rmSync(dir, { recursive: true, force: true });
      return;
    } catch {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
    }
  }
  err(`could not remove ${dir}`);
}

/** @template T @param {Promise<T>} p @param {number} ms @param {string} what @returns {Promise<T>} */
function withTimeout(p, ms, what) {
  let timer;
  return Promise.race([
    p,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms / 1000} s`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

async function waitQuiet(what) {
  while (existsSync(QUIET_FILE)) {
    err(`${QUIET_FILE} exists: waiting 30 s before ${what}`);
    await sleep(30_000);
  }
}

// ---------------------------------------------------------------- main
async function main() {
  const a = parseArgs(process.argv.slice(2));
  const modelDir = path.resolve(a.model);
  const tools = path.resolve(a.tools);
  const tjsDist = path.join(tools, 'node_modules/@huggingface/transformers/dist');
  const ortDist = path.join(tools, 'node_modules/onnxruntime-web/dist');
  for (const p of [path.join(modelDir, 'tokenizer.json'), path.join(tjsDist, 'transformers.js'), ortDist]) {
    if (!existsSync(p)) throw new Error(`${p} missing: run scripts/bench_browser_peers.sh`);
  }
  const version = (dir) => JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')).version;
  const tjsVersion = version(path.join(tools, 'node_modules/@huggingface/transformers'));
  const ortVersion = version(path.join(tools, 'node_modules/onnxruntime-web'));
  const { sentences, input_ids: expectedIds } = JSON.parse(readFileSync(a.expected, 'utf8'));
  const threadsList = a.threads.split(',').map(Number);
  const batches = a.batches.split(',').map(Number);
  const tokens = Number(a.tokens);
  const timeoutMs = Number(a['timeout-s']) * 1000;

  const srv = await startServer({
    '/bench.html': path.join(HERE, 'bench_browser_peers.html'),
    '/tjs/': tjsDist,
    '/ort/': ortDist,
    '/models/tjs-model/': modelDir,
  });
  err(`serving on ${srv.url}: /tjs/ ${tjsDist}, /ort/ ${ortDist}, /models/tjs-model/ ${modelDir}`);

  userDataDir = mkdtempSync(path.join(tmpdir(), 'tjs-bench-chromium-'));
  /** @type {any[]} */
  const results = [];
  let chromiumVersion = '?';
  let failed = false;
  try {
    const context = await withTimeout(
      chromium.launchPersistentContext(userDataDir, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 60_000 }),
      90_000,
      'chromium launch',
    );
    chromiumVersion = context.browser()?.version() ?? '?';
    err(`chromium ${chromiumVersion}, transformers.js ${tjsVersion}, onnxruntime-web ${ortVersion}`);
    for (const p of context.pages()) await p.close().catch(() => {});
    configs: for (const threads of threadsList) {
      for (const batch of batches) {
        const name = `${threads} thread(s), batch ${batch}`;
        await waitQuiet(name);
        const loadBefore = loadavg()[0];
        err(`run: ${name} (load average ${loadBefore.toFixed(2)})`);
        const page = await context.newPage();
        let workers = 0;
        page.on('worker', () => workers++);
        page.on('console', (m) => {
          if (m.type() === 'error' || m.type() === 'warning') err(`  console.${m.type()}: ${m.text().slice(0, 300)}`);
        });
        page.on('pageerror', (e) => err(`  pageerror: ${e.message}`));
        page.on('response', (r) => {
          if (r.status() >= 400) err(`  HTTP ${r.status()} ${r.url()}`);
        });
        try {
          const started = Date.now();
          const r = await withTimeout(
            (async () => {
              await page.goto(`${srv.url}/bench.html`);
              await page.waitForFunction(() => /** @type {any} */ (window).benchReady === true, null, { timeout: 60_000 });
              const cfg = { modelId: 'tjs-model', dtype: a.dtype, threads, batch, tokens, sentences, expectedIds };
              return page.evaluate((c) => /** @type {any} */ (window).runBench(c), cfg);
            })(),
            timeoutMs,
            name,
          );
          r.workers = workers;
          r.loadavg1Before = loadBefore;
          r.loadavg1After = loadavg()[0];
          r.wallS = (Date.now() - started) / 1000;
          err(
            `  ${r.tokensPerS.toFixed(1)} tokens/s (${r.generatedTokens} tokens in ${r.seconds.toFixed(2)} s, ` +
              `${r.inputTokens} input tokens), load ${r.loadS.toFixed(2)} s, ORT numThreads ${r.ortNumThreads}, ` +
              `workers ${workers}, crossOriginIsolated ${r.crossOriginIsolated}`,
          );
          if (r.badTokenization.length) {
            throw new Error(`transformers.js input ids differ from MarianTokenizer's on sentences ${r.badTokenization.slice(0, 10)}`);
          }
          if (r.generatedTokens !== sentences.length * tokens) {
            throw new Error(`generated ${r.generatedTokens} tokens, expected ${sentences.length * tokens}`);
          }
          if (r.ortNumThreads !== threads) throw new Error(`ORT ran with ${r.ortNumThreads} threads, not ${threads}`);
          results.push(r);
        } catch (e) {
          failed = true;
          err(`  FAILED: ${/** @type {any} */ (e)?.message ?? e}`);
          results.push({ threads, batch, error: String(/** @type {any} */ (e)?.message ?? e) });
          if (/timed out/.test(String(e))) break configs; // the page may be wedged: stop here
        } finally {
          await withTimeout(page.close(), 10_000, 'page.close').catch(() => {});
        }
      }
    }
  } finally {
    killChromium(); // never wait on browser.close()
    srv.close();
  }

  const engine = `transformers.js ${tjsVersion} ${a.dtype} (onnxruntime-web ${ortVersion}, wasm)`;
  const out = [];
  out.push(`Chromium ${chromiumVersion}; ${sentences.length} sentences, greedy, ${tokens} new tokens each, ` +
    'one warm-up batch untimed, tokenization included');
  out.push('');
  out.push('| engine | threads | batch | tokens/s | load s |');
  out.push('|---|---|---|---|---|');
  for (const r of results) {
    out.push(`| ${engine} | ${r.threads} | ${r.batch} | ${r.error ? 'FAILED' : r.tokensPerS.toFixed(1)} | ${r.error ? '—' : r.loadS.toFixed(2)} |`);
  }
  const ok = results.filter((r) => !r.error);
  if (ok.length) {
    out.push('');
    out.push(`1-min load average before each run (${cpus().length} cores; it includes the tail of the previous run's own load): ` +
      ok.map((r) => `${r.threads}t/b${r.batch} ${r.loadavg1Before.toFixed(2)}`).join(', '));
  }
  process.stdout.write(`${out.join('\n')}\n`);
  if (a.json) {
    const doc = {
      engine: 'transformers.js',
      transformers_js: tjsVersion,
      onnxruntime_web: ortVersion,
      dtype: a.dtype,
      device: 'wasm',
      chromium: chromiumVersion,
      model: modelDir,
      sentences: sentences.length,
      tokens_per_sentence: tokens,
      date: new Date().toISOString(),
      results,
    };
    writeFileSync(a.json, `${JSON.stringify(doc, null, 2)}\n`);
    err(`wrote ${a.json}`);
  }
  return failed ? 1 : 0;
}

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    killChromium();
    process.exit(130);
  });
}
let code = 1;
try {
  code = await main();
} catch (e) {
  err(`error: ${/** @type {any} */ (e)?.stack ?? e}`);
  killChromium();
}
process.exit(code);
