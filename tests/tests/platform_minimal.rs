//! Builds `tests/platform-minimal` (gemma-platform without its `threads`
//! and `mmap` features: no rayon, no memmap2), runs it on a tiny model
//! file, and checks that it runs on one thread and generates the tokens
//! the full build does.

use gemma_core::sampling::Sampler;
use gemma_platform::synthetic::{tiny_model, TinySpec};
use gemma_platform::{Conversation, Generator, LoadedModel, WorkerPool};
use std::path::PathBuf;
use std::process::Command;

fn line<'a>(text: &'a str, start: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(start))
        .unwrap_or_else(|| panic!("no {start:?} line in:\n{text}"))
        .trim()
}

#[test]
fn platform_without_rayon_or_memmap2_loads_and_generates_like_the_full_build() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("platform-minimal");
    std::fs::create_dir_all(&work).unwrap();
    let model = work.join("tiny.gguf");
    std::fs::write(&model, tiny_model(&TinySpec::default())).unwrap();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../target"))
        .join("platform-minimal");
    let out = Command::new(env!("CARGO"))
        .args(["run", "-q", "--manifest-path"])
        .arg(root.join("platform-minimal/Cargo.toml"))
        .arg("--")
        .arg(&model)
        .arg("hello the")
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(line(&stdout, "threads:"), "1");

    // The same turn through the full build (rayon, memmap2).
    let loaded = LoadedModel::open(&model).unwrap();
    let pool = WorkerPool::new(2).unwrap();
    let generator = Generator::new(&loaded, &pool);
    let tok = generator.tokenizer;
    let mut prompt = vec![tok.bos_id()];
    prompt.extend(tok.encode_to_vec("hello the", true).unwrap());
    let mut conv = Conversation::new(&generator.model, 32, 8).unwrap();
    let want = generator
        .turn(&mut conv, &prompt, &mut Sampler::greedy(), 8, &mut |_| true)
        .unwrap();
    let ids = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(" ");
    assert_eq!(line(&stdout, "prompt:"), ids(&prompt));
    assert_eq!(line(&stdout, "generated:"), ids(&want.ids));
    assert_eq!(want.ids.len(), 8);
}
