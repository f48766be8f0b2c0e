//! Hugging Face safetensors files over `&[u8]`: an 8-byte little-endian
//! header length, a JSON header, then the tensor bytes.
//!
//! The header is an object mapping tensor names to
//! `{"dtype": "BF16", "shape": [2, 3], "data_offsets": [begin, end]}`, with
//! offsets relative to the byte after the header, plus an optional
//! `"__metadata__"` object of strings. This reader understands exactly that
//! shape of JSON and nothing more, walks it without allocating, and checks
//! everything before handing out a view: the header length against the
//! file, every offset against the data, every shape's byte size (overflow
//! checked) against its offsets. Tensor names with JSON escapes are
//! refused: no checkpoint uses them, and refusing keeps names borrowable.

use core::fmt;

/// Headers longer than this are refused (the reference implementation's
/// limit is 100 MB; real headers are tens of KB).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;
/// Dimensions a tensor may have.
pub const MAX_DIMS: usize = 8;

/// Element types of the format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    Bool,
    U8,
    I8,
    F8E4M3,
    F8E5M2,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    I64,
    U64,
    F64,
}

impl Dtype {
    const NAMES: [(&'static str, Dtype); 15] = [
        ("BOOL", Dtype::Bool),
        ("U8", Dtype::U8),
        ("I8", Dtype::I8),
        ("F8_E4M3", Dtype::F8E4M3),
        ("F8_E5M2", Dtype::F8E5M2),
        ("I16", Dtype::I16),
        ("U16", Dtype::U16),
        ("F16", Dtype::F16),
        ("BF16", Dtype::BF16),
        ("I32", Dtype::I32),
        ("U32", Dtype::U32),
        ("F32", Dtype::F32),
        ("I64", Dtype::I64),
        ("U64", Dtype::U64),
        ("F64", Dtype::F64),
    ];

    fn from_name(s: &str) -> Option<Dtype> {
        Self::NAMES.iter().find(|(n, _)| *n == s).map(|&(_, d)| d)
    }

    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, d)| *d == self)
            .map_or("?", |&(n, _)| n)
    }

    /// Bytes per element.
    pub fn size(self) -> u64 {
        match self {
            Dtype::Bool | Dtype::U8 | Dtype::I8 | Dtype::F8E4M3 | Dtype::F8E5M2 => 1,
            Dtype::I16 | Dtype::U16 | Dtype::F16 | Dtype::BF16 => 2,
            Dtype::I32 | Dtype::U32 | Dtype::F32 => 4,
            Dtype::I64 | Dtype::U64 | Dtype::F64 => 8,
        }
    }
}

/// Why a file was refused. `at` is a byte offset into the header JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SafetensorsError {
    /// Fewer than 8 bytes, or a header longer than the file.
    Truncated {
        header_len: u64,
        file_len: u64,
    },
    HeaderTooLarge(u64),
    NotUtf8,
    /// The JSON is malformed or not the safetensors schema.
    Syntax {
        at: usize,
        expected: &'static str,
    },
    UnknownDtype {
        at: usize,
    },
    TooManyDims {
        at: usize,
    },
    EscapedName {
        at: usize,
    },
    /// A tensor's byte size disagrees with its offsets, or overflows.
    SizeMismatch {
        at: usize,
    },
    /// A tensor's offsets reach past the data.
    OutOfBounds {
        at: usize,
    },
}

impl fmt::Display for SafetensorsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SafetensorsError::Truncated {
                header_len,
                file_len,
            } => write!(
                f,
                "safetensors: truncated ({file_len} bytes, header claims {header_len})"
            ),
            SafetensorsError::HeaderTooLarge(n) => {
                write!(
                    f,
                    "safetensors: header of {n} bytes exceeds {MAX_HEADER_BYTES}"
                )
            }
            SafetensorsError::NotUtf8 => f.write_str("safetensors: header is not UTF-8"),
            SafetensorsError::Syntax { at, expected } => {
                write!(f, "safetensors: header byte {at}: expected {expected}")
            }
            SafetensorsError::UnknownDtype { at } => {
                write!(f, "safetensors: header byte {at}: unknown dtype")
            }
            SafetensorsError::TooManyDims { at } => {
                write!(
                    f,
                    "safetensors: header byte {at}: more than {MAX_DIMS} dimensions"
                )
            }
            SafetensorsError::EscapedName { at } => write!(
                f,
                "safetensors: header byte {at}: escaped characters in a tensor name"
            ),
            SafetensorsError::SizeMismatch { at } => write!(
                f,
                "safetensors: header byte {at}: shape and dtype disagree with data_offsets"
            ),
            SafetensorsError::OutOfBounds { at } => write!(
                f,
                "safetensors: header byte {at}: data_offsets reach past the end of the file"
            ),
        }
    }
}

type Result<T> = core::result::Result<T, SafetensorsError>;

/// One tensor: a view into the file's data.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StTensor<'a> {
    pub name: &'a str,
    pub dtype: Dtype,
    pub n_dims: usize,
    /// Outermost first, as written (`[rows, cols]` for a matrix).
    pub dims: [u64; MAX_DIMS],
    pub data: &'a [u8],
}

impl StTensor<'_> {
    pub fn shape(&self) -> &[u64] {
        &self.dims[..self.n_dims]
    }

    pub fn n_elements(&self) -> u64 {
        self.shape().iter().product()
    }
}

/// A validated safetensors file.
#[derive(Clone, Copy, Debug)]
pub struct Safetensors<'a> {
    header: &'a str,
    data: &'a [u8],
    count: usize,
}

impl<'a> Safetensors<'a> {
    /// Checks the whole header and every tensor's bounds.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let file_len = bytes.len() as u64;
        let len_bytes: [u8; 8] =
            bytes
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .ok_or(SafetensorsError::Truncated {
                    header_len: 0,
                    file_len,
                })?;
        let header_len = u64::from_le_bytes(len_bytes);
        if header_len > MAX_HEADER_BYTES {
            return Err(SafetensorsError::HeaderTooLarge(header_len));
        }
        if header_len > file_len - 8 {
            return Err(SafetensorsError::Truncated {
                header_len,
                file_len,
            });
        }
        let end = 8 + header_len as usize;
        let header = core::str::from_utf8(&bytes[8..end]).map_err(|_| SafetensorsError::NotUtf8)?;
        let mut st = Safetensors {
            header,
            data: &bytes[end..],
            count: 0,
        };
        let mut walk = Walk::start(header)?;
        while let Some(t) = walk.next_tensor(st.data)? {
            let _ = t;
            st.count += 1;
        }
        Ok(st)
    }

    /// Number of tensors (metadata excluded).
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The tensors in header order.
    pub fn tensors(&self) -> impl Iterator<Item = StTensor<'a>> + 'a {
        let data = self.data;
        // The header was walked in full by `parse`, so no step fails here.
        let mut walk = Walk::start(self.header).ok();
        core::iter::from_fn(move || walk.as_mut()?.next_tensor(data).ok().flatten())
    }

    pub fn tensor(&self, name: &str) -> Option<StTensor<'a>> {
        self.tensors().find(|t| t.name == name)
    }

    /// A `__metadata__` value, if present (escapes left as written).
    pub fn metadata(&self, key: &str) -> Option<&'a str> {
        let mut c = Cursor {
            s: self.header.as_bytes(),
            src: self.header,
            pos: 0,
        };
        c.expect(b'{', "'{'").ok()?;
        loop {
            c.ws();
            if c.peek() == Some(b'}') {
                return None;
            }
            let (k, _) = c.string().ok()?;
            c.expect(b':', "':'").ok()?;
            if k == "__metadata__" {
                c.expect(b'{', "'{'").ok()?;
                loop {
                    c.ws();
                    if c.peek() == Some(b'}') {
                        return None;
                    }
                    let (mk, _) = c.string().ok()?;
                    c.expect(b':', "':'").ok()?;
                    let (mv, _) = c.string().ok()?;
                    if mk == key {
                        return Some(mv);
                    }
                    c.comma_or(b'}').ok()?;
                }
            }
            c.skip_tensor_value().ok()?;
            c.comma_or(b'}').ok()?;
        }
    }
}

/// A pass over the header's members.
struct Walk<'a> {
    c: Cursor<'a>,
    done: bool,
}

impl<'a> Walk<'a> {
    fn start(header: &'a str) -> Result<Self> {
        let mut c = Cursor {
            s: header.as_bytes(),
            src: header,
            pos: 0,
        };
        c.expect(b'{', "'{' opening the header")?;
        c.ws();
        let done = c.peek() == Some(b'}');
        if done {
            c.pos += 1;
            c.end()?;
        }
        Ok(Walk { c, done })
    }

    /// The next tensor, skipping `__metadata__`; `None` after the last.
    fn next_tensor(&mut self, data: &'a [u8]) -> Result<Option<StTensor<'a>>> {
        while !self.done {
            let c = &mut self.c;
            c.ws();
            let name_at = c.pos;
            let (name, escaped) = c.string()?;
            c.expect(b':', "':'")?;
            let tensor = if name == "__metadata__" {
                c.metadata_object()?;
                None
            } else {
                if escaped {
                    return Err(SafetensorsError::EscapedName { at: name_at });
                }
                Some(c.tensor_value(name, data)?)
            };
            if c.comma_or(b'}')? {
                self.done = true;
                c.end()?;
            }
            if tensor.is_some() {
                return Ok(tensor);
            }
        }
        Ok(None)
    }
}

struct Cursor<'a> {
    s: &'a [u8],
    src: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn err(&self, expected: &'static str) -> SafetensorsError {
        SafetensorsError::Syntax {
            at: self.pos,
            expected,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, b: u8, what: &'static str) -> Result<()> {
        self.ws();
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(what))
        }
    }

    /// After a member or element: `true` at the closing `close`, `false`
    /// after a comma.
    fn comma_or(&mut self, close: u8) -> Result<bool> {
        self.ws();
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                Ok(false)
            }
            Some(b) if b == close => {
                self.pos += 1;
                Ok(true)
            }
            _ => Err(self.err("',' or a closing bracket")),
        }
    }

    /// Only whitespace (the reference writer pads with spaces) may follow.
    fn end(&mut self) -> Result<()> {
        self.ws();
        if self.pos == self.s.len() {
            Ok(())
        } else {
            Err(self.err("the end of the header"))
        }
    }

    /// A string's raw contents (escapes validated, not decoded) and
    /// whether it had any.
    fn string(&mut self) -> Result<(&'a str, bool)> {
        self.expect(b'"', "a string")?;
        let start = self.pos;
        let mut escaped = false;
        loop {
            match self.peek() {
                None => return Err(self.err("a closing '\"'")),
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    self.pos += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.pos += 1
                        }
                        Some(b'u') => {
                            let hex = self.s.get(self.pos + 1..self.pos + 5);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return Err(self.err("four hex digits after \\u"));
                            }
                            self.pos += 5;
                        }
                        _ => return Err(self.err("a valid escape")),
                    }
                }
                Some(c) if c < 0x20 => return Err(self.err("no control characters in strings")),
                Some(_) => self.pos += 1,
            }
        }
        let s = self.src.get(start..self.pos).ok_or(self.err("UTF-8"))?;
        self.pos += 1;
        Ok((s, escaped))
    }

    /// A non-negative integer that fits in u64.
    fn integer(&mut self) -> Result<u64> {
        self.ws();
        let start = self.pos;
        let mut v = 0u64;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add((d - b'0') as u64))
                .ok_or(self.err("an integer below 2^64"))?;
            self.pos += 1;
        }
        let digits = self.pos - start;
        if digits == 0 || (digits > 1 && self.s[start] == b'0') {
            return Err(SafetensorsError::Syntax {
                at: start,
                expected: "a non-negative integer",
            });
        }
        Ok(v)
    }

    fn metadata_object(&mut self) -> Result<()> {
        self.expect(b'{', "'{' opening __metadata__")?;
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.string()?;
            self.expect(b':', "':'")?;
            self.string()?;
            if self.comma_or(b'}')? {
                return Ok(());
            }
        }
    }

    /// `{"dtype": .., "shape": [..], "data_offsets": [b, e]}` in any order.
    fn tensor_value(&mut self, name: &'a str, data: &'a [u8]) -> Result<StTensor<'a>> {
        let at = self.pos;
        self.expect(b'{', "'{' opening a tensor")?;
        let (mut dtype, mut shape, mut offsets) = (None, None, None);
        loop {
            self.ws();
            let key_at = self.pos;
            let (key, _) = self.string()?;
            self.expect(b':', "':'")?;
            match key {
                "dtype" if dtype.is_none() => {
                    let d_at = self.pos;
                    let (d, _) = self.string()?;
                    dtype = Some(
                        Dtype::from_name(d).ok_or(SafetensorsError::UnknownDtype { at: d_at })?,
                    );
                }
                "shape" if shape.is_none() => shape = Some(self.shape()?),
                "data_offsets" if offsets.is_none() => {
                    self.expect(b'[', "'[' opening data_offsets")?;
                    let b = self.integer()?;
                    self.expect(b',', "','")?;
                    let e = self.integer()?;
                    self.expect(b']', "']' after two offsets")?;
                    offsets = Some((b, e));
                }
                _ => {
                    return Err(SafetensorsError::Syntax {
                        at: key_at,
                        expected: "one each of \"dtype\", \"shape\", \"data_offsets\"",
                    })
                }
            }
            if self.comma_or(b'}')? {
                break;
            }
        }
        let (Some(dtype), Some((n_dims, dims)), Some((begin, end))) = (dtype, shape, offsets)
        else {
            return Err(SafetensorsError::Syntax {
                at,
                expected: "\"dtype\", \"shape\" and \"data_offsets\"",
            });
        };
        let bytes = dims[..n_dims]
            .iter()
            .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
            .ok_or(SafetensorsError::SizeMismatch { at })?;
        if end < begin || end - begin != bytes {
            return Err(SafetensorsError::SizeMismatch { at });
        }
        let data = usize::try_from(begin)
            .ok()
            .zip(usize::try_from(end).ok())
            .and_then(|(b, e)| data.get(b..e))
            .ok_or(SafetensorsError::OutOfBounds { at })?;
        Ok(StTensor {
            name,
            dtype,
            n_dims,
            dims,
            data,
        })
    }

    fn shape(&mut self) -> Result<(usize, [u64; MAX_DIMS])> {
        self.expect(b'[', "'[' opening a shape")?;
        let mut dims = [0u64; MAX_DIMS];
        self.ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok((0, dims));
        }
        let mut n = 0;
        loop {
            let at = self.pos;
            let d = self.integer()?;
            *dims
                .get_mut(n)
                .ok_or(SafetensorsError::TooManyDims { at })? = d;
            n += 1;
            if self.comma_or(b']')? {
                return Ok((n, dims));
            }
        }
    }

    /// Skips a tensor value during a metadata lookup (already validated).
    fn skip_tensor_value(&mut self) -> Result<()> {
        self.expect(b'{', "'{'")?;
        let mut depth = 1;
        while depth > 0 {
            match self.peek() {
                None => return Err(self.err("'}'")),
                Some(b'"') => {
                    self.string()?;
                    continue;
                }
                Some(b'{' | b'[') => depth += 1,
                Some(b'}' | b']') => depth -= 1,
                _ => {}
            }
            self.pos += 1;
        }
        Ok(())
    }
}
