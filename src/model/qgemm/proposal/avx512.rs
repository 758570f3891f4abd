//! The AVX-512 VNNI proposal kernel.

use super::{BLOCK, GROUP, GROUP_BLOCK_VALUES};
use std::arch::x86_64::*;

const QUADS: usize = BLOCK / 4;
/// How far ahead of the kernel the weights are prefetched, in bytes.
const PREFETCH_AHEAD: usize = 16 * GROUP_BLOCK_VALUES;

/// Word 2f of a quad vector takes feature f's pair from the first 32 bytes of two pair rows,
/// word 2f + 1 its pair from the next 32: four consecutive inputs of feature f per lane.
static QUAD_INDEX: [u16; 32] = {
    let mut t = [0u16; 32];
    let mut f = 0;
    while f < 16 {
        t[2 * f] = f as u16;
        t[2 * f + 1] = 16 + f as u16;
        f += 1;
    }
    t
};

/// `out.len()` rows × 16 proposals. Per block the 8 quads of weights are permuted once into
/// registers and serve every row: per row, 8 `vpdpbusd` (4 u8 × i8 products summed into each
/// i32 lane) against broadcast activations, in two chains.
/// Safety: the CPU has AVX-512 F/BW/VNNI; slices are as `portable_tile` takes them.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
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
    assert!(w.len() >= blocks * GROUP_BLOCK_VALUES && s.len() >= blocks * GROUP);
    assert!(offsets.len() >= blocks * GROUP);
    assert!(a.len() >= m * cols && da.len() >= m * blocks);
    let index = _mm512_loadu_si512(QUAD_INDEX.as_ptr().cast());
    for o in out.iter_mut() {
        *o = [0f32; GROUP];
    }
    let mut wq = [_mm512_setzero_si512(); QUADS];
    for b in 0..blocks {
        let wb = w.as_ptr().add(b * GROUP_BLOCK_VALUES);
        for q in 0..QUADS {
            wq[q] = _mm512_permutexvar_epi16(index, _mm512_loadu_si512(wb.add(q * 64).cast()));
            // The weights stream from memory once per product: ask for them ahead
            // (harmless past the end: prefetches do not fault).
            _mm_prefetch::<_MM_HINT_T0>(wb.wrapping_add(PREFETCH_AHEAD + q * 64).cast());
        }
        let ov = _mm512_loadu_si512(offsets.as_ptr().add(b * GROUP).cast());
        let sv = _mm512_loadu_ps(s.as_ptr().add(b * GROUP));
        let mut r = 0;
        while r + 4 <= m {
            rows::<4>(&wq, ov, sv, a, da, blocks, b, r, out);
            r += 4;
        }
        while r < m {
            rows::<1>(&wq, ov, sv, a, da, blocks, b, r, out);
            r += 1;
        }
    }
    m
}

/// Block `b` of rows `first .. first + R`: 2·R independent chains of `vpdpbusd` (the
/// scheduler overlaps them; one chain per row would wait on its own latency).
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn rows<const R: usize>(
    wq: &[__m512i; QUADS],
    ov: __m512i,
    sv: __m512,
    a: &[u8],
    da: &[f32],
    blocks: usize,
    b: usize,
    first: usize,
    out: &mut [[f32; GROUP]],
) {
    let cols = blocks * BLOCK;
    let mut sums = [[ov, _mm512_setzero_si512()]; R];
    for q in 0..QUADS {
        for i in 0..R {
            let at = a.as_ptr().add((first + i) * cols + b * BLOCK + 4 * q) as *const i32;
            let x = _mm512_set1_epi32(at.read_unaligned());
            sums[i][q % 2] = _mm512_dpbusd_epi32(sums[i][q % 2], x, wq[q]);
        }
    }
    for i in 0..R {
        let sum = _mm512_cvtepi32_ps(_mm512_add_epi32(sums[i][0], sums[i][1]));
        let d = _mm512_set1_ps(*da.get_unchecked((first + i) * blocks + b));
        let o = out[first + i].as_mut_ptr();
        _mm512_storeu_ps(
            o,
            _mm512_fmadd_ps(sum, _mm512_mul_ps(sv, d), _mm512_loadu_ps(o)),
        );
    }
}
