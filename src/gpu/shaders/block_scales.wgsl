// The f16 scale of GGML block `block` (Q8_0 and Q4_0): the package stores two per u32, in the
// `scales` binding the format's dequant file declares.
fn block_scale(block: u32) -> f32 {
    let pair = unpack_halves(scales[block / 2u]);
    return select(pair.x, pair.y, (block & 1u) == 1u);
}
