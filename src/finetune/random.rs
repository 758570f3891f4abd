//! Reproducible randomness for a run: the shuffle of positions each epoch and the LoRA A
//! initialisation (SplitMix64, Box-Muller).

use crate::error::Result;
use candle_core::{Device, Tensor};

/// A small deterministic generator for shuffling (SplitMix64).
pub(super) struct Shuffle(pub(super) u64);

impl Shuffle {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub(super) fn permutation(&mut self, n: usize) -> Vec<u32> {
        let mut v: Vec<u32> = (0..n as u32).collect();
        for i in (1..n).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
        v
    }
}

/// Normal(0, std) values from a seed (Box-Muller over SplitMix64): reproducible runs.
pub(super) fn seeded_normal(seed: u64, shape: (usize, usize), std: f64) -> Result<Tensor> {
    let mut g = Shuffle(seed ^ 0x5EED);
    let n = shape.0 * shape.1;
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let u1 = ((g.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let u2 = ((g.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let r = (-2.0 * u1.ln()).sqrt() * std;
        let a = 2.0 * std::f64::consts::PI * u2;
        out.push((r * a.cos()) as f32);
        out.push((r * a.sin()) as f32);
    }
    out.truncate(n);
    Ok(Tensor::from_vec(out, shape, &Device::Cpu)?)
}
