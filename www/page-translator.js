// Page translation: translate the text of a DOM subtree in place, keeping its markup.
//
// The unit of translation is a run: consecutive text and inline elements inside one block (a
// paragraph, a list item, a heading). A run is translated as a whole sentence, as a reader would
// read it, and its inline elements (<b>, <a href>, <code> …) are projected onto the output (the
// Bergamot design): each element's own text is translated on its own (cached), then found in the
// run's translation — exactly when it occurs there, else the word window most similar to it, else
// the window at the same relative position. The element is re-created around that window, with
// its attributes (one the translation left no words shows its own translation, or its own text
// when the model gave it none: no element's words vanish); elements that are not translated
// (<code>, translate="no") keep their content verbatim. Model output only ever goes into the page
// as text (text nodes, attribute values), never parsed as HTML.
//
// The original nodes are never modified: they are swapped out and kept, so restore() puts the
// page back exactly (innerHTML byte-identical). Attributes people read (title, alt, placeholder,
// aria-label) are translated too. Visible runs go first; identical texts are translated once;
// content added later is picked up by a MutationObserver.
//
// The DOM work (the walk that finds the runs, the swaps that apply them) is cut into slices of
// bounded work with a yield to the event loop between them, so a large page never holds the main
// thread for long, even when every text is already cached and no model reply comes in between.

/** Elements whose content is never translated. */
const SKIP = new Set([
  'SCRIPT', 'STYLE', 'NOSCRIPT', 'TEMPLATE', 'CODE', 'PRE', 'KBD', 'SAMP', 'VAR', 'TEXTAREA',
  'SVG', 'MATH', 'IFRAME', 'OBJECT', 'CANVAS', 'VIDEO', 'AUDIO', 'SELECT', 'INPUT',
]);
/** Elements that flow inside a sentence. */
const INLINE = new Set([
  'A', 'ABBR', 'B', 'BDI', 'BDO', 'CITE', 'CODE', 'DATA', 'DFN', 'EM', 'I', 'KBD', 'MARK', 'Q',
  'S', 'SAMP', 'SMALL', 'SPAN', 'STRONG', 'SUB', 'SUP', 'TIME', 'U', 'VAR', 'FONT', 'LABEL', 'DEL', 'INS',
  'WBR',
]);
/** A text node of list separators only ("Home · About | Contact"): the items are separate texts. */
const SEPARATORS = /^\s*[·|•‧∙⋅/]+\s*$/u;
/** Attributes a reader sees or hears. */
const DEFAULT_ATTRIBUTES = ['title', 'alt', 'placeholder', 'aria-label'];
/** The most work (nodes visited or applied) done between two yields to the event loop… */
const SLICE_WORK = 200;
/** …and the most milliseconds (a slow device gets there first). */
const SLICE_MS = 8;

/** @type {(() => void)[]} */
const waiting = [];
/** @type {MessageChannel | null} */
let channel = null;

/**
 * Let the event loop run (input, rendering, the page's own tasks), then continue. A posted message
 * rather than setTimeout(0), which nested calls clamp to 4 ms each.
 * @returns {Promise<void>}
 */
function nextTask() {
  if (typeof MessageChannel === 'undefined') return new Promise((resolve) => setTimeout(resolve, 0));
  if (!channel) {
    channel = new MessageChannel();
    channel.port1.onmessage = () => waiting.shift()?.();
  }
  return new Promise((resolve) => {
    waiting.push(resolve);
    /** @type {MessageChannel} */ (channel).port2.postMessage(null);
  });
}

/** Counts the DOM work of a translator and yields to the event loop when a slice is full. */
class Slicer {
  constructor() {
    /** Yields to the event loop so far. */
    this.yields = 0;
    /** The most work units any slice held. */
    this.maxWork = 0;
    /** @private */
    this.work = 0;
    /** @private */
    this.start = 0;
  }

  /**
   * Call before `units` of work: yields first when they would overfill the current slice. (A
   * single item larger than a slice gets a slice of its own.)
   * @param {number} units
   */
  async spend(units) {
    const now = performance.now();
    if (this.work === 0) this.start = now;
    else if (this.work + units > SLICE_WORK || now - this.start >= SLICE_MS) {
      this.maxWork = Math.max(this.maxWork, this.work);
      this.yields++;
      await nextTask();
      this.work = 0;
      this.start = performance.now();
    }
    this.work += units;
    this.maxWork = Math.max(this.maxWork, this.work);
  }
}

/**
 * @typedef {{
 *   translate: (texts: string[]) => Promise<string[]>,
 *   attributes?: string[],
 *   observe?: boolean,
 *   visibleFirst?: boolean,
 *   batchSize?: number,
 *   onProgress?: (p: { done: number, total: number }) => void,
 * }} PageTranslatorOptions
 *
 * @typedef {{ kind: 'text', text: string } | { kind: 'el', el: Element, verbatim: boolean, items: Item[], role?: ElementRole } | { kind: 'comment', node: Comment }} Item
 *   comment: kept (never sent to the model), after the word at the same share of words.
 * @typedef {'marker' | 'symbol' | 'part'} ElementRole
 *   marker: a footnote mark (<sup>/<sub> without letters): not sent to the model, put back after
 *   the word it followed; symbol: an element whose text is only digits or symbols: kept as is,
 *   where the translation has the same text, else at the same relative position; part: an element
 *   covering part of a word (a drop cap, a link on a syllable): kept on the same part of the
 *   translated word, never translated on its own.
 * @typedef {{ parent: Node, nodes: Node[], items: Item[], source: string, lead: string, trail: string, weight: number, seen: string }} Run
 *   weight: the items in the run, a measure of the DOM work its swap takes; seen: its nodes'
 *   text when it was collected (a run the page changed since is not swapped).
 */

/** Collapse whitespace as the browser renders it. @param {string} s */
const squash = (s) => s.replace(/\u00AD/g, '').replace(/\s+/g, ' '); // soft hyphens are not text
/** @param {string} s */
const startsWithLetter = (s) => /^\p{L}/u.test(s);
/** @param {string} s */
const endsWithLetter = (s) => /\p{L}$/u.test(s);
/** @param {string} s */
const hasLetters = (s) => /\p{L}/u.test(s);

/** Is this element (or an ancestor up to root) marked not to be translated? @param {Element} el */
function noTranslate(el) {
  if (SKIP.has(el.tagName.toUpperCase())) return true;
  if (el.classList?.contains('notranslate')) return true;
  const t = el.getAttribute('translate');
  return t !== null && t.toLowerCase() === 'no';
}

/** @param {Node} n */
function isInlineSubtree(n) {
  if (n.nodeType === Node.TEXT_NODE) return true;
  if (n.nodeType !== Node.ELEMENT_NODE) return n.nodeType === Node.COMMENT_NODE;
  const el = /** @type {Element} */ (n);
  if (!INLINE.has(el.tagName.toUpperCase())) return false;
  for (const c of el.childNodes) if (!isInlineSubtree(c)) return false;
  return true;
}

/** Plain text of items as the model reads it (whitespace as rendered; footnote marks left out). @param {Item[]} items @returns {string} */
function itemsText(items) {
  return items.map((it) => (it.kind === 'text' ? it.text : it.kind === 'comment' || it.role === 'marker' ? '' : itemsText(it.items))).join('');
}

/**
 * Sets each element item's role (see ElementRole) from its text and its neighbours'. A part is one
 * word at most (an element of several words glued to a neighbour is a phrase of its own), and the
 * elements with letters inside a part are parts too (pieces of the same word).
 * @param {Item[]} items @param {boolean} [inPart]
 */
function classify(items, inPart = false) {
  items.forEach((it, i) => {
    if (it.kind !== 'el') return;
    const src = itemsText(it.items);
    if (!hasLetters(src)) {
      if (!it.verbatim) it.role = /^SU[PB]$/i.test(it.el.tagName) && src.trim() ? 'marker' : 'symbol';
    } else if (!it.verbatim) {
      const before = itemsText(items.slice(0, i));
      const after = itemsText(items.slice(i + 1));
      const glued = (endsWithLetter(before) && startsWithLetter(src)) || (endsWithLetter(src) && startsWithLetter(after));
      if (inPart || (glued && !/\s/.test(src.trim()))) it.role = 'part';
    }
    classify(it.items, it.role === 'part');
  });
}

/** @param {Node} n @returns {Item | null} */
function toItem(n) {
  if (n.nodeType === Node.TEXT_NODE) return { kind: 'text', text: squash(n.nodeValue ?? '') };
  if (n.nodeType === Node.COMMENT_NODE) return { kind: 'comment', node: /** @type {Comment} */ (n) };
  if (n.nodeType !== Node.ELEMENT_NODE) return null;
  const el = /** @type {Element} */ (n);
  // A line-break opportunity inside a word: the word is one word to the model (and the
  // translated word has other break points).
  if (el.tagName.toUpperCase() === 'WBR') return null;
  if (noTranslate(el)) return { kind: 'el', el, verbatim: true, items: [{ kind: 'text', text: squash(el.textContent ?? '') }] };
  return { kind: 'el', el, verbatim: false, items: /** @type {Item[]} */ ([...el.childNodes].map(toItem).filter(Boolean)) };
}

// ---- projection of inline elements onto the translated text ---------------------------------

/** @param {string} w */
const normWord = (w) => w.toLowerCase().replace(/^[^\p{L}\p{N}]+|[^\p{L}\p{N}]+$/gu, '');

/**
 * Word spans of s: [start, end) character offsets.
 * @param {string} s
 * @returns {[number, number][]}
 */
function words(s) {
  /** @type {[number, number][]} */
  const out = [];
  for (const m of s.matchAll(/\S+/g)) out.push([m.index ?? 0, (m.index ?? 0) + m[0].length]);
  return out;
}

/** Dice similarity of two word lists (as multisets). @param {string[]} a @param {string[]} b */
function dice(a, b) {
  if (!a.length || !b.length) return 0;
  /** @type {Map<string, number>} */
  const count = new Map();
  for (const w of a) count.set(w, (count.get(w) ?? 0) + 1);
  let common = 0;
  for (const w of b) {
    const c = count.get(w) ?? 0;
    if (c > 0) {
      common++;
      count.set(w, c - 1);
    }
  }
  return (2 * common) / (a.length + b.length);
}

/**
 * @typedef {{ span: [number, number], exact: boolean }} Found
 */

/**
 * Where in `text[lo, hi)` is `piece`? An exact (then case-insensitive) occurrence, else the most
 * similar window of words (of similar length, nearest the expected position on ties); null when
 * nothing resembles it. The span found overlaps none in `taken`, and holds letters when the piece
 * does (numbers alike are no evidence that a window is an element's words).
 * @param {string} text
 * @param {number} lo
 * @param {number} hi
 * @param {string} piece      the element's own translation (or verbatim text)
 * @param {number} center     where the element sat in its source, 0..1
 * @param {[number, number][]} taken
 * @param {number} [from]      an occurrence from here on is preferred (after the elements before it)
 * @returns {Found | null}
 */
function similar(text, lo, hi, piece, center, taken, from = lo) {
  const free = (/** @type {number} */ s, /** @type {number} */ e) => taken.every(([a, b]) => e <= a || s >= b);
  const p = piece.trim();
  const found = inOrder(text, lo, hi, p, taken, from) ?? inOrder(text.toLowerCase(), lo, hi, p.toLowerCase(), taken, from);
  // Found only before the element placed before it: the model reordered the words, if it is a
  // word; digits or punctuation occur anywhere (weak evidence, placed in order instead).
  if (found) return { span: found, exact: found[0] >= from || hasLetters(p) };
  const spans = words(text.slice(lo, hi)).map(([s, e]) => /** @type {[number, number]} */ ([s + lo, e + lo]));
  const want = p.split(/\s+/).map(normWord).filter(Boolean);
  const n = Math.max(1, want.length);
  let best = /** @type {[number, number] | null} */ (null);
  let bestScore = 0;
  for (let i = 0; i < spans.length; i++) {
    for (let j = i; j < spans.length && j - i + 1 <= 2 * n + 1; j++) {
      const s = spans[i][0];
      const e = spans[j][1];
      if (!free(s, e) || (hasLetters(p) && !hasLetters(text.slice(s, e)))) continue;
      const got = spans.slice(i, j + 1).map(([a, b]) => normWord(text.slice(a, b)));
      const sim = dice(want, got) - 0.01 * Math.abs((s + e) / 2 / text.length - center);
      if (sim > bestScore + 1e-9) {
        bestScore = sim;
        best = [s, e];
      }
    }
  }
  return best && bestScore > 0.2 ? { span: best, exact: false } : null;
}

/**
 * The window of words at the same relative position as the element had in its source, as many
 * words as `piece` has, overlapping none in `taken`: the nearest one after it holding letters when
 * the piece does (an element with words is not given only numbers), else the nearest free one.
 * @param {string} text @param {number} lo @param {number} hi @param {string} piece @param {number} relStart
 * @param {[number, number][]} taken
 * @returns {[number, number]}
 */
function samePosition(text, lo, hi, piece, relStart, taken) {
  const free = (/** @type {number} */ s, /** @type {number} */ e) => taken.every(([a, b]) => e <= a || s >= b);
  const spans = words(text.slice(lo, hi)).map(([s, e]) => /** @type {[number, number]} */ ([s + lo, e + lo]));
  if (!spans.length) return [hi, hi];
  const k = Math.min(spans.length, Math.max(1, piece.trim().split(/\s+/).filter(Boolean).length));
  const start = Math.min(spans.length - k, Math.max(0, Math.round(relStart * spans.length)));
  for (const letters of hasLetters(piece) ? [true, false] : [false]) {
    let i = start;
    for (let tries = 0; tries < spans.length; tries++) {
      const s = spans[i][0];
      const e = spans[i + k - 1][1];
      if (free(s, e) && (!letters || hasLetters(text.slice(s, e)))) return [s, e];
      i = (i + 1) % (spans.length - k + 1);
    }
  }
  return [hi, hi];
}

/**
 * A free exact occurrence of `needle` in `text[lo, hi)`, the first from `from` on if there is one
 * (a text found several times goes after the elements placed before it), or null.
 * @param {string} text @param {number} lo @param {number} hi @param {string} needle @param {[number, number][]} taken @param {number} from
 * @returns {[number, number] | null}
 */
function inOrder(text, lo, hi, needle, taken, from) {
  return (from > lo ? exactly(text, from, hi, needle, taken) : null) ?? exactly(text, lo, hi, needle, taken);
}

/**
 * A free exact occurrence of `needle` in `text[lo, hi)`, or null.
 * @param {string} text @param {number} lo @param {number} hi @param {string} needle @param {[number, number][]} taken
 * @returns {[number, number] | null}
 */
function exactly(text, lo, hi, needle, taken) {
  if (!needle) return null;
  for (let i = text.indexOf(needle, lo); i >= 0 && i + needle.length <= hi; i = text.indexOf(needle, i + 1)) {
    if (taken.every(([a, b]) => i + needle.length <= a || i >= b)) return [i, i + needle.length];
  }
  return null;
}

/**
 * The point right after the letters of an output word, before its punctuation: where a footnote
 * mark (or a symbol the translation lacks) goes. The mark sat after word k of the n words of its
 * source `full` (at offset `at`); it goes after word round(k/n·m) of the m words of `text[lo, hi)`
 * — after the word's punctuation too when it followed punctuation in the source
 * ("large.<sup>[1]</sup>" stays after the full stop).
 * @param {string} text @param {number} lo @param {number} hi @param {string} full @param {number} at
 * @returns {[number, number]}
 */
function afterWord(text, lo, hi, full, at) {
  const k = words(full.slice(0, at)).length;
  const n = Math.max(1, words(full).length);
  const out = words(text.slice(lo, hi));
  if (!out.length || k === 0) return [lo, lo];
  const j = Math.min(out.length, Math.max(1, Math.round((k / n) * out.length)));
  const [s, e] = out[j - 1];
  const w = text.slice(lo + s, lo + e);
  const afterPunctuation = at > 0 && /[^\p{L}\p{N}\s]/u.test(full[at - 1]);
  const core = afterPunctuation ? w : w.replace(/[^\p{L}\p{N}]+$/u, '');
  const p = lo + s + (core.length || w.length);
  return [p, p];
}

/**
 * Where an element covering `full[s, e)` — part of one word of its source `full` — goes in the
 * translation `text[lo, hi)`: the same part (by share of letters) of the output word at the same
 * relative position (relative to `full[srcLo, srcHi)`, the source of `text[lo, hi)`); a prefix
 * stays a prefix and a suffix a suffix, and at least one letter is covered.
 * @param {string} text @param {number} lo @param {number} hi @param {string} full @param {number} s @param {number} e
 * @param {[number, number][]} taken @param {number} [srcLo] @param {number} [srcHi]
 * @returns {[number, number]}
 */
function partOfWord(text, lo, hi, full, s, e, taken, srcLo = 0, srcHi = full.length) {
  let ws = s;
  while (ws > 0 && /\p{L}|\p{N}/u.test(full[ws - 1])) ws--;
  let we = e;
  while (we < full.length && /\p{L}|\p{N}/u.test(full[we])) we++;
  const rel = Math.min(1, Math.max(0, ((ws + we) / 2 - srcLo) / Math.max(1, srcHi - srcLo)));
  const spans = words(text.slice(lo, hi))
    .map(([a, b]) => {
      const w = text.slice(lo + a, lo + b);
      const lead = /^[^\p{L}\p{N}]*/u.exec(w)?.[0].length ?? 0;
      const trail = /[^\p{L}\p{N}]*$/u.exec(w)?.[0].length ?? 0;
      return /** @type {[number, number]} */ ([lo + a + lead, lo + b - trail]);
    })
    .filter(([a, b]) => b > a && taken.every(([x, y]) => b <= x || a >= y));
  if (!spans.length) return [hi, hi];
  const target = lo + rel * (hi - lo);
  let [os, oe] = spans[0];
  for (const [a, b] of spans) if (Math.abs((a + b) / 2 - target) < Math.abs((os + oe) / 2 - target)) [os, oe] = [a, b];
  const n = we - ws;
  const len = oe - os;
  let ps = s === ws ? os : os + Math.round(((s - ws) / n) * len);
  let pe = e === we ? oe : os + Math.round(((e - ws) / n) * len);
  ps = Math.min(ps, oe - 1);
  pe = Math.max(pe, ps + 1);
  return [ps, pe];
}

/**
 * @typedef {{ item: Item & { kind: 'el' | 'comment' }, at: number, len: number, span: [number, number] | null }} Placement
 *   at, len: where the element's text sits in its level's source text.
 */

/**
 * Where the translation holds an element's text (see similar), or null: only elements with text
 * of their own to find; footnote marks, parts of words and comments go by position.
 * @param {Placement} p @param {string} text @param {number} lo @param {number} hi @param {number} total
 * @param {Map<string, string>} pieces @param {[number, number][]} taken
 * @param {number} from  where the element placed before it ends
 * @returns {Found | null}
 */
function anchored(p, text, lo, hi, total, pieces, taken, from) {
  const it = p.item;
  if (it.kind === 'comment' || it.role === 'marker' || it.role === 'part') return null;
  const src = itemsText(it.items);
  if (it.role === 'symbol') {
    const span = inOrder(text, lo, hi, src.trim(), taken, from);
    return span && { span, exact: span[0] >= from };
  }
  const piece = it.verbatim ? src : pieces.get(src.trim()) ?? src;
  return similar(text, lo, hi, piece, (p.at + p.len / 2) / total, taken, from);
}

/**
 * Is this element placed at a point between words rather than on words of the translation? A
 * footnote mark, a symbol, a comment, verbatim content the translation does not hold: none is made
 * of the translation's words, so none may take (and hide) any.
 * @param {Item} it
 */
function isPoint(it) {
  return it.kind === 'comment' || (it.kind === 'el' && (it.verbatim || it.role === 'marker' || it.role === 'symbol'));
}

/**
 * Where an element the translation does not visibly hold goes: after the word at the same share
 * of words (points, see isPoint), else on the same part of a word (parts) or the words at the same
 * relative position, both between the neighbours placed before and after it — `text[a, b)`, made
 * of `levelText[sa, sb)` — when words lie between them (a window found in the whole sentence and
 * then squeezed between the neighbours could come out empty).
 * @param {Placement} p @param {string} text @param {number} lo @param {number} hi @param {string} levelText
 * @param {Map<string, string>} pieces @param {[number, number][]} taken
 * @param {{ a: number, b: number, sa: number, sb: number }} between
 * @returns {[number, number]}
 */
function positioned(p, text, lo, hi, levelText, pieces, taken, between) {
  const it = p.item;
  if (isPoint(it) || it.kind !== 'el') return afterWord(text, lo, hi, levelText, p.at);
  const { a, b, sa, sb } = between.a < between.b && /\S/.test(text.slice(between.a, between.b)) ? between : { a: lo, b: hi, sa: 0, sb: levelText.length };
  if (it.role === 'part') return partOfWord(text, a, b, levelText, p.at, p.at + p.len, taken, sa, sb);
  const src = itemsText(it.items);
  const piece = pieces.get(src.trim()) ?? src;
  return samePosition(text, a, b, piece, (p.at - sa) / (sb - sa || 1), taken);
}

/**
 * Build the translated nodes for `items` over `text[lo, hi)`. Elements whose text the translation
 * holds are placed first, where it is (a model may reorder them); the others by position, kept
 * between their neighbours so placed, so they never change places with them.
 * @param {Item[]} items
 * @param {string} text
 * @param {number} lo
 * @param {number} hi
 * @param {Map<string, string>} pieces  element source text -> its own translation
 * @param {WeakSet<Node>} produced      every node made here is added (the observer ignores them)
 * @param {WeakMap<Element, Element>} clones  original inline element -> its re-created copy
 * @param {string[]} [asIs]  gets the texts of the elements shown as they are (see ownWords)
 * @returns {Node[]}
 */
function project(items, text, lo, hi, pieces, produced, clones, asIs = []) {
  const levelText = itemsText(items);
  const total = levelText.length || 1;
  /** @type {Placement[]} */
  const placements = [];
  let at = 0;
  for (const it of items) {
    const len = it.kind === 'text' ? it.text.length : it.kind === 'el' && it.role !== 'marker' ? itemsText(it.items).length : 0;
    if (it.kind !== 'text') placements.push({ item: it, at, len, span: null });
    at += len;
  }
  /** @type {[number, number][]} */
  let taken = [];
  /** @type {(Found | null)[]} */
  const found = [];
  let from = lo;
  for (const p of placements) {
    const f = anchored(p, text, lo, hi, total, pieces, taken, from);
    found.push(f);
    if (f) taken.push(f.span), (from = f.span[1]);
  }
  // A model may reorder words, but only an exact find of words is trusted to say so: another find
  // out of order with an element's before it is dropped (placed by position instead).
  found.forEach((f, i) => {
    if (!f) return;
    for (let j = 0; j < i; j++) {
      const g = found[j];
      if (!g || g.span[0] <= f.span[0]) continue;
      if (!f.exact) return void (found[i] = null);
      if (!g.exact) found[j] = null;
    }
  });
  placements.forEach((p, i) => (p.span = found[i]?.span ?? null));
  taken = placements.flatMap((p) => (p.span ? [p.span] : []));
  // Parts of words first (tied to one word), then elements with words, then the points: one placed
  // earlier could leave an element with words no room between it and a neighbour.
  const rest = placements.filter((p) => !p.span);
  const rank = (/** @type {Placement} */ p) => (isPoint(p.item) ? 2 : p.item.kind === 'el' && p.item.role === 'part' ? 0 : 1);
  for (const p of [0, 1, 2].flatMap((r) => rest.filter((q) => rank(q) === r))) {
    const i = placements.indexOf(p);
    const before = placements.slice(0, i).reverse().find((q) => q.span && q.span[1] !== lo);
    const after = placements.slice(i + 1).find((q) => q.span);
    const a = before?.span?.[1] ?? lo;
    const b = after?.span?.[0] ?? hi;
    const between = { a, b, sa: before ? before.at + before.len : 0, sb: after ? after.at : levelText.length };
    const [s, e] = positioned(p, text, lo, hi, levelText, pieces, taken, between);
    // Between the neighbours placed before and after it (unless the model reordered those).
    p.span = a <= b ? [Math.min(Math.max(s, a), b), Math.min(Math.max(e, a), b)] : [s, e];
    taken.push(p.span);
  }
  const placed = /** @type {(Placement & { span: [number, number] })[]} */ (placements);
  placed.sort((x, y) => x.span[0] - y.span[0] || x.span[1] - y.span[1]);
  /** @type {Node[]} */
  const out = [];
  const textNode = (/** @type {string} */ s) => {
    const t = document.createTextNode(s);
    produced.add(t);
    out.push(t);
  };
  let pos = lo;
  for (const { item, span } of placed) {
    if (span[0] > pos) textNode(text.slice(pos, span[0]));
    /** @type {Node} */
    let node;
    let spaceAfter = false;
    if (item.kind === 'comment') {
      node = item.node.cloneNode();
    } else if (item.verbatim || item.role === 'marker' || item.role === 'symbol') {
      // Untranslatable content goes in verbatim, in place of the window the model made of it
      // (a footnote mark or a symbol the translation lacks: after the word it belongs to).
      node = item.el.cloneNode(true);
      // Attributes inside it (a footnote link's title) are translated on the copy.
      const inner = /** @type {Element} */ (node).querySelectorAll('*');
      item.el.querySelectorAll('*').forEach((el, k) => clones.set(el, inner[k]));
      if (item.role === 'symbol' && span[0] === span[1] && span[0] < hi) textNode(' ');
    } else {
      node = item.el.cloneNode(false);
      const own = ownWords(item, text.slice(span[0], span[1]), pieces);
      if (own) {
        if (own.asIs) asIs.push(own.words);
        // What the window held (digits, marks) stays, beside the element's own words.
        const held = text.slice(span[0], span[1]);
        if (held) textNode(held);
        if (/\S/.test(held ? held[held.length - 1] : span[0] > lo ? text[span[0] - 1] : '')) textNode(' ');
        for (const c of project(item.items, own.words, 0, own.words.length, pieces, produced, clones, asIs)) node.appendChild(c);
        spaceAfter = span[1] < hi && /\S/.test(text[span[1]]);
      } else {
        for (const c of project(item.items, text, span[0], span[1], pieces, produced, clones, asIs)) node.appendChild(c);
      }
    }
    if (item.kind === 'el') clones.set(item.el, /** @type {Element} */ (node));
    markProduced(node, produced);
    out.push(node);
    if (spaceAfter) textNode(' ');
    pos = Math.max(pos, span[1]);
  }
  if (hi > pos) textNode(text.slice(pos, hi));
  return out;
}

/**
 * The words an element with words shows when its window of the sentence holds none (the model
 * dropped or moved them, or its neighbours took them): its own translation, else its own text as
 * it is (the model gave it none; a part of a word is never translated on its own) — the page never
 * loses an element's words. Null when the window holds words, or the element has none.
 * @param {Item & { kind: 'el' }} item @param {string} held  the window's text
 * @param {Map<string, string>} pieces
 * @returns {{ words: string, asIs: boolean } | null}
 */
function ownWords(item, held, pieces) {
  const src = itemsText(item.items).trim();
  if (!hasLetters(src) || hasLetters(held)) return null;
  const own = pieces.get(src);
  return own && hasLetters(own) ? { words: own.trim(), asIs: false } : { words: src, asIs: true };
}

/** @param {Node} n @param {WeakSet<Node>} produced */
function markProduced(n, produced) {
  produced.add(n);
  for (const c of n.childNodes) markProduced(c, produced);
}

/** Element texts to translate on their own for projection. @param {Item[]} items @param {Set<string>} out */
function elementTexts(items, out) {
  for (const it of items) {
    if (it.kind !== 'el' || it.verbatim || it.role) continue;
    const t = itemsText(it.items).trim();
    if (hasLetters(t)) out.add(t);
    elementTexts(it.items, out);
  }
}

/** How many items, nested ones included. @param {Item[]} items @returns {number} */
function countItems(items) {
  return items.reduce((n, it) => n + 1 + (it.kind === 'el' ? countItems(it.items) : 0), 0);
}

/** The text of nodes as they are now (to see whether the page changed them). @param {Node[]} nodes */
function nodesText(nodes) {
  return nodes.map((n) => n.textContent ?? '').join('\u0000');
}

/** Does the run hold anything besides text (elements, comments) to put back? @param {Item[]} items */
function hasElements(items) {
  return items.some((it) => it.kind !== 'text');
}

export class PageTranslator {
  /**
   * @param {Element} root
   * @param {PageTranslatorOptions} options
   */
  constructor(root, options) {
    if (!root || typeof root.querySelectorAll !== 'function') throw new TypeError('PageTranslator needs a DOM element');
    if (typeof options?.translate !== 'function') throw new TypeError('PageTranslator needs a translate(texts) function');
    this.root = root;
    this.translateFn = options.translate;
    // Only attributes that are read as text: never URLs, styles or event handlers.
    this.attributes = (options.attributes ?? DEFAULT_ATTRIBUTES).filter(
      (a) => !/^(on|href$|src|style$|action$|formaction$|data$|xlink)/i.test(a),
    );
    this.visibleFirst = options.visibleFirst !== false;
    this.batchSize = Math.max(1, options.batchSize ?? 16);
    this.onProgress = options.onProgress;
    /** Source text -> translation, null where the model failed on it (shared by every run and attribute). @type {Map<string, Promise<string | null>>} */
    this.cache = new Map();
    /**
     * Texts the model failed on, left as they are, and why; also an element kept as it is because
     * the translation left it no words and it has no translation of its own.
     * @type {{ text: string, error: string }[]}
     */
    this.failures = [];
    /** Texts translated with parts kept as they were, and why (filled by MarianTranslator.translatePage, whose model reports them). @type {{ text: string, issues: string[] }[]} */
    this.kept = [];
    /** Nodes this translator inserted. @type {WeakSet<Node>} */
    this.produced = new WeakSet();
    /** Inline elements re-created in the translation: original -> copy. @type {WeakMap<Element, Element>} */
    this.clones = new WeakMap();
    /** Original nodes already handled (swapped out, or attribute-translated). @type {WeakSet<Node>} */
    this.handled = new WeakSet();
    /** Undo log, in application order. @type {({ kind: 'run', parent: Node, original: Node[], inserted: Node[] } | { kind: 'attr', el: Element, name: string, value: string })[]} */
    this.applied = [];
    /** Texts sent to the model so far (distinct). */
    this.modelCalls = 0;
    /** @type {MutationObserver | null} */
    this.observer = null;
    this.observe = options.observe !== false;
    /** @type {Promise<void>} */
    this.pending = Promise.resolve();
    this.restored = false;
    /** The DOM work's slices: `yields` to the event loop so far, `maxWork` the largest slice. */
    this.slicer = new Slicer();
  }

  /**
   * Translate many texts through the cache, in batches. One text the model fails on never costs
   * the others: a batch that fails is retried one text at a time, and a text that fails alone
   * resolves to null (its element is left as it is) and is listed in `failures`, as is a text with
   * letters the model answered with nothing or with no letter at all. Aborting stops.
   * @param {string[]} texts
   * @returns {Promise<(string | null)[]>}
   */
  async translateTexts(texts) {
    const todo = [...new Set(texts.filter((t) => !this.cache.has(t)))];
    /** @param {unknown} e */
    const aborted = (e) => /** @type {{ name?: string }} */ (e)?.name === 'AbortError';
    /** @param {string} text @param {unknown} e @returns {null} */
    const failed = (text, e) => {
      if (aborted(e)) throw e;
      this.failures.push({ text, error: String(/** @type {{ message?: string }} */ (e)?.message ?? e) });
      return null;
    };
    for (let i = 0; i < todo.length; i += this.batchSize) {
      const batch = todo.slice(i, i + this.batchSize);
      /** @type {Promise<(string | null)[]>} */
      const p = this.translateFn(batch).catch((/** @type {unknown} */ e) => {
        if (aborted(e)) throw e;
        return Promise.all(
          batch.map((t) =>
            batch.length === 1
              ? failed(t, e)
              : this.translateFn([t]).then(
                  (r) => r[0],
                  (/** @type {unknown} */ e1) => failed(t, e1),
                ),
          ),
        );
      });
      this.modelCalls += batch.length;
      batch.forEach((t, k) =>
        this.cache.set(
          t,
          p.then((r) => {
            if (!Array.isArray(r) || (typeof r[k] !== 'string' && r[k] !== null)) throw new Error('translate() must resolve to one string per text');
            // Nothing back for a text with words, or no word back, is a failure, not a
            // translation: the text stays as it is rather than vanishing from the page.
            if (typeof r[k] === 'string' && hasLetters(t) && !hasLetters(r[k])) return failed(t, new Error(r[k].trim() ? `the model returned no word: ${JSON.stringify(r[k])}` : 'the model returned nothing'));
            return r[k];
          }),
        ),
      );
    }
    return Promise.all(texts.map((t) => /** @type {Promise<string | null>} */ (this.cache.get(t))));
  }

  /**
   * The runs and attributes under `scope` not yet handled; the walk yields to the event loop
   * between slices.
   * @param {Node} scope
   */
  async collect(scope) {
    /** @type {Run[]} */
    const runs = [];
    /** @type {{ el: Element, name: string, value: string }[]} */
    const attrs = [];
    const visit = async (/** @type {Node} */ node) => {
      if (node.nodeType !== Node.ELEMENT_NODE && node.nodeType !== Node.DOCUMENT_FRAGMENT_NODE) return;
      const el = /** @type {Element} */ (node);
      if (node.nodeType === Node.ELEMENT_NODE) {
        if (this.produced.has(el)) return;
        if (el.getAttribute?.('translate')?.toLowerCase() === 'no' || el.classList?.contains('notranslate')) return;
        for (const name of this.attributes) {
          const v = el.getAttribute(name);
          if (v && hasLetters(v) && !this.handled.has(el.getAttributeNode(name) ?? el)) attrs.push({ el, name, value: v });
        }
        if (SKIP.has(el.tagName.toUpperCase())) {
          // <input> and friends carry readable attributes but no text to translate.
          return;
        }
      }
      /** @type {Node[]} */
      let cur = [];
      const flush = () => {
        if (cur.length) this.addRun(node, cur, runs);
        cur = [];
      };
      for (const c of [...node.childNodes]) {
        await this.slicer.spend(1);
        if (this.produced.has(c) || this.handled.has(c)) {
          flush();
          continue;
        }
        if (c.nodeType === Node.TEXT_NODE && SEPARATORS.test(c.nodeValue ?? '')) {
          // "Home · About us · Contact": each item is its own text; the separators stay.
          flush();
          continue;
        }
        if (isInlineSubtree(c)) {
          cur.push(c);
          if (c.nodeType === Node.ELEMENT_NODE) this.collectAttrsInline(/** @type {Element} */ (c), attrs);
        } else {
          flush();
          await visit(c);
        }
      }
      flush();
    };
    await visit(scope);
    return { runs, attrs };
  }

  /**
   * Attributes inside an inline subtree (e.g. an <a title> in a sentence); as in collect(), an
   * element whose content is not translated (<code title>) still has its attributes translated.
   * @param {Element} el @param {any[]} attrs
   */
  collectAttrsInline(el, attrs) {
    if (el.getAttribute('translate')?.toLowerCase() === 'no' || el.classList?.contains('notranslate')) return;
    for (const name of this.attributes) {
      const v = el.getAttribute(name);
      if (v && hasLetters(v) && !this.handled.has(el.getAttributeNode(name) ?? el)) attrs.push({ el, name, value: v });
    }
    if (SKIP.has(el.tagName.toUpperCase())) return;
    for (const c of el.children) this.collectAttrsInline(c, attrs);
  }

  /** @param {Node} parent @param {Node[]} nodes @param {Run[]} runs */
  addRun(parent, nodes, runs) {
    const items = /** @type {Item[]} */ (nodes.map(toItem).filter(Boolean));
    classify(items);
    const full = itemsText(items);
    const source = full.trim();
    if (!hasLetters(source)) return;
    // Only verbatim content (e.g. a lone <code>): nothing to translate.
    if (items.every((it) => (it.kind === 'text' ? !hasLetters(it.text) : it.kind === 'comment' || it.verbatim))) return;
    const lead = /^\s*/.exec(full)?.[0] ? ' ' : '';
    const trail = /\s*$/.exec(full)?.[0] ? ' ' : '';
    runs.push({ parent, nodes, items, source, lead, trail, weight: countItems(items), seen: nodesText(nodes) });
  }

  /** Is any of the run's nodes on screen? @param {Run} run */
  visible(run) {
    if (typeof window === 'undefined') return false;
    const el = /** @type {Element} */ (run.parent.nodeType === Node.ELEMENT_NODE ? run.parent : run.parent.parentElement);
    if (!el?.getBoundingClientRect) return false;
    const r = el.getBoundingClientRect();
    return r.bottom >= 0 && r.top <= window.innerHeight && r.right >= 0 && r.left <= window.innerWidth && r.width + r.height > 0;
  }

  /**
   * Translate everything under the root now (and, with `observe`, what is added later).
   * Resolves when the text present now is translated.
   */
  async translate() {
    this.restored = false;
    // Follow changes from the start: the page may change while the model works (content added,
    // text replaced); what changed is translated after this pass (settled() waits for both).
    if (this.observe && !this.observer && typeof MutationObserver !== 'undefined') {
      this.observer = new MutationObserver((records) => this.onMutations(records));
      this.observer.observe(this.root, { childList: true, subtree: true, characterData: true, attributes: true, attributeFilter: this.attributes });
    }
    const pass = this.translateScope(this.root);
    this.pending = this.pending.then(() => pass.then(() => {}, () => {}));
    await pass;
  }

  /** Is `node` inside content this translator must not touch? @param {Node} node */
  excluded(node) {
    for (let n = /** @type {Node | null} */ (node); n && n !== this.root; n = n.parentNode) {
      if (this.produced.has(n)) return true;
      if (n.nodeType === Node.ELEMENT_NODE && n !== node && noTranslate(/** @type {Element} */ (n))) return true;
    }
    return false;
  }

  /** @param {Node} scope */
  async translateScope(scope) {
    if (this.excluded(scope)) return;
    const { runs, attrs } = await this.collect(scope);
    if (this.visibleFirst) {
      /** @type {Map<Run, boolean>} */
      const vis = new Map();
      for (const r of runs) {
        await this.slicer.spend(1);
        vis.set(r, this.visible(r));
      }
      runs.sort((a, b) => Number(vis.get(b)) - Number(vis.get(a))); // stable: document order within each
    }
    const total = runs.length + attrs.length;
    let done = 0;
    // Runs first (whole sentences), then the inline elements' own texts, then attributes.
    // Batches grow 1, 2, 4, … up to batchSize: the first visible run shows its translation after
    // one run's work instead of a whole batch's, and later batches still fill the model.
    const step = Math.max(this.batchSize, 1);
    let size = this.visibleFirst ? 1 : step;
    for (let i = 0; i < runs.length; i += size, size = Math.min(2 * size, step)) {
      const group = runs.slice(i, i + size);
      const full = await this.translateTexts(group.map((r) => r.source));
      /** @type {Set<string>} */
      const sub = new Set();
      for (const r of group) elementTexts(r.items, sub);
      const subList = [...sub];
      const subOut = await this.translateTexts(subList);
      /** @type {Map<string, string>} */
      const pieces = new Map();
      subList.forEach((t, k) => {
        const out = subOut[k];
        if (out !== null) pieces.set(t, out);
      });
      for (const [k, r] of group.entries()) {
        const out = full[k];
        if (out === null) continue;
        await this.slicer.spend(r.weight);
        this.applyRun(r, out, pieces);
      }
      done += group.length;
      this.onProgress?.({ done, total });
    }
    const attrOut = await this.translateTexts(attrs.map((a) => a.value.trim()));
    for (const [k, a] of attrs.entries()) {
      const out = attrOut[k];
      if (out === null) continue;
      await this.slicer.spend(1);
      this.applyAttr(a, out);
    }
    done += attrs.length;
    this.onProgress?.({ done, total });
  }

  /** @param {Run} run @param {string} translated @param {Map<string, string>} pieces */
  applyRun(run, translated, pieces) {
    if (this.restored) return;
    // The page may have changed while the model worked: only swap nodes still in place and still
    // holding the text that was translated (the observer translates what changed).
    if (run.nodes.some((n) => n.parentNode !== run.parent) || nodesText(run.nodes) !== run.seen) return;
    const text = run.lead + translated.trim() + run.trail;
    const lo = run.lead.length;
    const hi = text.length - run.trail.length;
    /** @type {string[]} */
    const asIs = [];
    const inserted = hasElements(run.items) ? project(run.items, text, lo, hi, pieces, this.produced, this.clones, asIs) : [];
    // An element shown as it is (the translation left it no words, and it has no translation of
    // its own) is listed like a text the model failed on.
    for (const t of asIs) {
      if (!this.failures.some((f) => f.text === t)) this.failures.push({ text: t, error: 'the translation left this element no words: kept as it is' });
    }
    if (!hasElements(run.items)) {
      const t = document.createTextNode(text.slice(lo, hi));
      this.produced.add(t);
      inserted.push(t);
    }
    if (run.lead) {
      const t = document.createTextNode(run.lead);
      this.produced.add(t);
      inserted.unshift(t);
    }
    if (run.trail) {
      const t = document.createTextNode(run.trail);
      this.produced.add(t);
      inserted.push(t);
    }
    this.mutate(() => {
      const anchor = run.nodes[0];
      for (const n of inserted) run.parent.insertBefore(n, anchor);
      for (const n of run.nodes) run.parent.removeChild(n);
    });
    for (const n of run.nodes) this.handled.add(n);
    this.applied.push({ kind: 'run', parent: run.parent, original: run.nodes, inserted });
  }

  /** @param {{ el: Element, name: string, value: string }} a @param {string} translated */
  applyAttr(a, translated) {
    this.handled.add(a.el.getAttributeNode(a.name) ?? a.el);
    // An element inside a translated run was swapped for a copy: the copy gets the translation
    // (the original, kept for restore(), is never modified).
    const el = this.clones.get(a.el) ?? a.el;
    if (this.restored || el.getAttribute(a.name) !== a.value) return;
    this.mutate(() => el.setAttribute(a.name, translated.trim()));
    this.handled.add(el.getAttributeNode(a.name) ?? el);
    this.applied.push({ kind: 'attr', el, name: a.name, value: a.value });
  }

  /** Apply our own DOM change without the observer reacting to it (the page's changes queued before it still count). @param {() => void} f */
  mutate(f) {
    const page = this.observer?.takeRecords() ?? [];
    f();
    this.observer?.takeRecords();
    if (page.length) this.onMutations(page);
  }

  /** @param {MutationRecord[]} records */
  onMutations(records) {
    /** @type {Set<Node>} */
    const scopes = new Set();
    for (const r of records) {
      if (r.type === 'childList') {
        for (const n of r.addedNodes) if (!this.produced.has(n)) scopes.add(this.blockOf(n.parentNode ? n : r.target));
      } else if (r.type === 'characterData') {
        if (!this.produced.has(r.target) && r.target.parentNode) scopes.add(this.blockOf(r.target));
      } else if (r.type === 'attributes' && r.target.nodeType === Node.ELEMENT_NODE) {
        const el = /** @type {Element} */ (r.target);
        const node = r.attributeName ? el.getAttributeNode(r.attributeName) : null;
        if (node) this.handled.delete(node);
        scopes.add(el);
      }
    }
    if (!scopes.size) return;
    this.pending = this.pending.then(async () => {
      for (const s of scopes) {
        if (this.restored || !this.root.contains(s)) continue;
        try {
          await this.translateScope(s);
        } catch (e) {
          console.warn('marian-wasm page translation:', e);
        }
      }
    });
  }

  /**
   * Where a change to `node` is translated from: the block holding it (text and inline elements
   * are parts of a sentence, translated with the rest of it).
   * @param {Node} node
   * @returns {Node}
   */
  blockOf(node) {
    let s = node.nodeType === Node.ELEMENT_NODE ? node : node.parentNode ?? node;
    while (s !== this.root && s.parentNode && s.nodeType === Node.ELEMENT_NODE && INLINE.has(/** @type {Element} */ (s).tagName.toUpperCase())) s = s.parentNode;
    return s;
  }

  /** Resolves when the translation and content added so far have been translated. */
  settled() {
    return this.pending;
  }

  /** Stop following changes (the translation stays). */
  disconnect() {
    this.observer?.disconnect();
    this.observer = null;
  }

  /** Put the original page back, exactly, and stop following changes. */
  restore() {
    this.disconnect();
    this.restored = true;
    for (let i = this.applied.length - 1; i >= 0; i--) {
      const a = this.applied[i];
      if (a.kind === 'attr') {
        a.el.setAttribute(a.name, a.value);
        continue;
      }
      const anchor = a.inserted.find((n) => n.parentNode === a.parent) ?? null;
      for (const n of a.original) a.parent.insertBefore(n, anchor);
      for (const n of a.inserted) if (n.parentNode === a.parent) a.parent.removeChild(n);
    }
    this.applied = [];
    this.handled = new WeakSet();
  }
}
