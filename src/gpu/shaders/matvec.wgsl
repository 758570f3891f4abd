// y[m, n] = act((sum_k x[m, k] * W[n, k] + bias[n]) * scale) for a few rows m (one token per
// sentence or beam while decoding). One workgroup per output column n: the weight row is read
// once for all rows, the rows' partial sums are reduced in workgroup memory.

// Params: matmul_params.wgsl (m is at most MAX_ROWS here).

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

const WG: u32 = 64u;
const MAX_ROWS: u32 = 8u;
var<workgroup> partial: array<f32, 512>; // MAX_ROWS * WG

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let n = wid.x + wid.y * nwg.x;
    let valid = n < p.n;
    var acc = array<f32, 8>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    if valid {
        let k4n = p.k / 4u;
        for (var k4 = lid; k4 < k4n; k4 += WG) {
            let wv = weight4(n, k4, p.k);
            for (var m = 0u; m < p.m; m++) {
                acc[m] += dot(wv, x[p.x_base + m * p.x_stride + k4]);
            }
        }
    }
    for (var m = 0u; m < MAX_ROWS; m++) {
        partial[m * WG + lid] = acc[m];
    }
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if lid < s {
            for (var m = 0u; m < MAX_ROWS; m++) {
                partial[m * WG + lid] += partial[m * WG + lid + s];
            }
        }
        workgroupBarrier();
    }
    if valid && lid < p.m {
        var v = partial[lid * WG];
        if p.has_bias != 0u {
            v += bias[n];
        }
        y[p.y_base + lid * p.y_stride + n] = activate(p.act, v * p.scale);
    }
}
