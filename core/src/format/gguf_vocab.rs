//! The tokenizer vocabulary a GGUF file carries (`tokenizer.ggml.*`).

use super::gguf::{Gguf, ValueType};
use crate::tokenizer::{PieceEntry, SpecialIds, Tokenizer, TokenizerError};

/// Borrowed vocabulary arrays, ready for the tokenizer builders.
#[derive(Clone, Copy, Debug)]
pub struct GgufVocab<'a> {
    /// The raw `tokenizer.ggml.tokens` string array (u64 length + bytes each).
    pub tokens_raw: &'a [u8],
    pub count: usize,
    /// Packed little-endian f32 scores; empty when the file has none.
    pub scores_raw: &'a [u8],
    /// Packed little-endian i32 token types; empty when the file has none.
    pub types_raw: &'a [u8],
    pub specials: SpecialIds,
    pub add_space_prefix: bool,
}

impl<'a> GgufVocab<'a> {
    pub fn from_gguf(g: &Gguf<'a>) -> Result<Self, TokenizerError> {
        let model = g.get_str("tokenizer.ggml.model");
        if model.is_some_and(|m| m != "llama") {
            return Err(TokenizerError::BadVocab(
                "only SentencePiece ('llama') vocabularies are supported",
            ));
        }
        let tokens = g
            .get_array("tokenizer.ggml.tokens")
            .filter(|a| a.elem == ValueType::String)
            .ok_or(TokenizerError::BadVocab(
                "tokenizer.ggml.tokens is missing or not a string array",
            ))?;
        let packed = |key: &str, elem: ValueType| -> Result<&'a [u8], TokenizerError> {
            match g.get_array(key) {
                None => Ok(&[]),
                Some(a) if a.elem == elem && a.len == tokens.len => Ok(a.data),
                Some(_) => Err(TokenizerError::BadVocab(
                    "scores or token types do not match the tokens",
                )),
            }
        };
        let id = |key: &str| g.get_u64(key).and_then(|v| u32::try_from(v).ok());
        Ok(Self {
            tokens_raw: tokens.data,
            count: tokens.len,
            scores_raw: packed("tokenizer.ggml.scores", ValueType::F32)?,
            types_raw: packed("tokenizer.ggml.token_type", ValueType::I32)?,
            specials: SpecialIds {
                bos: id("tokenizer.ggml.bos_token_id"),
                eos: id("tokenizer.ggml.eos_token_id"),
                unk: id("tokenizer.ggml.unknown_token_id"),
                pad: id("tokenizer.ggml.padding_token_id"),
            },
            add_space_prefix: g
                .get_bool("tokenizer.ggml.add_space_prefix")
                .unwrap_or(false),
        })
    }

    /// Builds a tokenizer into caller memory (sizes from
    /// [`Tokenizer::entries_len`] and [`Tokenizer::index_len`] of `count`).
    pub fn build(
        &self,
        entries: &'a mut [PieceEntry],
        index: &'a mut [u32],
    ) -> Result<Tokenizer<'a>, TokenizerError> {
        Tokenizer::build_from_gguf_arrays(
            self.tokens_raw,
            self.count,
            self.scores_raw,
            self.types_raw,
            self.specials,
            self.add_space_prefix,
            entries,
            index,
        )
    }

    /// Owned tables for std callers that keep the file bytes mapped.
    #[cfg(feature = "alloc")]
    pub fn tables(&self) -> Result<crate::tokenizer::TokenizerTables, TokenizerError> {
        crate::tokenizer::TokenizerTables::from_gguf_arrays(
            self.tokens_raw,
            self.count,
            self.scores_raw,
            self.types_raw,
            self.specials,
            self.add_space_prefix,
        )
    }
}
