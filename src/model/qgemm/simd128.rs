//! The WebAssembly SIMD128 kernel: rows two at a time × 16 outputs as four 4-lane quarters
//! (`i32x4.dot_i16x8_s` + add; the same bits as `portable_tile`).

use super::{Form, Level, BLOCK, GROUP, PAIRS};
use std::arch::wasm32::*;

/// Rows × 16 outputs as four 4-lane quarters; the same arithmetic as `portable_tile`. Rows go
/// two at a time, so each widened weight vector serves two rows (14 of the 16 SIMD registers
/// a wasm engine has on x86-64: 8 sums, 4 weights, 2 activation pairs).
pub fn tile<W: Level>(
    w: &[W],
    s: &[f32],
    a: &[i16],
    da: &[f32],
    blocks: usize,
    out: &mut [[f32; GROUP]],
) -> usize {
    let mut r = 0;
    while r + 2 <= out.len() {
        rows::<W, 2>(w, s, a, da, blocks, r, &mut out[r..r + 2]);
        r += 2;
    }
    if r < out.len() {
        rows::<W, 1>(w, s, a, da, blocks, r, &mut out[r..r + 1]);
    }
    out.len()
}

/// `R` rows from row `first` on.
#[inline(always)]
fn rows<W: Level, const R: usize>(
    w: &[W],
    s: &[f32],
    a: &[i16],
    da: &[f32],
    blocks: usize,
    first: usize,
    out: &mut [[f32; GROUP]],
) {
    let cols = blocks * BLOCK;
    let mut acc = [[f32x4_splat(0.0); 4]; R];
    for b in 0..blocks {
        let wb = &w[b * W::BLOCK_LEN..][..W::BLOCK_LEN];
        let ab: [&[i16]; R] =
            std::array::from_fn(|i| &a[(first + i) * cols + b * BLOCK..][..BLOCK]);
        let mut isum = [[i32x4_splat(0); 4]; R];
        for p in 0..PAIRS {
            // SAFETY: 32 levels inside `wb` (p < PAIRS, GROUP * 2 = 32).
            let wq = unsafe {
                let at = wb.as_ptr().add(p * GROUP * 2) as *const v128;
                if W::FORM == Form::I16 {
                    [
                        v128_load(at),
                        v128_load(at.add(1)),
                        v128_load(at.add(2)),
                        v128_load(at.add(3)),
                    ]
                } else {
                    let (w0, w1) = (v128_load(at), v128_load(at.add(1)));
                    [
                        i16x8_extend_low_i8x16(w0),
                        i16x8_extend_high_i8x16(w0),
                        i16x8_extend_low_i8x16(w1),
                        i16x8_extend_high_i8x16(w1),
                    ]
                }
            };
            for i in 0..R {
                let pair =
                    i32x4_splat((ab[i][2 * p] as u16 as i32) | ((ab[i][2 * p + 1] as i32) << 16));
                for q in 0..4 {
                    isum[i][q] = i32x4_add(isum[i][q], i32x4_dot_i16x8(wq[q], pair));
                }
            }
        }
        for i in 0..R {
            let d = f32x4_splat(da[(first + i) * blocks + b]);
            for q in 0..4 {
                let sq = &s[b * GROUP + 4 * q..][..4];
                let scale = f32x4_mul(f32x4(sq[0], sq[1], sq[2], sq[3]), d);
                acc[i][q] = f32x4_add(acc[i][q], f32x4_mul(f32x4_convert_i32x4(isum[i][q]), scale));
            }
        }
    }
    for (o, acc) in out.iter_mut().zip(&acc) {
        for q in 0..4 {
            o[4 * q] = f32x4_extract_lane::<0>(acc[q]);
            o[4 * q + 1] = f32x4_extract_lane::<1>(acc[q]);
            o[4 * q + 2] = f32x4_extract_lane::<2>(acc[q]);
            o[4 * q + 3] = f32x4_extract_lane::<3>(acc[q]);
        }
    }
}
