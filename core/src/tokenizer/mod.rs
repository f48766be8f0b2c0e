//! The Gemma tokenizer: SentencePiece BPE with byte fallback, without an allocator.
//!
//! # Memory model
//!
//! A [`Tokenizer`] is a cheap `Copy` view over three borrowed slices and a
//! small `Copy` [`TokenizerMeta`]:
//!
//! * `source`: the bytes the piece texts live in (the `.spm` proto, or the
//!   encoded `tokenizer.ggml.tokens` array of a GGUF file);
//! * `entries`: one [`PieceEntry`] per id (offset + length into `source`,
//!   score, kind), `vocab_size` of them;
//! * `index`: `u32` words holding, one after the other, the byte-fallback
//!   table, first-byte/length masks of the user-defined and control
//!   pieces, a prefix filter over those pieces, and an open-addressing hash
//!   table over all piece keys (load factor at most 1/2). Where each lies
//!   follows from the vocabulary size alone; nothing in `index` describes
//!   it;
//! * the meta: the vocabulary size, the special ids, the longest special
//!   piece and whether byte fallback is on, which the builders return.
//!
//! The caller provides `entries` and `index` (sizes from
//! [`Tokenizer::entries_len`] / [`Tokenizer::index_len`]); the builders
//! ([`Tokenizer::build_from_spm`], [`GgufVocab::build`]) fill them once
//! (Gemma's 262144 pieces: 4 MiB of entries, 4.1 MiB of index) and
//! allocate nothing else.
//! A caller that owns the tables (say, `Vec`s next to an mmap of the model
//! file) fills them with [`Tokenizer::fill_from_spm`] or
//! [`GgufVocab::fill`], keeps the meta they return, and re-creates the
//! view with [`Tokenizer::from_parts`], which
//! only checks the slice lengths against the meta (O(1)). The tables are
//! not a file format: they are valid only with the meta and the source
//! they were built with, and a mismatch gives wrong tokens, never a panic.
//! With the `alloc` feature, [`TokenizerTables`] does exactly that.
//!
//! Encoding writes ids into a caller slice ([`Tokenizer::max_tokens`] is a
//! sufficient length) and needs `u32` scratch
//! ([`Tokenizer::encode_scratch_len`]); errors (never panics) report buffers
//! that are too small. Decoding hands `&str` chunks to a closure, or writes
//! into a byte slice.
//!
//! ```no_run
//! use gemma_core::tokenizer::{PieceEntry, StreamDecoder, Tokenizer};
//! let spm: Vec<u8> = std::fs::read("tokenizer.spm").unwrap();
//! let n = Tokenizer::spm_vocab_size(&spm).unwrap();
//! let mut entries = vec![PieceEntry::default(); Tokenizer::entries_len(n)];
//! let mut index = vec![0u32; Tokenizer::index_len(n)];
//! let tok = Tokenizer::build_from_spm(&spm, &mut entries, &mut index).unwrap();
//!
//! let text = "<start_of_turn>user\nhi<end_of_turn>";
//! let mut scratch = vec![0u32; Tokenizer::encode_scratch_len(text.len())];
//! let mut ids = vec![0u32; 1 + Tokenizer::max_tokens(text)];
//! ids[0] = tok.bos_id();
//! let n_ids = 1 + tok.encode(text, true, &mut scratch, &mut ids[1..]).unwrap();
//!
//! let mut dec = StreamDecoder::with_skip_special(tok, false);
//! for &id in &ids[..n_ids] {
//!     dec.push_with(id, |s| print!("{s}"));
//! }
//! dec.finish_with(|s| print!("{s}"));
//! ```
//!
//! # Algorithm (what SentencePiece does for Gemma)
//!
//! Text and pieces are compared by *key*: the bytes with every space
//! written as `'▁'` (U+2581), which is how SentencePiece compares them after
//! escaping whitespace. So the `.spm`'s user-defined `"▁▁"` and the GGUF's
//! `"  "` (llama.cpp's converter un-escapes user-defined pieces) both match
//! two spaces of text, and the normal piece `"▁the"` matches `" the"`.
//!
//! 1. Pieces of kind [`PieceKind::UserDefined`] are always matched whole in
//!    the raw text (longest match at each position, scanning left to right;
//!    Gemma's are runs of spaces, newlines and tabs, HTML tags,
//!    `<start_of_image>`...); with `parse_special`, so are
//!    [`PieceKind::Control`] and [`PieceKind::Unknown`] pieces
//!    (`<start_of_turn>`, `<bos>`, `<unusedN>`, ...).
//! 2. The text between matches (spaces as `'▁'`: no dummy prefix, no other
//!    normalization) starts as one symbol per character; the adjacent pair
//!    whose concatenation is a [`PieceKind::Normal`] piece with the highest
//!    score is merged, ties to the leftmost pair, until no pair merges (a
//!    binary heap over caller scratch: O(n log n)).
//! 3. A final symbol that is not a normal piece becomes one `<0xNN>` byte
//!    piece per UTF-8 byte (or `<unk>` when the vocabulary has no byte pieces).
//!
//! BOS is never added by `encode`; prepend [`Tokenizer::bos_id`] yourself.
//! Like SentencePiece, a literal `'▁'` in the text is indistinguishable from
//! a space: it encodes as one and decodes as `' '`.
//!
//! Decoding maps `'▁'` back to `' '`, concatenates byte pieces into raw bytes
//! and replaces invalid UTF-8 with U+FFFD (maximal subparts, like
//! `String::from_utf8_lossy`). Control/unknown/unused pieces render as their
//! text unless `skip_special` is set; BOS, EOS and PAD are then always
//! dropped. An id outside the vocabulary decodes as U+FFFD. [`StreamDecoder`]
//! does the same token by token and holds back an incomplete UTF-8 sequence
//! until the token that completes it.
//!
//! # Sources
//!
//! * [`Tokenizer::build_from_spm`]: a SentencePiece `ModelProto` (model type
//!   BPE, identity normalizer, no dummy prefix, whitespace escaping, as
//!   Gemma's). Gemma's `.spm` stores control tokens as user-defined pieces so
//!   that SentencePiece matches them in text; to make `parse_special`
//!   meaningful, user-defined pieces named `<start_of_turn>`, `<end_of_turn>`,
//!   `<mask>`, `<bos>`, `<eos>`, `<pad>` or `<unusedN>` are classified as
//!   [`PieceKind::Control`], which reproduces the GGUF's token types.
//! * [`GgufVocab`] ([`from_gguf`](GgufVocab::from_gguf), then
//!   [`build`](GgufVocab::build), [`fill`](GgufVocab::fill) or
//!   [`tables`](GgufVocab::tables)): the `tokenizer.ggml.tokens`, `.scores`
//!   and `.token_type` arrays of a GGUF file whose `tokenizer.ggml.model` is
//!   `llama` (SentencePiece), read through [`crate::format::gguf::Array`].

mod build;
mod decode;
mod encode;
mod gguf;
mod index;
#[cfg(feature = "alloc")]
mod tables;

pub use decode::StreamDecoder;
pub use gguf::GgufVocab;
#[cfg(feature = "alloc")]
pub use tables::TokenizerTables;

use crate::format::spm::{SpmError, SpmModel};
use core::fmt;
use index::{bloom_bit, key_eq, key_hash, slot_of, NONE, SLOT_WORDS};

/// What a piece is (GGUF `token_type` / SentencePiece `Type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PieceKind {
    #[default]
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl PieceKind {
    /// From the GGUF / SentencePiece numbering (1..=6); 0 ("undefined" in
    /// llama.cpp) is taken as normal.
    pub fn from_type_id(v: i64) -> Option<Self> {
        Some(match v {
            0 | 1 => Self::Normal,
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            _ => return None,
        })
    }

    /// Control, unknown and unused pieces: rendered only without
    /// `skip_special`, as are user-defined protocol markers such as
    /// `<start_of_image>` (see `decode::is_protocol_marker`).
    pub fn is_special(self) -> bool {
        matches!(self, Self::Control | Self::Unknown | Self::Unused)
    }
}

/// One vocabulary entry: where its text lies in the source bytes, its score
/// (merge priority: higher merges first) and its kind. 16 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PieceEntry {
    offset: u32,
    len: u32,
    score: f32,
    kind: PieceKind,
}

impl PieceEntry {
    pub fn new(offset: u32, len: u32, score: f32, kind: PieceKind) -> Self {
        Self {
            offset,
            len,
            score,
            kind,
        }
    }
    pub fn offset(&self) -> u32 {
        self.offset
    }
    pub fn len(&self) -> u32 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn score(&self) -> f32 {
        self.score
    }
    pub fn kind(&self) -> PieceKind {
        self.kind
    }
}

/// Special token ids given by the model file. `None`: look the piece up by
/// its Gemma name (`<bos>`, `<eos>`, `<unk>`, `<pad>`). BOS and EOS must
/// exist one way or the other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpecialIds {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub unk: Option<u32>,
    pub pad: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TokenizerError {
    /// The `.spm` proto is malformed.
    Spm(SpmError),
    /// The GGUF vocabulary arrays are malformed.
    BadVocab(&'static str),
    /// A valid model this tokenizer does not implement (e.g. unigram, a
    /// dummy prefix, a normalizer).
    Unsupported(&'static str),
    /// A caller-provided buffer is too short; `needed` is enough.
    BufferTooSmall {
        what: &'static str,
        needed: usize,
        got: usize,
    },
    /// `from_parts` was given entries or an index shorter than its meta
    /// says they are.
    BadIndex(&'static str),
    /// A special id (from the file) is outside the vocabulary.
    BadSpecialId(u32),
    /// A character is neither in the vocabulary nor covered by byte pieces,
    /// and there is no `<unk>`.
    Unencodable,
}

impl fmt::Display for TokenizerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TokenizerError::Spm(e) => write!(f, "{e}"),
            TokenizerError::BadVocab(m) => write!(f, "bad tokenizer vocabulary: {m}"),
            TokenizerError::Unsupported(m) => write!(f, "unsupported tokenizer: {m}"),
            TokenizerError::BufferTooSmall { what, needed, got } => write!(
                f,
                "tokenizer {what} buffer too small: {got} elements, {needed} needed"
            ),
            TokenizerError::BadIndex(m) => write!(f, "bad tokenizer index: {m}"),
            TokenizerError::BadSpecialId(id) => {
                write!(f, "special token id {id} is outside the vocabulary")
            }
            TokenizerError::Unencodable => {
                write!(f, "text has a character the vocabulary cannot encode")
            }
        }
    }
}

impl From<SpmError> for TokenizerError {
    fn from(e: SpmError) -> Self {
        TokenizerError::Spm(e)
    }
}

/// The byte of a byte piece's name, `<0xNN>`.
fn parse_byte_piece(p: &[u8]) -> Option<u8> {
    let hex = p.strip_prefix(b"<0x")?.strip_suffix(b">")?;
    if hex.len() != 2 {
        return None;
    }
    let d = |c: u8| (c as char).to_digit(16);
    Some((d(hex[0])? * 16 + d(hex[1])?) as u8)
}

/// What a built index needs besides its arrays: the vocabulary size (from
/// which the arrays' places in `index` follow), the special ids and two
/// facts about the pieces. Returned by the builders; hand it back to
/// [`Tokenizer::from_parts`] with the same tables and source. Its fields
/// are private, so every meta is one a builder made (special ids inside its
/// vocabulary).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenizerMeta {
    vocab_size: usize,
    bos: u32,
    eos: u32,
    pad: Option<u32>,
    unk: Option<u32>,
    /// `<end_of_turn>`, `<start_of_turn>`.
    eot: Option<u32>,
    sot: Option<u32>,
    /// Key bytes of the longest user-defined/control/unknown piece: special
    /// matching never looks further.
    max_special_len: usize,
    /// All 256 byte pieces exist and the model asks for byte fallback.
    byte_fallback: bool,
}

impl TokenizerMeta {
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }
}

/// A cheap, `Copy` view of a built vocabulary; see the module docs.
#[derive(Clone, Copy)]
pub struct Tokenizer<'a> {
    source: &'a [u8],
    entries: &'a [PieceEntry],
    /// 256 words: the id of `<0xNN>`, or `NONE`.
    byte_ids: &'a [u32],
    /// First-byte/length masks (see [`index::UD_MASK`]).
    masks: &'a [u32],
    bloom: &'a [u32],
    table: &'a [u32],
    slot_mask: usize,
    bloom_mask: usize,
    meta: TokenizerMeta,
}

impl fmt::Debug for Tokenizer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

fn opt(v: u32) -> Option<u32> {
    (v != NONE).then_some(v)
}

impl<'a> Tokenizer<'a> {
    // ---- sizing -----------------------------------------------------------

    /// `PieceEntry` slots needed for a vocabulary of `vocab_size` pieces.
    pub fn entries_len(vocab_size: usize) -> usize {
        vocab_size
    }

    /// `u32` words of index needed for a vocabulary of `vocab_size` pieces
    /// (`usize::MAX` if that does not fit in memory).
    pub fn index_len(vocab_size: usize) -> usize {
        index::index_words(vocab_size).unwrap_or(usize::MAX)
    }

    /// The number of pieces in a `.spm` proto (validates it).
    pub fn spm_vocab_size(proto: &[u8]) -> Result<usize, TokenizerError> {
        Ok(SpmModel::parse(proto)?.piece_count())
    }

    /// `u32` words of scratch [`encode`](Self::encode) needs for a text of
    /// `text_len` bytes (16 per byte).
    pub fn encode_scratch_len(text_len: usize) -> usize {
        text_len.saturating_mul(16)
    }

    /// An upper bound on the ids `encode(text, ..)` produces: one per byte,
    /// three per space (should `'▁'` fall back to bytes).
    pub fn max_tokens(text: &str) -> usize {
        text.len() + 2 * text.bytes().filter(|&b| b == b' ').count()
    }

    // ---- re-creating ------------------------------------------------------

    /// Re-creates the view over tables filled by a `fill*`/`build*`
    /// function, with the `meta` it returned and the same `source` bytes.
    /// Checks only that `entries` and `index` are long enough for `meta`:
    /// O(1). Tables, meta or source that do not belong together give wrong
    /// tokens, never a panic.
    pub fn from_parts(
        source: &'a [u8],
        entries: &'a [PieceEntry],
        index: &'a [u32],
        meta: TokenizerMeta,
    ) -> Result<Self, TokenizerError> {
        let n = meta.vocab_size;
        let entries = entries.get(..n).ok_or(TokenizerError::BadIndex(
            "entries shorter than the vocabulary",
        ))?;
        let t = index::split(index, n).ok_or(TokenizerError::BadIndex(
            "index shorter than the vocabulary needs",
        ))?;
        Ok(Self {
            source,
            entries,
            byte_ids: t.byte_ids,
            masks: t.masks,
            bloom: t.bloom,
            // Powers of two (at least 16 slots, 32 words), by their sizing.
            slot_mask: t.table.len() / SLOT_WORDS - 1,
            bloom_mask: t.bloom.len() * 32 - 1,
            table: t.table,
            meta,
        })
    }

    /// The meta to re-create this view with [`from_parts`](Self::from_parts).
    pub fn meta(&self) -> TokenizerMeta {
        self.meta
    }

    // ---- queries ----------------------------------------------------------

    pub fn vocab_size(&self) -> usize {
        self.entries.len()
    }
    /// BOS (2 for Gemma); every vocabulary has one (building fails otherwise).
    pub fn bos_id(&self) -> u32 {
        self.meta.bos
    }
    /// EOS (1 for Gemma); every vocabulary has one (building fails otherwise).
    pub fn eos_id(&self) -> u32 {
        self.meta.eos
    }
    pub fn pad_id(&self) -> Option<u32> {
        self.meta.pad
    }
    pub fn unk_id(&self) -> Option<u32> {
        self.meta.unk
    }
    /// `<end_of_turn>` (106 for Gemma): the chat turn terminator.
    pub fn end_of_turn_id(&self) -> Option<u32> {
        self.meta.eot
    }
    /// `<start_of_turn>` (105 for Gemma).
    pub fn start_of_turn_id(&self) -> Option<u32> {
        self.meta.sot
    }
    /// The tokens at which generation stops: EOS and `<end_of_turn>` (EOS
    /// twice where the vocabulary has no turn tokens).
    pub fn stop_tokens(&self) -> [u32; 2] {
        [self.meta.eos, self.meta.eot.unwrap_or(self.meta.eos)]
    }

    /// Whether generation should stop at `id` (one of [`Self::stop_tokens`]).
    pub fn is_end_of_generation(&self, id: u32) -> bool {
        self.stop_tokens().contains(&id)
    }

    /// The source bytes the view borrows.
    pub fn source(&self) -> &'a [u8] {
        self.source
    }
    /// The piece entries (one per id).
    pub fn entries(&self) -> &'a [PieceEntry] {
        self.entries
    }

    /// The raw text of piece `id` (with `'▁'`, and `<0xNN>` for byte pieces).
    pub fn piece(&self, id: u32) -> Option<&'a [u8]> {
        let e = self.entries.get(id as usize)?;
        self.entry_bytes(e)
    }
    pub fn kind(&self, id: u32) -> Option<PieceKind> {
        Some(self.entries.get(id as usize)?.kind)
    }
    pub fn score(&self, id: u32) -> Option<f32> {
        Some(self.entries.get(id as usize)?.score)
    }
    /// The id of the byte piece `<0xNN>` for `b`.
    pub fn byte_id(&self, b: u8) -> Option<u32> {
        opt(self.byte_ids[usize::from(b)])
    }

    /// The id of the piece whose text is `piece` (any kind; the lowest id
    /// when several match). Spaces and `'▁'` are interchangeable (see the
    /// module docs), so `"  "` and `"▁▁"` both give Gemma's 138.
    pub fn token_to_id(&self, piece: impl AsRef<[u8]>) -> Option<u32> {
        let p = piece.as_ref();
        self.find(key_hash(p), |_| true, |t| key_eq(t, p))
    }

    #[inline]
    fn bloom_has(&self, h: u32) -> bool {
        let bit = bloom_bit(h, self.bloom_mask);
        self.bloom
            .get(bit / 32)
            .is_some_and(|w| w >> (bit % 32) & 1 != 0)
    }

    #[inline]
    fn entry_bytes(&self, e: &PieceEntry) -> Option<&'a [u8]> {
        let start = e.offset as usize;
        self.source.get(start..start.checked_add(e.len as usize)?)
    }

    /// Probes the hash table for the first id with hash `h`, an accepted
    /// kind and matching text.
    #[inline]
    fn find(
        &self,
        h: u32,
        accept: impl Fn(PieceKind) -> bool,
        eq: impl Fn(&[u8]) -> bool,
    ) -> Option<u32> {
        let mut s = slot_of(h, self.slot_mask);
        // Bounded so that a corrupt (full) table cannot loop forever.
        for _ in 0..=self.slot_mask {
            let w = s * SLOT_WORDS;
            let id1 = *self.table.get(w)?;
            if id1 == 0 {
                return None;
            }
            if self.table.get(w + 1) == Some(&h) {
                let id = id1 - 1;
                if let Some(e) = self.entries.get(id as usize) {
                    if accept(e.kind) && self.entry_bytes(e).is_some_and(&eq) {
                        return Some(id);
                    }
                }
            }
            s = (s + 1) & self.slot_mask;
        }
        None
    }

    /// The length mask of pieces in `set` ([`index::UD_MASK`] or
    /// [`index::CTRL_MASK`]) whose key starts with `first`.
    fn mask(&self, set: usize, first: u8) -> u64 {
        let w = set + 2 * first as usize;
        u64::from(self.masks[w]) | (u64::from(self.masks[w + 1]) << 32)
    }
}

/// `Err(BufferTooSmall)` when a caller buffer of `got` elements is shorter than `needed`.
fn check_len(what: &'static str, got: usize, needed: usize) -> Result<(), TokenizerError> {
    if got < needed {
        Err(TokenizerError::BufferTooSmall { what, needed, got })
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Owned results (alloc).

#[cfg(feature = "alloc")]
impl Tokenizer<'_> {
    /// Encodes into a new `Vec` (allocating scratch internally).
    pub fn encode_to_vec(
        &self,
        text: &str,
        parse_special: bool,
    ) -> Result<alloc::vec::Vec<u32>, TokenizerError> {
        let mut scratch = alloc::vec![0u32; Self::encode_scratch_len(text.len())];
        let mut out = alloc::vec![0u32; Self::max_tokens(text)];
        let n = self.encode(text, parse_special, &mut scratch, &mut out)?;
        out.truncate(n);
        Ok(out)
    }

    /// Decodes into a new `String`.
    pub fn decode_to_string(&self, ids: &[u32], skip_special: bool) -> alloc::string::String {
        let mut s = alloc::string::String::new();
        self.decode_with(ids, skip_special, |chunk| s.push_str(chunk));
        s
    }
}
