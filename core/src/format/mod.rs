//! File formats, parsed over borrowed bytes; none of them panics or allocates.
pub mod gguf;
pub(crate) mod reader;
pub mod safetensors;
pub mod sbs;
pub mod spm;
