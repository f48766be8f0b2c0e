//! gemma-gpu: GPU backends of gemma-rs behind the core's backend seam.
//!
//! The kernels are written once (`gpu/kernels/`, a dialect that OpenCL C
//! 1.2 and CUDA C++ both compile, see [`kernels`]). The OpenCL backend
//! ([`opencl`]) runs them on any OpenCL device, including the CPU through
//! PoCL, which is how they are tested on machines without a GPU; the same
//! source is compiled for NVIDIA's sm_61 by the CUDA compile check.
//! [`limits`] holds the smallest target's limits, enforced on every launch.

pub mod kernels;
pub mod limits;
pub mod opencl;

/// For test suites: a test that cannot run here (no OpenCL device, no
/// NVRTC) prints `NOT RUN: <test>: <why>` and appends it to
/// `$GEMMA_NOT_RUN_LOG` (CI prints that list), except under CI (`CI` set),
/// which installs PoCL and NVRTC and so must never skip: there it panics.
pub fn not_run(test: &str, why: &dyn std::fmt::Display) {
    use std::io::Write;
    if std::env::var_os("CI").is_some() {
        panic!("{test}: CI must run this test, but {why}");
    }
    eprintln!("NOT RUN: {test}: {why}");
    if let Some(path) = std::env::var_os("GEMMA_NOT_RUN_LOG") {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path);
        if let Ok(mut f) = f {
            let _ = writeln!(f, "{test}: {why}");
        }
    }
}
