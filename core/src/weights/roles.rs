//! Every tensor of a Gemma text model, named once: its role, its shape, and
//! how GGUF, gemma.cpp's `.sbs` and Hugging Face checkpoints spell it.
//!
//! Loaders, converters and the synthetic-model writer all read this table,
//! so a name is never spelled twice.

/// What a tensor does in the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Embedding,
    FinalNorm,
    /// The output projection; Gemma ties it to the embedding, so files
    /// rarely carry it.
    Output,
    AttnNorm,
    Q,
    K,
    V,
    /// The attention output projection.
    O,
    QNorm,
    KNorm,
    PostAttnNorm,
    FfnNorm,
    Gate,
    Up,
    Down,
    PostFfwNorm,
}

/// Which models have a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    Always,
    /// Only where queries and keys are RMS-normed per head (Gemma 3).
    QkNorm,
    /// Only where sub-block outputs are normed before the residual add
    /// (Gemma 2 and 3).
    PostNorms,
    /// Never required: tied to the embedding when absent.
    Optional,
}

/// The sizes tensor shapes are made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    pub vocab: usize,
    pub d_model: usize,
    /// `n_heads * head_dim`.
    pub q_dim: usize,
    /// `n_kv_heads * head_dim`.
    pub kv_dim: usize,
    pub head_dim: usize,
    pub d_ff: usize,
}

/// One row of [`ROLES`].
#[derive(Clone, Copy, Debug)]
pub struct RoleInfo {
    pub role: Role,
    /// One per layer (`blk.N.…`), or one for the model.
    pub per_layer: bool,
    pub presence: Presence,
    /// GGUF name without `blk.N.` and `.weight`.
    pub gguf: &'static str,
    /// gemma.cpp name without `_N`. Q, K and V share `qkv_ein`, gate and
    /// up `gating_ein`; `att_ein` stores the output projection head-major.
    pub sbs: &'static str,
    /// Hugging Face name without `…layers.N.` and `.weight`.
    pub hf: &'static str,
    /// `(rows, cols)`: output features by input features; a norm gain is
    /// one row.
    pub shape: fn(&Dims) -> (usize, usize),
}

const fn info(
    role: Role,
    per_layer: bool,
    presence: Presence,
    names: [&'static str; 3],
    shape: fn(&Dims) -> (usize, usize),
) -> RoleInfo {
    RoleInfo {
        role,
        per_layer,
        presence,
        gguf: names[0],
        sbs: names[1],
        hf: names[2],
        shape,
    }
}

/// The table: one row per role, in the order a block uses them.
pub const ROLES: [RoleInfo; 16] = {
    use Presence::*;
    use Role::*;
    [
        info(
            Embedding,
            false,
            Always,
            ["token_embd", "c_embedding", "embed_tokens"],
            |d| (d.vocab, d.d_model),
        ),
        info(
            AttnNorm,
            true,
            Always,
            ["attn_norm", "pre_att_ns", "input_layernorm"],
            |d| (1, d.d_model),
        ),
        info(
            Q,
            true,
            Always,
            ["attn_q", "qkv_ein", "self_attn.q_proj"],
            |d| (d.q_dim, d.d_model),
        ),
        info(
            K,
            true,
            Always,
            ["attn_k", "qkv_ein", "self_attn.k_proj"],
            |d| (d.kv_dim, d.d_model),
        ),
        info(
            V,
            true,
            Always,
            ["attn_v", "qkv_ein", "self_attn.v_proj"],
            |d| (d.kv_dim, d.d_model),
        ),
        info(
            QNorm,
            true,
            QkNorm,
            ["attn_q_norm", "query_norm", "self_attn.q_norm"],
            |d| (1, d.head_dim),
        ),
        info(
            KNorm,
            true,
            QkNorm,
            ["attn_k_norm", "key_norm", "self_attn.k_norm"],
            |d| (1, d.head_dim),
        ),
        info(
            O,
            true,
            Always,
            ["attn_output", "att_ein", "self_attn.o_proj"],
            |d| (d.d_model, d.q_dim),
        ),
        info(
            PostAttnNorm,
            true,
            PostNorms,
            [
                "post_attention_norm",
                "post_att_ns",
                "post_attention_layernorm",
            ],
            |d| (1, d.d_model),
        ),
        info(
            FfnNorm,
            true,
            Always,
            ["ffn_norm", "pre_ff_ns", "pre_feedforward_layernorm"],
            |d| (1, d.d_model),
        ),
        info(
            Gate,
            true,
            Always,
            ["ffn_gate", "gating_ein", "mlp.gate_proj"],
            |d| (d.d_ff, d.d_model),
        ),
        info(
            Up,
            true,
            Always,
            ["ffn_up", "gating_ein", "mlp.up_proj"],
            |d| (d.d_ff, d.d_model),
        ),
        info(
            Down,
            true,
            Always,
            ["ffn_down", "linear_w", "mlp.down_proj"],
            |d| (d.d_model, d.d_ff),
        ),
        info(
            PostFfwNorm,
            true,
            PostNorms,
            ["post_ffw_norm", "post_ff_ns", "post_feedforward_layernorm"],
            |d| (1, d.d_model),
        ),
        info(
            FinalNorm,
            false,
            Always,
            ["output_norm", "c_final_norm", "norm"],
            |d| (1, d.d_model),
        ),
        info(Output, false, Optional, ["output", "", "lm_head"], |d| {
            (d.vocab, d.d_model)
        }),
    ]
};

impl Role {
    /// This role's row of [`ROLES`].
    pub fn info(self) -> &'static RoleInfo {
        // Every role has exactly one row (checked by a test).
        ROLES.iter().find(|r| r.role == self).unwrap_or(&ROLES[0])
    }

    /// Whether a model with these traits must carry the tensor.
    pub fn required(self, qk_norm: bool, post_norms: bool) -> bool {
        match self.info().presence {
            Presence::Always => true,
            Presence::QkNorm => qk_norm,
            Presence::PostNorms => post_norms,
            Presence::Optional => false,
        }
    }

    /// The roles of one transformer block, in the order the block uses them.
    pub fn per_layer() -> impl Iterator<Item = Role> {
        ROLES.iter().filter(|r| r.per_layer).map(|r| r.role)
    }
}

/// One tensor: a role, and the layer for per-layer roles (ignored
/// otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TensorId {
    pub role: Role,
    pub layer: usize,
}

impl TensorId {
    pub const fn global(role: Role) -> Self {
        Self { role, layer: 0 }
    }

    pub const fn layer(role: Role, layer: usize) -> Self {
        Self { role, layer }
    }

    /// The layer, for a per-layer role.
    pub fn block(&self) -> Option<usize> {
        self.role.info().per_layer.then_some(self.layer)
    }
}

/// A tensor's name, built without allocating. Names longer than this
/// (only a Hugging Face prefix could make one) are cut short, and then
/// simply not found.
pub type Name = heapless::String<96>;

/// The formatted name.
fn name_of(parts: core::fmt::Arguments) -> Name {
    let mut n = Name::new();
    let _ = core::fmt::Write::write_fmt(&mut n, parts);
    n
}

impl TensorId {
    /// The GGUF name: `blk.N.attn_q.weight`, `token_embd.weight`.
    pub fn gguf_name(&self) -> Name {
        let info = self.role.info();
        if info.per_layer {
            name_of(format_args!("blk.{}.{}.weight", self.layer, info.gguf))
        } else {
            name_of(format_args!("{}.weight", info.gguf))
        }
    }

    /// The gemma.cpp `.sbs` name: `qkv_ein_N`, `c_embedding`.
    pub fn sbs_name(&self) -> Name {
        let info = self.role.info();
        if info.per_layer {
            name_of(format_args!("{}_{}", info.sbs, self.layer))
        } else {
            name_of(format_args!("{}", info.sbs))
        }
    }

    /// The Hugging Face name under `prefix` (`model.`, or
    /// `language_model.model.` in multimodal checkpoints):
    /// `model.layers.N.self_attn.q_proj.weight`.
    pub fn hf_name(&self, prefix: &str) -> Name {
        let info = self.role.info();
        if info.per_layer {
            name_of(format_args!(
                "{prefix}layers.{}.{}.weight",
                self.layer, info.hf
            ))
        } else {
            name_of(format_args!("{prefix}{}.weight", info.hf))
        }
    }

    /// `(rows, cols)` of this tensor.
    pub fn shape(&self, dims: &Dims) -> (usize, usize) {
        (self.role.info().shape)(dims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_has_one_row() {
        use Role::*;
        for role in [
            Embedding,
            FinalNorm,
            Output,
            AttnNorm,
            Q,
            K,
            V,
            O,
            QNorm,
            KNorm,
            PostAttnNorm,
            FfnNorm,
            Gate,
            Up,
            Down,
            PostFfwNorm,
        ] {
            assert_eq!(
                ROLES.iter().filter(|r| r.role == role).count(),
                1,
                "{role:?}"
            );
        }
    }

    #[test]
    fn names_are_spelled_like_each_format() {
        let q = TensorId::layer(Role::Q, 61);
        assert_eq!(q.gguf_name().as_str(), "blk.61.attn_q.weight");
        assert_eq!(q.sbs_name().as_str(), "qkv_ein_61");
        assert_eq!(
            q.hf_name("model.").as_str(),
            "model.layers.61.self_attn.q_proj.weight"
        );
        let e = TensorId::global(Role::Embedding);
        assert_eq!(e.gguf_name().as_str(), "token_embd.weight");
        assert_eq!(e.sbs_name().as_str(), "c_embedding");
        assert_eq!(
            e.hf_name("language_model.model.").as_str(),
            "language_model.model.embed_tokens.weight"
        );
        assert_eq!(
            TensorId::layer(Role::PostFfwNorm, 0).gguf_name().as_str(),
            "blk.0.post_ffw_norm.weight"
        );
    }
}
