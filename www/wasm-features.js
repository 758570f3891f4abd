// What this engine's WebAssembly runs, for the model's worker (worker.js, which imports this file
// for its side effect) and the service worker (sw.js, importScripts): a classic script, so both
// can load it. Sets self.marianWasmFeatures = { relaxedSimd }.

(() => {
  /**
   * Whether the engine runs relaxed SIMD: an 82-byte module whose one function (59 bytes) is
   * `i32x4.relaxed_dot_i8x16_i7x16_add_s` (0xfd 0x93 0x02) over three constant vectors.
   */
  function relaxedSimd() {
    const zeros = [0xfd, 0x0c, ...new Array(16).fill(0)]; // v128.const 0
    const module = new Uint8Array([
      0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
      0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // type section: () -> v128
      0x03, 0x02, 0x01, 0x00, // function section: one function of type 0
      0x0a, 0x3d, 0x01, 0x3b, 0x00, ...zeros, ...zeros, ...zeros, 0xfd, 0x93, 0x02, 0x0b, // code
    ]);
    try {
      return WebAssembly.validate(module);
    } catch {
      return false;
    }
  }
  /** @type {any} */ (self).marianWasmFeatures = { relaxedSimd: relaxedSimd() };
})();
