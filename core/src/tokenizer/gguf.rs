//! The vocabulary a GGUF file carries (`tokenizer.ggml.*`), read through
//! the format layer's typed arrays.

use super::build::{build_index, ResolvedSpecials};
use super::index::NONE;
use super::{
    check_len, PieceEntry, PieceKind, SpecialIds, Tokenizer, TokenizerError, TokenizerMeta,
};
use crate::format::gguf::{Array, Gguf, ValueType};

/// Borrowed vocabulary arrays, ready for the tokenizer builders. The fields
/// are public so that a vocabulary can come from elsewhere than a parsed
/// file; the builders check them all the same.
#[derive(Clone, Copy, Debug)]
pub struct GgufVocab<'a> {
    /// `tokenizer.ggml.tokens`, a string array. Its bytes are the built
    /// tokenizer's source ([`source`](Self::source)).
    pub tokens: Array<'a>,
    /// `tokenizer.ggml.scores`, f32; `None`: every score is 0.
    pub scores: Option<Array<'a>>,
    /// `tokenizer.ggml.token_type`, i32; `None`: every piece is normal.
    pub types: Option<Array<'a>>,
    pub specials: SpecialIds,
    /// `tokenizer.ggml.add_space_prefix`; the builders refuse `true`.
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
        let per_token = |key: &str, elem: ValueType| match g.get_array(key) {
            None => Ok(None),
            Some(a) if a.elem == elem && a.len == tokens.len => Ok(Some(a)),
            Some(_) => Err(TokenizerError::BadVocab(
                "scores or token types do not match the tokens",
            )),
        };
        let id = |key: &str| g.get_u64(key).and_then(|v| u32::try_from(v).ok());
        Ok(Self {
            tokens,
            scores: per_token("tokenizer.ggml.scores", ValueType::F32)?,
            types: per_token("tokenizer.ggml.token_type", ValueType::I32)?,
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

    /// The number of pieces the file claims (checked by the builders).
    pub fn count(&self) -> usize {
        self.tokens.len
    }

    /// The bytes the built tokenizer borrows: the encoded token array.
    pub fn source(&self) -> &'a [u8] {
        self.tokens.data
    }

    /// Fills caller tables (sizes from [`Tokenizer::entries_len`] and
    /// [`Tokenizer::index_len`] of [`count`](Self::count)); re-create the
    /// view with [`Tokenizer::from_parts`]`(self.source(), entries, index, meta)`.
    pub fn fill(
        &self,
        entries: &mut [PieceEntry],
        index: &mut [u32],
    ) -> Result<TokenizerMeta, TokenizerError> {
        fill_from_gguf(self, entries, index)
    }

    /// Builds a tokenizer into caller memory (sizes as for [`fill`](Self::fill)).
    pub fn build<'t>(
        &self,
        entries: &'t mut [PieceEntry],
        index: &'t mut [u32],
    ) -> Result<Tokenizer<'t>, TokenizerError>
    where
        'a: 't,
    {
        let meta = self.fill(entries, index)?;
        Tokenizer::from_parts(self.source(), entries, index, meta)
    }
}

/// The vocabulary size of GGUF arrays, after every check that needs no
/// pass over the pieces; callers size (and allocate) tables from it, so it
/// never exceeds what the token array's bytes can hold.
pub(super) fn gguf_vocab_size(v: &GgufVocab<'_>) -> Result<usize, TokenizerError> {
    if v.add_space_prefix {
        return Err(TokenizerError::Unsupported("add_space_prefix"));
    }
    let tokens = &v.tokens;
    if tokens.elem != ValueType::String {
        return Err(TokenizerError::BadVocab("tokens are not a string array"));
    }
    let count = tokens.len;
    if count == 0 {
        return Err(TokenizerError::BadVocab("empty vocabulary"));
    }
    // Every string takes at least its 8-byte length; ids must fit in u32
    // with NONE to spare.
    if count > tokens.data.len() / 8 || count >= NONE as usize {
        return Err(TokenizerError::BadVocab(
            "token count exceeds the array bytes",
        ));
    }
    // Entries hold u32 offsets into the token array.
    if tokens.data.len() > u32::MAX as usize {
        return Err(TokenizerError::BadVocab("token array larger than 4 GiB"));
    }
    if let Some(a) = v.scores {
        if a.elem != ValueType::F32 {
            return Err(TokenizerError::BadVocab("scores are not an f32 array"));
        }
        if a.len < count {
            return Err(TokenizerError::BadVocab(SCORES_SHORT));
        }
    }
    if let Some(a) = v.types {
        if a.elem != ValueType::I32 {
            return Err(TokenizerError::BadVocab("token types are not an i32 array"));
        }
        if a.len < count {
            return Err(TokenizerError::BadVocab(TYPES_SHORT));
        }
    }
    Ok(count)
}

const SCORES_SHORT: &str = "scores array shorter than the vocabulary";
const TYPES_SHORT: &str = "token_type array shorter than the vocabulary";

/// Fills `entries` from the GGUF arrays (offsets into `v.tokens.data`,
/// which is the built tokenizer's source) and builds the index.
pub(super) fn fill_from_gguf(
    v: &GgufVocab<'_>,
    entries: &mut [PieceEntry],
    index: &mut [u32],
) -> Result<TokenizerMeta, TokenizerError> {
    let count = gguf_vocab_size(v)?;
    check_len("entries", entries.len(), count)?;
    let entries = &mut entries[..count];
    let source = v.tokens.data;
    let mut pieces = v.tokens.strings();
    for (i, e) in entries.iter_mut().enumerate() {
        let piece = pieces
            .next()
            .ok_or(TokenizerError::BadVocab("token array truncated"))?;
        // `strings` hands out sub-slices of the array bytes, so the offset is
        // the difference of the addresses (below 4 GiB, checked above).
        let offset = (piece.as_ptr() as usize)
            .checked_sub(source.as_ptr() as usize)
            .filter(|&o| o <= source.len())
            .ok_or(TokenizerError::BadVocab("token outside the token array"))?;
        let score = match v.scores {
            Some(a) => a.f32_at(i).ok_or(TokenizerError::BadVocab(SCORES_SHORT))?,
            None => 0.0,
        };
        let kind = match v.types {
            Some(a) => {
                let t = a.i32_at(i).ok_or(TokenizerError::BadVocab(TYPES_SHORT))?;
                PieceKind::from_type_id(i64::from(t))
                    .ok_or(TokenizerError::BadVocab("token_type outside 0..=6"))?
            }
            None => PieceKind::Normal,
        };
        *e = PieceEntry::new(offset as u32, piece.len() as u32, score, kind);
    }
    let given = |id: Option<u32>| id.map(Some);
    let specials = ResolvedSpecials {
        bos: given(v.specials.bos),
        eos: given(v.specials.eos),
        unk: given(v.specials.unk),
        pad: given(v.specials.pad),
    };
    build_index(source, entries, index, specials, true)
}
