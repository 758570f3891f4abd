// The npm package as a user gets it: `npm pack` output (scripts/pack-npm.sh) installed into a fresh
// project with `npm install <tarball>`, then
//  1. imported from a plain <script type="module"> page, translating with the model shipped inside
//     the package (no model option);
//  2. bundled by Vite (`import { MarianTranslator } from 'marian-wasm'`), the built app served and
//     translating.
// Both translations must equal the native CLI's for the same sentence and package (greedy).
// The consumer project lives in target/npm/consumer (served at /npm/consumer/).

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const timeoutS = 300;

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..', '..');
const SENTENCES = ['A little girl is playing in the park.', 'Two dogs are running through the snow.'];

/** @param {{ page: import('playwright-core').Page, baseUrl: string, assert: typeof import('node:assert/strict'), log: (...a: unknown[]) => void, dirs: Record<string, string> }} ctx */
export async function run({ page, baseUrl, assert, log, dirs }) {
  const tgz = existsSync(dirs.npm) ? readdirSync(dirs.npm).find((f) => /^marian-wasm-.*\.tgz$/.test(f)) : undefined;
  assert.ok(tgz, `no marian-wasm-*.tgz in ${dirs.npm}: run scripts/pack-npm.sh`);
  const cli = path.join(ROOT, 'target/release/marian-wasm');
  assert.ok(existsSync(cli), `${cli} missing: cargo build --release`);
  const expected = execFileSync(cli, ['translate', '--beams', '1'], { input: SENTENCES.join('\n') + '\n', encoding: 'utf8' })
    .trimEnd()
    .split('\n');
  log('native CLI (greedy):', expected);

  const consumer = path.join(dirs.npm, 'consumer');
  rmSync(consumer, { recursive: true, force: true });
  mkdirSync(consumer, { recursive: true });
  writeFileSync(path.join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }, null, 2));
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--offline', '--loglevel=error', path.join('..', tgz)], {
    cwd: consumer,
    stdio: 'inherit',
  });
  const installed = path.join(consumer, 'node_modules/marian-wasm');
  for (const f of ['package.json', 'marian-wasm.js', 'marian-wasm.d.ts', 'page.js', 'catalog.js', 'catalog.d.ts', 'worker.js', 'pkg/marian_wasm_bg.wasm', 'pkg-mt/marian_wasm_bg.wasm', 'pkg-relaxed/marian_wasm_bg.wasm', 'pkg-mt-relaxed/marian_wasm_bg.wasm', 'models/default/manifest.json']) {
    assert.ok(existsSync(path.join(installed, f)), `the installed package lacks ${f}`);
  }

  // ---- 1. plain <script type="module">, the package's own default model ----------------------
  const script = `
    import { MarianTranslator } from './node_modules/marian-wasm/marian-wasm.js';
    const availability = await MarianTranslator.availability();
    const t = await MarianTranslator.create();
    window.__result = { availability, texts: await t.translate(${JSON.stringify(SENTENCES)}, { beams: 1 }), model: t.model };
    t.destroy();`;
  writeFileSync(path.join(consumer, 'plain.html'), `<!doctype html><meta charset="utf-8"><title>plain</title><script type="module">${script}</script>`);
  await page.goto(`${baseUrl}/npm/consumer/plain.html`);
  await page.waitForFunction(() => /** @type {any} */ (window).__result, undefined, { timeout: 120_000 });
  const plain = await page.evaluate(() => /** @type {any} */ (window).__result);
  log('plain script:', plain);
  assert.match(plain.model, /\/npm\/consumer\/node_modules\/marian-wasm\/models\/default\/$/, 'the default model is the one inside the package');
  assert.ok(['downloadable', 'available'].includes(plain.availability));
  assert.deepEqual(plain.texts, expected, 'the npm package translates exactly like the native CLI');

  // ---- 2. bundled by Vite ----------------------------------------------------------------------
  const app = path.join(consumer, 'vite-app');
  mkdirSync(app, { recursive: true });
  writeFileSync(
    path.join(app, 'index.html'),
    '<!doctype html><meta charset="utf-8"><title>vite</title><script type="module" src="./main.js"></script>',
  );
  writeFileSync(
    path.join(app, 'main.js'),
    `import { MarianTranslator } from 'marian-wasm';
     // Bundlers do not copy a model folder: the app names where its model is served.
     const t = await MarianTranslator.create({ model: '/models/default/' });
     window.__result = { texts: await t.translate(${JSON.stringify(SENTENCES)}, { beams: 1 }), device: t.device, threads: t.threads, threadsUnavailable: t.threadsUnavailable };
     t.destroy();`,
  );
  const vite = await import(path.join(ROOT, 'tests/browser/node_modules/vite/dist/node/index.js'));
  await vite.build({
    root: app,
    base: './',
    logLevel: 'warn',
    configFile: false,
    build: { outDir: path.join(app, 'dist'), emptyOutDir: true, target: 'es2022' },
    worker: { format: 'es' },
  });
  const built = readdirSync(path.join(app, 'dist/assets'));
  log('vite output:', built);
  assert.ok(built.some((f) => f.endsWith('.wasm')), 'Vite emitted the wasm module as an asset');
  await page.goto(`${baseUrl}/npm/consumer/vite-app/dist/index.html`);
  await page.waitForFunction(() => /** @type {any} */ (window).__result, undefined, { timeout: 120_000 });
  const bundled = await page.evaluate(() => /** @type {any} */ (window).__result);
  log('vite build:', bundled);
  assert.deepEqual(bundled.texts, expected, 'the Vite-bundled app translates exactly like the native CLI');
}
