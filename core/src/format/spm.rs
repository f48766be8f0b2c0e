//! A minimal reader for SentencePiece's `ModelProto` (the `tokenizer.model` /
//! `.spm` file, also the `tokenizer` blob of gemma.cpp `.sbs` files).
//!
//! Only what a BPE tokenizer needs is decoded; every other field is skipped
//! by wire type. The reader works over borrowed bytes, never allocates, never
//! panics and uses no `unsafe`: every varint is at most 10 bytes and every
//! length is checked against the bytes that remain.
//!
//! Messages and fields read (protobuf field numbers):
//!
//! ```text
//! ModelProto
//!   1 pieces: repeated SentencePiece { 1 piece: string, 2 score: float, 3 type: enum }
//!       type: 1 NORMAL (default), 2 UNKNOWN, 3 CONTROL, 4 USER_DEFINED, 5 UNUSED, 6 BYTE
//!   2 trainer_spec: TrainerSpec { 3 model_type (1 UNIGRAM default, 2 BPE, 3 WORD, 4 CHAR),
//!       35 byte_fallback, 40 unk_id, 41 bos_id, 42 eos_id, 43 pad_id }
//!   3 normalizer_spec: NormalizerSpec { 1 name, 2 precompiled_charsmap,
//!       3 add_dummy_prefix (default true), 4 remove_extra_whitespaces (default true),
//!       5 escape_whitespaces (default true) }
//! ```
//!
//! [`SpmModel::parse`] validates the whole file once; iterating the pieces
//! afterwards cannot fail.

use core::fmt;

/// Everything that can be wrong with a SentencePiece model proto.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpmError {
    /// A varint, a length-delimited field or a fixed-size field runs past the end.
    Truncated { offset: usize },
    /// A varint longer than 10 bytes or with bits beyond 64.
    BadVarint { offset: usize },
    /// Field number 0, or a group / unknown wire type.
    BadWireType { offset: usize, wire_type: u8 },
    /// A known field carries the wrong wire type.
    WrongWireType { offset: usize, field: u32 },
    /// A piece's text is not valid UTF-8.
    InvalidUtf8 { piece: usize },
    /// A piece type outside 1..=6.
    InvalidPieceType { piece: usize, value: u64 },
    /// The proto holds no pieces.
    NoPieces,
    /// More pieces than fit in a `u32` id.
    TooManyPieces,
}

impl fmt::Display for SpmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SpmError::Truncated { offset } => {
                write!(f, "sentencepiece model truncated at byte {offset}")
            }
            SpmError::BadVarint { offset } => {
                write!(f, "sentencepiece model: malformed varint at byte {offset}")
            }
            SpmError::BadWireType { offset, wire_type } => write!(
                f,
                "sentencepiece model: unsupported field key (wire type {wire_type}) at byte {offset}"
            ),
            SpmError::WrongWireType { offset, field } => write!(
                f,
                "sentencepiece model: field {field} has the wrong wire type at byte {offset}"
            ),
            SpmError::InvalidUtf8 { piece } => {
                write!(f, "sentencepiece model: piece {piece} is not valid UTF-8")
            }
            SpmError::InvalidPieceType { piece, value } => write!(
                f,
                "sentencepiece model: piece {piece} has invalid type {value}"
            ),
            SpmError::NoPieces => write!(f, "sentencepiece model has no pieces"),
            SpmError::TooManyPieces => write!(f, "sentencepiece model has too many pieces"),
        }
    }
}

/// `SentencePiece.Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpmPieceType {
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

impl SpmPieceType {
    pub fn from_u64(v: u64) -> Option<Self> {
        Some(match v {
            1 => Self::Normal,
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            _ => return None,
        })
    }
}

/// `TrainerSpec.ModelType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpmModelType {
    Unigram,
    Bpe,
    Word,
    Char,
    Other(u64),
}

/// One vocabulary entry. `offset` is where `piece` starts inside the proto
/// bytes, so callers can keep `(offset, len)` instead of a reference.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpmPiece<'a> {
    pub piece: &'a str,
    pub offset: usize,
    pub score: f32,
    pub kind: SpmPieceType,
}

/// The parts of `TrainerSpec` a tokenizer needs. Ids are `None` when the field
/// is absent (protobuf defaults are *not* substituted: Gemma's ids differ from
/// them) and negative values are kept as read (`-1` means "no such token").
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpmTrainerSpec {
    /// `None` when absent (protobuf default: UNIGRAM).
    pub model_type: Option<SpmModelType>,
    pub byte_fallback: bool,
    pub unk_id: Option<i32>,
    pub bos_id: Option<i32>,
    pub eos_id: Option<i32>,
    pub pad_id: Option<i32>,
}

/// The parts of `NormalizerSpec` a tokenizer needs, with protobuf defaults
/// applied when a field (or the whole message) is absent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpmNormalizerSpec<'a> {
    /// Empty when absent.
    pub name: &'a str,
    /// Length of `precompiled_charsmap` (non-zero means a real normalizer).
    pub precompiled_charsmap_len: usize,
    pub add_dummy_prefix: bool,
    pub remove_extra_whitespaces: bool,
    pub escape_whitespaces: bool,
}

/// A validated SentencePiece model proto over borrowed bytes.
#[derive(Clone, Copy)]
pub struct SpmModel<'a> {
    bytes: &'a [u8],
    piece_count: usize,
    pub trainer: SpmTrainerSpec,
    pub normalizer: SpmNormalizerSpec<'a>,
}

impl fmt::Debug for SpmModel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpmModel")
            .field("bytes", &self.bytes.len())
            .field("piece_count", &self.piece_count)
            .field("trainer", &self.trainer)
            .field("normalizer", &self.normalizer)
            .finish()
    }
}

// ---------------------------------------------------------------------------
// Wire-level reading.

const WIRE_VARINT: u8 = 0;
const WIRE_I64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_I32: u8 = 5;

#[derive(Clone, Copy)]
enum Value<'a> {
    Varint(u64),
    /// A fixed64 value (no field read here uses one).
    I64,
    /// Bytes and their absolute offset in the whole proto.
    Len(&'a [u8], usize),
    I32(u32),
}

/// Reads fields of one message. `base` is the absolute offset of `bytes`
/// inside the top-level proto, for error messages and piece offsets.
struct Fields<'a> {
    bytes: &'a [u8],
    pos: usize,
    base: usize,
}

fn read_varint(bytes: &[u8], pos: &mut usize, base: usize) -> Result<u64, SpmError> {
    let start = *pos;
    let mut value: u64 = 0;
    for i in 0..10 {
        let Some(&b) = bytes.get(*pos) else {
            return Err(SpmError::Truncated {
                offset: base + *pos,
            });
        };
        *pos += 1;
        if i == 9 && b > 1 {
            return Err(SpmError::BadVarint {
                offset: base + start,
            });
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(SpmError::BadVarint {
        offset: base + start,
    })
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8], base: usize) -> Self {
        Self {
            bytes,
            pos: 0,
            base,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], SpmError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(SpmError::Truncated {
                offset: self.base + self.pos,
            })?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// The next `(field number, key offset, value)`, or `None` at the end.
    fn next_field(&mut self) -> Result<Option<(u32, usize, Value<'a>)>, SpmError> {
        if self.pos >= self.bytes.len() {
            return Ok(None);
        }
        let key_off = self.base + self.pos;
        let key = read_varint(self.bytes, &mut self.pos, self.base)?;
        let wire = (key & 7) as u8;
        let field = key >> 3;
        if field == 0 || field > u64::from(u32::MAX >> 3) {
            return Err(SpmError::BadWireType {
                offset: key_off,
                wire_type: wire,
            });
        }
        let value = match wire {
            WIRE_VARINT => Value::Varint(read_varint(self.bytes, &mut self.pos, self.base)?),
            WIRE_I64 => {
                self.take(8)?;
                Value::I64
            }
            WIRE_LEN => {
                let len = read_varint(self.bytes, &mut self.pos, self.base)?;
                let len = usize::try_from(len).map_err(|_| SpmError::Truncated {
                    offset: self.base + self.pos,
                })?;
                let off = self.base + self.pos;
                Value::Len(self.take(len)?, off)
            }
            WIRE_I32 => {
                let b = self.take(4)?;
                let mut a = [0u8; 4];
                a.copy_from_slice(b);
                Value::I32(u32::from_le_bytes(a))
            }
            _ => {
                return Err(SpmError::BadWireType {
                    offset: key_off,
                    wire_type: wire,
                })
            }
        };
        Ok(Some((field as u32, key_off, value)))
    }
}

fn want_varint(v: Value<'_>, off: usize, field: u32) -> Result<u64, SpmError> {
    match v {
        Value::Varint(x) => Ok(x),
        _ => Err(SpmError::WrongWireType { offset: off, field }),
    }
}

fn want_len<'a>(v: Value<'a>, off: usize, field: u32) -> Result<(&'a [u8], usize), SpmError> {
    match v {
        Value::Len(b, o) => Ok((b, o)),
        _ => Err(SpmError::WrongWireType { offset: off, field }),
    }
}

/// An `int32` field: protobuf encodes negative values as 10-byte varints.
fn as_i32(v: u64) -> i32 {
    v as i64 as i32
}

fn parse_piece<'a>(bytes: &'a [u8], base: usize, index: usize) -> Result<SpmPiece<'a>, SpmError> {
    let mut piece: &'a [u8] = &[];
    let mut offset = base;
    let mut score = 0.0f32;
    let mut kind = SpmPieceType::Normal;
    let mut f = Fields::new(bytes, base);
    while let Some((field, off, v)) = f.next_field()? {
        match field {
            1 => (piece, offset) = want_len(v, off, field)?,
            2 => match v {
                Value::I32(x) => score = f32::from_bits(x),
                _ => return Err(SpmError::WrongWireType { offset: off, field }),
            },
            3 => {
                let t = want_varint(v, off, field)?;
                kind = SpmPieceType::from_u64(t).ok_or(SpmError::InvalidPieceType {
                    piece: index,
                    value: t,
                })?;
            }
            _ => {}
        }
    }
    let piece = core::str::from_utf8(piece).map_err(|_| SpmError::InvalidUtf8 { piece: index })?;
    Ok(SpmPiece {
        piece,
        offset,
        score,
        kind,
    })
}

fn parse_trainer(bytes: &[u8], base: usize) -> Result<SpmTrainerSpec, SpmError> {
    let mut t = SpmTrainerSpec {
        model_type: None,
        byte_fallback: false,
        unk_id: None,
        bos_id: None,
        eos_id: None,
        pad_id: None,
    };
    let mut f = Fields::new(bytes, base);
    while let Some((field, off, v)) = f.next_field()? {
        match field {
            3 => {
                t.model_type = Some(match want_varint(v, off, field)? {
                    1 => SpmModelType::Unigram,
                    2 => SpmModelType::Bpe,
                    3 => SpmModelType::Word,
                    4 => SpmModelType::Char,
                    x => SpmModelType::Other(x),
                })
            }
            35 => t.byte_fallback = want_varint(v, off, field)? != 0,
            40 => t.unk_id = Some(as_i32(want_varint(v, off, field)?)),
            41 => t.bos_id = Some(as_i32(want_varint(v, off, field)?)),
            42 => t.eos_id = Some(as_i32(want_varint(v, off, field)?)),
            43 => t.pad_id = Some(as_i32(want_varint(v, off, field)?)),
            _ => {}
        }
    }
    Ok(t)
}

const DEFAULT_NORMALIZER: SpmNormalizerSpec<'static> = SpmNormalizerSpec {
    name: "",
    precompiled_charsmap_len: 0,
    add_dummy_prefix: true,
    remove_extra_whitespaces: true,
    escape_whitespaces: true,
};

fn parse_normalizer(bytes: &[u8], base: usize) -> Result<SpmNormalizerSpec<'_>, SpmError> {
    let mut n = DEFAULT_NORMALIZER;
    let mut f = Fields::new(bytes, base);
    while let Some((field, off, v)) = f.next_field()? {
        match field {
            1 => {
                let (b, _) = want_len(v, off, field)?;
                // A non-UTF-8 name is kept as "?" rather than rejected: it is informational.
                n.name = core::str::from_utf8(b).unwrap_or("?");
            }
            2 => n.precompiled_charsmap_len = want_len(v, off, field)?.0.len(),
            3 => n.add_dummy_prefix = want_varint(v, off, field)? != 0,
            4 => n.remove_extra_whitespaces = want_varint(v, off, field)? != 0,
            5 => n.escape_whitespaces = want_varint(v, off, field)? != 0,
            _ => {}
        }
    }
    Ok(n)
}

impl<'a> SpmModel<'a> {
    /// Validates the whole proto: every field, every piece (UTF-8 text, type in range).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, SpmError> {
        let mut piece_count = 0usize;
        let mut trainer = None;
        let mut normalizer = None;
        let mut f = Fields::new(bytes, 0);
        while let Some((field, off, v)) = f.next_field()? {
            match field {
                1 => {
                    let (b, o) = want_len(v, off, field)?;
                    parse_piece(b, o, piece_count)?;
                    piece_count += 1;
                }
                2 => {
                    let (b, o) = want_len(v, off, field)?;
                    trainer = Some(parse_trainer(b, o)?);
                }
                3 => {
                    let (b, o) = want_len(v, off, field)?;
                    normalizer = Some(parse_normalizer(b, o)?);
                }
                _ => {}
            }
        }
        if piece_count == 0 {
            return Err(SpmError::NoPieces);
        }
        if piece_count >= u32::MAX as usize {
            return Err(SpmError::TooManyPieces);
        }
        let trainer = trainer.unwrap_or(SpmTrainerSpec {
            model_type: None,
            byte_fallback: false,
            unk_id: None,
            bos_id: None,
            eos_id: None,
            pad_id: None,
        });
        Ok(Self {
            bytes,
            piece_count,
            trainer,
            normalizer: normalizer.unwrap_or(DEFAULT_NORMALIZER),
        })
    }

    /// The proto bytes this model borrows (piece offsets index into them).
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    pub fn piece_count(&self) -> usize {
        self.piece_count
    }

    /// The pieces in id order.
    pub fn pieces(&self) -> SpmPieces<'a> {
        SpmPieces {
            fields: Fields::new(self.bytes, 0),
            index: 0,
        }
    }
}

/// Iterator over the pieces of a validated [`SpmModel`].
pub struct SpmPieces<'a> {
    fields: Fields<'a>,
    index: usize,
}

impl<'a> Iterator for SpmPieces<'a> {
    type Item = SpmPiece<'a>;

    fn next(&mut self) -> Option<SpmPiece<'a>> {
        // The bytes were validated by `SpmModel::parse`, so errors cannot
        // happen here; should they, iteration simply stops.
        loop {
            let (field, _, v) = self.fields.next_field().ok()??;
            if field != 1 {
                continue;
            }
            let Value::Len(b, o) = v else { return None };
            let p = parse_piece(b, o, self.index).ok()?;
            self.index += 1;
            return Some(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_proto_varint_limits() {
        let mut p = 0;
        assert_eq!(read_varint(&[0x96, 0x01], &mut p, 0), Ok(150));
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        p = 0;
        assert_eq!(read_varint(&max, &mut p, 0), Ok(u64::MAX));
        let over = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        p = 0;
        assert!(matches!(
            read_varint(&over, &mut p, 0),
            Err(SpmError::BadVarint { .. })
        ));
        let long = [0x80u8; 11];
        p = 0;
        assert!(read_varint(&long, &mut p, 0).is_err());
        p = 0;
        assert!(matches!(
            read_varint(&[0x80], &mut p, 0),
            Err(SpmError::Truncated { .. })
        ));
    }
}
