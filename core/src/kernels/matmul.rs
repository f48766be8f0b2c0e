//! Matrix products straight on encoded weights.
//!
//! Rows of the weight matrix are decoded a span at a time onto the stack,
//! four rows together, and each decoded span is used against every
//! activation row of the batch before the next is decoded. So a prefill of
//! `n` tokens decodes each weight once, not `n` times, and no dequantized
//! copy of a tensor ever exists.

use super::ops::dot4;
use super::SharedOut;
use crate::exec::{split, Executor};
use crate::model::weights::Matrix;
use crate::quant;

/// Elements decoded at a time per row; a multiple of every block size.
const SPAN: usize = 512;
/// Rows decoded together so each activation load serves several rows.
const TILE: usize = 4;

/// `out[b * w.rows + r] = dot(w.row(r), x[b * w.cols..(b + 1) * w.cols])`
/// for `b < n`. `n` is clamped to what `x` and `out` can hold.
pub fn matmul(exec: &dyn Executor, w: &Matrix, x: &[f32], n: usize, out: &mut [f32]) {
    let (rows, cols) = (w.rows, w.cols);
    if rows == 0 || cols == 0 {
        return;
    }
    let n = n.min(x.len() / cols).min(out.len() / rows);
    let out = &mut out[..n * rows];
    out.fill(0.0);
    let shared = SharedOut::new(out);
    let tiles = rows.div_ceil(TILE);
    let (tasks, per_task) = split(tiles, exec.threads(), 8, 1);
    let (block, block_bytes) = (w.ty.block_elems(), w.ty.block_bytes());
    exec.run(tasks, &|t| {
        let mut buf = [[0f32; SPAN]; TILE];
        let first = t * per_task;
        for tile in first..(first + per_task).min(tiles) {
            let r0 = tile * TILE;
            let nr = TILE.min(rows - r0);
            let mut start = 0;
            while start < cols {
                let len = SPAN.min(cols - start);
                let (b0, b1) = (
                    start / block * block_bytes,
                    (start + len) / block * block_bytes,
                );
                for (k, dst) in buf.iter_mut().enumerate() {
                    let dst = &mut dst[..len];
                    let src = if k < nr {
                        w.row(r0 + k).get(b0..b1)
                    } else {
                        None
                    };
                    match src {
                        Some(src) if quant::dequantize(w.ty, src, dst).is_ok() => {}
                        _ => dst.fill(0.0),
                    }
                }
                for b in 0..n {
                    let xs = &x[b * cols + start..b * cols + start + len];
                    let d = dot4(
                        xs,
                        [
                            &buf[0][..len],
                            &buf[1][..len],
                            &buf[2][..len],
                            &buf[3][..len],
                        ],
                    );
                    for (k, v) in d.iter().enumerate().take(nr) {
                        // SAFETY: task `t` owns rows [first*TILE, (first+per_task)*TILE)
                        // and tasks cover disjoint row ranges, so index
                        // b * rows + r0 + k is written by this task alone.
                        unsafe { shared.add(b * rows + r0 + k, *v) };
                    }
                }
                start += len;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::Serial;
    use crate::quant::WeightType;

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
}
