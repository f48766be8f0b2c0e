//! The table of every model gemma.cpp knows (`format::sbs::known`), checked
//! against an independent table written from the published model cards
//! (Hugging Face `config.json` values) and against the 270M `.sbs` files
//! gemma.cpp itself wrote.

use gemma_core::format::sbs::{
    ConfigStorage, KnownModel, Model, ModelConfig, PromptWrapping, QueryScaleType, TensorType, Toc,
    KNOWN_MODELS,
};

mod common;
use common::data;

/// One row of the model cards: layers, width, FFW width, heads, KV heads,
/// head dim, vocabulary, context, local window (0: none), layers per
/// local/global cycle, attention and final soft-caps, image size (0: text
/// only).
struct Card {
    model: Model,
    layers: u32,
    d: u32,
    ff: u32,
    heads: u32,
    kv: u32,
    hd: u32,
    vocab: u32,
    ctx: u32,
    window: u32,
    cycle: u32,
    caps: (f32, f32),
    image: u32,
}

const fn card(
    model: Model,
    (layers, d, ff): (u32, u32, u32),
    (heads, kv, hd): (u32, u32, u32),
    (vocab, ctx, window, cycle): (u32, u32, u32, u32),
    caps: (f32, f32),
    image: u32,
) -> Card {
    Card {
        model,
        layers,
        d,
        ff,
        heads,
        kv,
        hd,
        vocab,
        ctx,
        window,
        cycle,
        caps,
        image,
    }
}

const G2: (f32, f32) = (50.0, 30.0);
const G3: (f32, f32) = (0.0, 0.0);
const CARDS: [Card; 12] = [
    card(
        Model::Gemma2_2B,
        (26, 2304, 9216),
        (8, 4, 256),
        (256000, 8192, 4096, 2),
        G2,
        0,
    ),
    card(
        Model::Gemma2_9B,
        (42, 3584, 14336),
        (16, 8, 256),
        (256000, 8192, 4096, 2),
        G2,
        0,
    ),
    card(
        Model::Gemma2_27B,
        (46, 4608, 36864),
        (32, 16, 128),
        (256000, 8192, 4096, 2),
        G2,
        0,
    ),
    card(
        Model::PaliGemma2_3B_224,
        (26, 2304, 9216),
        (8, 4, 256),
        (257152, 8192, 4096, 2),
        G2,
        224,
    ),
    card(
        Model::PaliGemma2_3B_448,
        (26, 2304, 9216),
        (8, 4, 256),
        (257152, 8192, 4096, 2),
        G2,
        448,
    ),
    card(
        Model::PaliGemma2_10B_224,
        (42, 3584, 14336),
        (16, 8, 256),
        (257152, 8192, 4096, 2),
        G2,
        224,
    ),
    card(
        Model::PaliGemma2_10B_448,
        (42, 3584, 14336),
        (16, 8, 256),
        (257152, 8192, 4096, 2),
        G2,
        448,
    ),
    card(
        Model::Gemma3_270M,
        (18, 640, 2048),
        (4, 1, 256),
        (262144, 32768, 512, 6),
        G3,
        0,
    ),
    card(
        Model::Gemma3_1B,
        (26, 1152, 6912),
        (4, 1, 256),
        (262144, 32768, 512, 6),
        G3,
        0,
    ),
    card(
        Model::Gemma3_4B,
        (34, 2560, 10240),
        (8, 4, 256),
        (262144, 32768, 1024, 6),
        G3,
        896,
    ),
    card(
        Model::Gemma3_12B,
        (48, 3840, 15360),
        (16, 8, 256),
        (262144, 32768, 1024, 6),
        G3,
        896,
    ),
    card(
        Model::Gemma3_27B,
        (62, 5376, 21504),
        (32, 16, 128),
        (262144, 32768, 1024, 6),
        G3,
        896,
    ),
];

#[test]
fn every_known_model_matches_its_model_card() {
    assert_eq!(KNOWN_MODELS.len(), CARDS.len());
    for c in &CARDS {
        let k = KnownModel::get(c.model).unwrap();
        let name = k.display_name;
        assert_eq!(
            (k.num_layers, k.model_dim, k.ff_hidden_dim),
            (c.layers, c.d, c.ff),
            "{name}"
        );
        assert_eq!(
            (k.heads, k.kv_heads, k.qkv_dim),
            (c.heads, c.kv, c.hd),
            "{name}"
        );
        assert_eq!((k.vocab_size, k.max_seq_len), (c.vocab, c.ctx), "{name}");
        assert_eq!((k.att_cap, k.final_cap), c.caps, "{name}");
        assert_eq!(k.vit.map_or(0, |v| v.image_size), c.image, "{name}");
        // In gemma.cpp's files only Gemma 2 27B scales queries by
        // model_dim/heads (4608/32 = 144); see the engine test below for
        // Gemma 3 27B.
        let by_width = c.model == Model::Gemma2_27B;
        assert_eq!(
            k.query_scale == QueryScaleType::SqrtModelDimDivNumHeads,
            by_width,
            "{name}"
        );
        // Local layers cycle with one global layer last in each cycle.
        for l in 0..c.layers as usize {
            let global = (l as u32 + 1).is_multiple_of(c.cycle);
            let want = if global { c.ctx } else { c.window };
            assert_eq!(k.window(l), want, "{name} layer {l}");
        }
        // Gemma 3 has QK-norm and the stacked gating layout.
        let gemma3 = c.vocab == 262144;
        assert_eq!(k.use_qk_norm, gemma3, "{name}");
        assert_eq!(k.optimized_gating, gemma3, "{name}");
        assert_eq!(k.secondary_eos_id, if gemma3 { 106 } else { 107 }, "{name}");
    }
}

#[test]
fn known_configs_serialize_and_read_back() {
    for k in &KNOWN_MODELS {
        let mut storage = ConfigStorage::default();
        let cfg = k.config(TensorType::SFP, k.default_wrapping, &mut storage);
        let mut buf = vec![0u8; cfg.serialized_len().unwrap()];
        let n = cfg.write(&mut buf).unwrap();
        assert_eq!(n, buf.len());
        let back = ModelConfig::parse(&buf).unwrap();
        assert_eq!(back.model, k.model);
        assert_eq!(back.num_layers as usize, back.layer_configs.len());
        assert_eq!(back.layer_configs.len(), back.attention_window_sizes.len());
        assert!(
            back.specifier()
                .to_string()
                .starts_with(&format!("{}-sfp", k.model.prefix())),
            "{}",
            k.display_name
        );
        let vit = &back.vit_config;
        match k.vit {
            Some(v) => {
                let patches = v.image_size / 14;
                assert_eq!(vit.seq_len, patches * patches, "{}", k.display_name);
                assert_eq!(vit.layer_configs.len(), 27);
                assert_eq!(vit.num_scales, 4 * 27);
                assert_eq!(vit.model_dim, 1152);
            }
            None => {
                assert_eq!(vit.layer_configs.len(), 0);
                assert_eq!(vit.model_dim, 0);
            }
        }
        // Re-serializing the parse gives the same bytes.
        let mut again = vec![0u8; back.serialized_len().unwrap()];
        back.write(&mut again).unwrap();
        assert!(again == buf, "{}", k.display_name);
    }
}

/// The canonical config equals, byte for byte, the `config` blob of the
/// 270M files gemma.cpp wrote (pre-trained wrapping, SFP and BF16).
#[test]
fn canonical_270m_config_is_gemma_cpp_bytes() {
    let k = KnownModel::get(Model::Gemma3_270M).unwrap();
    for (kind, ty) in [("sfp", TensorType::SFP), ("bf16", TensorType::BF16)] {
        let mut storage = ConfigStorage::default();
        let cfg = k.config(ty, PromptWrapping::GemmaPt, &mut storage);
        let mut buf = vec![0u8; cfg.serialized_len().unwrap()];
        cfg.write(&mut buf).unwrap();
        assert!(buf == data(&format!("model_{kind}_config.bin")), "{kind}");
    }
}

/// The tensor list of the 270M model equals the `toc` gemma.cpp wrote:
/// names, order, shapes, and BF16 wherever the table says BF16 at least.
#[test]
fn tensor_table_of_270m_is_gemma_cpp_toc() {
    let k = KnownModel::get(Model::Gemma3_270M).unwrap();
    for (kind, main) in [("sfp", TensorType::SFP), ("bf16", TensorType::BF16)] {
        let toc_bytes = data(&format!("model_{kind}_toc.bin"));
        let toc = Toc::parse(&toc_bytes).unwrap();
        let mut entries = toc.iter();
        let mut count = 0;
        k.for_each_tensor(|spec| {
            let name = spec.name().unwrap();
            let e = entries.next().unwrap();
            assert_eq!(e.name, name);
            assert_eq!((e.rows, e.cols), (spec.rows, spec.cols), "{name}");
            let want = if spec.min == TensorType::Unknown {
                main
            } else {
                spec.min
            };
            assert_eq!(e.ty, want, "{name}");
            count += 1;
        });
        assert!(entries.next().is_none());
        assert_eq!(count, 182);
    }
}

/// Tensor counts and the shapes that tie tensors together, for every model.
#[test]
fn tensor_tables_are_consistent() {
    for c in &CARDS {
        let k = KnownModel::get(c.model).unwrap();
        let name = k.display_name;
        let mut names = std::collections::HashSet::new();
        let mut per_layer = 0;
        let mut vit_tensors = 0;
        let mut embedding = None;
        k.for_each_tensor(|t| {
            let n = t.name().unwrap().to_string();
            assert!(n.len() <= 16, "{n}: gemma.cpp keys hold 16 bytes");
            assert!(names.insert(n.clone()), "{name}: {n} twice");
            assert!(t.rows > 0 && t.cols > 0, "{n}");
            match t.base {
                "c_embedding" => embedding = Some((t.rows, t.cols)),
                "qkv_ein" => {
                    assert_eq!(t.rows, (c.heads + 2 * c.kv) * c.hd, "{name} {n}");
                    assert_eq!(t.cols, c.d);
                }
                "att_ein" => assert_eq!((t.rows, t.cols), (c.heads * c.d, c.hd), "{n}"),
                "gating_ein" => assert_eq!((t.rows, t.cols), (2 * c.ff, c.d), "{n}"),
                "linear_w" => assert_eq!((t.rows, t.cols), (c.d, c.ff), "{n}"),
                "query_norm" | "key_norm" => assert_eq!(t.cols, c.hd),
                "img_pos_emb" => assert_eq!(t.rows, (c.image / 14) * (c.image / 14)),
                _ => {}
            }
            if t.layer == Some(0) && t.base.ends_with("_ns") {
                per_layer += 1;
            }
            if ["qkv_ein_w", "attn_out_w", "linear_0_w", "linear_1_w"].contains(&t.base) {
                vit_tensors += 1;
            }
        });
        assert_eq!(embedding, Some((c.vocab, c.d)), "{name}");
        assert_eq!(per_layer, 4, "{name}: four norms per layer");
        let qk = if c.vocab == 262144 { 2 } else { 0 };
        let vit = if c.image > 0 { 4 * 27 } else { 0 };
        assert_eq!(vit_tensors, vit, "{name}");
        let model_tensors = match (c.image, c.vocab) {
            (0, _) => 2,
            (_, 262144) => 2 + 8, // with the soft-token norm
            _ => 2 + 7,
        };
        let expected =
            model_tensors + c.layers as usize * (8 + qk) + if vit > 0 { 27 * 12 } else { 0 };
        assert_eq!(names.len(), expected, "{name}");
        // The split forms hold exactly the stacked tensors' elements.
        for l in [0, c.layers - 1] {
            let [q1, q2, g1, g2, att] = k.split_forms(l);
            assert_eq!(q1.rows + q2.rows, (c.heads + 2 * c.kv) * c.hd);
            assert_eq!((q1.cols, q2.cols), (c.d, c.d));
            assert_eq!(g1.rows + g2.rows, 2 * c.ff);
            assert_eq!(att.rows * att.cols, c.heads * c.d * c.hd);
        }
    }
}

/// The engine's reading of each text model's canonical config, including
/// the two places where gemma.cpp's constants differ from the reference
/// models: Gemma 3's global layers use RoPE base 1e6 (gemma.cpp: 10000 on
/// the 270M), and Gemma 3 27B scales queries by 1/sqrt(5376/32 = 168), as
/// its `query_pre_attn_scalar` says (gemma.cpp: 1/sqrt(head dim 128)).
#[test]
fn engine_reads_every_text_model_config() {
    use gemma_core::model::{Family, ModelConfig as Engine};
    for c in &CARDS {
        let k = KnownModel::get(c.model).unwrap();
        let mut storage = ConfigStorage::default();
        let cfg = k.config(TensorType::BF16, k.default_wrapping, &mut storage);
        // PaliGemma 2 files give their Gemma 2 language model.
        let e = Engine::derive(&gemma_core::load::sbs::fields(&cfg).unwrap()).unwrap();
        let name = k.display_name;
        assert_eq!(
            (e.n_layers, e.d_model, e.d_ff),
            (c.layers as usize, c.d as usize, c.ff as usize),
            "{name}"
        );
        assert_eq!(
            (e.n_heads, e.n_kv_heads, e.head_dim),
            (c.heads as usize, c.kv as usize, c.hd as usize),
            "{name}"
        );
        assert_eq!(e.sliding_window, c.window as usize, "{name}");
        assert_eq!(e.sliding_window_pattern, c.cycle as usize, "{name}");
        let scale_dim = match c.model {
            Model::Gemma2_27B | Model::Gemma3_27B => c.d / c.heads,
            _ => c.hd,
        };
        assert!(
            (e.query_scale - 1.0 / (scale_dim as f32).sqrt()).abs() < 1e-7,
            "{name}"
        );
        if e.family == Family::Gemma3 {
            assert_eq!(
                (e.rope_base_global, e.rope_base_local),
                (1e6, 1e4),
                "{name}"
            );
        } else {
            assert_eq!(
                (e.rope_base_global, e.rope_base_local),
                (1e4, 1e4),
                "{name}"
            );
            assert_eq!((e.attn_softcap, e.final_softcap), (50.0, 30.0), "{name}");
        }
    }
}
