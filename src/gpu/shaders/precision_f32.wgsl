// The matrix-product kernels' operand type: f32 (needs no optional feature).
alias Real = f32;
