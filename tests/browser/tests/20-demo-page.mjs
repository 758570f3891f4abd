// The demo page (www/index.html + app.js) end to end, driven like a user would:
//  - loads a test package given by ?model= in marian-wasm's worker, with progress;
//  - translates what is typed, one output line per input line, streaming and not (same text),
//    and shows tokens/s;
//  - lists the package in "Stored models" and deletes it from there (keyboard-reachable controls
//    with labels);
//  - with the embedded default model: screenshots (desktop and phone width) saved to
//    $MARIAN_ARTIFACTS (default target/artifacts) for a look.

import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitStatus } from '../lib/demo.mjs';

export const timeoutS = 300;

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..', '..');

/** @param {{ page: import('playwright-core').Page, baseUrl: string, assert: typeof import('node:assert/strict'), log: (...a: unknown[]) => void, dirs: Record<string, string>, env: Record<string, string | undefined> }} ctx */
export async function run({ page, baseUrl, assert, log, dirs, env }) {
  const { existsSync } = await import('node:fs');
  const pkg = 'tiny-opus-f32';
  assert.ok(existsSync(`${dirs.www}/pkg/marian_wasm.js`), `${dirs.www}/pkg/marian_wasm.js missing: run scripts/build-wasm.sh`);
  assert.ok(existsSync(`${dirs.packages}/${pkg}/manifest.json`), `package ${pkg} missing: run the convert step of scripts/test.sh`);

  // sw=0: this test is about the page; the offline test covers the service worker.
  await page.goto(`${baseUrl}/index.html?sw=0&model=${encodeURIComponent(`/packages/${pkg}/`)}`);
  assert.match(await waitStatus(page, /Model ready/), /Model ready/, 'the worker loads the model');
  assert.match((await page.locator('#model-info').textContent()) ?? '', /device: CPU \(WebAssembly, [12] threads?\)/, 'the device in use and its threads are shown');
  const button = page.getByRole('button', { name: 'Translate', exact: true });
  assert.ok(await button.isEnabled(), 'Translate is enabled once the model is ready');

  await page.getByLabel('Text to translate (one sentence per line)').fill('Hello world.\n\nThis is a test.');
  await page.getByLabel('Stream output').check();
  await button.click();
  assert.match(await waitStatus(page, /Translated/), /Translated/, 'streamed translation finished without error');
  const streamed = (await page.locator('#target').textContent()) ?? '';
  const lines = streamed.split('\n');
  log('streamed output:', lines);
  assert.equal(lines.length, 3, 'one output line per input line');
  assert.ok(lines[0].length > 0 && lines[1] === '' && lines[2].length > 0, 'non-empty translations for non-empty lines only');
  assert.match((await page.locator('#speed').textContent()) ?? '', /tokens\/s on wasm/);

  await page.getByLabel('Stream output').uncheck();
  await page.evaluate(() => {
    document.getElementById('status').textContent = '';
  });
  await button.click();
  await waitStatus(page, /Translated/);
  assert.equal(await page.locator('#target').textContent(), streamed, 'streaming and one-shot translation give the same text');

  // Stored models: listed with its size, and deletable from the table.
  const row = page.locator('#models tbody tr', { hasText: `/packages/${pkg}/` });
  await row.waitFor();
  log('stored model row:', await row.textContent());
  const del = page.getByRole('button', { name: new RegExp(`Delete .*/packages/${pkg}/`) });
  await del.focus();
  await page.keyboard.press('Enter');
  await page.waitForFunction((p) => !document.querySelector('#models tbody')?.textContent?.includes(p), `/packages/${pkg}/`);
  assert.match((await page.locator('#status').textContent()) ?? '', /Deleted/);

  // The embedded default model, and screenshots for a look.
  const artifacts = path.resolve(ROOT, env.MARIAN_ARTIFACTS || 'target/artifacts');
  mkdirSync(artifacts, { recursive: true });
  await page.goto(`${baseUrl}/index.html?sw=0`);
  await waitStatus(page, /Model ready/);
  await page.getByLabel('Text to translate (one sentence per line)').fill('A little girl is playing in the park.\nTwo dogs are running through the snow.');
  await button.click();
  assert.match(await waitStatus(page, /Translated/), /Translated/);
  const fr = (await page.locator('#target').textContent()) ?? '';
  log('default model:', fr);
  assert.match(fr, /fille/, 'the default en→fr model translates "girl"');
  await page.screenshot({ path: path.join(artifacts, 'demo.png'), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: path.join(artifacts, 'demo-phone.png'), fullPage: true });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page fits a phone-width screen (overflows by ${overflow}px)`);
  log(`screenshots: ${artifacts}/demo.png, demo-phone.png`);
}
