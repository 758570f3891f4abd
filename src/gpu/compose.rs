// Shared by build.rs (which validates every module with naga) and the crate (which compiles
// them): which kernels exist and how a kernel is joined with the weight format it reads.

/// How a matrix is stored on the GPU: exactly as in the package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WeightFormat {
    F32,
    F16,
    Q8,
    Q4,
    /// Q8_0 with a Q4_0 residual (`convert --residual`), interleaved per block at upload.
    Q8Residual,
}

impl WeightFormat {
    pub const ALL: [WeightFormat; 5] = [
        WeightFormat::F32,
        WeightFormat::F16,
        WeightFormat::Q8,
        WeightFormat::Q4,
        WeightFormat::Q8Residual,
    ];
    /// The WGSL file defining `weight4(row, k4, cols)` for this format.
    pub fn dequant_file(self) -> &'static str {
        match self {
            WeightFormat::F32 => "dequant_f32.wgsl",
            WeightFormat::F16 => "dequant_f16.wgsl",
            WeightFormat::Q8 => "dequant_q8.wgsl",
            WeightFormat::Q4 => "dequant_q4.wgsl",
            WeightFormat::Q8Residual => "dequant_q8_residual.wgsl",
        }
    }
}

/// The operands of the matrix-product kernels (`MATMUL_KERNELS`): weights and activations
/// enter them as `Real`; products and sums are f32 either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Precision {
    F32,
    /// Operands rounded to half precision (WebGPU's optional "shader-f16"), products and sums
    /// in f32: half the workgroup memory a tile of the tiled kernel takes.
    F16,
}

impl Precision {
    pub const ALL: [Precision; 2] = [Precision::F32, Precision::F16];
    /// The WGSL file that defines `Real` (and enables f16 where it is f16): first in a module,
    /// as an `enable` directive must be.
    pub fn file(self) -> &'static str {
        match self {
            Precision::F32 => "precision_f32.wgsl",
            Precision::F16 => "precision_f16.wgsl",
        }
    }
}

/// Kernels that read a stored matrix (one module per weight format).
pub const WEIGHT_KERNELS: [&str; 3] = ["matvec.wgsl", "matmul_tiled.wgsl", "embed.wgsl"];
/// Variants of weight kernels that use subgroup operations, for adapters that offer them
/// (the plain kernel is the path that needs none). Native only for now: wgpu 30's WebGPU
/// backend does not pass the browser's "subgroups" feature through, so in the browser the
/// adapter never offers it (and naga 30 refuses the `enable subgroups;` directive the browser
/// would want, so these files carry none).
pub const SUBGROUP_KERNELS: [&str; 1] = ["matvec_subgroup.wgsl"];
/// Kernels over f32 activations only.
pub const PLAIN_KERNELS: [&str; 7] = [
    "matmul_split_sum.wgsl",
    "layer_norm.wgsl",
    "attention.wgsl",
    "top_k.wgsl",
    "row_summary.wgsl",
    "gather_rows.wgsl",
    "head_delta.wgsl",
];
/// Functions every kernel may use (activations).
pub const COMMON_FILE: &str = "common.wgsl";
/// The parameter struct of the matrix-product kernels.
pub const MATMUL_PARAMS_FILE: &str = "matmul_params.wgsl";
/// Kernels that take `MATMUL_PARAMS_FILE`.
pub const MATMUL_KERNELS: [&str; 3] = ["matvec.wgsl", "matvec_subgroup.wgsl", "matmul_tiled.wgsl"];
/// What the matrix-vector kernels share (bindings, partial sums, the store).
pub const MATVEC_COMMON_FILE: &str = "matvec_common.wgsl";
/// Kernels that take `MATVEC_COMMON_FILE`.
pub const MATVEC_KERNELS: [&str; 2] = ["matvec.wgsl", "matvec_subgroup.wgsl"];
/// Block scales of the GGML formats (Q8_0, Q4_0; a residual's are implied by its Q8_0 ones).
pub const BLOCK_SCALES_FILE: &str = "block_scales.wgsl";

/// The files, in order, whose concatenation is the module of `kernel` reading weights stored
/// as `format` (None: a kernel over f32 activations only); `precision` is the inner products'
/// arithmetic for `MATMUL_KERNELS` (other kernels are f32 throughout and ignore it).
pub fn module_files(
    kernel: &'static str,
    format: Option<WeightFormat>,
    precision: Precision,
) -> Vec<&'static str> {
    let mut files = Vec::new();
    if MATMUL_KERNELS.contains(&kernel) {
        files.push(precision.file());
    }
    files.push(COMMON_FILE);
    if let Some(f) = format {
        if matches!(
            f,
            WeightFormat::Q8 | WeightFormat::Q4 | WeightFormat::Q8Residual
        ) {
            files.push(BLOCK_SCALES_FILE);
        }
        files.push(f.dequant_file());
    }
    if MATMUL_KERNELS.contains(&kernel) {
        files.push(MATMUL_PARAMS_FILE);
    }
    if MATVEC_KERNELS.contains(&kernel) {
        files.push(MATVEC_COMMON_FILE);
    }
    files.push(kernel);
    files
}

/// A module's WGSL source from its files' texts, in `module_files` order.
pub fn compose(sources: &[&str]) -> String {
    sources.join("\n")
}
