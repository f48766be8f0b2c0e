//! Hugging Face Gemma 2/3 checkpoints as a conversion source: a directory
//! with `config.json` and `model.safetensors`, or shards listed by
//! `model.safetensors.index.json`. Tensors use Hugging Face's names
//! (`model.layers.N.self_attn.q_proj.weight`, ...), `[out, in]` layouts and
//! norm gains stored as the `w` of `x * (1 + w)`; F32, BF16 and F16 are
//! read. Multimodal Gemma 3 checkpoints keep the text model under a prefix
//! (`language_model.model.`), which is found from the embedding's name.

use crate::bytes::map_file;
use crate::source::{err, ConvertError, Source};
use gemma_core::format::safetensors::{Dtype, Safetensors, MAX_DIMS};
use gemma_core::model::{Family, Fields, ModelConfig};
use gemma_core::weights::TensorId;
use serde_json::Value;
use std::collections::HashMap;
use std::ops::Deref;
use std::path::Path;

type Mapped = Box<dyn Deref<Target = [u8]>>;

/// Where one tensor lies: its shard, dtype, shape and byte range there,
/// recorded once when the shard's header is validated.
struct Entry {
    shard: usize,
    dtype: Dtype,
    dims: [u64; MAX_DIMS],
    n_dims: usize,
    bytes: std::ops::Range<usize>,
}

/// An opened checkpoint: its config and every shard mapped.
pub struct HfCheckpoint {
    pub config: ModelConfig,
    shards: Vec<Mapped>,
    index: HashMap<String, Entry>,
    prefix: String,
}

fn json(path: &Path) -> Result<Value, ConvertError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| ConvertError::Read(path.to_path_buf(), e))?;
    serde_json::from_str(&text).map_err(|e| err(format!("{}: {e}", path.display())))
}

/// Gemma's text-model configuration from `config.json`: what it states,
/// with Gemma's rules applied by [`ModelConfig::derive`] as for every
/// other format.
pub fn model_config(v: &Value) -> Result<ModelConfig, ConvertError> {
    let f = fields(v)?;
    ModelConfig::derive(&f).map_err(|e| err(format!("config.json: {e}")))
}

/// What `config.json` states, in the fields every loader fills.
fn fields(v: &Value) -> Result<Fields, ConvertError> {
    // Multimodal Gemma 3 and PaliGemma nest the language model's settings.
    let c = v.get("text_config").unwrap_or(v);
    let model_type = c
        .get("model_type")
        .or_else(|| v.get("model_type"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let family = match model_type {
        "gemma3_text" | "gemma3" => Family::Gemma3,
        "gemma2" => Family::Gemma2,
        "gemma" => Family::Gemma1,
        other => {
            return Err(err(format!(
                "config.json: model_type {other:?} is not Gemma, Gemma 2 or Gemma 3"
            )))
        }
    };
    let default = |k: &str| config_default(model_type, k);
    let opt_uint = |k: &str| -> Result<Option<usize>, ConvertError> {
        match c.get(k) {
            None | Some(Value::Null) => Ok(default(k).map(|v| v as usize)),
            Some(x) => x
                .as_u64()
                .filter(|&v| v > 0 && v <= 1 << 30)
                .map(|v| Some(v as usize))
                .ok_or_else(|| err(format!("config.json: {k} is out of range"))),
        }
    };
    let uint = |k: &str| {
        opt_uint(k)?.ok_or_else(|| err(format!("config.json: {k} missing or out of range")))
    };
    let float = |k: &str| {
        c.get(k)
            .and_then(Value::as_f64)
            .or_else(|| default(k))
            .map(|x| x as f32)
    };
    let mut f = Fields::new(family);
    f.d_model = uint("hidden_size")?;
    f.n_layers = uint("num_hidden_layers")?;
    f.d_ff = uint("intermediate_size")?;
    f.n_heads = uint("num_attention_heads")?;
    f.n_kv_heads = opt_uint("num_key_value_heads")?.unwrap_or(f.n_heads);
    f.head_dim = opt_uint("head_dim")?;
    f.vocab_size = uint("vocab_size")?;
    f.context_length = uint("max_position_embeddings")?;
    f.rms_eps = float("rms_norm_eps");
    f.sliding_window = opt_uint("sliding_window")?;
    let stated = |k: &str| c.get(k).and_then(Value::as_u64).map(|v| v as usize);
    f.sliding_window_pattern = match stated("sliding_window_pattern") {
        Some(p) => Some(p),
        None => match stated("_sliding_window_pattern") {
            Some(p) => Some(p),
            None => layer_types_period(c)?.or(opt_uint("sliding_window_pattern")?),
        },
    };
    f.rope_theta = float("rope_theta");
    f.rope_local_base = float("rope_local_base_freq");
    // `rope_scaling: null` (or absent) is a statement too: no scaling.
    f.rope_scaling = Some(match c.get("rope_scaling") {
        None | Some(Value::Null) => 1.0,
        Some(r) => {
            let kind = r
                .get("rope_type")
                .or_else(|| r.get("type"))
                .and_then(Value::as_str);
            if kind != Some("linear") {
                return Err(err(format!(
                    "config.json: rope_scaling {r} is not linear scaling"
                )));
            }
            r.get("factor")
                .and_then(Value::as_f64)
                .ok_or_else(|| err("config.json: rope_scaling has no factor"))? as f32
        }
    });
    f.query_pre_attn_scalar = float("query_pre_attn_scalar");
    f.attn_softcap = float("attn_logit_softcapping");
    f.final_softcap = float("final_logit_softcapping");
    f.norm_gains_include_one = false;
    Ok(f)
}

/// What transformers' config class for `model_type` assumes where a
/// `config.json` is silent (`GemmaConfig`, `Gemma2Config`,
/// `Gemma3TextConfig`): the multimodal Gemma 3 and PaliGemma 2 configs
/// state only what differs from these.
fn config_default(model_type: &str, key: &str) -> Option<f64> {
    let table: &[(&str, f64)] = match model_type {
        "gemma" => &[
            ("vocab_size", 256_000.0),
            ("hidden_size", 3072.0),
            ("intermediate_size", 24_576.0),
            ("num_hidden_layers", 28.0),
            ("num_attention_heads", 16.0),
            ("num_key_value_heads", 16.0),
            ("head_dim", 256.0),
            ("max_position_embeddings", 8192.0),
            ("rms_norm_eps", 1e-6),
            ("rope_theta", 10_000.0),
        ],
        "gemma2" => &[
            ("vocab_size", 256_000.0),
            ("hidden_size", 2304.0),
            ("intermediate_size", 9216.0),
            ("num_hidden_layers", 26.0),
            ("num_attention_heads", 8.0),
            ("num_key_value_heads", 4.0),
            ("head_dim", 256.0),
            ("max_position_embeddings", 8192.0),
            ("rms_norm_eps", 1e-6),
            ("rope_theta", 10_000.0),
            ("query_pre_attn_scalar", 256.0),
            ("sliding_window", 4096.0),
            ("final_logit_softcapping", 30.0),
            ("attn_logit_softcapping", 50.0),
        ],
        "gemma3_text" | "gemma3" => &[
            ("vocab_size", 262_208.0),
            ("hidden_size", 2304.0),
            ("intermediate_size", 9216.0),
            ("num_hidden_layers", 26.0),
            ("num_attention_heads", 8.0),
            ("num_key_value_heads", 4.0),
            ("head_dim", 256.0),
            ("max_position_embeddings", 131_072.0),
            ("rms_norm_eps", 1e-6),
            ("rope_theta", 1_000_000.0),
            ("query_pre_attn_scalar", 256.0),
            ("sliding_window", 4096.0),
            ("rope_local_base_freq", 10_000.0),
            ("sliding_window_pattern", 6.0),
        ],
        _ => &[],
    };
    table.iter().find(|(k, _)| *k == key).map(|&(_, v)| v)
}

/// The period of newer configs' `layer_types` list (`sliding_attention`
/// five times, then `full_attention`, ...), which must repeat exactly.
fn layer_types_period(c: &Value) -> Result<Option<usize>, ConvertError> {
    let Some(types) = c.get("layer_types").and_then(Value::as_array) else {
        return Ok(None);
    };
    let full = |i: usize| types[i].as_str() == Some("full_attention");
    let Some(first) = (0..types.len()).find(|&i| full(i)) else {
        return Err(err("config.json: layer_types has no full_attention layer"));
    };
    let period = first + 1;
    if (0..types.len()).any(|i| full(i) != ((i + 1) % period == 0)) {
        return Err(err(
            "config.json: layer_types do not repeat with a fixed period",
        ));
    }
    Ok(Some(period))
}

impl HfCheckpoint {
    /// Opens the checkpoint in `dir`; a directory without `config.json`
    /// is [`ConvertError::NotCheckpoint`].
    pub fn open(dir: &Path) -> Result<Self, ConvertError> {
        let config_path = dir.join("config.json");
        if !config_path.is_file() {
            return Err(ConvertError::NotCheckpoint(dir.to_path_buf()));
        }
        let config = model_config(&json(&config_path)?)?;
        let index_path = dir.join("model.safetensors.index.json");
        let files: Vec<String> = if index_path.is_file() {
            let idx = json(&index_path)?;
            let map = idx
                .get("weight_map")
                .and_then(Value::as_object)
                .ok_or_else(|| err(format!("{}: no weight_map", index_path.display())))?;
            let mut files: Vec<String> = map
                .values()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            files.sort();
            files.dedup();
            files
        } else {
            vec!["model.safetensors".into()]
        };
        let mut shards = Vec::new();
        let mut index = HashMap::new();
        for f in files {
            if f.contains('/') || f.contains('\\') || f.starts_with('.') {
                return Err(err(format!(
                    "shard name {f:?} leaves the checkpoint directory"
                )));
            }
            let path = dir.join(&f);
            let bytes: Mapped =
                Box::new(map_file(&path).map_err(|e| ConvertError::Read(path.clone(), e))?);
            let st =
                Safetensors::parse(&bytes).map_err(|e| err(format!("{}: {e}", path.display())))?;
            for t in st.tensors() {
                // The view is a sub-slice of the mapping; its offset is
                // plain address arithmetic.
                let start = t.data.as_ptr() as usize - bytes.as_ptr() as usize;
                let entry = Entry {
                    shard: shards.len(),
                    dtype: t.dtype,
                    dims: t.dims,
                    n_dims: t.n_dims,
                    bytes: start..start + t.data.len(),
                };
                index.insert(t.name.to_string(), entry);
            }
            shards.push(bytes);
        }
        let prefix = index
            .keys()
            .find_map(|k| k.strip_suffix("embed_tokens.weight"))
            .ok_or_else(|| err("the checkpoint has no embed_tokens.weight"))?
            .to_string();
        Ok(HfCheckpoint {
            config,
            shards,
            index,
            prefix,
        })
    }

    fn name(&self, id: TensorId) -> String {
        id.hf_name(&self.prefix).to_string()
    }

    fn entry(&self, name: &str) -> Result<&Entry, ConvertError> {
        self.index
            .get(name)
            .ok_or_else(|| err(format!("missing tensor {name}")))
    }
}

/// A tensor's elements as f32.
fn to_f32(name: &str, dtype: Dtype, data: &[u8]) -> Result<Vec<f32>, ConvertError> {
    let two = |c: &[u8]| u16::from_le_bytes([c[0], c[1]]);
    Ok(match dtype {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|c| f32::from_bits((two(c) as u32) << 16))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|c| half::f16::from_bits(two(c)).to_f32())
            .collect(),
        other => {
            return Err(err(format!(
                "{name}: dtype {} is not a float type (F32, BF16, F16)",
                other.name()
            )))
        }
    })
}

impl Source for HfCheckpoint {
    fn matrix(&self, id: TensorId, rows: usize, cols: usize) -> Result<Vec<f32>, ConvertError> {
        let name = self.name(id);
        let e = self.entry(&name)?;
        let shape = &e.dims[..e.n_dims];
        let ok = match shape {
            [r, c] => (*r as usize, *c as usize) == (rows, cols),
            [n] => rows == 1 && *n as usize == cols,
            _ => false,
        };
        if !ok {
            return Err(err(format!(
                "tensor {name} has shape {shape:?}, expected [{rows}, {cols}]"
            )));
        }
        to_f32(&name, e.dtype, &self.shards[e.shard][e.bytes.clone()])
    }

    fn norm(&self, id: TensorId, n: usize) -> Result<Vec<f32>, ConvertError> {
        self.matrix(id, 1, n)
    }
}
