// Memory stays flat over 1 000 translations (issue 18): after a warm-up over the same texts,
// 1 000 translate() calls (MARIAN_MEMORY_CALLS) on a small test package (single texts, every 50th a batch of four,
// every 100th with a word kept as is) must not grow the worker's WebAssembly memory (it never
// shrinks, so any growth after the warm-up is new peak use) nor the page's JS heap (after a
// garbage collection, through the DevTools protocol) by more than a small bound: a leak of 512
// bytes a call would cross either.

export const timeoutS = 180;

const CALLS = Number(process.env.MARIAN_MEMORY_CALLS || 1000);
/** Growth allowed after the warm-up. */
// Measured: the wasm memory grows by 0-4 pages (64 KiB) in the first ~1 500 calls after the
// warm-up and then stays put (6 000 calls: +256 KiB by call 1 400, flat after) — the allocator
// settling under two threads, not a leak.
const WASM_SLACK = 512 << 10;
const HEAP_SLACK = 512 << 10;

/** @param {{ page: import('playwright-core').Page, baseUrl: string, assert: typeof import('node:assert/strict'), log: (...a: unknown[]) => void }} ctx */
export async function run({ page, baseUrl, assert, log }) {
  await page.goto(`${baseUrl}/test-pages/blank.html`);
  const cdp = await page.context().newCDPSession(page);
  const heap = async () => {
    await cdp.send('HeapProfiler.collectGarbage');
    return (await cdp.send('Runtime.getHeapUsage')).usedSize;
  };
  await page.evaluate(async () => {
    const { MarianTranslator } = await import('/marian-wasm.js');
    const w = /** @type {any} */ (window);
    w.t = await MarianTranslator.create({ model: '/packages/tiny-opus-q8/', store: false });
    // 100 short texts from a word list (seeded), and a long unbroken word kept as is.
    const subjects = ['A man', 'Two women', 'A little girl', 'Three dogs', 'An old woman', 'A boy', 'People'];
    const verbs = ['is walking', 'are playing', 'is sitting', 'are running', 'is riding a bike', 'is eating'];
    const places = ['in the park.', 'on the beach.', 'near a red car.', 'in the snow.', 'at a market.', 'under a tree.'];
    let seed = 18;
    const pick = (/** @type {string[]} */ a) => a[(seed = (seed * 1103515245 + 12345) % 2 ** 31) % a.length];
    w.texts = Array.from({ length: 100 }, () => `${pick(subjects)} ${pick(verbs)} ${pick(places)}`);
    w.longWord = 'x9'.repeat(400);
    /** One call: call i of a sequence. @param {number} i */
    w.call = async (/** @type {number} */ i) => {
      const text = w.texts[i % w.texts.length];
      if (i % 50 === 49) return w.t.translate(w.texts.slice(i % 90, (i % 90) + 4));
      if (i % 100 === 99) return w.t.translate(`${text} ${w.longWord}`);
      return w.t.translate(text);
    };
    // Warm-up: every text and every kind of call, twice.
    for (let i = 0; i < 200; i++) await w.call(i);
  });
  const wasm = () => page.evaluate(async () => (await /** @type {any} */ (window).t.memoryUsage()).wasmBytes);
  const wasm0 = await wasm();
  const heap0 = await heap();
  const t0 = Date.now();
  const { last, series } = await page.evaluate(async (calls) => {
    const w = /** @type {any} */ (window);
    let out;
    /** wasm memory every 100 calls @type {number[]} */
    const series = [];
    for (let i = 0; i < calls; i++) {
      out = await w.call(i);
      if (i % 100 === 99) series.push((await w.t.memoryUsage()).wasmBytes);
    }
    return { last: out, series };
  }, CALLS);
  const secs = (Date.now() - t0) / 1000;
  log(`wasm memory every 100 calls (KiB over the warm-up): ${series.map((b) => (b - wasm0) / 1024)}`);
  const wasm1 = await wasm();
  const heap1 = await heap();
  await page.evaluate(() => /** @type {any} */ (window).t.destroy());
  const mb = (/** @type {number} */ b) => `${(b / 2 ** 20).toFixed(2)} MB`;
  log(`${CALLS} calls in ${secs.toFixed(1)} s; wasm memory ${mb(wasm0)} -> ${mb(wasm1)} (+${wasm1 - wasm0} B); page JS heap ${mb(heap0)} -> ${mb(heap1)} (${heap1 - heap0 >= 0 ? '+' : ''}${heap1 - heap0} B); last output ${JSON.stringify(last)}`);
  assert.ok(Array.isArray(last) && last.length === 4 && last.every((x) => typeof x === 'string' && x.length > 0), 'the last call (a batch) was translated');
  assert.ok(wasm0 > 0, 'the worker reports its wasm memory');
  assert.ok(wasm1 - wasm0 <= WASM_SLACK, `the worker's wasm memory grew by ${wasm1 - wasm0} bytes over ${CALLS} calls`);
  assert.ok(heap1 - heap0 <= HEAP_SLACK, `the page's JS heap grew by ${heap1 - heap0} bytes over ${CALLS} calls`);
}
