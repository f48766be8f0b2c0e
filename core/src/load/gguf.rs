//! A GGUF file as a model: `<arch>.*` metadata into [`Fields`], tensors
//! into [`Matrix`] views under their GGUF names.

use super::ModelError;
use crate::format::gguf::{Gguf, TensorInfo};
use crate::model::config::{ConfigError, Family, Fields, ModelConfig};
use crate::model::Model;
use crate::weights::{
    LayerWeights, Matrix, Naming, Role, TensorId, Weights, WeightsError, MAX_LAYERS,
};

/// The model in a parsed GGUF file: its configuration and weight views.
pub fn model<'a>(g: &Gguf<'a>) -> Result<Model<'a>, ModelError> {
    let config = ModelConfig::derive(&fields(g, vocab_size(g)?)?)?;
    let weights = weights(g, &config)?;
    Ok(Model { config, weights })
}

/// The vocabulary size: the rows of `token_embd.weight` (GGUF stores none
/// in the metadata).
pub fn vocab_size(g: &Gguf) -> Result<usize, ConfigError> {
    g.tensor(&TensorId::global(Role::Embedding).gguf_name())
        .map(|t| t.dims[1] as usize)
        .ok_or(ConfigError::Missing("token_embd.weight"))
}

/// What the metadata states (`gemma.*`, `gemma2.*` or `gemma3.*` keys, as
/// llama.cpp's converter writes them) for a model of `vocab_size` tokens.
pub fn fields(g: &Gguf, vocab_size: usize) -> Result<Fields, ConfigError> {
    let arch = g
        .architecture()
        .ok_or(ConfigError::Missing("general.architecture"))?;
    let family = match arch {
        "gemma" => Family::Gemma1,
        "gemma2" => Family::Gemma2,
        "gemma3" => Family::Gemma3,
        _ => return Err(ConfigError::UnsupportedArchitecture),
    };
    let uint = |suffix: &'static str| -> Result<Option<usize>, ConfigError> {
        match g.get_u64(&key(arch, suffix)) {
            None => Ok(None),
            Some(v) => usize::try_from(v)
                .ok()
                .filter(|&v| v <= 1 << 30)
                .map(Some)
                .ok_or(ConfigError::OutOfRange(suffix)),
        }
    };
    let need = |v: Option<usize>, suffix| v.ok_or(ConfigError::Missing(suffix));
    let mut f = Fields::new(family);
    f.n_layers = need(uint(".block_count")?, ".block_count")?;
    f.d_model = need(uint(".embedding_length")?, ".embedding_length")?;
    f.d_ff = need(uint(".feed_forward_length")?, ".feed_forward_length")?;
    f.n_heads = need(uint(".attention.head_count")?, ".attention.head_count")?;
    f.n_kv_heads = uint(".attention.head_count_kv")?.unwrap_or(f.n_heads);
    f.context_length = need(uint(".context_length")?, ".context_length")?;
    f.head_dim = uint(".attention.key_length")?;
    f.sliding_window = uint(".attention.sliding_window")?;
    f.vocab_size = vocab_size;
    let float = |suffix: &'static str| g.get_f32(&key(arch, suffix));
    f.rms_eps = float(".attention.layer_norm_rms_epsilon");
    f.rope_theta = float(".rope.freq_base");
    // Newer converters state Gemma 3's sliding-window base too.
    f.rope_local_base = float(".rope.freq_base_swa");
    f.rope_scaling = float(".rope.scaling.factor");
    f.attn_softcap = float(".attn_logit_softcapping");
    f.final_softcap = float(".final_logit_softcapping");
    // llama.cpp's converter adds Gemma's one to every RMSNorm gain.
    f.norm_gains_include_one = true;
    Ok(f)
}

fn matrix_of<'a>(t: &TensorInfo<'a>) -> Option<Matrix<'a>> {
    if t.n_dims > 2 {
        return None;
    }
    Matrix::new(t.ty, t.dims[1] as usize, t.dims[0] as usize, t.data)
}

/// Finds every tensor of the role table under its GGUF name and checks its
/// shape; the output projection is the embedding when the file has none.
pub fn weights<'a>(g: &Gguf<'a>, cfg: &ModelConfig) -> Result<Weights<'a>, WeightsError> {
    let dims = cfg.dims();
    let get = |id: TensorId| -> Result<Option<Matrix<'a>>, WeightsError> {
        let Some(t) = g.tensor(&id.gguf_name()) else {
            return if id.role.required(cfg.qk_norm, cfg.post_norms) {
                Err(WeightsError::Missing(id, Naming::Gguf))
            } else {
                Ok(None)
            };
        };
        let (rows, cols) = id.shape(&dims);
        matrix_of(&t)
            .filter(|m| m.rows == rows && m.cols == cols)
            .map(Some)
            .ok_or(WeightsError::Shape(id, Naming::Gguf))
    };
    let embed = get(TensorId::global(Role::Embedding))?.unwrap_or_default();
    let final_norm = get(TensorId::global(Role::FinalNorm))?.unwrap_or_default();
    let output = get(TensorId::global(Role::Output))?.unwrap_or(embed);
    let mut layers = heapless::Vec::new();
    for l in 0..cfg.n_layers.min(MAX_LAYERS) {
        let mut lw = LayerWeights::default();
        for role in Role::per_layer() {
            if let (Some(m), Some(slot)) = (get(TensorId::layer(role, l))?, lw.slot(role)) {
                *slot = m;
            }
        }
        // The config caps layers at MAX_LAYERS, so this always fits.
        let _ = layers.push(lw);
    }
    Ok(Weights {
        embed,
        output,
        final_norm,
        layers,
    })
}

/// `"<arch><suffix>"`, without allocating (GGUF keys are short; a longer
/// one is cut and then simply not found).
fn key(arch: &str, suffix: &str) -> heapless::String<96> {
    let mut k = heapless::String::new();
    let _ = core::fmt::Write::write_fmt(&mut k, format_args!("{arch}{suffix}"));
    k
}
