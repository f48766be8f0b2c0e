//! Matrix products straight on encoded weights.
//!
//! Rows of the weight matrix are decoded a span at a time onto the stack,
//! four rows together, and each decoded span is used against every
//! activation row of the batch before the next is decoded. So a prefill of
//! `n` tokens decodes each weight once, not `n` times, and no dequantized
//! copy of a tensor ever exists.

use super::ops::{dot4, dot4x2, dot4x3};
use super::{Precision, SharedOut};
use crate::exec::{split, Executor};
use crate::model::weights::{Encoding, Matrix};
use crate::quant::{self, WeightType};

/// Longest span of a row decoded at a time in the batch path; a multiple of
/// every block size. Rows up to this long are decoded whole, so each output
/// is written once rather than summed over spans.
const MAX_SPAN: usize = 1024;
/// The batch path's decode buffer per task, in f32 (64 KiB): a panel of
/// `PANEL_FLOATS / span` rows (16 to 64 of them).
const PANEL_FLOATS: usize = 16 * 1024;
/// Rows decoded together so each activation load serves several rows.
const TILE: usize = 4;

/// `out[b * w.rows + r] = dot(w.row(r), x[b * w.cols..(b + 1) * w.cols])`
/// for `b < n`. `n` is clamped to what `x` and `out` can hold.
pub fn matmul(exec: &dyn Executor, w: &Matrix, x: &[f32], n: usize, out: &mut [f32]) {
    matmul_with(exec, w, x, n, out, Precision::Exact);
}

/// [`matmul`] at the given precision.
pub fn matmul_with(
    exec: &dyn Executor,
    w: &Matrix,
    x: &[f32],
    n: usize,
    out: &mut [f32],
    precision: Precision,
) {
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
                if let Some(kernel) = fixed16_rows(ty) {
                    matvec_fixed16(exec, w, &x[..cols], out, kernel);
                    return;
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = precision;
            #[cfg(target_arch = "x86_64")]
            if n == 1 {
                if let Some(kernel) = fused_rows(ty) {
                    matvec_fused(exec, w, &x[..cols], out, kernel);
                    return;
                }
            }
            let (block, block_bytes) = (ty.block_elems(), ty.block_bytes());
            span_matmul(exec, w, x, n, out, &|r, start, dst: &mut [f32]| {
                let len = dst.len();
                let (b0, b1) = (
                    start / block * block_bytes,
                    (start + len) / block * block_bytes,
                );
                match w.row(r).get(b0..b1) {
                    Some(src) if fast_dequantize(ty, src, dst) => {}
                    Some(src) if quant::dequantize(ty, src, dst).is_ok() => {}
                    _ => dst.fill(0.0),
                }
            });
        }
        Encoding::Gemma(_) => {
            span_matmul(exec, w, x, n, out, &|r, start, dst: &mut [f32]| {
                w.decode_span(r, start, dst);
            });
        }
    }
}

/// The batch path: `decode(r, c0, dst)` fills `dst` with row `r`'s
/// elements from column `c0` (zeros if it cannot). Generic so each encoding
/// gets its own loop and the encoding is matched once per product.
///
/// Each task decodes a panel of rows, a span of columns at a time (the
/// whole row when it is at most [`MAX_SPAN`] long; 64 KiB of f32 on the
/// task's stack, which stays in L2), and runs every token of the batch
/// against it, three tokens by four rows at a time. So the activations
/// stream through the cache once per panel rather than once per four rows,
/// and each output is stored once per span, not once per four rows.
fn span_matmul<D: Fn(usize, usize, &mut [f32]) + Sync>(
    exec: &dyn Executor,
    w: &Matrix,
    x: &[f32],
    n: usize,
    out: &mut [f32],
    decode: &D,
) {
    let (rows, cols) = (w.rows, w.cols);
    let span_len = cols.min(MAX_SPAN);
    let panel = (PANEL_FLOATS / span_len / TILE * TILE).clamp(TILE, 64);
    let shared = SharedOut::new(out);
    let tiles = rows.div_ceil(TILE);
    let (tasks, per_task) = split(tiles, exec.threads(), 8, 1);
    exec.run(tasks, &|t| {
        let mut buf = [0f32; PANEL_FLOATS];
        let first = t * per_task;
        let (lo, hi) = (
            (first * TILE).min(rows),
            ((first + per_task) * TILE).min(rows),
        );
        let mut p0 = lo;
        while p0 < hi {
            let p1 = (p0 + panel).min(hi);
            let mut start = 0;
            while start < cols {
                let len = span_len.min(cols - start);
                // Rows past p1 up to the next multiple of four are zeros, so
                // a ragged last tile adds nothing.
                for (k, dst) in buf
                    .chunks_exact_mut(span_len)
                    .enumerate()
                    .take((p1 - p0).div_ceil(TILE) * TILE)
                {
                    let dst = &mut dst[..len];
                    if p0 + k < p1 {
                        decode(p0 + k, start, dst);
                    } else {
                        dst.fill(0.0);
                    }
                }
                let span = |b: usize| &x[b * cols + start..b * cols + start + len];
                // SAFETY (for every `shared.add` below): this task owns rows
                // [lo, hi) and tasks cover disjoint row ranges, so index
                // token * rows + row, with row in [lo, hi), is written by
                // this task alone.
                let put = |token: usize, r0: usize, d: &[f32; 4]| {
                    for (k, v) in d.iter().enumerate().take(p1.min(r0 + TILE) - r0) {
                        let i = token * rows + r0 + k;
                        // SAFETY: see above.
                        unsafe {
                            if start == 0 {
                                shared.set(i, *v);
                            } else {
                                shared.add(i, *v);
                            }
                        }
                    }
                };
                let tile_rows = |tile: usize| {
                    let row = |k: usize| &buf[(tile - p0 + k) * span_len..][..len];
                    [row(0), row(1), row(2), row(3)]
                };
                // Tokens outside, tiles inside: three tokens' spans stay in
                // L1 while the panel streams from L2.
                let mut b = 0;
                while b + 3 <= n {
                    let xs = [span(b), span(b + 1), span(b + 2)];
                    for tile in (p0..p1).step_by(TILE) {
                        let d = dot4x3(xs, tile_rows(tile));
                        for (dt, token) in d.iter().zip(b..) {
                            put(token, tile, dt);
                        }
                    }
                    b += 3;
                }
                if b + 2 <= n {
                    for tile in (p0..p1).step_by(TILE) {
                        let d = dot4x2([span(b), span(b + 1)], tile_rows(tile));
                        for (dt, token) in d.iter().zip(b..) {
                            put(token, tile, dt);
                        }
                    }
                    b += 2;
                }
                if b < n {
                    for tile in (p0..p1).step_by(TILE) {
                        put(b, tile, &dot4(span(b), tile_rows(tile)));
                    }
                }
                start += len;
            }
            p0 = p1;
        }
    });
}

/// Decodes `src` into `dst` with a SIMD decoder where this CPU and format
/// have one (the same values as `quant::dequantize`); false otherwise.
fn fast_dequantize(ty: WeightType, src: &[u8], dst: &mut [f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if super::cpu::has_avx2_fma() {
        return super::rows_x86::dequantize(ty, src, dst);
    }
    let _ = (ty, src, dst);
    false
}

/// The fused four-row kernel for `ty` on this CPU, if there is one.
/// Decoding inside the dot (no span buffer) is what a single token wants:
/// every weight is touched once, straight from memory.
#[cfg(target_arch = "x86_64")]
fn fused_rows(ty: WeightType) -> Option<super::rows_x86::Rows4> {
    if super::cpu::has_avx2_fma() {
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
fn fixed16_rows(ty: WeightType) -> Option<super::rows_x86_fixed16::Rows4Fixed16> {
    if super::cpu::has_avx2_fma() {
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

    #[test]
    fn fused_single_token_kernels_match_the_portable_path() {
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
            crate::kernels::cpu::force_portable(false);
            matmul(&Serial, &m, &x, 1, &mut fast);
            crate::kernels::cpu::force_portable(true);
            matmul(&Serial, &m, &x, 1, &mut portable);
            crate::kernels::cpu::force_portable(false);
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
        if !crate::kernels::cpu::has_avx2_fma() {
            std::eprintln!("NOT RUN: this CPU lacks AVX2/FMA/F16C");
            return;
        }
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
            matmul_with(&Serial, &m, &x, 1, &mut fast, Precision::Fast);
            matmul_with(&Serial, &m, &x, 1, &mut exact, Precision::Exact);
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

    /// Several panels, a ragged last tile, a partial span and a token
    /// count that exercises the three-, two- and one-token kernels.
    #[test]
    fn batch_path_matches_naive_product_across_panels() {
        // Whole-row spans (600 columns: panels of 24 rows) and split rows
        // (two spans: panels of 8 rows); 70 rows end in a ragged tile.
        for cols in [600, MAX_SPAN + 88] {
            let rows = 70;
            let w: std::vec::Vec<f32> = (0..rows * cols)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
                .collect();
            let bytes: std::vec::Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
            let m = Matrix::new(WeightType::F32, rows, cols, &bytes).unwrap();
            for n in [1usize, 2, 3, 4, 5, 6] {
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
        crate::kernels::cpu::force_portable(false);
        matmul(&Serial, &m, &x, n, &mut fast);
        crate::kernels::cpu::force_portable(true);
        matmul(&Serial, &m, &x, n, &mut portable);
        crate::kernels::cpu::force_portable(false);
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
