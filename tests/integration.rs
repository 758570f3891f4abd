//! Every native integration test, in one test binary: each `tests/<name>.rs` is a module here
//! (`cargo test --release --test integration <name>::` runs one file's tests). One binary links
//! the library and its dependencies once — with the release profile's thin LTO each extra test
//! binary cost about a minute of linking on a 2-core machine (twelve of them: 15 of CI's 90
//! minutes). Cargo.toml sets `autotests = false` so the modules are not built a second time as
//! binaries of their own. Tests from different modules run side by side (libtest's threads):
//! none may change process-wide state without restoring it for the others (see
//! fuzz_parsers.rs's panic hook).

mod common;

mod bad_input;
mod catalog_cli;
mod cli;
mod convert;
mod finetune;
mod fuzz_parsers;
mod gpu;
mod metrics;
mod multi_target;
mod parity;
mod protect;
mod streaming;
