//! Numeric kernels over f32 activations and encoded weights.
//!
//! The portable scalar code here is the reference; it is written with
//! independent accumulator lanes so that the compiler vectorizes it.

pub mod cpu;
pub mod matmul;
pub mod ops;
#[cfg(target_arch = "x86_64")]
mod rows_x86;
mod shared;
#[cfg(target_arch = "x86_64")]
mod simd_x86;

pub use shared::SharedOut;
