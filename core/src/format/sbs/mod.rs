//! gemma.cpp's single-file weights format (`.sbs`), over borrowed bytes.
//!
//! gemma.cpp ships a model as one file: a *blob store* of named byte ranges.
//! Since 2025 a model file holds one blob per tensor, then `config` (the
//! model's hyperparameters), `tokenizer` (a SentencePiece model proto, read
//! by [`crate::format::spm`]) and `toc` (shape, type and scale of every
//! tensor). Tensors are encoded with gemma.cpp's codecs ([`crate::codec`]).
//! Everything is little-endian. The ground truth is gemma.cpp at commit
//! `3ed403e2` and the files it wrote for the goldens
//! (`core/tests/data/gemmacpp/`).
//!
//! # Blob store ([`BlobStore`])
//!
//! A header is `{u32 magic = 0x0A534253 ("SBS\n"), u32 num_blobs, u64
//! file_bytes}`. The directory is `num_blobs` 16-byte keys (the name in
//! ASCII, NUL-padded; a 16-character name has no NUL), then `num_blobs`
//! ranges `{u64 offset, u64 size}`; `size` excludes padding. Blobs lie back
//! to back in directory order, each at a multiple of 256 (so a mapped file
//! hands out tensors aligned for any SIMD width) and zero-padded to one.
//!
//! Layout V2, what gemma.cpp writes (the writer appends blobs without
//! knowing how many will come, so the directory goes last):
//!
//! ```text
//! 0          placeholder header {magic, 0, 65536}, zeros to 256
//! 256        blob 0, zeros to a multiple of 256; blob 1; ...
//!            zeros up to F - 16 - 32n
//! F-16-32n   n keys, then n ranges
//! F-16       header {magic, n, F}
//! F          = file size = roundup(256 + sum roundup(size_i, 256)
//!                                  + roundup(16 + 32n, 256), 65536)
//! ```
//!
//! Layout V1, older files: `header {magic, n, F}` at 0, the directory right
//! after it at 16, blobs from `roundup(16 + 32n, 256)`, then padding (to
//! 64 KiB, or none in the oldest files). A file is V1 when its first header
//! has the magic and a non-zero count, otherwise V2.
//!
//! [`BlobStore::parse`] refuses, with an [`SbsError`] and never a panic: a
//! wrong magic; zero blobs or more than 16384 (gemma.cpp's bound); a
//! `file_bytes` other than the real size; a directory that does not fit; an
//! offset that is not a multiple of 256; a zero size (gemma.cpp cannot write
//! one); a blob that overlaps the one before it or leaves a gap (gemma.cpp
//! insists on back to back) or runs past the end. Stricter than gemma.cpp,
//! which would misread such files rather than refuse them: a V2 blob running
//! into the directory; an empty, non-UTF-8 or not NUL-padded name; two blobs
//! of the same name. More tolerant, as gemma.cpp is: a V2 file's placeholder
//! header and all padding are not looked at.
//!
//! # Fields ([`fields`])
//!
//! `config` and `toc` use gemma.cpp's "fields" serialization: a struct is a
//! stream of u32 words, prefixed by the number of words that follow, so old
//! code can skip fields appended later and new code can default fields old
//! data lacks. u32, i32, bool (0/1) and enums are one word; f32 its bit
//! pattern (finite); u64 two words, low first; a string `u32 nwords` plus its
//! ASCII bytes packed little-endian, zero-padded to a word (at most 64
//! words, no all-zero word); a vector `u32 count` (at most 65536) plus its
//! elements; a nested struct its own size word plus its fields.
//!
//! # `config` ([`ModelConfig`])
//!
//! `ModelConfig` in field order: `model_family_version`, `display_name`,
//! `model`, `wrapping`, `weight`, `num_layers`, `model_dim`, `vocab_size`,
//! `max_seq_len`, an unused u32, `att_cap`, `final_cap`, `absolute_pe`, an
//! unused bool, `query_scale`, `layer_configs` (vector of `LayerConfig`),
//! `attention_window_sizes` (vector of u32), `norm_num_groups`, `vit_config`
//! (`VitConfig`), `pool_dim`, `eos_id`, `secondary_eos_id`,
//! `scale_base_names` (vector of strings). `LayerConfig` (15 words):
//! `model_dim`, unused, `ff_hidden_dim`, `heads`, `kv_heads`, `qkv_dim`,
//! unused, `ff_biases`, unused bool, `optimized_gating`, `post_norm`,
//! `type`, `activation`, `post_qk`, `use_qk_norm`. `VitConfig`: `model_dim`,
//! `seq_len`, `num_scales`, `patch_width`, `image_size`, `layer_configs`,
//! `pool_dim`. Gemma 3 270M's config is 369 words.
//!
//! # `toc` ([`Toc`])
//!
//! One `MatPtr` struct per tensor, concatenated: `name` (string, also the
//! blob's name), `type` (0 unknown, 1 f32, 2 bf16, 3 sfp, 4 nuq, 5 f64,
//! 6 u32, 7 u64, 8 i8), `element_bytes`, `num_elements` (for NUQ and I8 the
//! stream's bytes, group tables included), `rows`, `cols`, `scale` (f32),
//! `stride` (= `cols`). For example `c_embedding` is `11, 3, "c_em", "bedd",
//! "ing\0", 2, 2, 167772160, 262144, 640, 1.0, 640`.
//!
//! [`SbsFile::parse`] ties them together: every `toc` record names an
//! existing blob whose size is `num_elements * element_bytes`, with a weight
//! codec, consistent counts, packed rows.
//!
//! # Tensors of a Gemma model
//!
//! Each tensor is one codec stream, row-major: element `(r, c)` is stream
//! element `r * cols + c`, so NUQ and I8 groups straddle rows. Decoded values
//! are multiplied by the record's `scale`. Names and `[rows, cols]` (per layer
//! `l`, names end in `_l`; `H` heads, `K` kv heads, `D` qkv_dim, `M`
//! model_dim, `F` ff_hidden_dim):
//!
//! ```text
//! c_embedding   [vocab, M]       also the output projection (tied)
//! c_final_norm  [1, M]
//! qkv_ein_l     [(H + 2K) D, M]  rows 0..HD: queries, head by head; then per
//!                                kv head: D rows of keys, D rows of values
//! att_ein_l     [H M, D]         rows hM..(h+1)M: head h's output
//!                                projection, out[m] = sum_h,d W[hM + m][d] a_h[d]
//! gating_ein_l  [2F, M]          rows 0..F: gate (through GELU), F..2F: up
//! linear_w_l    [M, F]           down projection
//! pre_att_ns_l, post_att_ns_l, pre_ff_ns_l, post_ff_ns_l   [1, M]
//! query_norm_l, key_norm_l       [1, D]
//! ```
//!
//! Norm gains are stored as gemma.cpp applies them, `x * (1 + w)`: a GGUF
//! gain minus one. gemma.cpp also accepts split `qkv1_w`/`qkv2_w`,
//! `gating1_w`/`gating2_w` and a pre-transposed `att_w` `[M, H D]`; it copies
//! `att_ein` into that layout when it loads.
//!
//! Nothing here allocates, whatever the counts in the file: the directory,
//! vectors and the `toc` stay encoded in the file's bytes and are decoded
//! again on each walk. Work is linear in the file's metadata, except the
//! duplicate-name check (quadratic in the blob count, at most 16384: about
//! 0.1 s) and finding tensors when the `toc` is not in blob order.

pub mod blob_store;
pub mod config;
mod error;
pub mod fields;
pub mod known;
pub mod toc;

pub use blob_store::{Blob, BlobEntry, BlobStore, Directory, Layout};
pub use config::{
    ActivationType, LayerAttentionType, LayerConfig, Model, ModelConfig, PostNormType, PostQkType,
    PromptWrapping, QueryScaleType, VitConfig,
};
pub use error::SbsError;
pub use fields::{List, ReadStats};
pub use known::{ConfigStorage, KnownModel, TensorSpec, KNOWN_MODELS};
pub use toc::{write_toc, TensorType, Toc, TocEntry};

use crate::codec::Codec;

/// One tensor: its record and its bytes (a codec stream of `rows * cols`
/// elements, row-major).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SbsTensor<'a> {
    pub name: &'a str,
    pub codec: Codec,
    pub rows: usize,
    pub cols: usize,
    /// Multiply decoded values by this.
    pub scale: f32,
    pub bytes: &'a [u8],
    /// Index of the blob holding it.
    pub blob: usize,
    pub entry: TocEntry<'a>,
}

/// A validated single-file model: blob store, config and tensor table.
#[derive(Clone, Copy, Debug)]
pub struct SbsFile<'a> {
    pub store: BlobStore<'a>,
    pub config: ModelConfig<'a>,
    pub toc: Toc<'a>,
}

impl<'a> SbsFile<'a> {
    /// Parses the store, `config` and `toc`, and checks every tensor
    /// against its blob. Pre-2025 files (no `config` or `toc`: gemma.cpp
    /// deduced the model from blob names) are refused.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, SbsError> {
        let store = BlobStore::parse(bytes)?;
        let config = ModelConfig::parse(
            store
                .blob("config")
                .ok_or(SbsError::MissingBlob("config"))?,
        )?;
        let toc = Toc::parse(store.blob("toc").ok_or(SbsError::MissingBlob("toc"))?)?;
        let file = SbsFile { store, config, toc };
        // Which blob each record claimed, to catch two records naming one
        // blob: a bit per possible blob, 2 KiB whatever the file.
        let mut claimed = [0u64; blob_store::MAX_BLOBS / 64];
        let mut owner_hint = 0;
        for (tensor, entry) in toc.iter().enumerate() {
            let t = file.resolve(tensor, entry, owner_hint)?;
            owner_hint = t.blob + 1;
            let (word, bit) = (t.blob / 64, 1u64 << (t.blob % 64));
            let slot = claimed
                .get_mut(word)
                .ok_or(SbsError::TensorBlobMissing { tensor })?;
            if *slot & bit != 0 {
                let first = toc
                    .iter()
                    .position(|e| e.name == entry.name)
                    .unwrap_or(tensor);
                return Err(SbsError::DuplicateTensor {
                    first,
                    second: tensor,
                });
            }
            *slot |= bit;
        }
        Ok(file)
    }

    fn resolve(
        &self,
        tensor: usize,
        entry: TocEntry<'a>,
        hint: usize,
    ) -> Result<SbsTensor<'a>, SbsError> {
        let codec = entry
            .check()
            .map_err(|why| SbsError::BadTensor { tensor, why })?;
        let blob = self
            .store
            .find_from(entry.name, hint)
            .ok_or(SbsError::TensorBlobMissing { tensor })?;
        let expected = entry.packed_bytes().unwrap_or(u64::MAX);
        let actual = blob.bytes.len() as u64;
        if expected != actual {
            return Err(SbsError::TensorSizeMismatch {
                tensor,
                expected,
                actual,
            });
        }
        Ok(SbsTensor {
            name: entry.name,
            codec,
            rows: entry.rows as usize,
            cols: entry.cols as usize,
            scale: entry.scale,
            bytes: blob.bytes,
            blob: blob.index,
            entry,
        })
    }

    /// The tokenizer blob (a SentencePiece model proto), if present.
    pub fn tokenizer(&self) -> Option<&'a [u8]> {
        self.store.blob("tokenizer")
    }

    /// Every tensor, in `toc` order.
    pub fn tensors(&self) -> impl Iterator<Item = SbsTensor<'a>> + 'a {
        let file = *self;
        let mut hint = 0;
        file.toc.iter().enumerate().filter_map(move |(i, e)| {
            // Cannot fail: `parse` resolved every record.
            let t = file.resolve(i, e, hint).ok()?;
            hint = t.blob + 1;
            Some(t)
        })
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<SbsTensor<'a>> {
        let (i, e) = self.toc.iter().enumerate().find(|(_, e)| e.name == name)?;
        self.resolve(i, e, 0).ok()
    }
}
