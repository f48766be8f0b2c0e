//! The original ggml block quants: 32 elements per block, one f16 scale
//! (plus an f16 offset for the `_1` variants) per block.
//!
//! The 4-bit codes are packed two per byte, but not as neighbours: byte `j`
//! carries element `j` in its low nibble and element `j + 16` in its high
//! nibble, so a whole block unpacks with two straight passes over 16 bytes
//! (mask, then shift) rather than an interleave. The 5-bit variants keep the
//! same nibbles and add a 32-bit word whose bit `i` is the fifth bit of
//! element `i`.

use super::{dequantize_blocks, dot_blocks, f16_le};

/// Elements per legacy block.
pub const QK: usize = 32;
pub const Q4_0_BYTES: usize = 18;
pub const Q4_1_BYTES: usize = 20;
pub const Q5_0_BYTES: usize = 22;
pub const Q5_1_BYTES: usize = 24;
pub const Q8_0_BYTES: usize = 34;

/// Q4_0, 18 bytes: `d: f16` at 0, `qs[16]` at 2.
/// Codes are unsigned 0..=15 centred on 8: `x = (q - 8) * d`.
// Out of line on purpose: see `dequantize_blocks` in mod.rs.
#[inline(never)]
pub fn decode_q4_0(b: &[u8; Q4_0_BYTES], out: &mut [f32; QK]) {
    let d = f16_le(b[0], b[1]);
    for j in 0..16 {
        let q = b[2 + j];
        out[j] = ((q & 0x0F) as i32 - 8) as f32 * d;
        out[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
    }
}

/// Q4_1, 20 bytes: `d: f16` at 0, `m: f16` at 2, `qs[16]` at 4.
/// Asymmetric: codes 0..=15 span `[m, m + 15 d]`, `x = q * d + m`.
// Out of line on purpose: see `dequantize_blocks` in mod.rs.
#[inline(never)]
pub fn decode_q4_1(b: &[u8; Q4_1_BYTES], out: &mut [f32; QK]) {
    let d = f16_le(b[0], b[1]);
    let m = f16_le(b[2], b[3]);
    for j in 0..16 {
        let q = b[4 + j];
        out[j] = (q & 0x0F) as f32 * d + m;
        out[j + 16] = (q >> 4) as f32 * d + m;
    }
}

/// Q5_0, 22 bytes: `d: f16` at 0, `qh: u32` (little-endian) at 2, `qs[16]`
/// at 6. The low four bits come from the nibbles as in Q4_0; bit `i` of `qh`
/// is bit 4 of element `i`. Codes 0..=31 centred on 16: `x = (q - 16) * d`.
// Out of line on purpose: see `dequantize_blocks` in mod.rs.
#[inline(never)]
pub fn decode_q5_0(b: &[u8; Q5_0_BYTES], out: &mut [f32; QK]) {
    let d = f16_le(b[0], b[1]);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    for j in 0..16 {
        let q = b[6 + j] as u32;
        let lo = (q & 0x0F) | (((qh >> j) & 1) << 4);
        let hi = (q >> 4) | (((qh >> (j + 16)) & 1) << 4);
        out[j] = (lo as i32 - 16) as f32 * d;
        out[j + 16] = (hi as i32 - 16) as f32 * d;
    }
}

/// Q5_1, 24 bytes: `d: f16` at 0, `m: f16` at 2, `qh: u32` at 4, `qs[16]` at
/// 8. Bits as in Q5_0, offset as in Q4_1: `x = q * d + m`.
// Out of line on purpose: see `dequantize_blocks` in mod.rs.
#[inline(never)]
pub fn decode_q5_1(b: &[u8; Q5_1_BYTES], out: &mut [f32; QK]) {
    let d = f16_le(b[0], b[1]);
    let m = f16_le(b[2], b[3]);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    for j in 0..16 {
        let q = b[8 + j] as u32;
        let lo = (q & 0x0F) | (((qh >> j) & 1) << 4);
        let hi = (q >> 4) | (((qh >> (j + 16)) & 1) << 4);
        out[j] = lo as f32 * d + m;
        out[j + 16] = hi as f32 * d + m;
    }
}

/// Q8_0, 34 bytes: `d: f16` at 0, then 32 signed bytes in element order:
/// `x = q * d`.
// Out of line on purpose: see `dequantize_blocks` in mod.rs.
#[inline(never)]
pub fn decode_q8_0(b: &[u8; Q8_0_BYTES], out: &mut [f32; QK]) {
    let d = f16_le(b[0], b[1]);
    for j in 0..QK {
        out[j] = (b[2 + j] as i8) as f32 * d;
    }
}

pub(crate) fn dequantize_q4_0(src: &[u8], out: &mut [f32]) {
    dequantize_blocks(src, out, decode_q4_0)
}
pub(crate) fn dequantize_q4_1(src: &[u8], out: &mut [f32]) {
    dequantize_blocks(src, out, decode_q4_1)
}
pub(crate) fn dequantize_q5_0(src: &[u8], out: &mut [f32]) {
    dequantize_blocks(src, out, decode_q5_0)
}
pub(crate) fn dequantize_q5_1(src: &[u8], out: &mut [f32]) {
    dequantize_blocks(src, out, decode_q5_1)
}
pub(crate) fn dequantize_q8_0(src: &[u8], out: &mut [f32]) {
    dequantize_blocks(src, out, decode_q8_0)
}

pub(crate) fn dot_q4_0(src: &[u8], x: &[f32]) -> f32 {
    dot_blocks(src, x, decode_q4_0)
}
pub(crate) fn dot_q4_1(src: &[u8], x: &[f32]) -> f32 {
    dot_blocks(src, x, decode_q4_1)
}
pub(crate) fn dot_q5_0(src: &[u8], x: &[f32]) -> f32 {
    dot_blocks(src, x, decode_q5_0)
}
pub(crate) fn dot_q5_1(src: &[u8], x: &[f32]) -> f32 {
    dot_blocks(src, x, decode_q5_1)
}
pub(crate) fn dot_q8_0(src: &[u8], x: &[f32]) -> f32 {
    dot_blocks(src, x, decode_q8_0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-built blocks, independent of the reference vectors: every
    /// element gets a distinct code so a swapped nibble or bit shows up.
    #[test]
    fn hand_built_blocks() {
        let one = half::f16::from_f32(1.0).to_bits().to_le_bytes();
        let half_ = half::f16::from_f32(0.5).to_bits().to_le_bytes();
        let mut out = [0f32; QK];

        // Q4_0 with d = 1: element j has code j % 16.
        let mut b = [0u8; Q4_0_BYTES];
        b[..2].copy_from_slice(&one);
        for j in 0..16 {
            b[2 + j] = (j as u8) | (((15 - j) as u8) << 4);
        }
        decode_q4_0(&b, &mut out);
        for j in 0..16 {
            assert_eq!(out[j], j as f32 - 8.0);
            assert_eq!(out[j + 16], (15 - j) as f32 - 8.0);
        }

        // Q5_1 with d = 1, m = 0.5 and fifth bits on the odd elements.
        let mut b = [0u8; Q5_1_BYTES];
        b[..2].copy_from_slice(&one);
        b[2..4].copy_from_slice(&half_);
        b[4..8].copy_from_slice(&0xAAAA_AAAAu32.to_le_bytes());
        for j in 0..16 {
            b[8 + j] = (j as u8) | ((j as u8) << 4);
        }
        decode_q5_1(&b, &mut out);
        for (i, &v) in out.iter().enumerate() {
            let q = (i % 16) as u32 | (((i & 1) as u32) << 4);
            assert_eq!(v, q as f32 + 0.5, "element {i}");
        }

        // Q8_0: signed codes.
        let mut b = [0u8; Q8_0_BYTES];
        b[..2].copy_from_slice(&half_);
        for j in 0..QK {
            b[2 + j] = (j as i8 * 4 - 64) as u8;
        }
        decode_q8_0(&b, &mut out);
        for (j, &v) in out.iter().enumerate() {
            assert_eq!(v, (j as f32 * 4.0 - 64.0) * 0.5);
        }
    }
}
