//! AVX2+FMA versions of the hottest dot products. Each must give the same
//! result as its portable twin in `ops.rs` up to float rounding; the tests
//! compare them.

use core::arch::x86_64::*;

/// Horizontal sum of eight lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps::<1>(v);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
    _mm_cvtss_f32(s)
}

/// `dot(a, b)` over the common length.
#[target_feature(enable = "avx2,fma")]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            // SAFETY: i + 8k + 8 <= i + 32 <= n, inside both slices.
            let (x, y) = unsafe {
                (
                    _mm256_loadu_ps(pa.add(i + 8 * k)),
                    _mm256_loadu_ps(pb.add(i + 8 * k)),
                )
            };
            *acc = _mm256_fmadd_ps(x, y, *acc);
        }
        i += 32;
    }
    while i + 8 <= n {
        // SAFETY: i + 8 <= n, inside both slices.
        let (x, y) = unsafe { (_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i))) };
        acc[0] = _mm256_fmadd_ps(x, y, acc[0]);
        i += 8;
    }
    let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut sum = hsum(v);
    for j in i..n {
        sum += a[j] * b[j];
    }
    sum
}

/// Four dot products sharing the activation span `x`.
#[target_feature(enable = "avx2,fma")]
pub fn dot4(x: &[f32], w: [&[f32]; 4]) -> [f32; 4] {
    let n = w.iter().fold(x.len(), |n, r| n.min(r.len()));
    let px = x.as_ptr();
    let pw = [w[0].as_ptr(), w[1].as_ptr(), w[2].as_ptr(), w[3].as_ptr()];
    // Two accumulators per row: eight independent FMA chains hide latency.
    let mut acc = [[_mm256_setzero_ps(); 2]; 4];
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: i + 16 <= n, inside x and every w row.
        let (x0, x1) = unsafe { (_mm256_loadu_ps(px.add(i)), _mm256_loadu_ps(px.add(i + 8))) };
        for r in 0..4 {
            // SAFETY: as above.
            let (w0, w1) = unsafe {
                (
                    _mm256_loadu_ps(pw[r].add(i)),
                    _mm256_loadu_ps(pw[r].add(i + 8)),
                )
            };
            acc[r][0] = _mm256_fmadd_ps(x0, w0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(x1, w1, acc[r][1]);
        }
        i += 16;
    }
    let mut out = [0f32; 4];
    for r in 0..4 {
        let mut s = hsum(_mm256_add_ps(acc[r][0], acc[r][1]));
        for j in i..n {
            s += x[j] * w[r][j];
        }
        out[r] = s;
    }
    out
}

/// An f16 scale from its little-endian bytes, through F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn f16_scale(lo: u8, hi: u8) -> f32 {
    let bits = u16::from_le_bytes([lo, hi]) as i32;
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits)))
}

/// `sum_i q[i] * x[i]` for 32 signed 8-bit codes against 32 activations,
/// left as eight partial sums.
///
/// # Safety
/// `x` must point to 32 readable f32s.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn codes_dot(q: __m256i, x: *const f32) -> __m256 {
    let lo = _mm256_castsi256_si128(q);
    let hi = _mm256_extracti128_si256::<1>(q);
    let f0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
    let f1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128::<8>(lo)));
    let f2 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
    let f3 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128::<8>(hi)));
    // SAFETY: the caller guarantees 32 readable floats at x.
    unsafe {
        let s = _mm256_mul_ps(f0, _mm256_loadu_ps(x));
        let s = _mm256_fmadd_ps(f1, _mm256_loadu_ps(x.add(8)), s);
        let s = _mm256_fmadd_ps(f2, _mm256_loadu_ps(x.add(16)), s);
        _mm256_fmadd_ps(f3, _mm256_loadu_ps(x.add(24)), s)
    }
}

/// Fused decode-and-dot of a Q8_0 row (34-byte blocks: f16 scale, 32 i8
/// codes) with `x`, over the whole blocks both hold.
#[target_feature(enable = "avx2,fma,f16c")]
pub fn dot_q8_0(row: &[u8], x: &[f32]) -> f32 {
    let blocks = (row.len() / 34).min(x.len() / 32);
    let mut acc = [_mm256_setzero_ps(); 2];
    for b in 0..blocks {
        let blk = &row[b * 34..b * 34 + 34];
        let d = f16_scale(blk[0], blk[1]);
        // SAFETY: blk has 34 bytes, so 32 are readable from offset 2, and x
        // holds 32 floats from b * 32 (blocks <= x.len() / 32).
        let s = unsafe {
            let q = _mm256_loadu_si256(blk.as_ptr().add(2) as *const __m256i);
            codes_dot(q, x.as_ptr().add(b * 32))
        };
        acc[b & 1] = _mm256_fmadd_ps(_mm256_set1_ps(d), s, acc[b & 1]);
    }
    hsum(_mm256_add_ps(acc[0], acc[1]))
}

/// Fused decode-and-dot of a Q5_0 row (22-byte blocks: f16 scale, 32 fifth
/// bits, 16 bytes of nibbles; codes centred on 16) with `x`.
#[target_feature(enable = "avx2,fma,f16c")]
pub fn dot_q5_0(row: &[u8], x: &[f32]) -> f32 {
    let blocks = (row.len() / 22).min(x.len() / 32);
    // Byte k of the spread word tests bit k % 8 of qh byte k / 8.
    let spread = _mm256_setr_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3,
        3, 3,
    );
    let bit_of_byte = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let low4 = _mm_set1_epi8(0x0F);
    let mut acc = [_mm256_setzero_ps(); 2];
    for b in 0..blocks {
        let blk = &row[b * 22..b * 22 + 22];
        let d = f16_scale(blk[0], blk[1]);
        let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
        let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(qh as i32), spread);
        let set = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit_of_byte), bit_of_byte);
        let fifth = _mm256_and_si256(set, _mm256_set1_epi8(0x10));
        // SAFETY: blk has 22 bytes, so 16 are readable from offset 6.
        let qs = unsafe { _mm_loadu_si128(blk.as_ptr().add(6) as *const __m128i) };
        let lo = _mm_and_si128(qs, low4);
        let hi = _mm_and_si128(_mm_srli_epi16::<4>(qs), low4);
        let nibbles = _mm256_set_m128i(hi, lo);
        let q = _mm256_sub_epi8(_mm256_or_si256(nibbles, fifth), _mm256_set1_epi8(16));
        // SAFETY: x holds 32 floats from b * 32 (blocks <= x.len() / 32).
        let s = unsafe { codes_dot(q, x.as_ptr().add(b * 32)) };
        acc[b & 1] = _mm256_fmadd_ps(_mm256_set1_ps(d), s, acc[b & 1]);
    }
    hsum(_mm256_add_ps(acc[0], acc[1]))
}
