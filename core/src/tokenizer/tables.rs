//! Owned tables (alloc), for callers that keep the source bytes elsewhere.

use super::{GgufVocab, PieceEntry, Tokenizer, TokenizerError, TokenizerMeta};
use alloc::vec::Vec;
use core::fmt;

/// Owned `entries` + `index` + meta for a vocabulary whose source bytes the
/// caller keeps (e.g. an mmap); [`view`](Self::view) re-creates the
/// [`Tokenizer`] in O(1).
#[derive(Clone)]
pub struct TokenizerTables {
    pub entries: Vec<PieceEntry>,
    pub index: Vec<u32>,
    pub meta: TokenizerMeta,
}

impl fmt::Debug for TokenizerTables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenizerTables")
            .field("entries", &self.entries.len())
            .field("index_words", &self.index.len())
            .field("meta", &self.meta)
            .finish()
    }
}

impl TokenizerTables {
    /// Tables over a `.spm` proto, which is the view's source.
    pub fn from_spm(proto: &[u8]) -> Result<Self, TokenizerError> {
        let n = Tokenizer::spm_vocab_size(proto)?;
        let (mut entries, mut index) = Self::buffers(n);
        let meta = Tokenizer::fill_from_spm(proto, &mut entries, &mut index)?;
        Ok(Self {
            entries,
            index,
            meta,
        })
    }

    /// Tables over GGUF arrays; the view's source is
    /// [`GgufVocab::source`].
    pub fn from_gguf(vocab: &GgufVocab<'_>) -> Result<Self, TokenizerError> {
        // Checked before allocating: the size is bounded by the array bytes.
        let n = super::gguf::gguf_vocab_size(vocab)?;
        let (mut entries, mut index) = Self::buffers(n);
        let meta = vocab.fill(&mut entries, &mut index)?;
        Ok(Self {
            entries,
            index,
            meta,
        })
    }

    fn buffers(n: usize) -> (Vec<PieceEntry>, Vec<u32>) {
        (
            alloc::vec![PieceEntry::default(); Tokenizer::entries_len(n)],
            alloc::vec![0; Tokenizer::index_len(n)],
        )
    }

    /// The view over `source`, which must be the bytes the tables were built from.
    pub fn view<'a>(&'a self, source: &'a [u8]) -> Result<Tokenizer<'a>, TokenizerError> {
        Tokenizer::from_parts(source, &self.entries, &self.index, self.meta)
    }
}
