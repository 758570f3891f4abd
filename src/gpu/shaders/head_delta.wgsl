// A fine-tuning adapter's correction of the output projection on its few tokens:
// logits[r, ids[j]] += hidden[r, :] . delta_w[j, :] + delta_b[j]. The ids are distinct, so
// every thread owns the logit it writes.

struct Params {
    rows: u32,
    k: u32,
    d: u32,
    vocab: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> hidden: array<f32>;
@group(0) @binding(2) var<storage, read> delta_w: array<f32>;
@group(0) @binding(3) var<storage, read> delta_b: array<f32>;
@group(0) @binding(4) var<storage, read> ids: array<u32>;
@group(0) @binding(5) var<storage, read_write> logits: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let r = gid.y;
    if j >= p.k || r >= p.rows {
        return;
    }
    var s = delta_b[j];
    for (var e = 0u; e < p.d; e++) {
        s += hidden[r * p.d + e] * delta_w[j * p.d + e];
    }
    logits[r * p.vocab + ids[j]] += s;
}
