//! How a matrix's integer levels are stored (`Levels`) and how each kernel reads them
//! (`Level`, `Form`).

use super::{GROUP, GROUP_BLOCK_VALUES};

/// A matrix's integer levels in the kernel's layout: what each weight is, times its scale.
#[derive(Debug, Clone)]
pub(super) enum Levels {
    /// Q8_0 / Q4_0 levels (−127 … 127, −8 … 7).
    I8(Vec<i8>),
    /// A Q8_0 matrix with its residual folded in: `16·q + r` (−2040 … 2039) under the scale
    /// `s / 16`, the exact value `q·s + r·s/16` of the pair as one 12-bit level.
    I16(Vec<i16>),
    /// The same 12-bit levels as `I16` from 1.5 bytes each: per group and block, the 512 q8
    /// levels in layout order, then 256 bytes of the residual's nibbles (`Q8rByte`).
    Q8Nibbles(Vec<Q8rByte>),
    /// Q4_0 levels two to a byte, each offset by 8 (level 2k in the low nibble, 2k + 1 in the
    /// high one): a residual kept apart (`from_q8_and_residual`), which decoding reads a few rows at
    /// a time (lookups, `select_rows`), so it stays packed; a whole product unpacks it one
    /// group at a time.
    Nibbles(Vec<u8>),
}

impl Levels {
    pub(super) fn get(&self, i: usize) -> i32 {
        match self {
            Levels::I8(v) => v[i] as i32,
            Levels::I16(v) => v[i] as i32,
            Levels::Q8Nibbles(v) => {
                let (chunk, k) = (i / GROUP_BLOCK_VALUES, i % GROUP_BLOCK_VALUES);
                Q8rByte::level(&v[chunk * Q8rByte::BLOCK_LEN..][..Q8rByte::BLOCK_LEN], k)
            }
            Levels::Nibbles(v) => ((v[i / 2] >> (4 * (i % 2))) & 15) as i32 - 8,
        }
    }
}

/// How a kernel reads a group's levels.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Form {
    /// 8-bit levels, sign-extended to 16 bits on load.
    I8,
    /// 16-bit levels, loaded as they are.
    I16,
    /// `16·q + r` formed on load from q8 bytes and the residual's nibbles (`Q8rByte`).
    Q8Nibbles,
}

/// The element type of stored levels, as the kernels read it (`Form`); every form is turned
/// into 16-bit levels in registers, and the same `vpdpwssd` / `pmaddwd` / `i32x4.dot_i16x8`
/// products follow.
pub(super) trait Level: Copy + Default + Send + Sync + 'static {
    const FORM: Form;
    /// Elements one group's block takes (its `GROUP_BLOCK_VALUES` levels).
    const BLOCK_LEN: usize;
    /// Level `k` (layout order, < `GROUP_BLOCK_VALUES`) of the group block `wb`.
    fn level(wb: &[Self], k: usize) -> i32;
}
impl Level for i8 {
    const FORM: Form = Form::I8;
    const BLOCK_LEN: usize = GROUP_BLOCK_VALUES;
    fn level(wb: &[Self], k: usize) -> i32 {
        wb[k] as i32
    }
}
impl Level for i16 {
    const FORM: Form = Form::I16;
    const BLOCK_LEN: usize = GROUP_BLOCK_VALUES;
    fn level(wb: &[Self], k: usize) -> i32 {
        wb[k] as i32
    }
}

/// A byte of `Levels::Q8Nibbles`. Per group block: bytes 0..512 are the q8 levels q (i8) in
/// layout order; then for each of the 16 pairs 16 bytes, byte j holding `r + 8` of level j of
/// the pair in its low nibble and of level j + 16 in its high one — so a 16-byte load
/// zero-extended to 16 lanes gives levels 0..16 masked and 16..32 shifted, in the order the
/// q8 bytes' sign extension gives (AVX-512: one 32-lane vector; AVX2: two of 16; SIMD128:
/// four of 8). Level = 16·q + r.
#[derive(Clone, Copy, Default, Debug)]
#[repr(transparent)]
pub(super) struct Q8rByte(pub(super) u8);

impl Level for Q8rByte {
    const FORM: Form = Form::Q8Nibbles;
    const BLOCK_LEN: usize = GROUP_BLOCK_VALUES * 3 / 2;
    fn level(wb: &[Self], k: usize) -> i32 {
        let (at, shift) = Q8rByte::nibble_of(k);
        16 * (wb[k].0 as i8 as i32) + ((wb[at].0 >> shift) & 15) as i32 - 8
    }
}

impl Q8rByte {
    /// Where level `k`'s residual nibble lives in its group block: (byte index, bit shift).
    pub(super) fn nibble_of(k: usize) -> (usize, u32) {
        let (p, j) = (k / (2 * GROUP), k % (2 * GROUP));
        (
            GROUP_BLOCK_VALUES + p * GROUP + j % GROUP,
            4 * (j / GROUP) as u32,
        )
    }
}

/// Levels the kernels take as a plain vector (`PackedMatrix::build`).
pub(super) trait PlainLevel: Level {
    fn into_levels(v: Vec<Self>) -> Levels;
}
impl PlainLevel for i8 {
    fn into_levels(v: Vec<Self>) -> Levels {
        Levels::I8(v)
    }
}
impl PlainLevel for i16 {
    fn into_levels(v: Vec<Self>) -> Levels {
        Levels::I16(v)
    }
}
