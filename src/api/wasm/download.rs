//! `Translator.fromUrl`'s download: a package's files fetched with streamed progress. (The
//! product's loader is www/store.js, which also caches and verifies; this keeps the raw wasm
//! API usable without it.)

use super::js_err;
use js_sys::{Function, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

/// GET `url` with the global `fetch` (window or worker), streaming the body so progress
/// can be reported; `on_chunk(n)` is called with each chunk's length. `expected_len` (bytes,
/// 0 when unknown) is reserved up front: a buffer grown by doubling held up to 1.5 times a
/// weights file at once (old and new buffer) and kept the slack, and a wasm heap never
/// shrinks, so that was the worker's peak memory.
pub(super) async fn fetch_bytes(
    url: &str,
    expected_len: usize,
    mut on_chunk: impl FnMut(usize),
) -> Result<Vec<u8>, JsError> {
    let global = js_sys::global();
    let fetch: Function = Reflect::get(&global, &"fetch".into())
        .map_err(|_| js_err("no fetch() in this context"))?
        .dyn_into()
        .map_err(|_| js_err("fetch is not a function"))?;
    let resp = JsFuture::from(
        fetch
            .call1(&global, &url.into())
            .map_err(|e| js_err(format!("{url}: {e:?}")))?
            .dyn_into::<js_sys::Promise>()
            .map_err(|_| js_err("fetch did not return a promise"))?,
    )
    .await
    .map_err(|e| js_err(format!("{url}: network error {e:?}")))?;
    let status = Reflect::get(&resp, &"status".into())
        .ok()
        .and_then(|s| s.as_f64())
        .unwrap_or(0.0);
    if !(200.0..300.0).contains(&status) {
        return Err(js_err(format!("{url}: HTTP {status}")));
    }
    let body = Reflect::get(&resp, &"body".into()).map_err(|_| js_err("response has no body"))?;
    let get_reader: Function = Reflect::get(&body, &"getReader".into())
        .map_err(|_| js_err("response body is not a stream"))?
        .dyn_into()
        .map_err(|_| js_err("response body is not a stream"))?;
    let reader = get_reader
        .call0(&body)
        .map_err(|e| js_err(format!("{e:?}")))?;
    let read: Function = Reflect::get(&reader, &"read".into())
        .map_err(|_| js_err("stream reader has no read()"))?
        .dyn_into()
        .map_err(|_| js_err("stream reader has no read()"))?;
    let mut out = Vec::new();
    // A manifest could state any size: when that much cannot be had, grow as the bytes come.
    let _ = out.try_reserve_exact(expected_len);
    loop {
        let promise: js_sys::Promise = read
            .call0(&reader)
            .map_err(|e| js_err(format!("{e:?}")))?
            .dyn_into()
            .map_err(|_| js_err("read() did not return a promise"))?;
        let chunk = JsFuture::from(promise)
            .await
            .map_err(|e| js_err(format!("{url}: download interrupted {e:?}")))?;
        if Reflect::get(&chunk, &"done".into())
            .ok()
            .and_then(|d| d.as_bool())
            .unwrap_or(true)
        {
            break;
        }
        let value: Uint8Array = Reflect::get(&chunk, &"value".into())
            .map_err(|_| js_err("stream chunk without value"))?
            .dyn_into()
            .map_err(|_| js_err("stream chunk is not bytes"))?;
        let n = value.length() as usize;
        let start = out.len();
        out.resize(start + n, 0);
        value.copy_to(&mut out[start..]);
        on_chunk(n);
    }
    Ok(out)
}
