//! Kernel timings (ignored by default; BENCHMARKS.md quotes them).

use super::*;
/// `cargo test --release --lib qgemm::speed -- --ignored --nocapture`
#[test]
#[ignore]
fn kernel_speed() {
    for (rows, cols) in [(59514, 512), (2048, 512), (512, 2048), (512, 512)] {
        let values = vec![3u8; rows * cols];
        let scales: Vec<u8> = (0..rows * cols / BLOCK)
            .flat_map(|_| half::f16::from_f32(0.01).to_le_bytes())
            .collect();
        let nibbles = vec![0x5au8; rows * cols / 2];
        let q8 = PackedMatrix::from_q8(rows, cols, &values, &scales);
        let folded = PackedMatrix::from_q8_residual_folded(rows, cols, &values, &scales, &nibbles);
        let packed = PackedMatrix::from_q8_residual_packed(rows, cols, &values, &scales, &nibbles);
        let apart = PackedMatrix::from_q8_and_residual(rows, cols, &values, &scales, &nibbles);
        for m in [1, 16, 64] {
            let x = vec![0.5f32; m * cols];
            for (k, form, w) in Kernel::available().into_iter().flat_map(|k| {
                [
                    (k, "q8", &q8),
                    (k, "q8+r folded", &folded),
                    (k, "q8+r packed", &packed),
                    (k, "q8+r apart", &apart),
                ]
            }) {
                let reps = (200_000_000 / (rows * cols * m)).max(3);
                let t = std::time::Instant::now();
                let mut y = vec![0f32; m * rows];
                for _ in 0..reps {
                    w.matmul_on(k, &x, m, &mut y);
                    std::hint::black_box(&y);
                }
                let s = t.elapsed().as_secs_f64() / reps as f64;
                println!(
                    "{rows}x{cols} m={m} {} {form}: {:.3} ms, {:.1} GMAC/s",
                    k.name(),
                    s * 1e3,
                    (rows * cols * m) as f64 / s / 1e9
                );
            }
        }
    }
}
