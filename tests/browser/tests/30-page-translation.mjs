// Page translation (www/page-translator.js) on a fixture page with markup:
//  1. with a dictionary "model" whose outputs are known, the exact projected markup is checked:
//     inline elements around the right words, attributes kept, readable attributes translated,
//     code / pre / script / translate="no" untouched, repeated texts sent to the model once,
//     content added later translated, restore() byte-identical, output never parsed as HTML;
//  2. a "model" that answers with HTML (an injection attempt) only ever produces text;
//  3. with the real default model through MarianTranslator.translatePage: markup kept, text changed,
//     restore byte-identical;
//  4. the one-line drop-in (www/article.html uses page.js): the button translates and restores.

export const timeoutS = 300;

/** @param {{ page: import('playwright-core').Page, baseUrl: string, assert: typeof import('node:assert/strict'), log: (...a: unknown[]) => void }} ctx */
export async function run({ page, baseUrl, assert, log }) {
  // ---- 1. dictionary model: exact projection -------------------------------------------------
  await page.goto(`${baseUrl}/test-pages/page-translate.html`);
  const r = await page.evaluate(async () => {
    const { PageTranslator } = await import('/page-translator.js');
    /** @type {Record<string, string>} */
    const dict = {
      'A woman in a red dress is selling fruit.': 'Une femme en robe rouge vend des fruits.',
      'red dress': 'robe rouge',
      'Two boys are playing football in the park.': 'Deux garçons jouent au football dans le parc.',
      football: 'football',
      'A man is riding a big black horse on the beach.': 'Un homme monte un grand cheval noir sur la plage.',
      'big black horse': 'grand cheval noir',
      black: 'noir',
      'The man types ls -la on his computer.': "L'homme tape ls -la sur son ordinateur.",
    };
    /** @type {Record<string, number>} */
    const calls = {};
    const translate = async (/** @type {string[]} */ texts) =>
      texts.map((t) => {
        calls[t] = (calls[t] ?? 0) + 1;
        return dict[t] ?? `[fr] ${t}`;
      });
    const root = /** @type {HTMLElement} */ (document.getElementById('root'));
    const before = root.innerHTML;
    const pt = new PageTranslator(root, { translate });
    await pt.translate();
    const html = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id)).innerHTML;
    const attr = (/** @type {string} */ id, /** @type {string} */ a) => document.getElementById(id)?.getAttribute(a);
    const after = {
      bold: html('bold'),
      link: html('link'),
      nested: html('nested'),
      code: html('code'),
      notrans: html('notrans'),
      repeat1: html('repeat1'),
      repeat2: html('repeat2'),
      list: html('list'),
      xss: html('xss'),
      pre: html('pre'),
      br: html('br'),
      numbers: html('numbers'),
      h1title: document.querySelector('h1')?.getAttribute('title'),
      alt: attr('img', 'alt'),
      placeholder: attr('input', 'placeholder'),
      ariaLabel: attr('input', 'aria-label'),
      imgs: root.querySelectorAll('img').length,
      scripts: root.querySelectorAll('script').length,
    };
    const repeatCalls = calls['A dog is running through the grass.'];
    // Content added later is picked up.
    const added = document.createElement('p');
    added.id = 'added';
    added.textContent = 'A horse is eating grass.';
    root.appendChild(added);
    await new Promise((r) => setTimeout(r, 0));
    await pt.settled();
    const addedHtml = html('added');
    pt.restore();
    root.removeChild(added);
    return {
      after,
      repeatCalls,
      addedHtml,
      restored: root.innerHTML === before,
      pwned: /** @type {any} */ (window).__pwned ?? null,
      scriptRan: /** @type {any} */ (window).__scriptRan,
    };
  });
  log('projected:', r.after);
  const a = r.after;
  assert.equal(a.bold, 'Une femme en <b>robe rouge</b> vend des fruits.');
  assert.equal(
    a.link,
    'Deux garçons jouent au <a href="https://example.org/x?a=1&amp;b=2" class="ext" title="[fr] A game with a ball">football</a> dans le parc.',
  );
  assert.equal(a.nested, 'Un homme monte un <em>grand cheval <strong>noir</strong></em> sur la plage.');
  assert.equal(a.code, "L'homme tape <code>ls -la</code> sur son ordinateur.");
  assert.equal(a.notrans, 'A dog is running through the grass.', 'translate="no" is left alone');
  assert.equal(a.repeat1, '[fr] A dog is running through the grass.');
  assert.equal(a.repeat2, a.repeat1);
  assert.equal(r.repeatCalls, 1, 'a repeated sentence goes to the model once');
  assert.match(a.list, /<li>\[fr\] A child is eating ice cream\.<\/li>\s*<li> \[fr\] Two women are talking\. <\/li>/);
  assert.equal(a.pre, 'A man is sleeping.', '<pre> is left alone');
  assert.equal(a.br, '[fr] A cat is sitting on a wall.<br>[fr] A bird is flying.');
  assert.equal(a.numbers, '42 — 3.14', 'text without letters is not sent to the model');
  assert.equal(a.h1title, '[fr] A group of people');
  assert.equal(a.alt, '[fr] A boy is jumping into the water.');
  assert.equal(a.placeholder, '[fr] A woman is reading a book.');
  assert.equal(a.ariaLabel, '[fr] A woman is reading a book.');
  assert.equal(a.xss, '[fr] Look at this: &lt;img src=x onerror="window.__pwned=1"&gt; and &lt;script&gt;window.__pwned=2&lt;/script&gt;');
  assert.equal(a.imgs, 1, 'no element created from model output');
  assert.equal(a.scripts, 1);
  assert.equal(r.addedHtml, '[fr] A horse is eating grass.', 'content added later is translated');
  assert.equal(r.restored, true, 'restore() gives back the original markup byte for byte');
  assert.equal(r.pwned, null);
  assert.equal(r.scriptRan, 1, 'the page script ran once (nothing re-inserted it)');

  // ---- 2. a model answering with HTML --------------------------------------------------------
  const evil = await page.evaluate(async () => {
    const { PageTranslator } = await import('/page-translator.js');
    const root = /** @type {HTMLElement} */ (document.getElementById('root'));
    const payload = '<img src=x onerror="window.__pwned=3"><script>window.__pwned=4</script><b>bold</b>';
    const pt = new PageTranslator(root, { translate: async (texts) => texts.map(() => payload), observe: false });
    await pt.translate();
    await new Promise((r) => setTimeout(r, 200));
    const res = {
      imgs: root.querySelectorAll('img').length,
      scripts: root.querySelectorAll('script').length,
      bolds: root.querySelectorAll('b').length,
      boldText: document.getElementById('bold')?.textContent,
      alt: document.getElementById('img')?.getAttribute('alt'),
      pwned: /** @type {any} */ (window).__pwned ?? null,
    };
    pt.restore();
    return res;
  });
  log('HTML-answering model:', evil);
  assert.equal(evil.imgs, 1);
  assert.equal(evil.scripts, 1);
  assert.equal(evil.bolds, 1, 'only the page’s own <b> (re-created around the output), none from the output');
  assert.ok(evil.boldText?.includes('<img src=x'), 'the payload is shown as text');
  assert.equal(evil.alt, '<img src=x onerror="window.__pwned=3"><script>window.__pwned=4</script><b>bold</b>');
  assert.equal(evil.pwned, null, 'no injected code ran');

  // ---- 2b. a model that fails on one text: that element stays, every other one is translated --
  const failing = await page.evaluate(async () => {
    const { PageTranslator } = await import('/page-translator.js');
    const root = /** @type {HTMLElement} */ (document.getElementById('root'));
    const before = /** @type {HTMLElement} */ (document.getElementById('nested')).innerHTML;
    /** @type {number[]} */
    const batchSizes = [];
    const translate = async (/** @type {string[]} */ texts) => {
      batchSizes.push(texts.length);
      if (texts.some((t) => t.includes('horse'))) throw new Error('the model cannot take this text');
      return texts.map((t) => `[fr] ${t}`);
    };
    const pt = new PageTranslator(root, { translate, observe: false, batchSize: 16, visibleFirst: false });
    await pt.translate();
    const res = {
      nested: /** @type {HTMLElement} */ (document.getElementById('nested')).innerHTML,
      before,
      bold: document.getElementById('bold')?.textContent,
      alt: document.getElementById('img')?.getAttribute('alt'),
      failures: pt.failures.map((f) => f.text),
      errors: pt.failures.map((f) => f.error),
      batchSizes,
    };
    pt.restore();
    return res;
  });
  log('a model failing on one text:', failing);
  assert.equal(failing.nested, failing.before, 'the element the model failed on is left as it was');
  assert.equal(failing.bold, '[fr] A woman in a red dress is selling fruit.');
  assert.equal(failing.alt, '[fr] A boy is jumping into the water.');
  assert.ok(failing.failures.includes('A man is riding a big black horse on the beach.'), String(failing.failures));
  assert.ok(failing.failures.every((t) => t.includes('horse')), 'only texts with the failing word fail');
  assert.ok(failing.errors.every((e) => e.includes('cannot take')));
  assert.ok(failing.batchSizes.some((n) => n > 1), 'batches were tried whole first');

  // ---- 3. the real default model ---------------------------------------------------------------
  await page.goto(`${baseUrl}/test-pages/page-translate.html`);
  const real = await page.evaluate(async () => {
    const { MarianTranslator } = await import('/marian-wasm.js');
    const root = /** @type {HTMLElement} */ (document.getElementById('root'));
    const before = root.innerHTML;
    const beforeText = Object.fromEntries(['bold', 'link', 'nested', 'code'].map((id) => [id, document.getElementById(id)?.textContent]));
    const t = await MarianTranslator.create({ model: '/models/default/' });
    const pt = await t.translatePage(root, { observe: false });
    const get = (/** @type {string} */ id) => document.getElementById(id);
    const res = {
      bold: get('bold')?.innerHTML,
      link: get('link')?.innerHTML,
      nested: get('nested')?.innerHTML,
      code: get('code')?.innerHTML,
      changed: ['bold', 'link', 'nested', 'code'].filter((id) => get(id)?.textContent !== beforeText[id]),
      linkHref: get('link')?.querySelector('a')?.getAttribute('href'),
      linkClass: get('link')?.querySelector('a')?.className,
      strongInEm: !!get('nested')?.querySelector('em strong'),
      codeText: get('code')?.querySelector('code')?.textContent,
      bText: get('bold')?.querySelector('b')?.textContent,
      pre: get('pre')?.textContent,
      notrans: get('notrans')?.textContent,
      device: t.device,
    };
    pt.restore();
    const restored = root.innerHTML === before;
    t.destroy();
    return { ...res, restored };
  });
  log('default model:', real);
  assert.deepEqual(real.changed, ['bold', 'link', 'nested', 'code'], 'every paragraph was translated');
  assert.equal(real.linkHref, 'https://example.org/x?a=1&b=2', 'the link keeps its href');
  assert.equal(real.linkClass, 'ext');
  assert.ok(real.strongInEm, 'nested inline elements stay nested');
  assert.equal(real.codeText, 'ls -la', '<code> content is kept verbatim');
  assert.ok(real.bText && real.bText.trim().length > 0, '<b> wraps some of the translation');
  assert.equal(real.pre, 'A man is sleeping.');
  assert.equal(real.notrans, 'A dog is running through the grass.');
  assert.equal(real.restored, true, 'restore() after a real translation is byte-identical');

  // ---- 4. the one-line drop-in on the sample article -------------------------------------------
  await page.goto(`${baseUrl}/article.html`);
  const button = page.locator('button.marian-wasm-page-button');
  await button.waitFor();
  const original = await page.locator('main').innerHTML();
  await button.click();
  await page.waitForFunction(() => /Show original|failed/.test(document.querySelector('button.marian-wasm-page-button')?.textContent ?? ''), undefined, {
    timeout: 120_000,
  });
  assert.equal(await button.textContent(), 'Show original');
  const h1 = await page.locator('main h1').textContent();
  log('article h1 translated:', h1);
  assert.notEqual(h1, 'A day at the market');
  assert.equal(await page.locator('main b').count(), 1);
  assert.equal(await page.locator('main code').textContent(), '12 rue du Marché');
  await button.click();
  await page.waitForFunction(() => document.querySelector('button.marian-wasm-page-button')?.textContent === 'Translate this page');
  assert.equal(await page.locator('main').innerHTML(), original, 'the drop-in restores the article exactly');
}
