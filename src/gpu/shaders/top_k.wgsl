// Each row's best k tokens on the GPU, so a decoding step reads back k ids and scores instead
// of a vocabulary of logits. Scores are log-softmax (beam search) or raw logits (greedy);
// banned tokens never win; ties go to the lower id, as the CPU reference does.
// One workgroup per row; the row's logits are overwritten (they are not needed afterwards).

struct Params {
    vocab: u32,
    k: u32,
    log_softmax: u32,
    n_banned: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> banned: array<u32>;
@group(0) @binding(5) var<storage, read_write> logits: array<f32>;
@group(0) @binding(6) var<storage, read_write> best: array<vec2<u32>>;   // (id, bitcast score)

const WG: u32 = 256u;
var<workgroup> red_v: array<f32, 256>;
var<workgroup> red_i: array<u32, 256>;

// (value, id) ordering: higher value first, then lower id.
fn better(va: f32, ia: u32, vb: f32, ib: u32) -> bool {
    return va > vb || (va == vb && ia < ib);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.x;
    let base = row * p.vocab;

    var lse = 0.0;
    if p.log_softmax != 0u {
        var m = TAKEN;
        for (var i = lid; i < p.vocab; i += WG) {
            m = max(m, logits[base + i]);
        }
        red_v[lid] = m;
        workgroupBarrier();
        for (var s = WG / 2u; s > 0u; s >>= 1u) {
            if lid < s {
                red_v[lid] = max(red_v[lid], red_v[lid + s]);
            }
            workgroupBarrier();
        }
        let row_max = red_v[0];
        workgroupBarrier();
        var sum = 0.0;
        for (var i = lid; i < p.vocab; i += WG) {
            sum += exp(logits[base + i] - row_max);
        }
        red_v[lid] = sum;
        workgroupBarrier();
        for (var s = WG / 2u; s > 0u; s >>= 1u) {
            if lid < s {
                red_v[lid] += red_v[lid + s];
            }
            workgroupBarrier();
        }
        lse = row_max + log(red_v[0]);
        workgroupBarrier();
    }
    for (var b = lid; b < p.n_banned; b += WG) {
        if banned[b] < p.vocab {
            logits[base + banned[b]] = MASKED;
        }
    }
    storageBarrier();
    workgroupBarrier();

    for (var round = 0u; round < p.k; round++) {
        var bv = TAKEN;
        var bi = 0xffffffffu;
        for (var i = lid; i < p.vocab; i += WG) {
            let v = logits[base + i];
            if v > TAKEN && better(v, i, bv, bi) {
                bv = v;
                bi = i;
            }
        }
        red_v[lid] = bv;
        red_i[lid] = bi;
        workgroupBarrier();
        for (var s = WG / 2u; s > 0u; s >>= 1u) {
            if lid < s && better(red_v[lid + s], red_i[lid + s], red_v[lid], red_i[lid]) {
                red_v[lid] = red_v[lid + s];
                red_i[lid] = red_i[lid + s];
            }
            workgroupBarrier();
        }
        if lid == 0u {
            let id = red_i[0];
            var score = red_v[0];
            if id < p.vocab {
                logits[base + id] = TAKEN;
                if score > MASKED {
                    score = score - lse;
                }
            }
            best[row * p.k + round] = vec2<u32>(id, bitcast<u32>(score));
        }
        storageBarrier();
        workgroupBarrier();
    }
}
