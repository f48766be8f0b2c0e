//! The k-quants: 256-element super-blocks whose sub-blocks carry small
//! integer scales relative to one (or two) f16 super-scales.
//!
//! Q4_K and Q5_K split a super-block into 8 sub-blocks of 32, each with a
//! 6-bit scale and a 6-bit min: `x = (d * sc) * q - (dmin * m)`. Q6_K splits
//! into 16 sub-blocks of 16 with signed 8-bit scales: `x = (d * sc) * (q - 32)`.
//! The products are formed in exactly that order, which matches ggml, so the
//! decode is bit-identical to the reference.

use super::{dequantize_blocks, dot_blocks, f16_le};

/// Elements per k-quant super-block.
pub const QK_K: usize = 256;
pub const Q4_K_BYTES: usize = 144;
pub const Q5_K_BYTES: usize = 176;
pub const Q6_K_BYTES: usize = 210;

/// Unpack the 12-byte scale/min field shared by Q4_K and Q5_K into 8 scales
/// and 8 mins, each 6 bits.
///
/// The first four pairs are stored plainly in the low 6 bits of bytes 0..4
/// (scales) and 4..8 (mins). The last four pairs reuse the spare room: their
/// low 4 bits sit in bytes 8..12 (scale in the low nibble, min in the high
/// nibble) and their top 2 bits in the otherwise unused top 2 bits of bytes
/// 0..4 (scales) and 4..8 (mins).
#[inline(always)]
pub fn unpack_scales_mins(s: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    for j in 0..4 {
        sc[j] = s[j] & 0x3F;
        mn[j] = s[j + 4] & 0x3F;
        sc[j + 4] = (s[j + 8] & 0x0F) | ((s[j] >> 6) << 4);
        mn[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
    }
    (sc, mn)
}

/// The 12 scale bytes at offset 4 of a Q4_K/Q5_K block.
#[inline(always)]
fn scale_bytes(b: &[u8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for (d, &v) in s.iter_mut().zip(b.iter().skip(4)) {
        *d = v;
    }
    s
}

/// Q4_K, 144 bytes: `d: f16` at 0, `dmin: f16` at 2, packed scales/mins at
/// 4..16 (see [`unpack_scales_mins`]), `qs[128]` at 16.
/// Each 64-element chunk `c` owns 32 bytes `qs[32c..32c+32]`: their low
/// nibbles are sub-block `2c` (elements `64c..64c+32`), their high nibbles
/// sub-block `2c+1` (elements `64c+32..64c+64`).
// Out of line on purpose: see `dequantize_blocks` in mod.rs.
#[inline(never)]
pub fn decode_q4_k(b: &[u8; Q4_K_BYTES], out: &mut [f32; QK_K]) {
    let d = f16_le(b[0], b[1]);
    let dmin = f16_le(b[2], b[3]);
    let (sc, mn) = unpack_scales_mins(&scale_bytes(b));
    for c in 0..4 {
        let d0 = d * sc[2 * c] as f32;
        let m0 = dmin * mn[2 * c] as f32;
        let d1 = d * sc[2 * c + 1] as f32;
        let m1 = dmin * mn[2 * c + 1] as f32;
        for l in 0..32 {
            let q = b[16 + 32 * c + l];
            out[64 * c + l] = d0 * (q & 0x0F) as f32 - m0;
            out[64 * c + 32 + l] = d1 * (q >> 4) as f32 - m1;
        }
    }
}

/// Q5_K, 176 bytes: `d`, `dmin`, scales/mins as Q4_K, then `qh[32]` at 16
/// and `qs[128]` at 48. Nibbles are laid out as in Q4_K; the fifth bit of
/// element `l` of sub-block `s` is bit `s` of `qh[l]`, so each 64-element
/// chunk uses the next two bits of the same 32 bytes.
// Out of line on purpose: see `dequantize_blocks` in mod.rs.
#[inline(never)]
pub fn decode_q5_k(b: &[u8; Q5_K_BYTES], out: &mut [f32; QK_K]) {
    let d = f16_le(b[0], b[1]);
    let dmin = f16_le(b[2], b[3]);
    let (sc, mn) = unpack_scales_mins(&scale_bytes(b));
    for c in 0..4 {
        let d0 = d * sc[2 * c] as f32;
        let m0 = dmin * mn[2 * c] as f32;
        let d1 = d * sc[2 * c + 1] as f32;
        let m1 = dmin * mn[2 * c + 1] as f32;
        for l in 0..32 {
            let q = b[48 + 32 * c + l];
            let h = b[16 + l] >> (2 * c);
            let lo = (q & 0x0F) | ((h & 1) << 4);
            let hi = (q >> 4) | ((h & 2) << 3);
            out[64 * c + l] = d0 * lo as f32 - m0;
            out[64 * c + 32 + l] = d1 * hi as f32 - m1;
        }
    }
}

/// Q6_K, 210 bytes: `ql[128]` at 0 (low 4 bits), `qh[64]` at 128 (high 2
/// bits), `scales: [i8; 16]` at 192 (one per 16 elements), `d: f16` at 208.
/// Each 128-element half `h` uses `ql[64h..64h+64]` and `qh[32h..32h+32]`:
/// for `l < 32`, element `128h + 32k + l` (k = 0..4) takes its low nibble
/// from `ql[64h + l]` (k = 0, 2: low/high nibble) or `ql[64h + 32 + l]`
/// (k = 1, 3), and its top two bits from bits `2k..2k+2` of `qh[32h + l]`.
// Out of line on purpose: see `dequantize_blocks` in mod.rs.
#[inline(never)]
pub fn decode_q6_k(b: &[u8; Q6_K_BYTES], out: &mut [f32; QK_K]) {
    let d = f16_le(b[208], b[209]);
    let mut ds = [0f32; 16];
    for (i, v) in ds.iter_mut().enumerate() {
        *v = d * (b[192 + i] as i8) as f32;
    }
    for h in 0..2 {
        // Scales change every 16 elements; split l into two runs of 16 so
        // each inner loop has constant scales.
        for g in 0..2 {
            let s = 8 * h + g;
            let (s0, s1, s2, s3) = (ds[s], ds[s + 2], ds[s + 4], ds[s + 6]);
            for i in 0..16 {
                let l = 16 * g + i;
                let a = b[64 * h + l];
                let c = b[64 * h + 32 + l];
                let hb = b[128 + 32 * h + l];
                let q0 = ((a & 0x0F) | ((hb & 0x03) << 4)) as i32 - 32;
                let q1 = ((c & 0x0F) | ((hb & 0x0C) << 2)) as i32 - 32;
                let q2 = ((a >> 4) | (hb & 0x30)) as i32 - 32;
                let q3 = ((c >> 4) | ((hb & 0xC0) >> 2)) as i32 - 32;
                let o = 128 * h + l;
                out[o] = s0 * q0 as f32;
                out[o + 32] = s1 * q1 as f32;
                out[o + 64] = s2 * q2 as f32;
                out[o + 96] = s3 * q3 as f32;
            }
        }
    }
}

pub(crate) fn dequantize_q4_k(src: &[u8], out: &mut [f32]) {
    dequantize_blocks(src, out, decode_q4_k)
}
pub(crate) fn dequantize_q5_k(src: &[u8], out: &mut [f32]) {
    dequantize_blocks(src, out, decode_q5_k)
}
pub(crate) fn dequantize_q6_k(src: &[u8], out: &mut [f32]) {
    dequantize_blocks(src, out, decode_q6_k)
}

pub(crate) fn dot_q4_k(src: &[u8], x: &[f32]) -> f32 {
    dot_blocks(src, x, decode_q4_k)
}
pub(crate) fn dot_q5_k(src: &[u8], x: &[f32]) -> f32 {
    dot_blocks(src, x, decode_q5_k)
}
pub(crate) fn dot_q6_k(src: &[u8], x: &[f32]) -> f32 {
    dot_blocks(src, x, decode_q6_k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_min_packing() {
        // Pack 8 known (scale, min) pairs the way the layout comment says and
        // check they come back.
        let sc: [u8; 8] = [1, 22, 63, 0, 45, 63, 17, 32];
        let mn: [u8; 8] = [63, 5, 0, 40, 33, 2, 63, 48];
        let mut s = [0u8; 12];
        for j in 0..4 {
            s[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
            s[j + 4] = mn[j] | ((mn[j + 4] >> 4) << 6);
            s[j + 8] = (sc[j + 4] & 0x0F) | ((mn[j + 4] & 0x0F) << 4);
        }
        assert_eq!(unpack_scales_mins(&s), (sc, mn));
    }

    #[test]
    fn q6_k_element_positions() {
        // d = 1, all scales 1: element e must decode to its own code - 32.
        let mut b = [0u8; Q6_K_BYTES];
        b[208..210].copy_from_slice(&half::f16::from_f32(1.0).to_bits().to_le_bytes());
        for i in 0..16 {
            b[192 + i] = 1;
        }
        let code = |e: usize| ((e * 7 + 3) % 64) as u8;
        for e in 0..QK_K {
            let (h, r) = (e / 128, e % 128);
            let (k, l) = (r / 32, r % 32);
            let q = code(e);
            let byte = 64 * h + l + if k % 2 == 1 { 32 } else { 0 };
            let shift = if k >= 2 { 4 } else { 0 };
            b[byte] |= (q & 0x0F) << shift;
            b[128 + 32 * h + l] |= (q >> 4) << (2 * k);
        }
        let mut out = [0f32; QK_K];
        decode_q6_k(&b, &mut out);
        for (e, &v) in out.iter().enumerate() {
            assert_eq!(v, code(e) as f32 - 32.0, "element {e}");
        }
    }
}
