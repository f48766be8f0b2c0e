//! gemma-platform: the std layer of gemma-rs.
//!
//! Memory-maps model files, runs core's kernels on a rayon pool, fetches
//! the default model, and writes GGUF files (synthetic models for tests and
//! demos).

pub mod bytes;
pub mod capi;
pub mod compare;
pub mod conversation;
pub mod convert;
pub mod device;
pub mod engine;
pub mod exec;
pub mod fetch;
pub mod gguf_writer;
pub mod hf;
pub(crate) mod legacy_sbs;
pub mod loaded;
pub mod penalties;
pub mod plan;
pub mod sbs_writer;
pub(crate) mod source;
pub mod synthetic;
pub mod turn;

pub use conversation::{Conversation, TurnStats};
pub use device::{DeviceChoice, DeviceError};
pub use engine::{Chosen, Engine, GpuLayers, SessionMemory};
pub use exec::WorkerPool;
pub use loaded::{CpuParts, LoadError, LoadedModel, SessionBuffers};
pub use penalties::Penalties;
pub use turn::{ChatTemplate, Generator, Speaker, Streamed, TurnOutput};
