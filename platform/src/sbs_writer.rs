//! Writes gemma.cpp blob stores (`.sbs`) in the layout gemma.cpp writes
//! today (V2: blobs first, directory and header at the end; see
//! `gemma_core::format::sbs`), byte for byte what its `BlobWriter` produces.
//!
//! Blobs stream straight to the output as they are added, so a model larger
//! than memory can be written; only names and sizes are kept for the
//! directory. [`write_model`] writes a whole single-file model the way
//! gemma.cpp's `WriteSingleFile` orders it: tensors, `config`, `tokenizer`,
//! `toc`.

use gemma_core::format::sbs::blob_store::{
    align_blob, BLOB_ALIGN, DIR_ENTRY_BYTES, END_ALIGN, HEADER_BYTES, KEY_BYTES, MAGIC, MAX_BLOBS,
};
use gemma_core::format::sbs::fields::{self, Fields};
use gemma_core::format::sbs::{ModelConfig, SbsError, TocEntry};
use std::collections::HashSet;
use std::fmt;
use std::io::{self, Read, Write};

/// Why a blob store could not be written.
#[derive(Debug)]
pub enum SbsWriteError {
    Io(io::Error),
    /// Names are 1 to 16 bytes without NUL.
    BadName(String),
    DuplicateName(String),
    /// gemma.cpp can neither write nor read a 0-byte blob.
    EmptyBlob(String),
    /// gemma.cpp writes at most `MAX_BLOBS - 1` blobs.
    TooManyBlobs,
    /// `finish` without any blob: gemma.cpp's reader refuses such a store.
    NoBlobs,
    /// `add_reader`: the reader ended before `size` bytes.
    ShortBlob {
        name: String,
        expected: u64,
        got: u64,
    },
    /// A config or toc record that cannot be serialized, or a tensor whose
    /// record or bytes are inconsistent.
    Fields(SbsError),
}

impl fmt::Display for SbsWriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SbsWriteError::Io(e) => write!(f, "writing .sbs: {e}"),
            SbsWriteError::BadName(n) => {
                write!(f, ".sbs blob name {n:?} is not 1 to 16 bytes without NUL")
            }
            SbsWriteError::DuplicateName(n) => write!(f, ".sbs blob name {n:?} is used twice"),
            SbsWriteError::EmptyBlob(n) => {
                write!(f, ".sbs blob {n:?} is empty (gemma.cpp cannot store that)")
            }
            SbsWriteError::TooManyBlobs => write!(f, ".sbs holds at most {} blobs", MAX_BLOBS - 1),
            SbsWriteError::NoBlobs => write!(f, ".sbs blob store without blobs"),
            SbsWriteError::ShortBlob {
                name,
                expected,
                got,
            } => write!(
                f,
                ".sbs blob {name:?}: expected {expected} bytes, reader gave {got}"
            ),
            SbsWriteError::Fields(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SbsWriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SbsWriteError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for SbsWriteError {
    fn from(e: io::Error) -> Self {
        SbsWriteError::Io(e)
    }
}

impl From<SbsError> for SbsWriteError {
    fn from(e: SbsError) -> Self {
        SbsWriteError::Fields(e)
    }
}

const ZEROS: [u8; 4096] = [0; 4096];

fn write_zeros(out: &mut impl Write, mut n: u64) -> io::Result<()> {
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        out.write_all(&ZEROS[..k])?;
        n -= k as u64;
    }
    Ok(())
}

fn overflow() -> SbsWriteError {
    SbsWriteError::Io(io::Error::new(
        io::ErrorKind::InvalidInput,
        "blob offsets overflow u64",
    ))
}

fn header(num_blobs: u32, file_bytes: u64) -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    h[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    h[4..8].copy_from_slice(&num_blobs.to_le_bytes());
    h[8..16].copy_from_slice(&file_bytes.to_le_bytes());
    h
}

/// Streams blobs into `out`; [`BlobWriter::finish`] writes the directory.
///
/// A refused name or size leaves the writer as it was. An I/O error or a
/// short reader leaves the output incomplete: drop the writer then.
pub struct BlobWriter<W: Write> {
    out: W,
    keys: Vec<[u8; KEY_BYTES]>,
    seen: HashSet<[u8; KEY_BYTES]>,
    sizes: Vec<u64>,
    /// Bytes written so far: the padded end of the last blob.
    pos: u64,
}

impl<W: Write> BlobWriter<W> {
    /// Writes the placeholder header `{magic, 0, 65536}` padded to 256 bytes:
    /// a V2 file's first bytes, whatever follows.
    pub fn new(mut out: W) -> Result<Self, SbsWriteError> {
        out.write_all(&header(0, END_ALIGN))?;
        write_zeros(&mut out, BLOB_ALIGN - HEADER_BYTES as u64)?;
        Ok(BlobWriter {
            out,
            keys: Vec::new(),
            seen: HashSet::new(),
            sizes: Vec::new(),
            pos: BLOB_ALIGN,
        })
    }

    fn begin(&mut self, name: &str, size: u64) -> Result<(), SbsWriteError> {
        let b = name.as_bytes();
        if b.is_empty() || b.len() > KEY_BYTES || b.contains(&0) {
            return Err(SbsWriteError::BadName(name.to_string()));
        }
        let mut key = [0u8; KEY_BYTES];
        key[..b.len()].copy_from_slice(b);
        if self.seen.contains(&key) {
            return Err(SbsWriteError::DuplicateName(name.to_string()));
        }
        if size == 0 {
            return Err(SbsWriteError::EmptyBlob(name.to_string()));
        }
        if self.keys.len() + 1 >= MAX_BLOBS {
            return Err(SbsWriteError::TooManyBlobs);
        }
        self.keys.push(key);
        self.seen.insert(key);
        self.sizes.push(size);
        Ok(())
    }

    /// Pads the blob just written to 256 bytes.
    fn end(&mut self, size: u64) -> Result<(), SbsWriteError> {
        let padded = self
            .pos
            .checked_add(size)
            .and_then(align_blob)
            .ok_or_else(overflow)?;
        let end = self.pos + size;
        write_zeros(&mut self.out, padded - end)?;
        self.pos = padded;
        Ok(())
    }

    /// Adds a blob named `name` (1 to 16 bytes) holding `bytes` (not empty).
    pub fn add(&mut self, name: &str, bytes: &[u8]) -> Result<(), SbsWriteError> {
        self.begin(name, bytes.len() as u64)?;
        self.out.write_all(bytes)?;
        self.end(bytes.len() as u64)
    }

    /// Adds a blob of `size` bytes read from `reader` (for blobs too large
    /// to hold in memory).
    pub fn add_reader(
        &mut self,
        name: &str,
        size: u64,
        reader: impl Read,
    ) -> Result<(), SbsWriteError> {
        self.begin(name, size)?;
        let got = io::copy(&mut reader.take(size), &mut self.out)?;
        if got != size {
            return Err(SbsWriteError::ShortBlob {
                name: name.to_string(),
                expected: size,
                got,
            });
        }
        self.end(size)
    }

    /// Adds a blob holding one serialized fields struct.
    pub fn add_fields<'a, S: Fields<'a> + Clone>(
        &mut self,
        name: &str,
        s: &S,
    ) -> Result<(), SbsWriteError> {
        let bytes = fields::to_vec(s)?;
        self.add(name, &bytes)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Writes zeros up to the directory, the directory and the header, and
    /// returns the output. The file is then
    /// `roundup(256 + sum(roundup(size, 256)) + roundup(16 + 32 n, 256), 64 KiB)`
    /// bytes, as gemma.cpp computes it.
    pub fn finish(mut self) -> Result<W, SbsWriteError> {
        let n = self.keys.len();
        if n == 0 {
            return Err(SbsWriteError::NoBlobs);
        }
        let dir_bytes = (n * DIR_ENTRY_BYTES) as u64;
        let padded_dir = align_blob(HEADER_BYTES as u64 + dir_bytes).ok_or_else(overflow)?;
        let file_bytes = (self.pos + padded_dir).div_ceil(END_ALIGN) * END_ALIGN;
        write_zeros(
            &mut self.out,
            file_bytes - self.pos - dir_bytes - HEADER_BYTES as u64,
        )?;
        let mut dir = Vec::with_capacity(dir_bytes as usize + HEADER_BYTES);
        for key in &self.keys {
            dir.extend_from_slice(key);
        }
        let mut offset = BLOB_ALIGN;
        for &size in &self.sizes {
            dir.extend_from_slice(&offset.to_le_bytes());
            dir.extend_from_slice(&size.to_le_bytes());
            offset = align_blob(offset + size).ok_or_else(overflow)?;
        }
        dir.extend_from_slice(&header(n as u32, file_bytes));
        self.out.write_all(&dir)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// A whole blob store in memory.
pub fn write_blob_store(blobs: &[(&str, &[u8])]) -> Result<Vec<u8>, SbsWriteError> {
    let mut w = BlobWriter::new(Vec::new())?;
    for (name, bytes) in blobs {
        w.add(name, bytes)?;
    }
    w.finish()
}

/// The `config` blob for `config`.
pub fn config_bytes(config: &ModelConfig) -> Result<Vec<u8>, SbsError> {
    fields::to_vec(config)
}

/// The `toc` blob for `entries`, in order.
pub fn toc_bytes<'a>(entries: impl IntoIterator<Item = TocEntry<'a>>) -> Result<Vec<u8>, SbsError> {
    let entries: Vec<TocEntry> = entries.into_iter().collect();
    let mut needed = 0;
    for e in &entries {
        needed += fields::serialized_len(e)?;
    }
    let mut out = vec![0u8; needed];
    gemma_core::format::sbs::write_toc(entries, &mut out)?;
    Ok(out)
}

/// Writes a single-file model: each tensor as a blob named after its record,
/// then `config`, `tokenizer` and `toc`, as gemma.cpp does. Each tensor's
/// record is checked (a weight type, packed, consistent counts) and its
/// bytes must be exactly the size the record implies.
pub fn write_model<'a, W: Write>(
    out: W,
    config: &ModelConfig,
    tokenizer: &[u8],
    tensors: impl IntoIterator<Item = (TocEntry<'a>, &'a [u8])>,
) -> Result<W, SbsWriteError> {
    let mut w = BlobWriter::new(out)?;
    let mut toc = Vec::new();
    for (tensor, (entry, bytes)) in tensors.into_iter().enumerate() {
        entry
            .check()
            .map_err(|why| SbsError::BadTensor { tensor, why })?;
        let expected = entry.packed_bytes().unwrap_or(u64::MAX);
        if expected != bytes.len() as u64 {
            return Err(SbsError::TensorSizeMismatch {
                tensor,
                expected,
                actual: bytes.len() as u64,
            }
            .into());
        }
        w.add(entry.name, bytes)?;
        toc.push(entry);
    }
    w.add("config", &config_bytes(config)?)?;
    w.add("tokenizer", tokenizer)?;
    w.add("toc", &toc_bytes(toc)?)?;
    w.finish()
}
