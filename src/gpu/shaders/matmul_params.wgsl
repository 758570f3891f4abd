// The parameters of both matrix-product kernels (matvec.wgsl, matmul_tiled.wgsl):
// y[m, n] = act((sum_k x[m, k] * W[n, k] + bias[n]) * scale).
struct Params {
    m: u32,          // rows of x
    n: u32,          // output columns = weight rows
    k: u32,          // inner size = weight columns (a multiple of 4)
    x_base: u32,     // in vec4s
    x_stride: u32,   // in vec4s
    y_base: u32,     // in floats
    y_stride: u32,   // in floats
    act: u32,
    scale: f32,
    has_bias: u32,
    k_slice: u32,    // matmul_tiled.wgsl: K per z slice (k when not split)
    _pad1: u32,
}
