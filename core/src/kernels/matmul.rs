//! Matrix products straight on encoded weights.
//!
//! A batch (prefill) decodes the weight rows a block of columns at a time
//! onto the stack, packed sixteen rows together, and uses each packed block
//! against every activation row of the batch before the next is decoded.
//! So a prefill of `n` tokens decodes each weight once, not `n` times, and
//! no dequantized copy of a tensor ever exists. A single token (decode)
//! takes fused kernels that decode inside the dot product.

use super::ops::{pack_panel, panel_dot, PANEL_ROWS};
use super::{Arith, Isa, Precision, SharedOut};
use crate::exec::{split, Executor};
use crate::quant::{self, WeightType};
use crate::weights::{Encoding, Matrix};

/// Columns of a row decoded and packed at a time in the batch path: a
/// multiple of every block size, and small enough that a sixteen-row
/// micro-panel (16 KiB) stays in L1.
const KC: usize = 256;
/// Rows a task packs at a time (64 KiB of f32 on its stack with `KC`).
const PANEL_MAX_ROWS: usize = 64;
/// Tokens per microkernel call: six tokens by sixteen rows are twelve AVX2
/// accumulators, leaving room for two weight vectors and a broadcast.
const PANEL_TOKENS: usize = 6;

/// `out[b * w.rows + r] = dot(w.row(r), x[b * w.cols..(b + 1) * w.cols])`
/// for `b < n`, exact, on the best kernels this CPU has. `n` is clamped to
/// what `x` and `out` can hold.
pub fn matmul(exec: &dyn Executor, w: &Matrix, x: &[f32], n: usize, out: &mut [f32]) {
    matmul_with(exec, w, x, n, out, Arith::detect(Precision::Exact));
}

/// [`matmul`] with the given arithmetic.
pub fn matmul_with(
    exec: &dyn Executor,
    w: &Matrix,
    x: &[f32],
    n: usize,
    out: &mut [f32],
    arith: Arith,
) {
    let Arith { precision, isa } = arith;
    let (rows, cols) = (w.rows, w.cols);
    if rows == 0 || cols == 0 {
        return;
    }
    let n = n.min(x.len() / cols).min(out.len() / rows);
    let out = &mut out[..n * rows];
    match w.enc {
        Encoding::Ggml(ty) => {
            #[cfg(target_arch = "x86_64")]
            if n == 1 && precision == Precision::Fast && cols % super::fixed16::BLOCK == 0 {
                if let Some(kernel) = fixed16_rows(isa, ty) {
                    matvec_fixed16(exec, w, &x[..cols], out, kernel);
                    return;
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = (precision, isa);
            #[cfg(target_arch = "x86_64")]
            if n == 1 {
                if let Some(kernel) = fused_rows(isa, ty) {
                    matvec_fused(exec, w, &x[..cols], out, kernel);
                    return;
                }
            }
            let (block, block_bytes) = (ty.block_elems(), ty.block_bytes());
            packed_matmul(exec, isa, w, x, n, out, &|r, start, dst: &mut [f32]| {
                let len = dst.len();
                let (b0, b1) = (
                    start / block * block_bytes,
                    (start + len) / block * block_bytes,
                );
                match w.row(r).get(b0..b1) {
                    Some(src) if fast_dequantize(isa, ty, src, dst) => {}
                    Some(src) if quant::dequantize(ty, src, dst).is_ok() => {}
                    _ => dst.fill(0.0),
                }
            });
        }
        Encoding::Gemma(_) => {
            packed_matmul(exec, isa, w, x, n, out, &|r, start, dst: &mut [f32]| {
                w.decode_span(r, start, dst);
            });
        }
    }
}

/// The batch path: `decode(r, c0, dst)` fills `dst` with row `r`'s
/// elements from column `c0` (zeros if it cannot). Generic so each encoding
/// gets its own loop and the encoding is matched once per product.
///
/// Each task owns a range of rows. It decodes a panel of up to
/// [`PANEL_MAX_ROWS`] rows, [`KC`] columns at a time, and packs it into
/// micro-panels of sixteen rows stored column by column (64 KiB on the
/// task's stack, plus 16 KiB for sixteen decoded rows: an executor's
/// threads need that much stack). Then every token of the batch passes
/// over it, six tokens per [`panel_dot`] call, whose sixteen-row
/// micro-panel (16 KiB) stays in L1 the whole time. So each weight is
/// decoded once per product, each activation is loaded once per panel of
/// rows, and each output is written once per `KC` columns.
fn packed_matmul<D: Fn(usize, usize, &mut [f32]) + Sync>(
    exec: &dyn Executor,
    isa: Isa,
    w: &Matrix,
    x: &[f32],
    n: usize,
    out: &mut [f32],
    decode: &D,
) {
    const MR: usize = PANEL_ROWS;
    let (rows, cols) = (w.rows, w.cols);
    let shared = SharedOut::new(out);
    let groups = rows.div_ceil(MR);
    let (tasks, per_task) = split(groups, exec.threads(), 8, 1);
    exec.run(tasks, &|task| {
        let mut packed = [0f32; PANEL_MAX_ROWS * KC];
        let mut rows16 = [0f32; PANEL_ROWS * KC];
        let lo = (task * per_task * MR).min(rows);
        let hi = ((task + 1) * per_task * MR).min(rows);
        let mut p0 = lo;
        while p0 < hi {
            let p1 = (p0 + PANEL_MAX_ROWS).min(hi);
            let micro = (p1 - p0).div_ceil(MR);
            let mut k0 = 0;
            while k0 < cols {
                let kc = KC.min(cols - k0);
                // Decode sixteen rows at a time, then pack them column by
                // column; rows past p1 in the last micro-panel are zeros.
                for g in 0..micro {
                    for j in 0..MR {
                        let dst = &mut rows16[j * KC..][..kc];
                        let r = p0 + g * MR + j;
                        if r < p1 {
                            decode(r, k0, dst);
                        } else {
                            dst.fill(0.0);
                        }
                    }
                    pack_panel(isa, &rows16, KC, kc, &mut packed[g * KC * MR..][..kc * MR]);
                }
                // SAFETY (for `put`): this task owns rows [lo, hi) and tasks
                // cover disjoint row ranges, so the outputs of token t in
                // rows [r0, r0 + 16) ∩ [lo, hi) are written by this task alone.
                let put = |token: usize, r0: usize, sums: &[f32; MR]| {
                    let len = (p1 - r0).min(MR);
                    // SAFETY: see above.
                    let dst = unsafe { shared.slice(token * rows + r0, len) };
                    if k0 == 0 {
                        dst.copy_from_slice(&sums[..dst.len()]);
                    } else {
                        dst.iter_mut().zip(sums).for_each(|(d, s)| *d += s);
                    }
                };
                // Token t's activations in this column block.
                let span = |t: usize| &x[t * cols + k0..][..kc];
                let mut b = 0;
                while b < n {
                    let tn = PANEL_TOKENS.min(n - b);
                    for g in 0..micro {
                        let panel = &packed[g * KC * MR..][..kc * MR];
                        let r0 = p0 + g * MR;
                        let emit = |sums: &[[f32; MR]]| {
                            for (t, s) in sums.iter().enumerate() {
                                put(b + t, r0, s);
                            }
                        };
                        match tn {
                            6 => emit(&tokens_dot::<6, _>(isa, span, b, panel)),
                            5 => emit(&tokens_dot::<5, _>(isa, span, b, panel)),
                            4 => emit(&tokens_dot::<4, _>(isa, span, b, panel)),
                            3 => emit(&tokens_dot::<3, _>(isa, span, b, panel)),
                            2 => emit(&tokens_dot::<2, _>(isa, span, b, panel)),
                            _ => emit(&tokens_dot::<1, _>(isa, span, b, panel)),
                        }
                    }
                    b += tn;
                }
                k0 += kc;
            }
            p0 = p1;
        }
    });
}

/// Tokens `b..b + T` (their activations given by `span`) against one
/// packed micro-panel: `T` rows of sixteen sums. Generic over `span` and
/// always inlined: it is the innermost loop's body, and as a call, or with
/// `span` behind `dyn`, prefill ran 2% more instructions.
#[inline(always)]
fn tokens_dot<'x, const T: usize, S: Fn(usize) -> &'x [f32]>(
    isa: Isa,
    span: S,
    b: usize,
    panel: &[f32],
) -> [[f32; PANEL_ROWS]; T] {
    panel_dot(isa, core::array::from_fn::<_, T, _>(|t| span(b + t)), panel)
}

/// Decodes `src` into `dst` with a SIMD decoder where this CPU and format
/// have one (the same values as `quant::dequantize`); false otherwise.
fn fast_dequantize(isa: Isa, ty: WeightType, src: &[u8], dst: &mut [f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if isa.avx2() {
        return super::rows_x86::dequantize(ty, src, dst);
    }
    let _ = (isa, ty, src, dst);
    false
}

/// The fused four-row kernel for `ty` on this CPU, if there is one.
/// Decoding inside the dot (no span buffer) is what a single token wants:
/// every weight is touched once, straight from memory.
#[cfg(target_arch = "x86_64")]
fn fused_rows(isa: Isa, ty: WeightType) -> Option<super::rows_x86::Rows4> {
    if isa.avx2() {
        super::rows_x86::kernel_for(ty)
    } else {
        None
    }
}

/// `out[r] = dot(w.row(r), x)` with a fused kernel, four rows at a time,
/// row ranges split across tasks.
#[cfg(target_arch = "x86_64")]
fn matvec_fused(
    exec: &dyn Executor,
    w: &Matrix,
    x: &[f32],
    out: &mut [f32],
    kernel: super::rows_x86::Rows4,
) {
    by_row_quads(exec, w.rows, out, false, &|r| {
        kernel.dot4(r.map(|r| w.row(r)), x)
    });
}

/// Fills (or, with `add`, adds to) `out[r]` for every row `r < rows` with
/// `dot4(rows)`, four rows per call, row ranges split across tasks in
/// multiples of four. A ragged tail repeats its last row; the extra sums
/// are dropped.
#[cfg(target_arch = "x86_64")]
fn by_row_quads(
    exec: &dyn Executor,
    rows: usize,
    out: &mut [f32],
    add: bool,
    dot4: &(dyn Fn([usize; 4]) -> [f32; 4] + Sync),
) {
    let shared = SharedOut::new(out);
    let quads = rows.div_ceil(4);
    let (tasks, per_task) = split(quads, exec.threads(), 8, 4);
    exec.run(tasks, &|t| {
        let start = (t * per_task * 4).min(rows);
        let end = ((t + 1) * per_task * 4).min(rows);
        // SAFETY: tasks own disjoint row ranges [start, end).
        let dst = unsafe { shared.slice(start, end - start) };
        let mut r = start;
        while r < end {
            let sums = dot4(core::array::from_fn(|k| (r + k).min(end - 1)));
            let n = (end - r).min(4);
            for (d, s) in dst[r - start..r - start + n].iter_mut().zip(&sums) {
                *d = if add { *d + *s } else { *s };
            }
            r += 4;
        }
    });
}

/// The fixed-point four-row kernel for `ty` on this CPU, if there is one.
#[cfg(target_arch = "x86_64")]
fn fixed16_rows(isa: Isa, ty: WeightType) -> Option<super::rows_x86_fixed16::Rows4Fixed16> {
    if isa.avx2() {
        super::rows_x86_fixed16::kernel_for(ty)
    } else {
        None
    }
}

/// Columns quantized at a time on the stack (8 KiB of codes): a multiple of
/// every block size. Wider matrices go through in column chunks, each
/// chunk's sums added to the last.
#[cfg(target_arch = "x86_64")]
const FIXED16_CHUNK: usize = 4096;

/// `out[r] = dot(w.row(r), x)` with activations in 16-bit fixed point
/// ([`super::fixed16`]), four rows at a time, row ranges split across
/// tasks. `x.len()` is a multiple of the activation block.
#[cfg(target_arch = "x86_64")]
fn matvec_fixed16(
    exec: &dyn Executor,
    w: &Matrix,
    x: &[f32],
    out: &mut [f32],
    kernel: super::rows_x86_fixed16::Rows4Fixed16,
) {
    use super::fixed16::{quantize, Fixed16, BLOCK};
    let rows = w.rows;
    let mut q = [0i16; FIXED16_CHUNK];
    let mut scale = [0f32; FIXED16_CHUNK / BLOCK];
    let mut sum = [0f32; FIXED16_CHUNK / BLOCK];
    let (be, bb) = (kernel.block_elems(), kernel.block_bytes());
    let mut c0 = 0;
    while c0 < x.len() {
        let c1 = (c0 + FIXED16_CHUNK).min(x.len());
        let len = c1 - c0;
        if !quantize(&x[c0..c1], &mut q[..len], &mut scale, &mut sum) {
            out.fill(f32::NAN);
            return;
        }
        let act = Fixed16 {
            q: &q[..len],
            scale: &scale[..len / BLOCK],
            sum: &sum[..len / BLOCK],
        };
        // Byte range of this chunk in every row; a partial weight block at
        // the end of a row is not read (as in the exact kernels).
        let (b0, b1) = (c0 / be * bb, c1.div_ceil(be) * bb);
        by_row_quads(exec, rows, out, c0 > 0, &|r| {
            let part = |r: usize| {
                let row = w.row(r);
                row.get(b0..b1.min(row.len())).unwrap_or(&[])
            };
            kernel.dot4(r.map(part), &act)
        });
        c0 = c1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::Serial;

    fn exact_on(isa: Isa) -> Arith {
        Arith {
            precision: Precision::Exact,
            isa,
        }
    }

    /// The SIMD instruction set to test, or `None` (reported as not run).
    fn simd(test: &str) -> Option<Isa> {
        match Isa::detect() {
            Isa::Portable => {
                crate::kernels::test_data::not_run(test, "this CPU lacks AVX2/FMA/F16C");
                None
            }
            isa => Some(isa),
        }
    }

    #[test]
    fn fused_single_token_kernels_match_the_portable_path() {
        let Some(simd) = simd("matmul::fused_single_token_kernels_match_the_portable_path") else {
            return;
        };
        // Nine rows: two whole groups of four and a ragged one.
        let (rows, cols) = (9usize, 512usize);
        for ty in [
            WeightType::Q8_0,
            WeightType::Q5_0,
            WeightType::Q4K,
            WeightType::Q6K,
        ] {
            let bytes = crate::kernels::test_data::quant_rows(ty, rows, cols, 0x9e37_79b9);
            let bytes = &bytes[..];
            let m = Matrix::new(ty, rows, cols, bytes).unwrap();
            let x: [f32; 512] = core::array::from_fn(|i| ((i * 29 % 23) as f32 - 11.0) / 3.0);
            let mut fast = [0f32; 9];
            let mut portable = [0f32; 9];
            matmul_with(&Serial, &m, &x, 1, &mut fast, exact_on(simd));
            matmul_with(&Serial, &m, &x, 1, &mut portable, exact_on(Isa::Portable));
            for (a, b) in fast.iter().zip(&portable) {
                assert!(
                    (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                    "{ty:?}: {a} vs {b}"
                );
            }
        }
    }

    /// The fast precision over a ragged row count and more columns than one
    /// quantization chunk, against the exact path.
    #[test]
    fn fast_precision_matches_exact_across_chunks_and_ragged_rows() {
        let Some(simd) = simd("matmul::fast_precision_matches_exact_across_chunks_and_ragged_rows")
        else {
            return;
        };
        let (rows, cols) = (9usize, 4608usize);
        for ty in [
            WeightType::Q8_0,
            WeightType::Q5_0,
            WeightType::Q4K,
            WeightType::Q6K,
        ] {
            let bytes = crate::kernels::test_data::quant_rows(ty, rows, cols, 0x2545_f491);
            let m = Matrix::new(ty, rows, cols, &bytes).unwrap();
            let x: std::vec::Vec<f32> = (0..cols)
                .map(|i| ((i * 29 % 23) as f32 - 11.0) / 3.0)
                .collect();
            let (mut fast, mut exact) = ([0f32; 9], [0f32; 9]);
            let fast_arith = Arith {
                precision: Precision::Fast,
                isa: simd,
            };
            matmul_with(&Serial, &m, &x, 1, &mut fast, fast_arith);
            matmul_with(&Serial, &m, &x, 1, &mut exact, exact_on(simd));
            let mut w = std::vec![0f32; cols];
            for r in 0..rows {
                quant::dequantize(ty, m.row(r), &mut w).unwrap();
                // Half a quantization step per activation, times |w|.
                let step = 11.0 / 3.0 / 32767.0;
                let bound: f32 = w.iter().map(|v| v.abs() * step * 0.5).sum::<f32>() * 1.05
                    + 1e-4 * exact[r].abs().max(1.0);
                assert!(
                    (fast[r] - exact[r]).abs() <= bound,
                    "{ty:?} row {r}: fast {} vs exact {} (bound {bound})",
                    fast[r],
                    exact[r]
                );
            }
        }
    }

    #[test]
    fn f32_matmul_matches_naive_product() {
        let (rows, cols, n) = (7usize, 600usize, 3usize);
        let w: [f32; 4200] = core::array::from_fn(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0);
        let mut bytes = [0u8; 4200 * 4];
        for (i, v) in w.iter().enumerate() {
            bytes[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        let m = Matrix::new(WeightType::F32, rows, cols, &bytes).unwrap();
        let x: [f32; 1800] = core::array::from_fn(|i| ((i * 13 % 29) as f32 - 14.0) / 10.0);
        let mut out = [0f32; 21];
        matmul(&Serial, &m, &x, n, &mut out);
        for b in 0..n {
            for r in 0..rows {
                let want: f64 = (0..cols)
                    .map(|c| w[r * cols + c] as f64 * x[b * cols + c] as f64)
                    .sum();
                assert!(
                    (out[b * rows + r] as f64 - want).abs() < 1e-3,
                    "b={b} r={r}"
                );
            }
        }
    }

    /// Two panels (64 rows, then 6 in a ragged micro-panel), column blocks
    /// with a partial last one, and token counts that reach every kernel
    /// width (1 to 6) and a second group of six.
    #[test]
    fn batch_path_matches_naive_product_across_panels() {
        for cols in [600, KC * 4 + 88] {
            let rows = 70;
            let w: std::vec::Vec<f32> = (0..rows * cols)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
                .collect();
            let bytes: std::vec::Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
            let m = Matrix::new(WeightType::F32, rows, cols, &bytes).unwrap();
            for n in [1usize, 2, 3, 4, 5, 6, 7, 13] {
                let x: std::vec::Vec<f32> = (0..n * cols)
                    .map(|i| ((i * 13 % 29) as f32 - 14.0) / 10.0)
                    .collect();
                let mut out = std::vec![f32::NAN; n * rows];
                matmul(&Serial, &m, &x, n, &mut out);
                for b in 0..n {
                    for r in 0..rows {
                        let want: f64 = (0..cols)
                            .map(|c| w[r * cols + c] as f64 * x[b * cols + c] as f64)
                            .sum();
                        assert!(
                            (out[b * rows + r] as f64 - want).abs() < 1e-3,
                            "cols={cols} n={n} b={b} r={r}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn simd_and_portable_paths_agree_on_quantized_weights() {
        let Some(simd) = simd("matmul::simd_and_portable_paths_agree_on_quantized_weights") else {
            return;
        };
        // Q8_0 rows with varied scales; 5 rows x 96 columns, 3 activation rows.
        let (rows, cols, n) = (5usize, 96usize, 3usize);
        let mut bytes = [0u8; 5 * 3 * 34];
        for (b, block) in bytes.chunks_exact_mut(34).enumerate() {
            let scale = half::f16::from_f32(0.01 * (b as f32 + 1.0));
            block[..2].copy_from_slice(&scale.to_bits().to_le_bytes());
            for (i, q) in block[2..].iter_mut().enumerate() {
                *q = ((i * 7 + b * 13) % 255) as u8;
            }
        }
        let m = Matrix::new(WeightType::Q8_0, rows, cols, &bytes).unwrap();
        let x: [f32; 288] = core::array::from_fn(|i| ((i * 31 % 17) as f32 - 8.0) / 4.0);
        let mut fast = [0f32; 15];
        let mut portable = [0f32; 15];
        matmul_with(&Serial, &m, &x, n, &mut fast, exact_on(simd));
        matmul_with(&Serial, &m, &x, n, &mut portable, exact_on(Isa::Portable));
        for (a, b) in fast.iter().zip(&portable) {
            assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{a} vs {b}");
        }
    }

    #[test]
    fn gemma_stream_views_match_naive_products() {
        use crate::codec::{self, Codec};
        // A [heads * m, hd] stream read head-major as [m, heads * hd], and a
        // row range of a [rows, cols] stream, both BF16 with a scale.
        let (heads, m, hd) = (3usize, 5usize, 8usize);
        let vals: [f32; 120] = core::array::from_fn(|i| ((i * 37 % 53) as f32 - 26.0) / 8.0);
        let mut bytes = [0u8; 240];
        codec::encode(Codec::BF16, &vals, &mut bytes, &mut []).unwrap();
        let dec = |i: usize| half::bf16::from_f32(vals[i]).to_f32() * 0.5;
        let full = Matrix::gemma(Codec::BF16, heads * m, hd, 0.5, &bytes).unwrap();
        let o = full.head_major(heads).unwrap();
        let x: [f32; 24] = core::array::from_fn(|i| (i as f32 - 12.0) / 7.0);
        let mut out = [0f32; 5];
        matmul(&Serial, &o, &x, 1, &mut out);
        for (r, got) in out.iter().enumerate() {
            let want: f32 = (0..heads * hd)
                .map(|c| dec(((c / hd) * m + r) * hd + c % hd) * x[c])
                .sum();
            assert!(
                (got - want).abs() < 1e-3,
                "head-major row {r}: {got} vs {want}"
            );
        }
        let part = full.rows_view(4, 6).unwrap();
        let mut out = [0f32; 12];
        matmul(&Serial, &part, &x[..16], 2, &mut out);
        for b in 0..2 {
            for r in 0..6 {
                let want: f32 = (0..hd).map(|c| dec((4 + r) * hd + c) * x[b * hd + c]).sum();
                let got = out[b * 6 + r];
                assert!(
                    (got - want).abs() < 1e-3,
                    "rows view b={b} r={r}: {got} vs {want}"
                );
            }
        }
        assert!(full.rows_view(10, 6).is_none());
        assert!(o.rows_view(0, 1).is_none());
    }
}
