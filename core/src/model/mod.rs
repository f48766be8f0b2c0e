//! The Gemma model: its configuration and rules, what a pass is fed, the
//! backend seam, and the forward pass written once over it.

pub mod backend;
pub mod cache;
pub mod config;
pub mod forward;
pub mod input;
pub mod plan;

pub use backend::{Act, Backend, ForwardError, Norm, Rope};
pub use config::{Family, Fields, ModelConfig};
pub use forward::{check_stages, forward, greedy, logits, Model, Stage};
pub use input::{Input, Inputs, Mask, Prompt, Span};
