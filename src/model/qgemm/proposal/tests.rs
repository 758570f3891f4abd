use super::*;

fn lcg(seed: &mut u64) -> f32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
}

/// A q8 matrix whose rows differ in scale, and a few exact duplicates of row 3 (ties).
fn matrix(rows: usize, cols: usize, seed: u64) -> PackedMatrix {
    let mut s = seed;
    let mut values: Vec<u8> = (0..rows * cols)
        .map(|_| (lcg(&mut s) * 127.0).round() as i8 as u8)
        .collect();
    for dup in [7, rows - 1] {
        let src = values[3 * cols..4 * cols].to_vec();
        values[dup * cols..(dup + 1) * cols].copy_from_slice(&src);
    }
    let scales: Vec<u8> = (0..rows * cols / BLOCK)
        .flat_map(|b| {
            let scale = if (3..4).contains(&(b / (cols / BLOCK))) || b / (cols / BLOCK) == 7 {
                0.01
            } else {
                0.002 + lcg(&mut s).abs() * 0.02
            };
            half::f16::from_f32(scale).to_le_bytes()
        })
        .collect();
    let mut m = PackedMatrix::from_q8(rows, cols, &values, &scales);
    // Row rows-1 copies row 3's values; give it row 3's scales too.
    let blocks = cols / BLOCK;
    for b in 0..blocks {
        let (g3, l3) = (3 / GROUP, 3 % GROUP);
        let (g, l) = ((rows - 1) / GROUP, (rows - 1) % GROUP);
        m.scales[(g * blocks + b) * GROUP + l] = m.scales[(g3 * blocks + b) * GROUP + l3];
    }
    m
}

/// The full product's greedy choice, as the generation loop makes it.
fn reference(
    w: &PackedMatrix,
    x: &[f32],
    m: usize,
    bias: &[f32],
    extra: Option<(&[u32], &[f32])>,
    banned: &[u32],
) -> Vec<(u32, f32)> {
    let mut y = w.matmul(x, m);
    let rows = w.dims().0;
    for (r, row) in y.chunks_exact_mut(rows).enumerate() {
        for (v, b) in row.iter_mut().zip(bias) {
            *v += b;
        }
        if let Some((ids, e)) = extra {
            for (j, &id) in ids.iter().enumerate() {
                row[id as usize] += e[r * ids.len() + j];
            }
        }
    }
    let select = crate::generate::Select {
        k: 1,
        log_softmax: false,
        banned,
        forced: None,
    };
    y.chunks_exact(rows)
        .map(|row| crate::generate::top_k_of_row(row, &select)[0])
        .collect()
}

fn passes() -> Vec<Pass> {
    let mut all = vec![
        Pass::Portable { levels: 127 },
        Pass::Portable { levels: 63 },
    ];
    #[cfg(target_arch = "x86_64")]
    {
        if Kernel::available().contains(&Kernel::Avx512Vnni) {
            all.push(Pass::Avx512Vnni);
        }
    }
    all
}

#[test]
fn the_choice_is_the_full_products_argmax_bit_for_bit() {
    let mut checked = 0;
    for (rows, cols, m, seed) in [
        (301, 64, 5, 1u64),
        (1000, 512, 17, 2),
        (77, 96, 3, 3),
        (40, 32, 1, 4),
    ] {
        for with_residual in [false, true] {
            let w = matrix(rows, cols, seed);
            // A residual (`convert --residual`) breaks the ties of rows 3, 7 and rows-1: only
            // its products decide between them.
            let w = if with_residual {
                let mut s = seed * 7;
                let nibbles: Vec<u8> = (0..rows * cols / 2)
                    .map(|_| ((lcg(&mut s) + 1.0) * 127.9) as u8)
                    .collect();
                let fine: Vec<u8> = (0..rows * cols / BLOCK)
                    .flat_map(|_| half::f16::from_f32(0.004).to_le_bytes())
                    .collect();
                w.with_residual(PackedMatrix::from_q4(rows, cols, &nibbles, &fine))
            } else {
                w
            };
            let mut s = seed * 31;
            // Rows 0 and 1 point along weight row 3 (which rows 7 and rows-1 copy): exact ties.
            let mut x: Vec<f32> = (0..m * cols).map(|_| lcg(&mut s) * 2.0).collect();
            let row3 = w.dequantize_rows(&[3]);
            x[..cols].copy_from_slice(&row3);
            if m > 1 {
                for (xv, wv) in x[cols..2 * cols].iter_mut().zip(&row3) {
                    *xv = wv * 50.0;
                }
            }
            // Biases as large as the logits' spread (every fifth id), so that they decide.
            let spread = w.matmul(&x, m).iter().fold(0f32, |a, v| a.max(v.abs()));
            let bias: Vec<f32> = (0..rows)
                .map(|i| {
                    if i % 5 == 0 {
                        lcg(&mut s) * spread
                    } else {
                        0.0
                    }
                })
                .map(|b| if rows > 40 { b } else { 0.0 })
                .collect();
            let ids = [3u32, 11, 20];
            let extra_values: Vec<f32> = (0..m * ids.len()).map(|_| lcg(&mut s) * 0.3).collect();
            for extra in [None, Some((&ids[..], &extra_values[..]))] {
                for banned in [&[][..], &[3u32, 0][..]] {
                    let want = reference(&w, &x, m, &bias, extra, banned);
                    for pass in passes() {
                        let tables = Tables::new(&w, pass);
                        let mut scratch = Vec::new();
                        let got = w
                            .greedy_choice_with(&tables, &x, m, &bias, extra, banned, &mut scratch)
                            .expect("a choice");
                        for (g, e) in got.iter().zip(&want) {
                            assert_eq!(g.0, e.0, "{pass:?} {rows}x{cols}");
                            assert_eq!(g.1.to_bits(), e.1.to_bits(), "{pass:?}");
                        }
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked >= 32);
}

/// Token 0 leads token 1 by 2 % in the q8 values, beyond the 8-bit pass's bound; token 1's
/// residual overturns that. Only the residual's own bound keeps token 1 a candidate.
#[test]
fn a_residual_can_overturn_the_q8_choice() {
    let (rows, cols, m) = (48, 64, 4);
    let blocks = cols / BLOCK;
    let values = vec![100i8 as u8; rows * cols];
    let scales: Vec<u8> = (0..rows * blocks)
        .flat_map(|b| {
            let scale = match b / blocks {
                0 => 0.01,
                1 => 0.0098,
                _ => 0.0001,
            };
            half::f16::from_f32(scale).to_le_bytes()
        })
        .collect();
    // Nibble 8 is 0; token 1's residual is +7 levels of 0.004 everywhere.
    let nibbles: Vec<u8> = (0..rows * cols / 2)
        .map(|k| if k / (cols / 2) == 1 { 0xff } else { 0x88 })
        .collect();
    let fine: Vec<u8> = (0..rows * blocks)
        .flat_map(|_| half::f16::from_f32(0.004).to_le_bytes())
        .collect();
    let q8 = PackedMatrix::from_q8(rows, cols, &values, &scales);
    let w = q8
        .clone()
        .with_residual(PackedMatrix::from_q4(rows, cols, &nibbles, &fine));
    let mut s = 3;
    let x: Vec<f32> = (0..m * cols).map(|_| 1.0 + lcg(&mut s) * 0.5).collect();
    let bias = vec![0f32; rows];
    let want = reference(&w, &x, m, &bias, None, &[]);
    assert!(want.iter().all(|c| c.0 == 1), "the residual decides");
    assert!(reference(&q8, &x, m, &bias, None, &[])
        .iter()
        .all(|c| c.0 == 0));
    for pass in passes() {
        let tables = Tables::new(&w, pass);
        let got = w
            .greedy_choice_with(&tables, &x, m, &bias, None, &[], &mut Vec::new())
            .expect("a choice");
        for (g, e) in got.iter().zip(&want) {
            assert_eq!((g.0, g.1.to_bits()), (e.0, e.1.to_bits()), "{pass:?}");
        }
    }
}

#[test]
fn the_bound_holds_for_every_output() {
    // Proposals minus exact outputs against the bound, over skewed activations (one large
    // channel per block, as layer norms' gains make them).
    let (rows, cols, m) = (500, 256, 8);
    let w = matrix(rows, cols, 9);
    let mut s = 5;
    let x: Vec<f32> = (0..m * cols)
        .map(|i| lcg(&mut s) * if i % 32 == 5 { 40.0 } else { 1.0 })
        .collect();
    let exact = w.matmul(&x, m);
    let blocks = cols / BLOCK;
    for pass in passes() {
        let t = Tables::new(&w, pass);
        let x8 = Rows8::of(&x, m, cols, pass.levels()).unwrap();
        let mut pre = vec![0f32; m * rows];
        for g in 0..rows.div_ceil(GROUP) {
            let (wv, sv) = w.group(g).unwrap();
            let o = &t.offsets[g * blocks * GROUP..][..blocks * GROUP];
            pass.group(wv, sv, o, &x8, m, blocks, |r, lanes| {
                for (l, v) in lanes.iter().enumerate() {
                    if g * GROUP + l < rows {
                        pre[r * rows + g * GROUP + l] = *v;
                    }
                }
            });
        }
        let mut worst = 0f64;
        for r in 0..m {
            for i in 0..rows {
                let core: f64 = (0..blocks)
                    .map(|b| {
                        t.l1[i * blocks + b] as f64
                            * x8.amax[r * blocks + b] as f64
                            * (0.5 / pass.levels() as f64 + 0.5 / 32767.0)
                    })
                    .sum();
                let diff = (pre[r * rows + i] - exact[r * rows + i]).abs() as f64;
                assert!(
                    diff <= core * 1.01 + 1e-6,
                    "{pass:?} ({r},{i}) {diff} > {core}"
                );
                worst = worst.max(diff / core.max(1e-30));
            }
        }
        // The worst case is far from reached in practice: the screening is not vacuous.
        assert!(worst < 0.5, "{pass:?}: error reached {worst} of the bound");
    }
}

#[test]
fn non_finite_activations_or_all_banned_fall_back() {
    let w = matrix(40, 64, 2);
    let t = Tables::new(&w, Pass::Portable { levels: 127 });
    let bias = vec![0f32; 40];
    let mut x = vec![0.5f32; 64];
    let mut scratch = Vec::new();
    let all: Vec<u32> = (0..40).collect();
    assert!(w
        .greedy_choice_with(&t, &x, 1, &bias, None, &all, &mut scratch)
        .is_none());
    x[9] = f32::NAN;
    assert!(w
        .greedy_choice_with(&t, &x, 1, &bias, None, &[], &mut scratch)
        .is_none());
}
