//! AVX2 decode-and-dot of four weight rows against 16-bit fixed-point
//! activations ([`super::fixed16`]): the single-token path of the `fast`
//! precision for Q8_0, Q5_0, Q4_K and Q6_K.
//!
//! Every weight code is a small integer, so `vpmaddwd` multiplies sixteen
//! codes by sixteen activation codes and adds pairs exactly in 32 bits; a
//! block's integer sum is converted to f32 once and scaled by the weight
//! scale times the activation block's scale. Per weight that is about half
//! the work of the exact kernels in `rows_x86`, which convert each code to
//! f32 before its multiply. The only error is the activations' rounding to
//! 15 bits of their block maximum.
//!
//! Overflow: a code is at most 127 in magnitude (Q8_0), an activation code
//! 32767, so a 32-element block sums to under 2^27.
//!
//! As in `rows_x86`, each kernel reads `blocks` whole blocks of every row;
//! [`Rows4Fixed16::dot4`] computes `blocks` from the shortest row and from
//! the activations, which keeps every read in bounds.

use super::fixed16::{Fixed16, BLOCK};
use super::rows_x86::{
    f16_splat, hsum, i8x8_at, lane, q5_0_codes, q6_k_codes, sum_blocks, u8x8_to_f32, PREFETCH_BYTES,
};
use crate::quant::kquants::{unpack_scales_mins, Q4_K_BYTES, Q6_K_BYTES, QK_K};
use crate::quant::WeightType;
use core::arch::x86_64::*;

/// Sixteen activation codes at `x`.
///
/// # Safety
/// Sixteen i16 at `x` must be readable.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load16(x: *const i16) -> __m256i {
    // SAFETY: the caller guarantees 32 readable bytes.
    unsafe { _mm256_loadu_si256(x as *const __m256i) }
}

/// Thirty-two signed 8-bit codes times the 32 activation codes `x`, as
/// eight 32-bit partial sums.
#[inline]
#[target_feature(enable = "avx2")]
fn idot32_i8(q: __m256i, x: [__m256i; 2]) -> __m256i {
    let lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(q));
    let hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(q));
    _mm256_add_epi32(_mm256_madd_epi16(lo, x[0]), _mm256_madd_epi16(hi, x[1]))
}

/// As [`idot32_i8`] for unsigned codes (K-quant nibbles).
#[inline]
#[target_feature(enable = "avx2")]
fn idot32_u8(q: __m256i, x: [__m256i; 2]) -> __m256i {
    let lo = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(q));
    let hi = _mm256_cvtepu8_epi16(_mm256_extracti128_si256::<1>(q));
    _mm256_add_epi32(_mm256_madd_epi16(lo, x[0]), _mm256_madd_epi16(hi, x[1]))
}

/// The two halves of activation block `blk`.
///
/// # Safety
/// Block `blk` of `x` must be readable.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn x_block(x: *const i16, blk: usize) -> [__m256i; 2] {
    // SAFETY: the caller guarantees the 32 codes of block `blk`.
    unsafe {
        let p = x.add(BLOCK * blk);
        [load16(p), load16(p.add(16))]
    }
}

/// Q8_0: 34-byte blocks of an f16 scale and 32 signed codes.
///
/// # Safety
/// Every row must hold `blocks` blocks, and `x` must hold `blocks` blocks
/// of codes, scales and sums.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8_0(rows: [*const u8; 4], x: Act, blocks: usize) -> [f32; 4] {
    // Row by row: the four rows lie one after another in memory, so this
    // order reads the weights as one sequential stream, which keeps the
    // memory system busier than four interleaved streams do (the product
    // is memory-bound; the activations stay in L1 either way).
    rows.map(|row| {
        sum_blocks(blocks, |b, acc| {
            // SAFETY: block b of x exists (b < blocks), and block b of the
            // row lies inside it.
            unsafe {
                let (xv, sx) = (x_block(x.q, b), *x.scale.add(b));
                let p = row.add(34 * b);
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH_BYTES) as *const i8);
                let q = _mm256_loadu_si256(p.add(2) as *const __m256i);
                let s = _mm256_cvtepi32_ps(idot32_i8(q, xv));
                _mm256_fmadd_ps(_mm256_mul_ps(f16_splat(p), _mm256_set1_ps(sx)), s, acc)
            }
        })
    })
}

/// Q5_0: 22-byte blocks of an f16 scale, 32 fifth bits and 16 bytes of
/// nibbles (element `i` the low nibble of byte `i`, element `16 + i` its
/// high nibble), codes centred on 16.
///
/// # Safety
/// As for [`q8_0`].
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_0(rows: [*const u8; 4], x: Act, blocks: usize) -> [f32; 4] {
    // Row by row, one sequential stream, as in `q8_0`.
    rows.map(|row| {
        sum_blocks(blocks, |b, acc| {
            // SAFETY: block b of x exists, and block b of the row is inside
            // it.
            unsafe {
                let (xv, sx) = (x_block(x.q, b), *x.scale.add(b));
                let p = row.add(22 * b);
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH_BYTES) as *const i8);
                let s = _mm256_cvtepi32_ps(idot32_i8(q5_0_codes(p), xv));
                _mm256_fmadd_ps(_mm256_mul_ps(f16_splat(p), _mm256_set1_ps(sx)), s, acc)
            }
        })
    })
}

/// Q4_K: 144-byte super-blocks of 256 (f16 `d` and `dmin`, twelve bytes of
/// 6-bit scales and mins, 128 bytes of nibbles). Sub-block `j` decodes as
/// `d * sc[j] * q - dmin * mn[j]`; the `mn` term uses the exact f32 sum of
/// the activation block, so only the `q` term sees the fixed point.
///
/// # Safety
/// Every row must hold `blocks` super-blocks and `x` `8 * blocks` blocks.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_k(rows: [*const u8; 4], x: Act, blocks: usize) -> [f32; 4] {
    // SAFETY: each row holds `blocks` super-blocks and x their blocks.
    rows.map(|p| unsafe { q4_k_row(p, x, blocks) })
}

/// One row of [`q4_k`].
///
/// # Safety
/// As for [`q4_k`], for the one row at `p`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_k_row(p: *const u8, x: Act, blocks: usize) -> f32 {
    let low4 = _mm256_set1_epi8(0x0F);
    let mut acc = [_mm256_setzero_ps(); 2];
    let mut mins = _mm256_setzero_ps();
    for b in 0..blocks {
        let first = 8 * b;
        // SAFETY: super-block b of the row is inside it, and blocks
        // first..first + 8 of x exist.
        let (p, xs, xsum) = unsafe {
            let p = p.add(Q4_K_BYTES * b);
            for line in 0..3 {
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH_BYTES + 64 * line) as *const i8);
            }
            (
                p,
                _mm256_loadu_ps(x.scale.add(first)),
                _mm256_loadu_ps(x.sum.add(first)),
            )
        };
        // SAFETY: the super-block's first 16 bytes are readable.
        let (d, dmin, packed) = unsafe {
            (
                f16_splat(p),
                f16_splat(p.add(2)),
                (p.add(4) as *const [u8; 12]).read_unaligned(),
            )
        };
        let (sc, mn) = unpack_scales_mins(&packed);
        // Sub-block j's factor: d * sc[j] * (activation block j's scale).
        let scales = _mm256_mul_ps(_mm256_mul_ps(d, u8x8_to_f32(sc)), xs);
        mins = _mm256_fmadd_ps(_mm256_mul_ps(dmin, u8x8_to_f32(mn)), xsum, mins);
        for c in 0..4 {
            let (j0, j1) = (2 * c, 2 * c + 1);
            // SAFETY: bytes 16 + 32c .. 48 + 32c of the super-block, and
            // blocks first + j0, first + j1 of x.
            unsafe {
                let q = _mm256_loadu_si256(p.add(16 + 32 * c) as *const __m256i);
                let lo = _mm256_and_si256(q, low4);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), low4);
                let s_lo = _mm256_cvtepi32_ps(idot32_u8(lo, x_block(x.q, first + j0)));
                let s_hi = _mm256_cvtepi32_ps(idot32_u8(hi, x_block(x.q, first + j1)));
                acc[0] = _mm256_fmadd_ps(lane(scales, j0), s_lo, acc[0]);
                acc[1] = _mm256_fmadd_ps(lane(scales, j1), s_hi, acc[1]);
            }
        }
    }
    hsum(_mm256_add_ps(acc[0], acc[1])) - hsum(mins)
}

/// Q6_K: 210-byte super-blocks of 256 (`ql[128]` low nibbles, `qh[64]`
/// high bit pairs, sixteen signed scales, one per 16 elements, f16 `d`),
/// codes centred on 32; the element order is documented in `rows_x86`.
///
/// # Safety
/// As for [`q4_k`], with 210-byte super-blocks.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6_k(rows: [*const u8; 4], x: Act, blocks: usize) -> [f32; 4] {
    // SAFETY: each row holds `blocks` super-blocks and x their blocks.
    rows.map(|p| unsafe { q6_k_row(p, x, blocks) })
}

/// One row of [`q6_k`].
///
/// # Safety
/// As for [`q6_k`], for the one row at `p`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6_k_row(p: *const u8, x: Act, blocks: usize) -> f32 {
    // Scale groups are 16 elements, activation blocks 32: group g uses
    // activation block g / 2 of its half.
    let pairs = [
        _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3),
        _mm256_setr_epi32(4, 4, 5, 5, 6, 6, 7, 7),
    ];
    let mut acc = [_mm256_setzero_ps(); 2];
    for b in 0..blocks {
        let first = 8 * b;
        // SAFETY: super-block b of the row is inside it, and blocks
        // first..first + 8 of x exist.
        let (p, xs) = unsafe {
            let p = p.add(Q6_K_BYTES * b);
            for line in 0..4 {
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH_BYTES + 64 * line) as *const i8);
            }
            (p, _mm256_loadu_ps(x.scale.add(first)))
        };
        // SAFETY: bytes 192..210 of the super-block are readable.
        let (d, group_scales) = unsafe {
            (
                f16_splat(p.add(208)),
                [p.add(192), p.add(200)].map(|s| i8x8_at(s)),
            )
        };
        for h in 0..2 {
            let sc = _mm256_mul_ps(
                _mm256_mul_ps(d, group_scales[h]),
                _mm256_permutevar8x32_ps(xs, pairs[h]),
            );
            // SAFETY: the super-block is inside the row; h < 2.
            let codes = unsafe { q6_k_codes(p, h) };
            for (k, q) in codes.into_iter().enumerate() {
                // SAFETY: block first + 4h + k of x exists.
                let xv = unsafe { x_block(x.q, first + 4 * h + k) };
                let i0 = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_castsi256_si128(q)), xv[0]);
                let i1 = _mm256_madd_epi16(
                    _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(q)),
                    xv[1],
                );
                acc[0] = _mm256_fmadd_ps(lane(sc, 2 * k), _mm256_cvtepi32_ps(i0), acc[0]);
                acc[1] = _mm256_fmadd_ps(lane(sc, 2 * k + 1), _mm256_cvtepi32_ps(i1), acc[1]);
            }
        }
    }
    hsum(_mm256_add_ps(acc[0], acc[1]))
}

/// Raw pointers to fixed-point activations, valid for the kernel's blocks.
#[derive(Clone, Copy)]
struct Act {
    q: *const i16,
    scale: *const f32,
    sum: *const f32,
}

type Rows4Fn = unsafe fn([*const u8; 4], Act, usize) -> [f32; 4];

/// A four-row fixed-point kernel with its block geometry.
#[derive(Clone, Copy)]
pub(super) struct Rows4Fixed16 {
    f: Rows4Fn,
    block_elems: usize,
    block_bytes: usize,
}

/// The four-row fixed-point kernel for `ty`, if there is one. Callers must
/// have checked `Isa::avx2()`.
pub(super) fn kernel_for(ty: WeightType) -> Option<Rows4Fixed16> {
    let (f, block_elems, block_bytes): (Rows4Fn, usize, usize) = match ty {
        WeightType::Q8_0 => (q8_0, 32, 34),
        WeightType::Q5_0 => (q5_0, 32, 22),
        WeightType::Q4K => (q4_k, QK_K, Q4_K_BYTES),
        WeightType::Q6K => (q6_k, QK_K, Q6_K_BYTES),
        _ => return None,
    };
    Some(Rows4Fixed16 {
        f,
        block_elems,
        block_bytes,
    })
}

impl Rows4Fixed16 {
    /// Elements per weight block: column ranges handed to [`Self::dot4`]
    /// start at multiples of it.
    pub(super) fn block_elems(&self) -> usize {
        self.block_elems
    }

    /// Bytes per weight block.
    pub(super) fn block_bytes(&self) -> usize {
        self.block_bytes
    }

    /// `dot(rows[k], x)` for each k, over the whole weight blocks that every
    /// row and `x` hold.
    pub(super) fn dot4(&self, rows: [&[u8]; 4], x: &Fixed16) -> [f32; 4] {
        let act_blocks_per = self.block_elems / BLOCK;
        let blocks = rows
            .iter()
            .map(|r| r.len() / self.block_bytes)
            .fold(x.blocks() / act_blocks_per, usize::min);
        let act = Act {
            q: x.q.as_ptr(),
            scale: x.scale.as_ptr(),
            sum: x.sum.as_ptr(),
        };
        // SAFETY: `kernel_for` hands out kernels only to callers that
        // confirmed AVX2/FMA/F16C; `blocks` fits every row, and x holds
        // `blocks * act_blocks_per` blocks of codes, scales and sums.
        unsafe { (self.f)(rows.map(|r| r.as_ptr()), act, blocks) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::fixed16::quantize;
    use crate::quant;

    use crate::kernels::test_data::{quant_rows, DECODE_SHAPES};

    /// Random codes with sane scales, against decode-then-dot in f64 with
    /// the unquantized activations: the gap is the activations' rounding.
    #[test]
    fn fixed_point_kernels_match_decode_then_dot() {
        if !crate::kernels::Isa::detect().avx2() {
            crate::kernels::test_data::not_run(
                "rows_x86_fixed16::fixed_point_kernels_match_decode_then_dot",
                "this CPU lacks AVX2/FMA/F16C",
            );
            return;
        }
        for (ty, cols) in DECODE_SHAPES {
            let k = kernel_for(ty).unwrap();
            let row_bytes = ty.row_bytes(cols).unwrap();
            let bytes = quant_rows(ty, 4, cols, 0x5151_2323 ^ ty as u32 ^ cols as u32);
            // Blocks of very different magnitude, as real activations have.
            let x: std::vec::Vec<f32> = (0..cols)
                .map(|i| ((i * 29 % 23) as f32 - 11.0) / 3.0 * (1 + (i / 32) % 5 * 40) as f32)
                .collect();
            let (mut q, mut s, mut t) = (
                std::vec![0i16; cols],
                std::vec![0f32; cols / 32],
                std::vec![0f32; cols / 32],
            );
            assert!(quantize(&x, &mut q, &mut s, &mut t));
            let fx = Fixed16 {
                q: &q,
                scale: &s,
                sum: &t,
            };
            let rows: [&[u8]; 4] = core::array::from_fn(|r| &bytes[r * row_bytes..][..row_bytes]);
            let got = k.dot4(rows, &fx);
            for r in 0..4 {
                let mut w = std::vec![0f32; cols];
                quant::dequantize(ty, rows[r], &mut w).unwrap();
                let want: f64 = w.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
                // Each activation is off by at most half a step of its block.
                let bound: f64 = w
                    .iter()
                    .enumerate()
                    .map(|(i, a)| (*a as f64).abs() * s[i / 32] as f64 * 0.5)
                    .sum::<f64>()
                    * 1.01
                    + 1e-5
                        * w.iter()
                            .zip(&x)
                            .map(|(a, b)| (a * b).abs() as f64)
                            .sum::<f64>();
                assert!(
                    (got[r] as f64 - want).abs() <= bound,
                    "{ty:?} row {r}: {} vs {want} (bound {bound})",
                    got[r]
                );
            }
        }
    }
}
