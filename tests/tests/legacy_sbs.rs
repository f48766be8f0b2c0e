//! Pre-2025 gemma.cpp `.sbs` files (tensors only, keys with a type
//! character, header at the start, tokenizer in a separate file) migrate
//! to the current single-file format: `gemma convert --from old.sbs
//! --tokenizer tok.spm --to new.sbs`.
//!
//! The old file is built here from a current BF16 conversion of the real
//! model, blob for blob, in the old layout; migrating it back must give the
//! current file byte for byte. Files that are not old Gemma files are
//! refused with a reason.

use gemma_core::codec::Codec;
use gemma_core::format::sbs::SbsFile;
use gemma_platform::convert::{gguf_to_sbs, legacy_sbs_to_sbs};
use gemma_tests::{real_model_path, TempDir};
use std::path::{Path, PathBuf};

fn tokenizer_proto() -> Vec<u8> {
    let p =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../core/tests/data/gemma3-tokenizer.spm");
    std::fs::read(p).unwrap()
}

/// A blob store in the old layout: header `{magic, count, file bytes}` at
/// offset 0, the keys, the `{offset, size}` pairs, then each blob from a
/// multiple of 256, zero-padded to one.
fn old_blob_store(blobs: &[(String, &[u8])]) -> Vec<u8> {
    let n = blobs.len();
    let round = |x: usize| x.div_ceil(256) * 256;
    let mut offset = round(16 + 32 * n);
    let mut dir = Vec::new();
    for (_, bytes) in blobs {
        dir.push((offset as u64, bytes.len() as u64));
        offset = round(offset + bytes.len());
    }
    let mut out = Vec::with_capacity(offset);
    out.extend_from_slice(&0x0A53_4253u32.to_le_bytes());
    out.extend_from_slice(&(n as u32).to_le_bytes());
    out.extend_from_slice(&(offset as u64).to_le_bytes());
    for (key, _) in blobs {
        let mut k = [0u8; 16];
        k[..key.len()].copy_from_slice(key.as_bytes());
        out.extend_from_slice(&k);
    }
    for (o, s) in &dir {
        out.extend_from_slice(&o.to_le_bytes());
        out.extend_from_slice(&s.to_le_bytes());
    }
    for ((_, bytes), (o, _)) in blobs.iter().zip(&dir) {
        out.resize(*o as usize, 0);
        out.extend_from_slice(bytes);
    }
    out.resize(offset, 0);
    out
}

fn type_char(c: Codec) -> char {
    match c {
        Codec::F32 => 'F',
        Codec::BF16 => 'B',
        Codec::SFP => '$',
        Codec::NUQ => '2',
        Codec::I8 => 'I',
    }
}

/// The old file for the current file at `current`: every tensor under its
/// typed key, nothing else (plus `extra` blobs).
fn old_file_from(current: &[u8], extra: &[(String, &[u8])]) -> Vec<u8> {
    let f = SbsFile::parse(current).unwrap();
    let mut blobs: Vec<(String, &[u8])> = f
        .tensors()
        .map(|t| {
            assert_eq!(t.scale, 1.0, "{}: old files have no scales", t.name);
            (format!("{}{}", type_char(t.codec), t.name), t.bytes)
        })
        .collect();
    // Old files were written in their own order; the reader must not care.
    blobs.reverse();
    blobs.extend(extra.iter().cloned());
    old_blob_store(&blobs)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn an_old_file_migrates_to_the_current_file_byte_for_byte() {
    let dir = TempDir::new(env!("CARGO_TARGET_TMPDIR"), "legacy-sbs");
    let proto = tokenizer_proto();
    let current_path = dir.0.join("current.sbs");
    gguf_to_sbs(&real_model_path(), &current_path, Codec::BF16, &proto).unwrap();
    let current = std::fs::read(&current_path).unwrap();
    let old = write(&dir.0, "old.sbs", &old_file_from(&current, &[]));

    let migrated = dir.0.join("migrated.sbs");
    legacy_sbs_to_sbs(&old, &migrated, Codec::BF16, &proto, false).unwrap();
    assert!(
        std::fs::read(&migrated).unwrap() == current,
        "the migrated file differs from the direct conversion"
    );
    // The migrated file runs.
    let loaded = gemma_platform::LoadedModel::open(&migrated).unwrap();
    assert_eq!(loaded.model().config.n_layers, 18);

    // Refusals, each with its reason.
    let refuse = |path: &Path, what: &str| {
        let e = legacy_sbs_to_sbs(path, &dir.0.join("x.sbs"), Codec::BF16, &proto, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains(what), "{e}");
        assert!(!dir.0.join("x.sbs").exists());
    };
    refuse(&current_path, "already in the current format");
    let scales = [0u8; 16];
    let with_scales = old_file_from(&current, &[("Fscales".to_string(), &scales)]);
    refuse(&write(&dir.0, "scales.sbs", &with_scales), "Fscales");
    // Nineteen layers: no known model.
    let extra = [0u8; 1280];
    let deeper = old_file_from(&current, &[("Bpre_att_ns_18".to_string(), &extra)]);
    refuse(&write(&dir.0, "deeper.sbs", &deeper), "19 layers");
    // A layer matrix one row short.
    let f = SbsFile::parse(&current).unwrap();
    let mut blobs: Vec<(String, &[u8])> = f
        .tensors()
        .map(|t| {
            let bytes = if t.name == "linear_w_3" {
                &t.bytes[..t.bytes.len() - 2 * t.cols]
            } else {
                t.bytes
            };
            (format!("{}{}", type_char(t.codec), t.name), bytes)
        })
        .collect();
    blobs.sort();
    refuse(
        &write(&dir.0, "short.sbs", &old_blob_store(&blobs)),
        "linear_w_3",
    );
    refuse(
        &write(&dir.0, "garbage.sbs", b"not a blob store at all"),
        "",
    );
}
