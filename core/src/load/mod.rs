//! From a parsed file to a [`Model`]: the only place that knows both the
//! file formats and the model. Each loader fills the model's
//! [`Fields`](crate::model::config::Fields), lets
//! [`ModelConfig::derive`](crate::model::ModelConfig::derive) apply Gemma's
//! rules, and finds every tensor of the role table
//! ([`crate::weights::ROLES`]) under the format's own names.

pub mod gguf;
pub mod sbs;

use crate::model::config::ConfigError;
use crate::weights::WeightsError;
use core::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelError {
    Config(ConfigError),
    Weights(WeightsError),
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::Config(e) => e.fmt(f),
            ModelError::Weights(e) => e.fmt(f),
        }
    }
}

impl From<ConfigError> for ModelError {
    fn from(e: ConfigError) -> Self {
        ModelError::Config(e)
    }
}

impl From<WeightsError> for ModelError {
    fn from(e: WeightsError) -> Self {
        ModelError::Weights(e)
    }
}
