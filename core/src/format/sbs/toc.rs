//! The `toc` blob: one record per tensor (gemma.cpp's serialized `MatPtr`),
//! concatenated, in blob order.

use super::error::SbsError;
use super::fields::{self, FieldEnum, FieldWriter, Fields, Visitor};
use crate::codec::Codec;

/// gemma.cpp's `Type`: the element type of a tensor, also the main weight
/// type in `ModelConfig`. Only F32, BF16, SFP, NUQ and I8 hold weights.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TensorType {
    Unknown = 0,
    F32 = 1,
    BF16 = 2,
    SFP = 3,
    NUQ = 4,
    F64 = 5,
    U32 = 6,
    U64 = 7,
    I8 = 8,
}

impl TensorType {
    /// gemma.cpp's type string.
    pub fn name(self) -> &'static str {
        match self {
            TensorType::Unknown => "unknown",
            TensorType::F32 => "f32",
            TensorType::BF16 => "bf16",
            TensorType::SFP => "sfp",
            TensorType::NUQ => "nuq",
            TensorType::F64 => "f64",
            TensorType::U32 => "u32",
            TensorType::U64 => "u64",
            TensorType::I8 => "i8",
        }
    }

    /// The codec that decodes tensors of this type, if it is a weight type.
    pub fn codec(self) -> Option<Codec> {
        Codec::from_gemma_type(self as u32)
    }

    pub fn from_codec(c: Codec) -> Self {
        match c {
            Codec::F32 => TensorType::F32,
            Codec::BF16 => TensorType::BF16,
            Codec::SFP => TensorType::SFP,
            Codec::NUQ => TensorType::NUQ,
            Codec::I8 => TensorType::I8,
        }
    }
}

impl FieldEnum for TensorType {
    const NAME: &'static str = "tensor type";
    fn from_u32(v: u32) -> Option<Self> {
        use TensorType::*;
        Some(match v {
            0 => Unknown,
            1 => F32,
            2 => BF16,
            3 => SFP,
            4 => NUQ,
            5 => F64,
            6 => U32,
            7 => U64,
            8 => I8,
            _ => return None,
        })
    }
    fn to_u32(self) -> u32 {
        self as u32
    }
}

/// One tensor's record. Tensors are 2-D (norms have one row) and packed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TocEntry<'a> {
    /// Also the name of the blob that holds the tensor (at most 16 bytes).
    pub name: &'a str,
    pub ty: TensorType,
    /// Bytes per stored element: 4 (f32), 2 (bf16), 1 (the byte streams).
    pub element_bytes: u32,
    /// Stored elements: `rows * cols`, plus the group tables for NUQ and I8
    /// (whose elements are bytes), so the blob is `num_elements *
    /// element_bytes` bytes.
    pub num_elements: u32,
    pub rows: u32,
    pub cols: u32,
    /// Multiply decoded values (or dot products) by this; 1.0 unless the
    /// tensor exceeded SFP's range when it was encoded.
    pub scale: f32,
    /// Elements from one row to the next; equal to `cols` in files.
    pub stride: u32,
}

impl Default for TocEntry<'_> {
    fn default() -> Self {
        TocEntry {
            name: "",
            ty: TensorType::Unknown,
            element_bytes: 0,
            num_elements: 0,
            rows: 0,
            cols: 0,
            scale: 1.0,
            stride: 0,
        }
    }
}

impl<'a> Fields<'a> for TocEntry<'a> {
    fn visit<V: Visitor<'a>>(&mut self, v: &mut V) -> Result<(), SbsError> {
        v.string(&mut self.name)?;
        v.enumeration(&mut self.ty)?;
        v.u32(&mut self.element_bytes)?;
        v.u32(&mut self.num_elements)?;
        v.u32(&mut self.rows)?;
        v.u32(&mut self.cols)?;
        v.f32(&mut self.scale)?;
        v.u32(&mut self.stride)
    }
}

impl<'a> TocEntry<'a> {
    /// The record gemma.cpp writes for a packed `rows x cols` tensor; `None`
    /// if the counts do not fit its u32 fields.
    pub fn new(name: &'a str, codec: Codec, rows: u32, cols: u32, scale: f32) -> Option<Self> {
        let n = (rows as usize).checked_mul(cols as usize)?;
        let num_elements = match codec {
            // Their elements are bytes, group tables included.
            Codec::NUQ | Codec::I8 => codec.bytes_for(n)?,
            _ => n,
        };
        Some(TocEntry {
            name,
            ty: TensorType::from_codec(codec),
            element_bytes: codec.element_bytes() as u32,
            num_elements: u32::try_from(num_elements).ok()?,
            rows,
            cols,
            scale,
            stride: cols,
        })
    }

    /// The blob size this record implies; `None` on overflow.
    pub fn packed_bytes(&self) -> Option<u64> {
        u64::from(self.num_elements).checked_mul(u64::from(self.element_bytes))
    }

    /// Checks the record against itself: a weight type, matching element
    /// size and count, packed, no empty dimension. Returns the codec.
    pub fn check(&self) -> Result<Codec, &'static str> {
        let codec = self.ty.codec().ok_or("type is not a weight codec")?;
        if self.name.is_empty() || self.name.len() > 16 {
            return Err("name is empty or longer than 16 bytes");
        }
        if self.element_bytes as usize != codec.element_bytes() {
            return Err("element_bytes does not match the type");
        }
        if self.rows == 0 || self.cols == 0 {
            return Err("a dimension is zero");
        }
        if self.stride != self.cols {
            // gemma.cpp 3ed403e's migrate_weights writes its padded in-memory
            // rows into blobs of the packed size, so such a file has lost
            // the last rows of every padded tensor: nothing can read it.
            return Err("row stride differs from cols: padded rows, as gemma.cpp's \
                        migrate_weights writes them, cut off the tensor's last rows; \
                        convert the model again");
        }
        let expected = TocEntry::new(self.name, codec, self.rows, self.cols, self.scale)
            .ok_or("rows x cols overflows")?;
        if self.num_elements != expected.num_elements {
            return Err("num_elements does not match rows x cols");
        }
        Ok(codec)
    }
}

/// A validated `toc` blob.
#[derive(Clone, Copy, Debug)]
pub struct Toc<'a> {
    bytes: &'a [u8],
    len: usize,
}

impl<'a> Toc<'a> {
    /// Reads every record once. Unknown trailing fields of a record are
    /// skipped (as gemma.cpp does); missing ones keep their defaults.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, SbsError> {
        if !bytes.len().is_multiple_of(4) {
            return Err(SbsError::NotWords { len: bytes.len() });
        }
        let words = bytes.len() / 4;
        let mut pos = 0;
        let mut len = 0;
        while pos < words {
            // Each record advances by at least its size word.
            let (_, next, _) = fields::read_at::<TocEntry>(bytes, pos)?;
            pos = next;
            len += 1;
        }
        Ok(Toc { bytes, len })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The records in order.
    pub fn iter(&self) -> TocIter<'a> {
        TocIter {
            bytes: self.bytes,
            pos: 0,
            left: self.len,
        }
    }

    /// The record named `name`.
    pub fn get(&self, name: &str) -> Option<TocEntry<'a>> {
        self.iter().find(|e| e.name == name)
    }
}

pub struct TocIter<'a> {
    bytes: &'a [u8],
    pos: usize,
    left: usize,
}

impl<'a> Iterator for TocIter<'a> {
    type Item = TocEntry<'a>;
    fn next(&mut self) -> Option<TocEntry<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // Cannot fail: the blob was validated by `Toc::parse`.
        let (e, next, _) = fields::read_at(self.bytes, self.pos).ok()?;
        self.pos = next;
        Some(e)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left))
    }
}

/// Writes `entries` as a `toc` blob into `buf`; returns the bytes written or
/// [`SbsError::BufferTooSmall`] with the size needed.
pub fn write_toc<'a>(
    entries: impl IntoIterator<Item = TocEntry<'a>>,
    buf: &mut [u8],
) -> Result<usize, SbsError> {
    let mut w = FieldWriter::new(buf);
    for e in entries {
        w.put(&e)?;
    }
    w.finish()
}
