//! Builds `tests/nostd-demo` (a `#![no_std]`, `panic = "abort"` static
//! library over gemma-core with default features off, so no allocator),
//! links it into a C program with gcc, runs it, and checks that its tokens
//! equal those of the std path on the same tiny model.

use gemma_core::generate::{GenerateOptions, Session};
use gemma_core::kernels::Precision;
use gemma_core::model::Prompt;
use gemma_core::sampling::Sampler;
use gemma_platform::synthetic::{tiny_model, TinySpec};
use gemma_platform::{LoadedModel, SessionBuffers};
use std::path::PathBuf;
use std::process::Command;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn ids_after(line_start: &str, text: &str) -> Vec<u32> {
    let line = text
        .lines()
        .find(|l| l.starts_with(line_start))
        .expect("line present");
    line[line_start.len()..]
        .split_whitespace()
        .map(|t| t.parse().unwrap())
        .collect()
}

#[test]
fn nostd_static_library_tokenizes_and_generates_like_the_std_path() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let demo = root.join("nostd-demo");
    let work = std::env::temp_dir().join(format!("gemma-nostd-demo-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let model_bytes = tiny_model(&TinySpec::default());
    let model_path = work.join("tiny.gguf");
    std::fs::write(&model_path, &model_bytes).unwrap();

    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../target"))
        .join("nostd-demo");
    run(Command::new(env!("CARGO"))
        .args(["build", "--release", "--manifest-path"])
        .arg(demo.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .env("GEMMA_DEMO_MODEL", &model_path)
        .env_remove("RUSTFLAGS"));
    let lib = target.join("release/libgemma_nostd_demo.a");
    let exe = work.join("demo");
    run(Command::new("gcc")
        .arg(demo.join("main.c"))
        .arg(&lib)
        .arg("-o")
        .arg(&exe)
        .arg("-Wl,--gc-sections"));
    let out = run(&mut Command::new(&exe));

    // The same work through the std layer.
    let loaded = LoadedModel::from_vec("tiny.gguf", model_bytes).unwrap();
    let tok = loaded.tokenizer();
    let model = loaded.model();
    let mut prompt = vec![tok.bos_id()];
    prompt.extend(tok.encode_to_vec("hello the", true).unwrap());
    let mut bufs = SessionBuffers::new(&model.config, 32, 8).unwrap();
    let parts = bufs
        .cpu(&model, &gemma_core::exec::Serial, Precision::Exact)
        .unwrap();
    let mut backend = parts.backend;
    let mut session =
        Session::new(&model.config, &mut backend, parts.logits, parts.candidates).unwrap();
    let opts = GenerateOptions {
        max_new_tokens: 8,
        stop_tokens: &[],
        prefill_progress: None,
        adjust_logits: None,
    };
    let mut want = vec![];
    session
        .generate(
            Prompt::tokens(&prompt),
            &mut Sampler::greedy(),
            &opts,
            &mut |t| {
                want.push(t);
                true
            },
        )
        .unwrap();

    assert_eq!(ids_after("prompt:", &out), prompt);
    assert_eq!(ids_after("generated:", &out), want);
    assert!(
        prompt.len() >= 3,
        "the prompt merges into pieces: {prompt:?}"
    );
    let _ = std::fs::remove_dir_all(&work);
}
