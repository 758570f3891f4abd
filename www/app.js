// The demo page: load a package (default: the embedded en→fr model), translate with streaming
// output, fine-tune on the user's pairs (adapters kept in IndexedDB, the one in use re-applied
// after a reload), manage stored models. Everything heavy runs in marian-wasm's worker.

import {
  DEFAULT_MODEL,
  MarianTranslator,
  deleteAdapter,
  deleteModel,
  getAdapter,
  listAdapters,
  listModels,
  readAdapterManifest,
  saveAdapter,
} from './marian-wasm.js';

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
      `${translator.manifest.quant}; device: ${translator.device === 'wasm' ? `CPU (WebAssembly, ${translator.threads} thread${translator.threads > 1 ? 's' : ''})` : `GPU (WebGPU: ${translator.gpuAdapter})`}` +
      `${translator.gpuUnavailable ? ` (no WebGPU: ${translator.gpuUnavailable})` : ''}; ` +
      `${translator.fromCache ? 'from this browser’s store' : 'downloaded'} in ${(translator.loadMs / 1000).toFixed(1)} s`;
    $('translate').disabled = false;
    $('ft-train').disabled = false;
    await restoreActiveAdapter();
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

// ---- fine-tuning ------------------------------------------------------------------------------

const activeKey = () => `marian-wasm-active-adapter:${translator?.modelSha256}`;

/** @param {string | null} name */
function showActive(name) {
  $('ft-active').textContent = name ? `Adapter in use: ${name}` : 'No adapter in use.';
  $('ft-remove').disabled = !name;
  $('ft-export').disabled = !translator?.adapterBytes;
  $('ft-keep').disabled = !translator?.adapterBytes;
}

/** The adapter in use before a reload is put back on. */
async function restoreActiveAdapter() {
  const name = localStorage.getItem(activeKey());
  const kept = name ? await getAdapter(name) : undefined;
  if (kept && translator) {
    try {
      await translator.useAdapter(kept.bytes);
      showActive(name);
    } catch (e) {
      say(`Error: the kept adapter ${name} could not be applied: ${errText(e)}`);
    }
  } else {
    showActive(null);
  }
  await refreshAdapters();
}

async function refreshAdapters() {
  const body = $('adapters').tBodies[0];
  body.replaceChildren();
  const kept = translator ? await listAdapters(translator.modelSha256) : [];
  if (!kept.length) {
    const cell = body.insertRow().insertCell();
    cell.colSpan = 4;
    cell.textContent = 'None kept for this model.';
    return;
  }
  for (const a of kept) {
    const row = body.insertRow();
    row.insertCell().textContent = a.name;
    const m = a.manifest.metrics ?? {};
    const b = m.val_before?.bleu;
    const f = m.val_after?.bleu;
    const kept = m.unrelated_changed ? ` · ${changedText(m.unrelated_changed)} of unrelated changed` : '';
    row.insertCell().textContent =
      (typeof b === 'number' && typeof f === 'number' ? `${b.toFixed(1)} → ${f.toFixed(1)}` : '—') + kept;
    row.insertCell().textContent = size(a.size);
    const cell = row.insertCell();
    const use = document.createElement('button');
    use.type = 'button';
    use.textContent = 'Use';
    use.setAttribute('aria-label', `Use adapter ${a.name}`);
    use.addEventListener('click', async () => {
      await translator?.useAdapter(a.bytes);
      localStorage.setItem(activeKey(), a.name);
      $('ft-name').value = a.name;
      showActive(a.name);
      say(`Adapter ${a.name} in use.`);
    });
    const del = document.createElement('button');
    del.type = 'button';
    del.className = 'secondary';
    del.textContent = 'Delete';
    del.setAttribute('aria-label', `Delete adapter ${a.name}`);
    del.addEventListener('click', async () => {
      await deleteAdapter(a.name);
      if (localStorage.getItem(activeKey()) === a.name) {
        localStorage.removeItem(activeKey());
        await translator?.useAdapter(null);
        showActive(null);
      }
      say(`Deleted adapter ${a.name}.`);
      await refreshAdapters();
    });
    cell.append(use, ' ', del);
  }
}

/**
 * Pairs from TSV or JSON lines; malformed lines are reported with their line number.
 * @param {string} text
 */
function parsePairs(text) {
  /** @type {{ source: string, target: string }[]} */
  const pairs = [];
  /** @type {number[]} */
  const lineOf = [];
  /** @type {string[]} */
  const issues = [];
  const lines = text.split(/\r?\n/);
  const json = lines.find((l) => l.trim())?.trim().startsWith('{');
  lines.forEach((line, i) => {
    if (!line.trim()) return;
    if (json) {
      try {
        const p = JSON.parse(line);
        pairs.push({ source: String(p.source ?? ''), target: String(p.target ?? '') });
        lineOf.push(i + 1);
      } catch {
        issues.push(`line ${i + 1}: not a JSON object`);
      }
      return;
    }
    const f = line.split('\t');
    if (f.length !== 2) {
      issues.push(`line ${i + 1}: expected English<TAB>French, found ${f.length} field(s)`);
      return;
    }
    pairs.push({ source: f[0], target: f[1] });
    lineOf.push(i + 1);
  });
  return { pairs, lineOf, issues };
}

/** @type {number[]} */
let losses = [];
function drawChart() {
  const canvas = $('ft-chart');
  const ctx = canvas.getContext('2d');
  const { width: w, height: h } = canvas;
  ctx.clearRect(0, 0, w, h);
  if (losses.length < 2) return;
  const max = Math.max(...losses);
  const min = Math.min(...losses);
  const css = getComputedStyle(document.documentElement);
  ctx.strokeStyle = css.getPropertyValue('--accent').trim() || '#1d4ed8';
  ctx.lineWidth = 2;
  ctx.beginPath();
  losses.forEach((l, i) => {
    const x = 8 + (i / (losses.length - 1)) * (w - 16);
    const y = 8 + (1 - (l - min) / Math.max(max - min, 1e-9)) * (h - 24);
    if (i === 0) ctx.moveTo(x, y);
    else ctx.lineTo(x, y);
  });
  ctx.stroke();
  ctx.fillStyle = css.getPropertyValue('--muted').trim() || '#666';
  ctx.font = '12px system-ui, sans-serif';
  ctx.fillText(`loss ${losses[losses.length - 1].toFixed(3)} (max ${max.toFixed(2)}, min ${min.toFixed(2)})`, 8, h - 4);
}

/**
 * The keep measure as the panel shows it: "3.0 % (3 of 100)".
 * @param {{ sentences: number, changed: number } | undefined} m
 */
function changedText(m) {
  if (!m || !m.sentences) return 'n/a (every pair holds something the adapter teaches)';
  return `${((100 * m.changed) / m.sentences).toFixed(1)} % (${m.changed} of ${m.sentences})`;
}

/** @type {AbortController | null} */
let training = null;

async function fineTune() {
  if (!translator) return;
  const { pairs, lineOf, issues } = parsePairs($('pairs').value);
  if (!pairs.length) {
    $('ft-status').textContent = 'Paste some pairs first (English<TAB>French, one a line).';
    return;
  }
  training = new AbortController();
  $('ft-train').disabled = true;
  $('ft-cancel').disabled = false;
  $('ft-result').textContent = '';
  losses = [];
  drawChart();
  const t0 = performance.now();
  try {
    const r = await translator.fineTune(pairs, {
      epochs: Number($('ft-epochs').value) || undefined,
      lr: Number($('ft-lr').value) || undefined,
      lastLayerRank: /** @type {HTMLInputElement} */ ($('ft-last-layer')).checked ? 8 : undefined,
      signal: training.signal,
      onProgress: (p) => {
        $('ft-progress').value = p.steps ? p.step / p.steps : 0;
        if (p.phase === 'features') {
          $('ft-status').textContent = `Reading the pairs through the model: ${p.step}/${p.steps}`;
          return;
        }
        losses.push(p.loss);
        drawChart();
        $('ft-status').textContent = `Epoch ${p.epoch}/${p.epochs} · step ${p.step}/${p.steps} · loss ${p.loss.toFixed(3)} · about ${Math.ceil(p.etaSeconds)} s left`;
      },
    });
    const skipped = [...issues, ...r.issues.map((i) => `line ${lineOf[i.index - 1] ?? i.index}: ${i.reason}`)];
    const list = $('ft-issues');
    list.hidden = skipped.length === 0;
    list.querySelector('summary').textContent = `Skipped pairs (${skipped.length})`;
    list.querySelector('ul').replaceChildren(
      ...skipped.map((t) => {
        const li = document.createElement('li');
        li.textContent = t;
        return li;
      }),
    );
    const fmt = (/** @type {any} */ s) => (s ? `BLEU ${s.bleu.toFixed(1)}, chrF ${s.chrf.toFixed(1)}` : 'n/a');
    $('ft-result').textContent =
      `Held-out pairs: ${fmt(r.valBefore)} before → ${fmt(r.valAfter)} after. ` +
      `Unrelated sentences changed: ${changedText(r.unrelatedChanged)}. ` +
      `${r.report.train_pairs} pairs trained, ${r.report.val_pairs} held out, best epoch ${r.report.best_epoch}` +
      `, ${r.manifest.format_version >= 2 ? 'the head and the last decoder layer' : 'the head'} adapted` +
      `${r.report.stopped_early ? ' (stopped early)' : ''}; ${((performance.now() - t0) / 1000).toFixed(1)} s` +
      ` (the model's pass over the pairs on ${r.report.feature_device === 'gpu' ? 'the GPU' : `${r.featureWorkers} CPU worker${r.featureWorkers > 1 ? 's' : ''}`}).`;
    $('ft-progress').value = 1;
    $('ft-status').textContent = 'Fine-tuned. The adapter is in use; keep it to find it again after a reload.';
    showActive('(not kept yet)');
    say('Fine-tuned.');
  } catch (e) {
    const cancelled = e instanceof DOMException && e.name === 'AbortError';
    $('ft-status').textContent = cancelled ? 'Cancelled; the model is as it was.' : `Error: ${errText(e)}`;
    say(cancelled ? 'Fine-tuning cancelled.' : `Error: ${errText(e)}`);
  } finally {
    training = null;
    $('ft-train').disabled = false;
    $('ft-cancel').disabled = true;
  }
}

$('ft-train').addEventListener('click', fineTune);
$('ft-cancel').addEventListener('click', () => training?.abort());
$('pairs-file').addEventListener('change', async (/** @type {Event} */ e) => {
  const file = /** @type {HTMLInputElement} */ (e.target).files?.[0];
  if (file) $('pairs').value = await file.text();
});
$('ft-keep').addEventListener('click', async () => {
  if (!translator?.adapterBytes) return;
  const name = $('ft-name').value.trim() || 'my-adapter';
  await saveAdapter(name, translator.adapterBytes);
  localStorage.setItem(activeKey(), name);
  showActive(name);
  say(`Adapter ${name} kept in this browser.`);
  await refreshAdapters();
});
$('ft-export').addEventListener('click', () => {
  if (!translator?.adapterBytes) return;
  const url = URL.createObjectURL(new Blob([translator.adapterBytes], { type: 'application/octet-stream' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = `${$('ft-name').value.trim() || 'adapter'}.safetensors`;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
});
$('ft-remove').addEventListener('click', async () => {
  await translator?.useAdapter(null);
  localStorage.removeItem(activeKey());
  showActive(null);
  say('Adapter taken off: translating with the base model.');
});
$('ft-import').addEventListener('change', async (/** @type {Event} */ e) => {
  const input = /** @type {HTMLInputElement} */ (e.target);
  const file = input.files?.[0];
  input.value = '';
  if (!file || !translator) return;
  try {
    const bytes = new Uint8Array(await file.arrayBuffer());
    readAdapterManifest(bytes);
    await translator.useAdapter(bytes);
    const name = file.name.replace(/\.safetensors$/, '') || 'imported';
    await saveAdapter(name, bytes);
    localStorage.setItem(activeKey(), name);
    $('ft-name').value = name;
    showActive(name);
    say(`Adapter ${name} imported and in use.`);
    await refreshAdapters();
  } catch (err) {
    say(`Error: ${errText(err)}`);
  }
});

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
