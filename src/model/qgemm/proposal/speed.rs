use super::*;
/// `cargo test --release --lib proposal::speed -- --ignored --nocapture`
#[test]
#[ignore]
fn proposal_speed() {
    let (rows, cols) = (59514, 512);
    let mut seed = 1u64;
    let values: Vec<u8> = (0..rows * cols)
        .map(|_| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            (seed >> 56) as u8
        })
        .collect();
    let scales: Vec<u8> = (0..rows * cols / BLOCK)
        .flat_map(|_| half::f16::from_f32(0.01).to_le_bytes())
        .collect();
    let w = PackedMatrix::from_q8(rows, cols, &values, &scales);
    let bias = vec![0f32; rows];
    for m in [1, 16] {
        let x: Vec<f32> = (0..m * cols)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        // The fastest of 15 runs each (a shared machine's noise only slows runs down).
        let time = |f: &mut dyn FnMut()| {
            (0..15)
                .map(|_| {
                    let t = std::time::Instant::now();
                    f();
                    t.elapsed().as_secs_f64()
                })
                .fold(f64::INFINITY, f64::min)
        };
        let mut y = vec![0f32; m * rows];
        let full = time(&mut || w.matmul_into(&x, m, &mut y));
        let mut scratch = Vec::new();
        let greedy = time(&mut || {
            std::hint::black_box(w.greedy_choice(&x, m, &bias, None, &[], &mut scratch));
        });
        let tables = w.proposal.get().unwrap().as_ref().unwrap();
        let x8 = Rows8::of(&x, m, cols, tables.pass.levels()).unwrap();
        let blocks = cols / BLOCK;
        let pass = time(&mut || {
            for g in 0..rows.div_ceil(GROUP) {
                let (wv, sv) = w.group(g).unwrap();
                let o = &tables.offsets[g * blocks * GROUP..][..blocks * GROUP];
                tables.pass.group(wv, sv, o, &x8, m, blocks, |r, l| {
                    let at = r * rows + g * GROUP;
                    let width = GROUP.min(rows - g * GROUP);
                    y[at..at + width].copy_from_slice(&l[..width]);
                });
            }
        });
        println!(
            "m={m} {:?}: full {:.2} ms, greedy {:.2} ms, proposal pass alone (1 thread) {:.2} ms",
            tables.pass,
            full * 1e3,
            greedy * 1e3,
            pass * 1e3
        );
    }
}
