//! How far a decoded value may lie from what was encoded, per codec: the
//! contract the round-trip property tests and the fuzzer check.
//!
//! * F32: exact (NaN stays NaN).
//! * BF16: round to nearest even on 8 significant bits, so at most half a
//!   unit in the last place, `2^-8 |x|`, or `2^-133` near zero.
//! * SFP: 3 mantissa bits at or above `2^-7` and 2 below it, after the
//!   encoder drops everything under the 6th mantissa bit; at most
//!   `(2^-3 + 2^-6) |x|` plus the flush of magnitudes under `1.25·2^-23`
//!   to zero.
//! * NUQ: each value becomes its cluster's centre, which lies inside the
//!   group's range, stored as SFP: at most the group's range plus SFP's
//!   error on the largest magnitude.
//! * I8: an affine grid of 255 steps across each group's range (a range
//!   of 1 for a constant group), codes saturating at the ends: within three
//!   steps, `3/255` of the range. The zero point is stored as BF16, which
//!   shifts every value of a group lying far from zero by up to `2^-8` of
//!   its minimum; so add `|x|max / 128`.

use super::Codec;

/// SFP's worst relative error (2 mantissa bits plus the dropped tail).
const SFP_REL: f32 = 0.125 + 0.015_625;
/// Magnitudes SFP flushes to zero lie below this.
const SFP_FLUSH: f32 = 1.25 * (1.0 / 8_388_608.0);

/// The first element of `original` whose decoded value breaks the bound,
/// with the allowed error; `None` if all hold. `original` must be what
/// [`super::encode`] accepted (for SFP and NUQ, `|x| <= 1.875`).
pub fn roundtrip_violation(
    codec: Codec,
    original: &[f32],
    decoded: &[f32],
) -> Option<(usize, f32)> {
    let group = match codec {
        Codec::NUQ | Codec::I8 => codec.group_elems(),
        _ => 1,
    };
    for (g, (xs, ys)) in original
        .chunks(group)
        .zip(decoded.chunks(group))
        .enumerate()
    {
        let (lo, hi) = xs
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| {
                (lo.min(x), hi.max(x))
            });
        let (range, max_abs) = (hi - lo, lo.abs().max(hi.abs()));
        for (i, (&x, &y)) in xs.iter().zip(ys).enumerate() {
            let allowed = match codec {
                Codec::F32 => 0.0,
                Codec::BF16 => x.abs() / 256.0 + f32::from_bits(1 << 16) * 0.5,
                Codec::SFP => SFP_REL * x.abs() + SFP_FLUSH,
                Codec::NUQ => range + SFP_REL * max_abs + SFP_FLUSH,
                Codec::I8 => i8_range(range) * (3.0 / 255.0) + max_abs / 128.0,
            };
            let ok = if x.is_nan() {
                y.is_nan() || codec != Codec::F32
            } else {
                (y - x).abs() <= allowed
            };
            if !ok {
                return Some((g * group + i, allowed));
            }
        }
    }
    None
}

/// The range gemma.cpp's I8 encoder spreads its 255 steps over.
fn i8_range(range: f32) -> f32 {
    if range == 0.0 {
        1.0
    } else {
        range
    }
}
