// Language detection (issue 21 item 4) through the real wasm build (www/pkg: the detector loads
// the plain build in its own worker).
//  (a) MarianLanguageDetector: availability, create, detect on clear sentences in six languages
//      and scripts (best first, confidences summing to 1, "und" last), letterless text → und 1,
//      expectedInputLanguages restricting the candidates, its errors; DETECTABLE_LANGUAGES equals
//      the wasm export's list (www/pkg/marian_wasm.js imported in the page).
//  (b) MarianTranslator with sourceLanguage "auto" over a catalog written by the native CLI.
//      THE LANGUAGE LABELS ARE THIS TEST'S OWN: both fixture packages are really English → French
//      models; the catalog calls tiny-opus-f32 an "en → fr" model and tiny-switches-f32 a
//      "de → fr" one, so routing by detected language shows in which model's output comes back.
//      Checked: availability; each text of one translate call goes to its language's model (the
//      same strings as that model created by language, non-auto), a French text is kept as is
//      with an issue, lastRun.languages; translateStreaming; translatePage on a page without
//      <html lang> (the text decides) and with one (it decides an unsure text); the page.js drop-in
//      with data-catalog and data-target-language (source "auto"); fineTune refused; the errors; and a non-auto create after it as before.

import path from 'node:path';
import { catalogCli } from '../catalog-cli.mjs';

export const timeoutS = 300;

/** @param {{ page: import('playwright-core').Page, baseUrl: string, assert: typeof import('node:assert/strict'), log: (...a: unknown[]) => void, dirs: Record<string, string> }} ctx */
export async function run({ page, baseUrl, assert, log, dirs }) {
  const { add } = catalogCli({ assert, dirs }, ['tiny-opus-f32', 'tiny-switches-f32']).catalog('16-language-detection.json');
  log(add([path.join(dirs.packages, 'tiny-opus-f32'), '--url', '../tiny-opus-f32/', '--source', 'en', '--target', 'fr']));
  log(add([path.join(dirs.packages, 'tiny-switches-f32'), '--url', '../tiny-switches-f32/', '--source', 'de', '--target', 'fr', '--quality', 'label made up by the test']));

  await page.goto(`${baseUrl}/test-pages/blank.html`);
  const r = await page.evaluate(async () => {
    const api = await import('/marian-wasm.js');
    const { MarianTranslator, MarianLanguageDetector, DETECTABLE_LANGUAGES, deleteModel } = api;
    const { caught } = await import('/test-pages/caught.js');
    const out = /** @type {Record<string, any>} */ ({});
    const wasm = await import('/pkg/marian_wasm.js');
    await wasm.default();
    out.exported = [...wasm.detectableLanguages()].sort();
    out.listed = [...DETECTABLE_LANGUAGES];

    // (a) the detector
    out.available = await MarianLanguageDetector.availability();
    out.availableEnFr = await MarianLanguageDetector.availability({ expectedInputLanguages: ['en', 'FR-ca'] });
    out.unknownLanguage = await MarianLanguageDetector.availability({ expectedInputLanguages: ['en', 'tlh'] });
    out.badTag = await caught(() => MarianLanguageDetector.availability({ expectedInputLanguages: ['not a tag!'] }));
    out.createUnknown = await caught(() => MarianLanguageDetector.create({ expectedInputLanguages: ['tlh'] }));
    const d = await MarianLanguageDetector.create();
    const sentences = {
      en: 'A little girl is playing in the park with her dog.',
      fr: 'Une petite fille joue dans le parc avec son chien.',
      de: 'Ein kleines Mädchen spielt mit ihrem Hund im Park.',
      ru: 'Маленькая девочка играет в парке со своей собакой.',
      zh: '小女孩和她的狗在公园里玩耍。',
      ja: '小さな女の子が公園で犬と遊んでいます。',
    };
    out.detected = {};
    for (const [lang, text] of Object.entries(sentences)) out.detected[lang] = await d.detect(text);
    out.letterless = await d.detect('12 345,67 — 🙂');
    out.empty = await d.detect('');
    out.notString = await caught(() => d.detect(/** @type {any} */ (42)));
    d.destroy();
    out.afterDestroy = await caught(() => d.detect('Hello there'));
    const among = await MarianLanguageDetector.create({ expectedInputLanguages: ['en', 'fr'] });
    out.among = await among.detect('Voir les images');
    out.amongGerman = (await among.detect(sentences.de))[0].detectedLanguage;
    among.destroy();

    // (b) sourceLanguage: 'auto'
    const catalog = '/packages/catalogs/16-language-detection.json';
    await deleteModel(new URL('/packages/tiny-opus-f32/', location.href).href);
    await deleteModel(new URL('/packages/tiny-switches-f32/', location.href).href);
    out.autoAvailability = await MarianTranslator.availability({ sourceLanguage: 'auto', targetLanguage: 'fr', catalog });
    out.autoIntoDe = await MarianTranslator.availability({ sourceLanguage: 'auto', targetLanguage: 'de', catalog });
    out.autoNoTarget = await caught(() => MarianTranslator.create({ sourceLanguage: 'auto', catalog }));
    out.autoWithModel = await caught(() => MarianTranslator.create({ sourceLanguage: 'auto', targetLanguage: 'fr', model: '/packages/tiny-opus-f32/' }));
    out.autoNone = await caught(() => MarianTranslator.create({ sourceLanguage: 'auto', targetLanguage: 'de', catalog }));

    const en = ['A man is riding a bicycle down the street.', 'Two dogs are running through the snow.'];
    const de = ['Ein Mann fährt mit dem Fahrrad die Straße entlang.'];
    const fr = 'Deux chiens courent dans la neige.';
    const auto = await MarianTranslator.create({ sourceLanguage: 'auto', targetLanguage: 'fr', catalog, store: false });
    out.autoProps = [auto.sourceLanguage, auto.targetLanguage, auto.model];
    out.autoOut = await auto.translateWithIssues([en[0], de[0], fr, en[1]], { beams: 1 });
    out.autoLanguages = auto.lastRun?.languages;
    out.autoModelAfter = auto.model;
    const chunks = [];
    const reader = auto.translateStreaming(en[0], { beams: 1 }).getReader();
    for (let x = await reader.read(); !x.done; x = await reader.read()) chunks.push(x.value);
    out.streamed = chunks.join('');
    document.documentElement.removeAttribute('lang');
    document.body.innerHTML = `<main><p>${en[1]}</p><p>${de[0]}</p></main>`;
    out.htmlLang = document.documentElement.getAttribute('lang');
    const pageT = await auto.translatePage(document.querySelector('main') ?? undefined, { beams: 1, observe: false });
    out.page = [...document.querySelectorAll('main p')].map((p) => p.textContent);
    pageT.restore();
    // With a lang attribute, a text the detector is unsure of takes the page's language.
    // (The call before it was English, so without the hint "OK" would go to the English model.)
    await auto.translate(en[0], { beams: 1 });
    out.lastBeforeHint = auto.lastRun?.languages;
    const among3 = await MarianLanguageDetector.create({ expectedInputLanguages: ['en', 'de', 'fr'] });
    out.okDetected = await among3.detect('OK');
    among3.destroy();
    document.documentElement.setAttribute('lang', 'de-AT');
    document.body.innerHTML = '<main><p>OK</p></main>';
    const hinted = await auto.translatePage(document.querySelector('main') ?? undefined, { beams: 1, observe: false });
    out.hinted = [document.querySelector('main p')?.textContent, auto.lastRun?.languages];
    hinted.restore();
    document.documentElement.removeAttribute('lang');
    out.fineTune = await caught(() => auto.fineTune([{ source: 'a', target: 'b' }]));
    out.memory = (await auto.memoryUsage()).wasmBytes > 0;
    auto.destroy();
    out.afterAutoDestroy = await caught(() => auto.translate('Hello'));

    // Non-auto, as before: by language, each model on its own.
    const enFr = await MarianTranslator.create({ sourceLanguage: 'en', targetLanguage: 'fr', catalog, store: false });
    out.enFr = { model: enFr.model, source: enFr.sourceLanguage, texts: await enFr.translate(en, { beams: 1 }) };
    out.deByEn = await enFr.translate(de[0], { beams: 1 });
    out.enOk = await enFr.translate('OK', { beams: 1 });
    out.enDefault = await enFr.translate(en[1]);
    enFr.destroy();
    const deFr = await MarianTranslator.create({ sourceLanguage: 'de', targetLanguage: 'fr', catalog, store: false });
    out.deFr = { model: deFr.model, texts: await deFr.translate(de, { beams: 1 }), ok: await deFr.translate('OK', { beams: 1 }) };
    out.deDefault = await deFr.translate(de[0]);
    // (c) the page.js drop-in by language: data-catalog + data-target-language, source "auto".
    document.documentElement.removeAttribute('lang');
    document.body.innerHTML = `<main><p>${en[1]}</p><p>${de[0]}</p></main>`;
    const s = document.createElement('script');
    s.type = 'module';
    s.src = '/page.js';
    Object.assign(s.dataset, { catalog, targetLanguage: 'fr', root: 'main' });
    document.body.appendChild(s);
    deFr.destroy();
    return out;
  });
  log(JSON.stringify(r.detected), JSON.stringify(r.autoOut));
  const button = page.locator('button.marian-wasm-page-button');
  await button.waitFor();
  await button.click();
  await page.waitForFunction(() => /Show original|failed/.test(document.querySelector('button.marian-wasm-page-button')?.textContent ?? ''), undefined, {
    timeout: 120_000,
  });
  assert.equal(await button.textContent(), 'Show original');
  assert.deepEqual(await page.locator('main p').allTextContents(), [r.enDefault, r.deDefault], 'page.js: each paragraph by its language');

  // (a)
  assert.deepEqual(r.listed, r.exported, 'DETECTABLE_LANGUAGES = the wasm export');
  assert.equal(r.exported.length, 70);
  assert.equal(r.available, 'available');
  assert.equal(r.availableEnFr, 'available');
  assert.equal(r.unknownLanguage, 'unavailable');
  assert.match(r.badTag, /^RangeError: .*not a tag!/);
  assert.match(r.createUnknown, /^NotSupportedError: .*cannot detect tlh/);
  for (const [lang, res] of Object.entries(r.detected)) {
    assert.equal(res[0].detectedLanguage, lang, `${lang}: ${JSON.stringify(res)}`);
    assert.ok(res[0].confidence > 0.5 && res[0].confidence <= 1, `${lang}: ${JSON.stringify(res)}`);
    const sum = res.reduce((/** @type {number} */ s, /** @type {any} */ x) => s + x.confidence, 0);
    assert.ok(Math.abs(sum - 1) < 1e-9, `${lang}: confidences sum to ${sum}`);
    if (res.length > 1) assert.equal(res[res.length - 1].detectedLanguage, 'und');
  }
  assert.deepEqual(r.letterless, [{ detectedLanguage: 'und', confidence: 1 }]);
  assert.deepEqual(r.empty, [{ detectedLanguage: 'und', confidence: 1 }]);
  assert.match(r.notString, /^TypeError: detect\(\) takes a string/);
  assert.match(r.afterDestroy, /^InvalidStateError/);
  assert.equal(r.among[0].detectedLanguage, 'fr', JSON.stringify(r.among));
  assert.ok(['en', 'fr', 'und'].includes(r.amongGerman), 'restricted to the expected languages');

  // (b)
  assert.equal(r.autoAvailability, 'downloadable');
  assert.equal(r.autoIntoDe, 'unavailable');
  assert.match(r.autoNoTarget, /^TypeError: .*needs targetLanguage/);
  assert.match(r.autoWithModel, /^TypeError: .*either model/);
  assert.match(r.autoNone, /^NotSupportedError: .*into de/);
  assert.deepEqual(r.autoProps, ['auto', 'fr', '']);
  assert.deepEqual(r.autoLanguages, ['en', 'de', 'fr', 'en']);
  assert.deepEqual(
    r.autoOut.map((/** @type {any} */ x) => x.text),
    [r.enFr.texts[0], r.deFr.texts[0], 'Deux chiens courent dans la neige.', r.enFr.texts[1]],
    'each text through its language model; French kept',
  );
  assert.deepEqual(r.autoOut[2].issues, ['detected as fr, the target language: kept as is']);
  assert.deepEqual([r.autoOut[0].issues, r.autoOut[1].issues], [[], []]);
  assert.notEqual(r.deFr.texts[0], r.deByEn, 'the two models differ on the German text (else routing would not show)');
  assert.ok(r.autoModelAfter.endsWith('/packages/tiny-switches-f32/'), `the last model used (de after en): ${r.autoModelAfter}`);
  assert.equal(r.streamed, r.enFr.texts[0]);
  assert.equal(r.htmlLang, null, 'the test page has no <html lang>');
  assert.deepEqual(r.page, [r.enFr.texts[1], r.deFr.texts[0]]);
  assert.deepEqual(r.lastBeforeHint, ['en']);
  assert.ok(r.okDetected[0].detectedLanguage === 'und' || r.okDetected[0].confidence < 0.5, JSON.stringify(r.okDetected));
  assert.notEqual(r.deFr.ok, r.enOk, 'the two models differ on "OK" (else the hint would not show)');
  assert.deepEqual(r.hinted, [r.deFr.ok, ['de']], '<html lang="de-AT"> decides a text the detector is unsure of');
  assert.match(r.fineTune, /^NotSupportedError: .*"auto"/);
  assert.equal(r.memory, true);
  assert.match(r.afterAutoDestroy, /^InvalidStateError/);
  assert.equal(r.enFr.model, `${baseUrl}/packages/tiny-opus-f32/`);
  assert.equal(r.enFr.source, 'en');
  assert.equal(r.deFr.model, `${baseUrl}/packages/tiny-switches-f32/`);
}
