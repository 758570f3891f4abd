// WebGPU in the browser (SwiftShader in headless Chromium): a device lost in the middle of a translation is
// survived (the call completes on the CPU and says so), "auto" picks a device and tells why not the
// GPU when it does not, an unknown device name is refused. Token parity on WebGPU is in 10-translate-parity.

export const timeoutS = 180;

/** @param {{ page: import('playwright-core').Page, baseUrl: string, assert: typeof import('node:assert/strict'), log: (...a: unknown[]) => void }} ctx */
export async function run({ page, baseUrl, assert, log }) {
  await page.goto(`${baseUrl}/test-pages/blank.html`);
  const r = await page.evaluate(async (pkgUrl) => {
    const mod = await import('/pkg/marian_wasm.js');
    await mod.default();
    const { loadTranslator } = await import('/store.js');
    const load = (/** @type {string} */ device) => loadTranslator(mod, pkgUrl, { device, store: false });
    const get = (/** @type {any} */ o, /** @type {string} */ k) => (o instanceof Map ? o.get(k) : o?.[k]);
    const texts = ['A man is riding a bicycle.', 'Two dogs play in the snow.', 'The girl reads a book.'];
    const opts = { beams: 2 };
    const cpu = await load('wasm');
    const want = Array.from(get(await cpu.translateWithIds(texts, opts), 'texts'), String);
    cpu.free();

    const t = await load('webgpu');
    const adapter = t.gpuAdapter;
    const first = await t.translateWithIds(texts, opts);
    t.simulateGpuLoss(3); // lost at the third decoding step of the next call
    const after = await t.translateWithIds(texts, opts);
    const deviceAfter = t.device;
    t.free();

    const auto = await load('auto');
    const autoDevice = auto.device;
    const autoWhy = auto.gpuUnavailable ?? null;
    const autoTexts = Array.from(get(await auto.translateWithIds(texts, opts), 'texts'), String);
    auto.free();

    let unknown = '';
    try {
      await load('tpu');
    } catch (e) {
      unknown = String(/** @type {any} */ (e)?.message ?? e);
    }
    return {
      want,
      adapter,
      first: { device: get(first, 'device'), texts: Array.from(get(first, 'texts'), String) },
      after: { device: get(after, 'device'), texts: Array.from(get(after, 'texts'), String) },
      deviceAfter,
      autoDevice,
      autoWhy,
      autoTexts,
      unknown,
    };
  }, `${baseUrl}/packages/tiny-opus-f32/`);
  log(`adapter: ${r.adapter}; auto chose ${r.autoDevice}${r.autoWhy ? ` (${r.autoWhy})` : ''}`);
  assert.equal(r.first.device, 'webgpu');
  assert.deepEqual(r.first.texts, r.want, 'WebGPU output equals the CPU output (f32 package)');
  assert.equal(r.after.device, 'wasm', 'after the device is lost the CPU serves');
  assert.deepEqual(r.after.texts, r.want, 'the translation completes correctly on the CPU');
  assert.equal(r.deviceAfter, 'wasm');
  assert.ok(['wasm', 'webgpu'].includes(r.autoDevice));
  if (r.autoDevice === 'wasm') assert.ok(r.autoWhy, 'auto on the CPU says why not WebGPU');
  assert.deepEqual(r.autoTexts, r.want);
  assert.match(r.unknown, /unknown device 'tpu'/);
}
