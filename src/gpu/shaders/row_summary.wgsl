// What fine-tuning needs of each row's full-vocabulary logits (see finetune/positions.rs): the
// largest logit, Σ exp(z − max), Σ z and the target token's logit, written at row `at + row`
// of `summary`. One workgroup per row; it runs before top_k, which overwrites the logits.

struct Params {
    vocab: u32,
    at: u32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> labels: array<u32>;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(5) var<storage, read_write> summary: array<vec4<f32>>;

const WG: u32 = 256u;
var<workgroup> red_a: array<f32, 256>;
var<workgroup> red_b: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.x;
    let base = row * p.vocab;

    var m = TAKEN;
    for (var i = lid; i < p.vocab; i += WG) {
        m = max(m, logits[base + i]);
    }
    red_a[lid] = m;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if lid < s {
            red_a[lid] = max(red_a[lid], red_a[lid + s]);
        }
        workgroupBarrier();
    }
    let row_max = red_a[0];
    workgroupBarrier();

    var e = 0.0;
    var z_sum = 0.0;
    for (var i = lid; i < p.vocab; i += WG) {
        let z = logits[base + i];
        e += exp(z - row_max);
        z_sum += z;
    }
    red_a[lid] = e;
    red_b[lid] = z_sum;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if lid < s {
            red_a[lid] += red_a[lid + s];
            red_b[lid] += red_b[lid + s];
        }
        workgroupBarrier();
    }
    if lid == 0u {
        let label = min(labels[p.at + row], p.vocab - 1u);
        summary[p.at + row] = vec4<f32>(row_max, red_a[0], red_b[0], logits[base + label]);
    }
}
