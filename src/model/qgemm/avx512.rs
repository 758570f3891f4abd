//! The AVX-512 VNNI kernel: 4, 8 or 16 rows × 16 outputs, one `vpdpwssd` a row and pair (the
//! same bits as `portable_tile`).

use super::{Form, Level, BLOCK, GROUP, GROUP_BLOCK_VALUES, PAIRS};
use std::arch::x86_64::*;

/// `R` rows × 16 outputs, one 16-lane vector each; `vpdpwssd` adds the two i16 products
/// of every lane to its i32 sum exactly as `madd` + `add` do.
/// Safety: the CPU has AVX-512 F/BW/VNNI; slices are as `portable_tile` takes them.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub unsafe fn tile<W: Level, const R: usize>(
    w: &[W],
    s: &[f32],
    a: &[i16],
    da: &[f32],
    blocks: usize,
    out: &mut [[f32; GROUP]],
) -> usize {
    let cols = blocks * BLOCK;
    assert!(w.len() >= blocks * W::BLOCK_LEN && s.len() >= blocks * GROUP);
    assert!(a.len() >= R * cols && da.len() >= R * blocks && out.len() >= R);
    let mut acc = [_mm512_setzero_ps(); R];
    for b in 0..blocks {
        let wb = w.as_ptr().add(b * W::BLOCK_LEN);
        let mut isum = [_mm512_setzero_si512(); R];
        for p in 0..PAIRS {
            let wv = match W::FORM {
                Form::I16 => _mm512_loadu_si512(wb.add(p * 32) as *const __m512i),
                Form::I8 => {
                    _mm512_cvtepi8_epi16(_mm256_loadu_si256(wb.add(p * 32) as *const __m256i))
                }
                Form::Q8Nibbles => {
                    let q = _mm512_slli_epi16::<4>(_mm512_cvtepi8_epi16(_mm256_loadu_si256(
                        wb.add(p * 32) as *const __m256i,
                    )));
                    let n = _mm256_cvtepu8_epi16(_mm_loadu_si128(
                        wb.add(GROUP_BLOCK_VALUES + p * GROUP) as *const __m128i,
                    ));
                    let low = _mm256_and_si256(n, _mm256_set1_epi16(15));
                    let high = _mm256_srli_epi16::<4>(n);
                    let r = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(low), high);
                    _mm512_add_epi16(q, _mm512_sub_epi16(r, _mm512_set1_epi16(8)))
                }
            };
            for r in 0..R {
                let pair =
                    (a.as_ptr().add(r * cols + b * BLOCK + 2 * p) as *const i32).read_unaligned();
                isum[r] = _mm512_dpwssd_epi32(isum[r], wv, _mm512_set1_epi32(pair));
            }
        }
        let sv = _mm512_loadu_ps(s.as_ptr().add(b * GROUP));
        for r in 0..R {
            let d = _mm512_set1_ps(*da.get_unchecked(r * blocks + b));
            acc[r] = _mm512_add_ps(
                acc[r],
                _mm512_mul_ps(_mm512_cvtepi32_ps(isum[r]), _mm512_mul_ps(sv, d)),
            );
        }
    }
    for r in 0..R {
        _mm512_storeu_ps(out[r].as_mut_ptr(), acc[r]);
    }
    R
}
