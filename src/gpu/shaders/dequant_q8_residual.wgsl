// GGML Q8_0 plus a Q4_0 residual (residual quantization: the weight is the sum of the two),
// re-laid at upload so that a block's data is contiguous and 4-byte aligned: per block of 32
// values, 12 u32 words (8 of int8 values q, then 4 of the residual's nibbles r + 8 in Q4_0
// order). The scales are the Q8_0 ones as stored; the residual's is implied: s / 16. So a
// weight is (16q + r) · s/16, a 12-bit level, as the CPU's folded kernel multiplies it (every
// step exact in f32).
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read> scales: array<u32>;

// block_scale: block_scales.wgsl.

fn weight4(row: u32, k4: u32, cols: u32) -> vec4<f32> {
    let col = k4 * 4u;
    let block = (row * cols + col) / 32u;
    let within = col % 32u;
    let word = w[block * 12u + within / 4u];
    let q = vec4<i32>(
        bitcast<i32>(word << 24u) >> 24u,
        bitcast<i32>(word << 16u) >> 24u,
        bitcast<i32>(word << 8u) >> 24u,
        bitcast<i32>(word) >> 24u,
    );
    let fine = w[block * 12u + 8u + (within % 16u) / 4u];
    let shift = select(0u, 4u, within >= 16u);
    let r = vec4<i32>(
        i32((fine >> shift) & 15u),
        i32((fine >> (8u + shift)) & 15u),
        i32((fine >> (16u + shift)) & 15u),
        i32((fine >> (24u + shift)) & 15u),
    ) - 8;
    return vec4<f32>(16 * q + r) * (block_scale(block) * 0.0625);
}
