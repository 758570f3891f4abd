// A multi-target model in the page (the tiny-multi fixture: `>>fra<<` French, `>>eng<<` English):
// `create({ targetLanguage })` and `translate(text, { targetLanguage })` give transformers' own
// output (tests/fixtures/tiny-multi/multi_target.json, made by scripts/make_fixtures.py);
// `targetLanguages` lists the model's codes; a missing or unknown code is an error naming them.

export const timeoutS = 300;

/** @param {{ page: import('playwright-core').Page, baseUrl: string, assert: typeof import('node:assert/strict'), log: (...a: unknown[]) => void }} ctx */
export async function run({ page, baseUrl, assert, log }) {
  await page.goto(`${baseUrl}/test-pages/blank.html`);
  const r = await page.evaluate(async () => {
    const { MarianTranslator } = await import('/marian-wasm.js');
    const refs = await (await fetch('/fixtures/tiny-multi/multi_target.json')).json();
    const model = '/packages/tiny-multi-f32/';
    const { caught } = await import('/test-pages/caught.js');
    /** @type {{ language: string, src: string, greedy_text: string }[]} */
    const cases = refs.cases;
    const srcs = (/** @type {string} */ l) => cases.filter((c) => c.language === l).map((c) => c.src);
    const want = (/** @type {string} */ l) => cases.filter((c) => c.language === l).map((c) => c.greedy_text);
    const out = /** @type {Record<string, unknown>} */ ({});
    const fra = await MarianTranslator.create({ model, store: false, targetLanguage: 'fra' });
    out.languages = fra.targetLanguages;
    out.manifestLanguages = fra.manifest.target_languages;
    out.fra = await fra.translate(srcs('fra'), { beams: 1 });
    // Per call, the other language; then the create-time one again.
    out.eng = await fra.translate(srcs('eng'), { beams: 1, targetLanguage: 'eng' });
    out.fraAgain = await fra.translate(srcs('fra')[0], { beams: 1 });
    out.unknownPerCall = await caught(() => fra.translate('A dog.', { targetLanguage: 'deu' }));
    fra.destroy();
    out.unknownAtCreate = await caught(() => MarianTranslator.create({ model, store: false, targetLanguage: 'deu' }));
    const none = await MarianTranslator.create({ model, store: false });
    out.missing = await caught(() => none.translate('A dog runs.'));
    out.ownCode = await none.translate(`>>eng<< ${srcs('eng')[0]}`, { beams: 1 });
    none.destroy();
    const single = await MarianTranslator.create({ model: '/packages/tiny-opus-q8/', store: false });
    out.singleLanguages = single.targetLanguages;
    out.codeOnSingle = await caught(() => single.translate('A dog.', { targetLanguage: 'fra' }));
    single.destroy();
    return { out, want: { fra: want('fra'), eng: want('eng') } };
  });
  const { out, want } = r;
  log(`targetLanguages ${JSON.stringify(out.languages)}; fra[0] ${JSON.stringify(/** @type {string[]} */ (out.fra)[0])}`);
  assert.deepEqual(out.languages, ['eng', 'fra']);
  assert.deepEqual(out.manifestLanguages, ['eng', 'fra']);
  assert.deepEqual(out.fra, want.fra, 'create({ targetLanguage: "fra" }) gives transformers\' French');
  assert.deepEqual(out.eng, want.eng, 'translate(…, { targetLanguage: "eng" }) gives transformers\' English');
  assert.notDeepEqual(want.fra, want.eng);
  assert.equal(out.fraAgain, want.fra[0]);
  assert.match(String(out.unknownPerCall), /'deu'.*eng, fra/);
  assert.match(String(out.unknownAtCreate), /^TypeError: .*'deu'.*eng, fra/);
  assert.match(String(out.missing), /2 languages.*eng, fra/);
  assert.equal(out.ownCode, want.eng[0], 'a text that starts with its own >>eng<< needs no option');
  assert.deepEqual(out.singleLanguages, []);
  assert.match(String(out.codeOnSingle), /no target-language tokens/);
}
