//! Where `unsafe` may appear, and that each use says why it is sound.
//!
//! Parsers and everything above the kernels that is not a backend
//! (`core/src/format`, `tokenizer`, `quant`, `codec`, `sampling`,
//! `generate`, `load`, `weights`, `model`) must have none. Everywhere else, every `unsafe` block, fn or
//! impl must have a `SAFETY:` comment on one of the six lines above it (or
//! a `# Safety` doc section, for `unsafe fn`).

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Lines that use `unsafe` as a keyword (not in comments or strings).
fn unsafe_lines(text: &str) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            let code = l.split("//").next().unwrap_or("");
            let code = code.trim_start();
            (code.contains("unsafe {")
                || code.contains("unsafe fn ")
                || code.contains("unsafe impl ")
                || code.ends_with("unsafe"))
                && !code.starts_with('*')
                && !code.contains("\"")
        })
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn parsers_have_no_unsafe_and_every_other_unsafe_says_why() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let parser_dirs = [
        "core/src/format",
        "core/src/tokenizer",
        "core/src/quant",
        "core/src/codec",
        "core/src/sampling",
        "core/src/generate.rs",
        "core/src/load",
        "core/src/weights",
        "core/src/model",
    ];
    let mut files = Vec::new();
    for dir in ["core/src", "platform/src", "cli/src", "gpu/src"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 30, "found only {} files", files.len());
    let mut problems = Vec::new();
    let mut uses = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let rel = f
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let lines: Vec<&str> = text.lines().collect();
        for i in unsafe_lines(&text) {
            uses += 1;
            if parser_dirs.iter().any(|d| rel.starts_with(d)) {
                problems.push(format!("{rel}:{}: unsafe in a parser", i + 1));
                continue;
            }
            let justified = lines[i.saturating_sub(6)..=i]
                .iter()
                .any(|l| l.contains("SAFETY:") || l.contains("# Safety"));
            if !justified {
                problems.push(format!("{rel}:{}: unsafe without a SAFETY: comment", i + 1));
            }
        }
    }
    assert!(uses > 10, "the scan found only {uses} uses of unsafe");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
