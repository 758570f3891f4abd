// matvec.wgsl with the reduction done by subgroup operations, for adapters that offer
// subgroups. Each subgroup sums its lanes' partial sums (matvec_common.wgsl) in registers
// (subgroupAdd); its first lane leaves the sum in workgroup memory, every other lane a zero, so
// the result needs neither a particular subgroup size nor a particular lane-to-subgroup layout;
// one barrier instead of the tree's seven.

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32,
        @builtin(subgroup_invocation_id) lane: u32) {
    let n = wid.x + wid.y * nwg.x;
    let acc = partial_sums(n, lid);
    // Every invocation reaches this loop (uniform control flow, as subgroup operations need).
    for (var m = 0u; m < MAX_ROWS; m++) {
        let sum = subgroupAdd(acc[m]);
        partial[m * WG + lid] = select(0.0, sum, lane == 0u);
    }
    workgroupBarrier();
    if n < p.n && lid < p.m {
        var v = 0.0;
        for (var i = 0u; i < WG; i++) {
            v += partial[lid * WG + i];
        }
        store(n, lid, v);
    }
}
