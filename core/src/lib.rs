//! gemma-core: the allocation-explicit, `no_std` heart of gemma-rs.
#![no_std]
#[cfg(feature = "alloc")]
extern crate alloc;
