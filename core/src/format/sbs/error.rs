//! What can be wrong with an `.sbs` file.

use core::fmt;

/// Everything that can be wrong with an `.sbs` file, its fields, or a
/// struct being written. Offsets are bytes in the file; `word` is a u32
/// index inside a fields blob; `blob` and `tensor` are indices in directory
/// and `toc` order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SbsError {
    /// The bytes end before the header or directory does.
    Truncated {
        what: &'static str,
        offset: u64,
    },
    BadMagic {
        found: u32,
    },
    NoBlobs,
    TooManyBlobs {
        count: u32,
        /// The most blobs a store may hold.
        max: usize,
    },
    /// The header's `file_bytes` is not the file's size.
    FileSizeMismatch {
        header: u64,
        actual: u64,
    },
    Misaligned {
        blob: usize,
        offset: u64,
    },
    EmptyBlob {
        blob: usize,
    },
    /// The blob runs past the end of the file (V1) or into the directory (V2).
    BlobOutOfBounds {
        blob: usize,
        offset: u64,
        size: u64,
    },
    /// The blob starts before the previous one's padded end.
    Overlap {
        blob: usize,
        offset: u64,
        expected: u64,
    },
    /// The blob starts after the previous one's padded end.
    Gap {
        blob: usize,
        offset: u64,
        expected: u64,
    },
    BadBlobName {
        blob: usize,
    },
    DuplicateBlobName {
        first: usize,
        second: usize,
    },
    /// A fields blob's length is not a multiple of 4.
    NotWords {
        len: usize,
    },
    /// A struct, string, vector or u64 runs past the end of its struct.
    FieldTruncated {
        what: &'static str,
        word: usize,
    },
    StringTooLong {
        word: usize,
        words: usize,
    },
    /// A string with an all-zero word or a non-ASCII byte.
    BadString {
        word: usize,
    },
    VectorTooLong {
        word: usize,
        count: u32,
    },
    BadBool {
        word: usize,
        value: u32,
    },
    BadEnum {
        what: &'static str,
        word: usize,
        value: u32,
    },
    /// NaN or infinite.
    BadFloat {
        word: usize,
    },
    /// Writing: the buffer holds fewer than `needed` bytes.
    BufferTooSmall {
        needed: usize,
    },
    /// A blob the model needs (`config`, `toc`) is absent.
    MissingBlob(&'static str),
    BadTensor {
        tensor: usize,
        why: &'static str,
    },
    /// A `toc` record names no blob.
    TensorBlobMissing {
        tensor: usize,
    },
    DuplicateTensor {
        first: usize,
        second: usize,
    },
    /// The blob's size is not what the record implies.
    TensorSizeMismatch {
        tensor: usize,
        expected: u64,
        actual: u64,
    },
}

impl fmt::Display for SbsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use SbsError::*;
        match *self {
            Truncated { what, offset } => {
                write!(
                    f,
                    ".sbs truncated: {what} at byte {offset} runs past the end"
                )
            }
            BadMagic { found } => write!(f, "not an .sbs file (magic {found:#010x})"),
            NoBlobs => write!(f, ".sbs blob store is empty"),
            TooManyBlobs { count, max } => {
                write!(f, ".sbs claims {count} blobs (at most {max})")
            }
            FileSizeMismatch { header, actual } => {
                write!(f, ".sbs header says {header} bytes, file has {actual}")
            }
            Misaligned { blob, offset } => {
                write!(f, ".sbs blob #{blob} at {offset} is not 256-byte aligned")
            }
            EmptyBlob { blob } => write!(f, ".sbs blob #{blob} is empty"),
            BlobOutOfBounds { blob, offset, size } => {
                write!(
                    f,
                    ".sbs blob #{blob} ({size} bytes at {offset}) runs out of bounds"
                )
            }
            Overlap {
                blob,
                offset,
                expected,
            } => write!(
                f,
                ".sbs blob #{blob} at {offset} overlaps what precedes it (ends at {expected})"
            ),
            Gap {
                blob,
                offset,
                expected,
            } => write!(f, ".sbs blob #{blob} at {offset}, expected at {expected}"),
            BadBlobName { blob } => write!(f, ".sbs blob #{blob} has an invalid name"),
            DuplicateBlobName { first, second } => {
                write!(f, ".sbs blobs #{first} and #{second} have the same name")
            }
            NotWords { len } => write!(f, ".sbs fields blob of {len} bytes is not whole words"),
            FieldTruncated { what, word } => {
                write!(f, ".sbs fields: {what} at word {word} runs past its struct")
            }
            StringTooLong { word, words } => {
                write!(
                    f,
                    ".sbs fields: string at word {word} is {words} words (at most 64)"
                )
            }
            BadString { word } => {
                write!(f, ".sbs fields: string word {word} is zero or not ASCII")
            }
            VectorTooLong { word, count } => {
                write!(
                    f,
                    ".sbs fields: vector at word {word} has {count} elements (at most 65536)"
                )
            }
            BadBool { word, value } => write!(f, ".sbs fields: bool {value} at word {word}"),
            BadEnum { what, word, value } => {
                write!(f, ".sbs fields: {what} {value} at word {word} is unknown")
            }
            BadFloat { word } => write!(f, ".sbs fields: float at word {word} is not finite"),
            BufferTooSmall { needed } => {
                write!(f, ".sbs output buffer too small ({needed} bytes needed)")
            }
            MissingBlob(name) => write!(f, ".sbs file has no '{name}' blob"),
            BadTensor { tensor, why } => write!(f, ".sbs tensor #{tensor}: {why}"),
            TensorBlobMissing { tensor } => write!(f, ".sbs tensor #{tensor} has no blob"),
            DuplicateTensor { first, second } => {
                write!(f, ".sbs tensors #{first} and #{second} name the same blob")
            }
            TensorSizeMismatch {
                tensor,
                expected,
                actual,
            } => write!(
                f,
                ".sbs tensor #{tensor}: blob is {actual} bytes, its record implies {expected}"
            ),
        }
    }
}
