//! Numeric kernels over f32 activations and encoded weights.
//!
//! The portable scalar code here is the reference; it is written with
//! independent accumulator lanes so that the compiler vectorizes it.

pub mod matmul;
pub mod ops;
mod shared;

pub use shared::SharedOut;
