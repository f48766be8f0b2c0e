//! A corpus of hostile files across every format `gemma` reads (GGUF,
//! gemma.cpp `.sbs`, safetensors, SentencePiece protos), each fed to
//! `gemma info`: every one must exit non-zero with exactly one
//! `gemma: error:` line, never a panic, abort or signal.
//!
//! The files come from `gemma_tests::hostile` (generated from small valid
//! ones by the edits each case names). `GEMMA_WRITE_HOSTILE_CORPUS=dir`
//! also keeps them in `dir`, e.g. to seed the fuzzers.

use gemma_tests::hostile::corpus;
use std::path::PathBuf;
use std::process::Command;

#[test]
fn every_hostile_file_gets_one_error_line_from_gemma_info() {
    let dir = std::env::var_os("GEMMA_WRITE_HOSTILE_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("hostile-{}", std::process::id()))
        });
    let keep = std::env::var_os("GEMMA_WRITE_HOSTILE_CORPUS").is_some();
    let groups = corpus();
    let mut total = 0;
    let mut failures = Vec::new();
    for (format, cases) in groups {
        std::fs::create_dir_all(dir.join(format)).unwrap();
        assert!(cases.len() >= 7, "{format}: too few cases");
        for (name, bytes) in cases {
            let path = dir.join(format).join(format!("{name}.{format}"));
            std::fs::write(&path, &bytes).unwrap();
            let out = Command::new(env!("CARGO_BIN_EXE_gemma"))
                .args(["info", "--check", "--model"])
                .arg(&path)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
            let ok = out.status.code().is_some_and(|c| c != 0)
                && lines.len() == 1
                && lines[0].starts_with("gemma: error: ")
                && !err.contains("panicked");
            if !ok {
                failures.push(format!("{format}/{name}: {:?}: {err}", out.status));
            }
            total += 1;
        }
    }
    if !keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(total >= 50, "only {total} hostile files");
    eprintln!("{total} hostile files, each refused with one error line");
}
