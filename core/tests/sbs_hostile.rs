//! Hostile `.sbs` inputs: hand-crafted corruptions of gemma.cpp's own files
//! (each refused with the error that names it), then truncation and
//! bit-flip sweeps and random word streams (never a panic; whatever is
//! accepted is in bounds and writes back to what was read).

use gemma_core::codec::Codec;
use gemma_core::format::sbs::blob_store::{BLOB_ALIGN, MAGIC, MAX_BLOBS};
use gemma_core::format::sbs::fields::{self, Fields, Visitor};
use gemma_core::format::sbs::{
    write_toc, BlobStore, LayerConfig, ModelConfig, SbsError, SbsFile, Toc, TocEntry,
};

mod common;
use common::data;

// Where things are in blobstore_tiny.sbs (3 blobs, 65536 bytes).
const KEYS: usize = 65424;
const RANGES: usize = 65472;
const HEADER: usize = 65520;

fn set_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn set_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn tiny_with(edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut b = data("blobstore_tiny.sbs");
    edit(&mut b);
    b
}

fn offset_of(blob: usize) -> usize {
    RANGES + 16 * blob
}

fn size_of(blob: usize) -> usize {
    RANGES + 16 * blob + 8
}

fn key_of(blob: usize) -> usize {
    KEYS + 16 * blob
}

/// A V2 store built by hand (the platform writer is checked against gemma.cpp
/// separately; core tests cannot use it).
fn v2_store(blobs: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = vec![0u8; 256];
    out[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    set_u64(&mut out, 8, 65536);
    let mut ranges = Vec::new();
    for (_, b) in blobs {
        ranges.push((out.len() as u64, b.len() as u64));
        out.extend_from_slice(b);
        out.resize(out.len().div_ceil(256) * 256, 0);
    }
    let n = blobs.len();
    let dir_padded = (16 + 32 * n).div_ceil(256) * 256;
    let file = (out.len() + dir_padded).div_ceil(65536) * 65536;
    out.resize(file - 16 - 32 * n, 0);
    for (name, _) in blobs {
        let mut key = [0u8; 16];
        key[..name.len()].copy_from_slice(name.as_bytes());
        out.extend_from_slice(&key);
    }
    for (o, s) in ranges {
        out.extend_from_slice(&o.to_le_bytes());
        out.extend_from_slice(&s.to_le_bytes());
    }
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&(n as u32).to_le_bytes());
    out.extend_from_slice(&(file as u64).to_le_bytes());
    out
}

fn v1_header(n: u32, file_len: u64) -> Vec<u8> {
    let mut b = vec![0u8; 16];
    set_u32(&mut b, 0, MAGIC);
    set_u32(&mut b, 4, n);
    set_u64(&mut b, 8, file_len);
    b
}

type Check = fn(&SbsError) -> bool;

fn expect_all(
    what: &str,
    cases: Vec<(&str, Vec<u8>, Check)>,
    parse: impl Fn(&[u8]) -> Result<(), SbsError>,
) {
    assert!(!cases.is_empty());
    for (name, bytes, check) in cases {
        match parse(&bytes) {
            Ok(()) => panic!("{what} `{name}` was accepted"),
            Err(e) => {
                assert!(check(&e), "{what} `{name}`: unexpected error {e:?}");
                // Every error displays as one line.
                let msg = e.to_string();
                assert!(!msg.is_empty() && !msg.contains('\n'), "{msg}");
            }
        }
    }
}

#[test]
fn sbs_hostile_blob_stores_are_refused_with_the_error_that_names_them() {
    use SbsError::*;
    let v1_many = {
        // A V1 header claiming 10 blobs whose first blob sits at 256, inside
        // the 336-byte directory's padding (blobs must start at 512).
        let mut b = v1_header(10, 0);
        b.resize(16 + 320, 0);
        for i in 0..10 {
            let at = 16 + 160 + 16 * i;
            set_u64(&mut b, at, 256 + 256 * i as u64);
            set_u64(&mut b, at + 8, 1);
            b[16 + 16 * i] = b'a' + i as u8;
        }
        b.resize(2816, 0);
        set_u64(&mut b, 8, 2816);
        b
    };
    let cases: Vec<(&str, Vec<u8>, Check)> = vec![
        ("empty file", vec![], |e| {
            matches!(e, Truncated { what: "header", .. })
        }),
        ("15 bytes", vec![0x53; 15], |e| {
            matches!(e, Truncated { .. })
        }),
        (
            "bad trailing magic",
            tiny_with(|b| b[HEADER] ^= 1),
            |e| matches!(e, BadMagic { found } if *found == MAGIC ^ 1),
        ),
        ("all zeros", vec![0; 65536], |e| {
            matches!(e, BadMagic { found: 0 })
        }),
        (
            "zero blobs",
            tiny_with(|b| set_u32(b, HEADER + 4, 0)),
            |e| *e == NoBlobs,
        ),
        (
            "16385 blobs",
            tiny_with(|b| set_u32(b, HEADER + 4, MAX_BLOBS as u32 + 1)),
            |e| matches!(e, TooManyBlobs { count: 16385, .. }),
        ),
        (
            "u32::MAX blobs",
            tiny_with(|b| set_u32(b, HEADER + 4, u32::MAX)),
            |e| matches!(e, TooManyBlobs { .. }),
        ),
        (
            "directory larger than the file",
            tiny_with(|b| set_u32(b, HEADER + 4, 2100)),
            |e| {
                matches!(
                    e,
                    Truncated {
                        what: "directory",
                        ..
                    }
                )
            },
        ),
        (
            "file_bytes one short",
            tiny_with(|b| set_u64(b, HEADER + 8, 65535)),
            |e| {
                matches!(
                    e,
                    FileSizeMismatch {
                        header: 65535,
                        actual: 65536
                    }
                )
            },
        ),
        (
            "file_bytes u64::MAX",
            tiny_with(|b| set_u64(b, HEADER + 8, u64::MAX)),
            |e| matches!(e, FileSizeMismatch { .. }),
        ),
        (
            "offset past the end",
            tiny_with(|b| set_u64(b, offset_of(2), 1 << 40)),
            |e| matches!(e, BlobOutOfBounds { blob: 2, .. }),
        ),
        (
            "offset + size overflows",
            tiny_with(|b| {
                set_u64(b, offset_of(2), u64::MAX - 255);
                set_u64(b, size_of(2), 1000);
            }),
            |e| matches!(e, BlobOutOfBounds { blob: 2, .. }),
        ),
        (
            "size u64::MAX",
            tiny_with(|b| set_u64(b, size_of(1), u64::MAX)),
            |e| matches!(e, BlobOutOfBounds { blob: 1, .. }),
        ),
        (
            "blob runs into the directory",
            tiny_with(|b| set_u64(b, size_of(2), (KEYS - 768 + 1) as u64)),
            |e| matches!(e, BlobOutOfBounds { blob: 2, .. }),
        ),
        (
            "blob overlaps the previous one",
            tiny_with(|b| set_u64(b, offset_of(1), 256)),
            |e| {
                matches!(
                    e,
                    Overlap {
                        blob: 1,
                        offset: 256,
                        expected: 512
                    }
                )
            },
        ),
        (
            "blob overlaps the placeholder header",
            tiny_with(|b| set_u64(b, offset_of(0), 0)),
            |e| {
                matches!(
                    e,
                    Overlap {
                        blob: 0,
                        offset: 0,
                        expected: 256
                    }
                )
            },
        ),
        (
            "gap between blobs",
            tiny_with(|b| set_u64(b, offset_of(1), 1024)),
            |e| {
                matches!(
                    e,
                    Gap {
                        blob: 1,
                        offset: 1024,
                        expected: 512
                    }
                )
            },
        ),
        (
            "blobs out of order",
            tiny_with(|b| {
                set_u64(b, offset_of(0), 768);
                set_u64(b, offset_of(2), 256);
            }),
            |e| matches!(e, Gap { blob: 0, .. }),
        ),
        (
            "misaligned offset",
            tiny_with(|b| set_u64(b, offset_of(1), 513)),
            |e| {
                matches!(
                    e,
                    Misaligned {
                        blob: 1,
                        offset: 513
                    }
                )
            },
        ),
        (
            "zero-size blob",
            tiny_with(|b| set_u64(b, size_of(0), 0)),
            |e| *e == EmptyBlob { blob: 0 },
        ),
        (
            "empty name",
            tiny_with(|b| b[key_of(1)..key_of(1) + 16].fill(0)),
            |e| *e == BadBlobName { blob: 1 },
        ),
        (
            "garbage after the NUL",
            tiny_with(|b| b[key_of(0) + 15] = b'x'),
            |e| *e == BadBlobName { blob: 0 },
        ),
        ("name not UTF-8", tiny_with(|b| b[key_of(2)] = 0xFF), |e| {
            *e == BadBlobName { blob: 2 }
        }),
        (
            "duplicate names",
            tiny_with(|b| b.copy_within(key_of(0)..key_of(0) + 16, key_of(2))),
            |e| {
                *e == DuplicateBlobName {
                    first: 0,
                    second: 2,
                }
            },
        ),
        (
            "V1: directory past the end",
            {
                let mut b = v1_header(3, 64);
                b.resize(64, 0);
                b
            },
            |e| {
                matches!(
                    e,
                    Truncated {
                        what: "directory",
                        ..
                    }
                )
            },
        ),
        ("V1: huge count", v1_header(u32::MAX, 16), |e| {
            matches!(e, TooManyBlobs { .. })
        }),
        ("V1: file_bytes wrong", v1_header(1, 1 << 30), |e| {
            matches!(e, FileSizeMismatch { .. })
        }),
        ("V1: blob inside the directory's padding", v1_many, |e| {
            matches!(
                e,
                Overlap {
                    blob: 0,
                    offset: 256,
                    expected: 512
                }
            )
        }),
    ];
    assert!(cases.len() >= 20);
    expect_all("blob store", cases, |b| BlobStore::parse(b).map(|_| ()));
}

/// A struct with a u64, to reach that path of the reader.
#[derive(Clone, Default)]
struct WithU64 {
    a: u64,
}

impl<'a> Fields<'a> for WithU64 {
    fn visit<V: Visitor<'a>>(&mut self, v: &mut V) -> Result<(), SbsError> {
        v.u64(&mut self.a)
    }
}

fn config_with(edit: impl FnOnce(&mut Vec<u32>)) -> Vec<u8> {
    let b = data("model_sfp_config.bin");
    let mut w: Vec<u32> = b
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    edit(&mut w);
    w.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn words_to_bytes(w: &[u32]) -> Vec<u8> {
    w.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn sbs_hostile_fields_are_refused_with_the_error_that_names_them() {
    use SbsError::*;
    // Word positions in the 270M config: see README_sbs.md.
    let cases: Vec<(&str, Vec<u8>, Check)> = vec![
        ("empty blob", vec![], |e| {
            matches!(
                e,
                FieldTruncated {
                    what: "struct size",
                    ..
                }
            )
        }),
        (
            "not whole words",
            data("model_sfp_config.bin")[..1475].to_vec(),
            |e| *e == NotWords { len: 1475 },
        ),
        (
            "struct size past the end",
            config_with(|w| w.truncate(100)),
            |e| {
                matches!(
                    e,
                    FieldTruncated {
                        what: "nested struct",
                        word: 0
                    }
                )
            },
        ),
        (
            "struct size u32::MAX",
            config_with(|w| w[0] = u32::MAX),
            |e| {
                matches!(
                    e,
                    FieldTruncated {
                        what: "nested struct",
                        word: 0
                    }
                )
            },
        ),
        (
            "layer size past its parent",
            config_with(|w| w[20] = 1000),
            |e| {
                matches!(
                    e,
                    FieldTruncated {
                        what: "nested struct",
                        word: 20
                    }
                )
            },
        ),
        (
            "vit struct past its parent",
            config_with(|w| w[328] = 100),
            |e| {
                matches!(
                    e,
                    FieldTruncated {
                        what: "nested struct",
                        word: 328
                    }
                )
            },
        ),
        (
            "vit layer count past the vit struct",
            config_with(|w| w[334] = 5),
            |e| {
                matches!(
                    e,
                    FieldTruncated {
                        what: "vector",
                        word: 334
                    }
                )
            },
        ),
        (
            "vit layer struct past the vit struct",
            config_with(|w| w[334] = 1),
            |e| {
                matches!(
                    e,
                    FieldTruncated {
                        what: "nested struct",
                        word: 335
                    }
                )
            },
        ),
        (
            "vector count u32::MAX",
            config_with(|w| w[19] = u32::MAX),
            |e| {
                matches!(
                    e,
                    VectorTooLong {
                        word: 19,
                        count: u32::MAX
                    }
                )
            },
        ),
        ("vector count 65537", config_with(|w| w[308] = 65537), |e| {
            matches!(e, VectorTooLong { word: 308, .. })
        }),
        (
            "vector count larger than the struct",
            config_with(|w| w[308] = 60000),
            |e| {
                matches!(
                    e,
                    FieldTruncated {
                        what: "vector",
                        word: 308
                    }
                )
            },
        ),
        ("string of 65 words", config_with(|w| w[2] = 65), |e| {
            matches!(e, StringTooLong { word: 2, words: 65 })
        }),
        (
            "string past the end",
            config_with(|w| {
                w.truncate(4);
                w[0] = 3;
            }),
            |e| {
                matches!(
                    e,
                    FieldTruncated {
                        what: "string",
                        word: 2
                    }
                )
            },
        ),
        ("string with a zero word", config_with(|w| w[4] = 0), |e| {
            *e == BadString { word: 4 }
        }),
        ("string not ASCII", config_with(|w| w[3] |= 0x80), |e| {
            *e == BadString { word: 3 }
        }),
        ("retired model code", config_with(|w| w[6] = 5), |e| {
            matches!(
                e,
                BadEnum {
                    what: "model",
                    word: 6,
                    value: 5
                }
            )
        }),
        ("unknown weight type", config_with(|w| w[8] = 9), |e| {
            matches!(
                e,
                BadEnum {
                    what: "tensor type",
                    word: 8,
                    value: 9
                }
            )
        }),
        ("unknown post norm", config_with(|w| w[31] = 2), |e| {
            matches!(
                e,
                BadEnum {
                    word: 31,
                    value: 2,
                    ..
                }
            )
        }),
        ("bool 2", config_with(|w| w[16] = 2), |e| {
            *e == BadBool { word: 16, value: 2 }
        }),
        (
            "NaN soft-cap",
            config_with(|w| w[14] = f32::NAN.to_bits()),
            |e| *e == BadFloat { word: 14 },
        ),
        (
            "infinite soft-cap",
            config_with(|w| w[15] = f32::INFINITY.to_bits()),
            |e| *e == BadFloat { word: 15 },
        ),
    ];
    assert!(cases.len() >= 20);
    expect_all("config", cases, |b| ModelConfig::parse(b).map(|_| ()));

    // A u64 cut in half by the end of its struct.
    let cases: Vec<(&str, Vec<u8>, Check)> = vec![("half a u64", words_to_bytes(&[1, 7]), |e| {
        matches!(
            e,
            FieldTruncated {
                what: "u64",
                word: 1
            }
        )
    })];
    expect_all("u64 struct", cases, |b| {
        fields::read::<WithU64>(b).map(|_| ())
    });
    let (s, _) = fields::read::<WithU64>(&words_to_bytes(&[2, 7, 1])).unwrap();
    assert_eq!(s.a, (1 << 32) | 7);

    let toc = data("model_sfp_toc.bin");
    let toc_with = |edit: fn(&mut Vec<u8>)| {
        let mut t = toc.clone();
        edit(&mut t);
        t
    };
    let cases: Vec<(&str, Vec<u8>, Check)> = vec![
        ("toc of 3 bytes", vec![1, 0, 0], |e| {
            *e == NotWords { len: 3 }
        }),
        (
            "toc record size past the end",
            toc_with(|t| t[0..4].copy_from_slice(&9000u32.to_le_bytes())),
            |e| {
                matches!(
                    e,
                    FieldTruncated {
                        what: "nested struct",
                        word: 0
                    }
                )
            },
        ),
        (
            "toc name of 1000 words",
            toc_with(|t| t[4..8].copy_from_slice(&1000u32.to_le_bytes())),
            |e| {
                matches!(
                    e,
                    StringTooLong {
                        word: 1,
                        words: 1000
                    }
                )
            },
        ),
        (
            "toc cut inside a record",
            toc[..toc.len() - 8].to_vec(),
            |e| {
                matches!(
                    e,
                    FieldTruncated {
                        what: "nested struct",
                        ..
                    }
                )
            },
        ),
        (
            "toc type 200",
            toc_with(|t| t[20..24].copy_from_slice(&200u32.to_le_bytes())),
            |e| {
                matches!(
                    e,
                    BadEnum {
                        word: 5,
                        value: 200,
                        ..
                    }
                )
            },
        ),
        (
            "toc NaN scale",
            toc_with(|t| t[40..44].copy_from_slice(&f32::NAN.to_bits().to_le_bytes())),
            |e| *e == BadFloat { word: 10 },
        ),
    ];
    expect_all("toc", cases, |b| Toc::parse(b).map(|_| ()));
}

/// A small valid model: one BF16 and one NUQ tensor, config and toc.
struct ModelParts {
    config: Vec<u8>,
    tensors: Vec<(TocEntry<'static>, Vec<u8>)>,
}

fn model_parts() -> ModelParts {
    let config = fields::to_vec(&ModelConfig {
        display_name: "tiny",
        num_layers: 0,
        ..ModelConfig::default()
    })
    .unwrap();
    let w = TocEntry::new("w", Codec::BF16, 2, 4, 1.0).unwrap();
    let q = TocEntry::new("q", Codec::NUQ, 3, 100, 1.0).unwrap();
    ModelParts {
        config,
        tensors: vec![
            (w, vec![0x3F; w.packed_bytes().unwrap() as usize]),
            (q, vec![0x11; q.packed_bytes().unwrap() as usize]),
        ],
    }
}

fn model_file(parts: &ModelParts, toc: &[TocEntry]) -> Vec<u8> {
    let mut toc_bytes = vec![0u8; 4096];
    let n = write_toc(toc.iter().copied(), &mut toc_bytes).unwrap();
    toc_bytes.truncate(n);
    let mut blobs: Vec<(&str, &[u8])> = parts
        .tensors
        .iter()
        .map(|(e, b)| (e.name, b.as_slice()))
        .collect();
    blobs.push(("config", &parts.config));
    blobs.push(("tokenizer", b"not a real proto"));
    blobs.push(("toc", &toc_bytes));
    v2_store(&blobs)
}

#[test]
fn sbs_hostile_models_are_refused_with_the_error_that_names_them() {
    use SbsError::*;
    let parts = model_parts();
    let good: Vec<TocEntry> = parts.tensors.iter().map(|t| t.0).collect();
    let file = model_file(&parts, &good);
    let model = SbsFile::parse(&file).unwrap();
    assert_eq!(model.tensors().count(), 2);
    assert_eq!(model.tokenizer(), Some(&b"not a real proto"[..]));
    let q = model.tensor("q").unwrap();
    assert_eq!((q.codec, q.rows, q.cols, q.blob), (Codec::NUQ, 3, 100, 1));
    assert_eq!(q.bytes.len(), 16 * 2 + 150);
    assert_eq!(model.config.display_name, "tiny");

    let with = |edit: &dyn Fn(&mut Vec<TocEntry<'static>>)| {
        let mut toc = good.clone();
        edit(&mut toc);
        model_file(&parts, &toc)
    };
    let cases: Vec<(&str, Vec<u8>, Check)> = vec![
        (
            "no config",
            v2_store(&[("w", &[1, 2]), ("toc", &[0, 0, 0, 0])]),
            |e| *e == MissingBlob("config"),
        ),
        (
            "no toc",
            v2_store(&[("w", &[1, 2]), ("config", &parts.config)]),
            |e| *e == MissingBlob("toc"),
        ),
        ("toc names no blob", with(&|t| t[1].name = "nope"), |e| {
            *e == TensorBlobMissing { tensor: 1 }
        }),
        (
            "rows larger than the blob",
            with(&|t| *t = vec![TocEntry::new("w", Codec::BF16, 3, 4, 1.0).unwrap()]),
            |e| {
                *e == TensorSizeMismatch {
                    tensor: 0,
                    expected: 24,
                    actual: 16,
                }
            },
        ),
        (
            "type f64",
            with(&|t| t[0].ty = gemma_core::format::sbs::TensorType::F64),
            |e| matches!(e, BadTensor { tensor: 0, .. }),
        ),
        (
            "type unknown",
            with(&|t| t[0].ty = gemma_core::format::sbs::TensorType::Unknown),
            |e| matches!(e, BadTensor { tensor: 0, .. }),
        ),
        ("padded stride", with(&|t| t[0].stride = 8), |e| {
            matches!(e, BadTensor { tensor: 0, .. })
        }),
        (
            "element_bytes wrong",
            with(&|t| t[1].element_bytes = 2),
            |e| matches!(e, BadTensor { tensor: 1, .. }),
        ),
        (
            "num_elements without NUQ tables",
            with(&|t| t[1].num_elements = 300),
            |e| matches!(e, BadTensor { tensor: 1, .. }),
        ),
        ("zero rows", with(&|t| t[0].rows = 0), |e| {
            matches!(e, BadTensor { tensor: 0, .. })
        }),
        (
            "rows x cols overflows",
            with(&|t| {
                t[0].rows = u32::MAX;
                t[0].cols = u32::MAX;
                t[0].stride = u32::MAX;
            }),
            |e| matches!(e, BadTensor { tensor: 0, .. }),
        ),
        ("same tensor twice", with(&|t| t.push(t[0])), |e| {
            *e == DuplicateTensor {
                first: 0,
                second: 2,
            }
        }),
        (
            "name longer than a key",
            with(&|t| t[0].name = "seventeen_chars_x"),
            |e| matches!(e, BadTensor { tensor: 0, .. }),
        ),
    ];
    expect_all("model", cases, |b| SbsFile::parse(b).map(|_| ()));
}

#[test]
fn sbs_every_truncation_of_a_store_is_refused() {
    let tiny = data("blobstore_tiny.sbs");
    for len in 0..tiny.len() {
        assert!(
            BlobStore::parse(&tiny[..len]).is_err(),
            "prefix of {len} bytes accepted"
        );
    }
    for cut in 1..=2048 {
        assert!(
            BlobStore::parse(&tiny[cut..]).is_err(),
            "suffix from {cut} accepted"
        );
    }
    let parts = model_parts();
    let good: Vec<TocEntry> = parts.tensors.iter().map(|t| t.0).collect();
    let file = model_file(&parts, &good);
    for len in 0..file.len() {
        assert!(
            SbsFile::parse(&file[..len]).is_err(),
            "model prefix of {len} bytes accepted"
        );
    }
}

/// Whatever a parse accepts must be internally consistent: every blob in
/// bounds, aligned, disjoint, and as many as the directory says.
fn check_accepted_store(bytes: &[u8]) {
    if let Ok(store) = BlobStore::parse(bytes) {
        let mut end = 0usize;
        let mut n = 0;
        for b in store.blobs() {
            assert_eq!(b.offset % BLOB_ALIGN as usize, 0);
            assert!(b.offset >= end && !b.bytes.is_empty());
            assert!(b.offset + b.bytes.len() <= bytes.len());
            assert_eq!(store.find(b.name).map(|f| f.index), Some(b.index));
            end = b.offset + b.bytes.len();
            n += 1;
        }
        assert_eq!(n, store.len());
    }
}

#[test]
fn sbs_bit_flips_in_header_and_directory_never_panic() {
    let tiny = data("blobstore_tiny.sbs");
    let mut accepted = 0;
    for byte in (0..256).chain(KEYS..tiny.len()) {
        for bit in 0..8 {
            let mut b = tiny.clone();
            b[byte] ^= 1 << bit;
            check_accepted_store(&b);
            accepted += usize::from(BlobStore::parse(&b).is_ok());
        }
    }
    // Flips in the placeholder and most flips in names leave a valid file;
    // flips in ranges and the header do not.
    assert!(
        accepted > 256 * 8 && accepted < (256 + 112) * 8,
        "{accepted}"
    );

    // The same sweep over the small model, through the whole model check.
    let parts = model_parts();
    let good: Vec<TocEntry> = parts.tensors.iter().map(|t| t.0).collect();
    let file = model_file(&parts, &good);
    for byte in 0..file.len() {
        // Zero padding is not interpreted; sweep everything else (the
        // placeholder, the blobs, the directory and the header).
        if file[byte] == 0 && byte >= 256 && byte < file.len() - (16 + 32 * 5) {
            continue;
        }
        for bit in 0..8 {
            let mut b = file.clone();
            b[byte] ^= 1 << bit;
            check_accepted_store(&b);
            if let Ok(m) = SbsFile::parse(&b) {
                for t in m.tensors() {
                    assert_eq!(Some(t.bytes.len() as u64), t.entry.packed_bytes());
                }
            }
        }
    }
}

#[test]
fn sbs_bit_flips_in_config_and_toc_never_panic_and_what_is_accepted_round_trips() {
    let config = data("model_sfp_config.bin");
    let mut accepted = 0;
    for byte in 0..config.len() {
        for bit in 0..8 {
            let mut b = config.clone();
            b[byte] ^= 1 << bit;
            if let Ok(c) = ModelConfig::parse(&b) {
                accepted += 1;
                let again = fields::to_vec(&c).unwrap();
                assert_eq!(
                    ModelConfig::parse(&again).unwrap(),
                    c,
                    "byte {byte} bit {bit}"
                );
            }
        }
    }
    assert!(accepted > 0 && accepted < config.len() * 8, "{accepted}");

    let toc = data("model_sfp_toc.bin");
    for byte in 0..toc.len() {
        for bit in 0..8 {
            let mut b = toc.clone();
            b[byte] ^= 1 << bit;
            if let Ok(t) = Toc::parse(&b) {
                let entries: Vec<TocEntry> = t.iter().collect();
                assert_eq!(entries.len(), t.len());
                let mut out = vec![0u8; b.len() + 64];
                let n = write_toc(entries.iter().copied(), &mut out).unwrap();
                let back: Vec<TocEntry> = Toc::parse(&out[..n]).unwrap().iter().collect();
                assert_eq!(back, entries);
            }
        }
    }
}

#[test]
fn sbs_random_word_streams_never_panic() {
    // xorshift64*, seeded: the same streams every run.
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        s.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    for _ in 0..20000 {
        let n = (next() % 48) as usize;
        let words: Vec<u32> = (0..n)
            .map(|_| {
                let r = next();
                // Mostly small values (counts, sizes, enums), some anything.
                match r % 4 {
                    0 => (r >> 8) as u32,
                    _ => ((r >> 8) % 20) as u32,
                }
            })
            .collect();
        let b = words_to_bytes(&words);
        if let Ok(c) = ModelConfig::parse(&b) {
            let again = fields::to_vec(&c).unwrap();
            assert_eq!(ModelConfig::parse(&again).unwrap(), c);
        }
        if let Ok(t) = Toc::parse(&b) {
            assert_eq!(t.iter().count(), t.len());
        }
        let _ = fields::read::<LayerConfig>(&b);
    }
}
