//! What the OpenCL tests share: the device they run on, or why not.

#![allow(dead_code)]

use gemma_gpu::opencl::{self, Gpu};
use std::io::Write;
use std::sync::Arc;

/// OpenCL device 0 (PoCL in CI). Where there is none, the test prints NOT
/// RUN (and logs it to `$GEMMA_NOT_RUN_LOG`), except under CI (`CI` set),
/// which installs PoCL and so fails instead of skipping.
pub fn device(test: &str) -> Option<Arc<Gpu>> {
    match opencl::open(0) {
        Ok(gpu) => Some(gpu),
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("{test}: CI must run the OpenCL tests, but {why}")
        }
        Err(why) => {
            eprintln!("NOT RUN: {test}: {why}");
            if let Some(path) = std::env::var_os("GEMMA_NOT_RUN_LOG") {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path);
                if let Ok(mut f) = f {
                    let _ = writeln!(f, "gpu {test}: {why}");
                }
            }
            None
        }
    }
}

/// Largest absolute difference between two equally long slices.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
