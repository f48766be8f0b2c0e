//! gemma.cpp's weight codecs, byte for byte: F32, BF16, SFP (8-bit
//! "switched floating point"), NUQ (4-bit non-uniform quantization, 16
//! clusters per group of 256) and I8 (int8 with a bf16 scale and zero point
//! per group of 128). These are the element types of `.sbs` tensors.
//!
//! Every codec stores a tensor as one contiguous stream, so element `i` of a
//! row-major matrix is element `r * cols + c` of the stream whatever the row
//! length: NUQ and I8 groups may straddle rows. [`decode`] and [`dot`]
//! therefore take the stream plus an element offset, and accept any offset.
//!
//! The ground truth is gemma.cpp itself (commit `3ed403e2`): the vectors in
//! `core/tests/data/gemmacpp/` were produced by its encoders and decoders and
//! are matched exactly (see `core/tests/codec_goldens.rs`). Where gemma.cpp's
//! result depends on the CPU (bf16 rounding of subnormals in its vectorized
//! tensor writer; its NUQ decoder on 512-bit targets, which is wrong), we
//! follow the portable behaviour and say so where it matters.
//!
//! Like `quant`, everything here is `no_std`, allocation-free and never
//! panics on any input: lengths are checked once up front and errors are
//! returned. NUQ encoding needs a caller-provided scratch buffer of
//! [`NUQ_ENCODE_SCRATCH_LEN`] floats (plus about 12 KiB of stack); nothing
//! else needs more than 3 KiB of stack.

pub mod bounds;
pub mod float;
pub mod i8;
pub mod nuq;
pub mod sfp;

/// A gemma.cpp tensor element type.
///
/// The variant names follow gemma.cpp's type strings ("sfp", "nuq") rather
/// than Rust's acronym casing, matching `quant::WeightType::BF16`.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    F32,
    BF16,
    SFP,
    NUQ,
    I8,
}

impl Codec {
    /// Every codec, in gemma.cpp type-code order.
    pub const ALL: [Codec; 5] = [Codec::F32, Codec::BF16, Codec::SFP, Codec::NUQ, Codec::I8];

    /// Map gemma.cpp's `Type` code, as stored in a `.sbs` `toc` record, to a
    /// codec. Codes 0 (unknown), 5 (f64), 6 (u32), 7 (u64) are not weight
    /// codecs and give `None`.
    pub fn from_gemma_type(code: u32) -> Option<Codec> {
        Some(match code {
            1 => Codec::F32,
            2 => Codec::BF16,
            3 => Codec::SFP,
            4 => Codec::NUQ,
            8 => Codec::I8,
            _ => return None,
        })
    }

    /// gemma.cpp's `Type` code of this codec.
    pub fn gemma_type(self) -> u32 {
        match self {
            Codec::F32 => 1,
            Codec::BF16 => 2,
            Codec::SFP => 3,
            Codec::NUQ => 4,
            Codec::I8 => 8,
        }
    }

    /// gemma.cpp's type string ("f32", "bf16", "sfp", "nuq", "i8").
    pub fn name(self) -> &'static str {
        match self {
            Codec::F32 => "f32",
            Codec::BF16 => "bf16",
            Codec::SFP => "sfp",
            Codec::NUQ => "nuq",
            Codec::I8 => "i8",
        }
    }

    /// Elements that share side data (a NUQ table, an I8 scale): 256 for
    /// NUQ, 128 for I8, 1 otherwise. A tensor may be encoded in pieces that
    /// start at multiples of this; the pieces' bytes then concatenate into
    /// the stream of the whole tensor.
    pub const fn group_elems(self) -> usize {
        match self {
            Codec::NUQ => nuq::GROUP,
            Codec::I8 => i8::GROUP,
            _ => 1,
        }
    }

    /// `element_bytes` as a `.sbs` `toc` record states it: the size of
    /// gemma.cpp's stream element type (1 for the byte streams).
    pub const fn element_bytes(self) -> usize {
        match self {
            Codec::F32 => 4,
            Codec::BF16 => 2,
            Codec::SFP | Codec::NUQ | Codec::I8 => 1,
        }
    }

    /// Bytes of the stream holding `n` elements (gemma.cpp's `PackedEnd`
    /// times `element_bytes`); `None` if that overflows `usize`.
    ///
    /// NUQ: `16 * ceil(n / 256) + ceil(n / 2)`; I8: `4 * ceil(n / 128) + n`.
    /// The first `bytes_for(k)` bytes of a stream are exactly the stream of
    /// its first `k` elements, which is what [`decode`] and [`dot`] rely on.
    pub fn bytes_for(self, n: usize) -> Option<usize> {
        match self {
            Codec::F32 => n.checked_mul(4),
            Codec::BF16 => n.checked_mul(2),
            Codec::SFP => Some(n),
            Codec::NUQ => {
                let tables = n.div_ceil(nuq::GROUP).checked_mul(nuq::TABLE_BYTES)?;
                tables.checked_add(n.div_ceil(2))
            }
            Codec::I8 => n
                .div_ceil(i8::GROUP)
                .checked_mul(i8::HEADER_BYTES)?
                .checked_add(n),
        }
    }
}

/// Why a codec call was refused. Nothing is written to the output on error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodecError {
    /// `encode`: the destination holds `got` bytes but `expected` are needed
    /// (`usize::MAX` when the size overflows).
    LengthMismatch {
        codec: Codec,
        expected: usize,
        got: usize,
    },
    /// `decode`/`dot`: elements `offset..offset + count` need the stream's
    /// first `needed` bytes but only `got` were given (`needed == usize::MAX`
    /// when the range or its size overflows).
    OutOfBounds {
        codec: Codec,
        offset: usize,
        count: usize,
        needed: usize,
        got: usize,
    },
    /// `encode`: input `index` cannot be encoded: NaN or beyond ±1.875 for
    /// SFP/NUQ (scale the tensor first: [`scale_to_sfp_range`]), not finite
    /// for I8, or (I8) the first of a group whose zero point overflows.
    OutOfRange { codec: Codec, index: usize },
    /// `encode` to NUQ: the scratch buffer holds `got` floats, fewer than
    /// [`NUQ_ENCODE_SCRATCH_LEN`].
    ScratchTooSmall { needed: usize, got: usize },
}

impl core::fmt::Display for CodecError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            CodecError::LengthMismatch {
                codec,
                expected,
                got,
            } => write!(
                f,
                "{} output is {got} bytes, expected {expected}",
                codec.name()
            ),
            CodecError::OutOfBounds {
                codec,
                offset,
                count,
                needed,
                got,
            } => write!(
                f,
                "{} elements {offset}..+{count} need {needed} bytes, stream has {got}",
                codec.name()
            ),
            CodecError::OutOfRange { codec, index } => match codec {
                Codec::I8 => write!(
                    f,
                    "i8 input {index} is not finite, or starts a group too far from zero \
                     for its 8-bit zero point"
                ),
                _ => write!(
                    f,
                    "{} input {index} is NaN or beyond +-1.875 (scale the tensor first)",
                    codec.name()
                ),
            },
            CodecError::ScratchTooSmall { needed, got } => {
                write!(f, "nuq scratch is {got} floats, needs {needed}")
            }
        }
    }
}

/// Floats of scratch that [`encode`] needs for NUQ: the cost of every
/// candidate cluster of a group, a 256×256 matrix (65 536 floats, 256 KiB).
/// Other codecs need none (pass `&mut []`).
pub const NUQ_ENCODE_SCRATCH_LEN: usize = nuq::SCRATCH_LEN;

/// Encode `src` into `dst`, which must be exactly `codec.bytes_for(src.len())`
/// bytes. `scratch` is only used by NUQ (at least [`NUQ_ENCODE_SCRATCH_LEN`]
/// floats; its contents on entry do not matter).
///
/// SFP and NUQ need `|x| <= 1.875` (see [`scale_to_sfp_range`]), I8 finite
/// inputs; F32 and BF16 take anything (BF16 rounds to nearest even, keeps
/// subnormals and quiets NaNs, as gemma.cpp's scalar conversion does).
pub fn encode(
    codec: Codec,
    src: &[f32],
    dst: &mut [u8],
    scratch: &mut [f32],
) -> Result<(), CodecError> {
    let expected = codec.bytes_for(src.len()).unwrap_or(usize::MAX);
    if dst.len() != expected {
        return Err(CodecError::LengthMismatch {
            codec,
            expected,
            got: dst.len(),
        });
    }
    match codec {
        Codec::F32 => {
            for (d, &x) in dst.chunks_exact_mut(4).zip(src) {
                d.copy_from_slice(&x.to_le_bytes());
            }
        }
        Codec::BF16 => float::encode_bf16(src, dst),
        Codec::SFP => {
            check_sfp_range(codec, src)?;
            sfp::encode_unchecked(src, dst);
        }
        Codec::NUQ => {
            if scratch.len() < NUQ_ENCODE_SCRATCH_LEN {
                return Err(CodecError::ScratchTooSmall {
                    needed: NUQ_ENCODE_SCRATCH_LEN,
                    got: scratch.len(),
                });
            }
            check_sfp_range(codec, src)?;
            nuq::encode_unchecked(src, dst, scratch);
        }
        Codec::I8 => {
            if let Some(index) = src.iter().position(|x| !x.is_finite()) {
                return Err(CodecError::OutOfRange { codec, index });
            }
            if let Some(index) = i8::first_unrepresentable(src) {
                return Err(CodecError::OutOfRange { codec, index });
            }
            i8::encode_unchecked(src, dst);
        }
    }
    Ok(())
}

fn check_sfp_range(codec: Codec, src: &[f32]) -> Result<(), CodecError> {
    // NaN fails the range test too.
    match src.iter().position(|x| !(..=sfp::MAX).contains(&x.abs())) {
        Some(index) => Err(CodecError::OutOfRange { codec, index }),
        None => Ok(()),
    }
}

/// Check that `bytes` (a stream, or at least its start) holds elements
/// `offset..offset + count`.
fn check_range(codec: Codec, bytes: &[u8], offset: usize, count: usize) -> Result<(), CodecError> {
    let needed = offset
        .checked_add(count)
        .and_then(|end| codec.bytes_for(end))
        .unwrap_or(usize::MAX);
    if needed > bytes.len() {
        return Err(CodecError::OutOfBounds {
            codec,
            offset,
            count,
            needed,
            got: bytes.len(),
        });
    }
    Ok(())
}

/// Decode elements `offset..offset + out.len()` of the stream `bytes` into
/// `out`. Any offset is allowed; `bytes` must hold at least the stream's
/// first `codec.bytes_for(offset + out.len())` bytes.
///
/// The byte count of a NUQ stream cannot tell an odd element count from the
/// next even one (the last nibble is padding): the caller that knows the
/// tensor's shape bounds the offset.
pub fn decode(
    codec: Codec,
    bytes: &[u8],
    offset: usize,
    out: &mut [f32],
) -> Result<(), CodecError> {
    check_range(codec, bytes, offset, out.len())?;
    decode_unchecked(codec, bytes, offset, out);
    Ok(())
}

fn decode_unchecked(codec: Codec, bytes: &[u8], offset: usize, out: &mut [f32]) {
    match codec {
        Codec::F32 => float::decode_f32(bytes, offset, out),
        Codec::BF16 => float::decode_bf16(bytes, offset, out),
        Codec::SFP => sfp::decode_unchecked(bytes, offset, out),
        Codec::NUQ => nuq::decode_unchecked(bytes, offset, out),
        Codec::I8 => i8::decode_unchecked(bytes, offset, out),
    }
}

/// `sum_i decode(bytes)[offset + i] * x[i]`, same range rule as [`decode`].
///
/// Weights are decoded a span at a time onto the stack; products are formed
/// and summed in f64 (an f32·f32 product is exact in f64), as gemma.cpp's
/// `Dot` does for f32 activations: the result is the exact dot product,
/// up to a summation error of about 1e-16 times the sum of |products|,
/// rounded once to f32. gemma.cpp's per-tensor scale is not applied:
/// multiply by it.
pub fn dot(codec: Codec, bytes: &[u8], offset: usize, x: &[f32]) -> Result<f32, CodecError> {
    check_range(codec, bytes, offset, x.len())?;
    let mut acc = [0.0f64; LANES];
    let mut buf = [0.0f32; SPAN];
    let mut pos = offset;
    let mut rest = x;
    while !rest.is_empty() {
        // Spans end on multiples of SPAN, so each lies within one NUQ group
        // (one table lookup setup) and at most two I8 groups.
        let take = (SPAN - pos % SPAN).min(rest.len());
        let (xs, tail) = rest.split_at(take);
        let ws = &mut buf[..take];
        decode_unchecked(codec, bytes, pos, ws);
        dot_acc(&mut acc, ws, xs);
        pos += take;
        rest = tail;
    }
    Ok(reduce(&acc) as f32)
}

/// Elements decoded per step by [`dot`]: one NUQ group, two I8 groups.
const SPAN: usize = 256;

/// Independent f64 accumulators in [`dot`]: two 4-wide (AVX2) or four
/// 2-wide (SSE2/NEON) vectors.
const LANES: usize = 8;

#[inline(always)]
fn dot_acc(acc: &mut [f64; LANES], w: &[f32], x: &[f32]) {
    let wc = w.chunks_exact(LANES);
    let xc = x.chunks_exact(LANES);
    let (wt, xt) = (wc.remainder(), xc.remainder());
    for (w, x) in wc.zip(xc) {
        if let (Ok(w), Ok(x)) = (<&[f32; LANES]>::try_from(w), <&[f32; LANES]>::try_from(x)) {
            for l in 0..LANES {
                acc[l] += w[l] as f64 * x[l] as f64;
            }
        }
    }
    for ((a, &w), &x) in acc.iter_mut().zip(wt).zip(xt) {
        *a += w as f64 * x as f64;
    }
}

#[inline(always)]
fn reduce(acc: &[f64; LANES]) -> f64 {
    let mut a = *acc;
    let mut w = LANES / 2;
    while w > 0 {
        for l in 0..w {
            a[l] += a[l + w];
        }
        w /= 2;
    }
    a[0]
}

/// gemma.cpp's per-tensor scale for SFP and NUQ tensors (`ScaleWeights`),
/// applied in place before encoding: if the largest magnitude exceeds 1.875
/// (SFP's largest value), every value is divided by
/// `scale = max_abs / 1.875` (multiplied by `f32(1 / f64(scale))`, then
/// clamped to ±1.875 in case rounding overshoots) and `scale` is returned;
/// otherwise the values are untouched and 1.0 is returned.
///
/// The result goes into the tensor's `toc` record; consumers multiply
/// decoded values (or dot products) by it. gemma.cpp only scales SFP and NUQ
/// tensors; BF16, F32 and I8 tensors keep scale 1.0. NaNs are ignored when
/// finding the maximum and stay NaN.
pub fn scale_to_sfp_range(values: &mut [f32]) -> f32 {
    let mut max_abs = 0.0f32;
    for v in values.iter() {
        // Written as gemma.cpp's max so NaNs are skipped the same way.
        if max_abs < v.abs() {
            max_abs = v.abs();
        }
    }
    if max_abs <= sfp::MAX {
        return 1.0;
    }
    let scale = max_abs / sfp::MAX;
    let inv = (1.0 / scale as f64) as f32;
    for v in values.iter_mut() {
        let m = (*v * inv).abs();
        let m = if sfp::MAX < m { sfp::MAX } else { m };
        *v = libm::copysignf(m, *v);
    }
    scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_type_codes_round_trip() {
        for c in Codec::ALL {
            assert_eq!(Codec::from_gemma_type(c.gemma_type()), Some(c));
        }
        for code in [0, 5, 6, 7, 9, u32::MAX] {
            assert_eq!(Codec::from_gemma_type(code), None);
        }
        let names: [&str; 5] = Codec::ALL.map(Codec::name);
        assert_eq!(names, ["f32", "bf16", "sfp", "nuq", "i8"]);
    }

    #[test]
    fn codec_bytes_for_matches_packed_end() {
        assert_eq!(Codec::F32.bytes_for(3), Some(12));
        assert_eq!(Codec::BF16.bytes_for(3), Some(6));
        assert_eq!(Codec::SFP.bytes_for(7), Some(7));
        // The goldens' stream sizes.
        assert_eq!(Codec::NUQ.bytes_for(1124), Some(642));
        assert_eq!(Codec::NUQ.bytes_for(293), Some(179));
        assert_eq!(Codec::NUQ.bytes_for(2048), Some(1152));
        assert_eq!(Codec::I8.bytes_for(306), Some(318));
        assert_eq!(Codec::I8.bytes_for(263), Some(275));
        assert_eq!(Codec::I8.bytes_for(2048), Some(2112));
        for c in Codec::ALL {
            assert_eq!(c.bytes_for(0), Some(0));
        }
        assert_eq!(Codec::F32.bytes_for(usize::MAX), None);
        assert_eq!(Codec::I8.bytes_for(usize::MAX), None);
        // NUQ needs 0.5625 bytes per element, so it never overflows.
        assert_eq!(
            Codec::NUQ.bytes_for(usize::MAX),
            Some(usize::MAX / 2 + 1 + (usize::MAX / 256 + 1) * 16)
        );
        assert_eq!(Codec::SFP.bytes_for(usize::MAX), Some(usize::MAX));
    }

    #[test]
    fn codec_errors_are_reported_and_nothing_written() {
        extern crate std;
        let mut dst = [0u8; 32];
        assert_eq!(
            encode(Codec::SFP, &[0.5; 4], &mut dst[..3], &mut []),
            Err(CodecError::LengthMismatch {
                codec: Codec::SFP,
                expected: 4,
                got: 3
            })
        );
        assert_eq!(
            encode(Codec::SFP, &[0.5, 1.9, 0.1], &mut dst[..3], &mut []),
            Err(CodecError::OutOfRange {
                codec: Codec::SFP,
                index: 1
            })
        );
        let mut scratch = std::vec![0.0; NUQ_ENCODE_SCRATCH_LEN];
        assert_eq!(
            encode(Codec::NUQ, &[f32::NAN], &mut dst[..17], &mut scratch),
            Err(CodecError::OutOfRange {
                codec: Codec::NUQ,
                index: 0
            })
        );
        assert_eq!(
            encode(Codec::NUQ, &[0.5], &mut dst[..17], &mut [0.0; 10]),
            Err(CodecError::ScratchTooSmall {
                needed: NUQ_ENCODE_SCRATCH_LEN,
                got: 10
            })
        );
        assert_eq!(
            encode(Codec::I8, &[1.0, f32::INFINITY], &mut dst[..6], &mut []),
            Err(CodecError::OutOfRange {
                codec: Codec::I8,
                index: 1
            })
        );
        assert!(dst.iter().all(|&b| b == 0));

        let mut out = [0f32; 4];
        assert_eq!(
            decode(Codec::BF16, &[0; 7], 1, &mut out),
            Err(CodecError::OutOfBounds {
                codec: Codec::BF16,
                offset: 1,
                count: 4,
                needed: 10,
                got: 7
            })
        );
        assert_eq!(
            dot(Codec::I8, &[0; 7], usize::MAX, &out),
            Err(CodecError::OutOfBounds {
                codec: Codec::I8,
                offset: usize::MAX,
                count: 4,
                needed: usize::MAX,
                got: 7
            })
        );
        assert!(out.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn codec_error_display() {
        extern crate std;
        use std::string::ToString;
        let cases = [
            (
                CodecError::LengthMismatch {
                    codec: Codec::NUQ,
                    expected: 642,
                    got: 641,
                },
                "nuq output is 641 bytes, expected 642",
            ),
            (
                CodecError::OutOfBounds {
                    codec: Codec::I8,
                    offset: 128,
                    count: 10,
                    needed: 274,
                    got: 200,
                },
                "i8 elements 128..+10 need 274 bytes, stream has 200",
            ),
            (
                CodecError::OutOfRange {
                    codec: Codec::SFP,
                    index: 3,
                },
                "sfp input 3 is NaN or beyond +-1.875 (scale the tensor first)",
            ),
            (
                CodecError::OutOfRange {
                    codec: Codec::I8,
                    index: 3,
                },
                "i8 input 3 is not finite, or starts a group too far from zero for its 8-bit zero point",
            ),
            (
                CodecError::ScratchTooSmall {
                    needed: 65536,
                    got: 0,
                },
                "nuq scratch is 0 floats, needs 65536",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.to_string(), want);
        }
    }

    #[test]
    fn codec_scale_to_sfp_range_follows_gemma_cpp() {
        let mut v = [0.5f32, -1.875, 1.0];
        assert_eq!(scale_to_sfp_range(&mut v), 1.0);
        assert_eq!(v, [0.5, -1.875, 1.0]);

        let mut v = [3.75f32, -1.0, 0.0, -7.5, f32::NAN];
        let s = scale_to_sfp_range(&mut v);
        assert_eq!(s, 4.0);
        assert_eq!(&v[..4], &[0.9375, -0.25, 0.0, -1.875]);
        assert!(v[4].is_nan());

        // Every scaled value fits SFP even when the reciprocal rounds up.
        let mut v = [2.0000002f32, -2.0000002, 1.9];
        let s = scale_to_sfp_range(&mut v);
        assert!(s > 1.0);
        assert!(v.iter().all(|x| x.abs() <= sfp::MAX), "{v:?}");
        let mut out = [0u8; 3];
        assert_eq!(encode(Codec::SFP, &v, &mut out, &mut []), Ok(()));
    }
}
