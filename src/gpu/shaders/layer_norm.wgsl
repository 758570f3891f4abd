// x[r, :] = LayerNorm(x[r, :] + h[r, :]) * weight + bias — Marian's post-norm residual, in
// place on x. Mean first, then the variance of the centred values (as candle does).
// One workgroup per row.

struct Params {
    rows: u32,
    d: u32,
    eps: f32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> h: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> x: array<f32>;

const WG: u32 = 64u;
var<workgroup> red: array<f32, 64>;

fn reduce_sum(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if lid < s {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let r = wid.x + wid.y * nwg.x;
    if r >= p.rows {
        return;
    }
    let base = r * p.d;
    var s = 0.0;
    for (var i = lid; i < p.d; i += WG) {
        s += x[base + i] + h[base + i];
    }
    let mean = reduce_sum(lid, s) / f32(p.d);
    var v = 0.0;
    for (var i = lid; i < p.d; i += WG) {
        let c = x[base + i] + h[base + i] - mean;
        v += c * c;
    }
    let inv = inverseSqrt(reduce_sum(lid, v) / f32(p.d) + p.eps);
    for (var i = lid; i < p.d; i += WG) {
        x[base + i] = (x[base + i] + h[base + i] - mean) * inv * weight[i] + bias[i];
    }
}
