// Helpers shared by the browser tests that drive the demo page (www/index.html). Kept outside
// tests/browser/tests/, where run.mjs would load every .mjs as a test.

/**
 * Wait until the demo's #status matches `re` (or shows an error); returns the status text.
 * @param {import('playwright-core').Page} page @param {RegExp} re
 */
export async function waitStatus(page, re) {
  await page.waitForFunction(
    (src) => new RegExp(src).test(document.getElementById('status')?.textContent ?? '') || /Error/.test(document.getElementById('status')?.textContent ?? ''),
    re.source,
    { timeout: 120_000 },
  );
  return (await page.locator('#status').textContent()) ?? '';
}
