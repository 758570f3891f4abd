// Model catalogs: choose a package by language pair (BCP 47 tags), as Chrome's Translator API
// is asked `{ sourceLanguage, targetLanguage }`.
//
// A catalog is a JSON file written by `marian-wasm catalog add` (or by hand):
//   { "format": "marian-wasm-catalog", "format_version": 1,
//     "models": [ { "url": "opus-mt-en-de-q8/", "source_languages": ["en"], "target_languages": ["de"],
//                   "size": 81923456, "sha256": "<manifest.json's sha256>", "quant": "q8",
//                   "quality": "BLEU 45.2 on newstest2019" },
//                 { "url": "opus-mt-en-ROMANCE-q8/", "source_languages": ["en"],
//                   "target_languages": ["es", "fr", "pt-BR"],
//                   "target_codes": { "es": "spa", "fr": "fra", "pt-BR": "pt_br" }, … } ] }
// Relative URLs resolve against the catalog's own URL. The model's own codes were mapped to BCP 47
// once, by `catalog add` (src/catalog.rs); here tags are only canonicalized and matched.

export const CATALOG_FORMAT = 'marian-wasm-catalog';
export const CATALOG_FORMAT_VERSION = 1;

/**
 * One package in a catalog.
 * @typedef {object} CatalogEntry
 * @property {string} url  the package folder; absolute once loaded (relative ones resolve against
 *   the catalog's URL)
 * @property {string[]} source_languages  BCP 47 tags of the languages the model reads
 * @property {string[]} target_languages  BCP 47 tags of the languages it writes
 * @property {Record<string, string>} [target_codes]  multi-target models only: each target tag to
 *   the model's own `>>code<<` (`{ "fr": "fra" }`)
 * @property {number} size  bytes to download, manifest.json included
 * @property {string} sha256  hex sha256 of the package's manifest.json (which lists every file's
 *   sha256, so it pins the whole package; checked before a download is trusted)
 * @property {string} quant  `q8`, `q4`, `f16` or `f32`
 * @property {string} [quality]  free text for people choosing a model
 */

/**
 * @typedef {object} Catalog
 * @property {'marian-wasm-catalog'} format
 * @property {1} format_version
 * @property {CatalogEntry[]} models
 */

/**
 * The entry chosen for a language pair.
 * @typedef {object} CatalogMatch
 * @property {CatalogEntry} entry
 * @property {string} sourceLanguage  the entry's tag that matched the requested source
 * @property {string} targetLanguage  the entry's tag that matched the requested target
 * @property {string | null} targetCode  the model's own code for it (multi-target models), or null
 */

/**
 * A language tag in canonical BCP 47 form, as `Intl.getCanonicalLocales` writes it (case,
 * aliases: `FR-ca` → `fr-CA`, `iw` → `he`, `fra` → `fr`, `cmn-Hans` → `zh-Hans`); `_` is read
 * as `-` (`pt_BR`). A TypeError for a non-string, a RangeError for a string that is not a tag.
 * @param {unknown} tag
 * @returns {string}
 */
export function canonicalLanguage(tag) {
  if (typeof tag !== 'string') throw new TypeError(`a language must be a BCP 47 tag string, not ${JSON.stringify(tag)}`);
  try {
    return Intl.getCanonicalLocales(tag.trim().replaceAll('_', '-'))[0];
  } catch {
    throw new RangeError(`${JSON.stringify(tag)} is not a BCP 47 language tag`);
  }
}

/**
 * Check a parsed catalog and return a copy with absolute URLs and canonical tags. Throws a
 * TypeError naming the catalog and the bad entry (`models[2] (url)`).
 * @param {unknown} data  the parsed JSON
 * @param {string} [baseUrl]  what relative package URLs resolve against (the catalog's URL)
 * @param {string} [where]  how errors name the catalog
 * @returns {Catalog}
 */
export function parseCatalog(data, baseUrl = defaultBase(), where = 'catalog') {
  const bad = (/** @type {string} */ msg) => new TypeError(`${where}: ${msg}`);
  const c = /** @type {any} */ (data);
  if (!c || typeof c !== 'object' || c.format !== CATALOG_FORMAT) {
    throw bad(`not a marian-wasm catalog (format ${JSON.stringify(c?.format)}, expected "${CATALOG_FORMAT}")`);
  }
  if (c.format_version !== CATALOG_FORMAT_VERSION) {
    throw bad(`format_version ${JSON.stringify(c.format_version)} is not supported (this version reads ${CATALOG_FORMAT_VERSION})`);
  }
  if (!Array.isArray(c.models)) throw bad('"models" must be an array');
  /** @type {CatalogEntry[]} */
  const models = c.models.map((/** @type {any} */ e, /** @type {number} */ i) => {
    const name = `models[${i}]${typeof e?.url === 'string' ? ` (${e.url})` : ''}`;
    const no = (/** @type {string} */ msg) => bad(`${name}: ${msg}`);
    if (!e || typeof e !== 'object') throw no('not an object');
    if (typeof e.url !== 'string' || !e.url) throw no('"url" must be a non-empty string');
    let url;
    try {
      url = new URL(e.url, baseUrl);
    } catch {
      throw no(`"url" ${JSON.stringify(e.url)} is not a URL`);
    }
    if (!url.pathname.endsWith('/')) url.pathname += '/';
    const tags = (/** @type {string} */ key) => {
      const v = e[key];
      if (!Array.isArray(v) || v.length === 0) throw no(`"${key}" must be a non-empty array of BCP 47 tags`);
      return v.map((t) => {
        try {
          return canonicalLanguage(t);
        } catch (err) {
          throw no(`"${key}": ${/** @type {Error} */ (err).message}`);
        }
      });
    };
    const source_languages = tags('source_languages');
    const target_languages = tags('target_languages');
    /** @type {Record<string, string> | undefined} */
    let target_codes;
    if (e.target_codes !== undefined) {
      if (!e.target_codes || typeof e.target_codes !== 'object') throw no('"target_codes" must be an object of tag → code');
      target_codes = {};
      for (const [tag, code] of Object.entries(e.target_codes)) {
        if (typeof code !== 'string' || !code) throw no(`"target_codes" gives ${JSON.stringify(tag)} no code`);
        target_codes[canonicalLanguage(tag)] = code;
      }
      const keys = Object.keys(target_codes).sort().join();
      if (keys !== [...target_languages].sort().join()) throw no('"target_codes" must give one code for each of "target_languages", and no other');
    }
    if (!Number.isSafeInteger(e.size) || e.size < 0) throw no('"size" must be a byte count');
    if (typeof e.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(e.sha256)) throw no('"sha256" must be 64 lower-case hex digits');
    if (typeof e.quant !== 'string') throw no('"quant" must be a string');
    if (e.quality !== undefined && typeof e.quality !== 'string') throw no('"quality" must be a string');
    return {
      url: url.href,
      source_languages,
      target_languages,
      ...(target_codes ? { target_codes } : {}),
      size: e.size,
      sha256: e.sha256,
      quant: e.quant,
      ...(e.quality !== undefined ? { quality: e.quality } : {}),
    };
  });
  return { format: CATALOG_FORMAT, format_version: CATALOG_FORMAT_VERSION, models };
}

function defaultBase() {
  return typeof self !== 'undefined' && self.location ? self.location.href : 'http://localhost/';
}

/** Catalogs already loaded (by absolute URL) or checked (objects). */
const fetched = new Map();
const checked = new WeakMap();

/**
 * A catalog from a URL (fetched once per page; relative package URLs resolve against it) or an
 * already-parsed object (relative URLs resolve against the page), checked either way.
 * @param {string | URL | Catalog} catalog
 * @param {{ signal?: AbortSignal }} [options]
 * @returns {Promise<Catalog>}
 */
export async function loadCatalog(catalog, options = {}) {
  if (typeof catalog === 'string' || catalog instanceof URL) {
    const url = new URL(String(catalog), defaultBase()).href;
    let p = fetched.get(url);
    if (!p) {
      p = fetchCatalog(url, options.signal);
      fetched.set(url, p);
      // A failed load is not remembered: the next call tries again.
      p.catch(() => fetched.delete(url));
    }
    return p;
  }
  if (!catalog || typeof catalog !== 'object') throw new TypeError('catalog must be a URL or a parsed catalog object');
  let c = checked.get(catalog);
  if (!c) {
    c = parseCatalog(catalog);
    checked.set(catalog, c);
    checked.set(c, c);
  }
  return c;
}

/** @param {string} url @param {AbortSignal | undefined} signal */
async function fetchCatalog(url, signal) {
  let resp;
  try {
    resp = await fetch(url, { signal });
  } catch (e) {
    if (signal?.aborted) throw signal.reason;
    throw new Error(`${url}: network error (${e instanceof Error ? e.message : e})`);
  }
  if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status}`);
  let data;
  try {
    data = await resp.json();
  } catch (e) {
    throw new TypeError(`${url}: not JSON (${e instanceof Error ? e.message : e})`);
  }
  return parseCatalog(data, resp.url || url, url);
}

/**
 * How well an entry's tag serves a requested one (both canonical): 0 the same tag; 1, 2, … the
 * requested tag with that many subtags cut from its end (BCP 47 lookup: `zh-Hant-TW` → `zh-Hant`
 * → `zh`); 10 + n the same through the requested tag's likely subtags (`zh-TW` is `zh-Hant-TW`,
 * so a `zh-Hant` model serves it; `pt` is `pt-Latn-BR`, so a `pt-BR` one does); 20 a more
 * specific offered tag that agrees with those (`zh-Hans-CN` for `zh`); 30 + n a lookup fallback
 * into another script (`zh-TW` → `zh`, which is `zh-Hans`); Infinity none.
 * @param {string} requested
 * @param {string} offered
 */
export function languageDistance(requested, offered) {
  const lookup = (/** @type {string} */ tag) => {
    const chain = [];
    for (let parts = tag.split('-'); parts.length > 0; parts.pop()) {
      // A singleton (`-u-`, `-x-`) is never left at the end (RFC 4647 lookup).
      if (parts[parts.length - 1].length === 1) continue;
      chain.push(parts.join('-'));
    }
    return chain;
  };
  const script = (/** @type {string} */ tag) => {
    try {
      return new Intl.Locale(tag).maximize().script;
    } catch {
      return undefined;
    }
  };
  const direct = lookup(requested).indexOf(offered);
  // A fallback that changes the script (`zh-TW`, Traditional, to a `zh` model, which is
  // Simplified) ranks after a likely-subtags match (`zh-Hant`), but still matches.
  if (direct >= 0) return direct === 0 || script(requested) === script(offered) ? direct : 30 + direct;
  try {
    const max = new Intl.Locale(requested).maximize();
    const forms = [`${max.language}-${max.script}`, `${max.language}-${max.region}`, max.language];
    const likely = forms.indexOf(offered);
    if (likely >= 0) return 10 + likely;
    // A model for `zh-Hans` serves `zh-Hans-CN` and `zh`.
    const o = new Intl.Locale(offered);
    if (o.language === max.language && (!o.script || o.script === max.script) && (!o.region || o.region === max.region)) return 20;
  } catch {
    /* not a tag Intl knows: no likely subtags */
  }
  return Infinity;
}

/**
 * The best entry for a pair of canonical tags, or null: the closest languages (see
 * languageDistance; source and target added), then a single-target model before a multi-target
 * one, then catalog order.
 * @param {Catalog} catalog
 * @param {string} sourceLanguage
 * @param {string} targetLanguage
 * @returns {CatalogMatch | null}
 */
export function findModel(catalog, sourceLanguage, targetLanguage) {
  /** @type {(CatalogMatch & { score: number, multi: number, index: number }) | null} */
  let best = null;
  catalog.models.forEach((entry, index) => {
    const closest = (/** @type {string} */ want, /** @type {string[]} */ tags) => {
      let d = Infinity;
      let tag = '';
      for (const t of tags) {
        const k = languageDistance(want, t);
        if (k < d) [d, tag] = [k, t];
      }
      return { d, tag };
    };
    const s = closest(sourceLanguage, entry.source_languages);
    const t = closest(targetLanguage, entry.target_languages);
    if (s.d === Infinity || t.d === Infinity) return;
    const score = s.d + t.d;
    const multi = entry.target_codes ? 1 : 0;
    if (!best || score < best.score || (score === best.score && multi < best.multi)) {
      best = { entry, sourceLanguage: s.tag, targetLanguage: t.tag, targetCode: entry.target_codes?.[t.tag] ?? null, score, multi, index };
    }
  });
  if (!best) return null;
  const { score, multi, index, ...match } = /** @type {any} */ (best);
  return match;
}

/** The language every pivot goes through. */
export const PIVOT_LANGUAGE = 'en';

/**
 * Whether a canonical tag is English (`en`, `en-GB`, `en-Latn-US`, …).
 * @param {string} tag
 */
export function isEnglish(tag) {
  try {
    return new Intl.Locale(tag).language === PIVOT_LANGUAGE;
  } catch {
    return false;
  }
}

/**
 * The models that translate a pair of canonical tags: `[match]` when one model does (findModel's
 * choice; a direct model always wins), else `[source → en, en → target]` when the catalog has
 * both (pivoting through English, each leg chosen by findModel's rules), else null. Never a pivot
 * when the source or the target is English itself.
 * @param {Catalog} catalog
 * @param {string} sourceLanguage
 * @param {string} targetLanguage
 * @returns {CatalogMatch[] | null}
 */
export function findRoute(catalog, sourceLanguage, targetLanguage) {
  const direct = findModel(catalog, sourceLanguage, targetLanguage);
  if (direct) return [direct];
  if (isEnglish(sourceLanguage) || isEnglish(targetLanguage)) return null;
  const first = findModel(catalog, sourceLanguage, PIVOT_LANGUAGE);
  const second = first && findModel(catalog, PIVOT_LANGUAGE, targetLanguage);
  return first && second ? [first, second] : null;
}

/**
 * The pairs a catalog offers, for messages (`en → fr, en → de`).
 * @param {Catalog} catalog
 */
export function catalogPairs(catalog) {
  const pairs = new Set();
  for (const e of catalog.models) for (const s of e.source_languages) for (const t of e.target_languages) pairs.add(`${s} → ${t}`);
  return [...pairs].join(', ') || 'none';
}

/**
 * The built-in catalog: the embedded default en→fr model only. Its size and sha256 are those of
 * models/default (tests/catalog_cli.rs holds them to the committed package).
 * @param {string} defaultModelUrl
 * @returns {Catalog}
 */
export function builtinCatalog(defaultModelUrl) {
  return parseCatalog(
    {
      format: CATALOG_FORMAT,
      format_version: CATALOG_FORMAT_VERSION,
      models: [
        {
          url: defaultModelUrl,
          source_languages: ['en'],
          target_languages: ['fr'],
          size: 10535217,
          sha256: '8eb9fa7797fce3ac44e36cf49e40234551ee63f9abcecbfae60f36f2aa990d8b',
          quant: 'q8',
          quality: 'Multi30k-trained 7.8M-parameter model: BLEU 59.1 / chrF 74.8 on Multi30k test_2016_flickr (beam 4); image captions, not general text',
        },
      ],
    },
    defaultModelUrl,
    'built-in catalog',
  );
}
