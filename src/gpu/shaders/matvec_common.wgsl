// The part both matrix-vector kernels share (matvec.wgsl, matvec_subgroup.wgsl): bindings, sizes,
// and each invocation's partial sums for one output column. They differ only in the reduction.

// Params: matmul_params.wgsl (m is at most MAX_ROWS here). Real: precision_*.wgsl.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

const WG: u32 = 64u;
const MAX_ROWS: u32 = 8u;
var<workgroup> partial: array<f32, 512>; // MAX_ROWS * WG

// v rounded to Real (a no-op for f32).
fn rounded(v: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(vec4<Real>(v));
}

// This invocation's share of sum_k x[m, k] * W[n, k] for every row m (zeros past p.m, or when
// column n is past the end): the weight row is read once for all rows.
fn partial_sums(n: u32, lid: u32) -> array<f32, 8> {
    var acc = array<f32, 8>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    if n < p.n {
        let k4n = p.k / 4u;
        for (var k4 = lid; k4 < k4n; k4 += WG) {
            // Operands rounded to Real (precision_*.wgsl), multiplied and summed in f32.
            let wv = rounded(weight4(n, k4, p.k));
            if p.m == 1u {
                acc[0] += dot(wv, rounded(x[p.x_base + k4]));
                continue;
            }
            // A constant trip count and no early exit, so that compilers unroll it and keep
            // acc in registers (a loop to p.m put acc in memory: lavapipe ran 2 rows 17x
            // slower than 1, and its memory grew with every dispatch).
            for (var m = 0u; m < MAX_ROWS; m++) {
                if m < p.m {
                    acc[m] += dot(wv, rounded(x[p.x_base + m * p.x_stride + k4]));
                }
            }
        }
    }
    return acc;
}

// Row m's sum for column n, finished: bias, scale, activation, stored.
fn store(n: u32, m: u32, sum: f32) {
    var v = sum;
    if p.has_bias != 0u {
        v += bias[n];
    }
    y[p.y_base + m * p.y_stride + n] = activate(p.act, v * p.scale);
}
