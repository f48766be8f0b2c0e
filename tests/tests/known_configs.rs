//! Every known Gemma model, built from each source format's metadata, gets
//! the configuration its public definition states.
//!
//! `tests/data/known_models.json` was compiled from public sources only
//! (Hugging Face `config.json` texts, transformers' model and config
//! definitions, llama.cpp's converter, gemma.cpp's model table), not from
//! this code; its `readme` says how. For each model the test builds:
//! - a GGUF file holding the metadata llama.cpp's converter writes,
//! - the `config.json` as published (multimodal ones state only what
//!   differs from transformers' defaults),
//! - the gemma.cpp `.sbs` config of the model, where gemma.cpp has it,
//!
//! and checks every derived rule against `expected`.

use gemma_core::format::gguf::Gguf;
use gemma_core::format::sbs::{self, ConfigStorage, KnownModel, TensorType};
use gemma_core::load;
use gemma_core::model::ModelConfig;
use gemma_platform::gguf_writer::{GgufWriter, MetaValue};
use serde_json::Value;

fn models() -> Vec<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/known_models.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["models"].as_array().unwrap().clone()
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// A metadata-only GGUF file of `meta` (JSON numbers with a fraction or
/// exponent are f32, others u32; strings are strings).
fn gguf_of(meta: &serde_json::Map<String, Value>) -> Vec<u8> {
    let mut w = GgufWriter::default();
    for (k, v) in meta {
        let value = match v {
            Value::String(s) => MetaValue::Str(s.clone()),
            Value::Number(n) if n.is_u64() => MetaValue::U32(n.as_u64().unwrap() as u32),
            Value::Number(n) => MetaValue::F32(n.as_f64().unwrap() as f32),
            Value::Bool(b) => MetaValue::Bool(*b),
            other => panic!("{k}: {other}"),
        };
        w.meta(k, value);
    }
    w.to_bytes()
}

/// The config a GGUF file of the model gets.
fn from_gguf(m: &Value) -> Option<(ModelConfig, usize)> {
    let meta = match &m["gguf_metadata"] {
        Value::Object(o) if !o.is_empty() => o.clone(),
        // llama.cpp converts no PaliGemma; its language model alone would
        // be written as Gemma 2.
        _ => m["gguf_metadata_if_converted_as_gemma2"]
            .as_object()?
            .clone(),
    };
    let vocab = meta["vocab_size"].as_u64().unwrap() as usize;
    let mut meta = meta;
    meta.remove("vocab_size");
    let bytes = gguf_of(&meta);
    let g = Gguf::parse(&bytes).unwrap();
    let fields = load::gguf::fields(&g, vocab).unwrap();
    Some((ModelConfig::derive(&fields).unwrap(), vocab))
}

/// The config a Hugging Face checkpoint of the model gets from its
/// `config.json` as published.
fn from_hf(m: &Value) -> ModelConfig {
    let mut config = m["hf_config"].clone();
    // The file's own annotation, not part of the published config.
    config
        .as_object_mut()
        .unwrap()
        .remove("text_config_defaults_applied");
    gemma_platform::hf::model_config(&config).unwrap()
}

/// gemma.cpp's model of that name, if it has one.
fn sbs_model(name: &str) -> Option<sbs::Model> {
    use sbs::Model as M;
    Some(match name {
        "gemma2-2b" => M::Gemma2_2B,
        "gemma2-9b" => M::Gemma2_9B,
        "gemma2-27b" => M::Gemma2_27B,
        "gemma3-270m" => M::Gemma3_270M,
        "gemma3-1b" => M::Gemma3_1B,
        "gemma3-4b" => M::Gemma3_4B,
        "gemma3-12b" => M::Gemma3_12B,
        "gemma3-27b" => M::Gemma3_27B,
        "paligemma2-3b-224" => M::PaliGemma2_3B_224,
        "paligemma2-10b-224" => M::PaliGemma2_10B_224,
        _ => return None,
    })
}

/// The config an `.sbs` file of the model gets: gemma.cpp's canonical
/// config, written and parsed back as its `config` blob.
fn from_sbs(name: &str) -> Option<ModelConfig> {
    let k = KnownModel::get(sbs_model(name)?).unwrap();
    let mut storage = ConfigStorage::default();
    let cfg = k.config(TensorType::BF16, k.default_wrapping, &mut storage);
    let bytes = gemma_platform::sbs_writer::config_bytes(&cfg).unwrap();
    let parsed = sbs::ModelConfig::parse(&bytes).unwrap();
    Some(ModelConfig::derive(&load::sbs::fields(&parsed).unwrap()).unwrap())
}

/// Every rule of `c` against `e` (the model's `expected`).
fn check_rules(what: &str, c: &ModelConfig, e: &Value) {
    let int = |k: &str| num(e, k) as usize;
    assert_eq!(
        (c.n_layers, c.d_model, c.d_ff),
        (int("n_layers"), int("d_model"), int("d_ff")),
        "{what}: shape"
    );
    assert_eq!(
        (c.n_heads, c.n_kv_heads, c.head_dim),
        (int("n_heads"), int("n_kv_heads"), int("head_dim")),
        "{what}: heads"
    );
    let close = |a: f32, b: f64, k: &str| {
        assert!(
            ((a as f64) - b).abs() <= 1e-6 * b.abs().max(1.0),
            "{what}: {k} {a} vs {b}"
        )
    };
    close(c.rms_eps, num(e, "rms_eps"), "rms_eps");
    close(
        c.query_scale,
        1.0 / num(e, "query_scale_divisor").sqrt(),
        "query scale",
    );
    close(
        c.rope_base_global,
        num(e, "rope_base_global"),
        "global RoPE base",
    );
    close(
        c.rope_base_local,
        num(e, "rope_base_local"),
        "local RoPE base",
    );
    close(
        c.rope_scale_global,
        num(e, "rope_scale_global"),
        "RoPE scaling",
    );
    close(c.attn_softcap, num(e, "attn_softcap"), "attention soft-cap");
    close(c.final_softcap, num(e, "final_softcap"), "final soft-cap");
    close(c.embed_scale, num(e, "embed_scale"), "embedding scale");
    assert_eq!(c.sliding_window, int("sliding_window"), "{what}: window");
    let local: Vec<usize> = (0..c.n_layers).filter(|&l| c.is_local(l)).collect();
    let want: Vec<usize> = e["local_layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(local, want, "{what}: local layers");
    assert_eq!(
        (c.post_norms, c.qk_norm),
        (
            e["post_norms"].as_bool().unwrap(),
            e["qk_norm"].as_bool().unwrap()
        ),
        "{what}: post-norms, QK-norm"
    );
    assert_eq!(e["norm_gain_convention"], "one_plus_w");
}

#[test]
fn every_known_model_gets_its_published_config_from_every_format() {
    let models = models();
    assert_eq!(
        models.len(),
        13,
        "Gemma 1 2B/7B, Gemma 2 2B/9B/27B, Gemma 3 270M-27B, PaliGemma 2"
    );
    let mut sbs_checked = 0;
    for m in &models {
        let name = m["name"].as_str().unwrap();
        let e = &m["expected"];

        let hf = from_hf(m);
        check_rules(&format!("{name} from config.json"), &hf, e);
        assert_eq!(hf.vocab_size, num(e, "vocab_size") as usize, "{name}");
        assert_eq!(
            hf.context_length,
            num(e, "context_length") as usize,
            "{name}"
        );
        // Hugging Face stores the raw w of (1 + w).
        assert!(hf.norm_gain_plus_one, "{name}");

        let (gguf, vocab) = from_gguf(m).unwrap();
        check_rules(&format!("{name} from GGUF"), &gguf, e);
        assert_eq!(gguf.vocab_size, vocab, "{name}");
        assert_eq!(
            gguf.context_length,
            num(e, "context_length") as usize,
            "{name}"
        );
        // llama.cpp's converter adds the one.
        assert!(!gguf.norm_gain_plus_one, "{name}");

        if let Some(sbs) = from_sbs(name) {
            check_rules(&format!("{name} from .sbs"), &sbs, e);
            // gemma.cpp keeps the tokenizer's vocabulary (no padding rows)
            // and its own context limit, so those two are its own.
            let tokenizer_vocab = e
                .get("vocab_size_tokenizer")
                .map_or_else(|| num(e, "vocab_size"), |v| v.as_f64().unwrap());
            assert_eq!(sbs.vocab_size, tokenizer_vocab as usize, "{name}");
            assert!(sbs.norm_gain_plus_one, "{name}");
            sbs_checked += 1;
        }
    }
    // Every model gemma.cpp knows: Gemma 2 (3), Gemma 3 (5), PaliGemma 2 (2).
    assert_eq!(sbs_checked, 10);
}
