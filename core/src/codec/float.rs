//! F32 and BF16 streams: little-endian, one element after another.
//!
//! f32 → bf16 has two behaviours in gemma.cpp. Its scalar conversion
//! (Highway's `BF16FromF32`, also used for I8 scales) rounds to nearest even
//! and keeps subnormals; that is [`bf16_from_f32`] and what [`super::encode`]
//! writes. Its vectorized tensor writer gives the same bits except on CPUs
//! whose bf16 instruction flushes subnormal inputs (AVX3_SPR, AVX3_ZEN4),
//! where subnormals become signed zeros: [`bf16_from_f32_ftz`] reproduces
//! that, for comparing with files written there.

pub use crate::quant::float::bf16_bits_to_f32;

/// f32 → bf16 bits, round to nearest even; subnormals are rounded like any
/// other value, overflow gives ±Inf, NaN stays NaN with the quiet bit set
/// (sign and the top payload bits kept).
#[inline]
pub fn bf16_from_f32(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x0040) as u16;
    }
    // Adding 0x7FFF plus the kept part's lowest bit carries into the kept
    // half exactly when the dropped half is above one half, or equal to it
    // with an odd kept half. The largest finite input, 0xFF7F_FFFF, plus
    // 0x8000 does not overflow u32; ±Inf stays ±Inf.
    ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) as u16
}

/// As [`bf16_from_f32`], except that inputs with a zero exponent field
/// (zeros and subnormals) become a zero of the same sign: what gemma.cpp's
/// tensor writer produces on AVX3_SPR and AVX3_ZEN4 CPUs.
#[inline]
pub fn bf16_from_f32_ftz(x: f32) -> u16 {
    let b = x.to_bits();
    if b & 0x7F80_0000 == 0 {
        return ((b >> 16) & 0x8000) as u16;
    }
    bf16_from_f32(x)
}

pub(crate) fn encode_bf16(src: &[f32], dst: &mut [u8]) {
    for (d, &x) in dst.chunks_exact_mut(2).zip(src) {
        d.copy_from_slice(&bf16_from_f32(x).to_le_bytes());
    }
}

/// Elements `offset..offset + out.len()`; the caller checked the length.
pub(crate) fn decode_f32(bytes: &[u8], offset: usize, out: &mut [f32]) {
    let src = bytes.get(offset * 4..).unwrap_or(&[]);
    for (o, c) in out.iter_mut().zip(src.chunks_exact(4)) {
        if let Ok(c) = <[u8; 4]>::try_from(c) {
            *o = f32::from_le_bytes(c);
        }
    }
}

/// Elements `offset..offset + out.len()`; the caller checked the length.
pub(crate) fn decode_bf16(bytes: &[u8], offset: usize, out: &mut [f32]) {
    let src = bytes.get(offset * 2..).unwrap_or(&[]);
    for (o, c) in out.iter_mut().zip(src.chunks_exact(2)) {
        if let Ok(c) = <[u8; 2]>::try_from(c) {
            *o = bf16_bits_to_f32(u16::from_le_bytes(c));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_bf16_rounding_examples() {
        assert_eq!(bf16_from_f32(1.0), 0x3F80);
        // Ties go to even: 1 + 2^-8 is halfway between 0x3F80 and 0x3F81.
        assert_eq!(bf16_from_f32(f32::from_bits(0x3F80_8000)), 0x3F80);
        assert_eq!(bf16_from_f32(f32::from_bits(0x3F81_8000)), 0x3F82);
        assert_eq!(bf16_from_f32(f32::from_bits(0x3F80_8001)), 0x3F81);
        assert_eq!(bf16_from_f32(f32::MAX), 0x7F80);
        assert_eq!(bf16_from_f32(f32::NEG_INFINITY), 0xFF80);
        assert_eq!(bf16_from_f32(f32::from_bits(0x7F80_0001)), 0x7FC0);
        assert_eq!(bf16_from_f32(f32::from_bits(0xFFA1_0000)), 0xFFE1);
        // Subnormals: kept by the scalar rule, flushed by the FTZ one.
        let sub = f32::from_bits(0x8001_8000);
        assert_eq!(bf16_from_f32(sub), 0x8002);
        assert_eq!(bf16_from_f32_ftz(sub), 0x8000);
        assert_eq!(bf16_from_f32_ftz(1.0), 0x3F80);
    }

    #[test]
    fn codec_bf16_matches_half_on_non_nan() {
        // `half` rounds the same way; sample every 4099th pattern.
        let mut b = 0u32;
        while let Some(next) = b.checked_add(4099) {
            let x = f32::from_bits(b);
            if !x.is_nan() {
                assert_eq!(
                    bf16_from_f32(x),
                    half::bf16::from_f32(x).to_bits(),
                    "{b:#x}"
                );
            }
            b = next;
        }
    }
}
