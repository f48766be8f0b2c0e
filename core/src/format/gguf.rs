//! GGUF (versions 2 and 3) over borrowed bytes, zero-copy.
//!
//! Layout: magic `GGUF`, version u32, tensor count u64, metadata count u64,
//! then the metadata key/value pairs, then one info record per tensor
//! (name, dims, type, offset relative to the data section), then padding to
//! `general.alignment` (default 32) and the tensor data.
//!
//! [`Gguf::parse`] walks the whole header once and checks every count,
//! length, dimension and offset against the bytes that are actually there,
//! with checked arithmetic, so later accessors can hand out slices without
//! further checks failing. Nothing here allocates or panics.

use super::reader::Reader;
use crate::quant::WeightType;
use core::fmt;

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: usize = 32;
/// GGML tensors have at most four dimensions.
pub const MAX_DIMS: usize = 4;
/// Arrays nested deeper than this are refused (real files nest none).
const MAX_ARRAY_DEPTH: u32 = 2;
/// Smallest possible encoded metadata entry: key length, empty key, type, one-byte value.
const MIN_KV_BYTES: usize = 8 + 4 + 1;
/// Smallest possible tensor info: name length, n_dims, one dim, type, offset.
const MIN_TENSOR_INFO_BYTES: usize = 8 + 4 + 8 + 4 + 8;
/// Above this many tensors stored out of offset order, the quadratic overlap
/// check would be a denial of service; such files are refused.
const MAX_UNORDERED_TENSORS: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgufError {
    /// The bytes end before the structure does.
    Truncated {
        what: &'static str,
        offset: usize,
    },
    BadMagic,
    UnsupportedVersion(u32),
    /// A count that cannot possibly fit in the remaining bytes.
    CountTooLarge {
        what: &'static str,
        count: u64,
    },
    BadValueType {
        offset: usize,
        value_type: u32,
    },
    ArrayTooDeep {
        offset: usize,
    },
    KeyNotUtf8 {
        offset: usize,
    },
    BadAlignment(u64),
    TooManyDims {
        tensor: usize,
        n_dims: u32,
    },
    ZeroDim {
        tensor: usize,
    },
    SizeOverflow {
        tensor: usize,
    },
    UnknownTensorType {
        tensor: usize,
        ggml_type: u32,
    },
    /// The row length is not a whole number of quantization blocks.
    RowNotBlockMultiple {
        tensor: usize,
    },
    Misaligned {
        tensor: usize,
        offset: u64,
    },
    TensorOutOfBounds {
        tensor: usize,
    },
    Overlap {
        first: usize,
        second: usize,
    },
    TooManyUnorderedTensors(usize),
}

impl fmt::Display for GgufError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use GgufError::*;
        match *self {
            Truncated { what, offset } => {
                write!(f, "GGUF truncated: {what} at byte {offset} runs past the end of the file")
            }
            BadMagic => write!(f, "not a GGUF file (magic bytes are not 'GGUF')"),
            UnsupportedVersion(v) => write!(f, "GGUF version {v} is not supported (2 and 3 are)"),
            CountTooLarge { what, count } => {
                write!(f, "GGUF claims {count} {what}, more than the file can hold")
            }
            BadValueType { offset, value_type } => {
                write!(f, "GGUF metadata value type {value_type} at byte {offset} is unknown or wrong here")
            }
            ArrayTooDeep { offset } => write!(f, "GGUF array at byte {offset} is nested too deeply"),
            KeyNotUtf8 { offset } => write!(f, "GGUF string at byte {offset} is not UTF-8"),
            BadAlignment(a) => write!(f, "GGUF general.alignment {a} is not a power of two below 2^20"),
            TooManyDims { tensor, n_dims } => {
                write!(f, "GGUF tensor #{tensor} has {n_dims} dimensions (at most {MAX_DIMS})")
            }
            ZeroDim { tensor } => write!(f, "GGUF tensor #{tensor} has a zero dimension"),
            SizeOverflow { tensor } => write!(f, "GGUF tensor #{tensor}: size overflows"),
            UnknownTensorType { tensor, ggml_type } => {
                write!(f, "GGUF tensor #{tensor} has unsupported type {ggml_type}")
            }
            RowNotBlockMultiple { tensor } => {
                write!(f, "GGUF tensor #{tensor}: row length is not a multiple of its block size")
            }
            Misaligned { tensor, offset } => {
                write!(f, "GGUF tensor #{tensor}: offset {offset} is not aligned")
            }
            TensorOutOfBounds { tensor } => {
                write!(f, "GGUF tensor #{tensor}: data runs past the end of the file")
            }
            Overlap { first, second } => {
                write!(f, "GGUF tensors #{first} and #{second} overlap")
            }
            TooManyUnorderedTensors(n) => write!(
                f,
                "GGUF has {n} tensors out of offset order (at most {MAX_UNORDERED_TENSORS} are checked)"
            ),
        }
    }
}

/// Metadata value types, numbered as in the GGUF specification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

impl ValueType {
    pub fn from_u32(v: u32) -> Option<Self> {
        use ValueType::*;
        Some(match v {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// Encoded size of fixed-size types; `None` for strings and arrays.
    pub fn fixed_size(self) -> Option<usize> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }
}

/// An array value: its element type, element count and encoded bytes.
/// Elements of fixed-size types are packed little-endian; strings are each a
/// u64 length followed by the bytes.
#[derive(Clone, Copy, Debug)]
pub struct Array<'a> {
    pub elem: ValueType,
    pub len: usize,
    pub data: &'a [u8],
}

impl<'a> Array<'a> {
    /// Iterates the elements of a string array (empty for other types).
    pub fn strings(&self) -> StringIter<'a> {
        let left = if self.elem == ValueType::String {
            self.len
        } else {
            0
        };
        StringIter {
            reader: Reader::new(self.data),
            left,
        }
    }

    /// Element `i` of an `F32` array; `None` for another element type or
    /// past the end.
    pub fn f32_at(&self, i: usize) -> Option<f32> {
        self.word_at(ValueType::F32, i).map(f32::from_le_bytes)
    }

    /// Element `i` of an `I32` array; `None` for another element type or
    /// past the end.
    pub fn i32_at(&self, i: usize) -> Option<i32> {
        self.word_at(ValueType::I32, i).map(i32::from_le_bytes)
    }

    /// The four bytes of element `i` of an array of `elem`. Checked against
    /// both `len` and `data`: the fields are public, so an array built by
    /// hand need not have them agree the way a parsed one does.
    fn word_at(&self, elem: ValueType, i: usize) -> Option<[u8; 4]> {
        if self.elem != elem || i >= self.len {
            return None;
        }
        let start = i.checked_mul(4)?;
        self.data.get(start..start.checked_add(4)?)?.try_into().ok()
    }
}

pub struct StringIter<'a> {
    reader: Reader<'a>,
    left: usize,
}

impl<'a> Iterator for StringIter<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let len = usize::try_from(self.reader.u64()?).ok()?;
        self.reader.take(len)
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Value<'a> {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    /// Raw bytes; GGUF says UTF-8 but values are not trusted to be.
    String(&'a [u8]),
    Array(Array<'a>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl<'a> Value<'a> {
    /// Any integer type whose value fits in u64.
    pub fn as_u64(&self) -> Option<u64> {
        use Value::*;
        match *self {
            U8(v) => Some(v.into()),
            U16(v) => Some(v.into()),
            U32(v) => Some(v.into()),
            U64(v) => Some(v),
            I8(v) => u64::try_from(v).ok(),
            I16(v) => u64::try_from(v).ok(),
            I32(v) => u64::try_from(v).ok(),
            I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::F32(v) => Some(v),
            Value::F64(v) => Some(v as f32),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&'a str> {
        match *self {
            Value::String(b) => core::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<Array<'a>> {
        match *self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// One tensor's description and its bytes inside the file.
#[derive(Clone, Copy, Debug)]
pub struct TensorInfo<'a> {
    pub index: usize,
    pub name: &'a str,
    pub n_dims: usize,
    /// `dims[0]` is the innermost (row length); unused dims are 1.
    pub dims: [u64; MAX_DIMS],
    pub ty: WeightType,
    pub data: &'a [u8],
}

impl TensorInfo<'_> {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A validated GGUF file.
#[derive(Clone, Copy, Debug)]
pub struct Gguf<'a> {
    bytes: &'a [u8],
    pub version: u32,
    kv_count: usize,
    tensor_count: usize,
    kv_start: usize,
    tensors_start: usize,
    data_start: usize,
    pub alignment: usize,
}

fn truncated(what: &'static str, r: &Reader) -> GgufError {
    GgufError::Truncated {
        what,
        offset: r.pos(),
    }
}

/// Reads a u64 length-prefixed byte string.
fn read_bytes<'a>(r: &mut Reader<'a>, what: &'static str) -> Result<&'a [u8], GgufError> {
    let at = r.pos();
    let len = r.u64().ok_or_else(|| truncated(what, r))?;
    let len = usize::try_from(len).map_err(|_| GgufError::Truncated { what, offset: at })?;
    r.take(len).ok_or(GgufError::Truncated { what, offset: at })
}

fn read_key<'a>(r: &mut Reader<'a>) -> Result<&'a str, GgufError> {
    let at = r.pos();
    let b = read_bytes(r, "metadata key")?;
    core::str::from_utf8(b).map_err(|_| GgufError::KeyNotUtf8 { offset: at })
}

fn read_value_type(r: &mut Reader) -> Result<ValueType, GgufError> {
    let at = r.pos();
    let t = r.u32().ok_or_else(|| truncated("value type", r))?;
    ValueType::from_u32(t).ok_or(GgufError::BadValueType {
        offset: at,
        value_type: t,
    })
}

/// Reads one value of type `ty`, validating nested arrays down to `depth`.
fn read_value<'a>(r: &mut Reader<'a>, ty: ValueType, depth: u32) -> Result<Value<'a>, GgufError> {
    let t = |r: &Reader| truncated("metadata value", r);
    Ok(match ty {
        ValueType::U8 => Value::U8(r.u8().ok_or_else(|| t(r))?),
        ValueType::I8 => Value::I8(r.u8().ok_or_else(|| t(r))? as i8),
        ValueType::U16 => Value::U16(r.u16().ok_or_else(|| t(r))?),
        ValueType::I16 => Value::I16(r.u16().ok_or_else(|| t(r))? as i16),
        ValueType::U32 => Value::U32(r.u32().ok_or_else(|| t(r))?),
        ValueType::I32 => Value::I32(r.u32().ok_or_else(|| t(r))? as i32),
        ValueType::F32 => Value::F32(r.f32().ok_or_else(|| t(r))?),
        ValueType::U64 => Value::U64(r.u64().ok_or_else(|| t(r))?),
        ValueType::I64 => Value::I64(r.u64().ok_or_else(|| t(r))? as i64),
        ValueType::F64 => Value::F64(r.f64().ok_or_else(|| t(r))?),
        ValueType::Bool => {
            let at = r.pos();
            match r.u8().ok_or_else(|| t(r))? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                _ => {
                    return Err(GgufError::BadValueType {
                        offset: at,
                        value_type: 7,
                    })
                }
            }
        }
        ValueType::String => Value::String(read_bytes(r, "string value")?),
        ValueType::Array => Value::Array(read_array(r, depth)?),
    })
}

fn read_array<'a>(r: &mut Reader<'a>, depth: u32) -> Result<Array<'a>, GgufError> {
    let at = r.pos();
    if depth >= MAX_ARRAY_DEPTH {
        return Err(GgufError::ArrayTooDeep { offset: at });
    }
    let elem = read_value_type(r)?;
    let count = r.u64().ok_or_else(|| truncated("array length", r))?;
    let start = r.pos();
    // Every element takes at least one byte (strings eight), so a count larger
    // than the remaining bytes is refused before any element is read.
    let min_elem = elem.fixed_size().unwrap_or(8) as u64;
    let too_large = GgufError::CountTooLarge {
        what: "array elements",
        count,
    };
    let min_bytes = count.checked_mul(min_elem).ok_or(too_large)?;
    if min_bytes > r.remaining() as u64 {
        return Err(too_large);
    }
    let len = count as usize; // fits: bounded by remaining bytes above
    match elem.fixed_size() {
        Some(size) => {
            r.skip(len * size).ok_or_else(|| truncated("array", r))?;
        }
        None => {
            for _ in 0..len {
                read_value(r, elem, depth + 1)?;
            }
        }
    }
    let end = r.pos();
    let data = r
        .whole()
        .get(start..end)
        .ok_or_else(|| truncated("array", r))?;
    Ok(Array { elem, len, data })
}

impl<'a> Gguf<'a> {
    /// Parses and validates the header, metadata and tensor table.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, GgufError> {
        let mut r = Reader::new(bytes);
        let magic = r.take(4).ok_or(GgufError::Truncated {
            what: "magic",
            offset: 0,
        })?;
        if magic != MAGIC {
            return Err(GgufError::BadMagic);
        }
        let version = r.u32().ok_or_else(|| truncated("version", &r))?;
        if version != 2 && version != 3 {
            return Err(GgufError::UnsupportedVersion(version));
        }
        let tensor_count = r.u64().ok_or_else(|| truncated("tensor count", &r))?;
        let kv_count = r.u64().ok_or_else(|| truncated("metadata count", &r))?;
        let kv_count = bounded_count(kv_count, MIN_KV_BYTES, r.remaining(), "metadata entries")?;
        let tensor_count = bounded_count(
            tensor_count,
            MIN_TENSOR_INFO_BYTES,
            r.remaining(),
            "tensors",
        )?;

        let kv_start = r.pos();
        let mut alignment = DEFAULT_ALIGNMENT;
        for _ in 0..kv_count {
            let key = read_key(&mut r)?;
            let ty_at = r.pos();
            let ty = read_value_type(&mut r)?;
            let value = read_value(&mut r, ty, 0)?;
            if key == "general.alignment" {
                let a = value.as_u64().ok_or(GgufError::BadValueType {
                    offset: ty_at,
                    value_type: ty as u32,
                })?;
                if a == 0 || !a.is_power_of_two() || a > (1 << 20) {
                    return Err(GgufError::BadAlignment(a));
                }
                alignment = a as usize;
            }
        }

        let tensors_start = r.pos();
        // First pass: the shape of every record, to find where data begins.
        for index in 0..tensor_count {
            read_tensor_record(&mut r, index)?;
        }
        let data_start = align_up(r.pos(), alignment)
            .filter(|&d| d <= bytes.len())
            .ok_or(GgufError::Truncated {
                what: "tensor data",
                offset: r.pos(),
            })?;

        let gguf = Gguf {
            bytes,
            version,
            kv_count,
            tensor_count,
            kv_start,
            tensors_start,
            data_start,
            alignment,
        };
        gguf.check_tensor_data()?;
        Ok(gguf)
    }

    /// Second pass: every tensor's bytes are aligned, inside the file and
    /// disjoint from the others.
    fn check_tensor_data(&self) -> Result<(), GgufError> {
        let mut r = Reader::at(self.bytes, self.tensors_start);
        let mut in_order = true;
        let mut prev_end = 0u64;
        for index in 0..self.tensor_count {
            let rec = read_tensor_record(&mut r, index)?;
            let (start, end) = self.data_range(&rec)?;
            if start < prev_end {
                in_order = false;
            }
            prev_end = end;
        }
        if in_order {
            return Ok(());
        }
        if self.tensor_count > MAX_UNORDERED_TENSORS {
            return Err(GgufError::TooManyUnorderedTensors(self.tensor_count));
        }
        let mut outer = Reader::at(self.bytes, self.tensors_start);
        for i in 0..self.tensor_count {
            let a = self.data_range(&read_tensor_record(&mut outer, i)?)?;
            let mut inner = Reader::at(self.bytes, self.tensors_start);
            for j in 0..i {
                let b = self.data_range(&read_tensor_record(&mut inner, j)?)?;
                let empty = a.0 == a.1 || b.0 == b.1;
                if !empty && a.0 < b.1 && b.0 < a.1 {
                    return Err(GgufError::Overlap {
                        first: j,
                        second: i,
                    });
                }
            }
        }
        Ok(())
    }

    /// Absolute byte range of a tensor's data, checked against the file.
    fn data_range(&self, rec: &TensorRecord) -> Result<(u64, u64), GgufError> {
        let tensor = rec.index;
        if !rec.offset.is_multiple_of(self.alignment as u64) {
            return Err(GgufError::Misaligned {
                tensor,
                offset: rec.offset,
            });
        }
        let start = (self.data_start as u64)
            .checked_add(rec.offset)
            .ok_or(GgufError::TensorOutOfBounds { tensor })?;
        let end = start
            .checked_add(rec.n_bytes)
            .ok_or(GgufError::TensorOutOfBounds { tensor })?;
        if end > self.bytes.len() as u64 {
            return Err(GgufError::TensorOutOfBounds { tensor });
        }
        Ok((start, end))
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    pub fn tensor_count(&self) -> usize {
        self.tensor_count
    }

    pub fn metadata_count(&self) -> usize {
        self.kv_count
    }

    /// Offset of the tensor data section in the file.
    pub fn data_offset(&self) -> usize {
        self.data_start
    }

    /// All metadata entries in file order.
    pub fn metadata(&self) -> MetadataIter<'a> {
        MetadataIter {
            reader: Reader::at(self.bytes, self.kv_start),
            left: self.kv_count,
        }
    }

    /// The first value stored under `key`.
    pub fn get(&self, key: &str) -> Option<Value<'a>> {
        self.metadata().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key)?.as_u64()
    }

    pub fn get_f32(&self, key: &str) -> Option<f32> {
        self.get(key)?.as_f32()
    }

    pub fn get_str(&self, key: &str) -> Option<&'a str> {
        self.get(key)?.as_str()
    }

    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.get(key)?.as_bool()
    }

    pub fn get_array(&self, key: &str) -> Option<Array<'a>> {
        self.get(key)?.as_array()
    }

    /// `general.architecture`, e.g. "gemma3".
    pub fn architecture(&self) -> Option<&'a str> {
        self.get_str("general.architecture")
    }

    pub fn tensors(&self) -> TensorIter<'a> {
        TensorIter {
            gguf: *self,
            reader: Reader::at(self.bytes, self.tensors_start),
            next: 0,
        }
    }

    pub fn tensor(&self, name: &str) -> Option<TensorInfo<'a>> {
        self.tensors().find(|t| t.name == name)
    }
}

fn bounded_count(
    count: u64,
    min_bytes: usize,
    remaining: usize,
    what: &'static str,
) -> Result<usize, GgufError> {
    match count.checked_mul(min_bytes as u64) {
        Some(need) if need <= remaining as u64 => Ok(count as usize),
        _ => Err(GgufError::CountTooLarge { what, count }),
    }
}

fn align_up(x: usize, a: usize) -> Option<usize> {
    Some(x.checked_add(a - 1)? / a * a)
}

/// A tensor info record as read, before its data is located.
struct TensorRecord<'a> {
    index: usize,
    name: &'a str,
    n_dims: usize,
    dims: [u64; MAX_DIMS],
    ty: WeightType,
    offset: u64,
    n_bytes: u64,
}

fn read_tensor_record<'a>(r: &mut Reader<'a>, index: usize) -> Result<TensorRecord<'a>, GgufError> {
    let name = read_key(r)?;
    let n_dims = r.u32().ok_or_else(|| truncated("tensor dims", r))?;
    if n_dims == 0 || n_dims as usize > MAX_DIMS {
        return Err(GgufError::TooManyDims {
            tensor: index,
            n_dims,
        });
    }
    let mut dims = [1u64; MAX_DIMS];
    for d in dims.iter_mut().take(n_dims as usize) {
        *d = r.u64().ok_or_else(|| truncated("tensor dims", r))?;
        if *d == 0 {
            return Err(GgufError::ZeroDim { tensor: index });
        }
    }
    let ggml_type = r.u32().ok_or_else(|| truncated("tensor type", r))?;
    let ty = WeightType::from_ggml(ggml_type).ok_or(GgufError::UnknownTensorType {
        tensor: index,
        ggml_type,
    })?;
    let offset = r.u64().ok_or_else(|| truncated("tensor offset", r))?;

    let overflow = GgufError::SizeOverflow { tensor: index };
    let row_len = usize::try_from(dims[0]).map_err(|_| overflow)?;
    if row_len % ty.block_elems() != 0 {
        return Err(GgufError::RowNotBlockMultiple { tensor: index });
    }
    let row_bytes = ty.row_bytes(row_len).ok_or(overflow)? as u64;
    let n_rows = dims[1..]
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or(overflow)?;
    let n_bytes = row_bytes.checked_mul(n_rows).ok_or(overflow)?;
    // The element count must also be addressable as usize on this target.
    dims.iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| usize::try_from(n).is_ok())
        .ok_or(overflow)?;
    Ok(TensorRecord {
        index,
        name,
        n_dims: n_dims as usize,
        dims,
        ty,
        offset,
        n_bytes,
    })
}

pub struct MetadataIter<'a> {
    reader: Reader<'a>,
    left: usize,
}

impl<'a> Iterator for MetadataIter<'a> {
    type Item = (&'a str, Value<'a>);
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let key = read_key(&mut self.reader).ok()?;
        let ty = read_value_type(&mut self.reader).ok()?;
        let value = read_value(&mut self.reader, ty, 0).ok()?;
        Some((key, value))
    }
}

pub struct TensorIter<'a> {
    gguf: Gguf<'a>,
    reader: Reader<'a>,
    next: usize,
}

impl<'a> Iterator for TensorIter<'a> {
    type Item = TensorInfo<'a>;
    fn next(&mut self) -> Option<TensorInfo<'a>> {
        if self.next >= self.gguf.tensor_count {
            return None;
        }
        let rec = read_tensor_record(&mut self.reader, self.next).ok()?;
        self.next += 1;
        let (start, end) = self.gguf.data_range(&rec).ok()?;
        let data = self.gguf.bytes.get(start as usize..end as usize)?;
        Some(TensorInfo {
            index: rec.index,
            name: rec.name,
            n_dims: rec.n_dims,
            dims: rec.dims,
            ty: rec.ty,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_array_elements_are_checked_against_type_len_and_bytes() {
        let data = [1.5f32.to_le_bytes(), (-2f32).to_le_bytes()].concat();
        let a = Array {
            elem: ValueType::F32,
            len: 2,
            data: &data,
        };
        assert_eq!(
            (a.f32_at(0), a.f32_at(1), a.f32_at(2)),
            (Some(1.5), Some(-2.0), None)
        );
        assert_eq!(a.f32_at(usize::MAX), None);
        // Wrong element type.
        assert_eq!(a.i32_at(0), None);
        // A length that claims more than the bytes hold.
        let lying = Array { len: 3, ..a };
        assert_eq!(lying.f32_at(2), None);
        let ints = Array {
            elem: ValueType::I32,
            len: 1,
            data: &(-7i32).to_le_bytes(),
        };
        assert_eq!((ints.i32_at(0), ints.f32_at(0)), (Some(-7), None));
    }
}
