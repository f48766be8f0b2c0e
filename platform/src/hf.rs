//! Hugging Face Gemma 2/3 checkpoints as a conversion source: a directory
//! with `config.json` and `model.safetensors`, or shards listed by
//! `model.safetensors.index.json`. Tensors use Hugging Face's names
//! (`model.layers.N.self_attn.q_proj.weight`, ...), `[out, in]` layouts and
//! norm gains stored as the `w` of `x * (1 + w)`; F32, BF16 and F16 are
//! read. Multimodal Gemma 3 checkpoints keep the text model under a prefix
//! (`language_model.model.`), which is found from the embedding's name.

use crate::convert::{err, ConvertError, Source, Weight};
use crate::loaded::map_file;
use gemma_core::format::safetensors::{Dtype, Safetensors, MAX_DIMS};
use gemma_core::model::{Family, ModelConfig};
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
        std::fs::read_to_string(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| err(format!("{}: {e}", path.display())))
}

/// Gemma's text-model configuration from `config.json`.
fn model_config(v: &Value) -> Result<ModelConfig, ConvertError> {
    // Multimodal Gemma 3 nests the language model's settings.
    let c = v.get("text_config").unwrap_or(v);
    let model_type = c
        .get("model_type")
        .or_else(|| v.get("model_type"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let family = match model_type {
        "gemma3_text" | "gemma3" => Family::Gemma3,
        "gemma2" => Family::Gemma2,
        other => {
            return Err(err(format!(
                "config.json: model_type {other:?} is not Gemma 2 or Gemma 3"
            )))
        }
    };
    let uint = |k: &str| -> Result<usize, ConvertError> {
        c.get(k)
            .and_then(Value::as_u64)
            .filter(|&v| v > 0 && v <= 1 << 30)
            .map(|v| v as usize)
            .ok_or_else(|| err(format!("config.json: {k} missing or out of range")))
    };
    let float = |k: &str, default: f64| c.get(k).and_then(Value::as_f64).unwrap_or(default) as f32;
    let (d_model, n_heads) = (uint("hidden_size")?, uint("num_attention_heads")?);
    let head_dim = c
        .get("head_dim")
        .and_then(Value::as_u64)
        .map_or(d_model / n_heads, |v| v as usize);
    let gemma3 = family == Family::Gemma3;
    let pattern = if gemma3 {
        c.get("sliding_window_pattern")
            .or_else(|| c.get("_sliding_window_pattern"))
            .and_then(Value::as_u64)
            .unwrap_or(6) as usize
    } else {
        2
    };
    let query_pre_attn = float("query_pre_attn_scalar", head_dim as f64);
    let cfg = ModelConfig {
        family,
        n_layers: uint("num_hidden_layers")?,
        d_model,
        d_ff: uint("intermediate_size")?,
        n_heads,
        n_kv_heads: uint("num_key_value_heads")?,
        head_dim,
        vocab_size: uint("vocab_size")?,
        context_length: uint("max_position_embeddings")?,
        rms_eps: float("rms_norm_eps", 1e-6),
        sliding_window: uint("sliding_window")?,
        sliding_window_pattern: pattern,
        rope_base_global: float("rope_theta", 10_000.0),
        rope_base_local: float("rope_local_base_freq", 10_000.0),
        rope_scale_global: 1.0,
        attn_softcap: c
            .get("attn_logit_softcapping")
            .and_then(Value::as_f64)
            .unwrap_or(0.0) as f32,
        final_softcap: c
            .get("final_logit_softcapping")
            .and_then(Value::as_f64)
            .unwrap_or(0.0) as f32,
        query_scale: 1.0 / query_pre_attn.sqrt(),
        embed_scale: (d_model as f32).sqrt(),
        qk_norm: gemma3,
        post_norms: true,
        norm_gain_plus_one: true,
    };
    cfg.validate()
        .map_err(|e| err(format!("config.json: {e}")))?;
    Ok(cfg)
}

impl HfCheckpoint {
    pub fn open(dir: &Path) -> Result<Self, ConvertError> {
        let config = model_config(&json(&dir.join("config.json"))?)?;
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
                Box::new(map_file(&path).map_err(|e| err(format!("{}: {e}", path.display())))?);
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

    fn name(&self, w: Weight) -> String {
        let p = &self.prefix;
        let layer = |l: usize, s: &str| format!("{p}layers.{l}.{s}.weight");
        match w {
            Weight::Embedding => format!("{p}embed_tokens.weight"),
            Weight::FinalNorm => format!("{p}norm.weight"),
            Weight::Q(l) => layer(l, "self_attn.q_proj"),
            Weight::K(l) => layer(l, "self_attn.k_proj"),
            Weight::V(l) => layer(l, "self_attn.v_proj"),
            Weight::O(l) => layer(l, "self_attn.o_proj"),
            Weight::Gate(l) => layer(l, "mlp.gate_proj"),
            Weight::Up(l) => layer(l, "mlp.up_proj"),
            Weight::Down(l) => layer(l, "mlp.down_proj"),
            Weight::AttnNorm(l) => layer(l, "input_layernorm"),
            Weight::PostAttnNorm(l) => layer(l, "post_attention_layernorm"),
            Weight::FfnNorm(l) => layer(l, "pre_feedforward_layernorm"),
            Weight::PostFfwNorm(l) => layer(l, "post_feedforward_layernorm"),
            Weight::QNorm(l) => layer(l, "self_attn.q_norm"),
            Weight::KNorm(l) => layer(l, "self_attn.k_norm"),
        }
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
    fn matrix(&self, w: Weight, rows: usize, cols: usize) -> Result<Vec<f32>, ConvertError> {
        let name = self.name(w);
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

    fn norm(&self, w: Weight, n: usize) -> Result<Vec<f32>, ConvertError> {
        self.matrix(w, 1, n)
    }
}

/// Converts the checkpoint in `dir` into an `.sbs` file; the tokenizer is
/// `tokenizer` if given, else the directory's `tokenizer.model`.
pub fn hf_to_sbs(
    dir: &Path,
    to: &Path,
    weights: gemma_core::codec::Codec,
    tokenizer: Option<&[u8]>,
    measure: bool,
) -> Result<Option<Vec<crate::convert::TensorDistortion>>, ConvertError> {
    let ckpt = HfCheckpoint::open(dir)?;
    let owned;
    let proto = match tokenizer {
        Some(t) => t,
        None => {
            let p = dir.join("tokenizer.model");
            owned = std::fs::read(&p).map_err(|e| {
                err(format!(
                    "{}: {e} (pass --tokenizer for a checkpoint without one)",
                    p.display()
                ))
            })?;
            &owned[..]
        }
    };
    crate::convert::write_sbs(&ckpt, &ckpt.config, to, weights, proto, measure)
}
