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
