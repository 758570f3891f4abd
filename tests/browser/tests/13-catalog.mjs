// A model catalog chosen by language (issue 21 item 2). `marian-wasm catalog add` (the native CLI)
// writes a catalog over tiny-opus-f32 (en→fr, one target language) and tiny-multi-f32 (en→fr and
// en→en through its >>fra<< / >>eng<< tokens) into <packages>/catalogs/13-catalog.json with URLs
// relative to the catalog ("../tiny-opus-f32/": resolved against the page they would 404). Then
// in the page: availability for pairs and tag spellings, create by language giving the same text
// as create by model URL, the single-target model preferred, the multi-target code chosen (also
// per call from a BCP 47 tag), NotSupportedError / 'unavailable' for a pair nobody offers, the
// catalog's manifest sha256 enforced, bad catalogs and contradictory options refused; and the
// matching rules on a made-up catalog (zh scripts and regions, pt, es, aliases).

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { catalogCli } from '../catalog-cli.mjs';

export const timeoutS = 300;

/** @param {{ page: import('playwright-core').Page, baseUrl: string, assert: typeof import('node:assert/strict'), log: (...a: unknown[]) => void, dirs: Record<string, string> }} ctx */
export async function run({ page, baseUrl, assert, log, dirs }) {
  const { file, add } = catalogCli({ assert, dirs }, ['tiny-opus-f32', 'tiny-multi-f32']).catalog('13-catalog.json');
  log(add([path.join(dirs.packages, 'tiny-opus-f32'), '--url', '../tiny-opus-f32', '--source', 'en', '--target', 'fr', '--quality', 'random tiny test model']));
  log(add([path.join(dirs.packages, 'tiny-multi-f32'), '--url', '../tiny-multi-f32/', '--source', 'eng']));
  const written = JSON.parse(readFileSync(file, 'utf8'));
  assert.deepEqual(
    written.models.map((/** @type {any} */ m) => [m.url, m.source_languages, m.target_languages, m.target_codes ?? null]),
    [
      ['../tiny-opus-f32/', ['en'], ['fr'], null],
      ['../tiny-multi-f32/', ['en'], ['en', 'fr'], { en: 'eng', fr: 'fra' }],
    ],
  );

  await page.goto(`${baseUrl}/test-pages/blank.html`);
  const r = await page.evaluate(async () => {
    const api = await import('/marian-wasm.js');
    const { MarianTranslator, deleteModel, BUILTIN_CATALOG, DEFAULT_MODEL, loadCatalog } = api;
    const catalog = '/packages/catalogs/13-catalog.json';
    const opus = new URL('/packages/tiny-opus-f32/', location.href).href;
    const multi = new URL('/packages/tiny-multi-f32/', location.href).href;
    // Earlier tests in this browser may have stored these packages.
    await deleteModel(opus);
    await deleteModel(multi);
    const { caught } = await import('/test-pages/caught.js');
    const out = /** @type {Record<string, any>} */ ({});
    const avail = (/** @type {string} */ s, /** @type {string} */ t, /** @type {any} */ c = catalog) =>
      MarianTranslator.availability({ sourceLanguage: s, targetLanguage: t, catalog: c });
    out.loaded = (await loadCatalog(catalog)).models.map((m) => m.url);
    out.availability = {};
    for (const [s, t] of [
      ['en', 'fr'],
      ['EN', 'FR-ca'],
      ['en-US', 'fr'],
      ['en_GB', 'fr-Latn-FR'],
      ['eng', 'fra'],
      ['en', 'en'],
      ['en', 'de'],
      ['fr', 'en'],
      ['de', 'fr'],
    ]) {
      out.availability[`${s}>${t}`] = await avail(s, t);
    }
    out.badTag = await caught(() => avail('en', 'not a tag!'));
    out.builtinEnFr = await MarianTranslator.availability({ sourceLanguage: 'en', targetLanguage: 'fr' });
    out.builtinEnDe = await MarianTranslator.availability({ sourceLanguage: 'en', targetLanguage: 'de' });
    out.builtin = BUILTIN_CATALOG.models.map((m) => [m.url === DEFAULT_MODEL, m.source_languages, m.target_languages]);
    out.modelAndLanguage = await caught(() => MarianTranslator.create({ model: opus, sourceLanguage: 'en', targetLanguage: 'fr' }));
    out.sourceOnly = await caught(() => MarianTranslator.availability({ sourceLanguage: 'en', catalog }));
    out.targetOnly = await caught(() => MarianTranslator.create({ targetLanguage: 'fr' }));

    const refs = await (await fetch('/fixtures/tiny-multi/multi_target.json')).json();
    /** @type {{ language: string, src: string, greedy_text: string }[]} */
    const cases = refs.cases;
    const srcs = cases.filter((c) => c.language === 'fra').map((c) => c.src).slice(0, 4);

    // en → fr-CA: the single-target tiny-opus (lookup fr-CA → fr), the same text as by URL.
    const byLang = await MarianTranslator.create({ sourceLanguage: 'en', targetLanguage: 'fr-CA', catalog, store: false });
    out.fr = {
      model: byLang.model,
      sourceLanguage: byLang.sourceLanguage,
      targetLanguage: byLang.targetLanguage,
      targetCode: byLang.targetCode,
      entryQuality: byLang.catalogEntry?.quality,
      texts: await byLang.translate(srcs, { beams: 1 }),
    };
    byLang.destroy();
    const byUrl = await MarianTranslator.create({ model: '/packages/tiny-opus-f32/', store: false });
    out.frByUrl = await byUrl.translate(srcs, { beams: 1 });
    out.byUrlLanguages = [byUrl.sourceLanguage, byUrl.targetLanguage, byUrl.catalogEntry];
    byUrl.destroy();

    // en → en: only the multi-target model, through >>eng<<; stored, so then 'available'.
    const engSrcs = cases.filter((c) => c.language === 'eng').map((c) => c.src).slice(0, 3);
    const en = await MarianTranslator.create({ sourceLanguage: 'en-US', targetLanguage: 'en', catalog });
    out.en = {
      model: en.model,
      targetLanguage: en.targetLanguage,
      targetCode: en.targetCode,
      texts: await en.translate(engSrcs, { beams: 1 }),
      // Per call, a BCP 47 tag of the entry becomes the model's code (fr-BE → fr → >>fra<<).
      perCallFr: await en.translate(srcs, { beams: 1, targetLanguage: 'fr-BE' }),
      perCallOwnCode: await en.translate(srcs[0], { beams: 1, targetLanguage: 'fra' }),
    };
    en.destroy();
    out.enAfter = await avail('en', 'en');
    const mByUrl = await MarianTranslator.create({ model: '/packages/tiny-multi-f32/', targetLanguage: 'eng', store: false });
    out.enByUrl = await mByUrl.translate(engSrcs, { beams: 1 });
    out.frByMultiUrl = await mByUrl.translate(srcs, { beams: 1, targetLanguage: 'fra' });
    mByUrl.destroy();
    await deleteModel(multi);

    out.none = await caught(() => MarianTranslator.create({ sourceLanguage: 'en', targetLanguage: 'de-AT', catalog }));

    // A parsed object: relative URLs against the page; a sha256 that is not the manifest's.
    const obj = await (await fetch(catalog)).json();
    obj.models = obj.models.map((/** @type {any} */ m) => ({ ...m, url: m.url.replace('../', '/packages/') }));
    obj.models[0].sha256 = '0'.repeat(64);
    out.wrongShaAvailability = await avail('en', 'fr', obj);
    out.wrongSha = await caught(() => MarianTranslator.create({ sourceLanguage: 'en', targetLanguage: 'fr', catalog: obj, store: false }));
    const broken = { ...obj, models: [{ ...obj.models[1] }] };
    delete broken.models[0].size;
    out.broken = await caught(() => avail('en', 'fr', broken));
    out.badFormat = await caught(() => avail('en', 'fr', { format: 'x', format_version: 1, models: [] }));
    out.missingCatalog = await caught(() => avail('en', 'fr', '/packages/catalogs/no-such.json'));

    // Matching alone, on a catalog of made-up entries (nothing is downloaded).
    const e = (/** @type {string} */ url, /** @type {string[]} */ t, /** @type {Record<string, string>=} */ codes) => ({
      url, source_languages: ['en'], target_languages: t, ...(codes ? { target_codes: codes } : {}), size: 1, sha256: 'a'.repeat(64), quant: 'q8',
    });
    const made = api.parseCatalog({
      format: 'marian-wasm-catalog',
      format_version: 1,
      models: [
        e('/m/mul/', ['zh-Hans', 'zh-Hant', 'pt-BR', 'es'], { 'zh-Hans': 'cmn_Hans', 'zh-Hant': 'cmn_Hant', 'pt-BR': 'pt_br', es: 'spa' }),
        e('/m/zh/', ['zh']),
        e('/m/es/', ['es']),
      ],
    });
    out.matching = {};
    for (const t of ['zh-Hant-TW', 'zh-TW', 'zh', 'zh-CN', 'ZH_hans', 'cmn-Hant', 'pt', 'pt-PT', 'es-MX', 'he', 'iw']) {
      const m = api.findModel(made, 'en', api.canonicalLanguage(t));
      out.matching[t] = m && `${new URL(m.entry.url).pathname} ${m.targetLanguage} ${m.targetCode}`;
    }
    return out;
  });
  log(JSON.stringify(r.availability), r.fr.texts[0]);

  assert.deepEqual(r.loaded, [`${baseUrl}/packages/tiny-opus-f32/`, `${baseUrl}/packages/tiny-multi-f32/`], 'relative URLs resolve against the catalog');
  assert.deepEqual(r.availability, {
    'en>fr': 'downloadable',
    'EN>FR-ca': 'downloadable',
    'en-US>fr': 'downloadable',
    'en_GB>fr-Latn-FR': 'downloadable',
    'eng>fra': 'downloadable',
    'en>en': 'downloadable',
    'en>de': 'unavailable',
    'fr>en': 'unavailable',
    'de>fr': 'unavailable',
  });
  assert.match(r.badTag, /^RangeError: .*not a tag!/);
  assert.ok(['available', 'downloadable'].includes(r.builtinEnFr), r.builtinEnFr);
  assert.equal(r.builtinEnDe, 'unavailable');
  assert.deepEqual(r.builtin, [[true, ['en'], ['fr']]]);
  assert.match(r.modelAndLanguage, /^TypeError: .*either model/);
  assert.match(r.sourceOnly, /^TypeError: .*both sourceLanguage and targetLanguage/);
  assert.match(r.targetOnly, /^TypeError: .*targetLanguage needs sourceLanguage/);

  assert.equal(r.fr.model, `${baseUrl}/packages/tiny-opus-f32/`, 'the single-target model is preferred for en → fr');
  assert.deepEqual([r.fr.sourceLanguage, r.fr.targetLanguage, r.fr.targetCode], ['en', 'fr-CA', null]);
  assert.equal(r.fr.entryQuality, 'random tiny test model');
  assert.deepEqual(r.fr.texts, r.frByUrl, 'by language = by model URL');
  assert.deepEqual(r.byUrlLanguages, [null, null, null]);

  assert.equal(r.en.model, `${baseUrl}/packages/tiny-multi-f32/`);
  assert.deepEqual([r.en.targetLanguage, r.en.targetCode], ['en', 'eng']);
  assert.deepEqual(r.en.texts, r.enByUrl, 'by language = by model URL with >>eng<<');
  assert.deepEqual(r.en.perCallFr, r.frByMultiUrl, 'a per-call BCP 47 tag maps to the model code');
  assert.equal(r.en.perCallOwnCode, r.frByMultiUrl[0]);
  assert.notDeepEqual(r.enByUrl, r.frByMultiUrl.slice(0, 3));
  assert.equal(r.enAfter, 'available', 'stored after create');

  assert.match(r.none, /^NotSupportedError: .*en → de-AT.*en → fr/);
  assert.equal(r.wrongShaAvailability, 'downloadable');
  assert.match(r.wrongSha, /sha256 [0-9a-f]{64} is not the catalog's 0{64}/);
  assert.match(r.broken, /^TypeError: catalog: models\[0\] \(\/packages\/tiny-multi-f32\/\): "size"/);
  assert.match(r.badFormat, /^TypeError: .*not a marian-wasm catalog/);
  assert.match(r.missingCatalog, /no-such\.json: HTTP 404/);
  assert.deepEqual(r.matching, {
    'zh-Hant-TW': '/m/mul/ zh-Hant cmn_Hant', // lookup: zh-Hant before zh
    'zh-TW': '/m/mul/ zh-Hant cmn_Hant', // likely subtags: zh-TW is Traditional; zh is not
    zh: '/m/zh/ zh null',
    'zh-CN': '/m/zh/ zh null',
    ZH_hans: '/m/mul/ zh-Hans cmn_Hans',
    'cmn-Hant': '/m/mul/ zh-Hant cmn_Hant', // Intl: cmn → zh
    pt: '/m/mul/ pt-BR pt_br', // pt is pt-Latn-BR
    'pt-PT': null,
    'es-MX': '/m/es/ es null', // the single-target model before the multi-target one
    he: null,
    iw: null,
  });
}
