// y[m, n] = act((sum_k x[m, k] * W[n, k] + bias[n]) * scale) for many rows (encoding, large
// batches): 64x64 output tiles, 16 threads x 16 threads each computing 4x4, K in steps of 16,
// weights dequantized once per tile as they are loaded into workgroup memory.
// Split-K (a grid of several z slices, when the tiles alone are too few workgroups to fill a
// GPU): slice z sums K from z * k_slice to (z + 1) * k_slice (a multiple of 16) and stores its
// raw sums in y laid out [slices, m, n]; matmul_split_sum.wgsl adds the slices, bias and
// activation.

// Params: matmul_params.wgsl. Real: precision_*.wgsl.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

const TILE: u32 = 64u;
const KT: u32 = 16u;
// The tiles hold operands in Real (precision_*.wgsl); they are multiplied and summed in f32.
var<workgroup> xs: array<vec4<Real>, 256>; // [TILE rows][KT / 4]
var<workgroup> ws: array<vec4<Real>, 256>; // [TILE cols][KT / 4]

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid3: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let m0 = wid.y * TILE;
    let n0 = wid.x * TILE;
    let tx = lid3.x;
    let ty = lid3.y;
    var acc: array<vec4<f32>, 4>;
    for (var i = 0u; i < 4u; i++) {
        acc[i] = vec4<f32>(0.0);
    }
    let k4n = p.k / 4u;
    let load_row = lid / 4u;     // 0..63
    let load_k4 = lid % 4u;      // 0..3
    let k_end = min(p.k, (wid.z + 1u) * p.k_slice);
    for (var k0 = wid.z * p.k_slice; k0 < k_end; k0 += KT) {
        let k4 = k0 / 4u + load_k4;
        let xm = m0 + load_row;
        var xv = vec4<f32>(0.0);
        if xm < p.m && k4 < k4n {
            xv = x[p.x_base + xm * p.x_stride + k4];
        }
        xs[lid] = vec4<Real>(xv);
        let wn = n0 + load_row;
        var wv = vec4<f32>(0.0);
        if wn < p.n && k4 < k4n {
            wv = weight4(wn, k4, p.k);
        }
        ws[lid] = vec4<Real>(wv);
        workgroupBarrier();
        for (var kk = 0u; kk < 4u; kk++) {
            let b0 = vec4<f32>(ws[(tx * 4u + 0u) * 4u + kk]);
            let b1 = vec4<f32>(ws[(tx * 4u + 1u) * 4u + kk]);
            let b2 = vec4<f32>(ws[(tx * 4u + 2u) * 4u + kk]);
            let b3 = vec4<f32>(ws[(tx * 4u + 3u) * 4u + kk]);
            for (var i = 0u; i < 4u; i++) {
                let a = vec4<f32>(xs[(ty * 4u + i) * 4u + kk]);
                acc[i] += vec4<f32>(dot(a, b0), dot(a, b1), dot(a, b2), dot(a, b3));
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let m = m0 + ty * 4u + i;
        if m >= p.m {
            continue;
        }
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + tx * 4u + j;
            if n >= p.n {
                continue;
            }
            var v = acc[i][j];
            if nwg.z > 1u {
                y[(wid.z * p.m + m) * p.n + n] = v;
                continue;
            }
            if p.has_bias != 0u {
                v += bias[n];
            }
            y[p.y_base + m * p.y_stride + n] = activate(p.act, v * p.scale);
        }
    }
}
