//! What the OpenCL tests share: the device they run on, or why not.

#![allow(dead_code)]

use gemma_gpu::opencl::{self, Gpu};
use std::sync::Arc;

/// OpenCL device 0, or NOT RUN (see [`opencl::test_device`]).
pub fn device(test: &str) -> Option<Arc<Gpu>> {
    opencl::test_device(test)
}

/// Largest absolute difference between two equally long slices; NaN when
/// any difference is NaN (a NaN must never pass for a match).
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, |m, d| if d.is_nan() || d > m { d } else { m })
}

/// `len` pseudo-random values in `[-amplitude, amplitude)` (xorshift32
/// from `seed`).
pub fn random(len: usize, seed: u32, amplitude: f32) -> Vec<f32> {
    let mut s = seed | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            ((s as f32 / u32::MAX as f32) * 2.0 - 1.0) * amplitude
        })
        .collect()
}
