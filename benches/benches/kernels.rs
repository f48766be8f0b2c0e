//! Matrix products on encoded weights, per weight type: decode (one token)
//! and prefill (a batch), in the exact precision and, for decode, the fast
//! one (16-bit fixed-point activations). Run: `cargo bench -p gemma-benches`.
//! Shapes are Gemma 3 270M's: the 2048 -> 640 FFW down projection and the
//! 262144-row output projection, and a matrix too large for any cache.

use gemma_core::exec::Serial;
use gemma_core::kernels::matmul::matmul_with;
use gemma_core::kernels::{Arith, Precision};
use gemma_core::quant::WeightType;
use gemma_core::weights::Matrix;
use gemma_platform::synthetic::random_matrix_bytes;

fn main() {
    divan::main();
}

const TYPES: [WeightType; 6] = [
    WeightType::F32,
    WeightType::BF16,
    WeightType::Q8_0,
    WeightType::Q5_0,
    WeightType::Q4K,
    WeightType::Q6K,
];

#[divan::bench(args = TYPES, sample_count = 20)]
fn ffw_down_decode(bencher: divan::Bencher, ty: WeightType) {
    matmul_bench(bencher, ty, 640, 2048, 1, Precision::Exact);
}

#[divan::bench(args = TYPES, sample_count = 20)]
fn ffw_down_decode_fast(bencher: divan::Bencher, ty: WeightType) {
    matmul_bench(bencher, ty, 640, 2048, 1, Precision::Fast);
}

#[divan::bench(args = TYPES, sample_count = 10)]
fn ffw_down_prefill_64(bencher: divan::Bencher, ty: WeightType) {
    matmul_bench(bencher, ty, 640, 2048, 64, Precision::Exact);
}

/// A 65536 x 2048 matrix, 75 to 142 MB encoded: larger than any L3, so the
/// weights stream from memory as a real model's layers do in decode.
#[divan::bench(args = &TYPES[2..], sample_count = 5)]
fn streamed_decode(bencher: divan::Bencher, ty: WeightType) {
    matmul_bench(bencher, ty, 65_536, 2048, 1, Precision::Exact);
}

#[divan::bench(args = &TYPES[2..], sample_count = 5)]
fn streamed_decode_fast(bencher: divan::Bencher, ty: WeightType) {
    matmul_bench(bencher, ty, 65_536, 2048, 1, Precision::Fast);
}

#[divan::bench(args = [WeightType::Q8_0], sample_count = 5)]
fn output_projection_decode(bencher: divan::Bencher, ty: WeightType) {
    matmul_bench(bencher, ty, 262_144, 640, 1, Precision::Exact);
}

#[divan::bench(args = [WeightType::Q8_0], sample_count = 5)]
fn output_projection_decode_fast(bencher: divan::Bencher, ty: WeightType) {
    matmul_bench(bencher, ty, 262_144, 640, 1, Precision::Fast);
}

fn matmul_bench(
    bencher: divan::Bencher,
    ty: WeightType,
    rows: usize,
    cols: usize,
    n: usize,
    precision: Precision,
) {
    let bytes = random_matrix_bytes(ty, rows, cols);
    let w = Matrix::new(ty, rows, cols, &bytes).expect("shape");
    let x: Vec<f32> = (0..n * cols)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
        .collect();
    let mut out = vec![0f32; n * rows];
    let arith = Arith::detect(precision);
    bencher
        .counter(divan::counter::ItemsCount::new(rows * cols * n))
        .bench_local(|| matmul_with(&Serial, &w, divan::black_box(&x), n, &mut out, arith));
}
