// Browser test runner: headless Chromium (WebGPU through SwiftShader) driven by playwright-core.
//
//   node tests/browser/run.mjs [NAME_FILTER ...]
//
// Runs every tests/browser/tests/*.mjs (sorted by name; only those whose file name contains one of
// the filters, when given). Each test module exports
//     export async function run({ page, baseUrl, assert, log, skip, env })
// and may export `timeoutS` (its own limit, default BROWSER_TEST_PER_TEST_TIMEOUT_S or 300).
// Every test gets a fresh page in one shared browser. Prints PASS/FAIL/SKIP per test and exits
// non-zero when any test failed.
//
// Environment (paths are relative to the repository root unless absolute):
//   MARIAN_WWW                   served at /            (default www)
//   MARIAN_TEST_PACKAGES         served at /packages/   (default target/test-packages)
//   MARIAN_FIXTURES              served at /fixtures/   (default tests/fixtures)
//   MARIAN_NPM                   served at /npm/        (default target/npm: scripts/pack-npm.sh)
//   (tests/browser/pages is always served at /test-pages/, models/ at /models/)
//   CHROMIUM                     browser binary         (default /usr/bin/chromium)
//   BROWSER_TEST_TIMEOUT_S       hard limit for the whole run (default 600): chromium is killed and
//                                the runner exits 1. browser.close() can hang (TOOLCHAIN.md), so the
//                                runner never waits on it for long.
//   BROWSER_TEST_PER_TEST_TIMEOUT_S  default per-test limit (default 300)
//   BROWSER_TEST_QUIET=1         do not forward page console messages

import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { startServer } from './server.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const env = process.env;
const fromRoot = (/** @type {string} */ p) => path.resolve(ROOT, p);

const OVERALL_S = Number(env.BROWSER_TEST_TIMEOUT_S || 600);
const PER_TEST_S = Number(env.BROWSER_TEST_PER_TEST_TIMEOUT_S || 300);
const QUIET = env.BROWSER_TEST_QUIET === '1';
const CHROMIUM = env.CHROMIUM || '/usr/bin/chromium';

// Flags verified in TOOLCHAIN.md. Playwright adds --headless itself for headless: true; listing it
// again is harmless. --enable-unsafe-webgpu is what makes requestAdapter() return an adapter.
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--enable-unsafe-webgpu',
  // CHROMIUM_EXTRA_ARGS: more flags, space-separated (profiling, e.g. "--js-flags=--perf-basic-prof";
  // BENCHMARKS.md says where it was used).
  ...(env.CHROMIUM_EXTRA_ARGS || '').split(' ').filter(Boolean),
];

const t0 = Date.now();
const stamp = () => `${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s`;
/** @param {string} line */
const out = (line) => process.stdout.write(`${line}\n`);

class SkipError extends Error {}

/** @type {import('playwright-core').BrowserContext | null} */
let context = null;
/** @type {number | undefined} */
let browserPid;
let userDataDir = '';
/** @type {{ close: () => Promise<void> } | null} */
let server = null;
/** @type {{ name: string, status: 'PASS' | 'FAIL' | 'SKIP', secs: number, note?: string }[]} */
const results = [];
let running = '';

function printSummary() {
  out('');
  out('== browser test summary ==');
  for (const r of results) out(`${r.status.padEnd(4)} ${r.name} (${r.secs.toFixed(1)}s)${r.status === 'SKIP' ? ' - ' + r.note : ''}`);
  if (running) out(`FAIL ${running} (did not finish)`);
}

/**
 * Processes of the chromium we started: every one of them carries our fresh --user-data-dir on its
 * command line (verified: browser, zygotes, gpu, utility and renderer processes). Linux only.
 * @returns {{ pid: number, main: boolean }[]}
 */
function ourChromiumProcesses() {
  if (!userDataDir) return [];
  const needle = `--user-data-dir=${userDataDir}`;
  /** @type {{ pid: number, main: boolean }[]} */
  const found = [];
  let entries = [];
  try {
    entries = readdirSync('/proc');
  } catch {
    return found;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    let cmd = '';
    try {
      cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    const args = cmd.split('\0');
    if (args.includes(needle)) found.push({ pid: Number(e), main: !args.some((a) => a.startsWith('--type=')) });
  }
  return found;
}

/**
 * Kill chromium: its whole process group (playwright starts it detached, so the browser process
 * leads a group of its own), then any straggler carrying our profile dir; then remove the profile.
 */
function killBrowser() {
  if (browserPid && browserPid !== process.pid) {
    try {
      process.kill(-browserPid, 'SIGKILL');
    } catch {
      /* no such group */
    }
  }
  for (const { pid } of ourChromiumProcesses()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  browserPid = undefined;
  if (userDataDir) {
    try {
      rmSync(userDataDir, { recursive: true, force: true });
    } catch {
      /* best effort */
    }
  }
}

/** @param {number} code */
function hardExit(code) {
  killBrowser();
  process.exit(code);
}

const overallTimer = setTimeout(() => {
  out(`[runner] ${stamp()} overall timeout of ${OVERALL_S}s reached (BROWSER_TEST_TIMEOUT_S): killing chromium`);
  printSummary();
  out('RESULT: FAIL (timeout)');
  hardExit(1);
}, OVERALL_S * 1000);
overallTimer.unref();
for (const sig of /** @type {const} */ (['SIGINT', 'SIGTERM'])) {
  process.on(sig, () => {
    out(`[runner] ${sig}: killing chromium`);
    hardExit(130);
  });
}
process.on('uncaughtException', (e) => {
  out(`[runner] uncaught exception: ${e?.stack || e}`);
  hardExit(1);
});
process.on('unhandledRejection', (e) => {
  out(`[runner] unhandled rejection: ${/** @type {any} */ (e)?.stack || e}`);
  hardExit(1);
});

/**
 * @template T
 * @param {Promise<T>} p
 * @param {number} ms
 * @param {string} what
 * @returns {Promise<T>}
 */
function withTimeout(p, ms, what) {
  /** @type {NodeJS.Timeout | undefined} */
  let timer;
  return Promise.race([
    p,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms / 1000}s`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** @param {import('playwright-core').Page} page @param {string} name */
function forwardPageEvents(page, name) {
  if (!QUIET) {
    page.on('console', (m) => out(`  [${name}] console.${m.type()}: ${m.text()}`));
  }
  page.on('pageerror', (e) => out(`  [${name}] pageerror: ${e.stack || e.message}`));
  page.on('crash', () => out(`  [${name}] page crashed`));
  page.on('worker', (w) => {
    if (!QUIET) out(`  [${name}] worker started: ${w.url()}`);
  });
  page.on('requestfailed', (r) => out(`  [${name}] request failed: ${r.url()} (${r.failure()?.errorText})`));
  page.on('response', (r) => {
    if (r.status() >= 400) out(`  [${name}] HTTP ${r.status()} ${r.url()}`);
  });
}

async function main() {
  const filters = process.argv.slice(2);
  const testsDir = path.join(HERE, 'tests');
  const files = readdirSync(testsDir)
    .filter((f) => f.endsWith('.mjs'))
    .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
    .sort();
  if (files.length === 0) {
    out(`[runner] no tests match ${JSON.stringify(filters)} in ${testsDir}`);
    return 1;
  }

  const dirs = {
    www: fromRoot(env.MARIAN_WWW || 'www'),
    packages: fromRoot(env.MARIAN_TEST_PACKAGES || 'target/test-packages'),
    fixtures: fromRoot(env.MARIAN_FIXTURES || 'tests/fixtures'),
    pages: path.join(HERE, 'pages'),
    models: fromRoot('models'),
    npm: fromRoot(env.MARIAN_NPM || 'target/npm'),
  };
  const srv = await startServer({
    root: dirs.www,
    mounts: {
      '/packages/': dirs.packages,
      '/fixtures/': dirs.fixtures,
      '/test-pages/': dirs.pages,
      '/models/': dirs.models,
      '/npm/': dirs.npm,
    },
  });
  server = srv;
  const baseUrl = srv.url;
  out(`[runner] serving ${dirs.www} at ${baseUrl}/`);
  out(`[runner]   /packages/ -> ${dirs.packages}`);
  out(`[runner]   /fixtures/ -> ${dirs.fixtures}`);
  out(`[runner]   /test-pages/ -> ${dirs.pages}`);
  out(`[runner]   /models/ -> ${dirs.models}`);
  out(`[runner]   /npm/ -> ${dirs.npm}`);

  userDataDir = mkdtempSync(path.join(tmpdir(), 'marian-chromium-'));
  out(`[runner] launching ${CHROMIUM} (profile ${userDataDir})`);
  context = await withTimeout(
    chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: 60_000,
    }),
    90_000,
    'chromium launch',
  );
  const browser = context.browser();
  browserPid = ourChromiumProcesses().find((p) => p.main)?.pid;
  out(`[runner] chromium ${browser?.version() ?? '?'} pid ${browserPid ?? '?'}`);
  // A persistent context opens one blank page; tests get their own.
  for (const p of context.pages()) await p.close().catch(() => {});

  for (const file of files) {
    const name = file.replace(/\.mjs$/, '');
    const started = Date.now();
    out(`[runner] ${stamp()} RUN  ${name}`);
    running = name;
    /** @type {import('playwright-core').Page | null} */
    let page = null;
    /** @type {'PASS' | 'FAIL' | 'SKIP'} */
    let status = 'PASS';
    let note = '';
    try {
      const mod = await import(pathToFileURL(path.join(testsDir, file)).href);
      if (typeof mod.run !== 'function') throw new Error(`${file} exports no run()`);
      const limitS = Number(mod.timeoutS || PER_TEST_S);
      page = await context.newPage();
      page.setDefaultTimeout(limitS * 1000);
      forwardPageEvents(page, name);
      await withTimeout(
        Promise.resolve(
          mod.run({
            page,
            baseUrl,
            assert,
            env,
            dirs,
            log: (/** @type {unknown[]} */ ...a) => out(`  [${name}] ${a.map((x) => (typeof x === 'string' ? x : JSON.stringify(x))).join(' ')}`),
            skip: (/** @type {string} */ why) => {
              throw new SkipError(why);
            },
          }),
        ),
        limitS * 1000,
        `test ${name}`,
      );
    } catch (e) {
      if (e instanceof SkipError) {
        status = 'SKIP';
        note = e.message;
      } else {
        status = 'FAIL';
        note = /** @type {any} */ (e)?.stack || String(e);
      }
    }
    if (page) await withTimeout(page.close(), 10_000, 'page.close').catch(() => {});
    const secs = (Date.now() - started) / 1000;
    results.push({ name, status, secs, note });
    running = '';
    out(`[runner] ${stamp()} ${status} ${name} (${secs.toFixed(1)}s)${note ? '\n' + indent(note) : ''}`);
  }

  printSummary();
  const failed = results.filter((r) => r.status === 'FAIL').length;
  const passed = results.filter((r) => r.status === 'PASS').length;
  const skipped = results.filter((r) => r.status === 'SKIP').length;
  out(`RESULT: ${failed ? 'FAIL' : 'PASS'} (${passed} passed, ${failed} failed, ${skipped} skipped)`);
  return failed ? 1 : 0;
}

/** @param {string} s */
function indent(s) {
  return s
    .split('\n')
    .map((l) => `      ${l}`)
    .join('\n');
}

let code = 1;
try {
  code = await main();
} catch (e) {
  out(`[runner] error: ${/** @type {any} */ (e)?.stack || e}`);
  code = 1;
}
// Closing the browser can hang (TOOLCHAIN.md): give it a few seconds, then kill it regardless.
if (context) await withTimeout(context.close(), 5_000, 'browser close').catch((e) => out(`[runner] ${e.message}; killing`));
if (server) await withTimeout(server.close(), 2_000, 'server close').catch(() => {});
hardExit(code);
