// Page translation (www/page-translator.js) of markup inside and between words (issue 18), with a
// dictionary "model" whose outputs are known, so the exact DOM is checked: a footnote mark keeps
// its number and goes after the right word and is not sent to the model; <wbr> and soft hyphens
// do not cut a word in two; a drop cap and a link on part of a word stay on part of one word and
// are not translated on their own; an element with only a number or symbols keeps its text;
// punctuation at the edge of an inline element; links in a <nav> separated by · and | are
// translated one by one with the separators kept. restore() gives the page back byte for byte.
// Then the same page with the real default model: every element keeps its attributes and text.

export const timeoutS = 120;

/** @param {{ page: import('playwright-core').Page, baseUrl: string, assert: typeof import('node:assert/strict'), log: (...a: unknown[]) => void }} ctx */
export async function run({ page, baseUrl, assert, log }) {
  await page.goto(`${baseUrl}/test-pages/page-word-markup.html`);
  const r = await page.evaluate(async () => {
    const { PageTranslator } = await import('/page-translator.js');
    /** @type {Record<string, string>} */
    const dict = {
      'The word has a note.': 'Le mot a une note.',
      'A supermarket is open.': 'Un supermarché est ouvert.',
      'A supermarket is open today.': "Un supermarché est ouvert aujourd'hui.",
      'The cat sleeps.': 'Le chat dort.',
      'We went to the supermarket.': 'Nous sommes allés au supermarché.',
      'The team scored 42 points.': "L'équipe a marqué 42 points.",
      'Rated ★★★ by the critics.': 'Noté par les critiques.',
      'He said hello, then left.': 'Il a dit bonjour, puis il est parti.',
      'hello,': 'bonjour,',
      Home: 'Accueil',
      'About us': 'À propos',
      Contact: 'Contact',
    };
    /** @type {string[]} */
    const sent = [];
    const translate = async (/** @type {string[]} */ texts) =>
      texts.map((t) => {
        sent.push(t);
        return dict[t] ?? `[fr] ${t}`;
      });
    const root = /** @type {HTMLElement} */ (document.getElementById('root'));
    const before = root.innerHTML;
    const pt = new PageTranslator(root, { translate, observe: false });
    await pt.translate();
    /** @type {Record<string, string>} */
    const after = {};
    for (const p of root.querySelectorAll('[id]')) if (p.parentElement === root) after[p.id] = p.innerHTML;
    pt.restore();
    return { after, sent, restored: root.innerHTML === before };
  });
  log('projected:', r.after);
  const a = r.after;
  assert.equal(a.footnote, 'Le mot<sup><a href="#ref1" id="fn1">1</a></sup> a une note.');
  assert.equal(a.wbr, 'Un supermarché est ouvert.');
  assert.equal(a.shy, "Un supermarché est ouvert aujourd'hui.");
  assert.equal(a.dropcap, '<span class="dropcap">L</span>e chat dort.');
  assert.equal(a.partlink, 'Nous sommes allés au <a href="/s">super</a>marché.');
  assert.equal(a.number, "L'équipe a marqué <b>42</b> points.");
  assert.equal(a.symbol, 'Noté <span class="stars">★★★</span> par les critiques.');
  assert.equal(a.edge, 'Il a dit <b>bonjour,</b> puis il est parti.');
  assert.equal(a.nav, '<a href="/">Accueil</a> · <a href="/about">À propos</a> | <a href="/contact">Contact</a>');
  for (const bad of ['The word1 has a note.', 'A super', 'market is open.', 'T', 'super', '1', '42', '★★★']) {
    assert.ok(!r.sent.includes(bad), `${JSON.stringify(bad)} was sent to the model on its own`);
  }
  assert.ok(!r.sent.some((t) => t.includes('Home') && t.includes('Contact')), 'the nav links went to the model as one sentence');
  assert.equal(r.restored, true, 'restore() gives back the original markup byte for byte');

  // ---- the real default model: every element survives with its attributes and own text -------
  await page.goto(`${baseUrl}/test-pages/page-word-markup.html`);
  const real = await page.evaluate(async () => {
    const { MarianTranslator } = await import('/marian-wasm.js');
    const root = /** @type {HTMLElement} */ (document.getElementById('root'));
    const before = root.innerHTML;
    const t = await MarianTranslator.create({ model: '/models/default/' });
    const pt = await t.translatePage(root, { observe: false });
    const q = (/** @type {string} */ sel) => root.querySelector(sel);
    const res = {
      html: Object.fromEntries([...root.querySelectorAll('[id]')].filter((e) => e.parentElement === root).map((e) => [e.id, e.innerHTML])),
      fnText: q('#footnote sup a#fn1')?.textContent,
      fnHref: q('#footnote sup a')?.getAttribute('href'),
      fnAfter: q('#footnote sup')?.previousSibling?.textContent ?? '',
      wbrs: root.querySelectorAll('wbr').length,
      shy: (q('#shy')?.textContent ?? '').includes('\u00AD'),
      dropcap: q('#dropcap span.dropcap')?.textContent,
      dropcapNext: q('#dropcap span.dropcap')?.nextSibling?.textContent ?? '',
      partLink: q('#partlink a[href="/s"]')?.textContent,
      number: q('#number b')?.textContent,
      stars: q('#symbol span.stars')?.textContent,
      navLinks: [...root.querySelectorAll('#nav a')].map((a) => a.getAttribute('href')),
      navText: q('#nav')?.textContent,
    };
    pt.restore();
    return { ...res, restored: root.innerHTML === before };
  });
  log('default model:', real.html);
  assert.equal(real.fnText, '1', 'the footnote keeps its number');
  assert.equal(real.fnHref, '#ref1');
  assert.match(real.fnAfter, /\p{L}$/u, 'the footnote mark follows a word');
  assert.equal(real.wbrs, 0);
  assert.equal(real.shy, false);
  assert.equal(real.dropcap?.length, 1, 'the drop cap covers one letter');
  assert.match(real.dropcapNext, /^\p{L}/u, 'the drop cap is glued to the rest of its word');
  assert.ok(real.partLink && /^\p{L}+$/u.test(real.partLink), `the part-word link covers letters: ${real.partLink}`);
  assert.equal(real.number, '42');
  assert.equal(real.stars, '★★★');
  assert.deepEqual(real.navLinks, ['/', '/about', '/contact']);
  assert.match(real.navText ?? '', / · .* \| /, 'the separators are kept');
  assert.equal(real.restored, true);
}
