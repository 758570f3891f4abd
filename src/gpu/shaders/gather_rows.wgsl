// dst[i, :words] = src[index[i], :words] for rows laid out `stride` floats apart: beam search's
// reordering of the self-attention cache (only the positions filled so far are moved).

struct Params {
    rows: u32,
    words: u32,
    stride: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> index: array<u32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(5) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let w = gid.x;
    let i = gid.y;
    if w >= p.words || i >= p.rows {
        return;
    }
    dst[i * p.stride + w] = src[index[i] * p.stride + w];
}
