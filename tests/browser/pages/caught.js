// Page-side helper for the browser tests (served at /test-pages/caught.js): what a call throws,
// as "Name: message", or "no error" — so a test can assert an error's kind and wording in one
// comparison.

/**
 * @param {() => Promise<unknown>} f
 * @returns {Promise<string>}
 */
export async function caught(f) {
  try {
    await f();
    return 'no error';
  } catch (e) {
    return `${/** @type {any} */ (e).name}: ${/** @type {any} */ (e).message}`;
  }
}
