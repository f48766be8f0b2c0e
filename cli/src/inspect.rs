//! `gemma info` on files that are not runnable models: safetensors
//! checkpoints (a file, or a Hugging Face directory of them) and
//! SentencePiece tokenizer protos. Each is validated in full, so `info`
//! doubles as a checker for files before a conversion.

use gemma_core::format::safetensors::Safetensors;
use gemma_core::format::spm::SpmModel;
use gemma_core::tokenizer::TokenizerTables;
use gemma_platform::loaded::{is_gguf, is_sbs, map_file};
use std::io::Write;
use std::path::Path;

/// What `info` should do with `path`.
pub enum Kind {
    /// GGUF or `.sbs`: load it as a model.
    Model,
    Safetensors,
    /// A directory holding `*.safetensors` files.
    SafetensorsDir,
    /// Anything else is tried as a SentencePiece proto.
    Other,
}

pub fn kind(path: &Path) -> Result<Kind, String> {
    if path.is_dir() {
        return Ok(Kind::SafetensorsDir);
    }
    let bytes = map_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(if is_gguf(&bytes) || is_sbs(&bytes) {
        Kind::Model
    } else if bytes.get(8) == Some(&b'{') {
        Kind::Safetensors
    } else {
        Kind::Other
    })
}

fn out(s: String) -> Result<(), String> {
    writeln!(std::io::stdout().lock(), "{s}").map_err(|e| e.to_string())
}

/// Prints one safetensors file's tensors (all of them with `all`).
pub fn safetensors(path: &Path, all: bool) -> Result<(), String> {
    let bytes = map_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let st = Safetensors::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    out(format!(
        "file: {} ({} bytes, safetensors, {} tensors)",
        path.display(),
        bytes.len(),
        st.len()
    ))?;
    if let Some(f) = st.metadata("format") {
        out(format!("metadata format: {f}"))?;
    }
    if all {
        for t in st.tensors() {
            out(format!(
                "  {:<48} {:<5} {:?} {} bytes",
                t.name,
                t.dtype.name(),
                t.shape(),
                t.data.len()
            ))?;
        }
    }
    Ok(())
}

/// Every `*.safetensors` file of a checkpoint directory, in name order.
pub fn safetensors_dir(dir: &Path, all: bool) -> Result<(), String> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    if files.is_empty() {
        return Err(format!("{}: no .safetensors files", dir.display()));
    }
    files.sort();
    if dir.join("config.json").is_file() {
        out(format!("config: {}", dir.join("config.json").display()))?;
    }
    for f in files {
        safetensors(&f, all)?;
    }
    Ok(())
}

/// A SentencePiece model proto: parsed, and its tokenizer built and tried.
pub fn spm(path: &Path) -> Result<(), String> {
    let bytes = map_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let not_a_model = |e: &dyn std::fmt::Display| {
        format!(
            "{}: not a GGUF, .sbs, safetensors or SentencePiece file ({e})",
            path.display()
        )
    };
    let model = SpmModel::parse(&bytes).map_err(|e| not_a_model(&e))?;
    let tables = TokenizerTables::from_spm(&bytes).map_err(|e| not_a_model(&e))?;
    let tok = tables.view(&bytes).map_err(|e| not_a_model(&e))?;
    let sample = "Hello, world!";
    let ids = tok
        .encode_to_vec(sample, true)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    out(format!(
        "file: {} ({} bytes, SentencePiece model, {} pieces)",
        path.display(),
        bytes.len(),
        model.piece_count()
    ))?;
    out(format!("{sample:?} -> {ids:?}"))
}
