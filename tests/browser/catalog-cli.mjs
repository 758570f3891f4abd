// Node-side helper for the browser tests that write model catalogs with the real CLI
// (`marian-wasm catalog add`): 13-catalog, 14-pivot, 16-language-detection.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * Checks that the CLI and the fixture `packages` exist (failing with what to run), and returns a
 * maker of catalogs in the served `catalogs/` folder of the test packages: `catalog(name)` starts
 * an empty catalog file and returns it with `add(args)`, which runs `catalog add ARGS --catalog
 * FILE` and returns the CLI's output.
 * @param {{ assert: typeof import('node:assert/strict'), dirs: Record<string, string> }} ctx
 * @param {string[]} packages  e.g. ['tiny-opus-f32']
 */
export function catalogCli({ assert, dirs }, packages) {
  const cli = path.join(ROOT, 'target/release/marian-wasm');
  assert.ok(existsSync(cli), `${cli} missing: cargo build --release`);
  for (const p of packages) {
    assert.ok(existsSync(path.join(dirs.packages, p, 'manifest.json')), `${p} missing from ${dirs.packages} (scripts/test.sh converts the fixtures)`);
  }
  const folder = path.join(dirs.packages, 'catalogs');
  mkdirSync(folder, { recursive: true });
  return {
    /** A package's folder, for `catalog add`. @param {string} p */
    pkg: (p) => path.join(dirs.packages, p),
    /** @param {string} name */
    catalog(name) {
      const file = path.join(folder, name);
      rmSync(file, { force: true });
      const add = (/** @type {string[]} */ args) => execFileSync(cli, ['catalog', 'add', ...args, '--catalog', file], { encoding: 'utf8' }).trim();
      return { file, add };
    },
  };
}
