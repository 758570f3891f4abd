// A fine-tuning adapter's correction of the output projection on its few tokens:
// logits[r, ids[j]] += hidden[r, :] . delta_w[j, :] + delta_b[j] for every entry j that applies
// in row r: its previous-token condition (conditions[2j], 0xffffffff: none) is row r's step
// input (row_state[2r]) and its trigger group (conditions[2j + 1]) is among those row r's
// source hits (row_state[2r + 1], a bit mask). Ids are sorted; a token's entries are adjacent,
// and the thread of its first entry sums them all, so every thread owns the logit it writes.

struct Params {
    rows: u32,
    k: u32,
    d: u32,
    vocab: u32,
}

const NOT_CONDITIONED: u32 = 0xffffffffu;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> hidden: array<f32>;
@group(0) @binding(2) var<storage, read> delta_w: array<f32>;
@group(0) @binding(3) var<storage, read> delta_b: array<f32>;
@group(0) @binding(4) var<storage, read> ids: array<u32>;
@group(0) @binding(5) var<storage, read_write> logits: array<f32>;
@group(0) @binding(6) var<storage, read> conditions: array<u32>;
@group(0) @binding(7) var<storage, read> row_state: array<u32>;

fn applies(j: u32, r: u32) -> bool {
    let after = conditions[2u * j];
    let group = conditions[2u * j + 1u];
    let prev_ok = after == NOT_CONDITIONED || after == row_state[2u * r];
    let group_ok = group == NOT_CONDITIONED || (row_state[2u * r + 1u] & (1u << group)) != 0u;
    return prev_ok && group_ok;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j0 = gid.x;
    let r = gid.y;
    if j0 >= p.k || r >= p.rows {
        return;
    }
    if j0 > 0u && ids[j0 - 1u] == ids[j0] {
        return;
    }
    var total = 0.0;
    var j = j0;
    loop {
        if j >= p.k || ids[j] != ids[j0] {
            break;
        }
        if applies(j, r) {
            var s = delta_b[j];
            for (var e = 0u; e < p.d; e++) {
                s += hidden[r * p.d + e] * delta_w[j * p.d + e];
            }
            total += s;
        }
        j += 1u;
    }
    logits[r * p.vocab + ids[j0]] += total;
}
