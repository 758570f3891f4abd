// y[m, n] = act((sum_k x[m, k] * W[n, k] + bias[n]) * scale) for a few rows m (one token per
// sentence or beam while decoding). One workgroup per output column n; the rows' partial sums
// (matvec_common.wgsl) are reduced in workgroup memory, a tree of barriers: needs no optional
// feature.

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let n = wid.x + wid.y * nwg.x;
    let acc = partial_sums(n, lid);
    for (var m = 0u; m < MAX_ROWS; m++) {
        partial[m * WG + lid] = acc[m];
    }
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if lid < s {
            for (var m = 0u; m < MAX_ROWS; m++) {
                partial[m * WG + lid] += partial[m * WG + lid + s];
            }
        }
        workgroupBarrier();
    }
    if n < p.n && lid < p.m {
        store(n, lid, partial[lid * WG]);
    }
}
