//! Attention of one decoding step, written by hand over key/value caches kept in place.
//!
//! At each step every row has exactly one query per head, so attention is a dot product per cached
//! position, a softmax and a weighted sum of values: small loops over contiguous memory. As candle
//! ops (reshape, transpose, a batched GEMM of one-row matrices, softmax, concatenating the cache
//! with the new position) the same work costs a tensor allocation per op and a copy of the whole
//! cache per step. Every row is computed on its own, in a fixed order, so the result does not
//! depend on the number of threads.

use rayon::prelude::*;

/// Keys and values of `rows` rows, `heads` heads of `head_dim`, laid out `[row, head, position,
/// head_dim]` with room for `capacity` positions (the first `len` are filled). Self-attention's
/// cache grows by doubling; cross-attention's is filled once with the encoder's positions.
#[derive(Debug, Clone)]
pub struct KvCache {
    rows: usize,
    heads: usize,
    head_dim: usize,
    len: usize,
    capacity: usize,
    keys: Vec<f32>,
    values: Vec<f32>,
}

/// Positions a self-attention cache starts with room for (then doubles).
const INITIAL_CAPACITY: usize = 16;

/// Multiply-adds below which a row's attention is not worth a rayon task of its own.
const ROWS_TASK_MIN_MACS: usize = 1 << 16;

impl KvCache {
    /// An empty cache for `rows` rows of `heads × head_dim` features.
    pub fn new(rows: usize, heads: usize, head_dim: usize) -> Self {
        KvCache {
            rows,
            heads,
            head_dim,
            len: 0,
            capacity: 0,
            keys: Vec::new(),
            values: Vec::new(),
        }
    }

    /// A full cache from projected keys and values `[rows, positions, heads × head_dim]`
    /// (row-major, what a linear layer gives): the encoder's side of cross-attention.
    pub fn from_projected(
        keys: &[f32],
        values: &[f32],
        rows: usize,
        positions: usize,
        heads: usize,
        head_dim: usize,
    ) -> Self {
        let mut c = KvCache::new(rows, heads, head_dim);
        c.grow_to(positions);
        let d = heads * head_dim;
        for r in 0..rows {
            for t in 0..positions {
                let src = (r * positions + t) * d;
                for h in 0..heads {
                    let dst = c.offset(r, h, t);
                    c.keys[dst..dst + head_dim]
                        .copy_from_slice(&keys[src + h * head_dim..][..head_dim]);
                    c.values[dst..dst + head_dim]
                        .copy_from_slice(&values[src + h * head_dim..][..head_dim]);
                }
            }
        }
        c.len = positions;
        c
    }

    /// Positions filled.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is filled yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn offset(&self, row: usize, head: usize, position: usize) -> usize {
        ((row * self.heads + head) * self.capacity + position) * self.head_dim
    }

    /// Re-lay the buffers out for room for `capacity` positions, keeping what is filled.
    fn grow_to(&mut self, capacity: usize) {
        let hd = self.head_dim;
        let size = self.rows * self.heads * capacity * hd;
        let (mut keys, mut values) = (vec![0.0; size], vec![0.0; size]);
        for rh in 0..self.rows * self.heads {
            let (src, dst) = (rh * self.capacity * hd, rh * capacity * hd);
            let n = self.len * hd;
            keys[dst..dst + n].copy_from_slice(&self.keys[src..src + n]);
            values[dst..dst + n].copy_from_slice(&self.values[src..src + n]);
        }
        self.keys = keys;
        self.values = values;
        self.capacity = capacity;
    }

    /// Append one position: keys and values `[rows, heads × head_dim]`.
    pub fn push(&mut self, keys: &[f32], values: &[f32]) {
        if self.len == self.capacity {
            self.grow_to((2 * self.capacity).max(INITIAL_CAPACITY));
        }
        let (hd, d, t) = (self.head_dim, self.heads * self.head_dim, self.len);
        for r in 0..self.rows {
            for h in 0..self.heads {
                let dst = self.offset(r, h, t);
                let src = r * d + h * hd;
                self.keys[dst..dst + hd].copy_from_slice(&keys[src..src + hd]);
                self.values[dst..dst + hd].copy_from_slice(&values[src..src + hd]);
            }
        }
        self.len += 1;
    }

    /// A cache of `rows` of this one (in that order; repeats allowed), this one unchanged:
    /// beam search's reordering, finished rows dropped, a batch cut into shards.
    pub fn selected(&self, rows: &[u32]) -> KvCache {
        let block = self.heads * self.capacity * self.head_dim;
        let pick = |src: &[f32]| {
            let mut out = Vec::with_capacity(rows.len() * block);
            for &r in rows {
                out.extend_from_slice(&src[r as usize * block..][..block]);
            }
            out
        };
        KvCache {
            rows: rows.len(),
            keys: pick(&self.keys),
            values: pick(&self.values),
            ..*self
        }
    }

    /// Scaled dot-product attention of one query per row and head over the filled positions:
    /// `softmax(q·kᵀ + mask) · v`. `queries` [rows, heads × head_dim] (already scaled), `mask`
    /// additive [rows, len] or none; returns the context [rows, heads × head_dim]. The softmax
    /// takes the maximum out first, as candle's and PyTorch's do.
    pub fn attend(&self, queries: &[f32], mask: Option<&[f32]>) -> Vec<f32> {
        let (hd, d, len) = (self.head_dim, self.heads * self.head_dim, self.len);
        let mut context = vec![0.0f32; self.rows * d];
        let per_row = 2 * self.heads * len * hd;
        let min_rows = (ROWS_TASK_MIN_MACS / per_row.max(1)).max(1);
        context
            .par_chunks_mut(d)
            .with_min_len(crate::row_shards::split_min(min_rows))
            .enumerate()
            .for_each(|(r, ctx)| {
                let mut scores = vec![0.0f32; len];
                for h in 0..self.heads {
                    let q = &queries[r * d + h * hd..][..hd];
                    let base = self.offset(r, h, 0);
                    let keys = &self.keys[base..base + len * hd];
                    for (s, k) in scores.iter_mut().zip(keys.chunks_exact(hd)) {
                        *s = dot(q, k);
                    }
                    if let Some(m) = mask {
                        for (s, m) in scores.iter_mut().zip(&m[r * len..][..len]) {
                            *s += m;
                        }
                    }
                    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    // The exponentials in a loop of their own, which vectorizes; the sum in order.
                    for s in scores.iter_mut() {
                        *s = super::activation::exp(*s - max);
                    }
                    let sum = scores.iter().fold(0.0f32, |sum, &s| sum + s);
                    for s in scores.iter_mut() {
                        *s /= sum;
                    }
                    let values = &self.values[base..base + len * hd];
                    weighted_sum(&scores, values, &mut ctx[h * hd..][..hd]);
                }
            });
        context
    }
}

/// `out = Σ_t p[t] · values[t]` for values [len, out.len()], accumulated position by position.
/// The common head sizes get a copy with the size known at compile time, so the sum stays in
/// registers instead of going through memory at every position; all give the same bits.
fn weighted_sum(p: &[f32], values: &[f32], out: &mut [f32]) {
    fn fixed<const N: usize>(p: &[f32], values: &[f32], out: &mut [f32]) {
        let mut acc = [0f32; N];
        for (p, v) in p.iter().zip(values.chunks_exact(N)) {
            for i in 0..N {
                acc[i] += p * v[i];
            }
        }
        out.copy_from_slice(&acc);
    }
    match out.len() {
        64 => fixed::<64>(p, values, out),
        32 => fixed::<32>(p, values, out),
        128 => fixed::<128>(p, values, out),
        n => {
            out.fill(0.0);
            for (p, v) in p.iter().zip(values.chunks_exact(n)) {
                for (o, v) in out.iter_mut().zip(v) {
                    *o += p * v;
                }
            }
        }
    }
}

/// `Σ a·b` in 8 independent lanes summed pairwise at the end: a fixed order (the same bits on
/// every target and thread count) that vectorizes, where a plain running sum must stay scalar.
/// Lane l sums the products of elements l, l + 8, l + 16, …; then
/// `((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7))`, plus the elements past the last 8.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    lanes_sum(ac, bc) + tail
}

/// The 8-lane part of `dot` with AVX: LLVM's own vectorization of the portable form below
/// used 2-float vectors (it followed the final sum's pairs), which ran attention's dot
/// products at a quarter of the width. Same operations in the same order: same bits.
#[cfg(all(target_arch = "x86_64", target_feature = "avx"))]
fn lanes_sum(ac: std::slice::ChunksExact<f32>, bc: std::slice::ChunksExact<f32>) -> f32 {
    use std::arch::x86_64::*;
    // SAFETY: AVX is enabled at compile time (the cfg above); every chunk holds 8 floats.
    unsafe {
        let mut lanes = _mm256_setzero_ps();
        for (x, y) in ac.zip(bc) {
            let product = _mm256_mul_ps(_mm256_loadu_ps(x.as_ptr()), _mm256_loadu_ps(y.as_ptr()));
            lanes = _mm256_add_ps(lanes, product);
        }
        // [l0 + l4, l1 + l5, l2 + l6, l3 + l7], then [h0 + h2, h1 + h3], then their sum.
        let half = _mm_add_ps(
            _mm256_castps256_ps128(lanes),
            _mm256_extractf128_ps(lanes, 1),
        );
        let quarter = _mm_add_ps(half, _mm_movehl_ps(half, half));
        _mm_cvtss_f32(_mm_add_ss(quarter, _mm_movehdup_ps(quarter)))
    }
}

/// The 8-lane part of `dot` with WebAssembly SIMD: lanes 0–3 and 4–7 in two vectors, then the
/// same sums as above in the same order.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn lanes_sum(ac: std::slice::ChunksExact<f32>, bc: std::slice::ChunksExact<f32>) -> f32 {
    use std::arch::wasm32::*;
    let (mut low, mut high) = (f32x4_splat(0.0), f32x4_splat(0.0));
    for (x, y) in ac.zip(bc) {
        // SAFETY: every chunk holds 8 floats; WebAssembly loads need no alignment.
        let (x, y) = (x.as_ptr() as *const v128, y.as_ptr() as *const v128);
        unsafe {
            low = f32x4_add(low, f32x4_mul(v128_load(x), v128_load(y)));
            high = f32x4_add(high, f32x4_mul(v128_load(x.add(1)), v128_load(y.add(1))));
        }
    }
    let half = f32x4_add(low, high);
    let quarter = f32x4_add(half, i32x4_shuffle::<2, 3, 0, 1>(half, half));
    f32x4_extract_lane::<0>(quarter) + f32x4_extract_lane::<1>(quarter)
}

#[cfg(not(any(
    all(target_arch = "x86_64", target_feature = "avx"),
    all(target_arch = "wasm32", target_feature = "simd128")
)))]
fn lanes_sum(ac: std::slice::ChunksExact<f32>, bc: std::slice::ChunksExact<f32>) -> f32 {
    let mut lanes = [0f32; 8];
    for (x, y) in ac.zip(bc) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    let [l0, l1, l2, l3, l4, l5, l6, l7] = lanes;
    ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain formula, position by position, for comparison.
    fn reference(q: &[f32], keys: &[Vec<f32>], values: &[Vec<f32>], mask: &[f32]) -> Vec<f32> {
        let scores: Vec<f32> = keys
            .iter()
            .zip(mask)
            .map(|(k, m)| q.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() + m)
            .collect();
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
        let sum: f32 = e.iter().sum();
        let mut out = vec![0.0; q.len()];
        for (p, v) in e.iter().zip(values) {
            for (o, x) in out.iter_mut().zip(v) {
                *o += p / sum * x;
            }
        }
        out
    }

    fn value(i: usize) -> f32 {
        ((i * 7919 % 1000) as f32 / 500.0) - 1.0
    }

    #[test]
    fn attends_like_the_formula_through_growth_and_row_selection() {
        // Head sizes with and without a fixed-size accumulator; 21 > 16: the cache grows once.
        for hd in [4, 64] {
            attends_like_the_formula(3, 2, hd, 21);
        }
    }

    fn attends_like_the_formula(rows: usize, heads: usize, hd: usize, steps: usize) {
        let d = heads * hd;
        let mut cache = KvCache::new(rows, heads, hd);
        let mut kept_k = vec![vec![]; rows * heads];
        let mut kept_v = vec![vec![]; rows * heads];
        for t in 0..steps {
            let k: Vec<f32> = (0..rows * d).map(|i| value(i + 100 * t)).collect();
            let v: Vec<f32> = (0..rows * d).map(|i| value(i + 100 * t + 37)).collect();
            cache.push(&k, &v);
            for r in 0..rows {
                for h in 0..heads {
                    kept_k[r * heads + h].push(k[r * d + h * hd..][..hd].to_vec());
                    kept_v[r * heads + h].push(v[r * d + h * hd..][..hd].to_vec());
                }
            }
        }
        assert_eq!(cache.len(), steps);
        let cache = cache.selected(&[2, 0, 0]);
        let picked = [2usize, 0, 0];
        let q: Vec<f32> = (0..3 * d).map(|i| value(i + 5)).collect();
        let mask: Vec<f32> = (0..3 * steps)
            .map(|i| if i % 5 == 4 { f32::NEG_INFINITY } else { 0.0 })
            .collect();
        let got = cache.attend(&q, Some(&mask));
        for (row, &r) in picked.iter().enumerate() {
            for h in 0..heads {
                let want = reference(
                    &q[row * d + h * hd..][..hd],
                    &kept_k[r * heads + h],
                    &kept_v[r * heads + h],
                    &mask[row * steps..][..steps],
                );
                for (a, b) in got[row * d + h * hd..][..hd].iter().zip(&want) {
                    assert!((a - b).abs() < 1e-5, "row {row} head {h}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn dot_sums_in_its_stated_order_bit_for_bit() {
        // The order `dot` documents, written out: the vector form must give the same bits.
        fn stated(a: &[f32], b: &[f32]) -> f32 {
            let full = a.len() / 8 * 8;
            let mut l = [0f32; 8];
            for i in 0..full {
                l[i % 8] += a[i] * b[i];
            }
            let tail: f32 = (full..a.len()).map(|i| a[i] * b[i]).sum();
            ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7])) + tail
        }
        for n in [0, 3, 8, 13, 32, 64, 100, 128] {
            let a: Vec<f32> = (0..n).map(|i| value(3 * i + 1) * 1.37e3).collect();
            let b: Vec<f32> = (0..n).map(|i| value(5 * i + 2) / 7.0).collect();
            assert_eq!(
                dot(&a, &b).to_bits(),
                stated(&a, &b).to_bits(),
                "length {n}"
            );
        }
    }

    #[test]
    fn from_projected_lays_out_positions_per_head() {
        let (rows, pos, heads, hd) = (2, 3, 2, 2);
        let d = heads * hd;
        let k: Vec<f32> = (0..rows * pos * d).map(|i| i as f32).collect();
        let v: Vec<f32> = k.iter().map(|x| -x).collect();
        let c = KvCache::from_projected(&k, &v, rows, pos, heads, hd);
        // row 1, head 1, position 2 = element [1, 2, 1*hd..] of the projection.
        let at = c.offset(1, 1, 2);
        assert_eq!(&c.keys[at..at + hd], &k[(pos + 2) * d + hd..][..hd]);
        assert_eq!(&c.values[at..at + hd], &v[(pos + 2) * d + hd..][..hd]);
    }
}
