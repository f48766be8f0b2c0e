//! Every weight product kernel against the CPU's, for every encoding, on
//! random inputs of awkward shapes: rows that do not fill the last block
//! of rows, token counts that leave a ragged tile, odd block counts, more
//! chunks a row than lanes, rows whose length is not a whole chunk, and gemma.cpp views
//! (rows of a stream starting mid-group, K/V row groups, head-major
//! output projections).

mod support;

use gemma_core::codec::{self, Codec};
use gemma_core::exec::Serial;
use gemma_core::kernels::matmul::matmul_with;
use gemma_core::kernels::{Arith, Isa, Precision};
use gemma_core::quant::WeightType;
use gemma_core::weights::Matrix;
use gemma_gpu::opencl::probe;
use gemma_platform::synthetic::random_matrix_bytes;
use support::device;

/// Rows (37: not a multiple of the 4 rows of a block) and token counts
/// (1: the single-token kernel; 13: a full tile of 8 and a ragged one).
const ROWS: usize = 37;
const TOKENS: [usize; 2] = [1, 13];

fn xs(n: usize, seed: u32) -> Vec<f32> {
    support::random(n, seed, 1.0)
}

/// The CPU's product (portable arithmetic) against the device's, relative
/// to the largest output.
fn compare(gpu: &gemma_gpu::opencl::Gpu, what: &str, m: &Matrix) {
    for n in TOKENS {
        let x = xs(n * m.cols, 7 + n as u32);
        let mut want = vec![0f32; n * m.rows];
        let arith = Arith {
            precision: Precision::Exact,
            isa: Isa::Portable,
        };
        matmul_with(&Serial, m, &x, n, &mut want, arith);
        let got = probe::product(gpu, m, &x, n).unwrap();
        let scale = want.iter().fold(1e-3f32, |a, v| a.max(v.abs()));
        let d = support::max_diff(&got, &want);
        assert!(
            d <= 2e-5 * scale,
            "{what}, {n} tokens: differs by {d} (largest output {scale})"
        );
    }
}

#[test]
fn every_ggml_type_matches_the_cpu() {
    let Some(gpu) = device("every_ggml_type_matches_the_cpu") else {
        return;
    };
    for ty in WeightType::ALL {
        let block = ty.block_elems();
        // Odd block counts, and more chunks of 32 than the 32 lanes of a
        // row, so lanes take several; float rows end in a short chunk.
        let cols = match block {
            1 => 37 * 32 + 3,
            32 => 37 * 32,
            _ => 5 * 256,
        };
        let bytes = random_matrix_bytes(ty, ROWS, cols);
        let m = Matrix::new(ty, ROWS, cols, &bytes).unwrap();
        compare(&gpu, ty.name(), &m);
    }
}

#[test]
fn every_gemma_codec_and_view_matches_the_cpu() {
    let Some(gpu) = device("every_gemma_codec_and_view_matches_the_cpu") else {
        return;
    };
    // A stream of 3 heads x 40 rows of 100 columns: groups of NUQ (256)
    // and I8 (128) values straddle rows, and rows end in a short chunk.
    let (heads, rows, cols) = (3usize, 40usize, 100usize);
    let len = heads * rows * cols;
    let values = xs(len, 99);
    for codec in Codec::ALL {
        let mut bytes = vec![0u8; codec.bytes_for(len).unwrap()];
        let mut scratch = vec![0f32; codec::NUQ_ENCODE_SCRATCH_LEN];
        codec::encode(codec, &values, &mut bytes, &mut scratch).unwrap();
        let whole = Matrix::gemma(codec, heads * rows, cols, 0.75, &bytes).unwrap();
        let name = format!("{codec:?}");
        compare(&gpu, &format!("{name} whole"), &whole);
        // Rows 5..42: starts mid-group.
        let view = whole.rows_view(5, ROWS).unwrap();
        compare(&gpu, &format!("{name} rows 5.."), &view);
        // Rows 8..16 of every 40 (gemma.cpp's K rows of each KV head).
        let groups = whole.row_groups(8, 8, rows, heads).unwrap();
        compare(&gpu, &format!("{name} row groups"), &groups);
        // [40, 3 x 96] stored head-major (gemma.cpp's att_ein).
        let head_major = whole.head_major(heads).unwrap();
        compare(&gpu, &format!("{name} head-major"), &head_major);
    }
}
