//! Whether the relaxed-SIMD proposal pass pays off on this engine and CPU, measured once.
//!
//! `i32x4.relaxed_dot_i8x16_i7x16_add_s` is one instruction where the engine has an 8-bit dot
//! product for the CPU (V8 with AVX-VNNI: the Intel Xeon of 2026-12-05, +20 % at batch 16) and
//! three elsewhere; there the 7-bit pass is no faster than the 16-bit kernel it screens for, and
//! its selection costs on top: on an AMD EPYC (Zen 4, AVX-512 VNNI but no AVX-VNNI) the relaxed
//! build did 8–13 % worse at batch 16 than the plain one (BENCHMARKS.md, 2026-12-06). An engine
//! does not say which lowering it uses, so the two kernels are timed on the same synthetic
//! 16-row block (a few milliseconds, at the first greedy step of 4 rows or more) and the pass is
//! used only where its kernel takes under [`MAX_TIME_RATIO`] of the 16-bit one's time. The
//! tokens are the same either way (the pass only proposes; `proposal` module docs).

use super::{BLOCK, GROUP};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;
use web_time::Instant;

/// The relaxed kernel's time ÷ the 16-bit kernel's below which the pass is used: where the
/// engine has an 8-bit dot instruction the ratio is about 1/2 or less; the selection's own
/// cost (rounding to 7 bits, exact products for the candidates) needs that margin.
pub const MAX_TIME_RATIO: f64 = 0.7;

const BLOCKS: usize = 16;
const ROWS: usize = 16;
/// Tile calls per timing (each 16 × 16 × 512 products: about 10–30 µs; the whole measurement
/// takes 10–40 ms, against a browser clock's 5–100 µs resolution).
const CALLS: usize = 128;

/// Timed rounds per kernel (the best counts).
const ROUNDS: usize = 5;

/// 0: measure; 1: always use the pass; 2: never (`force`).
static FORCED: AtomicU8 = AtomicU8::new(0);
/// The measured ratio, once taken.
static RATIO: OnceLock<f64> = OnceLock::new();

/// `Some(true)`/`Some(false)`: use the pass always/never (for tests that must exercise it on
/// any CPU, and to measure what it gains); `None`: decide by measuring. Call it before the
/// first translation: a loaded model's output projection keeps the decision it made.
pub fn force(use_pass: Option<bool>) {
    FORCED.store(
        match use_pass {
            None => 0,
            Some(true) => 1,
            Some(false) => 2,
        },
        Ordering::Relaxed,
    );
}

/// Whether greedy steps use the relaxed proposal pass (`force`, else the measurement).
pub fn pays_off() -> bool {
    match FORCED.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => *RATIO.get_or_init(measure) < MAX_TIME_RATIO,
    }
}

/// What was decided and why, for diagnostics: "forced on", "forced off", "on (0.45)", "off
/// (1.08)" (the time ratio), or "not measured yet".
pub fn describe() -> String {
    match (FORCED.load(Ordering::Relaxed), RATIO.get()) {
        (1, _) => "forced on".into(),
        (2, _) => "forced off".into(),
        (_, Some(r)) if *r < MAX_TIME_RATIO => format!("on ({r:.2})"),
        (_, Some(r)) => format!("off ({r:.2})"),
        (_, None) => "not measured yet".into(),
    }
}

/// The relaxed kernel's time ÷ the 16-bit SIMD128 kernel's on one synthetic block of 16 rows ×
/// 16 outputs × 512 inputs, after an untimed run of each, the best of [`ROUNDS`] alternating
/// timings each.
fn measure() -> f64 {
    let cols = BLOCKS * BLOCK;
    let w: Vec<i8> = (0..BLOCKS * BLOCK * GROUP)
        .map(|i| ((i * 37) % 255) as i8)
        .collect();
    let s = vec![1e-3f32; BLOCKS * GROUP];
    let offsets = vec![0i32; BLOCKS * GROUP];
    let a7: Vec<u8> = (0..ROWS * cols)
        .map(|i| ((i * 13) % 127 + 1) as u8)
        .collect();
    let a16: Vec<i16> = (0..ROWS * cols).map(|i| (i * 7919) as i16).collect();
    let da = vec![1e-2f32; ROWS * BLOCKS];
    let mut out = vec![[0f32; GROUP]; ROWS];
    let mut time = |relaxed: bool| {
        let t0 = Instant::now();
        for _ in 0..CALLS {
            if relaxed {
                // SAFETY: this build runs only where the engine validated relaxed SIMD
                // (`relaxed::tile`); the slices hold ROWS rows of BLOCKS blocks.
                unsafe { super::relaxed::tile(&w, &s, &offsets, &a7, &da, BLOCKS, &mut out) };
            } else {
                super::super::simd128::tile::<i8>(&w, &s, &a16, &da, BLOCKS, &mut out);
            }
            std::hint::black_box(&mut out);
        }
        t0.elapsed().as_secs_f64()
    };
    // Untimed first: the engine compiles a function it has not run with its baseline compiler
    // (V8's Liftoff) and optimizes it once it is hot; the 16-bit kernel is hot already (the
    // encoder ran), the relaxed one has never run. The best of several rounds then takes each
    // kernel at its optimized speed even where the optimized code arrives late.
    time(true);
    time(false);
    let (mut relaxed, mut plain) = (f64::MAX, f64::MAX);
    for _ in 0..ROUNDS {
        relaxed = relaxed.min(time(true));
        plain = plain.min(time(false));
    }
    if plain > 0.0 {
        relaxed / plain
    } else {
        1.0
    }
}
