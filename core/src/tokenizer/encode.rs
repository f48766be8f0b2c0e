//! Encoding: special-piece matching, then BPE merges over caller scratch.

use super::index::{key_add, key_eq, key_hash, CTRL_MASK, HASH_INIT, NONE, SPACE_ESC, UD_MASK};
use super::{check_len, PieceKind, Tokenizer, TokenizerError};

/// Words per symbol: start, len (0 once merged away), prev, next.
const SYM: usize = 4;
/// Words per heap entry: score bits, left symbol, right symbol, merged len.
const ENT: usize = 4;

/// Byte length of the UTF-8 character led by `b` (1 for stray bytes).
#[inline]
fn char_width(b: u8) -> usize {
    match b {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}

struct Out<'o> {
    buf: &'o mut [u32],
    n: usize,
    needed: usize,
}

impl Out<'_> {
    #[inline]
    fn push(&mut self, id: u32) -> Result<(), TokenizerError> {
        match self.buf.get_mut(self.n) {
            Some(slot) => {
                *slot = id;
                self.n += 1;
                Ok(())
            }
            None => Err(TokenizerError::BufferTooSmall {
                what: "output",
                needed: self.needed,
                got: self.buf.len(),
            }),
        }
    }
}

/// A binary max-heap of merge candidates in `u32` words. Entries are
/// `[ordered score, !left, right, merged len]`: the first two words, read
/// as one `u64`, order higher scores first and ties to the leftmost pair.
struct Heap<'s> {
    d: &'s mut [u32],
    len: usize,
}

/// Maps `f32` bits to `u32` so that integer order is float order.
#[inline]
fn ordered(score: f32) -> u32 {
    // -0.0 and 0.0 tie, as in SentencePiece's float comparison.
    let b = if score == 0.0 { 0 } else { score.to_bits() };
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

impl Heap<'_> {
    #[inline]
    fn key(&self, i: usize) -> u64 {
        (u64::from(self.d[i * ENT]) << 32) | u64::from(self.d[i * ENT + 1])
    }

    #[inline]
    fn get(&self, i: usize) -> [u32; ENT] {
        let mut e = [0u32; ENT];
        e.copy_from_slice(&self.d[i * ENT..(i + 1) * ENT]);
        e
    }

    #[inline]
    fn set(&mut self, i: usize, e: [u32; ENT]) {
        self.d[i * ENT..(i + 1) * ENT].copy_from_slice(&e);
    }

    fn push(&mut self, score: f32, left: u32, right: u32, size: u32) -> bool {
        if (self.len + 1) * ENT > self.d.len() {
            return false;
        }
        let e = [ordered(score), !left, right, size];
        let key = (u64::from(e[0]) << 32) | u64::from(e[1]);
        let mut i = self.len;
        self.len += 1;
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.key(parent) >= key {
                break;
            }
            let p = self.get(parent);
            self.set(i, p);
            i = parent;
        }
        self.set(i, e);
        true
    }

    /// The best candidate: `(left, right, merged len)`.
    fn pop(&mut self) -> Option<(u32, u32, u32)> {
        if self.len == 0 {
            return None;
        }
        let top = self.get(0);
        self.len -= 1;
        let n = self.len;
        if n > 0 {
            let e = self.get(n);
            let key = (u64::from(e[0]) << 32) | u64::from(e[1]);
            let mut i = 0;
            loop {
                let mut c = 2 * i + 1;
                if c >= n {
                    break;
                }
                let mut ck = self.key(c);
                if c + 1 < n {
                    let k2 = self.key(c + 1);
                    if k2 > ck {
                        c += 1;
                        ck = k2;
                    }
                }
                if ck <= key {
                    break;
                }
                let child = self.get(c);
                self.set(i, child);
                i = c;
            }
            self.set(i, e);
        }
        Some((!top[1], top[2], top[3]))
    }
}

impl<'a> Tokenizer<'a> {
    /// Encodes `text` into `out` (BOS not added) and returns the number of
    /// ids. `scratch.len() >= encode_scratch_len(text.len())`; `out` must
    /// hold every id (`max_tokens(text)` always does). With `parse_special`,
    /// control-token texts such as `<start_of_turn>` become their ids;
    /// otherwise they are tokenized as plain text.
    pub fn encode(
        &self,
        text: &str,
        parse_special: bool,
        scratch: &mut [u32],
        out: &mut [u32],
    ) -> Result<usize, TokenizerError> {
        let bytes = text.as_bytes();
        if bytes.len() >= NONE as usize {
            return Err(TokenizerError::Unsupported("text of 4 GiB or more"));
        }
        check_len(
            "scratch",
            scratch.len(),
            Self::encode_scratch_len(bytes.len()),
        )?;
        let needed = if out.len() >= bytes.len() * 3 {
            0
        } else {
            Self::max_tokens(text)
        };
        let mut out = Out {
            buf: out,
            n: 0,
            needed,
        };
        let mut seg = 0;
        let mut i = 0;
        while i < bytes.len() {
            match self.match_special(bytes, i, parse_special) {
                Some((id, len)) => {
                    if seg < i {
                        self.bpe(&bytes[seg..i], scratch, &mut out)?;
                    }
                    out.push(id)?;
                    i += len;
                    seg = i;
                }
                None => i += char_width(bytes[i]),
            }
        }
        if seg < bytes.len() {
            self.bpe(&bytes[seg..], scratch, &mut out)?;
        }
        Ok(out.n)
    }

    /// The longest user-defined (or, with `parse_special`, control/unknown)
    /// piece that starts at `bytes[i]`: `(id, byte length)`.
    #[inline]
    fn match_special(&self, bytes: &[u8], i: usize, parse_special: bool) -> Option<(u32, usize)> {
        let first = if bytes[i] == b' ' {
            SPACE_ESC[0]
        } else {
            bytes[i]
        };
        let mut mask = self.mask(UD_MASK, first);
        if parse_special {
            mask |= self.mask(CTRL_MASK, first);
        }
        if mask == 0 {
            return None;
        }
        let accept = |k: PieceKind| {
            k == PieceKind::UserDefined
                || (parse_special && matches!(k, PieceKind::Control | PieceKind::Unknown))
        };
        let mut best = None;
        let mut h = HASH_INIT;
        let mut key_len = 0usize;
        for (len, &b) in bytes[i..].iter().enumerate() {
            h = key_add(h, b);
            key_len += if b == b' ' { 3 } else { 1 };
            if key_len > self.meta.max_special_len || !self.bloom_has(h) {
                break;
            }
            if (mask >> (key_len.min(64) - 1)) & 1 == 0 {
                continue;
            }
            let cand = &bytes[i..i + len + 1];
            if let Some(id) = self.find(h, accept, |p| key_eq(cand, p)) {
                best = Some((id, len + 1));
            }
        }
        best
    }

    /// The normal piece whose text is `text` with spaces as `'▁'`.
    #[inline]
    fn normal_piece(&self, text: &[u8]) -> Option<u32> {
        self.find(
            key_hash(text),
            |k| k == PieceKind::Normal,
            |p| key_eq(text, p),
        )
    }

    /// BPE over one segment without user-defined/special pieces.
    fn bpe(
        &self,
        seg: &[u8],
        scratch: &mut [u32],
        out: &mut Out<'_>,
    ) -> Result<(), TokenizerError> {
        let (syms, heap_words) = scratch.split_at_mut(SYM * seg.len());
        let mut heap = Heap {
            d: heap_words,
            len: 0,
        };

        let mut n = 0usize;
        let mut pos = 0usize;
        while pos < seg.len() {
            let w = char_width(seg[pos]).min(seg.len() - pos);
            let s = &mut syms[SYM * n..SYM * (n + 1)];
            s[0] = pos as u32;
            s[1] = w as u32;
            s[2] = if n == 0 { NONE } else { n as u32 - 1 };
            s[3] = n as u32 + 1;
            n += 1;
            pos += w;
        }
        if n == 0 {
            return Ok(());
        }
        syms[SYM * (n - 1) + 3] = NONE;

        for i in 0..n - 1 {
            self.push_pair(seg, syms, &mut heap, i as u32, i as u32 + 1)?;
        }
        while let Some((left, right, size)) = heap.pop() {
            let (l, r) = (left as usize * SYM, right as usize * SYM);
            // Stale candidates: a side was merged away or grew since.
            if syms[l + 1] == 0
                || syms[r + 1] == 0
                || syms[l + 3] != right
                || syms[l + 1] + syms[r + 1] != size
            {
                continue;
            }
            syms[l + 1] = size;
            syms[r + 1] = 0;
            let next = syms[r + 3];
            syms[l + 3] = next;
            if next != NONE {
                syms[next as usize * SYM + 2] = left;
            }
            let prev = syms[l + 2];
            if prev != NONE {
                self.push_pair(seg, syms, &mut heap, prev, left)?;
            }
            if next != NONE {
                self.push_pair(seg, syms, &mut heap, left, next)?;
            }
        }

        let mut i = 0u32;
        while i != NONE {
            let s = i as usize * SYM;
            let start = syms[s] as usize;
            let text = &seg[start..start + syms[s + 1] as usize];
            self.emit_symbol(text, out)?;
            i = syms[s + 3];
        }
        Ok(())
    }

    #[inline]
    fn push_pair(
        &self,
        seg: &[u8],
        syms: &[u32],
        heap: &mut Heap<'_>,
        left: u32,
        right: u32,
    ) -> Result<(), TokenizerError> {
        let (l, r) = (left as usize * SYM, right as usize * SYM);
        let start = syms[l] as usize;
        let size = syms[l + 1] + syms[r + 1];
        let text = &seg[start..start + size as usize];
        if let Some(id) = self.normal_piece(text) {
            let score = self.entries[id as usize].score;
            if !heap.push(score, left, right, size) {
                // Cannot happen: at most 3 candidates per symbol are pushed.
                return Err(TokenizerError::BufferTooSmall {
                    what: "scratch",
                    needed: Self::encode_scratch_len(seg.len()),
                    got: syms.len() + heap.d.len(),
                });
            }
        }
        Ok(())
    }

    fn emit_symbol(&self, text: &[u8], out: &mut Out<'_>) -> Result<(), TokenizerError> {
        if let Some(id) = self.normal_piece(text) {
            return out.push(id);
        }
        if self.meta.byte_fallback {
            for &b in text {
                if b == b' ' {
                    for e in SPACE_ESC {
                        out.push(self.byte_id(e).unwrap_or(NONE))?;
                    }
                } else {
                    out.push(self.byte_id(b).unwrap_or(NONE))?;
                }
            }
            return Ok(());
        }
        match self.meta.unk {
            Some(unk) => out.push(unk),
            None => Err(TokenizerError::Unencodable),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_escape_spaces() {
        assert_eq!(key_hash(b"a b"), key_hash("a\u{2581}b".as_bytes()));
        assert!(key_eq(b" the", "\u{2581}the".as_bytes()));
        assert!(key_eq("\u{2581}the".as_bytes(), b" the"));
        assert!(key_eq(b"  ", "\u{2581}\u{2581}".as_bytes()));
        assert!(!key_eq(b" the", "\u{2581}th".as_bytes()));
        assert!(!key_eq(b" th", "\u{2581}the".as_bytes()));
        assert!(!key_eq(b"xthe", "\u{2581}the".as_bytes()));
        assert!(!key_eq(b" ", "\u{2581}\u{2581}".as_bytes()));
    }
}
