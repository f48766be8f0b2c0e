//! Model hyperparameters: read from a file's metadata, completed with the
//! constants each Gemma generation fixes but GGUF does not store.

use crate::format::gguf::Gguf;
use core::fmt;

/// The most layers any supported model has (Gemma 3 27B has 62).
pub const MAX_LAYERS: usize = 64;

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

    /// Reads the configuration of a Gemma GGUF file.
    pub fn from_gguf(g: &Gguf) -> Result<Self, ConfigError> {
        let arch = g
            .architecture()
            .ok_or(ConfigError::Missing("general.architecture"))?;
        let family = match arch {
            "gemma" => Family::Gemma1,
            "gemma2" => Family::Gemma2,
            "gemma3" => Family::Gemma3,
            _ => return Err(ConfigError::UnsupportedArchitecture),
        };
        let mut key = KeyBuf::new(arch);
        let mut uint = |suffix: &'static str| -> Result<usize, ConfigError> {
            let v = g
                .get_u64(key.with(suffix))
                .ok_or(ConfigError::Missing(suffix))?;
            usize::try_from(v)
                .ok()
                .filter(|&v| v <= 1 << 30)
                .ok_or(ConfigError::OutOfRange(suffix))
        };
        let n_layers = uint(".block_count")?;
        let d_model = uint(".embedding_length")?;
        let d_ff = uint(".feed_forward_length")?;
        let n_heads = uint(".attention.head_count")?;
        let n_kv_heads = uint(".attention.head_count_kv").unwrap_or(n_heads);
        let context_length = uint(".context_length")?;
        let head_dim = match uint(".attention.key_length") {
            Ok(v) => v,
            Err(_) if n_heads > 0 => d_model / n_heads,
            Err(e) => return Err(e),
        };
        let sliding_window = uint(".attention.sliding_window").unwrap_or(0);
        let mut key = KeyBuf::new(arch);
        let mut float = |suffix: &'static str| g.get_f32(key.with(suffix));
        let rms_eps = float(".attention.layer_norm_rms_epsilon").unwrap_or(1e-6);
        let rope_base = float(".rope.freq_base").unwrap_or(10_000.0);
        let rope_scale_global = float(".rope.scaling.factor").unwrap_or(1.0);
        let attn_softcap = float(".attn_logit_softcapping").unwrap_or(0.0);
        let final_softcap = float(".final_logit_softcapping").unwrap_or(0.0);

        let vocab_size = g
            .tensor("token_embd.weight")
            .map(|t| t.dims[1] as usize)
            .ok_or(ConfigError::Missing("token_embd.weight"))?;

        // The 27B models scale queries by 1/sqrt(d_model / n_heads) rather
        // than 1/sqrt(head_dim) (query_pre_attn_scalar in their configs).
        let is_27b = matches!(
            (family, n_layers),
            (Family::Gemma2, 46) | (Family::Gemma3, 62)
        );
        let query_scale = if is_27b && n_heads > 0 {
            1.0 / libm::sqrtf((d_model / n_heads) as f32)
        } else {
            1.0 / libm::sqrtf(head_dim as f32)
        };
        let (pattern, rope_base_local, softcaps) = match family {
            Family::Gemma1 => (0, rope_base, (0.0, 0.0)),
            Family::Gemma2 => (2, rope_base, (attn_softcap, final_softcap)),
            // Gemma 3 local layers use base 10000 whatever the file says for global ones.
            Family::Gemma3 => (6, 10_000.0, (attn_softcap, final_softcap)),
        };
        let cfg = ModelConfig {
            family,
            n_layers,
            d_model,
            d_ff,
            n_heads,
            n_kv_heads,
            head_dim,
            vocab_size,
            context_length,
            rms_eps,
            sliding_window: if family == Family::Gemma1 {
                0
            } else {
                sliding_window
            },
            sliding_window_pattern: pattern,
            rope_base_global: rope_base,
            rope_base_local,
            rope_scale_global: if family == Family::Gemma3 {
                rope_scale_global
            } else {
                1.0
            },
            attn_softcap: softcaps.0,
            final_softcap: softcaps.1,
            query_scale,
            embed_scale: libm::sqrt(d_model as f64) as f32,
            qk_norm: family == Family::Gemma3,
            post_norms: family != Family::Gemma1,
            norm_gain_plus_one: false,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Builds `"<arch><suffix>"` keys without allocating.
impl ModelConfig {
    /// The configuration of a gemma.cpp `.sbs` file. Every layer must share
    /// one shape; local layers are those whose window is shorter than
    /// `max_seq_len`, and they must repeat with a fixed period ending in a
    /// global layer (as in every Gemma 2 and 3 model). RoPE bases are
    /// Gemma's: 10000 on local layers, 1e6 on Gemma 3's global ones (gemma.cpp
    /// itself uses 10000 on the 270M's global layers, which the reference
    /// implementation does not). Gemma 3 27B's queries are scaled by
    /// `1/sqrt(model_dim/heads)` whatever the file says (gemma.cpp: head dim).
    pub fn from_sbs(c: &crate::format::sbs::ModelConfig) -> Result<Self, ConfigError> {
        use crate::format::sbs::{Model as M, PostNormType, QueryScaleType};
        let family = match c.model {
            M::Gemma2_2B | M::Gemma2_9B | M::Gemma2_27B => Family::Gemma2,
            M::Gemma3_270M | M::Gemma3_1B | M::Gemma3_4B | M::Gemma3_12B | M::Gemma3_27B => {
                Family::Gemma3
            }
            _ => return Err(ConfigError::UnsupportedArchitecture),
        };
        let l0 = c
            .layer_configs
            .get(0)
            .ok_or(ConfigError::Missing("layer_configs"))?;
        let n_layers = c.num_layers as usize;
        if c.layer_configs.len() != n_layers || c.attention_window_sizes.len() != n_layers {
            return Err(ConfigError::Invalid(
                "one layer config and window per layer",
            ));
        }
        if c.layer_configs.iter().any(|l| l != l0) {
            return Err(ConfigError::Invalid("layers of different shapes"));
        }
        let max = c.max_seq_len;
        let local = |l: usize| c.attention_window_sizes.get(l).is_some_and(|w| w < max);
        let (sliding_window, pattern) = match (0..n_layers).position(|l| !local(l)) {
            // All local or all global: no pattern to follow.
            None => return Err(ConfigError::Invalid("no global layer")),
            Some(0) if (0..n_layers).all(|l| !local(l)) => (0, 0),
            Some(g) => {
                let p = g + 1;
                if (0..n_layers).any(|l| local(l) != (l % p < p - 1)) {
                    return Err(ConfigError::Invalid("irregular local/global layer pattern"));
                }
                (c.attention_window_sizes.get(0).unwrap_or(0) as usize, p)
            }
        };
        let (d_model, heads) = (c.model_dim as usize, l0.heads as usize);
        let head_dim = l0.qkv_dim as usize;
        // Gemma 3 27B was trained with queries scaled by model_dim/heads
        // (its `query_pre_attn_scalar` is 168), but gemma.cpp's config says
        // head dim (128); follow the model, keep the file as gemma.cpp has it.
        let by_width =
            c.query_scale == QueryScaleType::SqrtModelDimDivNumHeads || c.model == M::Gemma3_27B;
        let query_scale = if by_width {
            1.0 / libm::sqrtf((d_model / heads.max(1)) as f32)
        } else {
            1.0 / libm::sqrtf(head_dim as f32)
        };
        let (rope_base_global, rope_scale_global) = match (family, c.model) {
            (Family::Gemma2, _) => (10_000.0, 1.0),
            (_, M::Gemma3_4B | M::Gemma3_12B | M::Gemma3_27B) => (1_000_000.0, 8.0),
            _ => (1_000_000.0, 1.0),
        };
        let cfg = ModelConfig {
            family,
            n_layers,
            d_model,
            d_ff: l0.ff_hidden_dim as usize,
            n_heads: heads,
            n_kv_heads: l0.kv_heads as usize,
            head_dim,
            vocab_size: c.vocab_size as usize,
            context_length: max as usize,
            rms_eps: 1e-6,
            sliding_window,
            sliding_window_pattern: pattern,
            rope_base_global,
            rope_base_local: 10_000.0,
            rope_scale_global,
            attn_softcap: c.att_cap,
            final_softcap: c.final_cap,
            query_scale,
            embed_scale: libm::sqrt(d_model as f64) as f32,
            qk_norm: l0.use_qk_norm,
            post_norms: l0.post_norm == PostNormType::Scale,
            norm_gain_plus_one: true,
        };
        if l0.model_dim != c.model_dim {
            return Err(ConfigError::Invalid(
                "layer model_dim differs from the model's",
            ));
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

struct KeyBuf {
    buf: [u8; 96],
    prefix_len: usize,
}

impl KeyBuf {
    fn new(arch: &str) -> Self {
        let mut buf = [0u8; 96];
        let n = arch.len().min(32);
        buf[..n].copy_from_slice(&arch.as_bytes()[..n]);
        Self { buf, prefix_len: n }
    }

    fn with(&mut self, suffix: &str) -> &str {
        let n = suffix.len().min(self.buf.len() - self.prefix_len);
        let end = self.prefix_len + n;
        self.buf[self.prefix_len..end].copy_from_slice(&suffix.as_bytes()[..n]);
        core::str::from_utf8(&self.buf[..end]).unwrap_or("")
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
