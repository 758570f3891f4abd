// The model store (www/store.js, Cache API): a package is trusted only when complete and verified.
//  - first load from the network is stored; the second load comes from the store (no request);
//  - an interrupted download (a file that fails mid-way) leaves no trusted entry, and the next load
//    reuses the files that were verified and fetches the rest;
//  - a stored file corrupted behind our back is detected, dropped and fetched again;
//  - a file that does not match the manifest's sha256 (or is truncated) is refused with a clear error;
//  - list and delete.

export const timeoutS = 180;

/** @param {{ page: import('playwright-core').Page, baseUrl: string, assert: typeof import('node:assert/strict'), log: (...a: unknown[]) => void }} ctx */
export async function run({ page, baseUrl, assert, log }) {
  const pkgPath = '/packages/tiny-opus-q8/';
  await page.goto(`${baseUrl}/test-pages/blank.html`);
  const store = async (/** @type {string} */ code) =>
    page.evaluate(async ([code, url]) => {
      const s = await import('/store.js');
      const fn = new Function('s', 'url', `return (async () => { ${code} })()`);
      return fn(s, url);
    }, /** @type {[string, string]} */ ([code, `${baseUrl}${pkgPath}`]));
  /** @type {string[]} */
  let requests = [];
  page.on('request', (r) => {
    if (r.url().includes(pkgPath)) requests.push(r.url().slice(r.url().lastIndexOf('/') + 1));
  });

  await store('await s.deleteModel(url);');
  // 1. Interrupted download: the weights request fails.
  await page.route(`**${pkgPath}model.safetensors`, (route) => route.abort('connectionreset'));
  const interrupted = await store('try { await s.loadPackage(url); return "loaded"; } catch (e) { return String(e.message); }');
  log('interrupted:', interrupted);
  assert.match(interrupted, /model\.safetensors: network error/);
  assert.equal(await store('return s.hasModel(url);'), false, 'an interrupted download is not a stored model');
  assert.deepEqual(await store('return (await s.listModels()).filter((m) => m.url === url);'), []);
  await page.unroute(`**${pkgPath}model.safetensors`);

  // 2. The next load fetches only what is missing, then stores the package.
  requests = [];
  const second = await store(`
    const seen = [];
    const p = await s.loadPackage(url, { onProgress: (e) => seen.push([e.file, e.fromCache]) });
    return { fromCache: p.fromCache, files: Object.keys(p.files), reused: [...new Set(seen.filter((x) => x[1]).map((x) => x[0]))] };`);
  log('after interruption:', second, 'requests:', requests);
  assert.equal(second.fromCache, false);
  assert.ok(second.reused.includes('source.tokenizer.json'), 'files verified before the interruption are reused');
  assert.deepEqual(requests.sort(), ['manifest.json', 'model.safetensors'], 'only the manifest and the missing file are fetched');
  assert.equal(await store('return s.hasModel(url);'), true);

  // 3. A load from the store makes no request.
  requests = [];
  const third = await store('const p = await s.loadPackage(url); return p.fromCache;');
  assert.equal(third, true);
  assert.deepEqual(requests, [], 'a stored package loads without the network');

  // 4. A stored file corrupted behind our back: detected, dropped, fetched again.
  const corrupted = await store(`
    const c = await caches.open(s.CACHE_NAME);
    const r = await c.match(url + 'model.safetensors');
    const b = new Uint8Array(await r.arrayBuffer());
    b[b.length - 1] ^= 0xff;
    await c.put(url + 'model.safetensors', new Response(b));
    const p = await s.loadPackage(url);
    return p.fromCache;`);
  assert.equal(corrupted, false, 'a corrupted stored file is not used: the package is fetched again');
  assert.equal(await store('return (await s.loadPackage(url)).fromCache;'), true, 'and the store is whole again');

  // 5. Served bytes that do not match the manifest: refused, nothing stored.
  await store('await s.deleteModel(url);');
  await page.route(`**${pkgPath}vocab.json`, async (route) => {
    const resp = await route.fetch();
    const body = Buffer.from(await resp.body());
    body[10] ^= 0x20;
    await route.fulfill({ response: resp, body });
  });
  const wrongHash = await store('try { await s.loadPackage(url); return "loaded"; } catch (e) { return String(e.message); }');
  log('wrong hash:', wrongHash);
  assert.match(wrongHash, /vocab\.json: sha256 [0-9a-f]{64} does not match the manifest's [0-9a-f]{64}/);
  assert.equal(await store('return s.hasModel(url);'), false);
  await page.unroute(`**${pkgPath}vocab.json`);

  await page.route(`**${pkgPath}vocab.json`, async (route) => {
    const resp = await route.fetch();
    const body = Buffer.from(await resp.body());
    await route.fulfill({ response: resp, body: body.subarray(0, body.length - 100) });
  });
  const truncated = await store('try { await s.loadPackage(url); return "loaded"; } catch (e) { return String(e.message); }');
  log('truncated:', truncated);
  assert.match(truncated, /vocab\.json: \d+ bytes, the manifest says \d+ \(truncated download\?\)/);
  await page.unroute(`**${pkgPath}vocab.json`);

  // 6. A manifest that is not one.
  await page.route(`**${pkgPath}manifest.json`, (route) => route.fulfill({ status: 200, body: '<html>oops</html>' }));
  const notManifest = await store('try { await s.loadPackage(url); return "loaded"; } catch (e) { return String(e.message); }');
  assert.match(notManifest, /manifest\.json is not valid JSON/);
  await page.unroute(`**${pkgPath}manifest.json`);

  // 7. List and delete.
  await store('await s.loadPackage(url);');
  const listed = await store('return (await s.listModels()).filter((m) => m.url === url).map((m) => ({ url: m.url, quant: m.quant, bytes: m.bytes }));');
  log('listed:', listed);
  assert.equal(listed.length, 1);
  assert.equal(listed[0].quant, 'q8');
  assert.ok(listed[0].bytes > 1000);
  assert.equal(await store('return s.deleteModel(url);'), true);
  assert.equal(await store('return (await caches.open(s.CACHE_NAME)).keys().then((k) => k.filter((r) => r.url.startsWith(url)).length);'), 0, 'delete leaves nothing behind');
}
