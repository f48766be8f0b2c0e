//! Where `gemma convert` reads a model's tensors from: any of the formats,
//! each tensor named by its role ([`TensorId`]) and handed over as f32.

use gemma_core::format::gguf::Gguf;
use gemma_core::quant;
use gemma_core::weights::TensorId;
use std::fmt;
use std::path::PathBuf;

/// What `gemma convert` accepts, for errors that say what to give instead.
const ACCEPTS: &str = "convert reads a GGUF file, a Hugging Face checkpoint directory \
                       (config.json and model.safetensors) or a gemma.cpp .sbs file";

/// Why a conversion failed. Errors about a file the user named keep its
/// path, and their text says what to do.
#[derive(Debug)]
pub enum ConvertError {
    /// What went wrong, in words that name what it concerns.
    Message(String),
    /// A file to read could not be opened or read.
    Read(PathBuf, std::io::Error),
    /// The file to write could not be created or put in place.
    Write(PathBuf, std::io::Error),
    /// The folder of the file to write does not exist.
    NoFolder { file: PathBuf, folder: PathBuf },
    /// The file to write is an existing directory.
    OutputIsDirectory(PathBuf),
    /// A directory without `config.json`.
    NotCheckpoint(PathBuf),
    /// The GGUF model to convert did not load.
    Load(crate::LoadError),
    /// A file that is neither GGUF nor `.sbs`.
    NotModel(PathBuf),
    /// A `--tokenizer` (or a checkpoint's `tokenizer.model`) that is not a
    /// SentencePiece model proto; the reason says why.
    NotTokenizer { path: PathBuf, reason: String },
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConvertError::Message(m) => f.write_str(m),
            ConvertError::Load(e) => e.fmt(f),
            ConvertError::Read(p, e) => write!(f, "cannot read {}: {e}", p.display()),
            ConvertError::Write(p, e) => write!(f, "cannot write {}: {e}", p.display()),
            ConvertError::NoFolder { file, folder } => write!(
                f,
                "cannot write {}: the folder {} does not exist (create it first)",
                file.display(),
                folder.display()
            ),
            ConvertError::OutputIsDirectory(p) => write!(
                f,
                "cannot write {}: it is a directory (give the .sbs file to write)",
                p.display()
            ),
            ConvertError::NotCheckpoint(p) => write!(
                f,
                "{} is not a Hugging Face checkpoint directory (no config.json); {ACCEPTS}",
                p.display()
            ),
            ConvertError::NotModel(p) => write!(
                f,
                "{} is not a model file (neither GGUF nor .sbs); {ACCEPTS}",
                p.display()
            ),
            ConvertError::NotTokenizer { path, reason } => write!(
                f,
                "{} is not a SentencePiece tokenizer model ({reason}); give the \
                 checkpoint's tokenizer.model or gemma.cpp's tokenizer.spm",
                path.display()
            ),
        }
    }
}

impl std::error::Error for ConvertError {}

pub(crate) fn err(s: impl Into<String>) -> ConvertError {
    ConvertError::Message(s.into())
}

/// A model's tensors by role: a GGUF file, a Hugging Face checkpoint
/// (`hf.rs`) or a pre-2025 gemma.cpp file (`legacy_sbs.rs`).
pub(crate) trait Source {
    /// A matrix as f32, `rows` output features of `cols` inputs each
    /// (a norm is one row).
    fn matrix(&self, id: TensorId, rows: usize, cols: usize) -> Result<Vec<f32>, ConvertError>;
    /// A norm gain in gemma.cpp's form: the `w` of `x * (1 + w)`.
    fn norm(&self, id: TensorId, n: usize) -> Result<Vec<f32>, ConvertError>;
}

/// A GGUF file, its tensors dequantized.
pub(crate) struct GgufSource<'a>(pub Gguf<'a>);

impl Source for GgufSource<'_> {
    fn matrix(&self, id: TensorId, rows: usize, cols: usize) -> Result<Vec<f32>, ConvertError> {
        let name = id.gguf_name();
        let t = self
            .0
            .tensor(&name)
            .ok_or_else(|| err(format!("missing tensor {name}")))?;
        if t.n_dims > 2
            || t.dims[0] as usize != cols
            || t.dims[1..t.n_dims.max(1)].iter().product::<u64>() as usize != rows
        {
            return Err(err(format!("tensor {name} has an unexpected shape")));
        }
        let mut out = vec![0f32; rows * cols];
        quant::dequantize(t.ty, t.data, &mut out).map_err(|e| err(format!("{name}: {e:?}")))?;
        Ok(out)
    }

    /// GGUF gains already include Gemma's `+1`.
    fn norm(&self, id: TensorId, n: usize) -> Result<Vec<f32>, ConvertError> {
        let mut v = self.matrix(id, 1, n)?;
        v.iter_mut().for_each(|x| *x -= 1.0);
        Ok(v)
    }
}
