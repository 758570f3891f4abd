// The demo page (www/index.html + www/worker.js) end to end: the module worker loads the wasm and a
// test package given by ?model=, reports progress, and translates what is typed in the textarea.

export const timeoutS = 300;

/** @param {{ page: import('playwright-core').Page, baseUrl: string, assert: typeof import('node:assert/strict'), log: (...a: unknown[]) => void, dirs: Record<string, string> }} ctx */
export async function run({ page, baseUrl, assert, log, dirs }) {
  const { existsSync } = await import('node:fs');
  const pkg = 'tiny-opus-f32';
  assert.ok(existsSync(`${dirs.www}/pkg/marian_wasm.js`), `${dirs.www}/pkg/marian_wasm.js missing: run scripts/build-wasm.sh`);
  assert.ok(existsSync(`${dirs.packages}/${pkg}/manifest.json`), `package ${pkg} missing: run the convert step of scripts/test.sh`);

  await page.goto(`${baseUrl}/index.html?model=${encodeURIComponent(`/packages/${pkg}/`)}`);
  const status = page.locator('#status');
  const button = page.getByRole('button', { name: 'Translate' });

  await page.waitForFunction(
    () => /Model ready|Error|failed/.test(document.getElementById('status')?.textContent ?? ''),
    undefined,
    { timeout: 120_000 },
  );
  const loadedText = await status.textContent();
  log('status after load:', loadedText);
  assert.match(loadedText ?? '', /Model ready/, 'the worker loads the model');
  assert.ok(await button.isEnabled(), 'Translate is enabled once the model is ready');

  await page.getByLabel('Text to translate (one sentence per line)').fill('Hello world.\n\nThis is a test.');
  await button.click();
  await page.waitForFunction(
    () => /Translated|Error/.test(document.getElementById('status')?.textContent ?? ''),
    undefined,
    { timeout: 120_000 },
  );
  log('status after translate:', await status.textContent());
  const output = await page.locator('#target').textContent();
  log('output:', output);
  assert.match((await status.textContent()) ?? '', /Translated/, 'translation finished without error');
  const lines = (output ?? '').split('\n');
  assert.equal(lines.length, 3, 'one output line per input line');
  assert.ok(lines[0].length > 0 && lines[2].length > 0, 'non-empty translations for non-empty lines');
}
