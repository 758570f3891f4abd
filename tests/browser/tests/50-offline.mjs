// Offline: after a first visit, the demo opens and translates with the network off. The service
// worker (www/sw.js) serves the app shell and the wasm; the model store serves the model.

import { waitStatus } from '../lib/demo.mjs';

export const timeoutS = 240;

/** @param {import('playwright-core').Page} page */
async function translate(page) {
  await page.getByLabel('Text to translate (one sentence per line)').fill('A man is riding a bicycle down the street.');
  await page.evaluate(() => {
    document.getElementById('status').textContent = '';
  });
  await page.getByRole('button', { name: 'Translate', exact: true }).click();
  const status = await waitStatus(page, /Translated/);
  return { status, text: (await page.locator('#target').textContent()) ?? '' };
}

/** @param {{ page: import('playwright-core').Page, baseUrl: string, assert: typeof import('node:assert/strict'), log: (...a: unknown[]) => void }} ctx */
export async function run({ page, baseUrl, assert, log }) {
  const context = page.context();
  try {
    // First visit, online: the service worker installs and the model is stored.
    await page.goto(`${baseUrl}/index.html`);
    assert.match(await waitStatus(page, /Model ready/), /Model ready/);
    await page.evaluate(() => navigator.serviceWorker.ready);
    const online = await translate(page);
    log('online:', online.text);
    assert.match(online.status, /Translated/);

    // Network off: reload, load the model, translate.
    await context.setOffline(true);
    // (a URL the service worker does not serve: it must fail, or the test proves nothing)
    const probe = await page.evaluate(() => fetch('/models/default/manifest.json?probe', { cache: 'no-store' }).then(() => 'reached', () => 'unreachable'));
    assert.equal(probe, 'unreachable', 'the network is really off');
    await page.reload();
    assert.match(await waitStatus(page, /Model ready/), /Model ready/, 'the demo loads offline');
    assert.match((await page.locator('#model-info').textContent()) ?? '', /from this browser’s store/, 'the model came from the store');
    const offline = await translate(page);
    log('offline:', offline.text);
    assert.match(offline.status, /Translated/);
    assert.equal(offline.text, online.text, 'same translation offline');
    assert.ok(await page.evaluate(() => !!navigator.serviceWorker.controller), 'the page is served by the service worker');
  } finally {
    await context.setOffline(false);
    await page.evaluate(async () => {
      for (const r of await navigator.serviceWorker.getRegistrations()) await r.unregister();
    }).catch(() => {});
  }
}
