//! Pre-2025 gemma.cpp `.sbs` files, as a source for `gemma convert`.
//!
//! Before gemma.cpp embedded `config`, `toc` and `tokenizer` blobs, a weights
//! file held only tensors, the tokenizer came as a separate file and the
//! model was named on the command line. What such a file holds:
//!
//! - A blob store with the header at the start (both layouts are read by
//!   `BlobStore`).
//! - One blob per tensor, its key a type character and the tensor's name:
//!   `F` f32, `B` bf16, `$` SFP, `2` NUQ, `I` I8; per-layer tensors end in
//!   `_<layer>` (`$qkv_ein_3`, `Bpre_att_ns_25`, `Bc_embedding`). Layouts
//!   are today's stacked forms (`qkv_ein`, `att_ein`, `gating_ein`,
//!   `linear_w`), packed rows, no per-tensor scale; norms hold the `w` of
//!   `(1 + w)`.
//! - Optionally an `Fscales` blob of per-tensor scales (Griffin models
//!   only; Gemma files have none). Files with one are refused rather than
//!   guessed at.
//!
//! The model is the known gemma.cpp model with as many layers as the
//! largest layer suffix says and an embedding of exactly the blob's size,
//! so shapes come from `KNOWN_MODELS`, as gemma.cpp does it.

use crate::source::{err, ConvertError, Source};
use gemma_core::codec::Codec;
use gemma_core::format::sbs::{
    BlobStore, ConfigStorage, KnownModel, PromptWrapping, TensorType, KNOWN_MODELS,
};
use gemma_core::model::ModelConfig;
use gemma_core::weights::{Role, TensorId};

/// A pre-2025 weights file and the known model it holds.
pub(crate) struct LegacySbs<'a> {
    store: BlobStore<'a>,
    known: &'static KnownModel,
    /// The codec of the layer matrices (what `--weights` was when it was
    /// written).
    pub weights: Codec,
}

/// The codec a key's first character names.
fn prefix_codec(c: u8) -> Option<Codec> {
    Some(match c {
        b'F' => Codec::F32,
        b'B' => Codec::BF16,
        b'$' => Codec::SFP,
        b'2' => Codec::NUQ,
        b'I' => Codec::I8,
        _ => return None,
    })
}

/// The layer of a per-layer tensor name (`qkv_ein_12` → 12).
fn layer_suffix(name: &str) -> Option<usize> {
    let (_, n) = name.rsplit_once('_')?;
    n.parse().ok()
}

impl<'a> LegacySbs<'a> {
    /// Reads the store and works out the model; a file with a `toc` (a
    /// current file), an `Fscales` blob or no matching known model is
    /// refused with the reason.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ConvertError> {
        let store = BlobStore::parse(bytes).map_err(|e| err(e.to_string()))?;
        if store.blob("toc").is_some() {
            return Err(err(
                "this .sbs file is already in the current format (it has a toc)",
            ));
        }
        if store.blob("Fscales").is_some() {
            return Err(err(
                "this pre-2025 .sbs file carries per-tensor scales (Fscales), which only \
                 Griffin models used; it is not a Gemma model gemma-rs can migrate",
            ));
        }
        let mut layers = 0usize;
        for b in store.blobs() {
            let tensor = b.name.as_bytes().first().copied().and_then(prefix_codec);
            if tensor.is_some() {
                if let Some(l) = layer_suffix(&b.name[1..]) {
                    layers = layers.max(l.saturating_add(1));
                }
            }
        }
        let (emb_codec, emb) = find(&store, "c_embedding")
            .ok_or_else(|| err("no c_embedding blob: not a gemma.cpp weights file"))?;
        let known = KNOWN_MODELS
            .iter()
            .find(|k| {
                k.vit.is_none()
                    && k.num_layers as usize == layers
                    && emb_codec.bytes_for(k.vocab_size as usize * k.model_dim as usize)
                        == Some(emb.len())
            })
            .ok_or_else(|| {
                err(format!(
                    "no gemma.cpp text model has {layers} layers and an embedding of {} \
                     bytes ({})",
                    emb.len(),
                    emb_codec.name()
                ))
            })?;
        let (weights, _) =
            find(&store, "qkv_ein_0").ok_or_else(|| err("no qkv_ein_0 blob in the file"))?;
        Ok(Self {
            store,
            known,
            weights,
        })
    }

    /// The shapes of the known model's tensors.
    fn known_dims(&self) -> gemma_core::weights::Dims {
        let k = self.known;
        gemma_core::weights::Dims {
            vocab: k.vocab_size as usize,
            d_model: k.model_dim as usize,
            q_dim: (k.heads * k.qkv_dim) as usize,
            kv_dim: (k.kv_heads * k.qkv_dim) as usize,
            head_dim: k.qkv_dim as usize,
            d_ff: k.ff_hidden_dim as usize,
        }
    }

    /// The engine's configuration of that model.
    pub fn config(&self) -> Result<ModelConfig, ConvertError> {
        let mut storage = ConfigStorage::default();
        let cfg = self.known.config(
            TensorType::from_codec(self.weights),
            PromptWrapping::GemmaPt,
            &mut storage,
        );
        let bytes = crate::sbs_writer::config_bytes(&cfg).map_err(|e| err(e.to_string()))?;
        let parsed =
            gemma_core::format::sbs::ModelConfig::parse(&bytes).map_err(|e| err(e.to_string()))?;
        gemma_core::load::sbs::fields(&parsed)
            .and_then(|f| ModelConfig::derive(&f))
            .map_err(|e| err(e.to_string()))
    }

    /// Tensor `name` decoded, checked to hold `rows * cols` elements.
    fn decoded(&self, name: &str, rows: usize, cols: usize) -> Result<Vec<f32>, ConvertError> {
        let (codec, bytes) =
            find(&self.store, name).ok_or_else(|| err(format!("missing tensor {name}")))?;
        let n = rows
            .checked_mul(cols)
            .ok_or_else(|| err(format!("{name}: shape overflows")))?;
        if codec.bytes_for(n) != Some(bytes.len()) {
            return Err(err(format!(
                "{name}: {} bytes of {}, but the model wants {rows} x {cols}",
                bytes.len(),
                codec.name()
            )));
        }
        let mut out = vec![0f32; n];
        gemma_core::codec::decode(codec, bytes, 0, &mut out)
            .map_err(|e| err(format!("{name}: {e:?}")))?;
        Ok(out)
    }
}

/// The blob holding tensor `name`, whatever its type character.
fn find<'a>(store: &BlobStore<'a>, name: &str) -> Option<(Codec, &'a [u8])> {
    store.blobs().find_map(|b| {
        let (&c, rest) = b.name.as_bytes().split_first()?;
        (rest == name.as_bytes())
            .then_some(())
            .and(prefix_codec(c))
            .map(|codec| (codec, b.bytes))
    })
}

impl Source for LegacySbs<'_> {
    fn matrix(&self, id: TensorId, rows: usize, cols: usize) -> Result<Vec<f32>, ConvertError> {
        let k = self.known;
        let (d, hd, h, kvh, ff) = (
            k.model_dim as usize,
            k.qkv_dim as usize,
            k.heads as usize,
            k.kv_heads as usize,
            k.ff_hidden_dim as usize,
        );
        // Rows `first..first + n` of a stacked matrix of width `width`.
        let rows_of = |m: &[f32], first: usize, n: usize, width: usize| {
            m[first * width..(first + n) * width].to_vec()
        };
        let name = id.sbs_name();
        let out = match id.role {
            Role::Embedding => self.decoded(&name, k.vocab_size as usize, d)?,
            Role::Q => rows_of(&self.decoded(&name, (h + 2 * kvh) * hd, d)?, 0, h * hd, d),
            Role::K | Role::V => {
                let qkv = self.decoded(&name, (h + 2 * kvh) * hd, d)?;
                // Each KV head's K rows, then its V rows.
                let skip = if id.role == Role::K { 0 } else { hd };
                (0..kvh)
                    .flat_map(|j| rows_of(&qkv, h * hd + 2 * j * hd + skip, hd, d))
                    .collect()
            }
            Role::O => {
                // att_ein is [h * d, hd]: row h * d + m holds output row m's
                // columns of head h.
                let att = self.decoded(&name, h * d, hd)?;
                let mut o = vec![0f32; d * h * hd];
                for head in 0..h {
                    for m in 0..d {
                        o[m * h * hd + head * hd..][..hd]
                            .copy_from_slice(&att[(head * d + m) * hd..][..hd]);
                    }
                }
                o
            }
            Role::Gate | Role::Up => {
                let g = self.decoded(&name, 2 * ff, d)?;
                let first = if id.role == Role::Gate { 0 } else { ff };
                rows_of(&g, first, ff, d)
            }
            Role::Down => self.decoded(&name, d, ff)?,
            _ => return self.norm(id, rows * cols),
        };
        if out.len() != rows * cols {
            return Err(err(format!(
                "{name}: the file holds {} values, {rows} x {cols} wanted",
                out.len()
            )));
        }
        Ok(out)
    }

    /// Norms are stored as gemma.cpp's `w` already.
    fn norm(&self, id: TensorId, n: usize) -> Result<Vec<f32>, ConvertError> {
        if id.shape(&self.known_dims()).0 != 1 {
            return Err(err(format!("{} is not a norm", id.sbs_name())));
        }
        self.decoded(&id.sbs_name(), 1, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_prefixes_and_layer_suffixes() {
        assert_eq!(prefix_codec(b'$'), Some(Codec::SFP));
        assert_eq!(prefix_codec(b'2'), Some(Codec::NUQ));
        assert_eq!(prefix_codec(b'c'), None);
        assert_eq!(layer_suffix("qkv_ein_12"), Some(12));
        assert_eq!(layer_suffix("c_embedding"), None);
        assert_eq!(layer_suffix("embedding"), None);
    }
}
