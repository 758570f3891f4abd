// Fuzzing the page translator (www/page-translator.js) with random DOM trees (issue 18), in the
// page; tests/browser/tests/33-page-fuzz.mjs drives it, scripts/fuzz_page.sh runs it at scale.
//
// A seeded generator builds trees with DOM calls (so also shapes the HTML parser would repair: a
// block inside <b>, a <p> in a <p>): nested blocks and inline elements with attributes; text with
// words (accented too), numbers, URLs, e-mail addresses, emoji, punctuation at element edges,
// soft hyphens, non-breaking spaces, whitespace-only nodes; footnote <sup>s, <wbr>, <br>, <img alt>,
// <code>, <kbd>, <pre>, <script>, <style>, <textarea>, translate="no", class="notranslate",
// comments, empty elements, deep chains. Each tree is translated by a dictionary-like model that
// writes every letter as a Greek one (so a text node still holding a Latin letter was not
// translated) and now and then drops a word, answers nothing, adds spaces before punctuation
// or fails on a text. Invariants, per tree:
//  1. translate() (and settled(), for content added later) never throws or rejects;
//  2. every element survives with its tag and exact attributes (the readable ones translated,
//     or as they were), in the same order among its element and comment siblings (<wbr> excepted:
//     a translated run drops it by design);
//  3. <code>, <kbd>, <pre>, <script>, <style>, <textarea> keep their content, translate="no" and
//     .notranslate elements their whole markup, comments their text: byte for byte;
//  4. no text node and no readable attribute with letters is left untranslated outside such
//     content, unless the translator lists it in `failures`;
//  5. restore() gives back the original markup byte for byte;
//  6. an element whose text has letters comes out with letters (its window of the sentence, its
//     own translation, or its text as it is when the model gave it none: listed in `failures`).

import { PageTranslator } from '/page-translator.js';

const READABLE = ['title', 'alt', 'placeholder', 'aria-label'];
/** Elements whose content stays as it is (page-translator.js's SKIP, those generated here). */
const VERBATIM = new Set(['CODE', 'KBD', 'PRE', 'SCRIPT', 'STYLE', 'TEXTAREA']);
const GREEK = 'αβγδεζηθικλμνξοπρστυφχψω';

/** @param {number} seed */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** @param {string} s */
function hash(s) {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** Every letter as a Greek one; the rest (digits, punctuation, emoji, spaces) kept. @param {string} s */
const greek = (s) => Array.from(s, (c) => (/\p{L}/u.test(c) ? GREEK[(c.codePointAt(0) ?? 0) % GREEK.length] : c)).join('');

/**
 * The fake model's answer for one text: what it does is fixed by the text (a cache sees the same).
 * @param {string} t
 * @returns {string}
 */
export function fakeTranslation(t) {
  const h = hash(t) % 100;
  const g = greek(t);
  if (h < 6) return ''; // says nothing
  if (h < 16) {
    // drops a word
    const w = g.split(' ');
    return w.length > 2 ? [...w.slice(0, 1), ...w.slice(2)].join(' ') : g;
  }
  if (h < 24) return g.replace(/\s*([!?;:])/g, ' $1'); // French spacing
  if (h < 28) return `  ${g}  `;
  return g;
}

/** Does the fake model fail on this text (alone or in a batch)? @param {string} t */
const fails = (t) => hash(`fail:${t}`) % 61 === 0;

/** @param {string[]} texts */
async function fakeModel(texts) {
  if (texts.some(fails)) throw new Error(`the fake model fails on ${JSON.stringify(texts.find(fails))}`);
  return texts.map(fakeTranslation);
}

// ---- the generator ---------------------------------------------------------------------------

const WORDS = ['the', 'a', 'man', 'woman', 'dog', 'is', 'running', 'in', 'park', 'red', 'dress', 'children', 'play', 'football',
  'on', 'beach', 'supermarket', 'open', 'today', 'note', 'see', 'page', 'and', 'with', 'two', 'girls', 'street', 'market'];
const ODD_WORDS = ['café', 'naïve', 'Zürich', 'façade', 'Ångström', 'straße', 'déjà', 'Москва', '東京', 'ǅemal', 'ﬁne', 'İstanbul'];
const TOKENS = {
  number: ['42', '3.14', '1,000', '2024', '6-3', '10%', '½', '#1', '+33 1 23 45 67 89'],
  url: ['https://example.org/path?q=1&x=2', 'www.example.com', 'http://a.b/c_d', 'ann@example.org'],
  emoji: ['🎉', '👍🏽', '🇫🇷', '❤️', '👨‍👩‍👧', '★★★'],
  punct: [',', '.', '!', '?', ';', ':', '(', ')', '"', '—', '…', '«', '»', '·', '|', '/', '-', "'"],
  space: [' ', '  ', '\n', '\t', '\u00A0', ' \n  '],
};
const BLOCKS = ['div', 'p', 'section', 'article', 'blockquote', 'h1', 'h2', 'h3', 'header', 'footer', 'nav', 'aside', 'figure', 'figcaption', 'dd', 'dt'];
const INLINES = ['b', 'i', 'em', 'strong', 'a', 'span', 'small', 'mark', 'abbr', 'q', 'u', 's', 'label', 'time', 'cite', 'sub', 'sup', 'font'];

/**
 * One random tree under a fresh <div>.
 * @param {number} seed
 */
export function randomTree(seed) {
  const r = rng(seed);
  const pick = (/** @type {readonly any[]} */ a) => a[Math.floor(r() * a.length)];
  const chance = (/** @type {number} */ p) => r() < p;
  let budget = 20 + Math.floor(r() * 140);
  const deepChance = 0.03;

  const word = () => {
    let w = chance(0.1) ? pick(ODD_WORDS) : pick(WORDS);
    if (chance(0.15)) w = w[0].toUpperCase() + w.slice(1);
    if (chance(0.06) && w.length > 3) w = `${w.slice(0, 2)}\u00AD${w.slice(2)}`;
    return w;
  };
  /** Some text: words mostly, the odd token, spaces or none at the edges. */
  const text = () => {
    if (chance(0.08)) return pick(TOKENS.space); // whitespace only
    const n = 1 + Math.floor(r() * (chance(0.2) ? 14 : 5));
    let s = chance(0.3) ? pick(TOKENS.space) : '';
    for (let i = 0; i < n; i++) {
      const kind = r();
      const tok = kind < 0.7 ? word() : kind < 0.78 ? pick(TOKENS.number) : kind < 0.83 ? pick(TOKENS.url) : kind < 0.88 ? pick(TOKENS.emoji) : pick(TOKENS.punct);
      s += tok + (i < n - 1 ? (chance(0.85) ? ' ' : chance(0.5) ? pick(TOKENS.space) : '') : '');
    }
    if (chance(0.3)) s += pick(TOKENS.punct);
    if (chance(0.3)) s += pick(TOKENS.space);
    return s;
  };
  /** Random attributes, readable ones among them. @param {Element} el */
  const attributes = (el) => {
    if (chance(0.25)) el.setAttribute('id', `n${Math.floor(r() * 1e6)}`);
    if (chance(0.2)) el.setAttribute('class', pick(['x', 'note lead', 'notranslate', 'a-b', '']));
    if (el.tagName === 'A' || chance(0.03)) el.setAttribute('href', pick(['#fn1', '/a?b=1&c="2"', 'https://example.org/', '']));
    if (chance(0.12)) el.setAttribute('title', chance(0.8) ? text() : pick(TOKENS.number));
    if (chance(0.05)) el.setAttribute('aria-label', text());
    if (chance(0.05)) el.setAttribute('translate', pick(['no', 'yes', 'NO']));
    if (chance(0.05)) el.setAttribute('data-x', `${word()} <b>&amp; "q"`);
    if (chance(0.04)) el.setAttribute('style', 'color: red');
    if (chance(0.03)) el.setAttribute('lang', 'en');
  };
  /** @param {string} tag */
  const element = (tag) => {
    const el = document.createElement(tag);
    attributes(el);
    budget--;
    return el;
  };
  /** Content that flows in a sentence. @param {Node} parent @param {number} depth */
  const inline = (parent, depth) => {
    const n = 1 + Math.floor(r() * 5);
    for (let i = 0; i < n && budget > 0; i++) {
      const k = r();
      if (k < 0.45 || depth > 6) {
        parent.appendChild(document.createTextNode(text()));
        budget--;
      } else if (k < 0.7) {
        const el = element(pick(INLINES));
        if (!chance(0.08)) inline(el, depth + 1); // else empty
        parent.appendChild(el);
      } else if (k < 0.76) {
        // a footnote mark glued to the word before it
        const sup = element('sup');
        const mark = String(1 + Math.floor(r() * 30));
        if (chance(0.5)) {
          const a = element('a');
          a.setAttribute('href', `#fn${mark}`);
          a.textContent = mark;
          sup.appendChild(a);
        } else sup.textContent = chance(0.8) ? mark : '*';
        parent.appendChild(sup);
      } else if (k < 0.8) {
        parent.appendChild(element('wbr'));
      } else if (k < 0.84) {
        const el = element(pick(['code', 'kbd']));
        el.textContent = chance(0.5) ? `x = f(${word()}, "${word()}")` : text();
        parent.appendChild(el);
      } else if (k < 0.87) {
        parent.appendChild(document.createComment(chance(0.5) ? ` ${word()} ${word()} ` : ''));
        budget--;
      } else if (k < 0.9) {
        parent.appendChild(element('br'));
      } else if (k < 0.92) {
        const img = element('img');
        img.setAttribute('src', 'data:image/gif;base64,R0lGODlhAQABAAAAACw=');
        if (chance(0.7)) img.setAttribute('alt', text());
        parent.appendChild(img);
      } else if (k < 0.95) {
        const el = element(pick(INLINES));
        el.setAttribute('translate', 'no');
        inline(el, depth + 1);
        parent.appendChild(el);
      } else if (k < 0.97) {
        // a block inside an inline element
        const el = element(pick(INLINES));
        block(el, depth + 1);
        parent.appendChild(el);
      } else {
        // a word cut by markup: super<b>market</b>
        parent.appendChild(document.createTextNode(` ${word()}`));
        const el = element(pick(['b', 'span', 'a']));
        el.textContent = word();
        parent.appendChild(el);
        parent.appendChild(document.createTextNode(`${word()} `));
        budget -= 2;
      }
    }
  };
  /** A block and what it holds. @param {Node} parent @param {number} depth */
  const block = (parent, depth) => {
    if (budget <= 0) return;
    const k = r();
    if (depth < 40 && chance(deepChance)) {
      // a deep chain of wrappers
      let at = parent;
      const n = 10 + Math.floor(r() * 60);
      for (let i = 0; i < n; i++) {
        const el = element(chance(0.5) ? 'div' : pick(INLINES));
        at.appendChild(el);
        at = el;
      }
      inline(at, 0);
      return;
    }
    if (k < 0.08) {
      const el = element(pick(['script', 'style']));
      if (el.tagName === 'SCRIPT') el.setAttribute('type', 'text/x-not-run');
      el.textContent = el.tagName === 'SCRIPT' ? `var s = "${text()}"; if (a < b && c) go();` : `p::after { content: "${word()}"; }`;
      parent.appendChild(el);
      return;
    }
    if (k < 0.13) {
      const el = element(pick(['pre', 'textarea']));
      el.textContent = `${text()}\n  ${text()}`;
      parent.appendChild(el);
      return;
    }
    if (k < 0.2) {
      const list = element(pick(['ul', 'ol', 'dl']));
      const n = 1 + Math.floor(r() * 4);
      for (let i = 0; i < n && budget > 0; i++) {
        const li = element(list.tagName === 'DL' ? pick(['dt', 'dd']) : 'li');
        if (chance(0.2)) block(li, depth + 1);
        else inline(li, depth + 1);
        list.appendChild(li);
        if (chance(0.3)) list.appendChild(document.createTextNode(pick(TOKENS.space)));
      }
      parent.appendChild(list);
      return;
    }
    if (k < 0.24) {
      const table = element('table');
      const body = element('tbody');
      for (let i = 0; i < 2 && budget > 0; i++) {
        const tr = element('tr');
        for (let j = 0; j < 2; j++) {
          const td = element(pick(['td', 'th']));
          inline(td, depth + 1);
          tr.appendChild(td);
        }
        body.appendChild(tr);
      }
      table.appendChild(body);
      parent.appendChild(table);
      return;
    }
    if (k < 0.27) {
      // separated links: Home · About | Contact
      const nav = element('nav');
      const n = 2 + Math.floor(r() * 3);
      for (let i = 0; i < n; i++) {
        if (i) nav.appendChild(document.createTextNode(` ${pick(['·', '|', '•', '/'])} `));
        const a = element('a');
        a.textContent = chance(0.8) ? `${word()}${chance(0.4) ? ` ${word()}` : ''}` : pick(TOKENS.number);
        nav.appendChild(a);
      }
      parent.appendChild(nav);
      return;
    }
    if (k < 0.3) {
      parent.appendChild(document.createComment(` ${text()} `));
      budget--;
      return;
    }
    const el = element(pick(BLOCKS));
    if (chance(0.08)) el.setAttribute('translate', 'no');
    const parts = 1 + Math.floor(r() * 3);
    for (let i = 0; i < parts && budget > 0; i++) {
      if (chance(0.35) && depth < 8) block(el, depth + 1);
      else inline(el, depth + 1);
    }
    parent.appendChild(el);
  };

  const root = document.createElement('div');
  while (budget > 0) {
    if (chance(0.2)) {
      root.appendChild(document.createTextNode(chance(0.5) ? text() : pick(TOKENS.space)));
      budget--;
    } else block(root, 0);
  }
  return root;
}

// ---- the invariants --------------------------------------------------------------------------

/** @param {Node} n */
const isEl = (n) => n.nodeType === Node.ELEMENT_NODE;
/** @param {Element} el */
const noTranslate = (el) => el.getAttribute('translate')?.toLowerCase() === 'no' || el.classList.contains('notranslate');
/** Children compared in order: elements and comments, not <wbr>. @param {Node} n */
const kept = (n) => [...n.childNodes].filter((c) => (isEl(c) && c.nodeName !== 'WBR') || c.nodeType === Node.COMMENT_NODE);
/** Text as the translator sends it. @param {string} s */
const squash = (s) => s.replace(/\u00AD/g, '').replace(/\s+/g, ' ').trim();

/**
 * Walk the original (a copy made before) and the translated tree side by side.
 * @param {Node} o @param {Node} n @param {string} path @param {string[]} problems
 */
function compare(o, n, path, problems) {
  if (o.nodeType === Node.COMMENT_NODE || n.nodeType === Node.COMMENT_NODE) {
    if (o.nodeType !== n.nodeType || /** @type {Comment} */ (o).data !== /** @type {Comment} */ (n).data) {
      problems.push(`${path}: comment ${JSON.stringify(/** @type {any} */ (o).data)} became ${n.nodeName} ${JSON.stringify(n.textContent)}`);
    }
    return;
  }
  const oe = /** @type {Element} */ (o);
  const ne = /** @type {Element} */ (n);
  if (oe.tagName !== ne.tagName) {
    problems.push(`${path}: <${oe.tagName}> became <${ne.tagName}>`);
    return;
  }
  const oa = [...oe.attributes];
  const na = [...ne.attributes];
  if (oa.map((a) => a.name).join() !== na.map((a) => a.name).join()) {
    problems.push(`${path}: attributes ${oa.map((a) => a.name)} became ${na.map((a) => a.name)}`);
  } else {
    oa.forEach((a, i) => {
      const v = na[i].value;
      if (v === a.value) return;
      const translated = READABLE.includes(a.name) && v === fakeTranslation(a.value.trim()).trim();
      if (!translated) problems.push(`${path}: ${a.name}=${JSON.stringify(a.value)} became ${JSON.stringify(v)}`);
    });
  }
  // An element with words of its own keeps words: one the translation left no words at is
  // given its own translation rather than emptied.
  if (/\p{L}/u.test(oe.textContent ?? '') && !/\p{L}/u.test(ne.textContent ?? '')) {
    problems.push(`${path}: <${oe.tagName.toLowerCase()}> with ${JSON.stringify(squash(oe.textContent ?? ''))} came out without a word`);
  }
  if (noTranslate(oe)) {
    if (oe.outerHTML !== ne.outerHTML) problems.push(`${path}: translate="no" content changed: ${oe.outerHTML} -> ${ne.outerHTML}`);
    return;
  }
  if (VERBATIM.has(oe.tagName)) {
    if (oe.innerHTML !== ne.innerHTML) problems.push(`${path}: <${oe.tagName}> content changed: ${oe.innerHTML} -> ${ne.innerHTML}`);
    return;
  }
  const oc = kept(oe);
  const nc = kept(ne);
  const name = (/** @type {Node} */ c) => (isEl(c) ? c.nodeName.toLowerCase() : '#comment');
  if (oc.length !== nc.length || oc.some((c, i) => name(c) !== name(nc[i]))) {
    problems.push(`${path}: children [${oc.map(name)}] became [${nc.map(name)}]`);
    return;
  }
  oc.forEach((c, i) => compare(c, nc[i], `${path}>${name(c)}[${i}]`, problems));
}

/**
 * Text nodes and readable attributes with Latin (source) letters outside verbatim content.
 * @param {Element} root @param {(text: string) => boolean} failed @param {string[]} problems
 */
function untranslated(root, failed, problems) {
  /** @param {Node} node @param {boolean} inVerbatim */
  const walk = (node, inVerbatim) => {
    for (const c of node.childNodes) {
      if (c.nodeType === Node.TEXT_NODE) {
        const t = squash(c.nodeValue ?? '');
        if (!inVerbatim && /[^\P{L}α-ω]/u.test(t) && !failed(t)) problems.push(`text ${JSON.stringify(t)} in <${node.nodeName.toLowerCase()}> left untranslated`);
        continue;
      }
      if (!isEl(c)) continue;
      const el = /** @type {Element} */ (c);
      if (noTranslate(el)) continue;
      if (!inVerbatim) {
        for (const a of READABLE) {
          const v = el.getAttribute(a);
          if (v && /[^\P{L}α-ω]/u.test(v) && !failed(squash(v))) problems.push(`${a}=${JSON.stringify(v)} on <${el.nodeName.toLowerCase()}> left untranslated`);
        }
      }
      walk(el, inVerbatim || VERBATIM.has(el.tagName));
    }
  };
  walk(root, false);
}

/**
 * Run `count` trees from `seed` on; stop collecting after `maxProblems` failing trees.
 * @param {{ seed: number, count: number, maxProblems?: number }} o
 */
export async function fuzz({ seed, count, maxProblems = 5 }) {
  /** @type {{ seed: number, problems: string[], html: string }[]} */
  const bad = [];
  const stats = { trees: 0, nodes: 0, failures: 0, observed: 0, modelTexts: 0 };
  const host = document.createElement('main');
  document.body.appendChild(host);
  for (let i = 0; i < count && bad.length < maxProblems; i++) {
    const s = seed + i;
    const root = randomTree(s);
    host.replaceChildren(root);
    const before = root.innerHTML;
    const original = /** @type {Element} */ (root.cloneNode(true));
    stats.trees++;
    stats.nodes += root.getElementsByTagName('*').length;
    /** @type {string[]} */
    const problems = [];
    const observe = s % 4 === 0;
    const pt = new PageTranslator(root, { translate: fakeModel, observe, batchSize: 1 + (s % 7) });
    try {
      await pt.translate();
      if (observe) {
        // Content added later: a fresh tree appended, translated by the observer.
        const added = randomTree(s + 1e9);
        original.appendChild(added.cloneNode(true));
        const addedHtml = added.outerHTML;
        root.appendChild(added);
        await new Promise((r) => setTimeout(r, 0));
        await pt.settled();
        stats.observed++;
        compareAll();
        pt.restore();
        if (root.innerHTML !== before + addedHtml) problems.push('restore() did not give the original back (with content added later)');
      } else {
        compareAll();
        pt.restore();
        if (root.innerHTML !== before) problems.push('restore() did not give the original back');
      }
    } catch (e) {
      problems.push(`threw: ${/** @type {any} */ (e)?.stack ?? e}`);
    }
    stats.failures += pt.failures.length;
    stats.modelTexts += pt.modelCalls;
    if (problems.length) bad.push({ seed: s, problems: problems.slice(0, 8), html: before.slice(0, 3000) });

    function compareAll() {
      const failedTexts = pt.failures.map((f) => squash(f.text));
      const failed = (/** @type {string} */ t) => failedTexts.some((f) => f.includes(t));
      compare(original, root, 'root', problems);
      untranslated(root, failed, problems);
    }
  }
  host.remove();
  return { bad, stats };
}
