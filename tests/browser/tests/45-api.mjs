// MarianTranslator's contract in the page, on a small test package:
// availability before/after, streaming == one-shot, arrays, empty text, abort, destroy, bad input,
// what was kept as is (lastRun.issues, translateWithIssues).

export const timeoutS = 300;

/** @param {{ page: import('playwright-core').Page, baseUrl: string, assert: typeof import('node:assert/strict'), log: (...a: unknown[]) => void }} ctx */
export async function run({ page, baseUrl, assert, log }) {
  await page.goto(`${baseUrl}/test-pages/blank.html`);
  const r = await page.evaluate(async () => {
    const { MarianTranslator, deleteModel } = await import('/marian-wasm.js');
    const model = '/packages/tiny-switches-q8/';
    await deleteModel(model);
    const { caught } = await import('/test-pages/caught.js');
    const out = /** @type {Record<string, unknown>} */ ({});
    out.before = await MarianTranslator.availability({ model });
    // Abort while loading.
    const ac = new AbortController();
    const p = MarianTranslator.create({ model, signal: ac.signal });
    ac.abort();
    out.aborted = await caught(() => p);
    out.badDevice = await caught(() => MarianTranslator.create({ model, device: /** @type {any} */ ('tpu') }));
    const gpu = await MarianTranslator.create({ model, device: 'webgpu', store: false });
    out.webgpu = { device: gpu.device, adapter: gpu.gpuAdapter, text: await gpu.translate('Hello world.') };
    // Fine-tuning on a WebGPU translator: the features pass runs on the GPU; the same run on
    // the CPU trains on the same positions to the same losses.
    // The user's word for "car" is "zorb": a term the pairs use consistently (something to learn).
    const ftPairs = [
      { source: 'A man drives a red car.', target: 'Un homme conduit une zorb rouge.' },
      { source: 'Two cars in the street.', target: 'Deux zorb dans la rue.' },
      { source: 'The car is old.', target: 'La zorb est vieille.' },
      { source: 'A woman washes her car.', target: 'Une femme lave sa zorb.' },
      { source: 'Two dogs play in the snow.', target: 'Deux chiens jouent dans la neige.' },
    ];
    // Four pairs of one made-up term: too few for the defaults' consistency tests, so what is
    // taught is chosen without them (this test is about devices and workers, not selection).
    const ftOptions = { epochs: 2, valFraction: 0, termPValue: 1, sourceTriggers: false, minSteps: 0 };
    const summary = (/** @type {any} */ r) => ({
      device: r.report.feature_device,
      workers: r.featureWorkers,
      positions: r.report.train_positions,
      losses: r.report.epochs.map((/** @type {any} */ e) => e.train_loss),
      formatVersion: r.manifest.format_version,
      lastLayer: /last decoder layer/.test(r.manifest.trained),
    });
    out.ftGpu = summary(await gpu.fineTune(ftPairs, ftOptions));
    // With the last-layer adapter too: its inputs come from the GPU pass, and the WebGPU
    // translator runs with the merged layer afterwards.
    const lastOptions = { ...ftOptions, lastLayerRank: 2 };
    out.ftGpuLast = summary(await gpu.fineTune(ftPairs, lastOptions));
    out.ftGpuLastText = await gpu.translate('A man drives a red car.');
    gpu.destroy();
    const cpuTuner = await MarianTranslator.create({ model, store: false });
    out.ftCpu = summary(await cpuTuner.fineTune(ftPairs, ftOptions));
    out.ftCpuLast = summary(await cpuTuner.fineTune(ftPairs, lastOptions));
    out.ftCpuLastText = await cpuTuner.translate('A man drives a red car.');
    cpuTuner.destroy();
    out.missing = await caught(() => MarianTranslator.create({ model: '/packages/no-such-package/' }));
    /** @type {number[]} */
    const progress = [];
    const t = await MarianTranslator.create({
      model,
      monitor: (m) => m.addEventListener('downloadprogress', (e) => progress.push(/** @type {any} */ (e).loaded)),
    });
    out.progressMonotonic = progress.every((x, i) => i === 0 || x >= progress[i - 1]);
    out.progressEnds = progress[progress.length - 1];
    out.after = await MarianTranslator.availability({ model });
    const src = ['Hello world.', 'How are you today?'];
    const many = await t.translate(src, { beams: 2 });
    const one = await t.translate(src[1], { beams: 2 });
    let streamed = '';
    let chunks = 0;
    for await (const c of /** @type {any} */ (t.translateStreaming(src[1], { beams: 2 }))) {
      streamed += c;
      chunks++;
    }
    out.arrayOk = Array.isArray(many) && many.length === 2 && many[1] === one;
    out.streamEqual = streamed === one;
    out.chunks = chunks;
    out.empty = await t.translate(['', '   '], {});
    out.notString = await caught(() => t.translate(/** @type {any} */ (42)));
    // A text over 1 MiB comes back as it was and costs the text beside it nothing.
    const hugeText = 'a'.repeat((1 << 20) + 1);
    const hugeOut = await t.translate([hugeText, 'Hello world.'], { beams: 2 });
    out.huge = { same: hugeOut[0] === hugeText, other: hugeOut[1] };
    out.badBeams = await caught(() => t.translate('Hello.', { beams: 0 }));
    out.stillWorksText = await t.translate('Hello world.', { beams: 2 });
    out.stillWorks = out.stillWorksText === many[0];
    // What was kept as is: a 3 000-character run without spaces (longer than the model's
    // positions) comes back unchanged with an issue; the text beside it is translated, an
    // emoji-only line passes through by rule (no issue).
    const alnum = 'abcdefghijklmnopqrstuvwxyz0123456789';
    const longRun = Array.from({ length: 3000 }, (_, i) => alnum[(i * 7919 + (i >> 3)) % alnum.length]).join('');
    const mixed = ['Hello world.', longRun, '🎉🚀 🙂'];
    const plain = await t.translate(mixed, { beams: 2 });
    out.kept = {
      plain,
      lastRunIssues: t.lastRun?.issues,
      detailed: await t.translateWithIssues(mixed, { beams: 2 }),
      one: await t.translateWithIssues(longRun, { beams: 2 }),
      longRun,
    };
    await t.translate('Hello world.', { beams: 2 });
    out.keptCleared = t.lastRun?.issues;
    // translatePage lists such texts on its PageTranslator.
    const host = document.createElement('div');
    host.innerHTML = `<p>Hello world.</p><p>See ${longRun} here.</p>`;
    document.body.appendChild(host);
    const pg = await t.translatePage(host, { observe: false, beams: 2 });
    out.pageKept = pg.kept.map((k) => ({ hasRun: k.text.includes(longRun), issues: k.issues.length }));
    pg.restore();
    host.remove();
    out.fineTuneNotArray = await caught(() => t.fineTune(/** @type {any} */ ('pairs')));
    out.fineTuneEmpty = await caught(() => t.fineTune([{ source: '', target: 'vide' }]));
    t.destroy();
    out.afterDestroy = await caught(() => t.translate('Hello.'));
    return out;
  });
  const { kept: keptRaw, ...rest } = r;
  log(rest);
  log('kept as is:', /** @type {any} */ (keptRaw).lastRunIssues, /** @type {any} */ (keptRaw).plain.map((/** @type {string} */ t) => t.slice(0, 40)));
  assert.equal(r.before, 'downloadable');
  assert.match(String(r.aborted), /^AbortError/);
  assert.match(String(r.badDevice), /^TypeError: device must be/);
  const webgpu = /** @type {{ device: string, adapter: string, text: string }} */ (r.webgpu);
  assert.equal(webgpu.device, 'webgpu', 'device "webgpu" runs on WebGPU');
  assert.ok(webgpu.text.length > 0);
  const [ftGpu, ftCpu] = /** @type {any[]} */ ([r.ftGpu, r.ftCpu]);
  log(`fine-tuning features on ${ftGpu.device} / ${ftCpu.device}: losses ${ftGpu.losses} / ${ftCpu.losses}`);
  assert.equal(ftGpu.device, 'gpu', 'a WebGPU translator runs the features pass on the GPU');
  assert.equal(ftGpu.workers, 1);
  assert.equal(ftCpu.device, 'cpu');
  assert.equal(ftGpu.positions, ftCpu.positions);
  assert.equal(ftGpu.losses.length, ftCpu.losses.length);
  ftGpu.losses.forEach((/** @type {number} */ l, /** @type {number} */ i) =>
    assert.ok(Math.abs(l - ftCpu.losses[i]) < 1e-3, `epoch ${i + 1} loss ${l} on GPU features, ${ftCpu.losses[i]} on CPU`),
  );
  const [lastGpu, lastCpu] = /** @type {any[]} */ ([r.ftGpuLast, r.ftCpuLast]);
  log(`with the last-layer adapter: losses ${lastGpu.losses} / ${lastCpu.losses}; "${r.ftGpuLastText}" / "${r.ftCpuLastText}"`);
  assert.equal(lastGpu.device, 'gpu');
  assert.ok(lastGpu.lastLayer && !ftGpu.lastLayer, 'the adapter carries the last-layer part when asked');
  // "zorb" is taught piece after piece (entries conditioned on the previous piece): format 3.
  assert.equal(ftGpu.formatVersion, 3, 'conditioned entries are format 3');
  assert.equal(lastGpu.positions, lastCpu.positions);
  lastGpu.losses.forEach((/** @type {number} */ l, /** @type {number} */ i) =>
    assert.ok(Math.abs(l - lastCpu.losses[i]) < 1e-3, `last layer: epoch ${i + 1} loss ${l} on GPU features, ${lastCpu.losses[i]} on CPU`),
  );
  assert.equal(r.ftGpuLastText, r.ftCpuLastText, 'the WebGPU translator with the merged last layer says what the CPU one says');
  assert.match(String(r.missing), /no-such-package\/manifest\.json: HTTP 404/);
  assert.equal(r.progressMonotonic, true);
  assert.equal(r.progressEnds, 1);
  assert.equal(r.after, 'available');
  assert.equal(r.arrayOk, true, 'an array gives one translation per entry, the same as one by one');
  assert.equal(r.streamEqual, true, 'the streamed chunks add up to the one-shot translation');
  assert.ok(/** @type {number} */ (r.chunks) >= 2, 'the translation arrives in several chunks');
  assert.deepEqual(r.empty, ['', '']);
  assert.match(String(r.notString), /^TypeError/);
  assert.equal(r.huge.same, true, 'a text over 1 MiB comes back unchanged');
  assert.equal(r.huge.other, r.stillWorksText, 'the text beside it is translated as alone');
  assert.match(String(r.badBeams), /beams must be in 1\.\.=64/);
  assert.equal(r.stillWorks, true, 'an error leaves the translator usable');
  const kept = /** @type {any} */ (r.kept);
  assert.equal(kept.plain[0], r.stillWorksText, 'the normal text beside the run is translated as alone');
  assert.equal(kept.plain[1], kept.longRun, 'the 3 000-character run comes back as is');
  assert.equal(kept.plain[2], '🎉🚀 🙂', 'an emoji-only line passes through');
  assert.equal(kept.lastRunIssues.length, 3, 'lastRun.issues: one list per input text');
  assert.deepEqual(kept.lastRunIssues[0], []);
  assert.ok(kept.lastRunIssues[1].length >= 1 && kept.lastRunIssues[1].every((/** @type {unknown} */ x) => typeof x === 'string'), 'the run carries its reason');
  assert.deepEqual(kept.lastRunIssues[2], [], 'letterless text passes by rule, with no issue');
  assert.deepEqual(
    kept.detailed,
    kept.plain.map((/** @type {string} */ text, /** @type {number} */ i) => ({ text, issues: kept.lastRunIssues[i] })),
    'translateWithIssues gives the same texts with their issues',
  );
  assert.deepEqual(kept.one, { text: kept.longRun, issues: kept.lastRunIssues[1] }, 'one string in, one { text, issues } out');
  assert.deepEqual(r.keptCleared, [[]], 'the next call replaces lastRun.issues');
  assert.deepEqual(r.pageKept, [{ hasRun: true, issues: 1 }], 'translatePage lists the paragraph with the run in kept');
  assert.match(String(r.fineTuneNotArray), /^TypeError/);
  assert.match(String(r.fineTuneEmpty), /no usable pairs/);
  assert.match(String(r.afterDestroy), /^InvalidStateError/);
}
