//! SFP, gemma.cpp's 8-bit "switched floating point": sign, then either a
//! 3-bit exponent with a 3-bit mantissa for magnitudes in [2^-7, 1.875], or
//! a 4-bit exponent with a 2-bit mantissa for [1.25·2^-23, 1.75·2^-8].
//!
//! Byte `b`, `c = b & 0x7F`:
//! - `c == 0`: zero (`0x80` decodes to -0.0 but is never written);
//! - bit 6 set: `(1 + m/8)·2^(e-7)` with `e = (c >> 3) & 7`, `m = c & 7`;
//! - otherwise: `(1 + m/4)·2^(e-23)` with `e = (c >> 2) & 15`, `m = c & 3`.
//!
//! Magnitudes grow strictly with `c`, so rounding up to the next magnitude
//! is adding one to the code, even across the boundary of the two layouts.
//! There are no subnormals: `1.0·2^-23` would be code 0, which means zero.
//! Every value is exactly a bf16 value.

/// Largest magnitude SFP holds (code 0x7F); larger tensors are scaled.
pub const MAX: f32 = 1.875;

const fn decode_bits(b: u8) -> u32 {
    let sign = ((b & 0x80) as u32) << 24;
    let c = (b & 0x7F) as u32;
    if c == 0 {
        return sign;
    }
    // Biased f32 exponents: 127 + (e - 7) for the large layout and
    // 127 + (e - 23) for the small one.
    let (exp, man) = if c & 0x40 != 0 {
        (((c >> 3) & 7) + 120, (c & 7) << 20)
    } else {
        (((c >> 2) & 15) + 104, (c & 3) << 21)
    };
    sign | (exp << 23) | man
}

const fn decode_table() -> [f32; 256] {
    let mut t = [0.0f32; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = f32::from_bits(decode_bits(i as u8));
        i += 1;
    }
    t
}

/// The value of every SFP byte.
pub static DECODE: [f32; 256] = decode_table();

/// Decode one SFP byte.
#[inline(always)]
pub fn decode_byte(b: u8) -> f32 {
    DECODE[b as usize]
}

/// f32 bits of 0.9375·2^-23 and 1.25·2^-23: below the first, magnitudes
/// become zero; up to the second, they become the smallest code.
const ZERO_BELOW: u32 = 0x33F0_0000;
const SMALLEST_UP_TO: u32 = 0x3420_0000;

/// Encode one value exactly as gemma.cpp does; needs `|x| <= 1.875`
/// (larger inputs or NaN give a meaningless byte, never a panic).
///
/// gemma.cpp only looks at the sign, the exponent and the top 6 mantissa
/// bits, then rounds that truncated value to the nearest SFP magnitude,
/// ties to the even code. So this is not round-to-nearest of `x`: 1.0703125
/// (bf16 0x3F89) becomes 1.0 although 1.125 is nearer.
#[inline]
pub fn encode_byte(x: f32) -> u8 {
    let bits = x.to_bits();
    let sign = ((bits >> 24) & 0x80) as u8;
    let t = bits & 0x7FFE_0000;
    if t < ZERO_BELOW {
        // Underflow and zero are 0x00 whatever the sign.
        return 0;
    }
    if t <= SMALLEST_UP_TO {
        return sign | 1;
    }
    let exp = t >> 23;
    let m6 = (t >> 17) & 0x3F;
    let (code, rest, half) = if exp >= 120 {
        (0x40 | ((exp - 120) << 3) | (m6 >> 3), m6 & 7, 4)
    } else {
        // exp is 104..=119 here: t > 1.25·2^-23 has exp >= 104 and
        // t < 2^-7 has exp < 120.
        (((exp.wrapping_sub(104) & 15) << 2) | (m6 >> 4), m6 & 15, 8)
    };
    let up = rest > half || (rest == half && code & 1 == 1);
    // For |x| <= 1.875 the code stays <= 0x7F; masking keeps the sign bit
    // clean for anything else.
    (((code + up as u32) & 0x7F) as u8) | sign
}

/// Encode every value; the caller checked lengths and the range.
pub(crate) fn encode_unchecked(src: &[f32], dst: &mut [u8]) {
    for (d, &x) in dst.iter_mut().zip(src) {
        *d = encode_byte(x);
    }
}

/// Elements `offset..offset + out.len()`; the caller checked the length.
pub(crate) fn decode_unchecked(bytes: &[u8], offset: usize, out: &mut [f32]) {
    let src = bytes.get(offset..).unwrap_or(&[]);
    for (o, &b) in out.iter_mut().zip(src) {
        *o = decode_byte(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_sfp_named_codes() {
        assert_eq!(decode_byte(0x78), 1.0);
        assert_eq!(decode_byte(0x7F), 1.875);
        assert_eq!(decode_byte(0xFF), -1.875);
        assert_eq!(decode_byte(0x40), 2f32.powi(-7));
        assert_eq!(decode_byte(0x3F), 1.75 * 2f32.powi(-8));
        assert_eq!(decode_byte(0x01), 1.25 * 2f32.powi(-23));
        assert_eq!(decode_byte(0x00).to_bits(), 0);
        assert_eq!(decode_byte(0x80).to_bits(), 0x8000_0000);
        assert_eq!(f32::from_bits(ZERO_BELOW), 0.9375 * 2f32.powi(-23));
        assert_eq!(f32::from_bits(SMALLEST_UP_TO), 1.25 * 2f32.powi(-23));
    }

    #[test]
    fn codec_sfp_magnitudes_increase_and_round_trip() {
        for c in 1u8..0x7F {
            assert!(decode_byte(c) < decode_byte(c + 1), "{c:#x}");
        }
        for b in 0u8..=255 {
            if b == 0x80 {
                continue;
            }
            assert_eq!(encode_byte(decode_byte(b)), b, "{b:#x}");
        }
        assert_eq!(encode_byte(-0.0), 0);
    }

    #[test]
    fn codec_sfp_truncates_before_rounding() {
        assert_eq!(encode_byte(f32::from_bits(0x3F89_0000)), 0x78);
        // Ties go to the even code, also across the layouts' boundary.
        let mid = (decode_byte(0x3F) + decode_byte(0x40)) / 2.0;
        assert_eq!(encode_byte(mid), 0x40);
        assert_eq!(encode_byte(-mid), 0xC0);
        assert_eq!(encode_byte(1.0625), 0x78);
        assert_eq!(encode_byte(1.1875), 0x7A);
    }
}
