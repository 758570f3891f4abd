// GGML Q8_0 as the package stores it: int8 values [rows, cols] (four per u32) and one f16
// scale per block of 32 values [rows, cols / 32] (two per u32).
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read> scales: array<u32>;

// block_scale: block_scales.wgsl.

fn weight4(row: u32, k4: u32, cols: u32) -> vec4<f32> {
    let word = w[row * (cols / 4u) + k4];
    let q = vec4<i32>(
        bitcast<i32>(word << 24u) >> 24u,
        bitcast<i32>(word << 16u) >> 24u,
        bitcast<i32>(word << 8u) >> 24u,
        bitcast<i32>(word) >> 24u,
    );
    return vec4<f32>(q) * block_scale((row * cols + k4 * 4u) / 32u);
}
