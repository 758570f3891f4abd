// Shared by build.rs (which validates every module with naga) and the crate (which compiles
// them): which kernels exist and how a kernel is joined with the weight format it reads.

/// How a matrix is stored on the GPU: exactly as in the package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WeightFormat {
    F32,
    F16,
    Q8,
    Q4,
}

impl WeightFormat {
    pub const ALL: [WeightFormat; 4] = [
        WeightFormat::F32,
        WeightFormat::F16,
        WeightFormat::Q8,
        WeightFormat::Q4,
    ];
    /// The WGSL file defining `weight4(row, k4, cols)` for this format.
    pub fn dequant_file(self) -> &'static str {
        match self {
            WeightFormat::F32 => "dequant_f32.wgsl",
            WeightFormat::F16 => "dequant_f16.wgsl",
            WeightFormat::Q8 => "dequant_q8.wgsl",
            WeightFormat::Q4 => "dequant_q4.wgsl",
        }
    }
}

/// Kernels that read a stored matrix (one module per weight format).
pub const WEIGHT_KERNELS: [&str; 3] = ["matvec.wgsl", "matmul_tiled.wgsl", "embed.wgsl"];
/// Kernels over f32 activations only.
pub const PLAIN_KERNELS: [&str; 5] = [
    "layer_norm.wgsl",
    "attention.wgsl",
    "top_k.wgsl",
    "gather_rows.wgsl",
    "head_delta.wgsl",
];
/// Functions every kernel may use (activations).
pub const COMMON_FILE: &str = "common.wgsl";

/// The WGSL source of a kernel: common functions, the format's dequantization (if any), then
/// the kernel itself.
pub fn compose(common: &str, dequant: Option<&str>, kernel: &str) -> String {
    let mut s = String::with_capacity(common.len() + kernel.len() + 1024);
    s.push_str(common);
    s.push('\n');
    if let Some(d) = dequant {
        s.push_str(d);
        s.push('\n');
    }
    s.push_str(kernel);
    s
}
