//! GGML weight formats: the float types (F32, F16, BF16), the legacy 32-element
//! block quants (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) and the 256-element k-quants
//! (Q4_K, Q5_K, Q6_K).
//!
//! Everything here is `no_std`, allocation-free, `unsafe`-free and panic-free:
//! lengths are validated once up front ([`WeightType::row_bytes`]) and the
//! per-block kernels work on fixed-size arrays so the optimizer can drop
//! bounds checks and vectorize.

pub mod float;
pub mod kquants;
pub mod legacy;

/// A GGML tensor element type that gemma-rs can decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeightType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
}

impl WeightType {
    /// Every supported type, in GGML id order except BF16 (kept next to F16).
    pub const ALL: [WeightType; 11] = [
        WeightType::F32,
        WeightType::F16,
        WeightType::BF16,
        WeightType::Q4_0,
        WeightType::Q4_1,
        WeightType::Q5_0,
        WeightType::Q5_1,
        WeightType::Q8_0,
        WeightType::Q4K,
        WeightType::Q5K,
        WeightType::Q6K,
    ];

    /// Map a GGML `ggml_type` id (as stored in GGUF tensor infos) to a type.
    pub fn from_ggml(id: u32) -> Option<WeightType> {
        Some(match id {
            0 => WeightType::F32,
            1 => WeightType::F16,
            2 => WeightType::Q4_0,
            3 => WeightType::Q4_1,
            6 => WeightType::Q5_0,
            7 => WeightType::Q5_1,
            8 => WeightType::Q8_0,
            12 => WeightType::Q4K,
            13 => WeightType::Q5K,
            14 => WeightType::Q6K,
            30 => WeightType::BF16,
            _ => return None,
        })
    }

    /// The GGML `ggml_type` id of this type.
    pub fn ggml_id(self) -> u32 {
        match self {
            WeightType::F32 => 0,
            WeightType::F16 => 1,
            WeightType::Q4_0 => 2,
            WeightType::Q4_1 => 3,
            WeightType::Q5_0 => 6,
            WeightType::Q5_1 => 7,
            WeightType::Q8_0 => 8,
            WeightType::Q4K => 12,
            WeightType::Q5K => 13,
            WeightType::Q6K => 14,
            WeightType::BF16 => 30,
        }
    }

    /// The type's name as ggml spells it ("F32", "Q4_0", "Q4_K", ...).
    pub fn name(self) -> &'static str {
        match self {
            WeightType::F32 => "F32",
            WeightType::F16 => "F16",
            WeightType::BF16 => "BF16",
            WeightType::Q4_0 => "Q4_0",
            WeightType::Q4_1 => "Q4_1",
            WeightType::Q5_0 => "Q5_0",
            WeightType::Q5_1 => "Q5_1",
            WeightType::Q8_0 => "Q8_0",
            WeightType::Q4K => "Q4_K",
            WeightType::Q5K => "Q5_K",
            WeightType::Q6K => "Q6_K",
        }
    }

    /// Elements per block: 1 for the float types, 32 legacy, 256 k-quants.
    pub const fn block_elems(self) -> usize {
        match self {
            WeightType::F32 | WeightType::F16 | WeightType::BF16 => 1,
            WeightType::Q4_0
            | WeightType::Q4_1
            | WeightType::Q5_0
            | WeightType::Q5_1
            | WeightType::Q8_0 => legacy::QK,
            WeightType::Q4K | WeightType::Q5K | WeightType::Q6K => kquants::QK_K,
        }
    }

    /// Bytes of one block.
    pub const fn block_bytes(self) -> usize {
        match self {
            WeightType::F32 => 4,
            WeightType::F16 | WeightType::BF16 => 2,
            WeightType::Q4_0 => legacy::Q4_0_BYTES,
            WeightType::Q4_1 => legacy::Q4_1_BYTES,
            WeightType::Q5_0 => legacy::Q5_0_BYTES,
            WeightType::Q5_1 => legacy::Q5_1_BYTES,
            WeightType::Q8_0 => legacy::Q8_0_BYTES,
            WeightType::Q4K => kquants::Q4_K_BYTES,
            WeightType::Q5K => kquants::Q5_K_BYTES,
            WeightType::Q6K => kquants::Q6_K_BYTES,
        }
    }

    /// Bytes holding `n_elems` elements; `None` unless `n_elems` is a whole
    /// number of blocks, or if the byte count overflows `usize`.
    pub fn row_bytes(self, n_elems: usize) -> Option<usize> {
        let be = self.block_elems();
        if !n_elems.is_multiple_of(be) {
            return None;
        }
        (n_elems / be).checked_mul(self.block_bytes())
    }
}

/// Why a decode was refused. Nothing is written to the output on error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantError {
    /// `n` elements is not a whole number of `ty` blocks.
    NotBlockMultiple { ty: WeightType, n: usize },
    /// The source holds `got` bytes but the element count needs `expected`.
    /// (`expected == usize::MAX` when the byte count would overflow.)
    LengthMismatch { expected: usize, got: usize },
}

impl core::fmt::Display for QuantError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            QuantError::NotBlockMultiple { ty, n } => write!(
                f,
                "{n} elements is not a multiple of the {} block size ({})",
                ty.name(),
                ty.block_elems()
            ),
            QuantError::LengthMismatch { expected, got } => {
                write!(f, "quantized data is {got} bytes, expected {expected}")
            }
        }
    }
}

/// Validate `src` against `n` elements of `ty`.
#[inline]
fn check(ty: WeightType, src: &[u8], n: usize) -> Result<(), QuantError> {
    if !n.is_multiple_of(ty.block_elems()) {
        return Err(QuantError::NotBlockMultiple { ty, n });
    }
    let expected = ty.row_bytes(n).unwrap_or(usize::MAX);
    if src.len() != expected {
        return Err(QuantError::LengthMismatch {
            expected,
            got: src.len(),
        });
    }
    Ok(())
}

/// Decode `out.len()` elements; `src.len()` must equal `ty.row_bytes(out.len())`.
pub fn dequantize(ty: WeightType, src: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    check(ty, src, out.len())?;
    match ty {
        WeightType::F32 => float::dequantize_f32(src, out),
        WeightType::F16 => float::dequantize_f16(src, out),
        WeightType::BF16 => float::dequantize_bf16(src, out),
        WeightType::Q4_0 => legacy::dequantize_q4_0(src, out),
        WeightType::Q4_1 => legacy::dequantize_q4_1(src, out),
        WeightType::Q5_0 => legacy::dequantize_q5_0(src, out),
        WeightType::Q5_1 => legacy::dequantize_q5_1(src, out),
        WeightType::Q8_0 => legacy::dequantize_q8_0(src, out),
        WeightType::Q4K => kquants::dequantize_q4_k(src, out),
        WeightType::Q5K => kquants::dequantize_q5_k(src, out),
        WeightType::Q6K => kquants::dequantize_q6_k(src, out),
    }
    Ok(())
}

/// dot(decode(src), x) with f32 accumulation; `x.len()` elements, same length rule.
pub fn dot(ty: WeightType, src: &[u8], x: &[f32]) -> Result<f32, QuantError> {
    check(ty, src, x.len())?;
    Ok(match ty {
        WeightType::F32 => float::dot_f32(src, x),
        WeightType::F16 => float::dot_f16(src, x),
        WeightType::BF16 => float::dot_bf16(src, x),
        WeightType::Q4_0 => legacy::dot_q4_0(src, x),
        WeightType::Q4_1 => legacy::dot_q4_1(src, x),
        WeightType::Q5_0 => legacy::dot_q5_0(src, x),
        WeightType::Q5_1 => legacy::dot_q5_1(src, x),
        WeightType::Q8_0 => legacy::dot_q8_0(src, x),
        WeightType::Q4K => kquants::dot_q4_k(src, x),
        WeightType::Q5K => kquants::dot_q5_k(src, x),
        WeightType::Q6K => kquants::dot_q6_k(src, x),
    })
}

// ---------------------------------------------------------------------------
// Shared helpers for the block kernels.

/// Number of independent f32 accumulator lanes in the dot kernels: enough for
/// two 8-wide (AVX) or four 4-wide (SSE/NEON) vector accumulators.
pub(crate) const LANES: usize = 16;

/// An f16 stored little-endian at `b[0..2]`, widened to f32 (used for block scales).
#[inline(always)]
pub(crate) fn f16_le(lo: u8, hi: u8) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([lo, hi])).to_f32()
}

/// `acc[l] += sum over chunks c of v[c*LANES + l] * x[c*LANES + l]`, for a
/// block of `N` decoded values (`N` a multiple of `LANES`). Fixed sizes let
/// the loops unroll into straight vector code with no bounds checks.
#[inline(always)]
pub(crate) fn dot_acc<const N: usize>(acc: &mut [f32; LANES], v: &[f32; N], x: &[f32; N]) {
    for (vc, xc) in v.chunks_exact(LANES).zip(x.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] += vc[l] * xc[l];
        }
    }
}

/// Sum the accumulator lanes pairwise (a fixed, deterministic order).
#[inline(always)]
pub(crate) fn reduce(acc: &[f32; LANES]) -> f32 {
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

/// Decode-and-dot over a row of fixed-size blocks: `decode` turns one
/// `BYTES`-byte block into `N` floats on the stack, which are then dotted with
/// the matching `N` activations into `LANES` running accumulators.
/// The caller has validated that `src` and `x` hold the same number of blocks.
#[inline(always)]
pub(crate) fn dot_blocks<const BYTES: usize, const N: usize>(
    src: &[u8],
    x: &[f32],
    decode: impl Fn(&[u8; BYTES], &mut [f32; N]),
) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut buf = [0.0f32; N];
    for (b, xc) in src.chunks_exact(BYTES).zip(x.chunks_exact(N)) {
        if let (Ok(b), Ok(xc)) = (<&[u8; BYTES]>::try_from(b), <&[f32; N]>::try_from(xc)) {
            decode(b, &mut buf);
            dot_acc(&mut acc, &buf, xc);
        }
    }
    reduce(&acc)
}

/// Decode a row of fixed-size blocks straight into `out`.
/// The caller has validated that `src` and `out` hold the same number of blocks.
///
/// The per-block decoders in `legacy` and `kquants` are `#[inline(never)]`:
/// inlined, their fully unrolled bodies make LLVM vectorize this loop
/// *across* blocks (4 blocks per vector, strided byte gathers), which made
/// Q4_0/Q4_1 about 2x slower on x86-64; out of line, each block decodes
/// with contiguous vector loads and the call costs little next to 32 or
/// 256 elements of work.
#[inline(always)]
pub(crate) fn dequantize_blocks<const BYTES: usize, const N: usize>(
    src: &[u8],
    out: &mut [f32],
    decode: impl Fn(&[u8; BYTES], &mut [f32; N]),
) {
    for (b, o) in src.chunks_exact(BYTES).zip(out.chunks_exact_mut(N)) {
        if let (Ok(b), Ok(o)) = (<&[u8; BYTES]>::try_from(b), <&mut [f32; N]>::try_from(o)) {
            decode(b, o);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_ggml_round_trip() {
        for ty in WeightType::ALL {
            assert_eq!(WeightType::from_ggml(ty.ggml_id()), Some(ty));
        }
        let mut known = 0;
        for id in 0..64 {
            if let Some(ty) = WeightType::from_ggml(id) {
                assert_eq!(ty.ggml_id(), id);
                known += 1;
            }
        }
        assert_eq!(known, WeightType::ALL.len());
        for id in [4, 5, 9, 10, 11, 15, 16, 29, 31, u32::MAX] {
            assert_eq!(WeightType::from_ggml(id), None);
        }
        // ALL has no duplicates.
        for (i, a) in WeightType::ALL.iter().enumerate() {
            for b in &WeightType::ALL[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn names_and_sizes() {
        let table = [
            (WeightType::F32, "F32", 1, 4),
            (WeightType::F16, "F16", 1, 2),
            (WeightType::BF16, "BF16", 1, 2),
            (WeightType::Q4_0, "Q4_0", 32, 18),
            (WeightType::Q4_1, "Q4_1", 32, 20),
            (WeightType::Q5_0, "Q5_0", 32, 22),
            (WeightType::Q5_1, "Q5_1", 32, 24),
            (WeightType::Q8_0, "Q8_0", 32, 34),
            (WeightType::Q4K, "Q4_K", 256, 144),
            (WeightType::Q5K, "Q5_K", 256, 176),
            (WeightType::Q6K, "Q6_K", 256, 210),
        ];
        for (ty, name, elems, bytes) in table {
            assert_eq!(ty.name(), name);
            assert_eq!(ty.block_elems(), elems);
            assert_eq!(ty.block_bytes(), bytes);
        }
    }

    #[test]
    fn row_bytes_arithmetic() {
        assert_eq!(WeightType::F32.row_bytes(0), Some(0));
        assert_eq!(WeightType::F32.row_bytes(7), Some(28));
        assert_eq!(WeightType::BF16.row_bytes(3), Some(6));
        assert_eq!(WeightType::Q4_0.row_bytes(0), Some(0));
        assert_eq!(WeightType::Q4_0.row_bytes(64), Some(36));
        assert_eq!(WeightType::Q4_0.row_bytes(48), None);
        assert_eq!(WeightType::Q8_0.row_bytes(2048), Some(64 * 34));
        assert_eq!(WeightType::Q4K.row_bytes(2560), Some(10 * 144));
        assert_eq!(WeightType::Q6K.row_bytes(255), None);
        assert_eq!(WeightType::Q6K.row_bytes(512), Some(420));
        // Overflow is reported, not wrapped.
        assert_eq!(WeightType::F32.row_bytes(usize::MAX), None);
        assert_eq!(WeightType::Q8_0.row_bytes(usize::MAX / 32 * 32), None);
        assert_eq!(
            WeightType::F16.row_bytes(usize::MAX / 2),
            Some(usize::MAX / 2 * 2)
        );
        for ty in WeightType::ALL {
            assert_eq!(
                ty.row_bytes(ty.block_elems() * 3),
                Some(ty.block_bytes() * 3)
            );
        }
    }

    #[test]
    fn length_errors() {
        let src = [0u8; 512];
        let mut out = [0f32; 512];
        for ty in WeightType::ALL {
            let be = ty.block_elems();
            if be > 1 {
                let n = be + 1;
                assert_eq!(
                    dequantize(ty, &src[..ty.block_bytes()], &mut out[..n]),
                    Err(QuantError::NotBlockMultiple { ty, n })
                );
                assert_eq!(
                    dot(ty, &src[..ty.block_bytes()], &out[..n]),
                    Err(QuantError::NotBlockMultiple { ty, n })
                );
            }
            let n = be;
            let bb = ty.block_bytes();
            for got in [0, bb - 1, bb + 1] {
                assert_eq!(
                    dequantize(ty, &src[..got], &mut out[..n]),
                    Err(QuantError::LengthMismatch { expected: bb, got })
                );
                assert_eq!(
                    dot(ty, &src[..got], &out[..n]),
                    Err(QuantError::LengthMismatch { expected: bb, got })
                );
            }
            // Nothing was written on error.
            assert!(out.iter().all(|&v| v == 0.0));
        }
    }

    #[test]
    fn empty_is_fine() {
        for ty in WeightType::ALL {
            assert_eq!(dequantize(ty, &[], &mut []), Ok(()));
            assert_eq!(dot(ty, &[], &[]), Ok(0.0));
            assert_eq!(
                dequantize(ty, &[1, 2], &mut []),
                Err(QuantError::LengthMismatch {
                    expected: 0,
                    got: 2
                })
            );
        }
    }

    #[test]
    fn display_messages() {
        extern crate std;
        use std::string::ToString;
        let e = QuantError::NotBlockMultiple {
            ty: WeightType::Q4K,
            n: 100,
        };
        assert_eq!(
            e.to_string(),
            "100 elements is not a multiple of the Q4_K block size (256)"
        );
        let e = QuantError::LengthMismatch {
            expected: 18,
            got: 17,
        };
        assert_eq!(e.to_string(), "quantized data is 17 bytes, expected 18");
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap xorshift fills blocks with arbitrary bits (NaN/Inf scales
        // included): decoding must not panic, and dot must agree with
        // decode-then-sum wherever the result is finite.
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let mut src = [0u8; 2 * 210];
        let mut out = [0f32; 512];
        let mut x = [0f32; 512];
        for _ in 0..50 {
            for b in src.iter_mut() {
                *b = next() as u8;
            }
            for v in x.iter_mut() {
                *v = (next() % 2001) as f32 / 1000.0 - 1.0;
            }
            for ty in WeightType::ALL {
                let n = if ty.block_elems() == 1 {
                    src.len() / ty.block_bytes() - 3
                } else {
                    2 * ty.block_elems()
                };
                let nb = ty.row_bytes(n).unwrap();
                dequantize(ty, &src[..nb], &mut out[..n]).unwrap();
                let d = dot(ty, &src[..nb], &x[..n]).unwrap();
                let want: f64 = out[..n]
                    .iter()
                    .zip(&x[..n])
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum();
                let scale: f64 = out[..n]
                    .iter()
                    .zip(&x[..n])
                    .map(|(&a, &b)| (a as f64 * b as f64).abs())
                    .sum();
                if want.is_finite() && scale.is_finite() && scale < 1e30 {
                    assert!(
                        (d as f64 - want).abs() <= 1e-5 * scale + 1e-30,
                        "{ty:?}: {d} vs {want}"
                    );
                }
            }
        }
    }
}
