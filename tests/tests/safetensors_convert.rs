//! A Hugging Face checkpoint, written by this test from the real GGUF's
//! dequantized weights in Hugging Face's names, layouts and norm
//! convention, converts to `.sbs` files byte-identical to the ones the GGUF
//! path writes (which `sbs_goldens.rs` teacher-forces against the goldens),
//! and the F32 one meets the F32 bar itself. Once as F32 in two shards
//! with an index, once as BF16 in a single file.

use gemma_core::codec::{self, Codec};
use gemma_platform::convert::gguf_to_sbs;
use gemma_platform::convert::hf_to_sbs;
use gemma_platform::LoadedModel;
use gemma_tests::{real_model_path, teacher_forced, TempDir, Tolerances};
use serde_json::json;
use std::path::{Path, PathBuf};

/// Hugging Face's name for a GGUF tensor of Gemma 3.
fn hf_name(gguf: &str) -> String {
    let roles = [
        ("attn_q", "self_attn.q_proj"),
        ("attn_k", "self_attn.k_proj"),
        ("attn_v", "self_attn.v_proj"),
        ("attn_output", "self_attn.o_proj"),
        ("ffn_gate", "mlp.gate_proj"),
        ("ffn_up", "mlp.up_proj"),
        ("ffn_down", "mlp.down_proj"),
        ("attn_norm", "input_layernorm"),
        ("post_attention_norm", "post_attention_layernorm"),
        ("ffn_norm", "pre_feedforward_layernorm"),
        ("post_ffw_norm", "post_feedforward_layernorm"),
        ("attn_q_norm", "self_attn.q_norm"),
        ("attn_k_norm", "self_attn.k_norm"),
    ];
    match gguf {
        "token_embd.weight" => "model.embed_tokens.weight".into(),
        "output_norm.weight" => "model.norm.weight".into(),
        _ => {
            let rest = gguf.strip_prefix("blk.").unwrap();
            let (layer, rest) = rest.split_once('.').unwrap();
            let role = rest.strip_suffix(".weight").unwrap();
            let hf = roles.iter().find(|(g, _)| *g == role).unwrap().1;
            format!("model.layers.{layer}.{hf}.weight")
        }
    }
}

/// (name, shape, values) of every tensor, in Hugging Face's form: `[out,
/// in]` shapes and norm gains as the `w` of `x * (1 + w)`.
fn hf_tensors(gguf: &LoadedModel) -> Vec<(String, Vec<u64>, Vec<f32>)> {
    let g = gguf.gguf().unwrap();
    g.tensors()
        .map(|t| {
            let mut v = vec![0f32; t.n_elements() as usize];
            gemma_core::quant::dequantize(t.ty, t.data, &mut v).unwrap();
            if t.n_dims == 1 {
                v.iter_mut().for_each(|x| *x -= 1.0);
            }
            let shape: Vec<u64> = t.dims[..t.n_dims].iter().rev().copied().collect();
            (hf_name(t.name), shape, v)
        })
        .collect()
}

/// Writes one safetensors file; `bf16` stores gemma.cpp's rounding of
/// each value (the codec's BF16 encoder).
fn write_safetensors(path: &Path, tensors: &[&(String, Vec<u64>, Vec<f32>)], bf16: bool) {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut data = Vec::new();
    for (name, shape, values) in tensors {
        let begin = data.len();
        if bf16 {
            let mut b = vec![0u8; values.len() * 2];
            codec::encode(Codec::BF16, values, &mut b, &mut []).unwrap();
            data.extend_from_slice(&b);
        } else {
            values
                .iter()
                .for_each(|v| data.extend_from_slice(&v.to_le_bytes()));
        }
        header.insert(
            name.clone(),
            json!({
                "dtype": if bf16 { "BF16" } else { "F32" },
                "shape": shape,
                "data_offsets": [begin, data.len()],
            }),
        );
    }
    let mut h = serde_json::to_string(&header).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(' ');
    }
    let mut file = (h.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(h.as_bytes());
    file.extend_from_slice(&data);
    std::fs::write(path, file).unwrap();
}

fn write_config(dir: &Path, gguf: &LoadedModel) {
    let c = gguf.model().config;
    let config = json!({
        "architectures": ["Gemma3ForCausalLM"],
        "model_type": "gemma3_text",
        "hidden_size": c.d_model,
        "intermediate_size": c.d_ff,
        "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.n_kv_heads,
        "head_dim": c.head_dim,
        "vocab_size": c.vocab_size,
        "max_position_embeddings": c.context_length,
        "sliding_window": c.sliding_window,
        "sliding_window_pattern": c.sliding_window_pattern,
        "rope_theta": c.rope_base_global,
        "rope_local_base_freq": c.rope_base_local,
        "query_pre_attn_scalar": c.head_dim,
        "rms_norm_eps": c.rms_eps,
        "torch_dtype": "bfloat16",
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

fn tokenizer_proto() -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../core/tests/data/gemma3-tokenizer.spm"),
    )
    .unwrap()
}

fn assert_same_file(a: &Path, b: &Path) {
    let (fa, fb) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    let c = gemma_platform::compare::compare(&fa, &fb).unwrap();
    assert!(
        c.identical(),
        "differing blobs: {:?}, only in GGUF path: {:?}, only in HF path: {:?}",
        c.differing,
        c.only_in_a,
        c.only_in_b
    );
    assert!(fa == fb, "same blobs but different bytes");
}

#[test]
fn sharded_f32_checkpoint_converts_like_the_gguf() {
    let gguf = LoadedModel::open(&real_model_path()).unwrap();
    let dir = TempDir::new(env!("CARGO_TARGET_TMPDIR"), "hf-f32");
    let ckpt = dir.0.join("ckpt");
    std::fs::create_dir_all(&ckpt).unwrap();
    write_config(&ckpt, &gguf);
    std::fs::write(ckpt.join("tokenizer.model"), tokenizer_proto()).unwrap();
    let tensors = hf_tensors(&gguf);
    // Two shards: the embedding alone, then everything else.
    let (embed, rest): (Vec<_>, Vec<_>) = tensors.iter().partition(|t| t.0.contains("embed"));
    let names = [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ];
    write_safetensors(&ckpt.join(names[0]), &embed, false);
    write_safetensors(&ckpt.join(names[1]), &rest, false);
    let weight_map: serde_json::Map<String, serde_json::Value> = tensors
        .iter()
        .map(|t| {
            (
                t.0.clone(),
                json!(names[usize::from(!t.0.contains("embed"))]),
            )
        })
        .collect();
    std::fs::write(
        ckpt.join("model.safetensors.index.json"),
        json!({"metadata": {}, "weight_map": weight_map}).to_string(),
    )
    .unwrap();
    drop(tensors);

    let from_hf = dir.0.join("hf.sbs");
    let from_gguf = dir.0.join("gguf.sbs");
    hf_to_sbs(&ckpt, &from_hf, Codec::F32, None, false).unwrap();
    gguf_to_sbs(
        &real_model_path(),
        &from_gguf,
        Codec::F32,
        &tokenizer_proto(),
    )
    .unwrap();
    assert_same_file(&from_gguf, &from_hf);
    std::fs::remove_file(&from_gguf).unwrap();
    let loaded = LoadedModel::open(&from_hf).unwrap();
    let worst = teacher_forced(&loaded, 0, &Tolerances::GGUF);
    eprintln!("HF F32 .sbs: worst top-20 difference {worst:.2e}");
}

#[test]
fn single_file_bf16_checkpoint_converts_like_the_gguf() {
    let gguf = LoadedModel::open(&real_model_path()).unwrap();
    let dir = TempDir::new(env!("CARGO_TARGET_TMPDIR"), "hf-bf16");
    let ckpt = dir.0.join("ckpt");
    std::fs::create_dir_all(&ckpt).unwrap();
    write_config(&ckpt, &gguf);
    let tensors = hf_tensors(&gguf);
    let all: Vec<_> = tensors.iter().collect();
    write_safetensors(&ckpt.join("model.safetensors"), &all, true);
    drop(tensors);
    let from_hf = dir.0.join("hf.sbs");
    let from_gguf = dir.0.join("gguf.sbs");
    let proto = tokenizer_proto();
    hf_to_sbs(&ckpt, &from_hf, Codec::BF16, Some(&proto), false).unwrap();
    gguf_to_sbs(&real_model_path(), &from_gguf, Codec::BF16, &proto).unwrap();
    assert_same_file(&from_gguf, &from_hf);
}

/// Broken checkpoints: one clear error each.
#[test]
fn bad_checkpoints_are_refused() {
    let dir = TempDir::new(env!("CARGO_TARGET_TMPDIR"), "hf-bad");
    let out = dir.0.join("x.sbs");
    let case = |config: &str, files: &[(&str, &[u8])]| {
        let d = dir.0.join(format!("c{}", config.len() + files.len()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("config.json"), config).unwrap();
        for (n, b) in files {
            std::fs::write(d.join(n), b).unwrap();
        }
        let e = hf_to_sbs(&d, &out, Codec::F32, Some(b"x"), false).unwrap_err();
        let _ = std::fs::remove_dir_all(&d);
        e.to_string()
    };
    assert!(case("{", &[]).contains("config.json"));
    assert!(case(r#"{"model_type": "llama"}"#, &[]).contains("not Gemma"));
    assert!(
        case(r#"{"model_type": "gemma3_text", "hidden_size": 0}"#, &[]).contains("hidden_size")
    );
    let cfg = r#"{"model_type":"gemma3_text","hidden_size":640,"intermediate_size":2048,"num_hidden_layers":18,"num_attention_heads":4,"num_key_value_heads":1,"head_dim":256,"vocab_size":262144,"max_position_embeddings":32768,"sliding_window":512}"#;
    assert!(case(cfg, &[]).contains("model.safetensors"));
    assert!(case(
        cfg,
        &[("model.safetensors", b"\x02\x00\x00\x00\x00\x00\x00\x00{}")]
    )
    .contains("embed_tokens"));
    let index = r#"{"weight_map": {"a": "../escape.safetensors"}}"#;
    assert!(
        case(cfg, &[("model.safetensors.index.json", index.as_bytes())])
            .contains("leaves the checkpoint directory")
    );
    assert!(!out.exists(), "no output file on failure");
}
