//! The products' arithmetic below the matrix: activations rounded to 16 bits per block
//! (`QuantizedRows`), the instruction set chosen once (`Kernel`), row tiles, and the portable
//! reference tile every vector kernel matches bit for bit.

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
use super::levels::Form;
use super::levels::Level;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
use super::simd128;
#[cfg(target_arch = "x86_64")]
use super::{avx2, avx512};
use super::{BLOCK, GROUP, PAIRS, ROW_TILE};

/// Activations rounded to 16 bits per block of 32: what the kernel multiplies.
pub(super) struct QuantizedRows {
    /// [m, cols]
    pub(super) values: Vec<i16>,
    /// [m, blocks]
    pub(super) scales: Vec<f32>,
}

impl QuantizedRows {
    pub(super) fn of(x: &[f32], m: usize, cols: usize) -> Self {
        let blocks = cols / BLOCK;
        let mut values = vec![0i16; m * cols];
        let mut scales = vec![0f32; m * blocks];
        for ((xb, qb), s) in x
            .chunks_exact(BLOCK)
            .zip(values.chunks_exact_mut(BLOCK))
            .zip(scales.iter_mut())
        {
            *s = quantize_block(xb.try_into().unwrap(), qb.try_into().unwrap());
        }
        QuantizedRows { values, scales }
    }
}

/// Round one block of 32 activations to i16 (`q = round(x · 32767 / amax)`, halves away from
/// zero) and return its scale `amax / 32767`. Written in 8 independent lanes so that the
/// compiler vectorizes it (AVX2 and WebAssembly SIMD alike); plain IEEE f32 operations, so
/// every target rounds the same. A block holding NaN or ±inf gets scale NaN (its products are
/// NaN, as an f32 product would be).
pub(super) fn quantize_block(x: &[f32; BLOCK], q: &mut [i16; BLOCK]) -> f32 {
    let mut amax = [0f32; 8];
    let mut finite = [true; 8];
    for chunk in x.chunks_exact(8) {
        for l in 0..8 {
            let a = chunk[l].abs();
            finite[l] &= a <= f32::MAX;
            amax[l] = if a > amax[l] { a } else { amax[l] };
        }
    }
    if !finite.iter().all(|&f| f) {
        q.fill(0);
        return f32::NAN;
    }
    let amax = amax.iter().fold(0f32, |m, &a| if a > m { a } else { m });
    let inv = if amax > 0.0 { 32767.0 / amax } else { 0.0 };
    // Rounded in i32 first, narrowed after: two simple loops the compiler vectorizes.
    let mut wide = [0i32; BLOCK];
    for (w, &v) in wide.iter_mut().zip(x) {
        let t = v * inv;
        let r = t + 0.5f32.copysign(t);
        // SAFETY: x is finite and |x| ≤ amax, so |r| ≤ 32767.5 (+ rounding): in i32 range.
        #[cfg(not(target_arch = "wasm32"))]
        {
            *w = unsafe { r.to_int_unchecked::<i32>() };
        }
        // The saturating cast is the same value here; WebAssembly vectorizes it
        // (`i32x4.trunc_sat_f32x4_s`) where the unchecked one stays scalar.
        #[cfg(target_arch = "wasm32")]
        {
            *w = r as i32;
        }
    }
    for (qv, w) in q.iter_mut().zip(wide) {
        *qv = w as i16;
    }
    amax / 32767.0
}

/// The instruction set the products run on (chosen once; every choice gives the same bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    Simd128,
}

impl Kernel {
    /// Whether packed 12-bit levels (`Levels::Q8Nibbles`) multiply at least as fast as 16-bit
    /// ones on this kernel: only AVX-512's, whose tiles share each formed level among 16 rows.
    pub(super) fn forms_levels_cheaply(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if self == Kernel::Avx512Vnni {
            return true;
        }
        false
    }

    /// The fastest kernel this CPU runs, or the one `MARIAN_QGEMM` names when the CPU has it
    /// (`avx512vnni`, `avx2`, `simd128`, `portable`: for benchmarks; every one gives the same bits).
    pub(super) fn detect() -> Self {
        static CHOSEN: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let cap = std::env::var("MARIAN_QGEMM").unwrap_or_default();
            let all = Kernel::available();
            all.iter()
                .copied()
                .find(|k| k.name() == cap)
                .unwrap_or(all[0])
        })
    }

    /// The kernels this CPU can run, fastest first (the portable one always last).
    // Pushes under `cfg`s: no single `vec![]` literal fits every target.
    #[allow(clippy::vec_init_then_push)]
    pub(super) fn available() -> Vec<Kernel> {
        let mut all = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512vnni")
            {
                all.push(Kernel::Avx512Vnni);
            }
            if std::is_x86_feature_detected!("avx2") {
                all.push(Kernel::Avx2);
            }
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        all.push(Kernel::Simd128);
        all.push(Kernel::Portable);
        all
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Kernel::Portable => "portable",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni => "avx512vnni",
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Kernel::Simd128 => "simd128",
        }
    }

    /// One group's 16 outputs for every row, handed to `emit(row, lanes)`.
    pub(super) fn group<W: Level>(
        self,
        w: &[W],
        s: &[f32],
        xq: &QuantizedRows,
        m: usize,
        blocks: usize,
        emit: impl FnMut(usize, &[f32; GROUP]),
    ) {
        let cols = blocks * BLOCK;
        // AVX-512: 16 rows share each weight load while their activations fit in L1 (32 KB);
        // fewer than 4 rows stream weights faster through the AVX2 kernel (same bits).
        let tile_rows = match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni if cols <= 1024 => 16,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni => 8,
            _ => ROW_TILE,
        };
        // Fewer rows than a tile: the product streams weights it uses once, at memory speed, so
        // the kernel prefetches the next group's (contiguous after this one's) as it goes: the
        // output projection at batch 1 takes 2.0 -> 1.6 ms on an AVX2 EPYC. With more rows the
        // weights are reused from L1 and a prefetch only competes with them.
        #[cfg(target_arch = "x86_64")]
        let next = if m < ROW_TILE {
            w.as_ptr().wrapping_add(w.len())
        } else {
            std::ptr::null()
        };
        for_each_tile(m, tile_rows, emit, |r0, tile, out| {
            let a = &xq.values[r0 * cols..(r0 + tile) * cols];
            let da = &xq.scales[r0 * blocks..(r0 + tile) * blocks];
            // SAFETY (unsafe arms): the kernel is one `available` lists, so the CPU has its
            // features; the slices hold `tile` rows and `blocks` blocks as the kernels read them.
            match (self, tile) {
                #[cfg(target_arch = "x86_64")]
                (Kernel::Avx512Vnni, 16) => unsafe {
                    avx512::tile::<W, 16>(w, s, a, da, blocks, out)
                },
                #[cfg(target_arch = "x86_64")]
                (Kernel::Avx512Vnni, 8..=15) => unsafe {
                    avx512::tile::<W, 8>(w, s, a, da, blocks, out)
                },
                #[cfg(target_arch = "x86_64")]
                (Kernel::Avx512Vnni, 4..=7) => unsafe {
                    avx512::tile::<W, 4>(w, s, a, da, blocks, out)
                },
                #[cfg(target_arch = "x86_64")]
                (Kernel::Avx512Vnni, _) => unsafe {
                    avx2::tile::<W, 1>(w, s, a, da, blocks, out, next)
                },
                #[cfg(target_arch = "x86_64")]
                (Kernel::Avx2, 4) => unsafe { avx2::tile::<W, 4>(w, s, a, da, blocks, out, next) },
                #[cfg(target_arch = "x86_64")]
                (Kernel::Avx2, 2 | 3) => unsafe {
                    avx2::tile::<W, 2>(w, s, a, da, blocks, out, next)
                },
                #[cfg(target_arch = "x86_64")]
                (Kernel::Avx2, _) => unsafe { avx2::tile::<W, 1>(w, s, a, da, blocks, out, next) },
                #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
                // Packed 12-bit levels are an x86-64 form (`package::quant` stores them as i16
                // elsewhere); the reference computes them if ever given.
                (Kernel::Simd128, _) if W::FORM != Form::Q8Nibbles => {
                    simd128::tile(w, s, a, da, blocks, &mut out[..tile])
                }
                _ => portable_tile(w, s, a, da, blocks, &mut out[..tile]),
            }
        });
    }
}

/// Rows `0..m` in tiles of at most `tile_rows` (≤ 16), for the kernels of both passes:
/// `tile(first, rows, out)` computes up to `rows` rows from `first` into `out` and returns how
/// many it did (its own tile size); each is then handed to `emit(row, lanes)`.
pub(super) fn for_each_tile(
    m: usize,
    tile_rows: usize,
    mut emit: impl FnMut(usize, &[f32; GROUP]),
    mut tile: impl FnMut(usize, usize, &mut [[f32; GROUP]; 16]) -> usize,
) {
    let mut out = [[0f32; GROUP]; 16];
    let mut r0 = 0;
    while r0 < m {
        let done = tile(r0, tile_rows.min(m - r0), &mut out);
        for (r, lanes) in out[..done].iter().enumerate() {
            emit(r0 + r, lanes);
        }
        r0 += done;
    }
}

/// The reference: what every vector kernel computes, bit for bit, for `out.len()` rows. Each
/// kernel returns how many rows it computed (its tile; the caller goes on from there).
pub(super) fn portable_tile<W: Level>(
    w: &[W],
    s: &[f32],
    a: &[i16],
    da: &[f32],
    blocks: usize,
    out: &mut [[f32; GROUP]],
) -> usize {
    let cols = blocks * BLOCK;
    for (r, acc) in out.iter_mut().enumerate() {
        *acc = [0f32; GROUP];
        for b in 0..blocks {
            let wb = &w[b * W::BLOCK_LEN..][..W::BLOCK_LEN];
            let ab = &a[r * cols + b * BLOCK..][..BLOCK];
            let mut isum = [0i32; GROUP];
            for p in 0..PAIRS {
                for (lane, sum) in isum.iter_mut().enumerate() {
                    let k = p * GROUP * 2 + lane * 2;
                    *sum += W::level(wb, k) * ab[2 * p] as i32
                        + W::level(wb, k + 1) * ab[2 * p + 1] as i32;
                }
            }
            let d = da[r * blocks + b];
            for lane in 0..GROUP {
                acc[lane] += isum[lane] as f32 * (s[b * GROUP + lane] * d);
            }
        }
    }
    out.len()
}
