// x[r, :] = E[ids[r], :] * scale + positions[pos_offset + r % pos_period, :] — the token
// embedding read from the stored (possibly quantized) matrix, plus Marian's sinusoidal
// positions. One workgroup per row.

struct Params {
    rows: u32,
    d: u32,
    pos_period: u32,   // tokens per sequence in this buffer (S when encoding, 1 when decoding)
    pos_offset: u32,   // position of the first token (decoding: tokens already consumed)
    scale: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(4) var<storage, read> positions: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let r = wid.x + wid.y * nwg.x;
    if r >= p.rows {
        return;
    }
    let d4 = p.d / 4u;
    let id = ids[r];
    let pos = p.pos_offset + r % p.pos_period;
    for (var k4 = lid; k4 < d4; k4 += 64u) {
        out[r * d4 + k4] = weight4(id, k4, p.d) * p.scale + positions[pos * d4 + k4];
    }
}
