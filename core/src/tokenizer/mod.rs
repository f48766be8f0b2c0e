//! The Gemma tokenizer: SentencePiece BPE with byte fallback, without an allocator.
//!
//! # Memory model
//!
//! A [`Tokenizer`] is a cheap `Copy` view over three borrowed slices:
//!
//! * `source`: the bytes the piece texts live in (the `.spm` proto, or the raw
//!   `tokenizer.ggml.tokens` array of a GGUF file);
//! * `entries`: one [`PieceEntry`] per id (offset + length into `source`,
//!   score, kind), `vocab_size` of them;
//! * `index`: `u32` words holding a header (special ids, the byte-fallback
//!   table, first-byte/length masks of the user-defined and control pieces),
//!   a prefix filter over those pieces, and an open-addressing hash table
//!   over all piece keys (load factor at most 1/2).
//!
//! The caller provides `entries` and `index` (sizes from
//! [`Tokenizer::entries_len`] / [`Tokenizer::index_len`]); the `build_*`
//! functions fill them once (tens of milliseconds for Gemma's 262144
//! pieces: 4 MiB of entries, 4.1 MiB of index).
//! A caller that owns the tables (say, `Vec`s next to an mmap of the model
//! file) fills them with the `fill_*` functions and re-creates the view with
//! [`Tokenizer::from_parts`], which only checks the header (O(1)).
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
//! * [`Tokenizer::build_from_gguf_arrays`]: the `tokenizer.ggml.tokens`,
//!   `.scores` and `.token_type` arrays of a GGUF file whose
//!   `tokenizer.ggml.model` is `llama` (SentencePiece), as raw bytes.

mod decode;
mod encode;

pub use decode::StreamDecoder;

use crate::format::spm::{SpmError, SpmModel, SpmModelType, SpmPieceType};
use core::fmt;

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

    /// Control, unknown and unused pieces: rendered only without `skip_special`.
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
    /// `from_parts` was given an index that was not built by this module, or
    /// entries/index that do not belong together.
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

// ---------------------------------------------------------------------------
// Index layout (u32 words).

const MAGIC: u32 = u32::from_le_bytes(*b"GTOK");
const VERSION: u32 = 1;
const NONE: u32 = u32::MAX;

const H_MAGIC: usize = 0;
const H_VERSION: usize = 1;
const H_COUNT: usize = 2;
const H_SLOTS: usize = 3;
const H_BOS: usize = 4;
const H_EOS: usize = 5;
const H_PAD: usize = 6;
const H_UNK: usize = 7;
const H_EOT: usize = 8;
const H_SOT: usize = 9;
const H_MAX_SPECIAL: usize = 10;
const H_FLAGS: usize = 11;
/// Words of the prefix filter that follows the header (a power of two).
const H_BLOOM_WORDS: usize = 12;
/// 256 words: the id of `<0xNN>`, or `NONE`.
const H_BYTE_IDS: usize = 16;
/// 256 `u64` (two words each): for each first byte of a key (see
/// [`key_hash`]), bit `min(key len, 64) - 1` is set when a user-defined
/// piece with such a key exists.
const H_UD_MASK: usize = H_BYTE_IDS + 256;
/// Same for control and unknown pieces (matched only with `parse_special`).
const H_CTRL_MASK: usize = H_UD_MASK + 512;
const HEADER_WORDS: usize = H_CTRL_MASK + 512;

const FLAG_BYTE_FALLBACK: u32 = 1;

/// Each hash slot is two words: `id + 1` (0 = empty) and the key's hash.
const SLOT_WORDS: usize = 2;

fn slot_count(n: usize) -> Option<usize> {
    n.checked_mul(2)?.max(16).checked_next_power_of_two()
}

/// The prefix filter: a bit set of the hashes of every prefix of every
/// user-defined/control key, so special matching stops extending a
/// candidate as soon as no special piece can start with it.
fn bloom_words(n: usize) -> usize {
    n.saturating_mul(4)
        .clamp(1 << 10, 1 << 22)
        .next_power_of_two()
        / 32
}

#[inline]
fn hash_add(h: u32, b: u8) -> u32 {
    (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
}
const HASH_INIT: u32 = 0x811c_9dc5;

/// `'▁'` (U+2581), which stands for a space inside pieces.
const SPACE_ESC: [u8; 3] = [0xE2, 0x96, 0x81];

/// Feeds one byte into a key hash.
#[inline]
fn key_add(h: u32, b: u8) -> u32 {
    if b == b' ' {
        hash_add(
            hash_add(hash_add(h, SPACE_ESC[0]), SPACE_ESC[1]),
            SPACE_ESC[2],
        )
    } else {
        hash_add(h, b)
    }
}

/// Pieces and text are compared by *key*: the bytes with every space
/// written as `'▁'`, as SentencePiece compares them after escaping
/// whitespace. So the `.spm`'s user-defined `"▁▁"` and the GGUF's `"  "`
/// both match two spaces, and a normal piece `"▁the"` matches `" the"`.
#[inline]
fn key_hash(bytes: &[u8]) -> u32 {
    bytes.iter().fold(HASH_INIT, |h, &b| key_add(h, b))
}

/// The bytes of a key, produced on the fly.
struct KeyBytes<'s> {
    rest: core::slice::Iter<'s, u8>,
    esc: usize,
}

impl Iterator for KeyBytes<'_> {
    type Item = u8;
    #[inline]
    fn next(&mut self) -> Option<u8> {
        if self.esc != 0 {
            let b = SPACE_ESC[self.esc];
            self.esc = (self.esc + 1) % 3;
            return Some(b);
        }
        let b = *self.rest.next()?;
        if b == b' ' {
            self.esc = 1;
            Some(SPACE_ESC[0])
        } else {
            Some(b)
        }
    }
}

fn key_bytes(b: &[u8]) -> KeyBytes<'_> {
    KeyBytes {
        rest: b.iter(),
        esc: 0,
    }
}

/// Whether `a` and `b` have the same key.
#[inline]
fn key_eq(a: &[u8], b: &[u8]) -> bool {
    a == b || key_bytes(a).eq(key_bytes(b))
}

#[inline]
fn slot_of(h: u32, mask: usize) -> usize {
    let x = (h ^ (h >> 16)).wrapping_mul(0x7feb_352d);
    (x ^ (x >> 15)) as usize & mask
}

#[inline]
fn bloom_bit(h: u32, mask: usize) -> usize {
    (h.rotate_left(13).wrapping_mul(0x85eb_ca6b) >> 3) as usize & mask
}

const GEMMA_CONTROL_NAMES: [&str; 7] = [
    "<start_of_turn>",
    "<end_of_turn>",
    "<mask>",
    "<bos>",
    "<eos>",
    "<pad>",
    "<unk>",
];

fn is_gemma_control_name(p: &[u8]) -> bool {
    if GEMMA_CONTROL_NAMES.iter().any(|n| n.as_bytes() == p) {
        return true;
    }
    match p
        .strip_prefix(b"<unused")
        .and_then(|r| r.strip_suffix(b">"))
    {
        Some(d) => !d.is_empty() && d.iter().all(u8::is_ascii_digit),
        None => false,
    }
}

fn parse_byte_piece(p: &[u8]) -> Option<u8> {
    let hex = p.strip_prefix(b"<0x")?.strip_suffix(b">")?;
    if hex.len() != 2 {
        return None;
    }
    let d = |c: u8| (c as char).to_digit(16);
    Some((d(hex[0])? * 16 + d(hex[1])?) as u8)
}

/// A cheap, `Copy` view of a built vocabulary; see the module docs.
#[derive(Clone, Copy)]
pub struct Tokenizer<'a> {
    source: &'a [u8],
    entries: &'a [PieceEntry],
    header: &'a [u32],
    bloom: &'a [u32],
    table: &'a [u32],
    slot_mask: usize,
    bloom_mask: usize,
    bos: u32,
    eos: u32,
    pad: Option<u32>,
    unk: Option<u32>,
    eot: Option<u32>,
    sot: Option<u32>,
    max_special_len: usize,
    byte_fallback: bool,
}

impl fmt::Debug for Tokenizer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.entries.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("pad", &self.pad)
            .field("unk", &self.unk)
            .field("end_of_turn", &self.eot)
            .field("byte_fallback", &self.byte_fallback)
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
        slot_count(vocab_size)
            .and_then(|s| s.checked_mul(SLOT_WORDS))
            .and_then(|w| w.checked_add(HEADER_WORDS + bloom_words(vocab_size)))
            .unwrap_or(usize::MAX)
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

    // ---- building ---------------------------------------------------------

    /// Parses a SentencePiece model proto, fills `entries` and `index`, and
    /// returns the view. `entries.len() >= spm_vocab_size(proto)`,
    /// `index.len() >= index_len(that)`.
    pub fn build_from_spm(
        proto: &'a [u8],
        entries: &'a mut [PieceEntry],
        index: &'a mut [u32],
    ) -> Result<Self, TokenizerError> {
        Self::fill_from_spm(proto, entries, index)?;
        Self::from_parts(proto, entries, index)
    }

    /// Like [`build_from_spm`](Self::build_from_spm) but only fills the
    /// tables; returns the vocabulary size. Re-create the view with
    /// [`from_parts`](Self::from_parts)`(proto, entries, index)`.
    pub fn fill_from_spm(
        proto: &[u8],
        entries: &mut [PieceEntry],
        index: &mut [u32],
    ) -> Result<usize, TokenizerError> {
        let model = SpmModel::parse(proto)?;
        match model.trainer.model_type {
            Some(SpmModelType::Bpe) => {}
            _ => return Err(TokenizerError::Unsupported("model type is not BPE")),
        }
        let norm = model.normalizer;
        if norm.add_dummy_prefix {
            return Err(TokenizerError::Unsupported("add_dummy_prefix"));
        }
        if norm.remove_extra_whitespaces {
            return Err(TokenizerError::Unsupported("remove_extra_whitespaces"));
        }
        if !norm.escape_whitespaces {
            return Err(TokenizerError::Unsupported("escape_whitespaces = false"));
        }
        if norm.precompiled_charsmap_len != 0 {
            return Err(TokenizerError::Unsupported("a precompiled normalizer"));
        }
        let n = model.piece_count();
        if proto.len() > u32::MAX as usize {
            return Err(TokenizerError::BadVocab("source larger than 4 GiB"));
        }
        check_len("entries", entries.len(), n)?;
        let entries = &mut entries[..n];
        for (e, p) in entries.iter_mut().zip(model.pieces()) {
            let bytes = p.piece.as_bytes();
            let kind = match p.kind {
                SpmPieceType::Normal => PieceKind::Normal,
                SpmPieceType::Unknown => PieceKind::Unknown,
                SpmPieceType::Control => PieceKind::Control,
                SpmPieceType::UserDefined if is_gemma_control_name(bytes) => PieceKind::Control,
                SpmPieceType::UserDefined => PieceKind::UserDefined,
                SpmPieceType::Unused => PieceKind::Unused,
                SpmPieceType::Byte => PieceKind::Byte,
            };
            *e = PieceEntry::new(p.offset as u32, bytes.len() as u32, p.score, kind);
        }
        let id = |v: Option<i32>| match v {
            Some(x) if x >= 0 => Some(Some(x as u32)),
            Some(_) => Some(None),
            None => None,
        };
        let t = model.trainer;
        let specials = ResolvedSpecials {
            bos: id(t.bos_id),
            eos: id(t.eos_id),
            unk: id(t.unk_id),
            pad: id(t.pad_id),
        };
        build_index(proto, entries, index, specials, t.byte_fallback)?;
        Ok(n)
    }

    /// Builds from the GGUF arrays, as raw little-endian bytes:
    /// `tokens_raw` holds `count` strings (u64 length + bytes),
    /// `scores_raw` `count` f32 and `types_raw` `count` i32 (either may be
    /// empty: scores 0, all normal). `add_space_prefix` is
    /// `tokenizer.ggml.add_space_prefix` (must be false).
    #[allow(clippy::too_many_arguments)]
    pub fn build_from_gguf_arrays(
        tokens_raw: &'a [u8],
        count: usize,
        scores_raw: &[u8],
        types_raw: &[u8],
        specials: SpecialIds,
        add_space_prefix: bool,
        entries: &'a mut [PieceEntry],
        index: &'a mut [u32],
    ) -> Result<Self, TokenizerError> {
        Self::fill_from_gguf_arrays(
            tokens_raw,
            count,
            scores_raw,
            types_raw,
            specials,
            add_space_prefix,
            entries,
            index,
        )?;
        Self::from_parts(tokens_raw, entries, index)
    }

    /// Like [`build_from_gguf_arrays`](Self::build_from_gguf_arrays) but only
    /// fills the tables; re-create the view with
    /// [`from_parts`](Self::from_parts)`(tokens_raw, entries, index)`.
    #[allow(clippy::too_many_arguments)]
    pub fn fill_from_gguf_arrays(
        tokens_raw: &[u8],
        count: usize,
        scores_raw: &[u8],
        types_raw: &[u8],
        specials: SpecialIds,
        add_space_prefix: bool,
        entries: &mut [PieceEntry],
        index: &mut [u32],
    ) -> Result<(), TokenizerError> {
        if add_space_prefix {
            return Err(TokenizerError::Unsupported("add_space_prefix"));
        }
        if count == 0 {
            return Err(TokenizerError::BadVocab("empty vocabulary"));
        }
        if count > tokens_raw.len() / 8 || count >= NONE as usize {
            return Err(TokenizerError::BadVocab(
                "token count exceeds the array bytes",
            ));
        }
        if tokens_raw.len() > u32::MAX as usize {
            return Err(TokenizerError::BadVocab("token array larger than 4 GiB"));
        }
        let four = count * 4;
        if !scores_raw.is_empty() && scores_raw.len() < four {
            return Err(TokenizerError::BadVocab(
                "scores array shorter than the vocabulary",
            ));
        }
        if !types_raw.is_empty() && types_raw.len() < four {
            return Err(TokenizerError::BadVocab(
                "token_type array shorter than the vocabulary",
            ));
        }
        check_len("entries", entries.len(), count)?;
        let entries = &mut entries[..count];
        let mut pos = 0usize;
        for (i, e) in entries.iter_mut().enumerate() {
            let len_bytes = tokens_raw
                .get(pos..pos + 8)
                .ok_or(TokenizerError::BadVocab("token array truncated"))?;
            let len = u64::from_le_bytes(le8(len_bytes));
            pos += 8;
            let len = usize::try_from(len)
                .ok()
                .filter(|&l| l <= tokens_raw.len() - pos)
                .ok_or(TokenizerError::BadVocab("token array truncated"))?;
            let score = match scores_raw.get(i * 4..i * 4 + 4) {
                Some(b) => f32::from_le_bytes(le4(b)),
                None => 0.0,
            };
            let kind = match types_raw.get(i * 4..i * 4 + 4) {
                Some(b) => PieceKind::from_type_id(i64::from(i32::from_le_bytes(le4(b))))
                    .ok_or(TokenizerError::BadVocab("token_type outside 0..=6"))?,
                None => PieceKind::Normal,
            };
            *e = PieceEntry::new(pos as u32, len as u32, score, kind);
            pos += len;
        }
        let given = |v: Option<u32>| v.map(Some);
        let specials = ResolvedSpecials {
            bos: given(specials.bos),
            eos: given(specials.eos),
            unk: given(specials.unk),
            pad: given(specials.pad),
        };
        build_index(tokens_raw, entries, index, specials, true)
    }

    /// Re-creates the view over tables filled by a `fill_*`/`build_*`
    /// function, with the same `source` bytes. Checks only the header: O(1).
    /// A mismatched `source` gives wrong tokens, never a panic.
    pub fn from_parts(
        source: &'a [u8],
        entries: &'a [PieceEntry],
        index: &'a [u32],
    ) -> Result<Self, TokenizerError> {
        let header = index
            .get(..HEADER_WORDS)
            .ok_or(TokenizerError::BadIndex("index shorter than its header"))?;
        if header[H_MAGIC] != MAGIC || header[H_VERSION] != VERSION {
            return Err(TokenizerError::BadIndex("not a tokenizer index"));
        }
        let n = header[H_COUNT] as usize;
        let slots = header[H_SLOTS] as usize;
        if n == 0 || n > entries.len() {
            return Err(TokenizerError::BadIndex(
                "entries shorter than the vocabulary",
            ));
        }
        if !slots.is_power_of_two() || slots < n {
            return Err(TokenizerError::BadIndex("bad slot count"));
        }
        let bloom_len = header[H_BLOOM_WORDS] as usize;
        if !bloom_len.is_power_of_two() {
            return Err(TokenizerError::BadIndex("bad prefix filter size"));
        }
        let table_start = HEADER_WORDS + bloom_len;
        let bloom = index
            .get(HEADER_WORDS..table_start)
            .ok_or(TokenizerError::BadIndex(
                "index shorter than its prefix filter",
            ))?;
        let table = slots
            .checked_mul(SLOT_WORDS)
            .and_then(|w| index.get(table_start..table_start.checked_add(w)?))
            .ok_or(TokenizerError::BadIndex("index shorter than its table"))?;
        let special = |k: usize| {
            let v = header[k];
            if v == NONE || (v as usize) < n {
                Ok(opt(v))
            } else {
                Err(TokenizerError::BadIndex(
                    "special id outside the vocabulary",
                ))
            }
        };
        Ok(Self {
            source,
            entries: &entries[..n],
            header,
            bloom,
            table,
            slot_mask: slots - 1,
            bloom_mask: bloom_len * 32 - 1,
            bos: special(H_BOS)?.ok_or(TokenizerError::BadIndex("no BOS"))?,
            eos: special(H_EOS)?.ok_or(TokenizerError::BadIndex("no EOS"))?,
            pad: special(H_PAD)?,
            unk: special(H_UNK)?,
            eot: special(H_EOT)?,
            sot: special(H_SOT)?,
            max_special_len: header[H_MAX_SPECIAL] as usize,
            byte_fallback: header[H_FLAGS] & FLAG_BYTE_FALLBACK != 0,
        })
    }

    // ---- queries ----------------------------------------------------------

    pub fn vocab_size(&self) -> usize {
        self.entries.len()
    }
    /// BOS (2 for Gemma); every vocabulary has one (building fails otherwise).
    pub fn bos_id(&self) -> u32 {
        self.bos
    }
    /// EOS (1 for Gemma); every vocabulary has one (building fails otherwise).
    pub fn eos_id(&self) -> u32 {
        self.eos
    }
    pub fn pad_id(&self) -> Option<u32> {
        self.pad
    }
    pub fn unk_id(&self) -> Option<u32> {
        self.unk
    }
    /// `<end_of_turn>` (106 for Gemma): the chat turn terminator.
    pub fn end_of_turn_id(&self) -> Option<u32> {
        self.eot
    }
    /// `<start_of_turn>` (105 for Gemma).
    pub fn start_of_turn_id(&self) -> Option<u32> {
        self.sot
    }
    /// The tokens at which generation stops: EOS and `<end_of_turn>` (EOS
    /// twice where the vocabulary has no turn tokens).
    pub fn stop_tokens(&self) -> [u32; 2] {
        [self.eos, self.eot.unwrap_or(self.eos)]
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
        opt(self.header[H_BYTE_IDS + b as usize])
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

    fn mask(&self, base: usize, first: u8) -> u64 {
        let w = base + 2 * first as usize;
        u64::from(self.header[w]) | (u64::from(self.header[w + 1]) << 32)
    }
}

fn le4(b: &[u8]) -> [u8; 4] {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    a
}

fn le8(b: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    a
}

fn check_len(what: &'static str, got: usize, needed: usize) -> Result<(), TokenizerError> {
    if got < needed {
        Err(TokenizerError::BufferTooSmall { what, needed, got })
    } else {
        Ok(())
    }
}

/// `None`: not given, look up by name. `Some(None)`: given as "absent".
struct ResolvedSpecials {
    bos: Option<Option<u32>>,
    eos: Option<Option<u32>>,
    unk: Option<Option<u32>>,
    pad: Option<Option<u32>>,
}

fn build_index(
    source: &[u8],
    entries: &[PieceEntry],
    index: &mut [u32],
    specials: ResolvedSpecials,
    byte_fallback: bool,
) -> Result<(), TokenizerError> {
    let n = entries.len();
    let slots = slot_count(n).ok_or(TokenizerError::BadVocab("vocabulary too large"))?;
    let needed = Tokenizer::index_len(n);
    check_len("index", index.len(), needed)?;
    let index = &mut index[..needed];
    index.fill(0);
    let (header, rest) = index.split_at_mut(HEADER_WORDS);
    let (bloom, table) = rest.split_at_mut(bloom_words(n));
    let bloom_mask = bloom.len() * 32 - 1;
    let mask = slots - 1;
    let bytes_of = |e: &PieceEntry| {
        let s = e.offset as usize;
        s.checked_add(e.len as usize)
            .and_then(|end| source.get(s..end))
            .unwrap_or(&[])
    };

    header[H_BYTE_IDS..H_BYTE_IDS + 256].fill(NONE);
    let mut max_special = 0usize;
    for (id, e) in entries.iter().enumerate() {
        let p = bytes_of(e);
        let h = key_hash(p);
        let mut s = slot_of(h, mask);
        while table[s * SLOT_WORDS] != 0 {
            s = (s + 1) & mask;
        }
        table[s * SLOT_WORDS] = id as u32 + 1;
        table[s * SLOT_WORDS + 1] = h;

        let mask_base = match e.kind {
            PieceKind::UserDefined => Some(H_UD_MASK),
            PieceKind::Control | PieceKind::Unknown => Some(H_CTRL_MASK),
            PieceKind::Byte => {
                if let Some(b) = parse_byte_piece(p) {
                    let w = &mut header[H_BYTE_IDS + b as usize];
                    if *w == NONE {
                        *w = id as u32;
                    }
                }
                None
            }
            _ => None,
        };
        if let (Some(base), Some(first)) = (mask_base, key_bytes(p).next()) {
            let mut key_len = 0usize;
            let mut ph = HASH_INIT;
            for b in key_bytes(p) {
                ph = hash_add(ph, b);
                key_len += 1;
                let bit = bloom_bit(ph, bloom_mask);
                bloom[bit / 32] |= 1 << (bit % 32);
            }
            let bit = key_len.min(64) - 1;
            let w = base + 2 * first as usize + bit / 32;
            header[w] |= 1 << (bit % 32);
            max_special = max_special.max(key_len);
        }
    }

    let all_bytes = header[H_BYTE_IDS..H_BYTE_IDS + 256]
        .iter()
        .all(|&w| w != NONE);
    header[H_MAGIC] = MAGIC;
    header[H_VERSION] = VERSION;
    header[H_COUNT] = n as u32;
    header[H_SLOTS] = slots as u32;
    header[H_BLOOM_WORDS] = bloom_words(n) as u32;
    header[H_MAX_SPECIAL] = max_special.min(u32::MAX as usize) as u32;
    header[H_FLAGS] = if byte_fallback && all_bytes {
        FLAG_BYTE_FALLBACK
    } else {
        0
    };

    let lookup = |name: &str| -> u32 {
        let p = name.as_bytes();
        let h = key_hash(p);
        let mut s = slot_of(h, mask);
        loop {
            let id1 = table[s * SLOT_WORDS];
            if id1 == 0 {
                return NONE;
            }
            if table[s * SLOT_WORDS + 1] == h && key_eq(bytes_of(&entries[id1 as usize - 1]), p) {
                return id1 - 1;
            }
            s = (s + 1) & mask;
        }
    };
    let resolve = |given: Option<Option<u32>>, name: &str| -> Result<u32, TokenizerError> {
        match given {
            Some(Some(id)) if (id as usize) < n => Ok(id),
            Some(Some(id)) => Err(TokenizerError::BadSpecialId(id)),
            Some(None) => Ok(NONE),
            None => Ok(lookup(name)),
        }
    };
    header[H_BOS] = resolve(specials.bos, "<bos>")?;
    header[H_EOS] = resolve(specials.eos, "<eos>")?;
    if header[H_BOS] == NONE {
        return Err(TokenizerError::BadVocab("no BOS token"));
    }
    if header[H_EOS] == NONE {
        return Err(TokenizerError::BadVocab("no EOS token"));
    }
    header[H_PAD] = resolve(specials.pad, "<pad>")?;
    let mut unk = resolve(specials.unk, "<unk>")?;
    if unk == NONE && specials.unk.is_none() {
        if let Some(i) = entries.iter().position(|e| e.kind == PieceKind::Unknown) {
            unk = i as u32;
        }
    }
    header[H_UNK] = unk;
    header[H_EOT] = lookup("<end_of_turn>");
    header[H_SOT] = lookup("<start_of_turn>");
    Ok(())
}

// ---------------------------------------------------------------------------
// Owned tables (alloc).

/// Owned `entries` + `index` for a vocabulary whose source bytes the caller
/// keeps (e.g. an mmap); [`view`](Self::view) re-creates the [`Tokenizer`].
#[cfg(feature = "alloc")]
#[derive(Clone)]
pub struct TokenizerTables {
    pub entries: alloc::vec::Vec<PieceEntry>,
    pub index: alloc::vec::Vec<u32>,
}

#[cfg(feature = "alloc")]
impl fmt::Debug for TokenizerTables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenizerTables")
            .field("entries", &self.entries.len())
            .field("index_words", &self.index.len())
            .finish()
    }
}

#[cfg(feature = "alloc")]
impl TokenizerTables {
    pub fn from_spm(proto: &[u8]) -> Result<Self, TokenizerError> {
        let n = Tokenizer::spm_vocab_size(proto)?;
        let mut t = Self::with_vocab_size(n);
        Tokenizer::fill_from_spm(proto, &mut t.entries, &mut t.index)?;
        Ok(t)
    }

    /// See [`Tokenizer::build_from_gguf_arrays`].
    pub fn from_gguf_arrays(
        tokens_raw: &[u8],
        count: usize,
        scores_raw: &[u8],
        types_raw: &[u8],
        specials: SpecialIds,
        add_space_prefix: bool,
    ) -> Result<Self, TokenizerError> {
        if count == 0 || count > tokens_raw.len() / 8 {
            return Err(TokenizerError::BadVocab(
                "token count exceeds the array bytes",
            ));
        }
        let mut t = Self::with_vocab_size(count);
        Tokenizer::fill_from_gguf_arrays(
            tokens_raw,
            count,
            scores_raw,
            types_raw,
            specials,
            add_space_prefix,
            &mut t.entries,
            &mut t.index,
        )?;
        Ok(t)
    }

    fn with_vocab_size(n: usize) -> Self {
        Self {
            entries: alloc::vec![PieceEntry::default(); Tokenizer::entries_len(n)],
            index: alloc::vec![0; Tokenizer::index_len(n)],
        }
    }

    /// The view over `source`, which must be the bytes the tables were built from.
    pub fn view<'a>(&'a self, source: &'a [u8]) -> Result<Tokenizer<'a>, TokenizerError> {
        Tokenizer::from_parts(source, &self.entries, &self.index)
    }
}

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
