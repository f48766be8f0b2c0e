//! What a user sees when they get something wrong: one line that names
//! their own file (never a temporary one, never twice) and says what to do.

use gemma_tests::real_model_path;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `gemma args` expecting failure; returns its one line of stderr
/// without the `gemma: error: ` prefix.
fn error_line(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_gemma"))
        .args(args)
        .env("GEMMA_MODEL", real_model_path())
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("all_proxy")
        .env_remove("ALL_PROXY")
        .output()
        .expect("gemma runs");
    assert!(!out.status.success(), "gemma {args:?} succeeded");
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "gemma {args:?}: not one line: {err}");
    lines[0]
        .strip_prefix("gemma: error: ")
        .unwrap_or_else(|| panic!("gemma {args:?}: {err}"))
        .to_string()
}

/// A folder of its own for one test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("gemma-msg-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_missing_model_is_named_once() {
    let line = error_line(&["run", "--model", "/nonexistent/m.gguf", "--prompt", "x"]);
    assert_eq!(line.matches("/nonexistent/m.gguf").count(), 1, "{line}");
    assert!(line.contains("No such file"), "{line}");
}

#[test]
fn a_directory_given_as_the_model_says_so() {
    let dir = Scratch::new("model-dir");
    let line = error_line(&["run", "--model", s(&dir.0), "--prompt", "x"]);
    assert!(line.contains(s(&dir.0)), "{line}");
    assert!(line.contains("is a directory, not a model file"), "{line}");
    assert!(!line.contains("os error"), "{line}");
}

#[test]
fn convert_to_a_missing_folder_names_the_output_not_its_temporary_file() {
    let dir = Scratch::new("convert-to");
    let to = dir.path("nodir/sub/m.sbs");
    let model = real_model_path();
    let line = error_line(&["convert", "--from", s(&model), "--to", s(&to)]);
    assert!(line.contains(s(&to)), "{line}");
    assert!(!line.contains(".tmp"), "{line}");
    assert!(
        line.contains(&format!(
            "the folder {} does not exist",
            s(&dir.path("nodir/sub"))
        )),
        "{line}"
    );
}

#[test]
fn a_tokenizer_that_is_not_one_is_named() {
    let dir = Scratch::new("tokenizer");
    let not_a_model = dir.path("notamodel.txt");
    std::fs::write(&not_a_model, "just some text\n").unwrap();
    let model = real_model_path();
    let to = dir.path("m.sbs");
    let line = error_line(&[
        "convert",
        "--from",
        s(&model),
        "--to",
        s(&to),
        "--tokenizer",
        s(&not_a_model),
    ]);
    assert!(line.contains(s(&not_a_model)), "{line}");
    assert!(
        line.contains("is not a SentencePiece tokenizer model"),
        "{line}"
    );
    assert!(
        line.contains("tokenizer.model"),
        "says what to give: {line}"
    );
    assert!(!to.exists(), "nothing is written");
}

#[test]
fn convert_from_a_folder_without_a_checkpoint_says_what_convert_reads() {
    let dir = Scratch::new("convert-from");
    let from = dir.path("not-a-checkpoint");
    std::fs::create_dir_all(&from).unwrap();
    let line = error_line(&["convert", "--from", s(&from), "--to", s(&dir.path("m.sbs"))]);
    assert!(line.contains(s(&from)), "{line}");
    assert!(
        line.contains("not a Hugging Face checkpoint directory (no config.json)"),
        "{line}"
    );
    assert!(line.contains("convert reads a GGUF file"), "{line}");
}

#[test]
fn a_client_without_a_server_asks_whether_one_is_running() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let line = error_line(&["client", "--url", &url, "--prompt", "hi"]);
    assert!(
        line.contains(&format!("is `gemma serve` running at {url}?")),
        "{line}"
    );
}

#[test]
fn converting_a_gguf_without_a_tokenizer_asks_for_one() {
    let dir = Scratch::new("convert-no-tokenizer");
    let model = real_model_path();
    let to = dir.path("m.sbs");
    let line = error_line(&["convert", "--from", s(&model), "--to", s(&to)]);
    assert!(line.contains(s(&model)), "{line}");
    assert!(line.contains("a tokenizer is required"), "{line}");
    assert!(line.contains("--tokenizer"), "says what to give: {line}");
    assert!(!to.exists(), "nothing is written");
}
