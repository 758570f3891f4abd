// f16 weights, two per u32 (little-endian), widened here; needs no shader-f16 feature.
@group(0) @binding(2) var<storage, read> w: array<vec2<u32>>;
@group(0) @binding(3) var<storage, read> scales: array<u32>;

fn weight4(row: u32, k4: u32, cols: u32) -> vec4<f32> {
    let words = w[row * (cols / 4u) + k4];
    return vec4<f32>(unpack_halves(words.x), unpack_halves(words.y));
}
