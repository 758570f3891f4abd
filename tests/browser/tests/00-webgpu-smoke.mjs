// Smoke test of the browser environment itself: served page is cross-origin isolated, the static
// server gives wasm the application/wasm type, and headless Chromium exposes a WebGPU adapter
// (SwiftShader, a CPU implementation, thanks to --enable-unsafe-webgpu).

export const timeoutS = 120;

/** @param {{ page: import('playwright-core').Page, baseUrl: string, assert: typeof import('node:assert/strict'), log: (...a: unknown[]) => void }} ctx */
export async function run({ page, baseUrl, assert, log }) {
  const resp = await page.goto(`${baseUrl}/test-pages/blank.html`);
  assert.equal(resp?.status(), 200, 'test page served');
  assert.equal(resp?.headers()['cross-origin-opener-policy'], 'same-origin');
  assert.equal(resp?.headers()['cross-origin-embedder-policy'], 'require-corp');

  const env = await page.evaluate(async () => {
    // instantiateStreaming rejects unless the response is served as application/wasm.
    const wasmResp = await fetch('/test-pages/empty.wasm');
    const wasmType = wasmResp.headers.get('content-type');
    const { instance } = await WebAssembly.instantiateStreaming(wasmResp);
    const simd = WebAssembly.validate(
      // (module (func (result v128) (v128.const i32x4 0 0 0 0)))
      new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 22, 1, 20, 0,
        253, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 11]),
    );
    const out = {
      userAgent: navigator.userAgent,
      isSecureContext,
      crossOriginIsolated,
      sharedArrayBuffer: typeof SharedArrayBuffer === 'function',
      hardwareConcurrency: navigator.hardwareConcurrency,
      wasmType,
      wasmInstantiated: instance instanceof WebAssembly.Instance,
      wasmSimd: simd,
      hasGpu: 'gpu' in navigator,
      adapter: /** @type {null | Record<string, unknown>} */ (null),
      device: false,
    };
    if (!navigator.gpu) return out;
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) return out;
    const info = adapter.info ?? {};
    out.adapter = {
      vendor: info.vendor,
      architecture: info.architecture,
      device: info.device,
      description: info.description,
      isFallbackAdapter: /** @type {any} */ (adapter).isFallbackAdapter ?? /** @type {any} */ (info).isFallbackAdapter,
      subgroupMinSize: /** @type {any} */ (info).subgroupMinSize,
      subgroupMaxSize: /** @type {any} */ (info).subgroupMaxSize,
      features: [...adapter.features].sort(),
      maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
      maxBufferSize: adapter.limits.maxBufferSize,
      maxComputeWorkgroupSizeX: adapter.limits.maxComputeWorkgroupSizeX,
      maxComputeInvocationsPerWorkgroup: adapter.limits.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize,
    };
    // Prove the adapter is usable: a device and a trivial compute dispatch that doubles 4 numbers.
    const device = await adapter.requestDevice();
    const module = device.createShaderModule({
      code: `@group(0) @binding(0) var<storage, read_write> v: array<f32>;
             @compute @workgroup_size(4) fn main(@builtin(global_invocation_id) id: vec3<u32>) {
               v[id.x] = v[id.x] * 2.0;
             }`,
    });
    const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
    const buf = device.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
    device.queue.writeBuffer(buf, 0, new Float32Array([1, 2, 3, 4]));
    const read = device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const bind = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: buf } }] });
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bind);
    pass.dispatchWorkgroups(1);
    pass.end();
    enc.copyBufferToBuffer(buf, 0, read, 0, 16);
    device.queue.submit([enc.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    out.device = true;
    out.computeResult = [...new Float32Array(read.getMappedRange().slice(0))];
    read.unmap();
    device.destroy();
    return out;
  });

  log('userAgent:', env.userAgent);
  log('crossOriginIsolated:', env.crossOriginIsolated, 'hardwareConcurrency:', env.hardwareConcurrency, 'wasm SIMD:', env.wasmSimd);
  log('WebGPU adapter:', env.adapter);
  log('compute result:', /** @type {any} */ (env).computeResult);

  assert.ok(env.isSecureContext, 'page is a secure context (127.0.0.1)');
  assert.ok(env.crossOriginIsolated, 'COOP/COEP make the page cross-origin isolated');
  assert.ok(env.sharedArrayBuffer, 'SharedArrayBuffer available');
  assert.equal(env.wasmType, 'application/wasm', 'static server serves .wasm as application/wasm');
  assert.ok(env.wasmInstantiated, 'WebAssembly.instantiateStreaming works');
  assert.ok(env.wasmSimd, 'wasm SIMD128 supported');
  assert.ok(env.hasGpu, 'navigator.gpu exists');
  assert.ok(env.adapter, 'navigator.gpu.requestAdapter() returned an adapter (needs --enable-unsafe-webgpu)');
  assert.ok(env.device, 'adapter.requestDevice() works');
  assert.deepEqual(/** @type {any} */ (env).computeResult, [2, 4, 6, 8], 'a compute shader ran');
}
