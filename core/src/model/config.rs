//! Model hyperparameters, and the rules of each Gemma generation that
//! turn what a file states ([`Fields`]) into them ([`ModelConfig::derive`]).
//! No file format is known here: loaders fill [`Fields`].

pub use crate::weights::MAX_LAYERS;
use core::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Gemma 1: every layer global, no post-norms, no soft-caps.
    Gemma1,
    /// Gemma 2: local/global alternating, soft-capped attention and logits, post-norms.
    Gemma2,
    /// Gemma 3: five local layers per global one, QK-norm, no soft-caps.
    Gemma3,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ModelConfig {
    pub family: Family,
    pub n_layers: usize,
    pub d_model: usize,
    pub d_ff: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    /// The context the model was trained for.
    pub context_length: usize,
    pub rms_eps: f32,
    /// Keys visible to a local layer: `0 <= q_pos - k_pos < sliding_window`.
    /// 0 means every layer is global.
    pub sliding_window: usize,
    /// Layer `l` is local iff `l % pattern < pattern - 1`; 0 = none local.
    pub sliding_window_pattern: usize,
    pub rope_base_global: f32,
    pub rope_base_local: f32,
    /// Linear RoPE position scaling on global layers (Gemma 3 4B and up use 8).
    pub rope_scale_global: f32,
    /// `cap * tanh(s / cap)` on attention scores; 0 = off.
    pub attn_softcap: f32,
    /// The same on the final logits; 0 = off.
    pub final_softcap: f32,
    /// Multiplies queries after RoPE.
    pub query_scale: f32,
    /// Multiplies the embedding row (sqrt(d_model)).
    pub embed_scale: f32,
    pub qk_norm: bool,
    pub post_norms: bool,
    /// True when stored norm gains are the raw `w` of `(1 + w)` (gemma.cpp
    /// files); GGUF converters already added the one.
    pub norm_gain_plus_one: bool,
}

impl ModelConfig {
    pub fn is_local(&self, layer: usize) -> bool {
        let p = self.sliding_window_pattern;
        self.sliding_window > 0 && p > 0 && layer % p < p - 1
    }

    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Checks the internal consistency every kernel relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |what| Err(ConfigError::Invalid(what));
        if self.n_layers == 0 || self.n_layers > MAX_LAYERS {
            return bad("layer count must be between 1 and 64");
        }
        if self.d_model == 0 || self.d_ff == 0 || self.vocab_size == 0 {
            return bad("dimensions must be non-zero");
        }
        if self.context_length == 0 {
            return bad("context length must be at least 1");
        }
        if self.n_heads == 0
            || self.n_kv_heads == 0
            || !self.n_heads.is_multiple_of(self.n_kv_heads)
        {
            return bad("head count must be a non-zero multiple of the KV head count");
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) || self.head_dim > 1024 {
            return bad("head dimension must be even and at most 1024");
        }
        if !(self.rms_eps.is_finite() && self.rms_eps >= 0.0) {
            return bad("RMS epsilon must be finite");
        }
        for v in [self.rope_base_global, self.rope_base_local] {
            if !(v.is_finite() && v > 1.0) {
                return bad("RoPE base must be finite and above 1");
            }
        }
        for v in [
            self.attn_softcap,
            self.final_softcap,
            self.query_scale,
            self.embed_scale,
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad("scales and soft-caps must be finite and non-negative");
            }
        }
        if !(self.rope_scale_global.is_finite() && self.rope_scale_global > 0.0) {
            return bad("RoPE scale must be positive");
        }
        Ok(())
    }

    /// Applies Gemma's rules to what a file states: the one place where
    /// family- and size-dependent numbers are decided. Every loader (GGUF,
    /// `.sbs`, Hugging Face `config.json`) fills [`Fields`] and calls this.
    ///
    /// - Queries scale by `1/sqrt(query_pre_attn_scalar)`. Where a format
    ///   does not store it (GGUF, `.sbs`), the 27B models of Gemma 2 (46
    ///   layers) and Gemma 3 (62 layers) use `d_model / n_heads` (144 and
    ///   168) and every other model `head_dim`, as their configs say.
    /// - Sliding windows: none on Gemma 1. Gemma 2 alternates local and
    ///   global layers, starting with a local one (window 4096 unless
    ///   stated). Gemma 3 repeats five local layers and a global one
    ///   (`sliding_window_pattern`, 6 unless stated); its window must be
    ///   stated.
    /// - RoPE: Gemma 1 and 2 rotate every layer with `rope_theta` (10000
    ///   unless stated). Gemma 3 rotates local layers with
    ///   `rope_local_base_freq` (10000 unless stated) and global ones with
    ///   `rope_theta` (1e6 unless stated), their positions divided by the
    ///   linear scaling factor: the file's, or 8 on the 4B and larger
    ///   models (width 2560 and up) where the file does not say.
    /// - Soft-caps only on Gemma 2 (attention 50, logits 30 unless stated).
    /// - Post-norms on Gemma 2 and 3, QK-norm on Gemma 3.
    /// - Embeddings scale by `sqrt(d_model)`; RMSNorm epsilon 1e-6 unless
    ///   stated.
    pub fn derive(f: &Fields) -> Result<Self, ConfigError> {
        use Family::*;
        let family = f.family;
        let head_dim = match f.head_dim {
            Some(hd) => hd,
            None => f.d_model.checked_div(f.n_heads).unwrap_or(0),
        };
        let is_27b = matches!((family, f.n_layers), (Gemma2, 46) | (Gemma3, 62));
        let query_scalar = match f.query_pre_attn_scalar {
            Some(s) => s,
            None if is_27b => f.d_model.checked_div(f.n_heads).unwrap_or(0) as f32,
            None => head_dim as f32,
        };
        if !(query_scalar.is_finite() && query_scalar > 0.0) {
            return Err(ConfigError::Invalid(
                "query_pre_attn_scalar must be positive",
            ));
        }
        let (sliding_window, sliding_window_pattern) = match family {
            Gemma1 => (0, 0),
            Gemma2 => (f.sliding_window.unwrap_or(4096), 2),
            Gemma3 => (
                f.sliding_window
                    .ok_or(ConfigError::Missing("sliding_window"))?,
                f.sliding_window_pattern.unwrap_or(6),
            ),
        };
        let theta = f
            .rope_theta
            .unwrap_or(if family == Gemma3 { 1e6 } else { 1e4 });
        let (rope_base_local, rope_scale_global) = match family {
            Gemma3 => (
                f.rope_local_base.unwrap_or(1e4),
                f.rope_scaling.unwrap_or_else(|| {
                    let s = if f.d_model >= 2560 { 8.0 } else { 1.0 };
                    debug!("RoPE scaling not stated: {} for width {}", s, f.d_model);
                    s
                }),
            ),
            Gemma1 | Gemma2 => (theta, 1.0),
        };
        let (attn_softcap, final_softcap) = match family {
            Gemma2 => (
                f.attn_softcap.unwrap_or(50.0),
                f.final_softcap.unwrap_or(30.0),
            ),
            Gemma1 | Gemma3 => (0.0, 0.0),
        };
        let cfg = ModelConfig {
            family,
            n_layers: f.n_layers,
            d_model: f.d_model,
            d_ff: f.d_ff,
            n_heads: f.n_heads,
            n_kv_heads: f.n_kv_heads,
            head_dim,
            vocab_size: f.vocab_size,
            context_length: f.context_length,
            rms_eps: f.rms_eps.unwrap_or(1e-6),
            sliding_window,
            sliding_window_pattern,
            rope_base_global: theta,
            rope_base_local,
            rope_scale_global,
            attn_softcap,
            final_softcap,
            query_scale: (1.0 / libm::sqrt(query_scalar as f64)) as f32,
            embed_scale: libm::sqrt(f.d_model as f64) as f32,
            qk_norm: family == Gemma3,
            post_norms: family != Gemma1,
            norm_gain_plus_one: !f.norm_gains_include_one,
        };
        cfg.validate()?;
        debug!(
            "{} layers of width {}, {} query and {} KV heads of {}, window {} (period {}), query scale {}",
            cfg.n_layers,
            cfg.d_model,
            cfg.n_heads,
            cfg.n_kv_heads,
            cfg.head_dim,
            cfg.sliding_window,
            cfg.sliding_window_pattern,
            cfg.query_scale
        );
        Ok(cfg)
    }

    /// The sizes tensor shapes are made of.
    pub fn dims(&self) -> crate::weights::Dims {
        crate::weights::Dims {
            vocab: self.vocab_size,
            d_model: self.d_model,
            q_dim: self.q_dim(),
            kv_dim: self.kv_dim(),
            head_dim: self.head_dim,
            d_ff: self.d_ff,
        }
    }
}

/// What a model file states about a Gemma model, before Gemma's rules are
/// applied by [`ModelConfig::derive`]. `None`: the file does not say.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fields {
    pub family: Family,
    pub n_layers: usize,
    pub d_model: usize,
    pub d_ff: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    /// `d_model / n_heads` when absent.
    pub head_dim: Option<usize>,
    pub vocab_size: usize,
    pub context_length: usize,
    pub rms_eps: Option<f32>,
    /// Keys a sliding-window layer sees.
    pub sliding_window: Option<usize>,
    /// Layers per repeat of the local/global pattern (the last one global).
    pub sliding_window_pattern: Option<usize>,
    /// RoPE base of global layers (`rope_theta`).
    pub rope_theta: Option<f32>,
    /// RoPE base of Gemma 3's local layers (`rope_local_base_freq`).
    pub rope_local_base: Option<f32>,
    /// Linear RoPE position scaling on global layers (1: none).
    pub rope_scaling: Option<f32>,
    pub query_pre_attn_scalar: Option<f32>,
    pub attn_softcap: Option<f32>,
    pub final_softcap: Option<f32>,
    /// The stored RMSNorm gains already include Gemma's `+ 1` (GGUF
    /// converters add it; gemma.cpp and Hugging Face store the raw `w` of
    /// `x * (1 + w)`).
    pub norm_gains_include_one: bool,
}

impl Fields {
    /// A model of `family` of which nothing else is known yet.
    pub fn new(family: Family) -> Self {
        Fields {
            family,
            n_layers: 0,
            d_model: 0,
            d_ff: 0,
            n_heads: 0,
            n_kv_heads: 0,
            head_dim: None,
            vocab_size: 0,
            context_length: 0,
            rms_eps: None,
            sliding_window: None,
            sliding_window_pattern: None,
            rope_theta: None,
            rope_local_base: None,
            rope_scaling: None,
            query_pre_attn_scalar: None,
            attn_softcap: None,
            final_softcap: None,
            norm_gains_include_one: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    UnsupportedArchitecture,
    Missing(&'static str),
    Invalid(&'static str),
    /// A size in the metadata beyond 2^30.
    OutOfRange(&'static str),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::UnsupportedArchitecture => {
                write!(
                    f,
                    "unsupported architecture (gemma, gemma2 and gemma3 are supported)"
                )
            }
            ConfigError::Missing(what) => write!(f, "model metadata lacks {what}"),
            ConfigError::Invalid(what) => write!(f, "invalid model configuration: {what}"),
            ConfigError::OutOfRange(what) => {
                write!(f, "model metadata {what} is out of range (at most 2^30)")
            }
        }
    }
}
