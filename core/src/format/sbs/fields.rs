//! gemma.cpp's "fields" serialization: structs as streams of little-endian
//! u32 words, readable by older and newer code alike (encoding in the module
//! docs of [`super`]).
//!
//! A struct lists its fields once, in [`Fields::visit`]; the same list drives
//! reading ([`FieldReader`]) and writing ([`FieldWriter`]), as gemma.cpp's
//! `VisitFields` does, so the two cannot disagree on the order.
//!
//! Reading borrows: strings are `&str` into the blob, vectors stay encoded
//! ([`List::Encoded`]) and are decoded again on each walk, so nothing is
//! allocated whatever the counts say. Writing goes into a caller's buffer and
//! reports the size it needed when that is too small.

use super::error::SbsError;

/// Longest string, in words (gemma.cpp: 64, so 256 ASCII bytes).
pub const MAX_STRING_WORDS: usize = 64;
/// Longest vector (gemma.cpp: 64 Ki elements).
pub const MAX_VECTOR_LEN: usize = 64 * 1024;

/// An enum stored as one word. `from_u32` accepts what gemma.cpp's
/// `EnumValid` accepts.
pub trait FieldEnum: Copy {
    /// For error messages.
    const NAME: &'static str;
    fn from_u32(v: u32) -> Option<Self>;
    fn to_u32(self) -> u32;
}

/// Something that reads or writes fields: [`FieldReader`], [`FieldWriter`].
///
/// Reading: a field whose struct has ended keeps its value (the default: the
/// data is older than the code); a value that cannot be valid is an error.
pub trait Visitor<'a> {
    fn u32(&mut self, v: &mut u32) -> Result<(), SbsError>;
    fn i32(&mut self, v: &mut i32) -> Result<(), SbsError>;
    fn u64(&mut self, v: &mut u64) -> Result<(), SbsError>;
    /// Must be finite.
    fn f32(&mut self, v: &mut f32) -> Result<(), SbsError>;
    /// One word, 0 or 1.
    fn bool(&mut self, v: &mut bool) -> Result<(), SbsError>;
    fn enumeration<E: FieldEnum>(&mut self, v: &mut E) -> Result<(), SbsError>;
    /// ASCII, at most 256 bytes, no all-zero word.
    fn string(&mut self, v: &mut &'a str) -> Result<(), SbsError>;
    /// A struct inside this one, prefixed by its word count.
    fn nested<S: Fields<'a>>(&mut self, v: &mut S) -> Result<(), SbsError>;
    /// A vector, prefixed by its element count.
    fn list<T: Element<'a>>(&mut self, v: &mut List<'a, T>) -> Result<(), SbsError>;
}

/// A serializable struct: `visit` calls the visitor once per field, in the
/// order they are stored. New fields may only be appended.
pub trait Fields<'a> {
    fn visit<V: Visitor<'a>>(&mut self, v: &mut V) -> Result<(), SbsError>;
}

/// What a [`List`] can hold: u32, strings, and structs (which visit
/// themselves with [`Visitor::nested`]).
pub trait Element<'a>: Copy + Default {
    fn visit_element<V: Visitor<'a>>(&mut self, v: &mut V) -> Result<(), SbsError>;
}

impl<'a> Element<'a> for u32 {
    fn visit_element<V: Visitor<'a>>(&mut self, v: &mut V) -> Result<(), SbsError> {
        v.u32(self)
    }
}

impl<'a> Element<'a> for &'a str {
    fn visit_element<V: Visitor<'a>>(&mut self, v: &mut V) -> Result<(), SbsError> {
        v.string(self)
    }
}

/// A vector field: either still encoded in a blob that was read (already
/// validated), or the caller's slice (for writing).
#[derive(Clone, Copy, Debug)]
pub enum List<'a, T> {
    /// `len` elements encoded in `words` (the bytes after the count word).
    Encoded {
        words: &'a [u8],
        len: usize,
    },
    Slice(&'a [T]),
}

impl<T> Default for List<'_, T> {
    fn default() -> Self {
        List::Slice(&[])
    }
}

impl<'a, T: Element<'a>> List<'a, T> {
    pub fn len(&self) -> usize {
        match self {
            List::Encoded { len, .. } => *len,
            List::Slice(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements in order; decoding an encoded list again costs a walk
    /// over its words.
    pub fn iter(&self) -> ListIter<'a, T> {
        match *self {
            List::Encoded { words, len } => ListIter::Encoded {
                reader: FieldReader::over(words),
                left: len,
            },
            List::Slice(s) => ListIter::Slice(s.iter()),
        }
    }

    /// Element `index` (walks the elements before it).
    pub fn get(&self, index: usize) -> Option<T> {
        self.iter().nth(index)
    }
}

impl<'a, T: Element<'a> + PartialEq> PartialEq for List<'a, T> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

pub enum ListIter<'a, T> {
    Encoded {
        reader: FieldReader<'a>,
        left: usize,
    },
    Slice(core::slice::Iter<'a, T>),
}

impl<'a, T: Element<'a>> Iterator for ListIter<'a, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        match self {
            ListIter::Encoded { reader, left } => {
                if *left == 0 {
                    return None;
                }
                *left -= 1;
                let mut t = T::default();
                // Cannot fail: the list was validated when it was read.
                t.visit_element(reader).ok()?;
                Some(t)
            }
            ListIter::Slice(it) => it.next().copied(),
        }
    }
}

/// What a read skipped: fields the data lacks (they kept their defaults: old
/// data, new code) and words the code does not know (new data, old code;
/// gemma.cpp warns about these and carries on).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    pub missing_fields: u32,
    pub extra_words: u32,
}

/// Reads fields from a stream of words. Positions are word indices.
#[derive(Clone, Debug)]
pub struct FieldReader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// End of the innermost struct being read.
    end: usize,
    stats: ReadStats,
}

impl<'a> FieldReader<'a> {
    fn over(bytes: &'a [u8]) -> Self {
        FieldReader {
            bytes,
            pos: 0,
            end: bytes.len() / 4,
            stats: ReadStats::default(),
        }
    }

    fn word(&self, i: usize) -> Option<u32> {
        let at = i.checked_mul(4)?;
        let b = self.bytes.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes(b.try_into().ok()?))
    }

    /// Whether the current struct still has a field here; if not, the field
    /// is missing (old data) and keeps its value.
    fn present(&mut self) -> bool {
        if self.pos < self.end {
            true
        } else {
            self.stats.missing_fields = self.stats.missing_fields.saturating_add(1);
            false
        }
    }

    fn next_word(&mut self) -> Result<u32, SbsError> {
        let w = self.word(self.pos).ok_or(SbsError::FieldTruncated {
            what: "word",
            word: self.pos,
        })?;
        self.pos += 1;
        Ok(w)
    }

    /// Words left in the current struct after the one at `at`.
    fn left_after(&self, at: usize) -> usize {
        self.end.saturating_sub(at.saturating_add(1))
    }
}

fn words_of(bytes: &[u8]) -> Result<usize, SbsError> {
    if !bytes.len().is_multiple_of(4) {
        return Err(SbsError::NotWords { len: bytes.len() });
    }
    Ok(bytes.len() / 4)
}

/// Reads the struct that starts at word `word` of `bytes`. Returns it, the
/// word after its end, and what was skipped.
pub fn read_at<'a, S: Fields<'a> + Default>(
    bytes: &'a [u8],
    word: usize,
) -> Result<(S, usize, ReadStats), SbsError> {
    let len = words_of(bytes)?;
    let mut r = FieldReader {
        bytes,
        pos: word,
        end: len,
        stats: ReadStats::default(),
    };
    if word >= len {
        return Err(SbsError::FieldTruncated {
            what: "struct size",
            word,
        });
    }
    let mut s = S::default();
    r.nested(&mut s)?;
    Ok((s, r.pos, r.stats))
}

/// Reads the struct at the start of `bytes`. Words after its end are counted
/// as extra and otherwise ignored, as gemma.cpp does.
pub fn read<'a, S: Fields<'a> + Default>(bytes: &'a [u8]) -> Result<(S, ReadStats), SbsError> {
    let (s, end, mut stats) = read_at(bytes, 0)?;
    let trailing = (bytes.len() / 4).saturating_sub(end);
    stats.extra_words = stats
        .extra_words
        .saturating_add(u32::try_from(trailing).unwrap_or(u32::MAX));
    Ok((s, stats))
}

impl<'a> Visitor<'a> for FieldReader<'a> {
    fn u32(&mut self, v: &mut u32) -> Result<(), SbsError> {
        if self.present() {
            *v = self.next_word()?;
        }
        Ok(())
    }

    fn i32(&mut self, v: &mut i32) -> Result<(), SbsError> {
        if self.present() {
            *v = self.next_word()? as i32;
        }
        Ok(())
    }

    fn u64(&mut self, v: &mut u64) -> Result<(), SbsError> {
        if self.present() {
            if self.left_after(self.pos) < 1 {
                return Err(SbsError::FieldTruncated {
                    what: "u64",
                    word: self.pos,
                });
            }
            let lo = self.next_word()?;
            let hi = self.next_word()?;
            *v = u64::from(lo) | (u64::from(hi) << 32);
        }
        Ok(())
    }

    fn f32(&mut self, v: &mut f32) -> Result<(), SbsError> {
        if self.present() {
            let word = self.pos;
            let x = f32::from_bits(self.next_word()?);
            if !x.is_finite() {
                return Err(SbsError::BadFloat { word });
            }
            *v = x;
        }
        Ok(())
    }

    fn bool(&mut self, v: &mut bool) -> Result<(), SbsError> {
        if self.present() {
            let word = self.pos;
            *v = match self.next_word()? {
                0 => false,
                1 => true,
                value => return Err(SbsError::BadBool { word, value }),
            };
        }
        Ok(())
    }

    fn enumeration<E: FieldEnum>(&mut self, v: &mut E) -> Result<(), SbsError> {
        if self.present() {
            let word = self.pos;
            let value = self.next_word()?;
            *v = E::from_u32(value).ok_or(SbsError::BadEnum {
                what: E::NAME,
                word,
                value,
            })?;
        }
        Ok(())
    }

    fn string(&mut self, v: &mut &'a str) -> Result<(), SbsError> {
        if !self.present() {
            return Ok(());
        }
        let at = self.pos;
        let n = self.next_word()? as usize;
        if n > MAX_STRING_WORDS {
            return Err(SbsError::StringTooLong { word: at, words: n });
        }
        if n > self.left_after(at) {
            return Err(SbsError::FieldTruncated {
                what: "string",
                word: at,
            });
        }
        for i in 0..n {
            let w = self.next_word()?;
            // Zero-padded to a word, but never a whole zero word; ASCII only.
            if w == 0 || w & 0x8080_8080 != 0 {
                return Err(SbsError::BadString { word: at + 1 + i });
            }
        }
        let bytes = self
            .bytes
            .get((at + 1) * 4..self.pos * 4)
            .ok_or(SbsError::FieldTruncated {
                what: "string",
                word: at,
            })?;
        let len = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        *v = core::str::from_utf8(&bytes[..len]).map_err(|_| SbsError::BadString { word: at })?;
        Ok(())
    }

    fn nested<S: Fields<'a>>(&mut self, v: &mut S) -> Result<(), SbsError> {
        if !self.present() {
            return Ok(());
        }
        let at = self.pos;
        let n = self.next_word()? as usize;
        if n > self.left_after(at) {
            return Err(SbsError::FieldTruncated {
                what: "nested struct",
                word: at,
            });
        }
        let outer_end = self.end;
        // at + 1 + n <= outer_end, checked above.
        self.end = at + 1 + n;
        v.visit(self)?;
        // Fields this code does not know: skip them.
        let extra = self.end.saturating_sub(self.pos);
        self.stats.extra_words = self
            .stats
            .extra_words
            .saturating_add(u32::try_from(extra).unwrap_or(u32::MAX));
        self.pos = self.end;
        self.end = outer_end;
        Ok(())
    }

    fn list<T: Element<'a>>(&mut self, v: &mut List<'a, T>) -> Result<(), SbsError> {
        if !self.present() {
            return Ok(());
        }
        let at = self.pos;
        let count = self.next_word()?;
        let len = count as usize;
        if len > MAX_VECTOR_LEN {
            return Err(SbsError::VectorTooLong { word: at, count });
        }
        // Every element takes at least one word: refuse a count the struct
        // cannot hold before looking at any element.
        if len > self.left_after(at) {
            return Err(SbsError::FieldTruncated {
                what: "vector",
                word: at,
            });
        }
        let start = self.pos;
        for _ in 0..len {
            // A vector cut short is corrupt, not old data: its count was
            // written with it.
            if self.pos >= self.end {
                return Err(SbsError::FieldTruncated {
                    what: "vector element",
                    word: self.pos,
                });
            }
            let mut e = T::default();
            e.visit_element(self)?;
        }
        let words = self
            .bytes
            .get(start * 4..self.pos * 4)
            .ok_or(SbsError::FieldTruncated {
                what: "vector",
                word: at,
            })?;
        *v = List::Encoded { words, len };
        Ok(())
    }
}

/// Writes fields into a caller's buffer. Keeps counting when the buffer is
/// full, so [`FieldWriter::finish`] can say how much was needed.
#[derive(Debug)]
pub struct FieldWriter<'b> {
    buf: &'b mut [u8],
    words: usize,
}

impl<'b> FieldWriter<'b> {
    pub fn new(buf: &'b mut [u8]) -> Self {
        FieldWriter { buf, words: 0 }
    }

    /// Appends one top-level struct (a `toc` is several in a row).
    pub fn put<'a, S: Fields<'a> + Clone>(&mut self, s: &S) -> Result<(), SbsError> {
        let mut s = s.clone();
        self.nested(&mut s)
    }

    /// Bytes written, or [`SbsError::BufferTooSmall`] with the size needed.
    pub fn finish(self) -> Result<usize, SbsError> {
        let needed = self.words.saturating_mul(4);
        if needed > self.buf.len() {
            return Err(SbsError::BufferTooSmall { needed });
        }
        Ok(needed)
    }

    fn set(&mut self, word: usize, w: u32) {
        let at = word.saturating_mul(4);
        if let Some(d) = self.buf.get_mut(at..at.saturating_add(4)) {
            d.copy_from_slice(&w.to_le_bytes());
        }
    }

    fn push(&mut self, w: u32) {
        self.set(self.words, w);
        self.words = self.words.saturating_add(1);
    }
}

/// Writes one struct into `buf`; returns the bytes written.
pub fn write<'a, S: Fields<'a> + Clone>(s: &S, buf: &mut [u8]) -> Result<usize, SbsError> {
    let mut w = FieldWriter::new(buf);
    w.put(s)?;
    w.finish()
}

/// Bytes [`write()`] needs for `s`.
pub fn serialized_len<'a, S: Fields<'a> + Clone>(s: &S) -> Result<usize, SbsError> {
    match write(s, &mut []) {
        Ok(n) => Ok(n),
        Err(SbsError::BufferTooSmall { needed }) => Ok(needed),
        Err(e) => Err(e),
    }
}

/// [`write()`] into a new vector of the right size.
#[cfg(feature = "alloc")]
pub fn to_vec<'a, S: Fields<'a> + Clone>(s: &S) -> Result<alloc::vec::Vec<u8>, SbsError> {
    let mut out = alloc::vec![0u8; serialized_len(s)?];
    write(s, &mut out)?;
    Ok(out)
}

impl<'a> Visitor<'a> for FieldWriter<'_> {
    fn u32(&mut self, v: &mut u32) -> Result<(), SbsError> {
        self.push(*v);
        Ok(())
    }

    fn i32(&mut self, v: &mut i32) -> Result<(), SbsError> {
        self.push(*v as u32);
        Ok(())
    }

    fn u64(&mut self, v: &mut u64) -> Result<(), SbsError> {
        self.push(*v as u32);
        self.push((*v >> 32) as u32);
        Ok(())
    }

    fn f32(&mut self, v: &mut f32) -> Result<(), SbsError> {
        if !v.is_finite() {
            return Err(SbsError::BadFloat { word: self.words });
        }
        self.push(v.to_bits());
        Ok(())
    }

    fn bool(&mut self, v: &mut bool) -> Result<(), SbsError> {
        self.push(u32::from(*v));
        Ok(())
    }

    fn enumeration<E: FieldEnum>(&mut self, v: &mut E) -> Result<(), SbsError> {
        self.push(v.to_u32());
        Ok(())
    }

    fn string(&mut self, v: &mut &'a str) -> Result<(), SbsError> {
        let at = self.words;
        let bytes = v.as_bytes();
        let n = bytes.len().div_ceil(4);
        if n > MAX_STRING_WORDS {
            return Err(SbsError::StringTooLong { word: at, words: n });
        }
        // The same rule the reader applies, so whatever is written reads back.
        for (i, chunk) in bytes.chunks(4).enumerate() {
            let mut w = [0u8; 4];
            w[..chunk.len()].copy_from_slice(chunk);
            let w = u32::from_le_bytes(w);
            if w == 0 || w & 0x8080_8080 != 0 {
                return Err(SbsError::BadString { word: at + 1 + i });
            }
        }
        self.push(n as u32);
        for chunk in bytes.chunks(4) {
            let mut w = [0u8; 4];
            w[..chunk.len()].copy_from_slice(chunk);
            self.push(u32::from_le_bytes(w));
        }
        Ok(())
    }

    fn nested<S: Fields<'a>>(&mut self, v: &mut S) -> Result<(), SbsError> {
        let at = self.words;
        self.push(0);
        v.visit(self)?;
        let n = self.words.saturating_sub(at + 1);
        let n = u32::try_from(n).map_err(|_| SbsError::BufferTooSmall {
            needed: self.words.saturating_mul(4),
        })?;
        self.set(at, n);
        Ok(())
    }

    fn list<T: Element<'a>>(&mut self, v: &mut List<'a, T>) -> Result<(), SbsError> {
        let at = self.words;
        let len = v.len();
        if len > MAX_VECTOR_LEN {
            return Err(SbsError::VectorTooLong {
                word: at,
                count: u32::try_from(len).unwrap_or(u32::MAX),
            });
        }
        self.push(len as u32);
        let mut written = 0;
        for mut e in v.iter() {
            e.visit_element(self)?;
            written += 1;
        }
        if written != len {
            return Err(SbsError::FieldTruncated {
                what: "vector element",
                word: at,
            });
        }
        Ok(())
    }
}
