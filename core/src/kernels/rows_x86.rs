//! AVX2+FMA decode-and-dot of four weight rows at once against one
//! activation vector: the single-token (decode) path of every GGML format
//! the Gemma GGUFs carry (Q8_0, Q5_0, Q4_K, Q6_K).
//!
//! The four rows are read one after another, so the weights stream from
//! memory in order; `x` stays in L1. Each row keeps at least two
//! accumulators, so the FMA latency chain is never what the loop waits on,
//! and block scales are vectors (one lane per sub-block) rather than
//! scalar arithmetic per sub-block. Codes are widened straight from memory
//! (`vpmovsxbd`/`vpmovzxbd` on eight bytes) where the format allows, which
//! spares the shuffles of widening from a wider register.
//! Activations stay f32 and every code converts exactly to f32, so results
//! differ from the portable path (`quant::dot`) by summation order only;
//! `tests` below compare the two.
//!
//! Each kernel reads `blocks` whole blocks from every row. The caller
//! (`rows_dot4`) computes `blocks` from the shortest row and from `x`, which
//! is what makes the raw-pointer reads in bounds.

use crate::quant::kquants::{unpack_scales_mins, Q4_K_BYTES, Q6_K_BYTES, QK_K};
use crate::quant::WeightType;
use core::arch::x86_64::*;

/// Horizontal sum of eight lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s)))
}

/// The horizontal sum of `term(b)` over `b < blocks`, accumulated in two
/// registers (even and odd blocks) so that consecutive blocks' FMAs do not
/// wait on each other; `term(b, acc)` returns `acc` plus block b's part.
/// Only for the AVX2 kernels of this module and `rows_x86_fixed16`, into
/// which it is inlined (a `#[target_feature]` function cannot be
/// `inline(always)`).
#[inline(always)]
pub(super) fn sum_blocks(blocks: usize, mut term: impl FnMut(usize, __m256) -> __m256) -> f32 {
    // SAFETY: AVX is enabled: every caller is an AVX2 kernel that checked
    // the CPU, and this body is inlined into it.
    let (mut even, mut odd) = unsafe { (_mm256_setzero_ps(), _mm256_setzero_ps()) };
    let mut b = 0;
    while b + 1 < blocks {
        even = term(b, even);
        odd = term(b + 1, odd);
        b += 2;
    }
    if b < blocks {
        even = term(b, even);
    }
    // SAFETY: as above.
    unsafe { hsum(_mm256_add_ps(even, odd)) }
}

/// The f16 at `p` (little-endian, unaligned) as f32 in all eight lanes,
/// through F16C.
///
/// Broadcasting the 16 bits before converting matters: converting from a
/// register whose other lanes are left undefined lets the compiler merge
/// into any register, even a loop's accumulator, which chains every block's
/// scale behind the previous block's sum.
///
/// # Safety
/// Two bytes at `p` must be readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn f16_splat(p: *const u8) -> __m256 {
    // SAFETY: the caller guarantees two readable bytes.
    let bits = unsafe { (p as *const u16).read_unaligned() };
    _mm256_cvtph_ps(_mm_set1_epi16(bits as i16))
}

/// How far ahead of the rows being read to prefetch: the next group of
/// rows, which in a matrix follows these ones in memory.
pub(super) const PREFETCH_BYTES: usize = 2048;

/// Sixteen signed 8-bit codes (in a 128-bit register) times sixteen floats
/// at `x`, as eight partial sums.
///
/// # Safety
/// Sixteen floats at `x` must be readable.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot16_i8(q: __m128i, x: *const f32) -> __m256 {
    let a = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
    let b = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128::<8>(q)));
    // SAFETY: the caller guarantees 16 readable floats.
    unsafe {
        _mm256_fmadd_ps(
            b,
            _mm256_loadu_ps(x.add(8)),
            _mm256_mul_ps(a, _mm256_loadu_ps(x)),
        )
    }
}

/// Thirty-two signed codes times thirty-two floats at `x`, as eight partial
/// sums (two independent chains).
///
/// # Safety
/// Thirty-two floats at `x` must be readable.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot32_i8(q: __m256i, x: *const f32) -> __m256 {
    // SAFETY: the caller guarantees 32 readable floats.
    unsafe {
        _mm256_add_ps(
            dot16_i8(_mm256_castsi256_si128(q), x),
            dot16_i8(_mm256_extracti128_si256::<1>(q), x.add(16)),
        )
    }
}

/// Q8_0: 34-byte blocks of an f16 scale and 32 signed codes.
///
/// # Safety
/// Every row must hold `blocks` blocks and `x` `32 * blocks` floats.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8_0(rows: [*const u8; 4], x: *const f32, blocks: usize) -> [f32; 4] {
    // Row by row: the four rows lie one after another in memory, so this
    // order reads the weights as one sequential stream (the product is
    // memory-bound at the output projection's size; x stays in L1).
    rows.map(|row| {
        sum_blocks(blocks, |b, acc| {
            // SAFETY: block b of the row lies inside it (b < blocks), and x
            // holds 32 floats from 32 * b.
            unsafe {
                let p = row.add(34 * b);
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH_BYTES) as *const i8);
                let s = dot32_i8_at(p.add(2), x.add(32 * b));
                _mm256_fmadd_ps(f16_splat(p), s, acc)
            }
        })
    })
}

/// Eight signed 8-bit codes at `q` as eight floats: one widening load and
/// one conversion, no shuffles of a wider register.
///
/// # Safety
/// Eight bytes at `q` must be readable.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn i8x8_at(q: *const u8) -> __m256 {
    // SAFETY: the caller guarantees eight readable bytes.
    unsafe { _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(q as *const __m128i))) }
}

/// Thirty-two signed codes in memory at `q` times thirty-two floats at `x`,
/// as eight partial sums (two independent chains).
///
/// # Safety
/// Thirty-two bytes at `q` and thirty-two floats at `x` must be readable.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot32_i8_at(q: *const u8, x: *const f32) -> __m256 {
    // SAFETY: the caller guarantees 32 readable bytes and floats.
    unsafe {
        let s0 = _mm256_fmadd_ps(
            i8x8_at(q.add(8)),
            _mm256_loadu_ps(x.add(8)),
            _mm256_mul_ps(i8x8_at(q), _mm256_loadu_ps(x)),
        );
        let s1 = _mm256_fmadd_ps(
            i8x8_at(q.add(24)),
            _mm256_loadu_ps(x.add(24)),
            _mm256_mul_ps(i8x8_at(q.add(16)), _mm256_loadu_ps(x.add(16))),
        );
        _mm256_add_ps(s0, s1)
    }
}

/// Q5_0: 22-byte blocks of an f16 scale, 32 fifth bits and 16 bytes of
/// nibbles (element `i` low nibble of byte `i`, element `16 + i` its high
/// nibble), codes centred on 16.
///
/// # Safety
/// As for [`q8_0`].
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_0(rows: [*const u8; 4], x: *const f32, blocks: usize) -> [f32; 4] {
    // Row by row, one sequential stream, as in `q8_0`.
    rows.map(|row| {
        sum_blocks(blocks, |b, acc| {
            // SAFETY: block b of the row is inside it; x holds 32 floats
            // from 32 * b.
            unsafe {
                let p = row.add(22 * b);
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH_BYTES) as *const i8);
                let s = dot32_i8(q5_0_codes(p), x.add(32 * b));
                _mm256_fmadd_ps(f16_splat(p), s, acc)
            }
        })
    })
}

/// Q4_K: 144-byte super-blocks of 256: f16 `d` and `dmin`, twelve bytes of
/// packed 6-bit scales and mins, 128 bytes of nibbles. Sub-block `j` (32
/// elements) decodes as `d * sc[j] * q - dmin * mn[j]`, so a row's dot is
/// `sum_j d * sc[j] * sum(q * x) - dmin * sum_j mn[j] * sum(x)`. The sums of
/// `x` over each sub-block are shared by the four rows, and the min terms of
/// all eight sub-blocks take one vector FMA per row.
///
/// # Safety
/// Every row must hold `blocks` super-blocks and `x` `256 * blocks` floats.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_k(rows: [*const u8; 4], x: *const f32, blocks: usize) -> [f32; 4] {
    // The sums of x are taken for a run of super-blocks first; then each
    // row streams through that run with its accumulators in registers.
    const RUN: usize = 16;
    let mut out = [0f32; 4];
    let mut first = 0;
    while first < blocks {
        let n = (blocks - first).min(RUN);
        let mut xsums = [_mm256_setzero_ps(); RUN];
        for (i, s) in xsums[..n].iter_mut().enumerate() {
            // SAFETY: x holds 256 floats from 256 * (first + i).
            *s = unsafe { subblock_sums(x.add(QK_K * (first + i))) };
        }
        for (r, o) in out.iter_mut().enumerate() {
            // SAFETY: super-blocks first..first + n of row r are inside the
            // row, and x holds their 256 * n floats.
            *o += unsafe {
                q4_k_row_run(
                    rows[r].add(Q4_K_BYTES * first),
                    x.add(QK_K * first),
                    &xsums[..n],
                )
            };
        }
        first += n;
    }
    out
}

/// One row's dot over `xsums.len()` Q4_K super-blocks at `p` against `x`,
/// given the sub-block sums of `x` (see [`subblock_sums`]).
///
/// # Safety
/// `144 * xsums.len()` bytes at `p` and `256 * xsums.len()` floats at `x`
/// must be readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_k_row_run(p: *const u8, x: *const f32, xsums: &[__m256]) -> f32 {
    let low4 = _mm256_set1_epi32(0x0F);
    let mut acc = [_mm256_setzero_ps(); 2];
    let mut mins = _mm256_setzero_ps();
    for (b, &xs) in xsums.iter().enumerate() {
        // SAFETY: super-block b is readable (caller).
        let p = unsafe { p.add(Q4_K_BYTES * b) };
        // SAFETY: x holds 256 floats from 256 * b (caller).
        let xb = unsafe { x.add(QK_K * b) };
        // SAFETY: the super-block's 144 bytes are readable.
        let (d, dmin, packed) = unsafe {
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH_BYTES) as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH_BYTES + 64) as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH_BYTES + 128) as *const i8);
            (
                f16_splat(p),
                f16_splat(p.add(2)),
                (p.add(4) as *const [u8; 12]).read_unaligned(),
            )
        };
        let (sc, mn) = unpack_scales_mins(&packed);
        let scales = _mm256_mul_ps(d, u8x8_to_f32(sc));
        mins = _mm256_fmadd_ps(_mm256_mul_ps(dmin, u8x8_to_f32(mn)), xs, mins);
        for c in 0..4 {
            // Bytes 16 + 32c .. 48 + 32c hold sub-block 2c in their low
            // nibbles and 2c + 1 in their high ones; eight bytes at a time,
            // widened to lanes, give eight codes of each.
            let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            for k in 0..4 {
                // SAFETY: bytes 16 + 32c + 8k ..+ 8 of the super-block,
                // floats 64c + 8k ..+ 8 and 64c + 32 + 8k ..+ 8 of xb.
                unsafe {
                    let q = _mm256_cvtepu8_epi32(_mm_loadl_epi64(
                        p.add(16 + 32 * c + 8 * k) as *const __m128i
                    ));
                    let ql = _mm256_cvtepi32_ps(_mm256_and_si256(q, low4));
                    let qh = _mm256_cvtepi32_ps(_mm256_srli_epi32::<4>(q));
                    let xp = xb.add(64 * c + 8 * k);
                    lo = _mm256_fmadd_ps(ql, _mm256_loadu_ps(xp), lo);
                    hi = _mm256_fmadd_ps(qh, _mm256_loadu_ps(xp.add(32)), hi);
                }
            }
            acc[c & 1] = _mm256_fmadd_ps(lane(scales, 2 * c), lo, acc[c & 1]);
            acc[c & 1] = _mm256_fmadd_ps(lane(scales, 2 * c + 1), hi, acc[c & 1]);
        }
    }
    hsum(_mm256_add_ps(acc[0], acc[1])) - hsum(mins)
}

/// Eight bytes as eight floats.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn u8x8_to_f32(v: [u8; 8]) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(
        u64::from_le_bytes(v) as i64,
    )))
}

/// Lane `i` (< 8) of `v` in every lane.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn lane(v: __m256, i: usize) -> __m256 {
    _mm256_permutevar8x32_ps(v, _mm256_set1_epi32(i as i32))
}

/// The sums of the eight 32-float sub-blocks of the 256 floats at `x`, one
/// per lane.
///
/// # Safety
/// 256 floats at `x` must be readable.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn subblock_sums(x: *const f32) -> __m256 {
    // SAFETY: the caller guarantees 256 readable floats.
    let v: [__m256; 8] = core::array::from_fn(|j| unsafe {
        let p = x.add(32 * j);
        _mm256_add_ps(
            _mm256_add_ps(_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))),
            _mm256_add_ps(_mm256_loadu_ps(p.add(16)), _mm256_loadu_ps(p.add(24))),
        )
    });
    // Pairwise horizontal adds fold eight vectors into two of partial
    // sums, one per 128-bit half of the inputs; two cross-half permutes and
    // an add put the eight totals in order.
    let h01 = _mm256_hadd_ps(v[0], v[1]);
    let h23 = _mm256_hadd_ps(v[2], v[3]);
    let h45 = _mm256_hadd_ps(v[4], v[5]);
    let h67 = _mm256_hadd_ps(v[6], v[7]);
    let q0123 = _mm256_hadd_ps(h01, h23);
    let q4567 = _mm256_hadd_ps(h45, h67);
    // q0123 = [s0l s1l s2l s3l | s0h s1h s2h s3h] (low/high 128-bit halves).
    let lo = _mm256_permute2f128_ps::<0x20>(q0123, q4567);
    let hi = _mm256_permute2f128_ps::<0x31>(q0123, q4567);
    _mm256_add_ps(lo, hi)
}

/// The four groups of 32 signed codes (`q - 32`) of half `h` of the Q6_K
/// super-block at `p`; group `k` holds elements `128h + 32k ..+ 32` (the
/// layout is described at [`q6_k`]).
///
/// # Safety
/// The super-block's 210 bytes at `p` must be readable; `h < 2`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q6_k_codes(p: *const u8, h: usize) -> [__m256i; 4] {
    let low4 = _mm256_set1_epi8(0x0F);
    let three = _mm256_set1_epi8(0x03);
    let thirty_two = _mm256_set1_epi8(32);
    // SAFETY: ql bytes 64h..64h+64, qh bytes 128+32h..160+32h (caller).
    let (ql0, ql1, qh) = unsafe {
        (
            _mm256_loadu_si256(p.add(64 * h) as *const __m256i),
            _mm256_loadu_si256(p.add(64 * h + 32) as *const __m256i),
            _mm256_loadu_si256(p.add(128 + 32 * h) as *const __m256i),
        )
    };
    let parts = [
        (_mm256_and_si256(ql0, low4), qh),
        (_mm256_and_si256(ql1, low4), _mm256_srli_epi16::<2>(qh)),
        (
            _mm256_and_si256(_mm256_srli_epi16::<4>(ql0), low4),
            _mm256_srli_epi16::<4>(qh),
        ),
        (
            _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), low4),
            _mm256_srli_epi16::<6>(qh),
        ),
    ];
    parts.map(|(low, high)| {
        let top = _mm256_slli_epi16::<4>(_mm256_and_si256(high, three));
        _mm256_sub_epi8(_mm256_or_si256(low, top), thirty_two)
    })
}

/// Q6_K: 210-byte super-blocks of 256: `ql[128]` low nibbles, `qh[64]` high
/// bit pairs, sixteen signed 8-bit scales (one per 16 elements), f16 `d`;
/// codes centred on 32. In half `h`, element `128h + 32k + l` (k < 4,
/// l < 32) takes its low nibble from `ql[64h + l + 32(k & 1)]` (high nibble
/// when k >= 2), its top bits from bits `2k..2k+2` of `qh[32h + l]`, and its
/// scale from `scales[8h + 2k + l / 16]`.
///
/// # Safety
/// As for [`q4_k`], with 210-byte super-blocks.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6_k(rows: [*const u8; 4], x: *const f32, blocks: usize) -> [f32; 4] {
    // SAFETY: each row holds `blocks` super-blocks and x their floats.
    rows.map(|p| unsafe { q6_k_row(p, x, blocks) })
}

/// One row's dot over `blocks` Q6_K super-blocks at `p` against `x`.
///
/// # Safety
/// `210 * blocks` bytes at `p` and `256 * blocks` floats at `x` must be
/// readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6_k_row(p: *const u8, x: *const f32, blocks: usize) -> f32 {
    let mut acc = [_mm256_setzero_ps(); 2];
    for b in 0..blocks {
        // SAFETY: super-block b is readable and x holds its 256 floats.
        let (p, xb) = unsafe { (p.add(Q6_K_BYTES * b), x.add(QK_K * b)) };
        // SAFETY: bytes 192..210 of the super-block are readable.
        let scales = unsafe {
            for line in 0..4 {
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH_BYTES + 64 * line) as *const i8);
            }
            let d = f16_splat(p.add(208));
            [p.add(192), p.add(200)].map(|s| _mm256_mul_ps(d, i8x8_at(s)))
        };
        for (h, sc) in scales.into_iter().enumerate() {
            // SAFETY: the super-block is inside the row; h < 2.
            let codes = unsafe { q6_k_codes(p, h) };
            for (k, q) in codes.into_iter().enumerate() {
                // SAFETY: floats 128h + 32k .. + 32 of xb.
                unsafe {
                    let xp = xb.add(128 * h + 32 * k);
                    let s0 = dot16_i8(_mm256_castsi256_si128(q), xp);
                    let s1 = dot16_i8(_mm256_extracti128_si256::<1>(q), xp.add(16));
                    acc[k & 1] = _mm256_fmadd_ps(lane(sc, 2 * k), s0, acc[k & 1]);
                    acc[k & 1] = _mm256_fmadd_ps(lane(sc, 2 * k + 1), s1, acc[k & 1]);
                }
            }
        }
    }
    hsum(_mm256_add_ps(acc[0], acc[1]))
}

/// Q5_0's 32 codes of the block at `p`, as signed bytes (`q - 16`).
///
/// # Safety
/// The block's 22 bytes at `p` must be readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q5_0_codes(p: *const u8) -> __m256i {
    // Byte k of the spread word is qh byte k / 8, tested against bit k % 8.
    let spread = _mm256_setr_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3,
        3, 3,
    );
    let bit_of_byte = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    // SAFETY: bytes 2..22 of the block are readable (caller).
    let (qh, qs) = unsafe {
        (
            (p.add(2) as *const u32).read_unaligned(),
            _mm256_broadcastsi128_si256(_mm_loadu_si128(p.add(6) as *const __m128i)),
        )
    };
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(qh as i32), spread);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit_of_byte), bit_of_byte);
    // Low nibbles in the low half, high nibbles (shifted down) in the high.
    let nibbles = _mm256_and_si256(
        _mm256_srlv_epi64(qs, _mm256_setr_epi64x(0, 0, 4, 4)),
        _mm256_set1_epi8(0x0F),
    );
    // (nibble | fifth << 4) - 16: the nibble itself where the fifth bit is
    // set, the nibble - 16 where it is clear.
    _mm256_add_epi8(nibbles, _mm256_andnot_si256(set, _mm256_set1_epi8(-16)))
}

/// Decodes whole Q5_0 blocks of `src` into `dst` (the span path of a
/// batch), vectorized; the same values as `quant::dequantize`.
#[target_feature(enable = "avx2,fma,f16c")]
fn dequantize_q5_0(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src.chunks_exact(22).zip(dst.chunks_exact_mut(32)) {
        // SAFETY: the block holds 22 bytes and `out` 32 floats.
        unsafe {
            let p = block.as_ptr();
            let d = f16_splat(p);
            let q = q5_0_codes(p);
            let halves = [_mm256_castsi256_si128(q), _mm256_extracti128_si256::<1>(q)];
            for (h, half) in halves.into_iter().enumerate() {
                let a = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(half));
                let b = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128::<8>(half)));
                let o = out.as_mut_ptr().add(16 * h);
                _mm256_storeu_ps(o, _mm256_mul_ps(a, d));
                _mm256_storeu_ps(o.add(8), _mm256_mul_ps(b, d));
            }
        }
    }
}

/// Decodes `src` (whole blocks of `ty`) into `dst` with a vectorized
/// decoder, if this format has one; false leaves `dst` to the portable
/// `quant::dequantize`. Callers must have checked `Isa::avx2()`.
pub(super) fn dequantize(ty: WeightType, src: &[u8], dst: &mut [f32]) -> bool {
    match ty {
        WeightType::Q5_0 if src.len() / 22 * 32 == dst.len() && src.len().is_multiple_of(22) => {
            // SAFETY: the caller confirmed AVX2/FMA/F16C.
            unsafe { dequantize_q5_0(src, dst) };
            true
        }
        _ => false,
    }
}

/// The four-row kernel for `ty`, if there is one. Callers must have checked
/// `Isa::avx2()` (AVX2, FMA and F16C).
pub(super) fn kernel_for(ty: WeightType) -> Option<Rows4> {
    let (f, block_elems, block_bytes): (Rows4Fn, usize, usize) = match ty {
        WeightType::Q8_0 => (q8_0, 32, 34),
        WeightType::Q5_0 => (q5_0, 32, 22),
        WeightType::Q4K => (q4_k, QK_K, Q4_K_BYTES),
        WeightType::Q6K => (q6_k, QK_K, Q6_K_BYTES),
        _ => return None,
    };
    Some(Rows4 {
        f,
        block_elems,
        block_bytes,
    })
}

type Rows4Fn = unsafe fn([*const u8; 4], *const f32, usize) -> [f32; 4];

/// A four-row fused kernel with its block geometry.
#[derive(Clone, Copy)]
pub(super) struct Rows4 {
    f: Rows4Fn,
    block_elems: usize,
    block_bytes: usize,
}

impl Rows4 {
    /// `dot(rows[k], x)` for each k, over the whole blocks that every row
    /// and `x` hold.
    pub(super) fn dot4(&self, rows: [&[u8]; 4], x: &[f32]) -> [f32; 4] {
        let blocks = rows
            .iter()
            .map(|r| r.len() / self.block_bytes)
            .fold(x.len() / self.block_elems, usize::min);
        // SAFETY: `kernel_for` hands out a `Rows4` only to callers that
        // confirmed AVX2/FMA/F16C, and `blocks` fits every row and `x`, as
        // the kernels require.
        unsafe { (self.f)(rows.map(|r| r.as_ptr()), x.as_ptr(), blocks) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_data::{noise, quant_rows, DECODE_SHAPES};
    use crate::quant;

    #[test]
    fn vectorized_q5_0_decode_equals_the_portable_one() {
        if !crate::kernels::Isa::detect().avx2() {
            crate::kernels::test_data::not_run(
                "rows_x86::vectorized_q5_0_decode_equals_the_portable_one",
                "this CPU lacks AVX2/FMA/F16C",
            );
            return;
        }
        let mut bytes = std::vec![0u8; 22 * 9];
        noise(&mut bytes, 77);
        for (i, blk) in bytes.chunks_exact_mut(22).enumerate() {
            let d = half::f16::from_f32(0.01 * (i as f32 - 4.0));
            blk[..2].copy_from_slice(&d.to_bits().to_le_bytes());
        }
        let (mut fast, mut portable) = ([0f32; 288], [0f32; 288]);
        assert!(dequantize(WeightType::Q5_0, &bytes, &mut fast));
        quant::dequantize(WeightType::Q5_0, &bytes, &mut portable).unwrap();
        assert_eq!(fast, portable);
        assert!(!dequantize(WeightType::Q5_0, &bytes[..21], &mut fast[..32]));
        assert!(!dequantize(WeightType::Q8_0, &bytes, &mut fast));
    }

    /// Random codes with sane f16 scales, compared with decode-then-dot.
    #[test]
    fn four_row_kernels_match_decode_then_dot() {
        if !crate::kernels::Isa::detect().avx2() {
            crate::kernels::test_data::not_run(
                "rows_x86::four_row_kernels_match_decode_then_dot",
                "this CPU lacks AVX2/FMA/F16C",
            );
            return;
        }
        for (ty, cols) in DECODE_SHAPES {
            let k = kernel_for(ty).unwrap();
            let row_bytes = ty.row_bytes(cols).unwrap();
            let bytes = quant_rows(ty, 4, cols, 0x1234_5678 ^ ty as u32 ^ cols as u32);
            let x: std::vec::Vec<f32> = (0..cols)
                .map(|i| ((i * 29 % 23) as f32 - 11.0) / 3.0)
                .collect();
            let rows: [&[u8]; 4] = core::array::from_fn(|r| &bytes[r * row_bytes..][..row_bytes]);
            let fast = k.dot4(rows, &x);
            for r in 0..4 {
                let mut w = std::vec![0f32; cols];
                quant::dequantize(ty, rows[r], &mut w).unwrap();
                let want: f64 = w.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
                let mag: f64 = w
                    .iter()
                    .zip(&x)
                    .map(|(a, b)| (*a as f64 * *b as f64).abs())
                    .sum();
                assert!(
                    (fast[r] as f64 - want).abs() <= 1e-5 * mag.max(1.0),
                    "{ty:?} row {r}: {} vs {want}",
                    fast[r]
                );
            }
        }
    }
}
