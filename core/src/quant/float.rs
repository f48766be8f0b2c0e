//! The unquantized types: F32, F16 and BF16, one element per "block",
//! stored little-endian.
//!
//! F16 is widened with a branch-free bit routine (checked bit-for-bit against
//! the `half` crate over all 65 536 inputs in the tests) unless the target
//! enables a hardware conversion: `half` without `std` otherwise falls back
//! to a branchy scalar conversion that does not vectorize (about 4x slower
//! than the select-based form below on baseline x86-64).

use super::{dot_acc, reduce, LANES};

/// Elements decoded per step by the F16/BF16 dot kernels.
const STEP: usize = 64;

/// IEEE binary16 bits to f32, exactly (NaNs are quieted, as `half` does).
///
/// Where the target has a hardware conversion enabled at compile time
/// (x86 F16C, AArch64 FP16), `half` uses it and LLVM vectorizes that best.
#[cfg(any(
    all(
        any(target_arch = "x86", target_arch = "x86_64"),
        target_feature = "f16c"
    ),
    all(target_arch = "aarch64", target_feature = "fp16")
))]
#[inline(always)]
pub fn f16_bits_to_f32(h: u16) -> f32 {
    half::f16::from_bits(h).to_f32()
}

/// IEEE binary16 bits to f32, exactly (NaNs are quieted, as `half` does).
///
/// Branch-free portable form: every case is computed and one is selected,
/// so the loop vectorizes; it only uses normal-range float arithmetic (no
/// subnormal operands, which would stall on some CPUs).
#[cfg(not(any(
    all(
        any(target_arch = "x86", target_arch = "x86_64"),
        target_feature = "f16c"
    ),
    all(target_arch = "aarch64", target_feature = "fp16")
)))]
#[inline(always)]
pub fn f16_bits_to_f32(h: u16) -> f32 {
    let h = h as u32;
    let sign = (h & 0x8000) << 16;
    let exp = h & 0x7C00;
    let man = h & 0x03FF;
    // Exponent and mantissa moved to their f32 positions; for normal numbers
    // only the exponent bias (15 -> 127) has to be fixed up.
    let shifted = (h & 0x7FFF) << 13;
    let normal = shifted + ((127 - 15) << 23);
    // Subnormals (and zero) are man * 2^-24. Giving the bits the exponent of
    // 2^-14 makes them read as 2^-14 * (1 + man/1024); subtracting 2^-14
    // leaves exactly man * 2^-24 (the difference is representable, so the
    // subtraction cannot round).
    let two_m14 = f32::from_bits((127 - 14) << 23);
    let sub = (f32::from_bits(shifted + ((127 - 14) << 23)) - two_m14).to_bits();
    // Inf keeps a zero mantissa; NaN keeps its payload and gets the quiet bit.
    let quiet = if man != 0 { 0x0040_0000 } else { 0 };
    let infnan = 0x7F80_0000 | (man << 13) | quiet;
    let bits = if exp == 0x7C00 {
        infnan
    } else if exp == 0 {
        sub
    } else {
        normal
    };
    f32::from_bits(bits | sign)
}

/// bfloat16 bits to f32: bf16 is the top half of an f32, so this is exact.
#[inline(always)]
pub fn bf16_bits_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

pub(crate) fn dequantize_f32(src: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(src.chunks_exact(4)) {
        if let Ok(c) = <[u8; 4]>::try_from(c) {
            *o = f32::from_le_bytes(c);
        }
    }
}

pub(crate) fn dequantize_f16(src: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(src.chunks_exact(2)) {
        if let Ok(c) = <[u8; 2]>::try_from(c) {
            *o = f16_bits_to_f32(u16::from_le_bytes(c));
        }
    }
}

pub(crate) fn dequantize_bf16(src: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(src.chunks_exact(2)) {
        if let Ok(c) = <[u8; 2]>::try_from(c) {
            *o = bf16_bits_to_f32(u16::from_le_bytes(c));
        }
    }
}

pub(crate) fn dot_f32(src: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let sb = src.chunks_exact(LANES * 4);
    let xb = x.chunks_exact(LANES);
    let (st, xt) = (sb.remainder(), xb.remainder());
    for (s, xc) in sb.zip(xb) {
        if let (Ok(s), Ok(xc)) = (
            <&[u8; LANES * 4]>::try_from(s),
            <&[f32; LANES]>::try_from(xc),
        ) {
            for l in 0..LANES {
                let w = f32::from_le_bytes([s[4 * l], s[4 * l + 1], s[4 * l + 2], s[4 * l + 3]]);
                acc[l] += w * xc[l];
            }
        }
    }
    let mut sum = reduce(&acc);
    for (c, &xv) in st.chunks_exact(4).zip(xt) {
        if let Ok(c) = <[u8; 4]>::try_from(c) {
            sum += f32::from_le_bytes(c) * xv;
        }
    }
    sum
}

/// Shared body of the 16-bit float dots: widen `STEP` values at a time onto
/// the stack, dot them into the lane accumulators, then finish the tail.
#[inline(always)]
fn dot_16bit(src: &[u8], x: &[f32], widen: impl Fn(u16) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut buf = [0.0f32; STEP];
    let sb = src.chunks_exact(STEP * 2);
    let xb = x.chunks_exact(STEP);
    let (st, xt) = (sb.remainder(), xb.remainder());
    for (s, xc) in sb.zip(xb) {
        if let Ok(xc) = <&[f32; STEP]>::try_from(xc) {
            for (o, c) in buf.iter_mut().zip(s.chunks_exact(2)) {
                if let Ok(c) = <[u8; 2]>::try_from(c) {
                    *o = widen(u16::from_le_bytes(c));
                }
            }
            dot_acc(&mut acc, &buf, xc);
        }
    }
    let mut sum = reduce(&acc);
    for (c, &xv) in st.chunks_exact(2).zip(xt) {
        if let Ok(c) = <[u8; 2]>::try_from(c) {
            sum += widen(u16::from_le_bytes(c)) * xv;
        }
    }
    sum
}

pub(crate) fn dot_f16(src: &[u8], x: &[f32]) -> f32 {
    dot_16bit(src, x, f16_bits_to_f32)
}

pub(crate) fn dot_bf16(src: &[u8], x: &[f32]) -> f32 {
    dot_16bit(src, x, bf16_bits_to_f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_matches_half_exhaustively() {
        for h in 0..=u16::MAX {
            let want = half::f16::from_bits(h).to_f32();
            let got = f16_bits_to_f32(h);
            assert_eq!(got.to_bits(), want.to_bits(), "f16 bits {h:#06x}");
        }
    }

    #[test]
    fn bf16_matches_half_exhaustively() {
        for h in 0..=u16::MAX {
            let want = half::bf16::from_bits(h).to_f32();
            let got = bf16_bits_to_f32(h);
            if want.is_nan() {
                assert!(got.is_nan(), "bf16 bits {h:#06x}");
            } else {
                assert_eq!(got.to_bits(), want.to_bits(), "bf16 bits {h:#06x}");
            }
        }
    }

    #[test]
    fn special_values() {
        assert_eq!(f16_bits_to_f32(0x7C00), f32::INFINITY);
        assert_eq!(f16_bits_to_f32(0xFC00), f32::NEG_INFINITY);
        assert!(f16_bits_to_f32(0x7E00).is_nan());
        assert_eq!(f16_bits_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
        assert_eq!(f16_bits_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_bits_to_f32(0x7BFF), 65504.0);
        assert_eq!(bf16_bits_to_f32(0x3F80), 1.0);
    }
}
