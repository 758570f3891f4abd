//! The WebAssembly relaxed-SIMD proposal kernel: `i32x4.relaxed_dot_i8x16_i7x16_add_s`, four
//! i8 × i7 products summed into each i32 lane in one instruction. What the engine makes of it
//! decides what it gains: in Chromium on a CPU with AVX-VNNI the relaxed build does +20 % at
//! batch 16 on 1 thread (+16 % on 2); with V8's AVX-VNNI lowering switched off, where it takes
//! `pmaddubsw` + `pmaddwd` + `paddd`, nothing, either way (BENCHMARKS.md, 2026-12-05 (late)).
//!
//! Deterministic on every engine: the spec leaves the result implementation-defined only when
//! an element of the second operand has its top bit set or a pair of products overflows i16.
//! The activations are 7-bit here (`Pass::levels` 63: u = q + 64 in 1 … 127) and a pair of
//! products stays within ±2 · 128 · 127 = 32 512.

use super::{BLOCK, GROUP};
use std::arch::wasm32::*;

const QUADS: usize = BLOCK / 4;

/// `out.len()` rows × 16 proposals, a quarter (4 outputs) at a time: per block the quarter's 8
/// quads of weights (4 consecutive inputs of each output, interleaved from the layout's pairs:
/// `i16x8.shuffle` low / high words) are formed once in registers and serve every row, each
/// row adding 8 dot products to its quarter in `out`.
/// Built under `--cfg marian_relaxed_simd` with the feature on this function, not build-wide
/// (`-C target-feature=+relaxed-simd` compiles std and every dependency with it). LLVM's
/// WebAssembly backend still applies features module-wide, so some of this crate's
/// pseudo-maxima (`f32x4.pmax`) become `f32x4.relaxed_max` (30 in the build, 78 build-wide):
/// they differ only where an operand is NaN or both are zeros, which finite scores never
/// reach (the tests compare every fixture's ids with the plain build's).
/// Safety: the engine runs relaxed SIMD (the worker loads this build only where
/// `WebAssembly.validate` accepts it); slices as `portable_tile`.
#[target_feature(enable = "relaxed-simd")]
pub unsafe fn tile(
    w: &[i8],
    s: &[f32],
    offsets: &[i32],
    a: &[u8],
    da: &[f32],
    blocks: usize,
    out: &mut [[f32; GROUP]],
) -> usize {
    let (cols, m) = (blocks * BLOCK, out.len());
    assert!(w.len() >= blocks * BLOCK * GROUP && s.len() >= blocks * GROUP);
    assert!(offsets.len() >= blocks * GROUP);
    assert!(a.len() >= m * cols && da.len() >= m * blocks);
    for o in out.iter_mut() {
        *o = [0f32; GROUP];
    }
    for quarter in 0..4 {
        // The quarter's 4 outputs are bytes 8·quarter .. of each pair row (16 outputs × 2).
        let (half, high) = (quarter / 2, quarter % 2 == 1);
        for b in 0..blocks {
            let wb = w.as_ptr().add(b * BLOCK * GROUP + 16 * half);
            let wq: [v128; QUADS] = std::array::from_fn(|k| {
                let (p0, p1) = (
                    v128_load(wb.add(2 * k * GROUP * 2) as *const v128),
                    v128_load(wb.add((2 * k + 1) * GROUP * 2) as *const v128),
                );
                if high {
                    i16x8_shuffle::<4, 12, 5, 13, 6, 14, 7, 15>(p0, p1)
                } else {
                    i16x8_shuffle::<0, 8, 1, 9, 2, 10, 3, 11>(p0, p1)
                }
            });
            let at = b * GROUP + 4 * quarter;
            let ov = v128_load(offsets.as_ptr().add(at) as *const v128);
            let sv = v128_load(s.as_ptr().add(at) as *const v128);
            for (r, o) in out.iter_mut().enumerate() {
                let ar = a.as_ptr().add(r * cols + b * BLOCK) as *const u32;
                let mut sum = [ov, i32x4_splat(0)];
                for (k, wq) in wq.iter().enumerate() {
                    let x = v128_load32_splat(ar.add(k));
                    sum[k % 2] = i32x4_relaxed_dot_i8x16_i7x16_add(*wq, x, sum[k % 2]);
                }
                let d = f32x4_splat(*da.get_unchecked(r * blocks + b));
                let scaled = f32x4_mul(
                    f32x4_convert_i32x4(i32x4_add(sum[0], sum[1])),
                    f32x4_mul(sv, d),
                );
                let op = o.as_mut_ptr().add(4 * quarter) as *mut v128;
                v128_store(op, f32x4_add(v128_load(op), scaled));
            }
        }
    }
    m
}
