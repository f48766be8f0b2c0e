//! Gemma model (GGUF file, or a Hugging Face checkpoint through `hf.rs`) →
//! gemma.cpp `.sbs` single-file model.
//!
//! Every source tensor is read as f32 (a [`Source`]: GGUF dequantized, or
//! safetensors F32/BF16/F16), rearranged into gemma.cpp's
//! layouts (see `gemma_core::format::sbs`: Q/K/V stacked in `qkv_ein`, the
//! output projection head-major in `att_ein`, gate and up stacked in
//! `gating_ein`, norm gains minus one) and encoded with the chosen codec.
//! Norm gains are BF16 (F32 when the weights are F32) and the embedding
//! BF16 (F32 likewise), as gemma.cpp stores them; SFP and NUQ tensors are
//! scaled into SFP's range with the scale in their `toc` record.
//!
//! Tensors stream to a temporary file next to the target, one at a time
//! (the largest, the embedding, is the peak: `vocab * d_model` floats), and
//! the file is renamed into place once complete.

use crate::compare::Distortion;
use crate::sbs_writer::{toc_bytes, BlobWriter};
pub use crate::source::ConvertError;
use crate::source::{err, GgufSource, Source};
use crate::LoadedModel;
use gemma_core::codec::{self, Codec, NUQ_ENCODE_SCRATCH_LEN};
use gemma_core::format::sbs::{
    ConfigStorage, KnownModel, PromptWrapping, TensorType, TocEntry, KNOWN_MODELS,
};
use gemma_core::model::{Family, ModelConfig};
use gemma_core::tokenizer::Tokenizer;
use gemma_core::weights::{Role, TensorId};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Refuses a model whose hyperparameters differ from gemma.cpp's canonical
/// ones for `known`: gemma.cpp would run it with the wrong shapes.
fn check_known(known: &KnownModel, cfg: &ModelConfig) -> Result<(), ConvertError> {
    let ours = (
        cfg.vocab_size,
        cfg.d_ff,
        cfg.n_heads,
        cfg.n_kv_heads,
        cfg.head_dim,
        cfg.post_norms,
        cfg.qk_norm,
    );
    let theirs = (
        known.vocab_size as usize,
        known.ff_hidden_dim as usize,
        known.heads as usize,
        known.kv_heads as usize,
        known.qkv_dim as usize,
        true,
        known.use_qk_norm,
    );
    if ours != theirs {
        return Err(err(format!(
            "the model's shapes (vocab, ff, heads, kv heads, head dim, post norms, qk norm) \
             {ours:?} differ from gemma.cpp's {} {theirs:?}",
            known.display_name
        )));
    }
    for l in 0..cfg.n_layers {
        let window = if cfg.is_local(l) {
            cfg.sliding_window as u32
        } else {
            known.max_seq_len
        };
        if window != known.window(l) {
            return Err(err(format!(
                "layer {l}'s attention window {window} differs from gemma.cpp's {}",
                known.window(l)
            )));
        }
    }
    Ok(())
}

/// The model gemma.cpp knows with this family, depth and width (text
/// models only: PaliGemma shares Gemma 2's language models).
fn known_model(cfg: &ModelConfig) -> Result<&'static KnownModel, ConvertError> {
    let gemma3 = cfg.family == Family::Gemma3;
    KNOWN_MODELS
        .iter()
        .find(|k| {
            k.default_wrapping != PromptWrapping::PaliGemma
                && k.use_qk_norm == gemma3
                && k.num_layers as usize == cfg.n_layers
                && k.model_dim as usize == cfg.d_model
        })
        .ok_or_else(|| {
            err(format!(
                "no gemma.cpp model is a {:?} with {} layers of width {}",
                cfg.family, cfg.n_layers, cfg.d_model
            ))
        })
}

struct Out<'p> {
    w: BlobWriter<BufWriter<File>>,
    records: Vec<(String, Codec, u32, u32, f32)>,
    scratch: Vec<f32>,
    /// Each tensor's compression error, when asked for.
    distortions: Option<Vec<TensorDistortion>>,
    /// Told (tensors written, `total`) after each tensor.
    progress: Progress<'p>,
    total: usize,
}

/// What a conversion tells as it goes: `(tensors written, tensors in all)`,
/// `(0, n)` before the first tensor and then after each (see [`to_sbs`]).
pub type Progress<'p> = &'p dyn Fn(usize, usize);

/// A conversion's [`Progress`] that nobody watches.
fn unwatched(_: usize, _: usize) {}

/// How much one tensor lost to its codec: decoded values against the
/// values that were encoded (what `gemma convert --distortion` prints).
#[derive(Clone, Debug)]
pub struct TensorDistortion {
    pub name: String,
    pub codec: Codec,
    pub distortion: Distortion,
}

impl Out<'_> {
    /// Encodes `values` (`rows x cols`, row-major) as tensor `name`.
    fn tensor(
        &mut self,
        name: String,
        codec: Codec,
        rows: usize,
        cols: usize,
        mut values: Vec<f32>,
    ) -> Result<(), ConvertError> {
        let scale = match codec {
            Codec::SFP | Codec::NUQ => codec::scale_to_sfp_range(&mut values),
            _ => 1.0,
        };
        let bytes = codec
            .bytes_for(values.len())
            .ok_or_else(|| err("tensor too large"))?;
        let mut dst = vec![0u8; bytes];
        codec::encode(codec, &values, &mut dst, &mut self.scratch)
            .map_err(|e| err(format!("{name}: {e}")))?;
        if let Some(list) = &mut self.distortions {
            let mut back = vec![0f32; values.len()];
            codec::decode(codec, &dst, 0, &mut back).map_err(|e| err(format!("{name}: {e}")))?;
            // Compare in the tensor's own units: undo the SFP/NUQ tensor
            // scale on both sides.
            let mut d = Distortion::default();
            if scale == 1.0 {
                d.add(&values, &back);
            } else {
                let orig: Vec<f32> = values.iter().map(|v| v * scale).collect();
                back.iter_mut().for_each(|v| *v *= scale);
                d.add(&orig, &back);
            }
            list.push(TensorDistortion {
                name: name.clone(),
                codec,
                distortion: d,
            });
        }
        self.w
            .add(&name, &dst)
            .map_err(|e| err(format!("{name}: {e}")))?;
        self.records
            .push((name, codec, rows as u32, cols as u32, scale));
        (self.progress)(self.records.len(), self.total);
        Ok(())
    }
}

/// What a conversion reads, told by [`input_kind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// A GGUF file ([`gguf_to_sbs`]).
    Gguf,
    /// A Hugging Face checkpoint directory ([`hf_to_sbs`]).
    Checkpoint,
    /// A gemma.cpp blob store ([`legacy_sbs_to_sbs`]).
    Sbs,
}

/// Which kind of source `path` is: a directory with `config.json`, or a
/// file told by its magic. A missing path, a directory without
/// `config.json` and a file of any other kind are errors that name `path`
/// and say what a conversion reads.
pub fn input_kind(path: &Path) -> Result<Input, ConvertError> {
    use std::io::Read;
    if path.is_dir() {
        return if path.join("config.json").is_file() {
            Ok(Input::Checkpoint)
        } else {
            Err(ConvertError::NotCheckpoint(path.to_path_buf()))
        };
    }
    let mut magic = Vec::with_capacity(4);
    File::open(path)
        .and_then(|f| f.take(4).read_to_end(&mut magic))
        .map_err(|e| ConvertError::Read(path.to_path_buf(), e))?;
    if crate::loaded::is_gguf(&magic) {
        Ok(Input::Gguf)
    } else if crate::loaded::is_sbs(&magic) {
        Ok(Input::Sbs)
    } else {
        Err(ConvertError::NotModel(path.to_path_buf()))
    }
}

/// Reads the SentencePiece model proto at `path` and checks that it is
/// one (it parses and holds pieces); the error names `path`.
pub fn read_tokenizer(path: &Path) -> Result<Vec<u8>, ConvertError> {
    let bytes = std::fs::read(path).map_err(|e| ConvertError::Read(path.to_path_buf(), e))?;
    let not = |reason: String| ConvertError::NotTokenizer {
        path: path.to_path_buf(),
        reason,
    };
    match Tokenizer::spm_vocab_size(&bytes) {
        Ok(0) => Err(not("it holds no pieces".into())),
        Ok(_) => Ok(bytes),
        Err(e) => Err(not(e.to_string())),
    }
}

/// Whether `to` can be written: not a directory, in a folder that exists.
/// The conversions check this before reading anything, so a mistyped
/// `to` fails at once.
pub fn check_output(to: &Path) -> Result<(), ConvertError> {
    if to.is_dir() {
        return Err(ConvertError::OutputIsDirectory(to.to_path_buf()));
    }
    match missing_folder(to) {
        Some(folder) => Err(ConvertError::NoFolder {
            file: to.to_path_buf(),
            folder,
        }),
        None => Ok(()),
    }
}

/// `to`'s folder, if it does not exist (a bare file name's folder is the
/// current one).
fn missing_folder(to: &Path) -> Option<PathBuf> {
    to.parent()
        .filter(|f| !f.as_os_str().is_empty() && !f.exists())
        .map(Path::to_path_buf)
}

/// An error about writing `to` (never about its temporary file, which the
/// user did not name).
fn write_error(to: &Path, e: std::io::Error) -> ConvertError {
    match missing_folder(to) {
        Some(folder) => ConvertError::NoFolder {
            file: to.to_path_buf(),
            folder,
        },
        None => ConvertError::Write(to.to_path_buf(), e),
    }
}

/// Converts the GGUF model at `from` into an `.sbs` file at `to`, encoding
/// matrices with `weights`. `tokenizer` is the SentencePiece model proto to
/// embed (GGUF files carry only the vocabulary, not the proto); its piece
/// count must match the model's vocabulary.
pub fn gguf_to_sbs(
    from: &Path,
    to: &Path,
    weights: Codec,
    tokenizer: &[u8],
) -> Result<(), ConvertError> {
    convert(from, to, weights, tokenizer, false, &unwatched).map(|_| ())
}

/// [`gguf_to_sbs`], also returning every tensor's compression error.
pub fn gguf_to_sbs_measured(
    from: &Path,
    to: &Path,
    weights: Codec,
    tokenizer: &[u8],
) -> Result<Vec<TensorDistortion>, ConvertError> {
    convert(from, to, weights, tokenizer, true, &unwatched).map(|d| d.unwrap_or_default())
}

fn convert(
    from: &Path,
    to: &Path,
    weights: Codec,
    tokenizer: &[u8],
    measure: bool,
    progress: Progress,
) -> Result<Option<Vec<TensorDistortion>>, ConvertError> {
    check_output(to)?;
    let loaded = LoadedModel::open(from).map_err(ConvertError::Load)?;
    let g = loaded
        .gguf()
        .ok_or_else(|| err(format!("{} is not a GGUF file", from.display())))?;
    let cfg = loaded.model().config;
    write_sbs(
        &GgufSource(g),
        &cfg,
        to,
        weights,
        tokenizer,
        measure,
        progress,
    )
}

/// Migrates a pre-2025 gemma.cpp weights file (no `config`, `toc` or
/// `tokenizer` blob; see [`crate::legacy_sbs`]) and its separate tokenizer
/// into a current single-file `.sbs`, its matrices re-encoded with
/// `weights` (the file's own codec keeps them as they were: decoding and
/// encoding again gives the same codes). Returns each tensor's compression
/// error when `measure`.
pub fn legacy_sbs_to_sbs(
    from: &Path,
    to: &Path,
    weights: Codec,
    tokenizer: &[u8],
    measure: bool,
) -> Result<Option<Vec<TensorDistortion>>, ConvertError> {
    legacy(from, to, weights, tokenizer, measure, &unwatched)
}

fn legacy(
    from: &Path,
    to: &Path,
    weights: Codec,
    tokenizer: &[u8],
    measure: bool,
    progress: Progress,
) -> Result<Option<Vec<TensorDistortion>>, ConvertError> {
    check_output(to)?;
    let bytes =
        crate::bytes::map_file(from).map_err(|e| ConvertError::Read(from.to_path_buf(), e))?;
    let legacy = crate::legacy_sbs::LegacySbs::parse(&bytes)
        .map_err(|e| err(format!("{}: {e}", from.display())))?;
    let cfg = legacy.config()?;
    write_sbs(&legacy, &cfg, to, weights, tokenizer, measure, progress)
}

/// Converts the checkpoint in `dir` into an `.sbs` file; the tokenizer is
/// `tokenizer` if given, else the directory's `tokenizer.model`.
pub fn hf_to_sbs(
    dir: &Path,
    to: &Path,
    weights: gemma_core::codec::Codec,
    tokenizer: Option<&[u8]>,
    measure: bool,
) -> Result<Option<Vec<TensorDistortion>>, ConvertError> {
    hf(dir, to, weights, tokenizer, measure, &unwatched)
}

fn hf(
    dir: &Path,
    to: &Path,
    weights: Codec,
    tokenizer: Option<&[u8]>,
    measure: bool,
    progress: Progress,
) -> Result<Option<Vec<TensorDistortion>>, ConvertError> {
    check_output(to)?;
    let ckpt = crate::hf::HfCheckpoint::open(dir)?;
    let owned;
    let proto = match tokenizer {
        Some(t) => t,
        None => {
            let p = dir.join("tokenizer.model");
            if !p.is_file() {
                return Err(err(format!(
                    "{} has no tokenizer.model (pass --tokenizer for a checkpoint without one)",
                    dir.display()
                )));
            }
            owned = read_tokenizer(&p)?;
            &owned[..]
        }
    };
    write_sbs(&ckpt, &ckpt.config, to, weights, proto, measure, progress)
}

/// Converts `from`, a source of kind `input` (see [`input_kind`]), into
/// an `.sbs` file at `to`, as [`hf_to_sbs`], [`legacy_sbs_to_sbs`] and
/// [`gguf_to_sbs_measured`] do, telling `progress` how many tensors are
/// written. `tokenizer` may be `None` only for a checkpoint with its own
/// `tokenizer.model`; each tensor's compression error comes back when
/// `measure`.
pub fn to_sbs(
    input: Input,
    from: &Path,
    to: &Path,
    weights: Codec,
    tokenizer: Option<&[u8]>,
    measure: bool,
    progress: Progress,
) -> Result<Option<Vec<TensorDistortion>>, ConvertError> {
    // Only a checkpoint carries its tokenizer's proto; checked before any
    // reading, so the answer comes at once.
    let needed = || {
        let what = match input {
            Input::Gguf => "a GGUF file carries no SentencePiece proto",
            _ => "a pre-2025 .sbs file carries no tokenizer",
        };
        err(format!(
            "{}: a tokenizer is required ({what}; gemma convert takes it with \
             --tokenizer tokenizer.model)",
            from.display()
        ))
    };
    match input {
        Input::Checkpoint => hf(from, to, weights, tokenizer, measure, progress),
        Input::Sbs => legacy(
            from,
            to,
            weights,
            tokenizer.ok_or_else(needed)?,
            measure,
            progress,
        ),
        Input::Gguf => convert(
            from,
            to,
            weights,
            tokenizer.ok_or_else(needed)?,
            measure,
            progress,
        ),
    }
}

/// Writes `source`'s tensors, laid out and encoded for gemma.cpp, with
/// the canonical config of the known model `cfg` describes, to a temporary
/// file renamed to `to` once complete.
pub(crate) fn write_sbs(
    source: &dyn Source,
    cfg: &ModelConfig,
    to: &Path,
    weights: Codec,
    tokenizer: &[u8],
    measure: bool,
    progress: Progress,
) -> Result<Option<Vec<TensorDistortion>>, ConvertError> {
    let cfg = *cfg;
    let known = known_model(&cfg)?;
    let pieces = Tokenizer::spm_vocab_size(tokenizer).map_err(|e| err(e.to_string()))?;
    if pieces != cfg.vocab_size {
        return Err(err(format!(
            "the tokenizer has {pieces} pieces, the model {} embedding rows",
            cfg.vocab_size
        )));
    }
    let small = if weights == Codec::F32 {
        Codec::F32
    } else {
        Codec::BF16
    };
    let tmp: PathBuf = {
        let mut s = to.as_os_str().to_owned();
        s.push(".tmp");
        s.into()
    };
    let file = File::create(&tmp).map_err(|e| write_error(to, e))?;
    let result = (|| {
        let w = BlobWriter::new(BufWriter::with_capacity(1 << 20, file))
            .map_err(|e| err(e.to_string()))?;
        let mut out = Out {
            w,
            records: Vec::new(),
            scratch: vec![0f32; NUQ_ENCODE_SCRATCH_LEN],
            distortions: measure.then(Vec::new),
            progress,
            total: tensor_count(&cfg),
        };
        progress(0, out.total);
        write_tensors(source, &cfg, weights, small, &mut out)?;
        check_known(known, &cfg)?;
        let mut storage = ConfigStorage::default();
        let sbs_cfg = known.config(
            TensorType::from_codec(weights),
            PromptWrapping::GemmaPt,
            &mut storage,
        );
        let Out {
            mut w,
            records,
            distortions,
            ..
        } = out;
        let out_records = records;
        w.add_fields("config", &sbs_cfg)
            .map_err(|e| err(e.to_string()))?;
        w.add("tokenizer", tokenizer)
            .map_err(|e| err(e.to_string()))?;
        let mut entries = Vec::with_capacity(out_records.len());
        for (name, codec, rows, cols, scale) in &out_records {
            entries.push(
                TocEntry::new(name, *codec, *rows, *cols, *scale)
                    .ok_or_else(|| err(format!("{name}: counts overflow")))?,
            );
        }
        let toc = toc_bytes(entries).map_err(|e| err(e.to_string()))?;
        w.add("toc", &toc).map_err(|e| err(e.to_string()))?;
        let mut buf = w.finish().map_err(|e| err(e.to_string()))?;
        buf.flush().map_err(|e| err(e.to_string()))?;
        let file = buf.into_inner().map_err(|e| err(e.to_string()))?;
        file.sync_all().map_err(|e| err(e.to_string()))?;
        Ok(distortions)
    })();
    let result = result.and_then(|d| {
        std::fs::rename(&tmp, to)
            .map_err(|e| write_error(to, e))
            .map(|()| d)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A layer's norms in gemma.cpp's order; a model has those its config
/// requires.
const LAYER_NORMS: [Role; 6] = [
    Role::AttnNorm,
    Role::FfnNorm,
    Role::PostAttnNorm,
    Role::PostFfwNorm,
    Role::QNorm,
    Role::KNorm,
];

/// How many tensors [`write_tensors`] writes for `cfg`: the embedding and
/// the final norm, and in each layer four matrices and its norms.
fn tensor_count(cfg: &ModelConfig) -> usize {
    let norms = LAYER_NORMS
        .iter()
        .filter(|r| r.required(cfg.qk_norm, cfg.post_norms))
        .count();
    2 + cfg.n_layers * (4 + norms)
}

fn write_tensors(
    src: &dyn Source,
    cfg: &ModelConfig,
    weights: Codec,
    small: Codec,
    out: &mut Out,
) -> Result<(), ConvertError> {
    let (d, hd, ff, h) = (cfg.d_model, cfg.head_dim, cfg.d_ff, cfg.n_heads);
    let top = |role| TensorId::global(role);
    let name = |id: TensorId| id.sbs_name().to_string();
    out.tensor(
        name(top(Role::Embedding)),
        small,
        cfg.vocab_size,
        d,
        src.matrix(top(Role::Embedding), cfg.vocab_size, d)?,
    )?;
    out.tensor(
        name(top(Role::FinalNorm)),
        small,
        1,
        d,
        src.norm(top(Role::FinalNorm), d)?,
    )?;
    for l in 0..cfg.n_layers {
        let id = |role| TensorId::layer(role, l);
        // Q rows, then for each KV head its K rows and its V rows.
        let kvh = cfg.n_kv_heads;
        let mut qkv = src.matrix(id(Role::Q), h * hd, d)?;
        let (k, v) = (
            src.matrix(id(Role::K), kvh * hd, d)?,
            src.matrix(id(Role::V), kvh * hd, d)?,
        );
        for j in 0..kvh {
            qkv.extend_from_slice(&k[j * hd * d..(j + 1) * hd * d]);
            qkv.extend_from_slice(&v[j * hd * d..(j + 1) * hd * d]);
        }
        out.tensor(name(id(Role::Q)), weights, (h + 2 * kvh) * hd, d, qkv)?;
        // The output projection is [d, h*hd]; att_ein row h*d + m holds its
        // row m's columns h*hd..(h+1)*hd.
        let o = src.matrix(id(Role::O), d, h * hd)?;
        let mut att = vec![0f32; h * d * hd];
        for head in 0..h {
            for m in 0..d {
                let row = &o[m * h * hd + head * hd..m * h * hd + (head + 1) * hd];
                att[(head * d + m) * hd..(head * d + m + 1) * hd].copy_from_slice(row);
            }
        }
        out.tensor(name(id(Role::O)), weights, h * d, hd, att)?;
        let mut gating = src.matrix(id(Role::Gate), ff, d)?;
        gating.extend(src.matrix(id(Role::Up), ff, d)?);
        out.tensor(name(id(Role::Gate)), weights, 2 * ff, d, gating)?;
        let down = src.matrix(id(Role::Down), d, ff)?;
        out.tensor(name(id(Role::Down)), weights, d, ff, down)?;
        for role in LAYER_NORMS {
            if role.required(cfg.qk_norm, cfg.post_norms) {
                let (_, n) = id(role).shape(&cfg.dims());
                out.tensor(name(id(role)), small, 1, n, src.norm(id(role), n)?)?;
            }
        }
    }
    debug_assert_eq!(out.records.len(), out.total);
    Ok(())
}
