//! The AVX2 kernel: rows × 16 outputs as two 8-lane halves (`pmaddwd` + add), the batch-1
//! path on every x86-64 CPU (the same bits as `portable_tile`).

use super::{Form, Level, BLOCK, GROUP, GROUP_BLOCK_VALUES, PAIRS};
use std::arch::x86_64::*;

/// `R` rows × 16 outputs as two 8-lane halves (`out` holds at least R rows). Unless it is
/// null, `prefetch` is where the next weights to be read start: its first `w.len()` bytes
/// are fetched into cache block by block (a hint only: it never faults, any address will do).
/// Safety: the CPU has AVX2; slices are as `portable_tile` takes them.
#[target_feature(enable = "avx2")]
pub unsafe fn tile<W: Level, const R: usize>(
    w: &[W],
    s: &[f32],
    a: &[i16],
    da: &[f32],
    blocks: usize,
    out: &mut [[f32; GROUP]],
    prefetch: *const W,
) -> usize {
    let cols = blocks * BLOCK;
    assert!(w.len() >= blocks * W::BLOCK_LEN && s.len() >= blocks * GROUP);
    assert!(a.len() >= R * cols && da.len() >= R * blocks && out.len() >= R);
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    for b in 0..blocks {
        let wb = w.as_ptr().add(b * W::BLOCK_LEN);
        if !prefetch.is_null() {
            let bytes = prefetch.wrapping_add(b * W::BLOCK_LEN) as *const i8;
            for line in 0..W::BLOCK_LEN * size_of::<W>() / 64 {
                _mm_prefetch::<_MM_HINT_T0>(bytes.wrapping_add(line * 64));
            }
        }
        let mut isum = [[_mm256_setzero_si256(); 2]; R];
        for p in 0..PAIRS {
            let (lo, hi) = match W::FORM {
                Form::I16 => (
                    _mm256_loadu_si256(wb.add(p * 32) as *const __m256i),
                    _mm256_loadu_si256(wb.add(p * 32 + 16) as *const __m256i),
                ),
                Form::I8 => (
                    _mm256_cvtepi8_epi16(_mm_loadu_si128(wb.add(p * 32) as *const __m128i)),
                    _mm256_cvtepi8_epi16(_mm_loadu_si128(wb.add(p * 32 + 16) as *const __m128i)),
                ),
                Form::Q8Nibbles => {
                    let q = |at: usize| {
                        _mm256_slli_epi16::<4>(_mm256_cvtepi8_epi16(_mm_loadu_si128(
                            wb.add(at) as *const __m128i
                        )))
                    };
                    let n = _mm256_cvtepu8_epi16(_mm_loadu_si128(
                        wb.add(GROUP_BLOCK_VALUES + p * GROUP) as *const __m128i,
                    ));
                    let eight = _mm256_set1_epi16(8);
                    let low = _mm256_and_si256(n, _mm256_set1_epi16(15));
                    let high = _mm256_srli_epi16::<4>(n);
                    (
                        _mm256_add_epi16(q(p * 32), _mm256_sub_epi16(low, eight)),
                        _mm256_add_epi16(q(p * 32 + 16), _mm256_sub_epi16(high, eight)),
                    )
                }
            };
            for r in 0..R {
                let pair =
                    (a.as_ptr().add(r * cols + b * BLOCK + 2 * p) as *const i32).read_unaligned();
                let pair = _mm256_set1_epi32(pair);
                isum[r][0] = _mm256_add_epi32(isum[r][0], _mm256_madd_epi16(lo, pair));
                isum[r][1] = _mm256_add_epi32(isum[r][1], _mm256_madd_epi16(hi, pair));
            }
        }
        let s_lo = _mm256_loadu_ps(s.as_ptr().add(b * GROUP));
        let s_hi = _mm256_loadu_ps(s.as_ptr().add(b * GROUP + 8));
        for r in 0..R {
            let d = _mm256_set1_ps(*da.get_unchecked(r * blocks + b));
            acc[r][0] = _mm256_add_ps(
                acc[r][0],
                _mm256_mul_ps(_mm256_cvtepi32_ps(isum[r][0]), _mm256_mul_ps(s_lo, d)),
            );
            acc[r][1] = _mm256_add_ps(
                acc[r][1],
                _mm256_mul_ps(_mm256_cvtepi32_ps(isum[r][1]), _mm256_mul_ps(s_hi, d)),
            );
        }
    }
    for r in 0..R {
        _mm256_storeu_ps(out[r].as_mut_ptr(), acc[r][0]);
        _mm256_storeu_ps(out[r].as_mut_ptr().add(8), acc[r][1]);
    }
    R
}
