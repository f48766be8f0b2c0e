//! Every model gemma.cpp knows: its canonical `ModelConfig` and the tensors
//! a file of that model holds, with their names and 2-D shapes.
//!
//! The numbers follow gemma.cpp's `gemma/configs.cc` and
//! `gemma/tensor_info.cc` (commit `3ed403e2`); the table test in
//! `core/tests/sbs_known_models.rs` checks them against the published model
//! cards and against the 270M files gemma.cpp wrote.
//!
//! One deliberate difference lives outside this table: gemma.cpp runs the
//! 270M model's global layers with RoPE base 10000, while the model was
//! trained with 1e6. The config blob has no field for it, so files stay
//! byte-identical; `model::config` picks 1e6 for every Gemma 3 global layer.

use super::config::{
    LayerAttentionType, LayerConfig, Model, ModelConfig, PostNormType, PromptWrapping,
    QueryScaleType, VitConfig,
};
use super::fields::List;
use super::toc::TensorType;

/// The names gemma.cpp still writes into every config (they named the
/// tensors whose scales lived in a separate blob before 2025).
pub const SCALE_BASE_NAMES: [&str; 8] = [
    "att_ein",
    "qkv_ein",
    "gr_lin_x_w",
    "gr_lin_y_w",
    "gr_lin_out_w",
    "gr_gate_w",
    "gating_ein",
    "linear_w",
];

/// The most layers any known model has (Gemma 3 27B).
pub const MAX_LAYERS: usize = 62;
/// Layers of the SigLIP image encoder in vision models.
pub const VIT_LAYERS: usize = 27;

/// The image encoder of a vision model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KnownVit {
    pub image_size: u32,
    /// Gemma 3 pools 4x4 patches into one soft token; PaliGemma does not.
    pub pool_dim: u32,
}

/// One model as gemma.cpp defines it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KnownModel {
    pub model: Model,
    pub display_name: &'static str,
    pub num_layers: u32,
    pub model_dim: u32,
    pub vocab_size: u32,
    pub max_seq_len: u32,
    pub ff_hidden_dim: u32,
    pub heads: u32,
    pub kv_heads: u32,
    pub qkv_dim: u32,
    pub att_cap: f32,
    pub final_cap: f32,
    pub query_scale: QueryScaleType,
    /// Repeating window pattern; `0` stands for a global layer
    /// (`max_seq_len`).
    pub windows: &'static [u32],
    pub use_qk_norm: bool,
    pub optimized_gating: bool,
    pub secondary_eos_id: i32,
    /// The wrapping gemma.cpp picks when a user does not say.
    pub default_wrapping: PromptWrapping,
    pub vit: Option<KnownVit>,
}

const GEMMA2_WINDOWS: &[u32] = &[4096, 0];
const GEMMA3_SMALL_WINDOWS: &[u32] = &[512, 512, 512, 512, 512, 0];
const GEMMA3_LARGE_WINDOWS: &[u32] = &[1024, 1024, 1024, 1024, 1024, 0];
const GEMMA2_VOCAB: u32 = 256_000;
const GEMMA3_VOCAB: u32 = 262_144;
/// PaliGemma adds 1024 location and 128 segmentation tokens.
const PALIGEMMA_VOCAB: u32 = 256_000 + 1024 + 128;

#[allow(clippy::too_many_arguments)]
const fn gemma2(
    model: Model,
    display_name: &'static str,
    num_layers: u32,
    model_dim: u32,
    ff_hidden_dim: u32,
    heads: u32,
    kv_heads: u32,
    qkv_dim: u32,
    query_scale: QueryScaleType,
) -> KnownModel {
    KnownModel {
        model,
        display_name,
        num_layers,
        model_dim,
        vocab_size: GEMMA2_VOCAB,
        max_seq_len: 8192,
        ff_hidden_dim,
        heads,
        kv_heads,
        qkv_dim,
        att_cap: 50.0,
        final_cap: 30.0,
        query_scale,
        windows: GEMMA2_WINDOWS,
        use_qk_norm: false,
        optimized_gating: false,
        secondary_eos_id: 107,
        default_wrapping: PromptWrapping::GemmaIt,
        vit: None,
    }
}

const fn paligemma2(
    base: KnownModel,
    model: Model,
    display_name: &'static str,
    image_size: u32,
) -> KnownModel {
    KnownModel {
        model,
        display_name,
        vocab_size: PALIGEMMA_VOCAB,
        default_wrapping: PromptWrapping::PaliGemma,
        vit: Some(KnownVit {
            image_size,
            pool_dim: 1,
        }),
        ..base
    }
}

#[allow(clippy::too_many_arguments)]
const fn gemma3(
    model: Model,
    display_name: &'static str,
    num_layers: u32,
    model_dim: u32,
    ff_hidden_dim: u32,
    heads: u32,
    kv_heads: u32,
    qkv_dim: u32,
    windows: &'static [u32],
    vision: bool,
) -> KnownModel {
    KnownModel {
        model,
        display_name,
        num_layers,
        model_dim,
        vocab_size: GEMMA3_VOCAB,
        max_seq_len: 32 * 1024,
        ff_hidden_dim,
        heads,
        kv_heads,
        qkv_dim,
        att_cap: 0.0,
        final_cap: 0.0,
        query_scale: QueryScaleType::SqrtKeySize,
        windows,
        use_qk_norm: true,
        optimized_gating: true,
        secondary_eos_id: 106,
        default_wrapping: PromptWrapping::GemmaVlm,
        vit: if vision {
            Some(KnownVit {
                image_size: 896,
                pool_dim: 4,
            })
        } else {
            None
        },
    }
}

const GEMMA2_2B: KnownModel = gemma2(
    Model::Gemma2_2B,
    "Gemma2_2B",
    26,
    2304,
    9216,
    8,
    4,
    256,
    QueryScaleType::SqrtKeySize,
);
const GEMMA2_9B: KnownModel = gemma2(
    Model::Gemma2_9B,
    "Gemma2_9B",
    42,
    3584,
    14336,
    16,
    8,
    256,
    QueryScaleType::SqrtKeySize,
);

/// All models gemma.cpp knows, in its enum order.
pub const KNOWN_MODELS: [KnownModel; 12] = [
    GEMMA2_9B,
    gemma2(
        Model::Gemma2_27B,
        "Gemma2_27B",
        46,
        4608,
        36864,
        32,
        16,
        128,
        QueryScaleType::SqrtModelDimDivNumHeads,
    ),
    GEMMA2_2B,
    paligemma2(
        GEMMA2_2B,
        Model::PaliGemma2_3B_224,
        "PaliGemma2_3B_224",
        224,
    ),
    paligemma2(
        GEMMA2_2B,
        Model::PaliGemma2_3B_448,
        "PaliGemma2_3B_448",
        448,
    ),
    paligemma2(
        GEMMA2_9B,
        Model::PaliGemma2_10B_224,
        "PaliGemma2_10B_224",
        224,
    ),
    paligemma2(
        GEMMA2_9B,
        Model::PaliGemma2_10B_448,
        "PaliGemma2_10B_448",
        448,
    ),
    gemma3(
        Model::Gemma3_4B,
        "Gemma3_4B",
        34,
        2560,
        10240,
        8,
        4,
        256,
        GEMMA3_LARGE_WINDOWS,
        true,
    ),
    gemma3(
        Model::Gemma3_1B,
        "Gemma3_1B",
        26,
        1152,
        6912,
        4,
        1,
        256,
        GEMMA3_SMALL_WINDOWS,
        false,
    ),
    gemma3(
        Model::Gemma3_12B,
        "Gemma3_12B",
        48,
        3840,
        15360,
        16,
        8,
        256,
        GEMMA3_LARGE_WINDOWS,
        true,
    ),
    gemma3(
        Model::Gemma3_27B,
        "Gemma3_27B",
        62,
        5376,
        21504,
        32,
        16,
        128,
        GEMMA3_LARGE_WINDOWS,
        true,
    ),
    KnownModel {
        default_wrapping: PromptWrapping::GemmaIt,
        ..gemma3(
            Model::Gemma3_270M,
            "Gemma3_270M",
            18,
            640,
            2048,
            4,
            1,
            256,
            GEMMA3_SMALL_WINDOWS,
            false,
        )
    },
];

/// SigLIP So400m/14, the image encoder of every vision model here.
const VIT_MODEL_DIM: u32 = 1152;
const VIT_PATCH_WIDTH: u32 = 14;

impl KnownModel {
    /// The table entry for `model`; `None` for `Model::Unknown`.
    pub fn get(model: Model) -> Option<&'static KnownModel> {
        KNOWN_MODELS.iter().find(|k| k.model == model)
    }

    /// The attention window of `layer` (`max_seq_len` for global layers).
    pub fn window(&self, layer: usize) -> u32 {
        match self.windows[layer % self.windows.len()] {
            0 => self.max_seq_len,
            w => w,
        }
    }

    /// The configuration of every text layer.
    pub fn layer(&self) -> LayerConfig {
        LayerConfig {
            model_dim: self.model_dim,
            ff_hidden_dim: self.ff_hidden_dim,
            heads: self.heads,
            kv_heads: self.kv_heads,
            qkv_dim: self.qkv_dim,
            optimized_gating: self.optimized_gating,
            post_norm: PostNormType::Scale,
            use_qk_norm: self.use_qk_norm,
            ..LayerConfig::default()
        }
    }

    /// The configuration of every image-encoder layer.
    pub fn vit_layer(&self) -> LayerConfig {
        LayerConfig {
            model_dim: VIT_MODEL_DIM,
            ff_hidden_dim: 4304,
            heads: 16,
            kv_heads: 16,
            qkv_dim: 72,
            ff_biases: true,
            attention_type: LayerAttentionType::Vit,
            ..LayerConfig::default()
        }
    }

    /// gemma.cpp's `ModelConfig` for this model with the given main weight
    /// type and wrapping, built in `storage` (no allocation).
    pub fn config<'a>(
        &self,
        weight: TensorType,
        wrapping: PromptWrapping,
        storage: &'a mut ConfigStorage,
    ) -> ModelConfig<'a> {
        // The table's models have at most MAX_LAYERS layers and VIT_LAYERS
        // vision layers, so every push fits.
        storage.layers.clear();
        storage.windows.clear();
        for l in 0..self.num_layers as usize {
            let _ = storage.layers.push(self.layer());
            let _ = storage.windows.push(self.window(l));
        }
        let vit = match self.vit {
            Some(v) => {
                storage.vit_layers.clear();
                for _ in 0..VIT_LAYERS {
                    let _ = storage.vit_layers.push(self.vit_layer());
                }
                let patches = v.image_size / VIT_PATCH_WIDTH;
                VitConfig {
                    model_dim: VIT_MODEL_DIM,
                    seq_len: patches * patches,
                    num_scales: 4 * VIT_LAYERS as u32,
                    patch_width: VIT_PATCH_WIDTH,
                    image_size: v.image_size,
                    layer_configs: List::Slice(&storage.vit_layers[..]),
                    pool_dim: v.pool_dim,
                }
            }
            None => VitConfig::default(),
        };
        ModelConfig {
            display_name: self.display_name,
            model: self.model,
            wrapping,
            weight,
            num_layers: self.num_layers,
            model_dim: self.model_dim,
            vocab_size: self.vocab_size,
            max_seq_len: self.max_seq_len,
            att_cap: self.att_cap,
            final_cap: self.final_cap,
            query_scale: self.query_scale,
            layer_configs: List::Slice(&storage.layers),
            attention_window_sizes: List::Slice(&storage.windows),
            vit_config: vit,
            eos_id: 1,
            secondary_eos_id: self.secondary_eos_id,
            scale_base_names: List::Slice(&SCALE_BASE_NAMES),
            ..ModelConfig::default()
        }
    }

    /// Calls `f` with every tensor a file of this model holds, in the order
    /// gemma.cpp writes them: the model tensors, each text layer's, then each
    /// image layer's. Matrices appear in their stacked forms (`qkv_ein`,
    /// `gating_ein`, `att_ein`); [`split_forms`] lists the alternatives
    /// older files use.
    pub fn for_each_tensor(&self, mut f: impl FnMut(TensorSpec)) {
        let d = self.model_dim;
        let (h, k, qd, ff) = (self.heads, self.kv_heads, self.qkv_dim, self.ff_hidden_dim);
        let t = |base, layer, rows, cols, min| TensorSpec {
            base,
            layer,
            rows,
            cols,
            min,
        };
        f(t("c_embedding", None, self.vocab_size, d, TensorType::BF16));
        f(t("c_final_norm", None, 1, d, TensorType::BF16));
        if let Some(v) = self.vit {
            let vd = VIT_MODEL_DIM;
            let patches = v.image_size / VIT_PATCH_WIDTH;
            let gemma3 = v.pool_dim > 1;
            f(t("enc_norm_bias", None, 1, vd, TensorType::BF16));
            f(t("enc_norm_scale", None, 1, vd, TensorType::BF16));
            f(t("img_emb_bias", None, 1, vd, TensorType::F32));
            let pw = VIT_PATCH_WIDTH;
            f(t("img_emb_kernel", None, vd, pw * pw * 3, TensorType::BF16));
            f(t("img_head_bias", None, 1, d, TensorType::F32));
            f(t("img_head_kernel", None, d, vd, TensorType::BF16));
            f(t(
                "img_pos_emb",
                None,
                patches * patches,
                vd,
                TensorType::F32,
            ));
            if gemma3 {
                f(t("mm_embed_norm", None, 1, vd, TensorType::BF16));
            }
        }
        let weights = TensorType::Unknown;
        for l in 0..self.num_layers {
            let l = Some(l);
            f(t("qkv_ein", l, (h + 2 * k) * qd, d, weights));
            f(t("att_ein", l, h * d, qd, weights));
            f(t("gating_ein", l, 2 * ff, d, weights));
            f(t("linear_w", l, d, ff, weights));
            f(t("pre_att_ns", l, 1, d, TensorType::BF16));
            f(t("pre_ff_ns", l, 1, d, TensorType::BF16));
            f(t("post_att_ns", l, 1, d, TensorType::BF16));
            f(t("post_ff_ns", l, 1, d, TensorType::BF16));
            if self.use_qk_norm {
                f(t("query_norm", l, 1, qd, TensorType::BF16));
                f(t("key_norm", l, 1, qd, TensorType::BF16));
            }
        }
        if self.vit.is_some() {
            let vl = self.vit_layer();
            let (vd, vh, vk, vq, vff) = (
                vl.model_dim,
                vl.heads,
                vl.kv_heads,
                vl.qkv_dim,
                vl.ff_hidden_dim,
            );
            for l in 0..VIT_LAYERS as u32 {
                let l = Some(l);
                f(t("attn_out_w", l, vd, vh * vq, TensorType::BF16));
                f(t("attn_out_b", l, 1, vd, TensorType::F32));
                f(t("qkv_ein_w", l, vh * 3 * vq, vd, TensorType::BF16));
                f(t("qkv_ein_b", l, vh + 2 * vk, vq, TensorType::F32));
                f(t("linear_0_w", l, vff, vd, TensorType::BF16));
                f(t("linear_0_b", l, 1, vff, TensorType::F32));
                f(t("linear_1_w", l, vd, vff, TensorType::BF16));
                f(t("linear_1_b", l, 1, vd, TensorType::F32));
                f(t("ln_0_bias", l, 1, vd, TensorType::BF16));
                f(t("ln_0_scale", l, 1, vd, TensorType::BF16));
                f(t("ln_1_bias", l, 1, vd, TensorType::BF16));
                f(t("ln_1_scale", l, 1, vd, TensorType::BF16));
            }
        }
    }

    /// The split forms of one text layer's stacked matrices that gemma.cpp
    /// also accepts: `qkv1_w` (queries) + `qkv2_w` (keys and values per KV
    /// head), `gating1_w` + `gating2_w`, and `att_w` ([model_dim,
    /// heads * qkv_dim], the output projection as an ordinary matrix).
    pub fn split_forms(&self, layer: u32) -> [TensorSpec; 5] {
        let d = self.model_dim;
        let (h, k, qd, ff) = (self.heads, self.kv_heads, self.qkv_dim, self.ff_hidden_dim);
        let t = |base, rows, cols| TensorSpec {
            base,
            layer: Some(layer),
            rows,
            cols,
            min: TensorType::Unknown,
        };
        [
            t("qkv1_w", h * qd, d),
            t("qkv2_w", 2 * k * qd, d),
            t("gating1_w", ff, d),
            t("gating2_w", ff, d),
            t("att_w", d, h * qd),
        ]
    }
}

/// One tensor of a known model. Its blob name is `base`, plus `_{layer}`
/// for per-layer tensors.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TensorSpec {
    pub base: &'static str,
    pub layer: Option<u32>,
    pub rows: u32,
    pub cols: u32,
    /// The smallest type gemma.cpp stores it in; `Unknown` for the weight
    /// matrices, which take the file's main weight type.
    pub min: TensorType,
}

impl TensorSpec {
    /// The blob name (`None` if it does not fit; 16 bytes always suffice
    /// for gemma.cpp's names).
    pub fn name(&self) -> Option<heapless::String<24>> {
        use core::fmt::Write;
        let mut s = heapless::String::new();
        match self.layer {
            Some(l) => write!(s, "{}_{l}", self.base).ok()?,
            None => s.push_str(self.base).ok()?,
        }
        Some(s)
    }
}

/// Room for one known model's config: layer and window lists.
#[derive(Clone, Debug, Default)]
pub struct ConfigStorage {
    layers: heapless::Vec<LayerConfig, MAX_LAYERS>,
    windows: heapless::Vec<u32, MAX_LAYERS>,
    vit_layers: heapless::Vec<LayerConfig, VIT_LAYERS>,
}
