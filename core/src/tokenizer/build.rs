//! Building: piece entries from a `.spm` proto or GGUF arrays, then the
//! index over them, all into caller memory.

use super::index::{
    bloom_bit, hash_add, key_bytes, key_eq, key_hash, slot_count, slot_of, split_mut, TablesMut,
    CTRL_MASK, HASH_INIT, NONE, SLOT_WORDS, UD_MASK,
};
use super::{
    check_len, parse_byte_piece, PieceEntry, PieceKind, Tokenizer, TokenizerError, TokenizerMeta,
};
use crate::format::spm::{SpmModel, SpmModelType, SpmPieceType};

impl<'a> Tokenizer<'a> {
    /// Parses a SentencePiece model proto, fills `entries` and `index`, and
    /// returns the view. `entries.len() >= spm_vocab_size(proto)`,
    /// `index.len() >= index_len(that)`.
    pub fn build_from_spm(
        proto: &'a [u8],
        entries: &'a mut [PieceEntry],
        index: &'a mut [u32],
    ) -> Result<Self, TokenizerError> {
        let meta = Self::fill_from_spm(proto, entries, index)?;
        Self::from_parts(proto, entries, index, meta)
    }

    /// Like [`build_from_spm`](Self::build_from_spm) but only fills the
    /// tables; re-create the view with
    /// [`from_parts`](Self::from_parts)`(proto, entries, index, meta)`.
    pub fn fill_from_spm(
        proto: &[u8],
        entries: &mut [PieceEntry],
        index: &mut [u32],
    ) -> Result<TokenizerMeta, TokenizerError> {
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
        // Entries hold u32 offsets into the proto.
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
        // The trainer spec says -1 for "no such token".
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
        build_index(proto, entries, index, specials, t.byte_fallback)
    }
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

/// Gemma's `.spm` stores its control tokens as user-defined pieces (so that
/// SentencePiece matches them in text); these names make them control
/// pieces again, as the GGUF's token types have them.
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

/// `None`: not given, look up by name. `Some(None)`: given as "absent".
pub(super) struct ResolvedSpecials {
    pub bos: Option<Option<u32>>,
    pub eos: Option<Option<u32>>,
    pub unk: Option<Option<u32>>,
    pub pad: Option<Option<u32>>,
}

/// Fills `index` over `entries` (whose texts lie in `source`) and resolves
/// the special ids. `byte_fallback` is the model's wish; it takes effect
/// only when all 256 byte pieces exist.
pub(super) fn build_index(
    source: &[u8],
    entries: &[PieceEntry],
    index: &mut [u32],
    specials: ResolvedSpecials,
    byte_fallback: bool,
) -> Result<TokenizerMeta, TokenizerError> {
    let n = entries.len();
    let slots = slot_count(n).ok_or(TokenizerError::BadVocab("vocabulary too large"))?;
    let needed = Tokenizer::index_len(n);
    check_len("index", index.len(), needed)?;
    let got = index.len();
    let TablesMut {
        byte_ids,
        masks,
        bloom,
        table,
    } = split_mut(index, n).ok_or(TokenizerError::BufferTooSmall {
        what: "index",
        needed,
        got,
    })?;
    byte_ids.fill(NONE);
    masks.fill(0);
    bloom.fill(0);
    table.fill(0);
    let bloom_mask = bloom.len() * 32 - 1;
    let mask = slots - 1;
    let bytes_of = |e: &PieceEntry| {
        let s = e.offset as usize;
        s.checked_add(e.len as usize)
            .and_then(|end| source.get(s..end))
            .unwrap_or(&[])
    };

    let mut max_special = 0usize;
    for (id, e) in entries.iter().enumerate() {
        let p = bytes_of(e);
        let h = key_hash(p);
        // Terminates: at most half the slots are ever full.
        let mut s = slot_of(h, mask);
        while table[s * SLOT_WORDS] != 0 {
            s = (s + 1) & mask;
        }
        table[s * SLOT_WORDS] = id as u32 + 1;
        table[s * SLOT_WORDS + 1] = h;

        let set = match e.kind {
            PieceKind::UserDefined => Some(UD_MASK),
            PieceKind::Control | PieceKind::Unknown => Some(CTRL_MASK),
            PieceKind::Byte => {
                if let Some(b) = parse_byte_piece(p) {
                    let w = &mut byte_ids[b as usize];
                    if *w == NONE {
                        *w = id as u32;
                    }
                }
                None
            }
            _ => None,
        };
        if let (Some(set), Some(first)) = (set, key_bytes(p).next()) {
            let mut key_len = 0usize;
            let mut ph = HASH_INIT;
            for b in key_bytes(p) {
                ph = hash_add(ph, b);
                key_len += 1;
                let bit = bloom_bit(ph, bloom_mask);
                bloom[bit / 32] |= 1 << (bit % 32);
            }
            let bit = key_len.min(64) - 1;
            masks[set + 2 * first as usize + bit / 32] |= 1 << (bit % 32);
            max_special = max_special.max(key_len);
        }
    }
    let all_bytes = byte_ids.iter().all(|&w| w != NONE);

    let lookup = |name: &str| -> Option<u32> {
        let p = name.as_bytes();
        let h = key_hash(p);
        let mut s = slot_of(h, mask);
        loop {
            let id1 = table[s * SLOT_WORDS];
            if id1 == 0 {
                return None;
            }
            if table[s * SLOT_WORDS + 1] == h && key_eq(bytes_of(&entries[id1 as usize - 1]), p) {
                return Some(id1 - 1);
            }
            s = (s + 1) & mask;
        }
    };
    let resolve = |given: Option<Option<u32>>, name: &str| match given {
        Some(Some(id)) if (id as usize) < n => Ok(Some(id)),
        Some(Some(id)) => Err(TokenizerError::BadSpecialId(id)),
        Some(None) => Ok(None),
        None => Ok(lookup(name)),
    };
    let bos = resolve(specials.bos, "<bos>")?.ok_or(TokenizerError::BadVocab("no BOS token"))?;
    let eos = resolve(specials.eos, "<eos>")?.ok_or(TokenizerError::BadVocab("no EOS token"))?;
    let pad = resolve(specials.pad, "<pad>")?;
    let mut unk = resolve(specials.unk, "<unk>")?;
    // Not given and not named `<unk>`: the first piece of kind unknown.
    if unk.is_none() && specials.unk.is_none() {
        unk = entries
            .iter()
            .position(|e| e.kind == PieceKind::Unknown)
            .map(|i| i as u32);
    }
    Ok(TokenizerMeta {
        vocab_size: n,
        bos,
        eos,
        pad,
        unk,
        eot: lookup("<end_of_turn>"),
        sot: lookup("<start_of_turn>"),
        max_special_len: max_special,
        byte_fallback: byte_fallback && all_bytes,
    })
}
