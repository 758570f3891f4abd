// Scaled dot-product attention of one query row and one head per workgroup over a K/V block
// laid out [kv_rows, kv_stride] (positions x d_model, heads side by side): the decoder's
// self-attention cache (written in place at its offset by the K/V projections), the encoder
// output's cross-attention K/V, or the encoder's own K/V. Keys past the block's length are
// never read (the padding mask). The query is already scaled (folded into its projection).

struct Params {
    q_rows: u32,      // query rows in this dispatch
    q_per_kv: u32,    // consecutive query rows sharing one K/V block (S when encoding, 1 when decoding)
    heads: u32,
    head_dim: u32,
    d: u32,
    kv_stride: u32,   // floats from one K/V block to the next
    fixed_len: u32,   // when non-zero, every block's length (decoder self-attention)
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> kv_block: array<u32>;   // per query group: which block
@group(0) @binding(6) var<storage, read> kv_len: array<u32>;     // per block: valid positions
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const WG: u32 = 64u;
const MAX_KEYS: u32 = 1024u;
var<workgroup> scores: array<f32, 1024>;
var<workgroup> red: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let qr = wid.y;
    if qr >= p.q_rows {
        return;
    }
    let block = kv_block[qr / p.q_per_kv];
    let len = min(select(kv_len[block], p.fixed_len, p.fixed_len != 0u), MAX_KEYS);
    let q_off = qr * p.d + h * p.head_dim;
    let kv_off = block * p.kv_stride + h * p.head_dim;

    var local_max = MASKED;
    for (var j = lid; j < len; j += WG) {
        var s = 0.0;
        let ko = kv_off + j * p.d;
        for (var e = 0u; e < p.head_dim; e++) {
            s += q[q_off + e] * k[ko + e];
        }
        scores[j] = s;
        local_max = max(local_max, s);
    }
    red[lid] = local_max;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if lid < s {
            red[lid] = max(red[lid], red[lid + s]);
        }
        workgroupBarrier();
    }
    let row_max = red[0];
    workgroupBarrier();

    var local_sum = 0.0;
    for (var j = lid; j < len; j += WG) {
        let e = exp(scores[j] - row_max);
        scores[j] = e;
        local_sum += e;
    }
    red[lid] = local_sum;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if lid < s {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let inv_sum = 1.0 / red[0];

    for (var e = lid; e < p.head_dim; e += WG) {
        var acc = 0.0;
        for (var j = 0u; j < len; j++) {
            acc += scores[j] * v[kv_off + j * p.d + e];
        }
        out[q_off + e] = acc * inv_sum;
    }
}
