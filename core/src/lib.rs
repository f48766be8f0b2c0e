//! gemma-core: the allocation-explicit, `no_std` heart of gemma-rs.
#![no_std]
#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(test)]
extern crate std;
#[macro_use]
mod fmt;
pub mod codec;
pub mod cpu;
pub mod exec;
pub mod format;
pub mod generate;
pub mod kernels;
pub mod load;
pub mod model;
pub mod quant;
pub mod sampling;
pub mod tokenizer;
pub mod weights;
