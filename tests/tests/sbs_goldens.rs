//! The real model converted to gemma.cpp's `.sbs` (F32, BF16, SFP) and run
//! through the same forward pass, teacher-forced against the goldens.
//! Conversions go to a temporary directory removed at the end.

use gemma_core::codec::Codec;
use gemma_core::format::sbs::BlobStore;
use gemma_platform::convert::gguf_to_sbs;
use gemma_platform::loaded::Format;
use gemma_platform::LoadedModel;
use gemma_tests::{real_model_path, teacher_forced, TempDir, Tolerances};
use std::path::PathBuf;

fn tokenizer_proto() -> Vec<u8> {
    let p =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../core/tests/data/gemma3-tokenizer.spm");
    std::fs::read(p).unwrap()
}

fn gemma_cpp_data(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../core/tests/data/gemmacpp")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The file gemma.cpp wrote from the same GGUF (SFP or BF16 weights) is
/// known by its first 256 bytes, its last 5936 (directory and header, so
/// every blob's offset and size), its `config` and `toc` blobs, the whole
/// `c_final_norm` blob and the first 4096 bytes of `qkv_ein_0`. Ours must
/// equal all of them.
fn assert_gemma_cpp_bytes(path: &std::path::Path, kind: &str) {
    let file = std::fs::read(path).unwrap();
    let same = |what: &str, ours: &[u8], golden: &str| {
        assert!(
            ours == gemma_cpp_data(&format!("model_{kind}_{golden}.bin")).as_slice(),
            "{kind}: {what} differs from gemma.cpp's"
        );
    };
    same("header", &file[..256], "header256");
    let tail = gemma_cpp_data(&format!("model_{kind}_tail_dir_header.bin"));
    same(
        "directory",
        &file[file.len() - tail.len()..],
        "tail_dir_header",
    );
    let store = BlobStore::parse(&file).unwrap();
    let blob = |name: &str| store.blob(name).unwrap();
    same("config", blob("config"), "config");
    same("toc", blob("toc"), "toc");
    same("c_final_norm", blob("c_final_norm"), "c_final_norm");
    same(
        "qkv_ein_0",
        &blob("qkv_ein_0")[..4096],
        "qkv_ein_0_head4096",
    );
}

/// Converts the real model with `codec`, loads it, drops the file (the
/// mapping stays valid) and teacher-forces `prompts`.
fn check(codec: Codec, prompts: &[usize], tol: &Tolerances) {
    let dir = TempDir::new(
        env!("CARGO_TARGET_TMPDIR"),
        &format!("sbs-{}", codec.name()),
    );
    let path = dir.0.join("model.sbs");
    gguf_to_sbs(&real_model_path(), &path, codec, &tokenizer_proto()).unwrap();
    match codec {
        Codec::SFP => assert_gemma_cpp_bytes(&path, "sfp"),
        Codec::BF16 => assert_gemma_cpp_bytes(&path, "bf16"),
        _ => {}
    }
    let loaded = LoadedModel::open(&path).unwrap();
    drop(dir);
    assert_eq!(loaded.format(), Format::Sbs);
    let gguf = LoadedModel::open(&real_model_path()).unwrap();
    assert_eq!(loaded.model().config.n_layers, gguf.model().config.n_layers);
    // The embedded proto tokenizes as the GGUF vocabulary does.
    let text = "The capital of France is Paris.  Ünïcödé 🙂\n<start_of_turn>";
    assert_eq!(
        loaded.tokenizer().encode_to_vec(text, true).unwrap(),
        gguf.tokenizer().encode_to_vec(text, true).unwrap()
    );
    let mut worst = 0f32;
    for &i in prompts {
        worst = worst.max(teacher_forced(&loaded, i, tol));
    }
    eprintln!(
        "{}: worst top-20 logit difference {worst:.3e}",
        codec.name()
    );
}

#[test]
fn f32_sbs_matches_goldens() {
    check(Codec::F32, &[0, 1], &Tolerances::GGUF);
}

/// BF16 weights: measured worst top-20 difference 0.174 (prompt 1; 0.05 to
/// 0.08 elsewhere): BF16 keeps 8 significant bits, and logits near 30 move
/// by a few tenths of a percent.
#[test]
fn bf16_sbs_matches_goldens() {
    let tol = Tolerances {
        top20: 0.2,
        top1_margin: 0.2,
        prompt_argmax: 0.3,
    };
    check(Codec::BF16, &[0, 1, 2, 3, 4], &tol);
}

/// SFP weights re-quantize Q4_K values (about 3 significant bits each), so
/// the noise of two quantizations adds up: measured worst top-20 difference
/// 3.29 (prompt 1; 1.2 to 2.6 elsewhere). Top-1 agrees wherever the golden
/// margin exceeds 2; a 0.5 margin is not enough.
#[test]
fn sfp_sbs_matches_goldens() {
    let tol = Tolerances {
        top20: 3.5,
        top1_margin: 2.0,
        prompt_argmax: 3.5,
    };
    check(Codec::SFP, &[0, 1, 2, 3, 4], &tol);
}

/// I8 weights (8-bit codes on a per-128 affine grid with BF16 scale and
/// zero point): a step of 1/255 of each group's range, finer than SFP's 3
/// mantissa bits but coarser than BF16's 8. Measured worst top-20
/// difference 0.79 (prompt 1; 0.29 to 0.66 elsewhere); the bar, also on the
/// top-1 margin and prompt argmax, leaves a third more.
const I8_BAR: f32 = 1.05;

#[test]
fn i8_sbs_matches_goldens() {
    let tol = Tolerances {
        top20: I8_BAR,
        top1_margin: I8_BAR,
        prompt_argmax: I8_BAR,
    };
    check(Codec::I8, &[0, 1, 2, 3, 4], &tol);
}
