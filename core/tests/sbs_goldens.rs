//! The `.sbs` reader against files gemma.cpp wrote (commit 3ed403e2), copied
//! from the shared goldens into tests/data/gemmacpp/ (README_sbs.md there):
//! the tiny blob store, the 270M model's directory, `config` and `toc`, and
//! gemma.cpp's own view of them in `model_*_blobs.json`.

use gemma_core::codec::Codec;
use gemma_core::format::sbs::blob_store::MAGIC;
use gemma_core::format::sbs::fields;
use gemma_core::format::sbs::{
    write_toc, ActivationType, BlobStore, Directory, LayerAttentionType, LayerConfig, Layout, List,
    Model, ModelConfig, PostNormType, PostQkType, PromptWrapping, QueryScaleType, ReadStats,
    SbsError, TensorType, Toc, TocEntry, VitConfig,
};

mod common;
use common::data;

// ---- a minimal JSON reader for the goldens (core has no JSON dependency) ----

#[derive(Clone, Debug)]
enum Json {
    Null,
    Bool,
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn parse(text: &str) -> Json {
        let mut p = JsonParser {
            b: text.as_bytes(),
            i: 0,
        };
        let v = p.value();
        p.ws();
        assert_eq!(p.i, p.b.len(), "trailing JSON");
        v
    }
    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(kv) => kv.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    fn at(&self, key: &str) -> &Json {
        self.get(key).unwrap_or_else(|| panic!("no key {key}"))
    }
    fn u64(&self) -> u64 {
        match self {
            Json::Num(n) if n.fract() == 0.0 && *n >= 0.0 => *n as u64,
            other => panic!("not an unsigned integer: {other:?}"),
        }
    }
    fn f64(&self) -> f64 {
        match self {
            Json::Num(n) => *n,
            other => panic!("not a number: {other:?}"),
        }
    }
    fn str(&self) -> &str {
        match self {
            Json::Str(s) => s,
            other => panic!("not a string: {other:?}"),
        }
    }
    fn arr(&self) -> &[Json] {
        match self {
            Json::Arr(a) => a,
            other => panic!("not an array: {other:?}"),
        }
    }
}

struct JsonParser<'a> {
    b: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && self.b[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) {
        self.ws();
        assert_eq!(
            self.b[self.i], c,
            "JSON: expected {:?} at {}",
            c as char, self.i
        );
        self.i += 1;
    }
    fn value(&mut self) -> Json {
        self.ws();
        match self.b[self.i] {
            b'{' => {
                self.i += 1;
                let mut kv = Vec::new();
                self.ws();
                if self.b[self.i] == b'}' {
                    self.i += 1;
                    return Json::Obj(kv);
                }
                loop {
                    self.ws();
                    let k = self.string();
                    self.eat(b':');
                    kv.push((k, self.value()));
                    self.ws();
                    self.i += 1;
                    if self.b[self.i - 1] == b'}' {
                        return Json::Obj(kv);
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut a = Vec::new();
                self.ws();
                if self.b[self.i] == b']' {
                    self.i += 1;
                    return Json::Arr(a);
                }
                loop {
                    a.push(self.value());
                    self.ws();
                    self.i += 1;
                    if self.b[self.i - 1] == b']' {
                        return Json::Arr(a);
                    }
                }
            }
            b'"' => Json::Str(self.string()),
            b't' => {
                self.i += 4;
                Json::Bool
            }
            b'f' => {
                self.i += 5;
                Json::Bool
            }
            b'n' => {
                self.i += 4;
                Json::Null
            }
            _ => {
                let start = self.i;
                while self.i < self.b.len() && b"+-.eE0123456789".contains(&self.b[self.i]) {
                    self.i += 1;
                }
                let s = std::str::from_utf8(&self.b[start..self.i]).unwrap();
                Json::Num(s.parse().unwrap_or_else(|_| panic!("JSON number {s:?}")))
            }
        }
    }
    fn string(&mut self) -> String {
        self.eat(b'"');
        let start = self.i;
        while self.b[self.i] != b'"' {
            assert_ne!(
                self.b[self.i], b'\\',
                "escapes are not needed by these goldens"
            );
            self.i += 1;
        }
        self.i += 1;
        String::from_utf8(self.b[start..self.i - 1].to_vec()).unwrap()
    }
}

fn blobs_json(kind: &str) -> Json {
    Json::parse(&String::from_utf8(data(&format!("model_{kind}_blobs.json"))).unwrap())
}

// ---- blob store ----

const TINY: [(&str, usize, usize); 3] = [
    ("one", 256, 1),
    ("hello5", 512, 5),
    ("ramp300_exact16c", 768, 300),
];

fn tiny_content(name: &str) -> Vec<u8> {
    match name {
        "one" => vec![0x5A],
        "hello5" => b"hello".to_vec(),
        "ramp300_exact16c" => (0..300).map(|i| ((7 * i + 3) % 256) as u8).collect(),
        _ => unreachable!(),
    }
}

#[test]
fn sbs_tiny_store_reads_back_the_three_blobs_gemma_cpp_wrote() {
    let bytes = data("blobstore_tiny.sbs");
    assert_eq!(bytes.len(), 65536);
    let store = BlobStore::parse(&bytes).unwrap();
    assert_eq!(store.layout(), Layout::V2);
    assert_eq!(store.len(), 3);
    assert_eq!(store.directory().file_bytes(), 65536);
    let blobs: Vec<_> = store.blobs().collect();
    assert_eq!(blobs.len(), 3);
    for (i, (b, (name, offset, size))) in blobs.iter().zip(TINY).enumerate() {
        assert_eq!(b.index, i);
        assert_eq!(b.name, name);
        assert_eq!(b.offset, offset);
        assert_eq!(b.bytes.len(), size);
        assert_eq!(b.bytes, tiny_content(name).as_slice(), "{name}");
        assert_eq!(store.blob(name), Some(b.bytes));
        assert_eq!(store.get(i), Some(*b));
    }
    // A 16-character name fills its key slot without a NUL.
    assert_eq!(store.find("ramp300_exact16c").unwrap().index, 2);
    assert_eq!(store.blob("ramp300_exact16"), None);
    assert_eq!(store.blob("hello"), None);
    assert_eq!(store.blob(""), None);
    assert_eq!(store.get(3), None);
}

/// The V1 layout: header and directory first, blobs from
/// roundup(16 + 32 n, 256), optionally padded at the end.
fn v1_file(blobs: &[(&str, &[u8])], pad_end_to: u64) -> Vec<u8> {
    let n = blobs.len();
    let dir_end = 16 + 32 * n;
    let mut out = vec![0u8; dir_end.div_ceil(256) * 256];
    let mut ranges = Vec::new();
    for (_, b) in blobs {
        ranges.push((out.len() as u64, b.len() as u64));
        out.extend_from_slice(b);
        out.resize(out.len().div_ceil(256) * 256, 0);
    }
    out.resize(
        (out.len() as u64).div_ceil(pad_end_to) as usize * pad_end_to as usize,
        0,
    );
    let len = out.len() as u64;
    out[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    out[4..8].copy_from_slice(&(n as u32).to_le_bytes());
    out[8..16].copy_from_slice(&len.to_le_bytes());
    for (i, (name, _)) in blobs.iter().enumerate() {
        out[16 + 16 * i..16 + 16 * i + name.len()].copy_from_slice(name.as_bytes());
    }
    for (i, (offset, size)) in ranges.iter().enumerate() {
        let at = 16 + 16 * n + 16 * i;
        out[at..at + 8].copy_from_slice(&offset.to_le_bytes());
        out[at + 8..at + 16].copy_from_slice(&size.to_le_bytes());
    }
    out
}

#[test]
fn sbs_v1_layout_with_directory_first_reads_the_same_blobs() {
    let contents: Vec<Vec<u8>> = TINY.iter().map(|t| tiny_content(t.0)).collect();
    let blobs: Vec<(&str, &[u8])> = TINY
        .iter()
        .zip(&contents)
        .map(|(t, c)| (t.0, c.as_slice()))
        .collect();
    // Unpadded (oldest files) and padded to 64 KiB.
    for pad in [256, 65536] {
        let file = v1_file(&blobs, pad);
        let store = BlobStore::parse(&file).unwrap();
        assert_eq!(store.layout(), Layout::V1);
        let got: Vec<_> = store
            .blobs()
            .map(|b| (b.name, b.offset, b.bytes.to_vec()))
            .collect();
        let want: Vec<_> = TINY
            .iter()
            .zip(&contents)
            .map(|(t, c)| (t.0, t.1, c.clone()))
            .collect();
        assert_eq!(got, want);
    }
    // Ten blobs push the directory past 256 bytes: blobs start at 512.
    let names: Vec<String> = (0..10).map(|i| format!("blob{i}")).collect();
    let many: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), n.as_bytes())).collect();
    let file = v1_file(&many, 256);
    let store = BlobStore::parse(&file).unwrap();
    assert_eq!(store.find("blob0").unwrap().offset, 512);
    assert_eq!(store.blob("blob9"), Some(&b"blob9"[..]));
}

fn check_tail_directory(kind: &str) {
    let json = blobs_json(kind);
    let file_bytes = json.at("file_bytes").u64();
    let tail = data(&format!("model_{kind}_tail_dir_header.bin"));
    let last16 = &tail[tail.len() - 16..];
    assert_eq!(Directory::tail_len(last16).unwrap(), tail.len());
    let dir = Directory::from_tail(&tail, file_bytes).unwrap();
    assert_eq!(dir.layout(), Layout::V2);
    assert_eq!(dir.len() as u64, json.at("num_blobs").u64());
    let want = json.at("blobs").arr();
    assert_eq!(dir.entries().count(), want.len());
    for (e, w) in dir.entries().zip(want) {
        assert_eq!(e.index as u64, w.at("index").u64());
        assert_eq!(e.name, w.at("name").str());
        assert_eq!(e.offset, w.at("offset").u64(), "{}", e.name);
        assert_eq!(e.size, w.at("size").u64(), "{}", e.name);
    }
    // The first 256 bytes are the placeholder header.
    let head = data(&format!("model_{kind}_header256.bin"));
    assert_eq!(&head[0..4], &MAGIC.to_le_bytes());
    assert_eq!(&head[4..8], &[0; 4]);
    assert_eq!(&head[8..16], &65536u64.to_le_bytes());
    assert!(head[16..].iter().all(|&b| b == 0));
    // The wrong file size is refused.
    assert!(matches!(
        Directory::from_tail(&tail, file_bytes + 65536),
        Err(SbsError::FileSizeMismatch { .. })
    ));
}

#[test]
fn sbs_model_directory_from_the_file_tail_matches_gemma_cpp_sfp() {
    check_tail_directory("sfp");
}

#[test]
fn sbs_model_directory_from_the_file_tail_matches_gemma_cpp_bf16() {
    check_tail_directory("bf16");
}

// ---- config ----

const SCALE_BASE_NAMES: [&str; 8] = [
    "att_ein",
    "qkv_ein",
    "gr_lin_x_w",
    "gr_lin_y_w",
    "gr_lin_out_w",
    "gr_gate_w",
    "gating_ein",
    "linear_w",
];

const WINDOWS: [u32; 18] = [
    512, 512, 512, 512, 512, 32768, 512, 512, 512, 512, 512, 32768, 512, 512, 512, 512, 512, 32768,
];

const LAYER_270M: LayerConfig = LayerConfig {
    model_dim: 640,
    ff_hidden_dim: 2048,
    heads: 4,
    kv_heads: 1,
    qkv_dim: 256,
    ff_biases: false,
    optimized_gating: true,
    post_norm: PostNormType::Scale,
    attention_type: LayerAttentionType::Gemma,
    activation: ActivationType::Gelu,
    post_qk: PostQkType::Rope,
    use_qk_norm: true,
};

/// Gemma 3 270M's config as gemma.cpp builds it, from Rust values.
fn config_270m(weight: TensorType, layers: &'static [LayerConfig]) -> ModelConfig<'static> {
    ModelConfig {
        model_family_version: 1,
        display_name: "Gemma3_270M",
        model: Model::Gemma3_270M,
        wrapping: PromptWrapping::GemmaPt,
        weight,
        num_layers: 18,
        model_dim: 640,
        vocab_size: 262144,
        max_seq_len: 32768,
        unused_num_tensor_scales: 0,
        att_cap: 0.0,
        final_cap: 0.0,
        absolute_pe: false,
        query_scale: QueryScaleType::SqrtKeySize,
        layer_configs: List::Slice(layers),
        attention_window_sizes: List::Slice(&WINDOWS),
        norm_num_groups: 1,
        vit_config: VitConfig::default(),
        pool_dim: 1,
        eos_id: 1,
        secondary_eos_id: 106,
        scale_base_names: List::Slice(&SCALE_BASE_NAMES),
    }
}

static LAYERS_270M: [LayerConfig; 18] = [LAYER_270M; 18];

fn check_config(kind: &str, weight: TensorType) {
    let bytes = data(&format!("model_{kind}_config.bin"));
    assert_eq!(bytes.len(), 1476);
    let (c, stats) = ModelConfig::parse_with_stats(&bytes).unwrap();
    assert_eq!(
        stats,
        ReadStats::default(),
        "nothing missing, nothing extra"
    );

    assert_eq!(c.model_family_version, 1);
    assert_eq!(c.display_name, "Gemma3_270M");
    assert_eq!(c.model, Model::Gemma3_270M);
    assert_eq!(c.wrapping, PromptWrapping::GemmaPt);
    assert_eq!(c.weight, weight);
    assert_eq!(
        (c.num_layers, c.model_dim, c.vocab_size, c.max_seq_len),
        (18, 640, 262144, 32768)
    );
    assert_eq!((c.att_cap, c.final_cap), (0.0, 0.0));
    assert!(!c.absolute_pe);
    assert_eq!(c.query_scale, QueryScaleType::SqrtKeySize);
    assert_eq!(c.layer_configs.len(), 18);
    assert!(c.layer_configs.iter().all(|l| l == LAYER_270M));
    assert_eq!(c.attention_window_sizes.iter().collect::<Vec<_>>(), WINDOWS);
    let globals: Vec<usize> = (0..18)
        .filter(|&l| c.is_global_layer(l) == Some(true))
        .collect();
    assert_eq!(globals, [5, 11, 17]);
    assert_eq!(c.is_global_layer(18), None);
    assert_eq!(c.norm_num_groups, 1);
    let v = c.vit_config;
    assert_eq!(
        (
            v.model_dim,
            v.seq_len,
            v.num_scales,
            v.patch_width,
            v.image_size
        ),
        (0, 0, 0, 14, 224)
    );
    assert!(v.layer_configs.is_empty());
    assert_eq!(v.pool_dim, 1);
    assert_eq!((c.pool_dim, c.eos_id, c.secondary_eos_id), (1, 1, 106));
    assert_eq!(
        c.scale_base_names.iter().collect::<Vec<_>>(),
        SCALE_BASE_NAMES
    );
    // gemma.cpp's own parse, recorded in the goldens' index.json.
    assert_eq!(c.specifier().to_string(), format!("gemma3-270m-{kind}-pt"));

    // Writing the parsed struct back gives gemma.cpp's bytes.
    assert_eq!(c.serialized_len().unwrap(), 1476);
    let mut out = vec![0u8; 1476];
    assert_eq!(c.write(&mut out), Ok(1476));
    assert_eq!(out, bytes);
    assert_eq!(fields::to_vec(&c).unwrap(), bytes);
    // So does the same config built from Rust values, and it compares equal.
    let built = config_270m(weight, &LAYERS_270M);
    assert_eq!(built, c);
    assert_eq!(fields::to_vec(&built).unwrap(), bytes);
    // A short buffer is refused with the size needed, and nothing claims success.
    let mut short = vec![0u8; 1475];
    assert_eq!(
        c.write(&mut short),
        Err(SbsError::BufferTooSmall { needed: 1476 })
    );
}

#[test]
fn sbs_config_sfp_parses_to_gemma3_270m_and_writes_back_identically() {
    check_config("sfp", TensorType::SFP);
}

#[test]
fn sbs_config_bf16_parses_to_gemma3_270m_and_writes_back_identically() {
    check_config("bf16", TensorType::BF16);
}

fn words(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn bytes_of(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

#[test]
fn sbs_config_skips_unknown_trailing_fields_like_gemma_cpp() {
    let golden = data("model_sfp_config.bin");
    let w = words(&golden);
    let (want, _) = ModelConfig::parse_with_stats(&golden).unwrap();

    // Newer writer: two more words at the end of ModelConfig...
    let mut newer = w.clone();
    newer.extend([7, 8]);
    newer[0] += 2;
    let b = bytes_of(&newer);
    let (c, stats) = ModelConfig::parse_with_stats(&b).unwrap();
    assert_eq!(c, want);
    assert_eq!(stats.extra_words, 2);
    // ...and gemma.cpp's writer would not carry them: writing gives the
    // original bytes.
    assert_eq!(fields::to_vec(&c).unwrap(), golden);

    // ...and one more word in the first LayerConfig (word 20 is its size).
    let mut newer = w.clone();
    assert_eq!(newer[20], 15);
    newer.insert(36, 99);
    newer[20] += 1;
    newer[0] += 1;
    let b = bytes_of(&newer);
    let (c, stats) = ModelConfig::parse_with_stats(&b).unwrap();
    assert_eq!(c, want);
    assert_eq!(stats.extra_words, 1);

    // Words after the struct itself are ignored too.
    let mut trailing = golden.clone();
    trailing.extend([0xAB; 8]);
    let (c, stats) = ModelConfig::parse_with_stats(&trailing).unwrap();
    assert_eq!(c, want);
    assert_eq!(stats.extra_words, 2);
}

#[test]
fn sbs_config_missing_trailing_fields_take_gemma_cpp_defaults() {
    let w = words(&data("model_sfp_config.bin"));
    // Older writer: ModelConfig stops after `query_scale` (word 18).
    let mut older = w[..19].to_vec();
    older[0] = 18;
    let b = bytes_of(&older);
    let (c, stats) = ModelConfig::parse_with_stats(&b).unwrap();
    assert_eq!(c.num_layers, 18);
    assert_eq!(c.query_scale, QueryScaleType::SqrtKeySize);
    assert!(c.layer_configs.is_empty());
    assert_eq!(c.norm_num_groups, 1);
    assert_eq!(c.vit_config, VitConfig::default());
    assert_eq!((c.pool_dim, c.eos_id, c.secondary_eos_id), (1, 1, 1));
    assert!(c.scale_base_names.is_empty());
    // layer_configs, windows, norm groups, vit, pool, eos, eos2, names.
    assert_eq!(stats.missing_fields, 8);

    // An empty LayerConfig (size 0) is all defaults: optimized_gating stays true.
    let mut c = ModelConfig {
        display_name: "Gemma3_270M",
        ..ModelConfig::default()
    };
    let empty_layer = [LayerConfig::default()];
    c.layer_configs = List::Slice(&empty_layer);
    let mut bytes = words(&fields::to_vec(&c).unwrap());
    // The layer struct is word 20 (after 19 words of ModelConfig); drop its
    // fields and fix both sizes.
    let layer_words = bytes[20] as usize;
    bytes.drain(21..21 + layer_words);
    bytes[20] = 0;
    bytes[0] -= layer_words as u32;
    let b = bytes_of(&bytes);
    let (c, stats) = ModelConfig::parse_with_stats(&b).unwrap();
    assert_eq!(c.layer_configs.get(0), Some(LayerConfig::default()));
    assert!(c.layer_configs.get(0).unwrap().optimized_gating);
    assert_eq!(stats.missing_fields, 15);
}

// ---- toc ----

fn check_toc(kind: &str) {
    let bytes = data(&format!("model_{kind}_toc.bin"));
    let json = blobs_json(kind);
    let toc = Toc::parse(&bytes).unwrap();
    assert_eq!(toc.len(), 182);
    let tensors: Vec<&Json> = json
        .at("blobs")
        .arr()
        .iter()
        .filter(|b| b.get("tensor").is_some())
        .collect();
    assert_eq!(tensors.len(), 182);
    let mut by_type = [0usize; 9];
    for (e, b) in toc.iter().zip(&tensors) {
        let t = b.at("tensor");
        assert_eq!(e.name, b.at("name").str());
        assert_eq!(e.ty as u64, t.at("type").u64(), "{}", e.name);
        assert_eq!(e.ty.name(), t.at("type_name").str());
        assert_eq!(u64::from(e.element_bytes), t.at("element_bytes").u64());
        assert_eq!(u64::from(e.rows), t.at("rows").u64());
        assert_eq!(u64::from(e.cols), t.at("cols").u64());
        assert_eq!(u64::from(e.stride), t.at("stride").u64());
        assert_eq!(f64::from(e.scale), t.at("scale").f64());
        assert_eq!(e.packed_bytes(), Some(t.at("packed_bytes").u64()));
        assert_eq!(
            e.packed_bytes(),
            Some(b.at("size").u64()),
            "blob size = record size"
        );
        let codec = e.check().unwrap();
        // The record gemma.cpp writes for this shape is exactly this one.
        assert_eq!(
            TocEntry::new(e.name, codec, e.rows, e.cols, e.scale),
            Some(e)
        );
        by_type[e.ty as usize] += 1;
    }
    // Every tensor is found by name.
    for b in &tensors {
        assert!(toc.get(b.at("name").str()).is_some());
    }
    assert_eq!(toc.get("config"), None);
    if kind == "sfp" {
        assert_eq!(
            (
                by_type[TensorType::SFP as usize],
                by_type[TensorType::BF16 as usize]
            ),
            (72, 110)
        );
    } else {
        assert_eq!(by_type[TensorType::BF16 as usize], 182);
    }

    // Shapes of layer 0, [rows, cols] (the layouts: `format::sbs` module docs).
    let shape = |n: &str| {
        let e = toc.get(n).unwrap();
        (e.rows, e.cols)
    };
    assert_eq!(shape("c_embedding"), (262144, 640));
    assert_eq!(shape("c_final_norm"), (1, 640));
    assert_eq!(shape("qkv_ein_0"), ((4 + 2) * 256, 640));
    assert_eq!(shape("att_ein_0"), (4 * 640, 256));
    assert_eq!(shape("gating_ein_0"), (2 * 2048, 640));
    assert_eq!(shape("linear_w_0"), (640, 2048));
    for n in [
        "pre_att_ns_0",
        "pre_ff_ns_0",
        "post_att_ns_0",
        "post_ff_ns_0",
    ] {
        assert_eq!(shape(n), (1, 640));
    }
    assert_eq!(shape("query_norm_0"), (1, 256));
    assert_eq!(shape("key_norm_0"), (1, 256));

    // Written back, record by record: gemma.cpp's bytes.
    let mut out = vec![0u8; bytes.len()];
    assert_eq!(write_toc(toc.iter(), &mut out), Ok(bytes.len()));
    assert_eq!(out, bytes);
    assert_eq!(
        write_toc(toc.iter(), &mut out[..100]),
        Err(SbsError::BufferTooSmall {
            needed: bytes.len()
        })
    );
}

#[test]
fn sbs_toc_sfp_lists_every_tensor_as_gemma_cpp_parsed_it() {
    check_toc("sfp");
}

#[test]
fn sbs_toc_bf16_lists_every_tensor_as_gemma_cpp_parsed_it() {
    check_toc("bf16");
}

#[test]
fn sbs_toc_records_match_the_model_directory() {
    // The same checks `SbsFile::parse` makes, on the real model's directory.
    for kind in ["sfp", "bf16"] {
        let json = blobs_json(kind);
        let tail = data(&format!("model_{kind}_tail_dir_header.bin"));
        let dir = Directory::from_tail(&tail, json.at("file_bytes").u64()).unwrap();
        let toc_bytes = data(&format!("model_{kind}_toc.bin"));
        let toc = Toc::parse(&toc_bytes).unwrap();
        for (i, e) in toc.iter().enumerate() {
            let blob = dir.find_from(e.name, i).unwrap();
            assert_eq!(blob.index, i, "toc is in blob order");
            assert_eq!(Some(blob.size), e.packed_bytes());
        }
        assert_eq!(dir.find("toc").unwrap().size, toc_bytes.len() as u64);
        let config = data(&format!("model_{kind}_config.bin"));
        assert_eq!(dir.find("config").unwrap().size, config.len() as u64);
        assert_eq!(dir.find("tokenizer").unwrap().size, 5_200_022);
    }
}

#[test]
fn sbs_toc_entry_new_counts_group_tables_for_nuq_and_i8() {
    let e = TocEntry::new("w", Codec::NUQ, 3, 100, 2.5).unwrap();
    assert_eq!(
        (e.ty, e.element_bytes, e.num_elements, e.stride),
        (TensorType::NUQ, 1, 16 * 2 + 150, 100)
    );
    assert_eq!(e.check(), Ok(Codec::NUQ));
    let e = TocEntry::new("w", Codec::I8, 3, 100, 1.0).unwrap();
    assert_eq!(e.num_elements, 4 * 3 + 300);
    let e = TocEntry::new("w", Codec::F32, 3, 100, 1.0).unwrap();
    assert_eq!(
        (e.element_bytes, e.num_elements, e.packed_bytes()),
        (4, 300, Some(1200))
    );
    // Beyond u32 elements gemma.cpp cannot describe the tensor.
    assert_eq!(TocEntry::new("w", Codec::SFP, 1 << 16, 1 << 16, 1.0), None);
}
