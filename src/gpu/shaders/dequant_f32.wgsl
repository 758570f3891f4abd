// f32 weights: four consecutive values of row `row` starting at column 4*k4.
@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> scales: array<u32>;

fn weight4(row: u32, k4: u32, cols: u32) -> vec4<f32> {
    return w[row * (cols / 4u) + k4];
}
