// Pivoting through English (issue 21 item 3): when no model translates X → Y but the catalog has
// X → en and en → Y, MarianTranslator chains the two (translator.route lists the legs).
//
// THE LANGUAGE LABELS ARE THIS TEST'S OWN. Every fixture package is really an English → French
// model (tiny-opus-f32, tiny-switches-f32; tiny-multi-f32 with >>fra<< / >>eng<<). What is tested
// is the chaining, not the languages, so `marian-wasm catalog add` (the native CLI) writes
// catalogs that call tiny-opus-f32 a "de → en" model and tiny-switches-f32 an "en → it" one
// (<packages>/catalogs/14-pivot.json), and, in a second catalog (14-pivot-direct.json), also
// tiny-multi-f32 a direct "de → en, fr" model and tiny-switches-f32 "en → fr". Checked in the page:
//  (a) availability de → it is not 'unavailable' (nor de-AT → it-CH), de → xx and it → de are;
//      'available' once both legs are stored;
//  (b) create({de → it}) has a two-leg route with the right URLs, tags and catalog entries, and
//      the translator's properties (pair asked for, the last leg's model); one monitor sees both
//      packages' download;
//  (c) its translate output for several texts equals leg 1's model by URL, then those outputs
//      through leg 2's model by URL (exact strings), batched and one by one; translateWithIssues
//      gives both legs' issues per input; lastRun sums the legs;
//  (d) translateStreaming's final text equals translate's;
//  (e) a direct model beats the pivot (de → fr in 14-pivot-direct.json), and without that entry
//      the same pair pivots;
//  (f) never a pivot when the source or target is English (made-up catalogs where one would be
//      possible otherwise);
//  (g) fineTune (and useAdapter) refuse on a pivot translator, naming the route;
//  (h) a PageTranslator (and translatePage) over a small page with the pivot translator writes
//      the chained text.
// Checked by hand once (2026-12-06): with the pivot translator's legs run in the wrong order
// (leg 2 first; `t.legs_ = [...legs].reverse()` in marian-wasm.js) the test failed at (c), and with
// (c)'s assertions left out, at (d), and with those left out too, at (h).

import { readFileSync } from 'node:fs';
import { catalogCli } from '../catalog-cli.mjs';

export const timeoutS = 300;

/** @param {{ page: import('playwright-core').Page, baseUrl: string, assert: typeof import('node:assert/strict'), log: (...a: unknown[]) => void, dirs: Record<string, string> }} ctx */
export async function run({ page, baseUrl, assert, log, dirs }) {
  const catalogs = catalogCli({ assert, dirs }, ['tiny-opus-f32', 'tiny-switches-f32', 'tiny-multi-f32']);
  const pkg = catalogs.pkg;
  const pivot = catalogs.catalog('14-pivot.json');
  const directCatalog = catalogs.catalog('14-pivot-direct.json');
  const [pivotFile, directFile] = [pivot.file, directCatalog.file];
  // The labels below are made up for this test (see the header): all three are en → fr models.
  log(pivot.add([pkg('tiny-opus-f32'), '--url', '../tiny-opus-f32/', '--source', 'de', '--target', 'en', '--quality', 'leg 1 (label made up by the test)']));
  log(pivot.add([pkg('tiny-switches-f32'), '--url', '../tiny-switches-f32/', '--source', 'en', '--target', 'it', '--quality', 'leg 2 (label made up by the test)']));
  log(directCatalog.add([pkg('tiny-opus-f32'), '--url', '../tiny-opus-f32/', '--source', 'de', '--target', 'en']));
  log(directCatalog.add([pkg('tiny-switches-f32'), '--url', '../tiny-switches-f32/', '--source', 'en', '--target', 'fr']));
  log(directCatalog.add([pkg('tiny-multi-f32'), '--url', '../tiny-multi-f32/', '--source', 'de']));
  const written = JSON.parse(readFileSync(pivotFile, 'utf8'));
  assert.deepEqual(
    written.models.map((/** @type {any} */ m) => [m.url, m.source_languages, m.target_languages]),
    [
      ['../tiny-opus-f32/', ['de'], ['en']],
      ['../tiny-switches-f32/', ['en'], ['it']],
    ],
  );
  const direct = JSON.parse(readFileSync(directFile, 'utf8'));
  assert.deepEqual(direct.models[2].target_codes, { en: 'eng', fr: 'fra' });

  await page.goto(`${baseUrl}/test-pages/blank.html`);
  const r = await page.evaluate(async () => {
    const api = await import('/marian-wasm.js');
    const { MarianTranslator, PageTranslator, deleteModel } = api;
    const { caught } = await import('/test-pages/caught.js');
    const catalog = '/packages/catalogs/14-pivot.json';
    const directCatalog = '/packages/catalogs/14-pivot-direct.json';
    const opus = new URL('/packages/tiny-opus-f32/', location.href).href;
    const switches = new URL('/packages/tiny-switches-f32/', location.href).href;
    const multi = new URL('/packages/tiny-multi-f32/', location.href).href;
    // Earlier tests in this browser may have stored these packages.
    for (const u of [opus, switches, multi]) await deleteModel(u);
    const out = /** @type {Record<string, any>} */ ({});
    const avail = (/** @type {string} */ s, /** @type {string} */ t, /** @type {any} */ c = catalog) =>
      MarianTranslator.availability({ sourceLanguage: s, targetLanguage: t, catalog: c });

    // (a) availability
    out.availability = {};
    for (const [s, t] of [
      ['de', 'it'],
      ['de-AT', 'it-CH'],
      ['DE', 'it'],
      ['de', 'en'],
      ['en', 'it'],
      ['de', 'xx'],
      ['it', 'de'],
      ['en', 'de'],
      ['fr', 'it'],
    ]) {
      out.availability[`${s}>${t}`] = await avail(s, t);
    }

    const refs = await (await fetch('/fixtures/tiny-multi/multi_target.json')).json();
    /** @type {string[]} */
    const srcs = refs.cases.filter((/** @type {any} */ c) => c.language === 'fra').map((/** @type {any} */ c) => c.src).slice(0, 4);

    // (b) create a pivot translator; one monitor over both downloads
    /** @type {{ loaded: number, bytesLoaded: number, bytesTotal: number }[]} */
    const events = [];
    const pivot = await MarianTranslator.create({
      sourceLanguage: 'de',
      targetLanguage: 'it',
      catalog,
      monitor(m) {
        m.addEventListener('downloadprogress', (e) => {
          const d = /** @type {any} */ (e);
          events.push({ loaded: d.loaded, bytesLoaded: d.bytesLoaded, bytesTotal: d.bytesTotal });
        });
      },
    });
    out.route = pivot.route.map((l) => ({ ...l, catalogEntry: l.catalogEntry && [l.catalogEntry.url, l.catalogEntry.quality] }));
    out.props = {
      sourceLanguage: pivot.sourceLanguage,
      targetLanguage: pivot.targetLanguage,
      targetCode: pivot.targetCode,
      model: pivot.model,
      catalogEntry: pivot.catalogEntry?.url,
      device: pivot.device,
      wasmBuild: pivot.wasmBuild,
      threads: pivot.threads,
      fromCache: pivot.fromCache,
    };
    const sizes = (await (await fetch(catalog)).json()).models.map((/** @type {any} */ m) => m.size);
    out.monitor = { events: events.length, last: events[events.length - 1], sizes, monotone: events.every((e, i) => i === 0 || e.bytesLoaded >= events[i - 1].bytesLoaded) };
    out.availableAfter = await avail('de', 'it');

    // (c) the chain by hand: leg 1's model by URL, then leg 2's model by URL on its outputs
    const leg1 = await MarianTranslator.create({ model: opus, store: false });
    const leg2 = await MarianTranslator.create({ model: switches, store: false });
    const mids = await leg1.translate(srcs);
    const chained = await leg2.translate(mids);
    const chainedOne = [];
    for (const s of srcs) chainedOne.push(await leg2.translate(await leg1.translate(s)));
    out.hand = { mids, chained, chainedOne, leg2Only: await leg2.translate(srcs) };
    out.batched = await pivot.translate(srcs);
    out.batchedRun = pivot.lastRun && { ...pivot.lastRun, legs: pivot.lastRun.legs?.map((l) => ({ tokens: l.tokens, issues: l.issues })) };
    out.oneByOne = [];
    for (const s of srcs) out.oneByOne.push(await pivot.translate(s));
    const huge = 'a'.repeat((1 << 20) + 1);
    const withIssues = await pivot.translateWithIssues([srcs[0], huge]);
    out.withIssues = withIssues.map((x) => ({ text: x.text === huge ? 'HUGE' : x.text, issues: x.issues }));
    out.lastRunIssues = pivot.lastRun?.issues;

    // (d) streaming: leg 1 whole, leg 2 streamed
    const chunks = [];
    const reader = pivot.translateStreaming(srcs[1]).getReader();
    for (let x = await reader.read(); !x.done; x = await reader.read()) chunks.push(x.value);
    out.stream = { text: chunks.join(''), chunks: chunks.length, issues: pivot.lastRun?.issues, legs: pivot.lastRun?.legs?.length };

    // (g) fineTune and useAdapter refuse
    out.fineTune = await caught(() => pivot.fineTune([{ source: 'a b', target: 'c d' }]));
    out.useAdapter = await caught(() => pivot.useAdapter(new Uint8Array(8)));
    out.memory = (await pivot.memoryUsage()).wasmBytes > 0;

    // (h) page translation through both legs
    const root = document.createElement('div');
    root.innerHTML = srcs.map((s, i) => `<p id="p${i}">${s}</p>`).join('');
    document.body.appendChild(root);
    const before = root.innerHTML;
    const pt = new PageTranslator(root, { translate: (texts) => pivot.translate(texts), observe: false });
    await pt.translate();
    out.page = srcs.map((_, i) => document.getElementById(`p${i}`)?.textContent);
    pt.restore();
    out.restored = root.innerHTML === before;
    const viaApi = await pivot.translatePage(root, { observe: false });
    out.translatePage = srcs.map((_, i) => document.getElementById(`p${i}`)?.textContent);
    viaApi.restore();
    root.remove();

    pivot.destroy();
    out.afterDestroy = await caught(() => pivot.translate('x'));
    leg1.destroy();

    // (e) a direct model wins; without it the same pair pivots
    const d = await MarianTranslator.create({ sourceLanguage: 'de', targetLanguage: 'fr', catalog: directCatalog, store: false });
    out.direct = { route: d.route.map((l) => [l.url, l.sourceLanguage, l.targetLanguage, l.targetCode]), text: await d.translate(srcs[0]) };
    d.destroy();
    const m = await MarianTranslator.create({ model: multi, targetLanguage: 'fra', store: false });
    out.directByUrl = await m.translate(srcs[0]);
    out.byUrlRoute = m.route.map((l) => [l.url, l.sourceLanguage, l.targetLanguage, l.targetCode, l.catalogEntry]);
    m.destroy();
    const withoutDirect = await (await fetch(directCatalog)).json();
    withoutDirect.models = withoutDirect.models
      .filter((/** @type {any} */ e) => !e.url.includes('tiny-multi'))
      .map((/** @type {any} */ e) => ({ ...e, url: e.url.replace('../', '/packages/') }));
    const p2 = await MarianTranslator.create({ sourceLanguage: 'de', targetLanguage: 'fr', catalog: withoutDirect, store: false });
    out.pivotWithoutDirect = { route: p2.route.map((l) => [l.url, l.sourceLanguage, l.targetLanguage]), text: await p2.translate(srcs[0]) };
    out.pivotWithoutDirectHand = await leg2.translate(await (async () => {
      const l1 = await MarianTranslator.create({ model: opus, store: false });
      const t = await l1.translate(srcs[0]);
      l1.destroy();
      return t;
    })());
    p2.destroy();
    leg2.destroy();

    // (f) never through English when English is the source or the target (made-up catalogs,
    // nothing downloaded: availability only looks at the store)
    const e = (/** @type {string} */ url, /** @type {string[]} */ s, /** @type {string[]} */ t, /** @type {Record<string, string>=} */ codes) => ({
      url, source_languages: s, target_languages: t, ...(codes ? { target_codes: codes } : {}), size: 1, sha256: 'a'.repeat(64), quant: 'q8',
    });
    const made = (/** @type {any[]} */ models) => ({ format: 'marian-wasm-catalog', format_version: 1, models });
    // de → en-US, and en → en/it: de → en-GB has no direct model; "de → en → en-GB" is refused.
    const toEnglish = made([e('/m/de-enUS/', ['de'], ['en-US']), e('/m/en-mul/', ['en'], ['en', 'it'], { en: 'eng', it: 'ita' })]);
    // en-GB → en and en-US → it: en-GB → it has no direct model; "en-GB → en → it" is refused.
    const fromEnglish = made([e('/m/enGB-en/', ['en-GB'], ['en']), e('/m/enUS-it/', ['en-US'], ['it'])]);
    out.english = {
      'de>en-GB': await avail('de', 'en-GB', toEnglish),
      'de>it (control)': await avail('de', 'it', toEnglish),
      'en-GB>it': await avail('en-GB', 'it', fromEnglish),
      'en-GB>en (direct)': await avail('en-GB', 'en', fromEnglish),
      routeDeIt: api.findRoute(api.parseCatalog(toEnglish), 'de', 'it')?.map((x) => new URL(x.entry.url).pathname),
      routeDeEnGB: api.findRoute(api.parseCatalog(toEnglish), 'de', 'en-GB'),
      routeEnGBIt: api.findRoute(api.parseCatalog(fromEnglish), 'en-GB', 'it'),
    };
    out.noneMessage = await caught(() => MarianTranslator.create({ sourceLanguage: 'de', targetLanguage: 'xx', catalog }));
    out.pivotAdapter = await caught(() => MarianTranslator.create({ sourceLanguage: 'de', targetLanguage: 'it', catalog, adapter: new Uint8Array(8) }));
    return out;
  });
  log(JSON.stringify(r.availability), JSON.stringify(r.route.map((/** @type {any} */ l) => [l.sourceLanguage, l.targetLanguage])));
  log('chained:', r.batched[0], '| monitor:', JSON.stringify(r.monitor), '| issues:', JSON.stringify(r.withIssues[1].issues));

  // (a)
  assert.deepEqual(r.availability, {
    'de>it': 'downloadable',
    'de-AT>it-CH': 'downloadable',
    'DE>it': 'downloadable',
    'de>en': 'downloadable',
    'en>it': 'downloadable',
    'de>xx': 'unavailable',
    'it>de': 'unavailable',
    'en>de': 'unavailable',
    'fr>it': 'unavailable',
  });
  assert.equal(r.availableAfter, 'available', 'both legs stored after create');

  // (b)
  assert.deepEqual(r.route, [
    { sourceLanguage: 'de', targetLanguage: 'en', targetCode: null, url: `${baseUrl}/packages/tiny-opus-f32/`, catalogEntry: [`${baseUrl}/packages/tiny-opus-f32/`, 'leg 1 (label made up by the test)'] },
    { sourceLanguage: 'en', targetLanguage: 'it', targetCode: null, url: `${baseUrl}/packages/tiny-switches-f32/`, catalogEntry: [`${baseUrl}/packages/tiny-switches-f32/`, 'leg 2 (label made up by the test)'] },
  ]);
  assert.equal(r.props.sourceLanguage, 'de');
  assert.equal(r.props.targetLanguage, 'it');
  assert.equal(r.props.targetCode, null);
  assert.equal(r.props.model, `${baseUrl}/packages/tiny-switches-f32/`, "a pivot's model is its last leg's");
  assert.equal(r.props.catalogEntry, `${baseUrl}/packages/tiny-switches-f32/`);
  assert.ok(['wasm', 'webgpu'].includes(r.props.device), r.props.device);
  assert.match(r.props.wasmBuild, /^pkg(-mt)?(-relaxed)?$/, 'both legs run the same build');
  assert.equal(r.props.fromCache, false);
  assert.ok(r.monitor.events > 0, 'the monitor saw the download');
  assert.equal(r.monitor.last.loaded, 1, 'the download ends at 1');
  assert.ok(r.monitor.monotone, 'bytesLoaded never goes back');
  assert.ok(r.monitor.last.bytesTotal > Math.max(...r.monitor.sizes) * 1.5, `the total covers both packages: ${JSON.stringify(r.monitor)}`);

  // (c) the chain is leg 1 then leg 2, and that differs from either model alone
  assert.notDeepEqual(r.hand.chained, r.hand.mids, 'the test texts: leg 2 changes leg 1 output');
  assert.notDeepEqual(r.hand.chained, r.hand.leg2Only, 'the test texts: leg 1 matters');
  assert.deepEqual(r.batched, r.hand.chained, 'batched pivot = leg 1 by URL, then leg 2 by URL');
  assert.deepEqual(r.oneByOne, r.hand.chainedOne, 'one by one pivot = the chain one by one');
  assert.equal(r.batchedRun.legs.length, 2);
  assert.equal(r.batchedRun.tokens, r.batchedRun.legs[0].tokens + r.batchedRun.legs[1].tokens, 'lastRun.tokens sums the legs');
  assert.deepEqual(r.batchedRun.issues, [[], [], [], []]);
  assert.equal(r.withIssues[0].text, r.hand.chained[0]);
  assert.deepEqual(r.withIssues[0].issues, []);
  assert.equal(r.withIssues[1].text, 'HUGE', 'a text over 1 MiB passes both legs unchanged');
  assert.equal(r.withIssues[1].issues.length, 2, JSON.stringify(r.withIssues[1].issues));
  assert.match(r.withIssues[1].issues[0], /^de → en: text 2 is 1048577 bytes; .*kept as is$/);
  assert.match(r.withIssues[1].issues[1], /^en → it: text 2 is 1048577 bytes; .*kept as is$/);
  assert.deepEqual(r.lastRunIssues, r.withIssues.map((/** @type {any} */ x) => x.issues));

  // (d)
  assert.equal(r.stream.text, r.oneByOne[1], 'streamed = translated');
  assert.equal(r.stream.text, r.hand.chainedOne[1], 'streamed = the chain by hand');
  assert.ok(r.stream.chunks >= 1);
  assert.equal(r.stream.issues, null);
  assert.equal(r.stream.legs, 2);

  // (g)
  assert.match(r.fineTune, /^NotSupportedError: fineTune\(\) cannot train a pivot translator.*de → en \(.*tiny-opus-f32\/\) then en → it \(.*tiny-switches-f32\/\).*fine-tune one leg's model directly/);
  assert.match(r.useAdapter, /^NotSupportedError: .*runs 2.*tiny-opus-f32.*tiny-switches-f32/);
  assert.equal(r.memory, true);
  assert.match(r.afterDestroy, /^InvalidStateError/);

  // (h)
  assert.deepEqual(r.page, r.hand.chained, 'PageTranslator over the pivot writes the chained text');
  assert.equal(r.restored, true);
  assert.deepEqual(r.translatePage, r.hand.chained, 'translatePage of the pivot writes the chained text');

  // (e)
  assert.deepEqual(r.direct.route, [[`${baseUrl}/packages/tiny-multi-f32/`, 'de', 'fr', 'fra']], 'the direct model wins over the pivot');
  assert.equal(r.direct.text, r.directByUrl, 'direct = tiny-multi by URL with >>fra<<');
  assert.deepEqual(r.byUrlRoute, [[`${baseUrl}/packages/tiny-multi-f32/`, null, 'fra', 'fra', null]], 'a translator by URL has a one-leg route');
  assert.deepEqual(r.pivotWithoutDirect.route, [
    [`${baseUrl}/packages/tiny-opus-f32/`, 'de', 'en'],
    [`${baseUrl}/packages/tiny-switches-f32/`, 'en', 'fr'],
  ]);
  assert.equal(r.pivotWithoutDirect.text, r.pivotWithoutDirectHand);

  // (f)
  assert.deepEqual(r.english, {
    'de>en-GB': 'unavailable',
    'de>it (control)': 'downloadable',
    'en-GB>it': 'unavailable',
    'en-GB>en (direct)': 'downloadable',
    routeDeIt: ['/m/de-enUS/', '/m/en-mul/'],
    routeDeEnGB: null,
    routeEnGBIt: null,
  });
  assert.match(r.noneMessage, /^NotSupportedError: no model in the catalog translates de → xx \(nor a pair of models through English\)/);
  assert.match(r.pivotAdapter, /^TypeError: an adapter is made for one model.*runs two/);
}
