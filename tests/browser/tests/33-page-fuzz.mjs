// The page translator's input fuzzed with random DOM trees (issue 18): tests/browser/pages/
// page-fuzz.js builds seeded random trees and checks, for each, that translation never throws,
// every element survives with its tag and attributes in its place, untranslatable content stays
// byte for byte, no text with letters is left untranslated unless reported, and restore() is exact
// (the invariants in that file's header). CI runs a short seeded pass (300 trees); at scale:
//   bash scripts/fuzz_page.sh [TREES] [SEED]     (MARIAN_PAGE_FUZZ_CASES, MARIAN_PAGE_FUZZ_SEED)
// Then the smallest case of each bug it found, checked exactly with a dictionary model.

export const timeoutS = 120 + Number(process.env.MARIAN_PAGE_FUZZ_CASES || 0) / 10;

const CHUNK = 500;

/** @param {{ page: import('playwright-core').Page, baseUrl: string, assert: typeof import('node:assert/strict'), log: (...a: unknown[]) => void }} ctx */
export async function run({ page, baseUrl, assert, log }) {
  const count = Number(process.env.MARIAN_PAGE_FUZZ_CASES || 300);
  const seed = Number(process.env.MARIAN_PAGE_FUZZ_SEED || 20261206);
  await page.goto(`${baseUrl}/test-pages/blank.html`);
  const t0 = Date.now();
  const total = { trees: 0, nodes: 0, failures: 0, observed: 0, modelTexts: 0 };
  /** @type {{ seed: number, problems: string[], html: string }[]} */
  const bad = [];
  for (let done = 0; done < count && !bad.length; done += CHUNK) {
    const r = await page.evaluate(
      async (o) => {
        const { fuzz } = await import('/test-pages/page-fuzz.js');
        return fuzz(o);
      },
      { seed: seed + done, count: Math.min(CHUNK, count - done) },
    );
    for (const k of /** @type {(keyof typeof total)[]} */ (Object.keys(total))) total[k] += r.stats[k];
    bad.push(...r.bad);
    if (count > CHUNK) log(`${done + r.stats.trees} trees, ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  }
  const secs = (Date.now() - t0) / 1000;
  log(
    `fuzzed ${total.trees} random trees from seed ${seed} in ${secs.toFixed(1)} s: ${total.nodes} elements, ` +
      `${total.modelTexts} texts to the fake model, ${total.failures} reported failures, ${total.observed} with content added later`,
  );
  for (const b of bad) log(`seed ${b.seed}:\n  ${b.problems.join('\n  ')}\n  html: ${b.html}`);
  assert.equal(bad.length, 0, `${bad.length} random trees broke an invariant (first seed ${bad[0]?.seed})`);
  assert.equal(total.trees, count);
  await regressions({ page, baseUrl, assert, log });
}

/**
 * The bugs the fuzzer found, each as its smallest case, with a dictionary model.
 * @param {{ page: import('playwright-core').Page, baseUrl: string, assert: typeof import('node:assert/strict'), log: (...a: unknown[]) => void }} ctx
 */
async function regressions({ page, baseUrl, assert, log }) {
  /** id -> [source markup, expected translation] */
  const cases = {
    // A comment inside a sentence was dropped from the translation (framework markers live there).
    comment: ['The dog<!-- a --> <b>runs</b>.', 'Le chien<!-- a --> <b>court</b>.'],
    // …also in a run without elements.
    commentOnly: ['<!-- c -->A dog runs.', '<!-- c -->Un chien court.'],
    // The title of a <kbd>/<code> inside a sentence stayed untranslated (a <pre title> outside one was translated).
    kbdTitle: ['Press <kbd title="the enter key">Enter</kbd> now.', 'Appuyez sur <kbd title="la touche entrée">Enter</kbd> maintenant.'],
    // The title of a link inside a footnote mark went to the original node (kept for restore()), not to the copy shown.
    noteTitle: ['The word<sup><a href="#n1" title="See the note">1</a></sup> has a note.', 'Le mot<sup><a href="#n1" title="Voir la note">1</a></sup> a une note.'],
    // An untranslatable number found earlier in the sentence jumped before the element it followed.
    repeatedNumber: ['He ran 20 km <b>fast</b><sup class="notranslate">20</sup> today.', 'Il a couru 20 km <b>vite</b><sup class="notranslate">20</sup> aujourd’hui.'],
    // A symbol the translation has only before the element preceding it jumped before that element.
    symbolOrder: ['A dog - <b>the big one</b> runs<span>-</span>', 'Un chien - <b>le grand</b> court<span>-</span>'],
    // Two untranslatable spans matched only by their numbers changed places.
    similarOrder: [
      'Call <span translate="no">Ann 555 0101</span> or <span translate="no">Bob 555 0101</span> today.',
      'Appelez le 555 0101 ou <span translate="no">Ann 555 0101</span><span translate="no">Bob 555 0101</span> aujourd’hui.',
    ],
  };
  /** @type {Record<string, string>} */
  const dict = {
    'The dog runs.': 'Le chien court.',
    runs: 'court',
    'A dog runs.': 'Un chien court.',
    'Press Enter now.': 'Appuyez sur Enter maintenant.',
    'the enter key': 'la touche entrée',
    'The word has a note.': 'Le mot a une note.',
    'See the note': 'Voir la note',
    'He ran 20 km fast20 today.': 'Il a couru 20 km vite20 aujourd’hui.',
    fast: 'vite',
    'A dog - the big one runs-': 'Un chien - le grand court',
    'the big one': 'le grand',
    'Call Ann 555 0101 or Bob 555 0101 today.': 'Appelez le 555 0101 ou Ann 555 0101 aujourd’hui.',
  };
  await page.goto(`${baseUrl}/test-pages/blank.html`);
  const r = await page.evaluate(
    async ({ cases, dict }) => {
      const { PageTranslator } = await import('/page-translator.js');
      const root = document.createElement('main');
      root.innerHTML = Object.entries(cases)
        .map(([id, [html]]) => `<p id="${id}">${html}</p>`)
        .join('');
      document.body.replaceChildren(root);
      const before = root.innerHTML;
      const noteLink = root.querySelector('#noteTitle a');
      const pt = new PageTranslator(root, { translate: async (texts) => texts.map((t) => dict[t] ?? `[fr] ${t}`), observe: false });
      await pt.translate();
      const after = Object.fromEntries(Object.keys(cases).map((id) => [id, root.querySelector(`#${id}`)?.innerHTML]));
      const originalNoteTitle = noteLink?.getAttribute('title');
      pt.restore();
      return { after, originalNoteTitle, restored: root.innerHTML === before };
    },
    { cases, dict },
  );
  log('regression cases:', r.after);
  for (const [id, [, want]] of Object.entries(cases)) assert.equal(r.after[id], want, id);
  assert.equal(r.originalNoteTitle, 'See the note', 'the original node, kept for restore(), is not modified');
  assert.equal(r.restored, true);
}
