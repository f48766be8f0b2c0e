//! I8, gemma.cpp's `I8Stream`: groups of 128 values, each stored as
//! `[inv_scale: bf16][zero_point: bf16][int8 code; g]` (132 bytes, the last
//! group may be shorter). Group `g` starts at byte `132·g`.
//!
//! Encoding maps a group's `[min, max]` onto the codes: `scale = 255/range`
//! and `zp = trunc(-scale·min - 128)`, both then rounded to bf16 (scalar
//! rule), code = `round_half_even(bf16(scale)·x + bf16(zp))` with one fused
//! rounding, saturated to int8. Truncating `zp` toward zero and rounding the
//! scale to 8 bits can push the extreme values one or two codes past ±127,
//! hence the saturation. Decoding is `inv_scale·q + f32(-zp·inv_scale)`.
//!
//! Round trip: for a group whose range contains zero, `|zp| <= 128` is exact
//! in bf16, and every value comes back within about `1.6·range/255 +
//! 2^-7·|x|` (half a code, up to a code and a half of saturation, and the
//! two bf16 roundings of the scale). Groups far from zero lose more, because
//! `zp` itself is rounded to 8 significant bits; that is gemma.cpp's format.

use super::float::{bf16_bits_to_f32, bf16_from_f32};

/// Values per group.
pub const GROUP: usize = 128;
/// Bytes before a group's codes: inv_scale and zero point, bf16 each.
pub const HEADER_BYTES: usize = 4;
/// Bytes of a full group.
pub const GROUP_BYTES: usize = HEADER_BYTES + GROUP;

/// `static_cast<int32_t>(float)` as x86 executes it (cvttss2si): truncate,
/// and give `i32::MIN` for NaN and anything out of range.
fn trunc_i32_x86(v: f32) -> i32 {
    // 2^31 is exactly representable; the valid range is [-2^31, 2^31).
    if (-2_147_483_648.0..2_147_483_648.0).contains(&v) {
        v as i32
    } else {
        i32::MIN
    }
}

/// A group's scale and its zero point before truncation.
fn scale_and_zero(x: &[f32]) -> (f32, f32) {
    let mut mn = f32::MAX;
    let mut mx = f32::MIN;
    for &v in x {
        mn = mn.min(v);
        mx = mx.max(v);
    }
    let mut range = mx - mn;
    if range == 0.0 {
        range = 1.0;
    }
    let scale = 255.0 / range;
    (scale, -scale * mn - 128.0)
}

/// The first element of the first group whose zero point does not fit an
/// i32: gemma.cpp's encoder would store `i32::MIN` there and every value of
/// the group would decode wrongly (a group lying more than about 2^23
/// ranges from zero), so such input is refused instead.
pub(crate) fn first_unrepresentable(src: &[f32]) -> Option<usize> {
    src.chunks(GROUP).enumerate().find_map(|(g, x)| {
        let (_, z) = scale_and_zero(x);
        (!(-2_147_483_648.0..2_147_483_648.0).contains(&z)).then_some(g * GROUP)
    })
}

/// Encode one group of 1..=128 finite values into `out` (4 + len bytes).
fn encode_group(x: &[f32], out: &mut [u8]) {
    let (scale, z) = scale_and_zero(x);
    let zp = trunc_i32_x86(z) as f32;
    let inv_bits = bf16_from_f32(1.0 / scale);
    let zp_bits = bf16_from_f32(zp);
    let (head, codes) = out.split_at_mut(HEADER_BYTES);
    head[..2].copy_from_slice(&inv_bits.to_le_bytes());
    head[2..].copy_from_slice(&zp_bits.to_le_bytes());
    let mul = bf16_bits_to_f32(bf16_from_f32(scale));
    let add = bf16_bits_to_f32(zp_bits);
    for (c, &v) in codes.iter_mut().zip(x) {
        // rint rounds half to even; `as` saturates (NaN, possible only for
        // a degenerate infinite scale, gives 0).
        let q = libm::rintf(libm::fmaf(mul, v, add)) as i32;
        *c = q.clamp(-128, 127) as i8 as u8;
    }
}

/// Encode a whole stream; the caller checked lengths and finiteness.
pub(crate) fn encode_unchecked(src: &[f32], dst: &mut [u8]) {
    for (x, out) in src.chunks(GROUP).zip(dst.chunks_mut(GROUP_BYTES)) {
        encode_group(x, out);
    }
}

/// Elements `offset..offset + out.len()`; the caller checked that `bytes`
/// holds at least `bytes_for(offset + out.len())` bytes.
pub(crate) fn decode_unchecked(bytes: &[u8], offset: usize, out: &mut [f32]) {
    let mut pos = offset;
    let mut rest = out;
    while !rest.is_empty() {
        let (g, within) = (pos / GROUP, pos % GROUP);
        let take = (GROUP - within).min(rest.len());
        let (o, tail) = rest.split_at_mut(take);
        let base = g * GROUP_BYTES;
        let Some(group) = bytes.get(base..base + HEADER_BYTES + within + take) else {
            return;
        };
        let inv = bf16_bits_to_f32(u16::from_le_bytes([group[0], group[1]]));
        let zp = bf16_bits_to_f32(u16::from_le_bytes([group[2], group[3]]));
        let offs = -zp * inv;
        for (o, &q) in o.iter_mut().zip(&group[HEADER_BYTES + within..]) {
            // gemma.cpp computes fma(inv, q, offs). inv has 8 significant
            // bits and q at most 8, so inv·q is exact in f32 (short of
            // overflow) and the unfused form rounds identically.
            *o = inv * (q as i8 as f32) + offs;
        }
        pos += take;
        rest = tail;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_i8_trunc_like_x86() {
        assert_eq!(trunc_i32_x86(-128.9), -128);
        assert_eq!(trunc_i32_x86(127.9), 127);
        assert_eq!(trunc_i32_x86(3e9), i32::MIN);
        assert_eq!(trunc_i32_x86(-3e9), i32::MIN);
        assert_eq!(trunc_i32_x86(f32::NAN), i32::MIN);
        assert_eq!(trunc_i32_x86(-2_147_483_648.0), i32::MIN);
    }

    #[test]
    fn codec_i8_constant_group_and_extremes() {
        let mut out = [0u8; 4 + 3];
        encode_group(&[0.25, 0.25, 0.25], &mut out);
        let mut back = [0f32; 3];
        decode_unchecked(&out, 0, &mut back);
        for v in back {
            assert!((v - 0.25).abs() <= 1.0 / 255.0, "{v}");
        }
        let x = [-1.0f32, 0.0, 3.0];
        let mut out = [0u8; 4 + 3];
        encode_group(&x, &mut out);
        decode_unchecked(&out, 0, &mut back);
        for (a, b) in x.iter().zip(back) {
            assert!(
                (a - b).abs() <= 1.6 * 4.0 / 255.0 + a.abs() / 128.0,
                "{a} {b}"
            );
        }
    }
}
