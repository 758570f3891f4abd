// The matrix-product kernels' operand type: f16 (the "shader-f16" feature). Operands are rounded
// to f16 (a tile takes half the workgroup memory); the kernels widen them to multiply, so
// products and sums are f32 (dots in f16 changed tiny-opus's tokens; these keep them).
enable f16;
alias Real = f16;
