//! What building and lookup share: piece keys and their hashes, the hash
//! table's probing, the prefix filter's bits, and where each table lies in
//! the caller's `index` words.
//!
//! The index is plain arrays, one after the other, sized from the
//! vocabulary size alone, so a view can carve them out again without
//! reading anything stored in them:
//!
//! | words                  | table                                              |
//! |------------------------|----------------------------------------------------|
//! | 256                    | byte ids: the id of `<0xNN>`, or [`NONE`]          |
//! | 1024                   | masks: [`UD_MASK`], [`CTRL_MASK`], 256 `u64` each  |
//! | [`bloom_words`]        | the prefix filter                                  |
//! | 2 × [`slot_count`]     | the hash table                                     |

/// "No id" in the byte-id table (and in the encoder's scratch links).
pub(super) const NONE: u32 = u32::MAX;

const BYTE_IDS_WORDS: usize = 256;
/// For each first byte of a key (see [`key_hash`]), a `u64` (two words)
/// whose bit `min(key len, 64) - 1` is set when a user-defined piece with
/// such a key exists. An offset into the masks.
pub(super) const UD_MASK: usize = 0;
/// Same for control and unknown pieces (matched only with `parse_special`).
pub(super) const CTRL_MASK: usize = 512;
const MASK_WORDS: usize = 1024;

/// Each hash slot is two words: `id + 1` (0 = empty) and the key's hash.
pub(super) const SLOT_WORDS: usize = 2;

/// Hash slots for `n` pieces: a power of two, load factor at most 1/2, so
/// probes stay short and always reach an empty slot.
pub(super) fn slot_count(n: usize) -> Option<usize> {
    n.checked_mul(2)?.max(16).checked_next_power_of_two()
}

/// Words of the prefix filter (a power of two): a bit set of the hashes of
/// every prefix of every user-defined/control key, so special matching
/// stops extending a candidate as soon as no special piece can start with it.
pub(super) fn bloom_words(n: usize) -> usize {
    n.saturating_mul(4)
        .clamp(1 << 10, 1 << 22)
        .next_power_of_two()
        / 32
}

/// `u32` words of index for `n` pieces; `None` if that overflows.
pub(super) fn index_words(n: usize) -> Option<usize> {
    slot_count(n)?
        .checked_mul(SLOT_WORDS)?
        .checked_add(BYTE_IDS_WORDS + MASK_WORDS + bloom_words(n))
}

/// The index of `n` pieces, cut into its tables.
pub(super) struct Tables<'a> {
    pub byte_ids: &'a [u32],
    pub masks: &'a [u32],
    pub bloom: &'a [u32],
    pub table: &'a [u32],
}

/// Same, writable, for the builder.
pub(super) struct TablesMut<'a> {
    pub byte_ids: &'a mut [u32],
    pub masks: &'a mut [u32],
    pub bloom: &'a mut [u32],
    pub table: &'a mut [u32],
}

/// Cuts the first [`index_words`]`(n)` words of `index` into tables;
/// `None` when `index` is shorter.
pub(super) fn split(index: &[u32], n: usize) -> Option<Tables<'_>> {
    let index = index.get(..index_words(n)?)?;
    let (byte_ids, rest) = index.split_at(BYTE_IDS_WORDS);
    let (masks, rest) = rest.split_at(MASK_WORDS);
    let (bloom, table) = rest.split_at(bloom_words(n));
    Some(Tables {
        byte_ids,
        masks,
        bloom,
        table,
    })
}

/// [`split`], writable.
pub(super) fn split_mut(index: &mut [u32], n: usize) -> Option<TablesMut<'_>> {
    let index = index.get_mut(..index_words(n)?)?;
    let (byte_ids, rest) = index.split_at_mut(BYTE_IDS_WORDS);
    let (masks, rest) = rest.split_at_mut(MASK_WORDS);
    let (bloom, table) = rest.split_at_mut(bloom_words(n));
    Some(TablesMut {
        byte_ids,
        masks,
        bloom,
        table,
    })
}

#[inline]
pub(super) fn hash_add(h: u32, b: u8) -> u32 {
    (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
}
pub(super) const HASH_INIT: u32 = 0x811c_9dc5;

/// `'▁'` (U+2581), which stands for a space inside pieces.
pub(super) const SPACE_ESC: [u8; 3] = [0xE2, 0x96, 0x81];

/// Feeds one byte into a key hash.
#[inline]
pub(super) fn key_add(h: u32, b: u8) -> u32 {
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
pub(super) fn key_hash(bytes: &[u8]) -> u32 {
    bytes.iter().fold(HASH_INIT, |h, &b| key_add(h, b))
}

/// The bytes of a key, produced on the fly.
pub(super) struct KeyBytes<'s> {
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

pub(super) fn key_bytes(b: &[u8]) -> KeyBytes<'_> {
    KeyBytes {
        rest: b.iter(),
        esc: 0,
    }
}

/// Whether `a` and `b` have the same key.
#[inline]
pub(super) fn key_eq(a: &[u8], b: &[u8]) -> bool {
    a == b || key_bytes(a).eq(key_bytes(b))
}

/// The first slot to probe for hash `h` (`mask` = slots - 1).
#[inline]
pub(super) fn slot_of(h: u32, mask: usize) -> usize {
    let x = (h ^ (h >> 16)).wrapping_mul(0x7feb_352d);
    (x ^ (x >> 15)) as usize & mask
}

/// The prefix-filter bit of hash `h` (`mask` = filter bits - 1).
#[inline]
pub(super) fn bloom_bit(h: u32, mask: usize) -> usize {
    (h.rotate_left(13).wrapping_mul(0x85eb_ca6b) >> 3) as usize & mask
}
