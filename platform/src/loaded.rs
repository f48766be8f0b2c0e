//! A model file mapped into memory, with its tokenizer index built once.
//!
//! Core's views ([`Model`], [`Tokenizer`]) borrow the mapped bytes; this
//! type owns the mapping and the tokenizer's index and hands out fresh views,
//! which are cheap to make.

pub use crate::bytes::map_file;
use crate::bytes::FileBytes;
use gemma_core::cpu::CpuBackend;
use gemma_core::exec::Executor;
use gemma_core::format::gguf::{Gguf, GgufError};
use gemma_core::format::sbs::{SbsError, SbsFile};
use gemma_core::generate::{Session, SessionError, SessionSizes};
use gemma_core::kernels::Precision;
use gemma_core::load::{self, ModelError};
use gemma_core::model::{Model, ModelConfig};
use gemma_core::sampling::Candidate;
use gemma_core::tokenizer::{GgufVocab, Tokenizer, TokenizerError, TokenizerTables};
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub enum LoadError {
    /// The file could not be opened or mapped.
    Io(PathBuf, std::io::Error),
    /// The path names a directory, not a model file.
    Directory(PathBuf),
    /// What is wrong inside the file at the path ([`LoadedModel::open`]
    /// names its file in every error).
    InFile(PathBuf, Box<LoadError>),
    Gguf(GgufError),
    Sbs(SbsError),
    Model(ModelError),
    Tokenizer(TokenizerError),
    VocabMismatch {
        tokenizer: usize,
        model: usize,
    },
    MissingTokenizer,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io(p, e) => write!(f, "cannot open model {}: {e}", p.display()),
            LoadError::Directory(p) => write!(
                f,
                "{} is a directory, not a model file (give a .gguf or .sbs file)",
                p.display()
            ),
            LoadError::InFile(p, e) => write!(f, "{}: {e}", p.display()),
            LoadError::Gguf(e) => e.fmt(f),
            LoadError::Sbs(e) => e.fmt(f),
            LoadError::MissingTokenizer => f.write_str(".sbs file has no tokenizer blob"),
            LoadError::Model(e) => e.fmt(f),
            LoadError::Tokenizer(e) => write!(f, "tokenizer: {e}"),
            LoadError::VocabMismatch { tokenizer, model } => {
                write!(
                    f,
                    "the tokenizer has {tokenizer} pieces but the embedding {model} rows"
                )
            }
        }
    }
}

impl std::error::Error for LoadError {}

pub struct LoadedModel {
    path: PathBuf,
    bytes: FileBytes,
    tables: TokenizerTables,
    /// Where `tokenizer.ggml.tokens` (or an `.sbs` file's tokenizer proto)
    /// lies in the file, so tokenizer views need no header walk.
    vocab_range: std::ops::Range<usize>,
    format: Format,
    /// The arithmetic of the models [`LoadedModel::model`] hands out.
    precision: Precision,
}

/// Which container a model file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Gguf,
    /// gemma.cpp's single-file blob store.
    Sbs,
}

/// Whether `bytes` start like a GGUF file.
pub fn is_gguf(bytes: &[u8]) -> bool {
    bytes.get(..4) == Some(&b"GGUF"[..])
}

/// Whether `bytes` start like a gemma.cpp `.sbs` blob store.
pub fn is_sbs(bytes: &[u8]) -> bool {
    bytes.get(..4) == Some(&0x0A53_4253u32.to_le_bytes()[..])
}

impl LoadedModel {
    /// Maps a GGUF or `.sbs` file (told apart by magic) and validates its
    /// header, model and vocabulary. Every error names `path`.
    pub fn open(path: &Path) -> Result<Self, LoadError> {
        let bytes = map_file(path).map_err(|e| {
            if path.is_dir() {
                LoadError::Directory(path.to_path_buf())
            } else {
                LoadError::Io(path.to_path_buf(), e)
            }
        })?;
        Self::from_bytes(path.to_path_buf(), bytes)
            .map_err(|e| LoadError::InFile(path.to_path_buf(), Box::new(e)))
    }

    /// A model held in memory (tests, embedded assets).
    pub fn from_vec(name: &str, bytes: Vec<u8>) -> Result<Self, LoadError> {
        Self::from_bytes(PathBuf::from(name), FileBytes::Owned(bytes))
    }

    fn from_bytes(path: PathBuf, bytes: FileBytes) -> Result<Self, LoadError> {
        if is_sbs(&bytes) {
            return Self::from_sbs_bytes(path, bytes);
        }
        let gguf = Gguf::parse(&bytes).map_err(LoadError::Gguf)?;
        // Validates every tensor; views are made afresh by `model()`.
        let vocab_size = load::gguf::model(&gguf)
            .map_err(LoadError::Model)?
            .config
            .vocab_size;
        let vocab = GgufVocab::from_gguf(&gguf).map_err(LoadError::Tokenizer)?;
        let tables = TokenizerTables::from_gguf(&vocab).map_err(LoadError::Tokenizer)?;
        if vocab.count() != vocab_size {
            return Err(LoadError::VocabMismatch {
                tokenizer: vocab.count(),
                model: vocab_size,
            });
        }
        // The array is a sub-slice of `bytes`; its offset is plain address arithmetic.
        let source = vocab.source();
        let start = source.as_ptr() as usize - bytes.as_ptr() as usize;
        let vocab_range = start..start + source.len();
        Ok(Self {
            path,
            bytes,
            tables,
            vocab_range,
            format: Format::Gguf,
            precision: Precision::Exact,
        })
    }

    fn from_sbs_bytes(path: PathBuf, bytes: FileBytes) -> Result<Self, LoadError> {
        let file = SbsFile::parse(&bytes).map_err(LoadError::Sbs)?;
        let vocab_size = load::sbs::model(&file)
            .map_err(LoadError::Model)?
            .config
            .vocab_size;
        let proto = file.tokenizer().ok_or(LoadError::MissingTokenizer)?;
        let tables = TokenizerTables::from_spm(proto).map_err(LoadError::Tokenizer)?;
        let count = gemma_core::tokenizer::Tokenizer::spm_vocab_size(proto)
            .map_err(LoadError::Tokenizer)?;
        if count != vocab_size {
            return Err(LoadError::VocabMismatch {
                tokenizer: count,
                model: vocab_size,
            });
        }
        let start = proto.as_ptr() as usize - bytes.as_ptr() as usize;
        let vocab_range = start..start + proto.len();
        Ok(Self {
            path,
            bytes,
            tables,
            vocab_range,
            format: Format::Sbs,
            precision: Precision::Exact,
        })
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file_len(&self) -> usize {
        self.bytes.len()
    }

    /// The GGUF header; `None` for an `.sbs` file.
    pub fn gguf(&self) -> Option<Gguf<'_>> {
        // Validated in `from_bytes`; the bytes have not changed since.
        (self.format == Format::Gguf)
            .then(|| Gguf::parse(&self.bytes).expect("GGUF validated at load"))
    }

    /// The blob store, config and tensor table; `None` for a GGUF file.
    pub fn sbs(&self) -> Option<SbsFile<'_>> {
        (self.format == Format::Sbs)
            .then(|| SbsFile::parse(&self.bytes).expect(".sbs validated at load"))
    }

    pub fn model(&self) -> Model<'_> {
        let model = match self.format {
            Format::Gguf => load::gguf::model(&self.gguf().expect("GGUF")),
            Format::Sbs => load::sbs::model(&self.sbs().expect(".sbs")),
        };
        model.expect("model validated at load")
    }

    /// Sets the arithmetic generation on this model uses
    /// ([`Precision::Exact`] unless set).
    pub fn set_precision(&mut self, precision: Precision) {
        self.precision = precision;
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    pub fn tokenizer(&self) -> Tokenizer<'_> {
        self.tables
            .view(&self.bytes[self.vocab_range.clone()])
            .expect("tokenizer validated at load")
    }
}

/// Heap buffers for a [`gemma_core::generate::Session`] on one CPU
/// backend.
pub struct SessionBuffers {
    pub floats: Vec<f32>,
    pub candidates: Vec<Candidate>,
    max_context: usize,
    max_batch: usize,
}

/// A CPU backend over [`SessionBuffers`], with the logits row and sampling
/// candidates a [`gemma_core::generate::Session`] takes next to it.
pub struct CpuParts<'a> {
    pub backend: CpuBackend<'a>,
    pub logits: &'a mut [f32],
    pub candidates: &'a mut [Candidate],
}

impl SessionBuffers {
    /// Buffers for `max_context` positions and passes of `max_batch` tokens.
    pub fn new(cfg: &ModelConfig, max_context: usize, max_batch: usize) -> Option<Self> {
        let sizes = SessionSizes::new(cfg, max_context, max_batch)?;
        Some(Self {
            floats: vec![0.0; sizes.floats],
            candidates: vec![Candidate::default(); sizes.candidates],
            max_context,
            max_batch,
        })
    }

    pub fn max_context(&self) -> usize {
        self.max_context
    }

    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Memory held, in bytes.
    pub fn bytes(&self) -> usize {
        self.floats.len() * 4 + self.candidates.len() * std::mem::size_of::<Candidate>()
    }

    /// Runs `f` with a [`Session`] on a CPU backend for every layer of
    /// `model`, on `exec` at `precision`, over these buffers (what the
    /// cache holds stays in them for the next session).
    pub fn with_session<R>(
        &mut self,
        model: &Model,
        exec: &dyn Executor,
        precision: Precision,
        f: impl FnOnce(&mut Session) -> R,
    ) -> Result<R, SessionError> {
        let parts = self.cpu(model, exec, precision)?;
        let mut backend = parts.backend;
        let mut session =
            Session::new(&model.config, &mut backend, parts.logits, parts.candidates)?;
        Ok(f(&mut session))
    }

    /// A CPU backend for every layer of `model`, running on `exec` at
    /// `precision`, with the rest of a session's memory (for a session the
    /// caller assembles itself, e.g. with other backends; otherwise
    /// [`Self::with_session`]).
    pub fn cpu<'a>(
        &'a mut self,
        model: &'a Model<'a>,
        exec: &'a dyn Executor,
        precision: Precision,
    ) -> Result<CpuParts<'a>, SessionError> {
        let cfg = &model.config;
        let (floats, logits) = SessionSizes::split(cfg, &mut self.floats)?;
        let backend = CpuBackend::new(
            model,
            exec,
            0..cfg.n_layers,
            self.max_context,
            self.max_batch,
            floats,
        )
        .map_err(|_| SessionError::BuffersTooSmall)?
        .with_precision(precision);
        Ok(CpuParts {
            backend,
            logits,
            candidates: &mut self.candidates,
        })
    }
}
