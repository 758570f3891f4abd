// The demo page: load a package (default: the embedded en→fr model), translate with streaming
// output, manage stored models. Everything heavy runs in marian-wasm's worker.

import { DEFAULT_MODEL, MarianTranslator, deleteModel, listModels } from './marian-wasm.js';

const $ = (/** @type {string} */ id) => /** @type {any} */ (document.getElementById(id));
const status = $('status');
const params = new URLSearchParams(location.search);

/** @type {MarianTranslator | null} */
let translator = null;

/** @param {string} text */
const say = (text) => {
  status.textContent = text;
};
/** @param {unknown} e */
const errText = (e) => (e instanceof Error || e instanceof DOMException ? `${e.name}: ${e.message}` : String(e));

/** @param {number} n */
function size(n) {
  return n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MB` : `${Math.ceil(n / 1024)} KB`;
}

async function refreshModels() {
  const body = $('models').tBodies[0];
  body.replaceChildren();
  const models = await listModels();
  if (!models.length) {
    const row = body.insertRow();
    const cell = row.insertCell();
    cell.colSpan = 4;
    cell.textContent = 'None yet.';
    return;
  }
  for (const m of models) {
    const row = body.insertRow();
    row.insertCell().textContent = m.url;
    row.insertCell().textContent = m.quant;
    row.insertCell().textContent = size(m.bytes);
    const del = document.createElement('button');
    del.type = 'button';
    del.className = 'secondary';
    del.textContent = 'Delete';
    del.setAttribute('aria-label', `Delete ${m.url}`);
    del.addEventListener('click', async () => {
      await deleteModel(m.url);
      say(`Deleted ${m.url} from this browser.`);
      await refreshModels();
    });
    row.insertCell().appendChild(del);
  }
}

async function load() {
  const model = $('model-url').value.trim() || DEFAULT_MODEL;
  const device = $('device').value;
  $('translate').disabled = true;
  $('load').disabled = true;
  translator?.destroy();
  translator = null;
  const progress = $('progress');
  progress.value = 0;
  say(`Loading ${model}…`);
  try {
    translator = await MarianTranslator.create({
      model,
      device,
      monitor(m) {
        m.addEventListener('downloadprogress', (/** @type {any} */ e) => {
          progress.value = e.loaded;
          say(`Loading ${e.file}: ${size(e.bytesLoaded)} of ${size(e.bytesTotal)}${e.fromCache ? ' (stored)' : ''}`);
        });
      },
    });
    progress.value = 1;
    const m = translator.manifest.model;
    $('model-info').textContent =
      `${m.encoder_layers}+${m.decoder_layers} layers, d_model ${m.d_model}, vocabulary ${m.vocab_size}, ` +
      `${translator.manifest.quant}; device: ${translator.device === 'wasm' ? 'CPU (WebAssembly)' : 'GPU (WebGPU)'}; ` +
      `${translator.fromCache ? 'from this browser’s store' : 'downloaded'} in ${(translator.loadMs / 1000).toFixed(1)} s`;
    $('translate').disabled = false;
    say('Model ready.');
  } catch (e) {
    say(`Error: ${errText(e)}`);
  } finally {
    $('load').disabled = false;
    refreshModels().catch(() => {});
  }
}

async function translate() {
  if (!translator) return;
  const lines = $('source').value.split('\n');
  const out = $('target');
  const beams = Number($('beams').value) || undefined;
  $('translate').disabled = true;
  say('Translating…');
  let tokens = 0;
  let ms = 0;
  try {
    if ($('stream').checked) {
      out.textContent = '';
      for (const [i, line] of lines.entries()) {
        if (i > 0) out.append('\n');
        if (!line.trim()) continue;
        const text = document.createTextNode('');
        out.append(text);
        for await (const chunk of /** @type {any} */ (translator.translateStreaming(line, { beams }))) text.appendData(chunk);
        tokens += translator.lastRun?.tokens ?? 0;
        ms += translator.lastRun?.ms ?? 0;
      }
    } else {
      const texts = await translator.translate(lines, { beams });
      out.textContent = texts.join('\n');
      tokens = translator.lastRun?.tokens ?? 0;
      ms = translator.lastRun?.ms ?? 0;
    }
    $('speed').textContent = `${tokens} tokens in ${(ms / 1000).toFixed(2)} s: ${(tokens / Math.max(ms / 1000, 1e-3)).toFixed(1)} tokens/s on ${translator.device}`;
    say('Translated.');
  } catch (e) {
    say(`Error: ${errText(e)}`);
  } finally {
    $('translate').disabled = false;
  }
}

$('model-url').value = params.get('model') ?? DEFAULT_MODEL;
if (params.get('device')) $('device').value = params.get('device');
$('model-form').addEventListener('submit', (/** @type {Event} */ e) => {
  e.preventDefault();
  load();
});
$('form').addEventListener('submit', (/** @type {Event} */ e) => {
  e.preventDefault();
  translate();
});

if ('serviceWorker' in navigator && params.get('sw') !== '0') {
  navigator.serviceWorker.register('sw.js').catch((e) => console.warn('service worker not registered:', e));
}
load();
