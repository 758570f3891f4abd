// matvec.wgsl with the reduction done by subgroup operations, for adapters that offer
// subgroups: y[m, n] = act((sum_k x[m, k] * W[n, k] + bias[n]) * scale) for a few rows m, one
// workgroup per output column n. Each subgroup sums its lanes' partial sums in registers
// (subgroupAdd); its first lane leaves the sum in workgroup memory, every other lane a zero, so
// the result needs neither a particular subgroup size nor a particular lane-to-subgroup layout;
// one barrier instead of the tree's seven.

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
        @builtin(local_invocation_index) lid: u32,
        @builtin(subgroup_invocation_id) lane: u32) {
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
    // Every invocation reaches this loop (uniform control flow, as subgroup operations need).
    for (var m = 0u; m < MAX_ROWS; m++) {
        let sum = subgroupAdd(acc[m]);
        partial[m * WG + lid] = select(0.0, sum, lane == 0u);
    }
    workgroupBarrier();
    if valid && lid < p.m {
        var v = 0.0;
        for (var i = 0u; i < WG; i++) {
            v += partial[lid * WG + i];
        }
        if p.has_bias != 0u {
            v += bias[n];
        }
        y[p.y_base + lid * p.y_stride + n] = activate(p.act, v * p.scale);
    }
}
