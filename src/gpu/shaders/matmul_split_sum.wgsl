// The second half of a split-K product (matmul_tiled.wgsl with several K slices): y[m, n] =
// act((sum over slices s of partial[s, m, n] + bias[n]) * scale), slices summed in order (the
// same bits on every run). One invocation per output.

struct Params {
    m: u32,
    n: u32,
    slices: u32,
    y_base: u32,     // in floats
    y_stride: u32,   // in floats
    act: u32,
    scale: f32,
    has_bias: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> partial: array<f32>;   // [slices, m, n]
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    let size = p.m * p.n;
    if i >= size {
        return;
    }
    var v = 0.0;
    for (var s = 0u; s < p.slices; s++) {
        v += partial[s * size + i];
    }
    let n = i % p.n;
    if p.has_bias != 0u {
        v += bias[n];
    }
    y[p.y_base + (i / p.n) * p.y_stride + n] = activate(p.act, v * p.scale);
}
