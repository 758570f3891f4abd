// GGML Q4_0 as the package stores it: per block of 32 values, 16 bytes whose low nibbles are
// values 0..15 and high nibbles values 16..31, each minus 8; one f16 scale per block.
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read> scales: array<u32>;

// block_scale: block_scales.wgsl.

fn weight4(row: u32, k4: u32, cols: u32) -> vec4<f32> {
    let col = k4 * 4u;
    let block = (row * cols + col) / 32u;
    let within = col % 32u;
    // Each block is 4 u32 words; values 0..15 and 16..31 share them.
    let word = w[block * 4u + (within % 16u) / 4u];
    let shift = select(0u, 4u, within >= 16u);
    let q = vec4<u32>(
        (word >> shift) & 15u,
        (word >> (8u + shift)) & 15u,
        (word >> (16u + shift)) & 15u,
        (word >> (24u + shift)) & 15u,
    );
    return (vec4<f32>(q) - 8.0) * block_scale(block);
}
