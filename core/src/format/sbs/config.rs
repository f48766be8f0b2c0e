//! gemma.cpp's `ModelConfig`, `LayerConfig` and `VitConfig`: the `config`
//! blob of an `.sbs` file.
//!
//! Field order, defaults and valid enum values follow gemma.cpp's
//! `gemma/configs.h` (commit `3ed403e2`). Fields gemma.cpp no longer uses
//! but still stores are read, checked and dropped, and written as zero, as
//! gemma.cpp itself does; `unused_num_tensor_scales` is the exception
//! gemma.cpp keeps, so it is kept here too.

use super::error::SbsError;
use super::fields::{self, Element, FieldEnum, Fields, List, ReadStats, Visitor};
use super::toc::TensorType;
use core::fmt;

macro_rules! field_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident = $value:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $value,)+
        }

        impl FieldEnum for $name {
            const NAME: &'static str = $what;
            fn from_u32(v: u32) -> Option<Self> {
                match v {
                    $($value => Some($name::$variant),)+
                    _ => None,
                }
            }
            fn to_u32(self) -> u32 {
                self as u32
            }
        }
    };
}

field_enum!(
    /// Which model a file holds (gemma.cpp's `Model`). Codes 1, 2, 5, 6, 8
    /// and 9 belonged to retired models and are refused, as gemma.cpp does.
    #[allow(non_camel_case_types)]
    Model, "model" {
        Unknown = 0,
        Gemma2_9B = 3,
        Gemma2_27B = 4,
        Gemma2_2B = 7,
        PaliGemma2_3B_224 = 10,
        PaliGemma2_3B_448 = 11,
        PaliGemma2_10B_224 = 12,
        PaliGemma2_10B_448 = 13,
        Gemma3_4B = 14,
        Gemma3_1B = 15,
        Gemma3_12B = 16,
        Gemma3_27B = 17,
        Gemma3_270M = 18,
    }
);

impl Model {
    /// gemma.cpp's `ModelPrefix`, the first part of a specifier.
    pub fn prefix(self) -> &'static str {
        match self {
            Model::Unknown => "unknown",
            Model::Gemma2_2B => "gemma2-2b",
            Model::Gemma2_9B => "9b",
            Model::Gemma2_27B => "27b",
            Model::PaliGemma2_3B_224 => "paligemma2-3b-224",
            Model::PaliGemma2_3B_448 => "paligemma2-3b-448",
            Model::PaliGemma2_10B_224 => "paligemma2-10b-224",
            Model::PaliGemma2_10B_448 => "paligemma2-10b-448",
            Model::Gemma3_4B => "gemma3-4b",
            Model::Gemma3_1B => "gemma3-1b",
            Model::Gemma3_12B => "gemma3-12b",
            Model::Gemma3_27B => "gemma3-27b",
            Model::Gemma3_270M => "gemma3-270m",
        }
    }
}

field_enum!(
    /// How prompts are wrapped: instruction-tuned turns, pre-trained (none),
    /// Gemma 3 vision, PaliGemma.
    PromptWrapping, "prompt wrapping" {
        GemmaIt = 0,
        GemmaPt = 1,
        GemmaVlm = 2,
        PaliGemma = 3,
    }
);

impl PromptWrapping {
    fn suffix(self) -> &'static str {
        match self {
            PromptWrapping::GemmaIt => "-it",
            PromptWrapping::GemmaPt => "-pt",
            PromptWrapping::GemmaVlm => "-vlm",
            PromptWrapping::PaliGemma => "-pg",
        }
    }
}

field_enum!(
    /// Norms after attention and after the FFW block.
    PostNormType, "post norm type" {
        None = 0,
        Scale = 1,
    }
);

field_enum!(
    LayerAttentionType, "layer attention type" {
        Gemma = 0,
        Vit = 1,
    }
);

field_enum!(
    /// Positional encoding applied to queries and keys.
    PostQkType, "post-qk type" {
        Rope = 0,
        HalfRope = 1,
    }
);

field_enum!(
    ActivationType, "activation" {
        Gelu = 0,
    }
);

field_enum!(
    /// Queries are scaled by `1/sqrt(qkv_dim)` or `1/sqrt(model_dim/heads)`.
    QueryScaleType, "query scale" {
        SqrtKeySize = 0,
        SqrtModelDimDivNumHeads = 1,
    }
);

/// One transformer layer (15 words after the size word).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerConfig {
    pub model_dim: u32,
    pub ff_hidden_dim: u32,
    pub heads: u32,
    pub kv_heads: u32,
    /// Length of each query, key and value vector.
    pub qkv_dim: u32,
    pub ff_biases: bool,
    /// gemma.cpp's default is true (Gemma 3's gating layout).
    pub optimized_gating: bool,
    pub post_norm: PostNormType,
    pub attention_type: LayerAttentionType,
    pub activation: ActivationType,
    pub post_qk: PostQkType,
    pub use_qk_norm: bool,
}

impl Default for LayerConfig {
    fn default() -> Self {
        LayerConfig {
            model_dim: 0,
            ff_hidden_dim: 0,
            heads: 0,
            kv_heads: 0,
            qkv_dim: 0,
            ff_biases: false,
            optimized_gating: true,
            post_norm: PostNormType::None,
            attention_type: LayerAttentionType::Gemma,
            activation: ActivationType::Gelu,
            post_qk: PostQkType::Rope,
            use_qk_norm: false,
        }
    }
}

impl<'a> Fields<'a> for LayerConfig {
    fn visit<V: Visitor<'a>>(&mut self, v: &mut V) -> Result<(), SbsError> {
        // Retired Griffin fields: read, checked, dropped; written as zero.
        let mut unused_griffin_dim = 0u32;
        let mut unused_conv1d_width = 0u32;
        let mut unused_softmax_attn_output_biases = false;
        v.u32(&mut self.model_dim)?;
        v.u32(&mut unused_griffin_dim)?;
        v.u32(&mut self.ff_hidden_dim)?;
        v.u32(&mut self.heads)?;
        v.u32(&mut self.kv_heads)?;
        v.u32(&mut self.qkv_dim)?;
        v.u32(&mut unused_conv1d_width)?;
        v.bool(&mut self.ff_biases)?;
        v.bool(&mut unused_softmax_attn_output_biases)?;
        v.bool(&mut self.optimized_gating)?;
        v.enumeration(&mut self.post_norm)?;
        v.enumeration(&mut self.attention_type)?;
        v.enumeration(&mut self.activation)?;
        v.enumeration(&mut self.post_qk)?;
        v.bool(&mut self.use_qk_norm)
        // gemma.cpp's (empty) InternalLayerConfig would continue here,
        // without a size word of its own.
    }
}

impl<'a> Element<'a> for LayerConfig {
    fn visit_element<V: Visitor<'a>>(&mut self, v: &mut V) -> Result<(), SbsError> {
        v.nested(self)
    }
}

/// The image encoder of vision models (all zero dimensions for text models).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VitConfig<'a> {
    pub model_dim: u32,
    pub seq_len: u32,
    pub num_scales: u32,
    pub patch_width: u32,
    pub image_size: u32,
    pub layer_configs: List<'a, LayerConfig>,
    pub pool_dim: u32,
}

impl Default for VitConfig<'_> {
    fn default() -> Self {
        VitConfig {
            model_dim: 0,
            seq_len: 0,
            num_scales: 0,
            patch_width: 14,
            image_size: 224,
            layer_configs: List::default(),
            pool_dim: 1,
        }
    }
}

impl<'a> Fields<'a> for VitConfig<'a> {
    fn visit<V: Visitor<'a>>(&mut self, v: &mut V) -> Result<(), SbsError> {
        v.u32(&mut self.model_dim)?;
        v.u32(&mut self.seq_len)?;
        v.u32(&mut self.num_scales)?;
        v.u32(&mut self.patch_width)?;
        v.u32(&mut self.image_size)?;
        v.list(&mut self.layer_configs)?;
        v.u32(&mut self.pool_dim)
    }
}

/// The whole model's configuration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ModelConfig<'a> {
    /// Major architecture version of the family.
    pub model_family_version: u32,
    /// For display only.
    pub display_name: &'a str,
    pub model: Model,
    pub wrapping: PromptWrapping,
    /// The file's main weight type (its smallest tensor type).
    pub weight: TensorType,
    pub num_layers: u32,
    pub model_dim: u32,
    pub vocab_size: u32,
    pub max_seq_len: u32,
    /// Stored and kept by gemma.cpp, no longer used.
    pub unused_num_tensor_scales: u32,
    /// Attention logit soft-cap (0: none).
    pub att_cap: f32,
    /// Final logit soft-cap (0: none).
    pub final_cap: f32,
    pub absolute_pe: bool,
    pub query_scale: QueryScaleType,
    pub layer_configs: List<'a, LayerConfig>,
    /// Per layer; a layer whose window equals `max_seq_len` is global.
    pub attention_window_sizes: List<'a, u32>,
    pub norm_num_groups: u32,
    pub vit_config: VitConfig<'a>,
    pub pool_dim: u32,
    pub eos_id: i32,
    pub secondary_eos_id: i32,
    /// Only for pre-2025 files, whose tensor scales were a separate blob.
    pub scale_base_names: List<'a, &'a str>,
}

impl Default for ModelConfig<'_> {
    fn default() -> Self {
        ModelConfig {
            model_family_version: 1,
            display_name: "",
            model: Model::Unknown,
            wrapping: PromptWrapping::GemmaPt,
            weight: TensorType::Unknown,
            num_layers: 0,
            model_dim: 0,
            vocab_size: 0,
            max_seq_len: 0,
            unused_num_tensor_scales: 0,
            att_cap: 0.0,
            final_cap: 0.0,
            absolute_pe: false,
            query_scale: QueryScaleType::SqrtKeySize,
            layer_configs: List::default(),
            attention_window_sizes: List::default(),
            norm_num_groups: 1,
            vit_config: VitConfig::default(),
            pool_dim: 1,
            eos_id: 1,
            secondary_eos_id: 1,
            scale_base_names: List::default(),
        }
    }
}

impl<'a> Fields<'a> for ModelConfig<'a> {
    fn visit<V: Visitor<'a>>(&mut self, v: &mut V) -> Result<(), SbsError> {
        let mut unused_use_local_attention = false;
        v.u32(&mut self.model_family_version)?;
        v.string(&mut self.display_name)?;
        v.enumeration(&mut self.model)?;
        v.enumeration(&mut self.wrapping)?;
        v.enumeration(&mut self.weight)?;
        v.u32(&mut self.num_layers)?;
        v.u32(&mut self.model_dim)?;
        v.u32(&mut self.vocab_size)?;
        v.u32(&mut self.max_seq_len)?;
        v.u32(&mut self.unused_num_tensor_scales)?;
        v.f32(&mut self.att_cap)?;
        v.f32(&mut self.final_cap)?;
        v.bool(&mut self.absolute_pe)?;
        v.bool(&mut unused_use_local_attention)?;
        v.enumeration(&mut self.query_scale)?;
        v.list(&mut self.layer_configs)?;
        v.list(&mut self.attention_window_sizes)?;
        v.u32(&mut self.norm_num_groups)?;
        v.nested(&mut self.vit_config)?;
        v.u32(&mut self.pool_dim)?;
        v.i32(&mut self.eos_id)?;
        v.i32(&mut self.secondary_eos_id)?;
        v.list(&mut self.scale_base_names)
        // InternalModelConfig (empty) would continue here.
    }
}

impl<'a> ModelConfig<'a> {
    /// Reads a `config` blob. Unknown trailing fields are skipped and
    /// missing ones keep gemma.cpp's defaults ([`ModelConfig::parse_with_stats`]
    /// says how many).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, SbsError> {
        Self::parse_with_stats(bytes).map(|(c, _)| c)
    }

    pub fn parse_with_stats(bytes: &'a [u8]) -> Result<(Self, ReadStats), SbsError> {
        fields::read(bytes)
    }

    /// Serializes into `buf` as gemma.cpp does; returns the bytes written.
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, SbsError> {
        fields::write(self, buf)
    }

    pub fn serialized_len(&self) -> Result<usize, SbsError> {
        fields::serialized_len(self)
    }

    /// Whether layer `layer` attends globally (its window is the whole
    /// context); `None` past the window list.
    pub fn is_global_layer(&self, layer: usize) -> Option<bool> {
        Some(self.attention_window_sizes.get(layer)? == self.max_seq_len)
    }

    /// gemma.cpp's `Specifier`, e.g. `gemma3-270m-sfp-pt`: model, weight
    /// type and, except for vision models, the wrapping.
    pub fn specifier(&self) -> Specifier {
        Specifier {
            model: self.model,
            weight: self.weight,
            wrapping: self.wrapping,
        }
    }
}

/// Displays as gemma.cpp's specifier string.
#[derive(Clone, Copy, Debug)]
pub struct Specifier {
    model: Model,
    weight: TensorType,
    wrapping: PromptWrapping,
}

impl fmt::Display for Specifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.model.prefix(), self.weight.name())?;
        match self.wrapping {
            PromptWrapping::GemmaVlm | PromptWrapping::PaliGemma => Ok(()),
            w => f.write_str(w.suffix()),
        }
    }
}
