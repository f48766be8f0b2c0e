//! The blob store: named byte ranges in one file (layouts in the module docs
//! of [`super`]).
//!
//! [`BlobStore::parse`] checks the whole directory once, so the accessors
//! afterwards hand out slices without anything left to fail. The directory
//! stays in the file's bytes and is decoded on each walk: nothing is copied
//! and nothing is allocated, whatever the number of blobs.

use super::error::SbsError;

/// `"SBS\n"` read as a little-endian u32.
pub const MAGIC: u32 = 0x0A53_4253;
/// `{u32 magic, u32 num_blobs, u64 file_bytes}`.
pub const HEADER_BYTES: usize = 16;
/// A blob name: ASCII, NUL-padded; a 16-character name has no NUL.
pub const KEY_BYTES: usize = 16;
/// Per blob, the directory holds a key and a `{u64 offset, u64 size}` range.
pub const DIR_ENTRY_BYTES: usize = KEY_BYTES + 16;
/// Every blob starts at a multiple of this and is zero-padded to one.
pub const BLOB_ALIGN: u64 = 256;
/// gemma.cpp pads files it writes to a multiple of this (the largest mmap
/// page size it cares about, 64 KiB on some Arm kernels).
pub const END_ALIGN: u64 = 64 * 1024;
/// gemma.cpp refuses more blobs than this (its reader) and writes fewer (its
/// writer asserts `< MAX_BLOBS`); it bounds the quadratic duplicate check.
pub const MAX_BLOBS: usize = 16 * 1024;

/// Which of gemma.cpp's two layouts a file uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Header and directory at the start, blobs after them.
    V1,
    /// Placeholder header at the start, directory and real header at the
    /// end: what gemma.cpp writes since 2025.
    V2,
}

/// The 16-byte header, wherever it lives.
#[derive(Clone, Copy, Debug)]
struct Header {
    magic: u32,
    num_blobs: u32,
    file_bytes: u64,
}

fn read_header(b: &[u8]) -> Option<Header> {
    Some(Header {
        magic: u32::from_le_bytes(b.get(0..4)?.try_into().ok()?),
        num_blobs: u32::from_le_bytes(b.get(4..8)?.try_into().ok()?),
        file_bytes: u64::from_le_bytes(b.get(8..16)?.try_into().ok()?),
    })
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let end = at.checked_add(8)?;
    Some(u64::from_le_bytes(b.get(at..end)?.try_into().ok()?))
}

/// Rounds `x` up to a multiple of [`BLOB_ALIGN`]; `None` on overflow.
pub fn align_blob(x: u64) -> Option<u64> {
    Some(x.checked_add(BLOB_ALIGN - 1)? / BLOB_ALIGN * BLOB_ALIGN)
}

/// The name stored in a 16-byte key: the bytes before the first NUL. `None`
/// when that is empty, not UTF-8, or followed by anything but NULs (gemma.cpp
/// never writes such keys; its reader would silently cut them at the NUL).
pub fn key_name(key: &[u8]) -> Option<&str> {
    let len = key.iter().position(|&b| b == 0).unwrap_or(key.len());
    let (name, pad) = key.split_at(len);
    if name.is_empty() || pad.iter().any(|&b| b != 0) {
        return None;
    }
    core::str::from_utf8(name).ok()
}

/// One directory entry: a name and where its bytes are (the size excludes
/// the padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobEntry<'a> {
    pub index: usize,
    pub name: &'a str,
    pub offset: u64,
    pub size: u64,
}

/// A validated directory: keys and ranges, still in the file's bytes.
///
/// Obtained from [`BlobStore::parse`] (whole file), or from
/// [`Directory::from_tail`] by a reader that only has the end of a V2 file.
#[derive(Clone, Copy, Debug)]
pub struct Directory<'a> {
    keys: &'a [u8],
    ranges: &'a [u8],
    count: usize,
    file_bytes: u64,
    layout: Layout,
}

impl<'a> Directory<'a> {
    /// How many bytes at the end of a V2 file hold the directory and the
    /// header, read from the file's last 16 bytes: a reader that cannot map
    /// the whole file reads those first, then this many for
    /// [`Directory::from_tail`].
    pub fn tail_len(last_16: &[u8]) -> Result<usize, SbsError> {
        let h = read_header(last_16).ok_or(SbsError::Truncated {
            what: "header",
            offset: 0,
        })?;
        if h.magic != MAGIC {
            return Err(SbsError::BadMagic { found: h.magic });
        }
        let count = check_count(h.num_blobs)?;
        Ok(HEADER_BYTES + count * DIR_ENTRY_BYTES)
    }

    /// The V2 directory from the last `tail.len()` bytes of a file of
    /// `file_len` bytes. `tail` must hold at least the directory and the
    /// header ([`Directory::tail_len`]); the whole file works too.
    pub fn from_tail(tail: &'a [u8], file_len: u64) -> Result<Self, SbsError> {
        let tail_start =
            file_len
                .checked_sub(tail.len() as u64)
                .ok_or(SbsError::FileSizeMismatch {
                    header: tail.len() as u64,
                    actual: file_len,
                })?;
        let header_at = tail
            .len()
            .checked_sub(HEADER_BYTES)
            .ok_or(SbsError::Truncated {
                what: "header",
                offset: 0,
            })?;
        let h = read_header(&tail[header_at..]).ok_or(SbsError::Truncated {
            what: "header",
            offset: 0,
        })?;
        if h.magic != MAGIC {
            return Err(SbsError::BadMagic { found: h.magic });
        }
        let count = check_count(h.num_blobs)?;
        if h.file_bytes != file_len {
            return Err(SbsError::FileSizeMismatch {
                header: h.file_bytes,
                actual: file_len,
            });
        }
        // count <= MAX_BLOBS, so this cannot overflow.
        let dir_len = count * DIR_ENTRY_BYTES;
        let dir_at = header_at.checked_sub(dir_len).ok_or(SbsError::Truncated {
            what: "directory",
            offset: tail_start,
        })?;
        let keys_end = dir_at + count * KEY_BYTES;
        let dir = Directory {
            keys: &tail[dir_at..keys_end],
            ranges: &tail[keys_end..header_at],
            count,
            file_bytes: h.file_bytes,
            layout: Layout::V2,
        };
        // Blobs start after the padded placeholder header and end before the
        // directory.
        dir.check(BLOB_ALIGN, tail_start + dir_at as u64)?;
        Ok(dir)
    }

    /// The V1 directory from the first `head.len()` bytes of a file of
    /// `file_len` bytes (at least the header and the directory).
    pub fn from_head(head: &'a [u8], file_len: u64) -> Result<Self, SbsError> {
        let h = read_header(head).ok_or(SbsError::Truncated {
            what: "header",
            offset: 0,
        })?;
        if h.magic != MAGIC {
            return Err(SbsError::BadMagic { found: h.magic });
        }
        let count = check_count(h.num_blobs)?;
        if h.file_bytes != file_len {
            return Err(SbsError::FileSizeMismatch {
                header: h.file_bytes,
                actual: file_len,
            });
        }
        let dir_end = HEADER_BYTES + count * DIR_ENTRY_BYTES;
        let dir = head.get(HEADER_BYTES..dir_end).ok_or(SbsError::Truncated {
            what: "directory",
            offset: HEADER_BYTES as u64,
        })?;
        let (keys, ranges) = dir.split_at(count * KEY_BYTES);
        let dir = Directory {
            keys,
            ranges,
            count,
            file_bytes: h.file_bytes,
            layout: Layout::V1,
        };
        // dir_end is small (count <= MAX_BLOBS), align_blob cannot fail.
        let first = align_blob(dir_end as u64).unwrap_or(u64::MAX);
        dir.check(first, file_len)?;
        Ok(dir)
    }

    /// Checks every range and name. Blobs must lie back to back from
    /// `first` (each at the previous one's end rounded up to 256), as
    /// gemma.cpp requires, and end by `limit`.
    fn check(&self, first: u64, limit: u64) -> Result<(), SbsError> {
        let mut expected = first;
        for blob in 0..self.count {
            let (offset, size) = self.range(blob).ok_or(SbsError::Truncated {
                what: "directory",
                offset: 0,
            })?;
            if !offset.is_multiple_of(BLOB_ALIGN) {
                return Err(SbsError::Misaligned { blob, offset });
            }
            if size == 0 {
                return Err(SbsError::EmptyBlob { blob });
            }
            let end = offset
                .checked_add(size)
                .filter(|&end| end <= limit)
                .ok_or(SbsError::BlobOutOfBounds { blob, offset, size })?;
            if offset < expected {
                return Err(SbsError::Overlap {
                    blob,
                    offset,
                    expected,
                });
            }
            if offset > expected {
                return Err(SbsError::Gap {
                    blob,
                    offset,
                    expected,
                });
            }
            expected = align_blob(end).ok_or(SbsError::BlobOutOfBounds { blob, offset, size })?;
        }
        for blob in 0..self.count {
            if self.name(blob).is_none() {
                return Err(SbsError::BadBlobName { blob });
            }
        }
        // Names are NUL-padded (checked above), so equal names are equal keys.
        // Quadratic, but MAX_BLOBS bounds it: at most 1.3e8 comparisons of
        // u128 (about 0.1 s), for a file of at least 4.7 MB.
        for second in 1..self.count {
            let k = self.key(second);
            if let Some(first) = (0..second).find(|&first| self.key(first) == k) {
                return Err(SbsError::DuplicateBlobName { first, second });
            }
        }
        Ok(())
    }

    fn key(&self, blob: usize) -> u128 {
        let at = blob * KEY_BYTES;
        self.keys
            .get(at..at + KEY_BYTES)
            .and_then(|k| k.try_into().ok())
            .map(u128::from_le_bytes)
            .unwrap_or(0)
    }

    fn name(&self, blob: usize) -> Option<&'a str> {
        let at = blob.checked_mul(KEY_BYTES)?;
        key_name(self.keys.get(at..at.checked_add(KEY_BYTES)?)?)
    }

    fn range(&self, blob: usize) -> Option<(u64, u64)> {
        let at = blob.checked_mul(16)?;
        Some((
            u64_at(self.ranges, at)?,
            u64_at(self.ranges, at.checked_add(8)?)?,
        ))
    }

    /// Number of blobs (at least one).
    pub fn len(&self) -> usize {
        self.count
    }

    /// Always false: a store without blobs is refused.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The file size the header states (equal to the real one).
    pub fn file_bytes(&self) -> u64 {
        self.file_bytes
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Entry `index`, in directory (= file) order.
    pub fn entry(&self, index: usize) -> Option<BlobEntry<'a>> {
        let (offset, size) = self.range(index)?;
        Some(BlobEntry {
            index,
            name: self.name(index)?,
            offset,
            size,
        })
    }

    /// All entries in directory order.
    pub fn entries(&self) -> impl Iterator<Item = BlobEntry<'a>> + 'a {
        let dir = *self;
        (0..dir.count).filter_map(move |i| dir.entry(i))
    }

    /// The entry named `name`.
    pub fn find(&self, name: &str) -> Option<BlobEntry<'a>> {
        self.find_from(name, 0)
    }

    /// Like [`Directory::find`], but starts looking at `hint` (wrapping
    /// around): finding tensors in file order then costs one comparison each.
    pub fn find_from(&self, name: &str, hint: usize) -> Option<BlobEntry<'a>> {
        let start = if hint < self.count { hint } else { 0 };
        (start..self.count)
            .chain(0..start)
            .find(|&i| self.name(i) == Some(name))
            .and_then(|i| self.entry(i))
    }
}

fn check_count(num_blobs: u32) -> Result<usize, SbsError> {
    let count = num_blobs as usize;
    if count == 0 {
        return Err(SbsError::NoBlobs);
    }
    if count > MAX_BLOBS {
        return Err(SbsError::TooManyBlobs {
            count: num_blobs,
            max: MAX_BLOBS,
        });
    }
    Ok(count)
}

/// One blob: its name and bytes (without padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blob<'a> {
    pub index: usize,
    pub name: &'a str,
    /// Where the bytes start in the file (a multiple of 256).
    pub offset: usize,
    pub bytes: &'a [u8],
}

/// A validated blob store over the bytes of a whole file.
#[derive(Clone, Copy, Debug)]
pub struct BlobStore<'a> {
    bytes: &'a [u8],
    dir: Directory<'a>,
}

impl<'a> BlobStore<'a> {
    /// Finds the layout and checks the directory against the bytes.
    ///
    /// A file whose first 16 bytes are a header with a non-zero blob count is
    /// V1; anything else is read as V2 from its last 16 bytes (gemma.cpp
    /// tries the same two in the same order, and never looks at a V2 file's
    /// placeholder header).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, SbsError> {
        let file_len = bytes.len() as u64;
        let head = read_header(bytes).ok_or(SbsError::Truncated {
            what: "header",
            offset: 0,
        })?;
        let dir = if head.magic == MAGIC && head.num_blobs != 0 {
            Directory::from_head(bytes, file_len)?
        } else {
            Directory::from_tail(bytes, file_len)?
        };
        Ok(BlobStore { bytes, dir })
    }

    pub fn directory(&self) -> Directory<'a> {
        self.dir
    }

    pub fn layout(&self) -> Layout {
        self.dir.layout
    }

    /// The whole file.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Number of blobs (at least one).
    pub fn len(&self) -> usize {
        self.dir.count
    }

    /// Always false: a store without blobs is refused.
    pub fn is_empty(&self) -> bool {
        self.dir.count == 0
    }

    fn resolve(&self, e: BlobEntry<'a>) -> Option<Blob<'a>> {
        let start = usize::try_from(e.offset).ok()?;
        let end = start.checked_add(usize::try_from(e.size).ok()?)?;
        Some(Blob {
            index: e.index,
            name: e.name,
            offset: start,
            bytes: self.bytes.get(start..end)?,
        })
    }

    /// Blob `index` in file order.
    pub fn get(&self, index: usize) -> Option<Blob<'a>> {
        self.resolve(self.dir.entry(index)?)
    }

    /// All blobs in file order.
    pub fn blobs(&self) -> impl Iterator<Item = Blob<'a>> + 'a {
        let store = *self;
        store.dir.entries().filter_map(move |e| store.resolve(e))
    }

    /// The blob named `name`.
    pub fn find(&self, name: &str) -> Option<Blob<'a>> {
        self.resolve(self.dir.find(name)?)
    }

    /// [`BlobStore::find`] starting at `hint` (see [`Directory::find_from`]).
    pub fn find_from(&self, name: &str, hint: usize) -> Option<Blob<'a>> {
        self.resolve(self.dir.find_from(name, hint)?)
    }

    /// The bytes of the blob named `name`.
    pub fn blob(&self, name: &str) -> Option<&'a [u8]> {
        self.find(name).map(|b| b.bytes)
    }
}
