//! The Gemma model: configuration, weight views, KV cache, attention and
//! the forward pass.

pub mod attention;
pub mod config;
pub mod forward;
pub mod kv_cache;
pub mod weights;

pub use config::{Family, ModelConfig};
pub use forward::{ForwardError, Model, ModelError, Scratch};
pub use kv_cache::KvCache;
