//! Hostile files across every format gemma-rs reads (GGUF, gemma.cpp
//! `.sbs`, safetensors, SentencePiece protos), generated deterministically
//! from small valid ones by the edits each case names. The CLI test feeds
//! them to `gemma info`; the allocation test opens them under a counting
//! allocator.

use gemma_core::codec::Codec;
use gemma_core::format::sbs::{
    ConfigStorage, KnownModel, Model, PromptWrapping, TensorType, TocEntry,
};
use gemma_platform::sbs_writer::{config_bytes, toc_bytes, write_blob_store};
use gemma_platform::synthetic::{tiny_model, TinySpec};
use std::path::PathBuf;

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{:?} not found", String::from_utf8_lossy(needle)))
}

/// The byte offset just past metadata key `key` (where its type word is).
fn after_key(bytes: &[u8], key: &str) -> usize {
    let mut needle = (key.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(key.as_bytes());
    find(bytes, &needle) + needle.len()
}

fn put(bytes: &mut [u8], at: usize, v: &[u8]) {
    bytes[at..at + v.len()].copy_from_slice(v);
}

/// The tiny model with the u32 value of `key` replaced.
fn gguf_meta_u32(key: &str, v: u32) -> Vec<u8> {
    let mut b = tiny_model(&TinySpec::default());
    let at = after_key(&b, key) + 4;
    put(&mut b, at, &v.to_le_bytes());
    b
}

fn gguf_meta_f32(key: &str, v: f32) -> Vec<u8> {
    let mut b = tiny_model(&TinySpec::default());
    let at = after_key(&b, key) + 4;
    put(&mut b, at, &v.to_le_bytes());
    b
}

/// The tiny model with tensor `name`'s info edited: `edit(bytes, at)` where
/// `at` points at its dimension count.
fn gguf_tensor(name: &str, edit: impl FnOnce(&mut Vec<u8>, usize)) -> Vec<u8> {
    let mut b = tiny_model(&TinySpec::default());
    // Tensor infos follow the metadata, so the last match is the info.
    let mut needle = (name.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(name.as_bytes());
    let at = b
        .windows(needle.len())
        .rposition(|w| w == needle)
        .expect("tensor info")
        + needle.len();
    edit(&mut b, at);
    b
}

/// A GGUF header and whatever follows it.
fn gguf_raw(version: u32, tensors: u64, kvs: u64, body: &[u8]) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&tensors.to_le_bytes());
    b.extend_from_slice(&kvs.to_le_bytes());
    b.extend_from_slice(body);
    b
}

fn key(k: &str) -> Vec<u8> {
    let mut b = (k.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(k.as_bytes());
    b
}

pub fn gguf_cases() -> Cases {
    let arr = |ty: u32, count: u64| {
        let mut b = key("a");
        b.extend_from_slice(&9u32.to_le_bytes());
        b.extend_from_slice(&ty.to_le_bytes());
        b.extend_from_slice(&count.to_le_bytes());
        b
    };
    let mut nested = key("n");
    for _ in 0..2000 {
        nested.extend_from_slice(&9u32.to_le_bytes());
        nested.extend_from_slice(&9u32.to_le_bytes());
        nested.extend_from_slice(&1u64.to_le_bytes());
    }
    let tiny = tiny_model(&TinySpec::default());
    vec![
        ("empty", vec![]),
        ("magic_only", b"GGUF".to_vec()),
        ("version_1", gguf_raw(1, 0, 0, &[])),
        ("version_99", gguf_raw(99, 0, 0, &[])),
        ("2e40_tensors", gguf_raw(3, 1 << 40, 0, &[])),
        ("2e40_kvs", gguf_raw(3, 0, 1 << 40, &[])),
        (
            "2e62_byte_key",
            gguf_raw(3, 0, 1, &(1u64 << 62).to_le_bytes()),
        ),
        (
            "value_type_99",
            gguf_raw(3, 0, 1, &[key("k"), 99u32.to_le_bytes().to_vec()].concat()),
        ),
        ("2e40_u32_array", gguf_raw(3, 0, 1, &arr(4, 1 << 40))),
        ("2e40_string_array", gguf_raw(3, 0, 1, &arr(8, 1 << 40))),
        ("nested_arrays", gguf_raw(3, 0, 1, &nested)),
        (
            "string_not_utf8",
            gguf_raw(
                3,
                0,
                1,
                &[
                    key("k"),
                    8u32.to_le_bytes().to_vec(),
                    2u64.to_le_bytes().to_vec(),
                    vec![0xff, 0xfe],
                ]
                .concat(),
            ),
        ),
        ("truncated_model", tiny[..tiny.len() / 2].to_vec()),
        ("value_string_2e62", {
            // The architecture string's length, inside an otherwise valid model.
            let mut b = tiny.clone();
            let at = after_key(&b, "general.architecture") + 4;
            put(&mut b, at, &(1u64 << 62).to_le_bytes());
            b
        }),
        ("token_string_2e62", {
            // The first vocabulary entry's length.
            let mut b = tiny.clone();
            let at = after_key(&b, "tokenizer.ggml.tokens") + 4 + 4 + 8;
            put(&mut b, at, &(1u64 << 62).to_le_bytes());
            b
        }),
        ("zero_layers", gguf_meta_u32("gemma3.block_count", 0)),
        (
            "million_layers",
            gguf_meta_u32("gemma3.block_count", 1_000_000),
        ),
        (
            "width_2e31",
            gguf_meta_u32("gemma3.embedding_length", 1 << 31),
        ),
        (
            "zero_heads",
            gguf_meta_u32("gemma3.attention.head_count", 0),
        ),
        (
            "kv_heads_not_dividing",
            gguf_meta_u32("gemma3.attention.head_count_kv", 3),
        ),
        ("zero_context", gguf_meta_u32("gemma3.context_length", 0)),
        (
            "head_dim_mismatch",
            gguf_meta_u32("gemma3.attention.key_length", 7),
        ),
        (
            "rms_eps_nan",
            gguf_meta_f32("gemma3.attention.layer_norm_rms_epsilon", f32::NAN),
        ),
        (
            "rope_base_negative",
            gguf_meta_f32("gemma3.rope.freq_base", -1.0),
        ),
        (
            "bos_out_of_vocab",
            gguf_meta_u32("tokenizer.ggml.bos_token_id", u32::MAX),
        ),
        ("vocab_2e40_tokens", {
            let mut b = tiny_model(&TinySpec::default());
            let at = after_key(&b, "tokenizer.ggml.tokens") + 8;
            put(&mut b, at, &(1u64 << 40).to_le_bytes());
            b
        }),
        (
            "tensor_offset_past_end",
            gguf_tensor("token_embd.weight", |b, at| {
                // n_dims (2), two dims, type, then the offset.
                put(b, at + 4 + 16 + 4, &(1u64 << 50).to_le_bytes());
            }),
        ),
        (
            "tensor_2e31_by_2e31",
            gguf_tensor("token_embd.weight", |b, at| {
                put(b, at + 4, &(1u64 << 31).to_le_bytes());
                put(b, at + 12, &(1u64 << 31).to_le_bytes());
            }),
        ),
        (
            "tensor_type_99",
            gguf_tensor("output_norm.weight", |b, at| {
                put(b, at + 4 + 8, &99u32.to_le_bytes())
            }),
        ),
        (
            "tensor_99_dims",
            gguf_tensor("output_norm.weight", |b, at| {
                put(b, at, &99u32.to_le_bytes())
            }),
        ),
        (
            "tensor_unaligned_offset",
            gguf_tensor("output_norm.weight", |b, at| {
                let o = u64::from_le_bytes(b[at + 16..at + 24].try_into().unwrap());
                put(b, at + 16, &(o + 1).to_le_bytes());
            }),
        ),
    ]
}

/// gemma.cpp's 270M config with `edit` applied.
fn config(edit: impl FnOnce(&mut gemma_core::format::sbs::ModelConfig)) -> Vec<u8> {
    let mut storage = ConfigStorage::default();
    let k = KnownModel::get(Model::Gemma3_270M).unwrap();
    let mut cfg = k.config(TensorType::SFP, PromptWrapping::GemmaPt, &mut storage);
    edit(&mut cfg);
    config_bytes(&cfg).unwrap()
}

fn store(blobs: &[(&str, &[u8])]) -> Vec<u8> {
    write_blob_store(blobs).unwrap()
}

pub fn sbs_cases() -> Cases {
    let cfg = config(|_| {});
    let norm = TocEntry::new("c_final_norm", Codec::BF16, 1, 640, 1.0).unwrap();
    let toc = toc_bytes([norm]).unwrap();
    let norm_bytes = vec![0u8; 1280];
    let tok = std::fs::read(spm_path()).unwrap();
    let model = |cfg: &[u8], toc: &[u8], tok: &[u8]| {
        store(&[
            ("c_final_norm", &norm_bytes),
            ("config", cfg),
            ("tokenizer", tok),
            ("toc", toc),
        ])
    };
    let good = model(&cfg, &toc, &tok[..64]);
    let n = good.len();
    let patch = |at: usize, v: &[u8]| {
        let mut b = good.clone();
        put(&mut b, at, v);
        b
    };
    // Trailer: keys (16 each), ranges (16 each), then magic, count, size.
    let blobs = 4;
    let keys = n - 16 - 32 * blobs;
    let ranges = keys + 16 * blobs;
    let mut big = norm;
    (big.rows, big.cols, big.stride) = (1 << 31, 1 << 31, 1 << 31);
    vec![
        ("magic_only", 0x0A53_4253u32.to_le_bytes().to_vec()),
        (
            "v1_2e31_blobs",
            [0x0A53_4253u32.to_le_bytes(), (1u32 << 31).to_le_bytes()].concat(),
        ),
        ("v1_header_claims_more", {
            let mut b = 0x0A53_4253u32.to_le_bytes().to_vec();
            b.extend_from_slice(&3u32.to_le_bytes());
            b.extend_from_slice(&(1u64 << 40).to_le_bytes());
            b
        }),
        ("truncated_store", good[..n - 1].to_vec()),
        (
            "trailer_count_2e31",
            patch(n - 12, &(1u32 << 31).to_le_bytes()),
        ),
        (
            "trailer_size_wrong",
            patch(n - 8, &((n as u64) * 2).to_le_bytes()),
        ),
        (
            "blob_offset_unaligned",
            patch(ranges, &257u64.to_le_bytes()),
        ),
        ("blob_size_zero", patch(ranges + 8, &0u64.to_le_bytes())),
        (
            "blob_past_end",
            patch(ranges + 8, &(1u64 << 40).to_le_bytes()),
        ),
        ("key_not_utf8", patch(keys, &[0xff, 0xfe])),
        (
            "no_config",
            store(&[("c_final_norm", &norm_bytes), ("toc", &toc)]),
        ),
        (
            "no_toc",
            store(&[("c_final_norm", &norm_bytes), ("config", &cfg)]),
        ),
        (
            "no_tokenizer",
            store(&[
                ("c_final_norm", &norm_bytes),
                ("config", &cfg),
                ("toc", &toc),
            ]),
        ),
        ("config_garbage", model(&[0xAB; 40], &toc, &tok[..64])),
        ("config_model_99", {
            let mut c = cfg.clone();
            put(&mut c, 6 * 4, &99u32.to_le_bytes());
            model(&c, &toc, &tok[..64])
        }),
        ("config_layers_2e31", {
            let mut c = cfg.clone();
            put(&mut c, 19 * 4, &(1u32 << 31).to_le_bytes());
            model(&c, &toc, &tok[..64])
        }),
        (
            "config_zero_width",
            model(&config(|c| c.model_dim = 0), &toc, &tok[..64]),
        ),
        ("toc_garbage", model(&cfg, &[0x7F; 36], &tok[..64])),
        (
            "toc_huge_tensor",
            model(&cfg, &toc_bytes([big]).unwrap(), &tok[..64]),
        ),
        ("toc_names_missing_blob", {
            let e = TocEntry::new("nope", Codec::BF16, 1, 640, 1.0).unwrap();
            model(&cfg, &toc_bytes([e]).unwrap(), &tok[..64])
        }),
        ("missing_weights", model(&cfg, &toc, &tok)),
    ]
}

fn safetensors(header: &str, data: usize) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.resize(v.len() + data, 0);
    v
}

pub fn safetensors_cases() -> Cases {
    let t = |body: &str, data: usize| safetensors(&format!(r#"{{"t":{body}}}"#), data);
    vec![
        ("header_len_2e62", {
            let mut b = (1u64 << 62).to_le_bytes().to_vec();
            b.extend_from_slice(b"{}");
            b
        }),
        ("header_past_end", {
            let mut b = 4096u64.to_le_bytes().to_vec();
            b.extend_from_slice(b"{\"a\":1}");
            b
        }),
        ("unclosed", safetensors("{\"t\":{\"dtype\":\"F32\"", 0)),
        (
            "unknown_dtype",
            t(r#"{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}"#, 8),
        ),
        (
            "size_mismatch",
            t(r#"{"dtype":"F32","shape":[2],"data_offsets":[0,7]}"#, 8),
        ),
        (
            "offsets_past_end",
            t(r#"{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#, 2),
        ),
        (
            "reversed_offsets",
            t(r#"{"dtype":"F32","shape":[0],"data_offsets":[8,0]}"#, 8),
        ),
        (
            "shape_overflow",
            t(
                r#"{"dtype":"F64","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}"#,
                8,
            ),
        ),
        (
            "dim_beyond_u64",
            t(
                r#"{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,8]}"#,
                8,
            ),
        ),
        (
            "negative_dim",
            t(r#"{"dtype":"F32","shape":[-1],"data_offsets":[0,8]}"#, 8),
        ),
        (
            "nine_dims",
            t(
                r#"{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,1]}"#,
                1,
            ),
        ),
        ("missing_offsets", t(r#"{"dtype":"F32","shape":[2]}"#, 8)),
        (
            "metadata_not_strings",
            safetensors(r#"{"__metadata__":{"a":[1,2]}}"#, 0),
        ),
        ("header_not_utf8", {
            let mut b = 3u64.to_le_bytes().to_vec();
            b.extend_from_slice(&[b'{', 0xff, b'}']);
            b
        }),
    ]
}

pub fn spm_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../core/tests/data/gemma3-tokenizer.spm")
}

pub fn spm_cases() -> Cases {
    let real = std::fs::read(spm_path()).unwrap();
    // Field 1 (pieces), length-delimited, with a length far past the end.
    let mut huge_len = vec![0x0A];
    huge_len.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]);
    // A piece whose text is not UTF-8.
    let bad_piece = vec![0x0A, 0x04, 0x0A, 0x02, 0xFF, 0xFE];
    vec![
        ("single_byte", vec![0x08]),
        (
            "random_bytes",
            (0..512u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
        ),
        ("huge_length", huge_len),
        ("truncated_real", real[..1000].to_vec()),
        ("piece_not_utf8", bad_piece),
        (
            "varint_overlong",
            vec![
                0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
            ],
        ),
        ("no_pieces", vec![0x12, 0x00]),
    ]
}

/// Named hostile files.
pub type Cases = Vec<(&'static str, Vec<u8>)>;

/// Every case, grouped by format (also the file extension used).
pub fn corpus() -> Vec<(&'static str, Cases)> {
    vec![
        ("gguf", gguf_cases()),
        ("sbs", sbs_cases()),
        ("safetensors", safetensors_cases()),
        ("spm", spm_cases()),
    ]
}
