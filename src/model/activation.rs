//! `exp` and the feed-forward block's SiLU over whole slices of f32, in loops the compiler
//! vectorizes (AVX-512 / AVX2 natively, SIMD128 in WebAssembly), with the same bits on every
//! target.
//!
//! Written here because the scalar `expf` (glibc natively, compiler-builtins' libm in
//! WebAssembly) was 3–4.5 % of a batch-16 step on both (BENCHMARKS.md, 2026-12-05 (evening) and
//! 2026-12-06 (later)), and candle's `silu` splits tensors of 64 Ki elements or more over its own
//! spinning thread pool (unless `CANDLE_NUM_THREADS=1`, as the CLI sets), outside the row shards'
//! control. The vectorized `exp` of `wide` would
//! do the arithmetic, but it fuses multiply-adds only where the target has FMA (so the bits would
//! depend on the CPU) and returns 0 above 87.3.
//!
//! The method is Cephes' `expf` (S. L. Moshier, Cephes Math Library 2.2, public domain):
//! `x = n·ln 2 + r` with `n = round(x / ln 2)` and ln 2 in two parts (Cody–Waite), so
//! `|r| ≤ ln 2 / 2`; `e^r ≈ 1 + r + r²·P(r)` with Cephes' degree-5 minimax P; `2^n` built in the
//! exponent bits. Rust never contracts `a·b + c` into a fused multiply-add, so each operation
//! rounds once on every target. Measured against f64 `exp` (test below): at most 2 ulp.

use rayon::prelude::*;

/// Inputs beyond ±87 keep `2^n` a normal f32 (|n| ≤ 126): below −87 the result is 0 (e^−87 ≈
/// 1.6e−38: a softmax's masked or negligible terms, as a flush of subnormals would give), above
/// 87 it stays e^87 ≈ 6.1e37 (reached only by a sigmoid of an input below −87, which is then
/// below 1e−36 either way).
const LIMIT: f32 = 87.0;
/// 1.5 · 2²³: adding it rounds a float of magnitude < 2²² to an integer (ties to even) held in
/// the low bits of the mantissa.
const ROUNDING: f32 = 12_582_912.0;
/// ln 2 = LN2_HI + LN2_LO, LN2_HI exact in 9 bits so that `n · LN2_HI` is exact (Cephes' C1, C2).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Cephes' `expf` polynomial, highest degree first.
const P: [f32; 6] = [
    1.987_569_2e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    0.166_666_65,
    0.5,
];

/// e^x within 2 ulp for |x| ≤ 87; 0 below −87, e^87 above 87 ([`LIMIT`]); NaN stays NaN.
#[inline(always)]
pub fn exp(input: f32) -> f32 {
    let x = input.clamp(-LIMIT, LIMIT);
    let t = x * std::f32::consts::LOG2_E + ROUNDING;
    let n = t - ROUNDING;
    // The integer n sits in t's mantissa: t and ROUNDING share their exponent.
    let k = t.to_bits().wrapping_sub(ROUNDING.to_bits()) as i32;
    let r = x - n * LN2_HI;
    let r = r - n * LN2_LO;
    let mut p = P[0];
    for c in &P[1..] {
        p = p * r + c;
    }
    let e_r = p * (r * r) + r + 1.0;
    let two_n = f32::from_bits(((k + 127) << 23) as u32);
    let y = e_r * two_n;
    if input.is_nan() {
        input
    } else if input < -LIMIT {
        0.0
    } else {
        y
    }
}

/// SiLU (swish) as transformers' `nn.SiLU`: `x · sigmoid(x) = x / (1 + e^−x)`.
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

/// Elements per parallel piece: below this a split costs more than it saves.
const SPLIT_MIN: usize = 16 * 1024;

/// [`silu`] over the whole slice, split among the pool's threads where it is large (the
/// encoder's feed-forward activations of a batch) and not inside a row shard.
pub fn silu_in_place(values: &mut [f32]) {
    fn serial(values: &mut [f32]) {
        for v in values.iter_mut() {
            *v = silu(*v);
        }
    }
    // At least two pieces per split, none inside a shard (`split_min`, as the other loops).
    values
        .par_chunks_mut(SPLIT_MIN)
        .with_min_len(crate::row_shards::split_min(2))
        .for_each(serial);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f64) -> f64 {
        let b32 = b as f32;
        let ulp = (f32::from_bits(b32.abs().to_bits() + 1) - b32.abs()) as f64;
        (a as f64 - b).abs() / ulp
    }

    #[test]
    fn exp_is_within_two_ulp_over_its_range() {
        let mut worst = 0f64;
        let steps = 2_000_000;
        for i in 0..=steps {
            let x = -LIMIT + 2.0 * LIMIT * i as f32 / steps as f32;
            worst = worst.max(ulps(exp(x), (x as f64).exp()));
        }
        for &x in &[
            0.0f32, -0.0, 1e-30, -1e-30, 0.5, -0.5, 1.0, -1.0, 10.0, -10.0,
        ] {
            worst = worst.max(ulps(exp(x), (x as f64).exp()));
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn exp_clamps_outside_and_keeps_nan() {
        assert!(exp(-LIMIT) > 0.0 && exp(-LIMIT) < 2e-38);
        assert_eq!(exp(-87.001), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(f32::MIN), 0.0);
        assert_eq!(exp(1000.0), exp(LIMIT));
        assert!(exp(LIMIT).is_finite());
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn silu_matches_the_definition_and_its_limits() {
        for i in -2000..=2000 {
            let x = i as f32 / 100.0;
            let want = x as f64 / (1.0 + (-(x as f64)).exp());
            let got = silu(x) as f64;
            assert!(
                (got - want).abs() <= 4e-7 * want.abs().max(1e-30) + 1e-37,
                "silu({x}) = {got}, want {want}"
            );
        }
        assert_eq!(silu(0.0), 0.0);
        assert_eq!(silu(100.0), 100.0);
        assert!(silu(-100.0).abs() < 1e-35);
        assert!(silu(f32::NAN).is_nan());
    }

    #[test]
    fn silu_in_place_gives_the_scalar_bits_split_or_not() {
        let values: Vec<f32> = (0..100_003)
            .map(|i| (i as f32 * 0.37).sin() * 12.0)
            .collect();
        let mut split = values.clone();
        silu_in_place(&mut split);
        let mut inside_shard = values.clone();
        crate::row_shards::stepping_shard(true, || silu_in_place(&mut inside_shard));
        for ((&x, &a), &b) in values.iter().zip(&split).zip(&inside_shard) {
            assert_eq!(a.to_bits(), silu(x).to_bits());
            assert_eq!(b.to_bits(), a.to_bits());
        }
    }
}
