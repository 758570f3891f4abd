//! Front ends over the core. `wasm` is the browser's (wasm-bindgen); the CLI lives in src/bin.

pub mod wasm;
