// Drop-in page translation: one line adds a "Translate this page" button to any static page.
//
//   <script type="module" src="https://example.org/marian-wasm/page.js"
//           data-model="https://example.org/models/opus-mt-en-fr/"></script>
//
// Attributes on the script tag (all optional):
//   data-model     package folder URL (default: the model shipped next to this file)
//   data-root      CSS selector of the part of the page to translate (default: body)
//   data-device    "auto" | "webgpu" | "wasm" (default auto)
//   data-label     button label (default "Translate this page")
//   data-catalog, data-target-language, data-source-language
//                  choose the model by language instead of data-model (any of the three does):
//                  from the catalog at data-catalog (default: the built-in one, en→fr), into
//                  data-target-language (default: the browser's, navigator.language), from
//                  data-source-language (default "auto": detected from the text, <html lang>
//                  deciding what the detector is unsure of; README "Language detection")
// The model downloads on the first click (progress on the button) and is kept for later visits.

import { MarianTranslator } from './marian-wasm.js';

/** The <script> element that loaded this module (module scripts have no currentScript). */
function ownScript() {
  for (const s of document.querySelectorAll('script[type="module"][src]')) {
    if (new URL(s.getAttribute('src') ?? '', document.baseURI).href === import.meta.url) return /** @type {HTMLScriptElement} */ (s);
  }
  return null;
}

function install() {
  const script = ownScript();
  const data = script?.dataset ?? {};
  const label = data.label || 'Translate this page';
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'marian-wasm-page-button';
  button.setAttribute('translate', 'no');
  button.textContent = label;
  button.style.cssText =
    'position:fixed;right:1rem;bottom:1rem;z-index:2147483647;padding:.6rem 1rem;border-radius:2rem;' +
    'border:1px solid #555;background:#1d4ed8;color:#fff;font:600 14px system-ui,sans-serif;cursor:pointer;' +
    'box-shadow:0 2px 8px rgba(0,0,0,.3)';
  /** @type {Promise<MarianTranslator> | null} */
  let translator = null;
  /** @type {import('./page-translator.js').PageTranslator | null} */
  let page = null;
  let busy = false;

  button.addEventListener('click', async () => {
    if (busy) return;
    busy = true;
    try {
      if (page) {
        page.restore();
        page = null;
        button.textContent = label;
        return;
      }
      const byLanguage = Boolean(data.catalog || data.targetLanguage || data.sourceLanguage);
      translator ??= MarianTranslator.create({
        model: data.model || undefined,
        ...(byLanguage
          ? {
              sourceLanguage: data.sourceLanguage || 'auto',
              targetLanguage: data.targetLanguage || navigator.language,
              catalog: data.catalog || undefined,
            }
          : {}),
        device: /** @type {any} */ (data.device) || 'auto',
        monitor(m) {
          m.addEventListener('downloadprogress', (e) => {
            button.textContent = `Loading model… ${Math.round(/** @type {any} */ (e).loaded * 100)}%`;
          });
        },
      });
      const t = await translator;
      button.textContent = 'Translating…';
      const root = data.root ? document.querySelector(data.root) : document.body;
      if (!root) throw new Error(`data-root ${data.root} matches nothing`);
      page = await t.translatePage(root, {
        onProgress: ({ done, total }) => {
          button.textContent = `Translating… ${done}/${total}`;
        },
      });
      button.textContent = 'Show original';
    } catch (e) {
      translator = null;
      button.textContent = `${label} (failed: ${e instanceof Error ? e.message : e})`;
      console.error('marian-wasm:', e);
    } finally {
      busy = false;
    }
  });
  document.body.appendChild(button);
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', install, { once: true });
else install();
