//! A gemma.cpp `.sbs` file as a model: its `config` blob into [`Fields`],
//! its tensors into [`Matrix`] views under gemma.cpp's names and layouts
//! (described in [`crate::format::sbs`]).

use super::ModelError;
use crate::format::sbs::{self, SbsFile};
use crate::model::config::{ConfigError, Family, Fields, ModelConfig};
use crate::model::Model;
use crate::weights::{
    LayerWeights, Matrix, Naming, Role, TensorId, Weights, WeightsError, MAX_LAYERS,
};

/// The model in a parsed `.sbs` file: same forward pass, weights decoded
/// with gemma.cpp's codecs.
pub fn model<'a>(f: &SbsFile<'a>) -> Result<Model<'a>, ModelError> {
    let config = ModelConfig::derive(&fields(&f.config)?)?;
    let weights = weights(f, &config)?;
    Ok(Model { config, weights })
}

/// What a gemma.cpp config states. Every layer must share one shape; local
/// layers are those whose window is shorter than `max_seq_len`, and they
/// must repeat with a fixed period ending in a global layer (as in every
/// Gemma 2 and 3 model). gemma.cpp stores neither RoPE bases nor scaling
/// nor a query scalar that is right for every model (it scales Gemma 3
/// 27B's queries by the head size; the model was trained with 168), so
/// those are left to [`ModelConfig::derive`]. PaliGemma 2 files give their
/// Gemma 2 language model.
pub fn fields(c: &sbs::ModelConfig) -> Result<Fields, ConfigError> {
    use sbs::Model as M;
    let family = match c.model {
        M::Gemma2_2B
        | M::Gemma2_9B
        | M::Gemma2_27B
        | M::PaliGemma2_3B_224
        | M::PaliGemma2_3B_448
        | M::PaliGemma2_10B_224
        | M::PaliGemma2_10B_448 => Family::Gemma2,
        M::Gemma3_270M | M::Gemma3_1B | M::Gemma3_4B | M::Gemma3_12B | M::Gemma3_27B => {
            Family::Gemma3
        }
        M::Unknown => return Err(ConfigError::UnsupportedArchitecture),
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
    if l0.model_dim != c.model_dim {
        return Err(ConfigError::Invalid(
            "layer model_dim differs from the model's",
        ));
    }
    // The flags must agree with the family's rules, which the engine follows.
    let post_norms = l0.post_norm == sbs::PostNormType::Scale;
    if l0.use_qk_norm != (family == Family::Gemma3) || !post_norms {
        return Err(ConfigError::Invalid(
            "QK-norm or post-norm flags disagree with the model family",
        ));
    }
    let max = c.max_seq_len;
    let local = |l: usize| c.attention_window_sizes.get(l).is_some_and(|w| w < max);
    let (window, pattern) = match (0..n_layers).position(|l| !local(l)) {
        None => return Err(ConfigError::Invalid("no global layer")),
        Some(0) if (0..n_layers).all(|l| !local(l)) => (None, None),
        Some(g) => {
            let p = g + 1;
            if (0..n_layers).any(|l| local(l) != (l % p < p - 1)) {
                return Err(ConfigError::Invalid("irregular local/global layer pattern"));
            }
            let w = c.attention_window_sizes.get(0).unwrap_or(0) as usize;
            (Some(w), Some(p))
        }
    };
    if family == Family::Gemma2 && pattern.is_some_and(|p| p != 2) {
        return Err(ConfigError::Invalid(
            "Gemma 2 layers must alternate local and global",
        ));
    }
    let cap = |v: f32| (v > 0.0).then_some(v);
    let mut f = Fields::new(family);
    f.n_layers = n_layers;
    f.d_model = c.model_dim as usize;
    f.d_ff = l0.ff_hidden_dim as usize;
    f.n_heads = l0.heads as usize;
    f.n_kv_heads = l0.kv_heads as usize;
    f.head_dim = Some(l0.qkv_dim as usize);
    f.vocab_size = c.vocab_size as usize;
    f.context_length = max as usize;
    f.sliding_window = window;
    f.sliding_window_pattern = pattern;
    f.attn_softcap = cap(c.att_cap);
    f.final_softcap = cap(c.final_cap);
    f.norm_gains_include_one = false;
    Ok(f)
}

/// Views into the tensors: `qkv_ein` is cut into Q, K and V row ranges,
/// `gating_ein` into gate and up, and `att_ein` is read head-major as the
/// `[M, H D]` output projection. After the Q rows, each KV head's K rows
/// are followed by its V rows.
pub fn weights<'a>(f: &SbsFile<'a>, cfg: &ModelConfig) -> Result<Weights<'a>, WeightsError> {
    let (d, hd, ff, h, k) = (
        cfg.d_model,
        cfg.head_dim,
        cfg.d_ff,
        cfg.n_heads,
        cfg.n_kv_heads,
    );
    // A stored tensor of `rows x cols` (a stacked one for Q/K/V and gate/up).
    let get =
        |id: TensorId, rows: usize, cols: usize| -> Result<Option<Matrix<'a>>, WeightsError> {
            match f.tensor(&id.sbs_name()) {
                None if id.role.required(cfg.qk_norm, cfg.post_norms) => {
                    Err(WeightsError::Missing(id, Naming::Sbs))
                }
                None => Ok(None),
                Some(t) if t.rows == rows && t.cols == cols => {
                    Matrix::gemma(t.codec, rows, cols, t.scale, t.bytes)
                        .map(Some)
                        .ok_or(WeightsError::Shape(id, Naming::Sbs))
                }
                Some(_) => Err(WeightsError::Shape(id, Naming::Sbs)),
            }
        };
    let plain = |id: TensorId| {
        let (rows, cols) = id.shape(&cfg.dims());
        get(id, rows, cols).map(Option::unwrap_or_default)
    };
    let embed = plain(TensorId::global(Role::Embedding))?;
    let final_norm = plain(TensorId::global(Role::FinalNorm))?;
    let mut layers = heapless::Vec::new();
    for l in 0..cfg.n_layers.min(MAX_LAYERS) {
        let mut lw = LayerWeights::default();
        let id = |role| TensorId::layer(role, l);
        let shape = |role| WeightsError::Shape(id(role), Naming::Sbs);
        let stacked = |role, rows, cols| get(id(role), rows, cols).map(Option::unwrap_or_default);
        let qkv = stacked(Role::Q, (h + 2 * k) * hd, d)?;
        let gating = stacked(Role::Gate, 2 * ff, d)?;
        let att = stacked(Role::O, h * d, hd)?;
        for role in Role::per_layer() {
            let m = match role {
                Role::Q => qkv.rows_view(0, h * hd),
                Role::K => qkv.row_groups(h * hd, hd, 2 * hd, k),
                Role::V => qkv.row_groups((h + 1) * hd, hd, 2 * hd, k),
                Role::O => att.head_major(h),
                Role::Gate => gating.rows_view(0, ff),
                Role::Up => gating.rows_view(ff, ff),
                _ => Some(plain(id(role))?),
            };
            if let Some(slot) = lw.slot(role) {
                *slot = m.ok_or(shape(role))?;
            }
        }
        // The config caps layers at MAX_LAYERS, so this always fits.
        let _ = layers.push(lw);
    }
    Ok(Weights {
        embed,
        output: embed,
        final_norm,
        layers,
    })
}
