//! The kernels against f64 and against each other, bit for bit.

use super::*;

fn lcg(seed: &mut u64) -> f32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
}

fn random_q8(rows: usize, cols: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut s = seed;
    let values = (0..rows * cols)
        .map(|_| (lcg(&mut s) * 127.0) as i8 as u8)
        .collect();
    let scales = (0..rows * cols / BLOCK)
        .flat_map(|_| half::f16::from_f32(0.01 + lcg(&mut s).abs() * 0.02).to_le_bytes())
        .collect();
    (values, scales)
}

#[test]
fn products_match_f64_dequantized_and_portable() {
    for (rows, cols, m) in [
        (13, 64, 1),
        (64, 512, 5),
        (37, 96, 9),
        (8, 32, 4),
        (300, 2048, 19),
        (40, 128, 8),
    ] {
        let (v, s) = random_q8(rows, cols, rows as u64 * 7 + cols as u64);
        let nibbles = random_nibbles(rows, cols, cols as u64);
        for w in [
            PackedMatrix::from_q8(rows, cols, &v, &s),
            PackedMatrix::from_q8_residual_folded(rows, cols, &v, &s, &nibbles),
            PackedMatrix::from_q8_residual_packed(rows, cols, &v, &s, &nibbles),
            PackedMatrix::from_q8_and_residual(rows, cols, &v, &s, &nibbles),
        ] {
            products_match(&w, m);
        }
    }
}

fn random_nibbles(rows: usize, cols: usize, seed: u64) -> Vec<u8> {
    let mut s = seed;
    (0..rows * cols / 2)
        .map(|_| ((lcg(&mut s) + 1.0) * 127.99) as u8)
        .collect()
}

/// `w`'s product with m random rows is within the 16-bit activation rounding of the f64
/// product with its dequantized values, and every kernel gives the portable one's bits.
fn products_match(w: &PackedMatrix, m: usize) {
    let (rows, cols) = w.dims();
    let mut seed = 99;
    let x: Vec<f32> = (0..m * cols).map(|_| lcg(&mut seed) * 3.0).collect();
    let y = w.matmul(&x, m);
    let dq = w.dequantize();
    for r in 0..m {
        for c in 0..rows {
            let xr = &x[r * cols..(r + 1) * cols];
            let exact: f64 = (0..cols)
                .map(|k| xr[k] as f64 * dq[c * cols + k] as f64)
                .sum();
            // Rounding each activation to 16 bits moves it by at most half a step of its
            // block (amax / 32767 / 2); f32 sums add ~1e-6 of the magnitudes.
            let bound: f64 = (0..cols)
                .map(|k| {
                    let block = &xr[k / BLOCK * BLOCK..][..BLOCK];
                    let amax = block.iter().fold(0f32, |a, v| a.max(v.abs())) as f64;
                    let w = dq[c * cols + k].abs() as f64;
                    w * amax / 32767.0 * 0.5 + 1e-6 * w * xr[k].abs() as f64
                })
                .sum();
            let got = y[r * rows + c] as f64;
            assert!(
                (got - exact).abs() <= bound,
                "({r},{c}) {got} vs {exact} (bound {bound})"
            );
        }
    }
    // Every kernel this CPU has gives the portable reference's bits.
    for kernel in Kernel::available() {
        let mut yk = vec![0f32; m * rows];
        w.matmul_on(kernel, &x, m, &mut yk);
        let same = yk.iter().zip(&y).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(
            same,
            "{} differs from {}",
            kernel.name(),
            Kernel::detect().name()
        );
    }
}

/// A residual folded into 12-bit levels is the same matrix as the pair kept apart, and the
/// largest levels (2039 = 16·127 + 7, −2040) against full-scale activations stay exact in
/// the kernels' i32 sums.
#[test]
fn a_folded_residual_is_the_pair_and_its_extremes_stay_exact() {
    let (rows, cols) = (37, 96);
    let (v, s) = random_q8(rows, cols, 5);
    let nibbles = random_nibbles(rows, cols, 6);
    let folded = PackedMatrix::from_q8_residual_folded(rows, cols, &v, &s, &nibbles);
    let packed = PackedMatrix::from_q8_residual_packed(rows, cols, &v, &s, &nibbles);
    let apart = PackedMatrix::from_q8_and_residual(rows, cols, &v, &s, &nibbles);
    let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
    assert!(same(&folded.dequantize(), &apart.dequantize()));
    assert!(same(&folded.dequantize(), &packed.dequantize()));
    // Packed and folded are the same levels: the same products, bit for bit, on every
    // kernel and row count (1 row: the AVX2 kernel; 16: AVX-512's tile).
    for m in [1, 3, 16] {
        let mut seed = m as u64;
        let x: Vec<f32> = (0..m * cols).map(|_| lcg(&mut seed) * 2.0).collect();
        for kernel in Kernel::available() {
            let (mut a, mut b) = (vec![0f32; m * rows], vec![0f32; m * rows]);
            folded.matmul_on(kernel, &x, m, &mut a);
            packed.matmul_on(kernel, &x, m, &mut b);
            assert!(same(&a, &b), "{} m={m}", kernel.name());
        }
    }
    let ids = [36u32, 0, 17];
    for w in [&folded, &packed, &apart] {
        assert!(same(
            &w.select_rows(&ids).dequantize(),
            &w.dequantize_rows(&ids)
        ));
    }
    // The pair kept apart holds its residual as nibbles, and unpacks it right.
    let r = apart.residual().unwrap();
    assert!(matches!(r.values, Levels::Nibbles(_)));
    let (x, m) = (vec![0.7f32; 2 * cols], 2);
    let unpacked = r.select_rows(&(0..rows as u32).collect::<Vec<_>>());
    assert!(same(&r.matmul(&x, m), &unpacked.matmul(&x, m)));

    let (rows, cols) = (16, 64);
    let scales: Vec<u8> = (0..rows * cols / BLOCK)
        .flat_map(|_| half::f16::from_f32(1.0).to_le_bytes())
        .collect();
    for (q, nibble, expect) in [(127i8, 0xffu8, 2039.0f32), (-127, 0x00, -2040.0)] {
        let values = vec![q as u8; rows * cols];
        let fine = vec![nibble; rows * cols / 2];
        for w in [
            PackedMatrix::from_q8_residual_folded(rows, cols, &values, &scales, &fine),
            PackedMatrix::from_q8_residual_packed(rows, cols, &values, &scales, &fine),
        ] {
            assert_eq!(w.dequantize()[0], expect / 16.0);
            let x = vec![-3.0f32; 2 * cols];
            for kernel in Kernel::available() {
                let mut y = vec![0f32; 2 * rows];
                w.matmul_on(kernel, &x, 2, &mut y);
                // An i32 sum that wrapped would be off by 2³² steps, not by f32 rounding.
                let want = expect as f64 / 16.0 * -3.0 * cols as f64;
                let close = y.iter().all(|&v| ((v as f64 - want) / want).abs() < 1e-6);
                assert!(close, "{}: {y:?} vs {want}", kernel.name());
            }
        }
    }
}

#[test]
fn a_non_finite_activation_spoils_only_its_row() {
    let (rows, cols) = (20, 64);
    let (v, s) = random_q8(rows, cols, 11);
    let w = PackedMatrix::from_q8(rows, cols, &v, &s);
    let mut x = vec![0.25f32; 3 * cols];
    x[cols + 40] = f32::NAN;
    x[2 * cols + 3] = f32::INFINITY;
    let y = w.matmul(&x, 3);
    assert!(y[..rows].iter().all(|v| v.is_finite()));
    assert!(y[rows..].iter().all(|v| v.is_nan()));
}

#[test]
fn q4_unpacks_in_ggml_order() {
    // One block: byte j = (value j + 8) | (value j + 16 + 8) << 4.
    let vals: Vec<i8> = (0..32).map(|j| (j % 16) as i8 - 8).collect();
    let nibbles: Vec<u8> = (0..16)
        .map(|j| ((vals[j] + 8) as u8) | (((vals[j + 16] + 8) as u8) << 4))
        .collect();
    let scale = half::f16::from_f32(0.5).to_le_bytes();
    let w = PackedMatrix::from_q4(1, 32, &nibbles, &scale);
    let dq = w.dequantize();
    for j in 0..32 {
        assert_eq!(dq[j], vals[j] as f32 * 0.5);
    }
}

#[test]
fn selected_rows_give_the_same_columns() {
    let (rows, cols, m) = (29, 64, 3);
    let (v, s) = random_q8(rows, cols, 5);
    let w = PackedMatrix::from_q8(rows, cols, &v, &s);
    let mut seed = 3;
    let x: Vec<f32> = (0..m * cols).map(|_| lcg(&mut seed)).collect();
    let ids = [28u32, 0, 9, 9, 17];
    let full = w.matmul(&x, m);
    let part = w.select_rows(&ids).matmul(&x, m);
    for r in 0..m {
        for (j, &id) in ids.iter().enumerate() {
            assert_eq!(
                part[r * ids.len() + j].to_bits(),
                full[r * rows + id as usize].to_bits()
            );
        }
    }
    assert_eq!(
        w.dequantize_rows(&[9])[..],
        w.dequantize()[9 * cols..10 * cols]
    );
}
