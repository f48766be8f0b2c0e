//! The `.sbs` writer against gemma.cpp's own output: the tiny blob store
//! byte for byte, the 270M model's layout (first 256 bytes, directory,
//! header, size) byte for byte, and a model written here read back through
//! core's reader with every codec.

use gemma_core::codec::{self, Codec, NUQ_ENCODE_SCRATCH_LEN};
use gemma_core::format::sbs::{
    BlobStore, Directory, Layout, ModelConfig, SbsError, SbsFile, Toc, TocEntry,
};
use gemma_platform::sbs_writer::{
    config_bytes, toc_bytes, write_blob_store, write_model, BlobWriter, SbsWriteError,
};
use std::io::{self, Read, Write};
use std::path::PathBuf;

fn data(name: &str) -> Vec<u8> {
    let p: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "core",
        "tests",
        "data",
        "gemmacpp",
        name,
    ]
    .iter()
    .collect();
    std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

fn ramp300() -> Vec<u8> {
    (0..300).map(|i| ((7 * i + 3) % 256) as u8).collect()
}

#[test]
fn sbs_writer_reproduces_gemma_cpp_tiny_store_byte_for_byte() {
    let golden = data("blobstore_tiny.sbs");
    let ramp = ramp300();
    let written = write_blob_store(&[
        ("one", &[0x5A]),
        ("hello5", b"hello"),
        ("ramp300_exact16c", &ramp),
    ])
    .unwrap();
    assert_eq!(written.len(), golden.len());
    assert!(
        written == golden,
        "first difference at byte {:?}",
        written.iter().zip(&golden).position(|(a, b)| a != b)
    );

    // Read back with core's reader, then written again from what was read.
    let store = BlobStore::parse(&golden).unwrap();
    let mut w = BlobWriter::new(Vec::new()).unwrap();
    for b in store.blobs() {
        w.add(b.name, b.bytes).unwrap();
    }
    assert_eq!(w.len(), 3);
    assert!(w.finish().unwrap() == golden);

    // Streaming a blob from a reader gives the same file.
    let mut w = BlobWriter::new(Vec::new()).unwrap();
    w.add("one", &[0x5A]).unwrap();
    w.add_reader("hello5", 5, &b"hello, and more"[..]).unwrap();
    w.add_reader("ramp300_exact16c", 300, ramp.as_slice())
        .unwrap();
    assert!(w.finish().unwrap() == golden);
}

/// A sink that keeps only a file's first 256 and last `tail` bytes.
struct Window {
    pos: u64,
    tail_from: u64,
    head: Vec<u8>,
    tail: Vec<u8>,
}

impl Write for Window {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let start = self.pos;
        let end = start + buf.len() as u64;
        if start < 256 {
            let n = (256 - start).min(buf.len() as u64) as usize;
            self.head.extend_from_slice(&buf[..n]);
        }
        if end > self.tail_from {
            let skip = self.tail_from.saturating_sub(start) as usize;
            self.tail.extend_from_slice(&buf[skip..]);
        }
        self.pos = end;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes a file with the 270M model's blob names and sizes (zeros for the
/// tensors, the real `config` and `toc`) and compares the parts the goldens
/// hold.
fn check_model_layout(kind: &str) {
    let tail = data(&format!("model_{kind}_tail_dir_header.bin"));
    let last16 = &tail[tail.len() - 16..];
    let file_bytes = u64::from_le_bytes(last16[8..16].try_into().unwrap());
    let dir = Directory::from_tail(&tail, file_bytes).unwrap();
    let config = data(&format!("model_{kind}_config.bin"));
    let toc = data(&format!("model_{kind}_toc.bin"));

    let sink = Window {
        pos: 0,
        tail_from: file_bytes - tail.len() as u64,
        head: Vec::new(),
        tail: Vec::new(),
    };
    let mut w = BlobWriter::new(sink).unwrap();
    for e in dir.entries() {
        match e.name {
            "config" => w.add("config", &config).unwrap(),
            "toc" => w.add("toc", &toc).unwrap(),
            name => w
                .add_reader(name, e.size, io::repeat(0).take(e.size))
                .unwrap(),
        }
    }
    let out = w.finish().unwrap();
    assert_eq!(out.pos, file_bytes, "file size");
    assert!(out.head == data(&format!("model_{kind}_header256.bin")));
    assert!(out.tail == tail, "directory and header");
}

#[test]
fn sbs_writer_reproduces_the_270m_sfp_layout() {
    check_model_layout("sfp");
}

#[test]
fn sbs_writer_reproduces_the_270m_bf16_layout() {
    check_model_layout("bf16");
}

#[test]
fn sbs_writer_writes_config_and_toc_as_gemma_cpp_does() {
    for kind in ["sfp", "bf16"] {
        let config = data(&format!("model_{kind}_config.bin"));
        let parsed = ModelConfig::parse(&config).unwrap();
        assert!(config_bytes(&parsed).unwrap() == config);
        let toc = data(&format!("model_{kind}_toc.bin"));
        assert!(toc_bytes(Toc::parse(&toc).unwrap().iter()).unwrap() == toc);
    }
}

/// Deterministic values in [-2.5, 2.5] (beyond SFP's range, to exercise the
/// tensor scale).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 5.0 - 2.5
        })
        .collect()
}

#[test]
fn sbs_write_model_reads_back_through_sbs_file_with_every_codec() {
    let config_golden = data("model_sfp_config.bin");
    let config = ModelConfig::parse(&config_golden).unwrap();
    let names = ["t_f32", "t_bf16", "t_sfp", "t_nuq", "t_i8"];
    let (rows, cols) = (3u32, 300u32);
    let mut scratch = vec![0.0f32; NUQ_ENCODE_SCRATCH_LEN];
    let mut originals = Vec::new();
    let mut encoded = Vec::new();
    for (i, c) in Codec::ALL.into_iter().enumerate() {
        let mut v = values((rows * cols) as usize, i as u64 + 1);
        // gemma.cpp scales SFP and NUQ tensors into range and records the scale.
        let scale = match c {
            Codec::SFP | Codec::NUQ => codec::scale_to_sfp_range(&mut v),
            _ => 1.0,
        };
        let mut bytes = vec![0u8; c.bytes_for(v.len()).unwrap()];
        codec::encode(c, &v, &mut bytes, &mut scratch).unwrap();
        originals.push((v, scale));
        encoded.push((
            TocEntry::new(names[i], c, rows, cols, scale).unwrap(),
            bytes,
        ));
    }
    let tokenizer = b"\x0a\x05\x0a\x01a\x15\x00\x00\x00\x00";
    let file = write_model(
        Vec::new(),
        &config,
        tokenizer,
        encoded.iter().map(|(e, b)| (*e, b.as_slice())),
    )
    .unwrap();
    assert_eq!(file.len() % 65536, 0);

    let model = SbsFile::parse(&file).unwrap();
    assert_eq!(model.store.layout(), Layout::V2);
    assert_eq!(model.config, config);
    assert_eq!(model.tokenizer(), Some(&tokenizer[..]));
    let names_in_file: Vec<&str> = model.store.blobs().map(|b| b.name).collect();
    assert_eq!(
        names_in_file,
        [
            "t_f32",
            "t_bf16",
            "t_sfp",
            "t_nuq",
            "t_i8",
            "config",
            "tokenizer",
            "toc"
        ]
    );
    let tensors: Vec<_> = model.tensors().collect();
    assert_eq!(tensors.len(), 5);
    for ((t, (v, scale)), c) in tensors.iter().zip(&originals).zip(Codec::ALL) {
        assert_eq!((t.codec, t.rows, t.cols, t.scale), (c, 3, 300, *scale));
        assert_eq!(model.tensor(t.name), Some(*t));
        // Decode row by row (NUQ and I8 groups straddle rows) and compare
        // with the encoder's own round trip.
        let mut row = vec![0.0f32; t.cols];
        let mut want = vec![0.0f32; v.len()];
        let mut bytes = vec![0u8; c.bytes_for(v.len()).unwrap()];
        codec::encode(c, v, &mut bytes, &mut vec![0.0; NUQ_ENCODE_SCRATCH_LEN]).unwrap();
        codec::decode(c, &bytes, 0, &mut want).unwrap();
        for r in 0..t.rows {
            codec::decode(t.codec, t.bytes, r * t.cols, &mut row).unwrap();
            assert_eq!(
                row,
                want[r * t.cols..(r + 1) * t.cols],
                "{} row {r}",
                t.name
            );
        }
        if *scale != 1.0 {
            assert!(c == Codec::SFP || c == Codec::NUQ);
            assert!(*scale > 1.0 && *scale <= 2.5 / 1.875 + 1e-6);
        }
    }
}

#[test]
fn sbs_writer_refuses_what_gemma_cpp_cannot_store() {
    let mut w = BlobWriter::new(io::sink()).unwrap();
    assert!(matches!(w.add("", b"x"), Err(SbsWriteError::BadName(_))));
    assert!(matches!(
        w.add("seventeen_chars_x", b"x"),
        Err(SbsWriteError::BadName(_))
    ));
    assert!(matches!(
        w.add("a\0b", b"x"),
        Err(SbsWriteError::BadName(_))
    ));
    assert!(matches!(
        w.add("empty", b""),
        Err(SbsWriteError::EmptyBlob(_))
    ));
    w.add("sixteen_chars_ok", b"x").unwrap();
    assert!(matches!(
        w.add("sixteen_chars_ok", b"y"),
        Err(SbsWriteError::DuplicateName(_))
    ));
    assert!(matches!(
        w.add_reader("short", 10, &b"abc"[..]),
        Err(SbsWriteError::ShortBlob {
            expected: 10,
            got: 3,
            ..
        })
    ));
    assert!(matches!(
        BlobWriter::new(io::sink()).unwrap().finish(),
        Err(SbsWriteError::NoBlobs)
    ));

    // gemma.cpp writes fewer than 16384 blobs.
    let mut w = BlobWriter::new(io::sink()).unwrap();
    for i in 0..16383 {
        w.add(&format!("b{i}"), &[1]).unwrap();
    }
    assert!(matches!(
        w.add("one_too_many", &[1]),
        Err(SbsWriteError::TooManyBlobs)
    ));
    w.finish().unwrap();

    // Tensors must match their records.
    let config = ModelConfig::default();
    let e = TocEntry::new("w", Codec::BF16, 2, 2, 1.0).unwrap();
    let r = write_model(Vec::new(), &config, b"tok", [(e, &[0u8; 6][..])]);
    assert!(matches!(
        r,
        Err(SbsWriteError::Fields(SbsError::TensorSizeMismatch {
            tensor: 0,
            expected: 8,
            actual: 6
        }))
    ));
    let mut bad = e;
    bad.stride = 3;
    let r = write_model(Vec::new(), &config, b"tok", [(bad, &[0u8; 8][..])]);
    assert!(matches!(
        r,
        Err(SbsWriteError::Fields(SbsError::BadTensor { tensor: 0, .. }))
    ));
    // A config that cannot be serialized (gemma.cpp refuses non-finite floats).
    let nan = ModelConfig {
        att_cap: f32::NAN,
        ..ModelConfig::default()
    };
    assert!(matches!(
        write_model(Vec::new(), &nan, b"tok", [(e, &[0u8; 8][..])]),
        Err(SbsWriteError::Fields(SbsError::BadFloat { .. }))
    ));
    // Errors display as one line.
    let msg = SbsWriteError::BadName("x".repeat(17)).to_string();
    assert!(!msg.contains('\n'));
}
