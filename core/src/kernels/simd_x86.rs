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

/// Four weight rows against three activation spans: twelve dot products,
/// one accumulator each (seven loads per twelve FMAs); twelve
/// accumulators, three activations and one weight fill the sixteen
/// registers. Attention's score kernel: three keys against four heads.
#[target_feature(enable = "avx2,fma")]
pub fn dot4x3(x: [&[f32]; 3], w: [&[f32]; 4]) -> [[f32; 4]; 3] {
    let n = w
        .iter()
        .fold(x[0].len().min(x[1].len()).min(x[2].len()), |n, r| {
            n.min(r.len())
        });
    let px = [x[0].as_ptr(), x[1].as_ptr(), x[2].as_ptr()];
    let pw = [w[0].as_ptr(), w[1].as_ptr(), w[2].as_ptr(), w[3].as_ptr()];
    let mut acc = [[_mm256_setzero_ps(); 4]; 3];
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n, inside the three x spans and every w row.
        let xs = unsafe {
            [
                _mm256_loadu_ps(px[0].add(i)),
                _mm256_loadu_ps(px[1].add(i)),
                _mm256_loadu_ps(px[2].add(i)),
            ]
        };
        for r in 0..4 {
            // SAFETY: as above.
            let wr = unsafe { _mm256_loadu_ps(pw[r].add(i)) };
            for t in 0..3 {
                acc[t][r] = _mm256_fmadd_ps(xs[t], wr, acc[t][r]);
            }
        }
        i += 8;
    }
    let mut out = [[0f32; 4]; 3];
    for t in 0..3 {
        for r in 0..4 {
            let mut s = hsum(acc[t][r]);
            for j in i..n {
                s += x[t][j] * w[r][j];
            }
            out[t][r] = s;
        }
    }
    out
}

/// `acc[h] += sum_j w[j][h] * v[j]` for four accumulators at once: each
/// value row is loaded once for the four heads that share it (six loads per
/// eight FMAs, against three memory operations per FMA for four `axpy`s).
#[target_feature(enable = "avx2,fma")]
pub fn axpy4(mut acc: [&mut [f32]; 4], w: &[[f32; 4]], v: &[&[f32]]) {
    let keys = w.len().min(v.len());
    let (w, v) = (&w[..keys], &v[..keys]);
    let n = v
        .iter()
        .fold(acc.iter().map(|a| a.len()).min().unwrap_or(0), |n, r| {
            n.min(r.len())
        });
    let mut i = 0;
    {
        let pa = acc.each_mut().map(|a| a.as_mut_ptr());
        while i + 16 <= n {
            // SAFETY: i + 16 <= n, inside every accumulator and value row;
            // the accumulators are distinct exclusive borrows.
            unsafe {
                let mut a = [[_mm256_setzero_ps(); 2]; 4];
                for h in 0..4 {
                    a[h] = [
                        _mm256_loadu_ps(pa[h].add(i)),
                        _mm256_loadu_ps(pa[h].add(i + 8)),
                    ];
                }
                for (wj, vj) in w.iter().zip(v) {
                    let pv = vj.as_ptr();
                    let (x0, x1) = (_mm256_loadu_ps(pv.add(i)), _mm256_loadu_ps(pv.add(i + 8)));
                    for h in 0..4 {
                        let b = _mm256_set1_ps(wj[h]);
                        a[h][0] = _mm256_fmadd_ps(b, x0, a[h][0]);
                        a[h][1] = _mm256_fmadd_ps(b, x1, a[h][1]);
                    }
                }
                for h in 0..4 {
                    _mm256_storeu_ps(pa[h].add(i), a[h][0]);
                    _mm256_storeu_ps(pa[h].add(i + 8), a[h][1]);
                }
            }
            i += 16;
        }
    }
    for (h, a) in acc.iter_mut().enumerate() {
        for (wj, vj) in w.iter().zip(v) {
            for (x, &y) in a[i..n].iter_mut().zip(&vj[i..n]) {
                *x += wj[h] * y;
            }
        }
    }
}

/// `acc[i] += a * v[i]` over the common length.
#[target_feature(enable = "avx2,fma")]
pub fn axpy(acc: &mut [f32], a: f32, v: &[f32]) {
    let n = acc.len().min(v.len());
    let (pa, pv) = (acc.as_mut_ptr(), v.as_ptr());
    let av = _mm256_set1_ps(a);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n, inside both slices; acc is exclusively borrowed.
        unsafe {
            let r = _mm256_fmadd_ps(av, _mm256_loadu_ps(pv.add(i)), _mm256_loadu_ps(pa.add(i)));
            _mm256_storeu_ps(pa.add(i), r);
        }
        i += 8;
    }
    for j in i..n {
        acc[j] += a * v[j];
    }
}

/// Rows of a packed micro-panel: two AVX2 vectors.
const MR: usize = super::panel::PANEL_ROWS;
const _: () = assert!(
    MR == 16,
    "the panel kernels hold a micro-panel column in two 8-lane vectors"
);

/// [`super::ops::panel_dot`]: `T` tokens against one packed micro-panel of
/// sixteen rows. Each column step loads the panel's sixteen weights once
/// (two vectors) and broadcasts each token's activation, twelve FMAs into
/// twelve accumulators for six tokens: no horizontal sums, and the panel
/// stays in L1 while every token passes over it.
#[target_feature(enable = "avx2,fma")]
pub fn panel_dot<const T: usize>(x: [&[f32]; T], packed: &[f32]) -> [[f32; MR]; T] {
    let k_len = x.iter().fold(packed.len() / MR, |n, r| n.min(r.len()));
    let pp = packed.as_ptr();
    let mut px = [core::ptr::null::<f32>(); T];
    for (p, r) in px.iter_mut().zip(&x) {
        *p = r.as_ptr();
    }
    let mut acc = [[_mm256_setzero_ps(); 2]; T];
    for k in 0..k_len {
        // SAFETY: k < k_len <= packed.len() / 16, so 16k + 16 <= packed.len().
        let (w0, w1) = unsafe {
            (
                _mm256_loadu_ps(pp.add(MR * k)),
                _mm256_loadu_ps(pp.add(MR * k + 8)),
            )
        };
        for (a, p) in acc.iter_mut().zip(&px) {
            // SAFETY: k < k_len <= every x row's length.
            let b = unsafe { _mm256_broadcast_ss(&*p.add(k)) };
            a[0] = _mm256_fmadd_ps(b, w0, a[0]);
            a[1] = _mm256_fmadd_ps(b, w1, a[1]);
        }
    }
    let mut out = [[0f32; MR]; T];
    for (o, a) in out.iter_mut().zip(&acc) {
        // SAFETY: `o` holds sixteen f32s, two __m256.
        unsafe {
            _mm256_storeu_ps(o.as_mut_ptr(), a[0]);
            _mm256_storeu_ps(o.as_mut_ptr().add(8), a[1]);
        }
    }
    out
}

/// [`super::ops::pack_panel`] in AVX2: 8x8 transposes (unpack, shuffle,
/// lane permute) turn eight rows of eight columns into eight columns of
/// eight rows, two blocks per sixteen-row column group.
#[target_feature(enable = "avx2,fma")]
pub fn pack_panel(rows: &[f32], stride: usize, k_len: usize, dst: &mut [f32]) {
    let k_len = k_len.min(dst.len() / MR).min(stride);
    if rows.len() < (MR - 1) * stride + k_len {
        return super::panel::pack_panel_portable(rows, stride, k_len, dst);
    }
    let (ps, pd) = (rows.as_ptr(), dst.as_mut_ptr());
    let mut k = 0;
    while k + 8 <= k_len {
        for half in 0..2 {
            // SAFETY: row 8 * half + i ends at (15 * stride + k_len) at most,
            // inside `rows` (checked above), and k + 8 <= k_len.
            let r: [__m256; 8] = core::array::from_fn(|i| unsafe {
                _mm256_loadu_ps(ps.add((8 * half + i) * stride + k))
            });
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let t6 = _mm256_unpacklo_ps(r[6], r[7]);
            let t7 = _mm256_unpackhi_ps(r[6], r[7]);
            let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            let cols = [
                _mm256_permute2f128_ps::<0x20>(u0, u4),
                _mm256_permute2f128_ps::<0x20>(u1, u5),
                _mm256_permute2f128_ps::<0x20>(u2, u6),
                _mm256_permute2f128_ps::<0x20>(u3, u7),
                _mm256_permute2f128_ps::<0x31>(u0, u4),
                _mm256_permute2f128_ps::<0x31>(u1, u5),
                _mm256_permute2f128_ps::<0x31>(u2, u6),
                _mm256_permute2f128_ps::<0x31>(u3, u7),
            ];
            for (i, c) in cols.iter().enumerate() {
                // SAFETY: (k + i) * 16 + 8 * half + 8 <= k_len * 16 <= dst.len().
                unsafe { _mm256_storeu_ps(pd.add((k + i) * MR + 8 * half), *c) };
            }
        }
        k += 8;
    }
    for k in k..k_len {
        for j in 0..MR {
            dst[k * MR + j] = rows[j * stride + k];
        }
    }
}
