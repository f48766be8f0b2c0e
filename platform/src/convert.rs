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
use gemma_core::codec::{self, Codec, NUQ_ENCODE_SCRATCH_LEN};
use gemma_core::format::gguf::Gguf;
use gemma_core::format::sbs::{
    ConfigStorage, KnownModel, PromptWrapping, TensorType, TocEntry, KNOWN_MODELS,
};
use gemma_core::model::{Family, ModelConfig};
use gemma_core::quant;
use gemma_core::tokenizer::Tokenizer;
use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct ConvertError(pub String);

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConvertError {}

pub(crate) fn err(s: impl Into<String>) -> ConvertError {
    ConvertError(s.into())
}

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

struct Out {
    w: BlobWriter<BufWriter<File>>,
    records: Vec<(String, Codec, u32, u32, f32)>,
    scratch: Vec<f32>,
    /// Each tensor's compression error, when asked for.
    distortions: Option<Vec<TensorDistortion>>,
}

/// How much one tensor lost to its codec: decoded values against the
/// values that were encoded (what `gemma convert --distortion` prints).
#[derive(Clone, Debug)]
pub struct TensorDistortion {
    pub name: String,
    pub codec: Codec,
    pub distortion: Distortion,
}

impl Out {
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
        Ok(())
    }
}

/// One tensor of a Gemma 2/3 model, by role.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Weight {
    Embedding,
    FinalNorm,
    Q(usize),
    K(usize),
    V(usize),
    O(usize),
    Gate(usize),
    Up(usize),
    Down(usize),
    AttnNorm(usize),
    FfnNorm(usize),
    PostAttnNorm(usize),
    PostFfwNorm(usize),
    QNorm(usize),
    KNorm(usize),
}

/// Where the converter reads tensors from: a GGUF file or a Hugging Face
/// checkpoint.
pub(crate) trait Source {
    /// A matrix as f32, `rows` output features of `cols` inputs each
    /// (a norm is one row).
    fn matrix(&self, w: Weight, rows: usize, cols: usize) -> Result<Vec<f32>, ConvertError>;
    /// A norm gain in gemma.cpp's form: the `w` of `x * (1 + w)`.
    fn norm(&self, w: Weight, n: usize) -> Result<Vec<f32>, ConvertError>;
}

struct GgufSource<'a>(Gguf<'a>);

impl GgufSource<'_> {
    fn name(w: Weight) -> String {
        let blk = |l: usize, s: &str| format!("blk.{l}.{s}.weight");
        match w {
            Weight::Embedding => "token_embd.weight".into(),
            Weight::FinalNorm => "output_norm.weight".into(),
            Weight::Q(l) => blk(l, "attn_q"),
            Weight::K(l) => blk(l, "attn_k"),
            Weight::V(l) => blk(l, "attn_v"),
            Weight::O(l) => blk(l, "attn_output"),
            Weight::Gate(l) => blk(l, "ffn_gate"),
            Weight::Up(l) => blk(l, "ffn_up"),
            Weight::Down(l) => blk(l, "ffn_down"),
            Weight::AttnNorm(l) => blk(l, "attn_norm"),
            Weight::FfnNorm(l) => blk(l, "ffn_norm"),
            Weight::PostAttnNorm(l) => blk(l, "post_attention_norm"),
            Weight::PostFfwNorm(l) => blk(l, "post_ffw_norm"),
            Weight::QNorm(l) => blk(l, "attn_q_norm"),
            Weight::KNorm(l) => blk(l, "attn_k_norm"),
        }
    }
}

impl Source for GgufSource<'_> {
    fn matrix(&self, w: Weight, rows: usize, cols: usize) -> Result<Vec<f32>, ConvertError> {
        let name = Self::name(w);
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
    fn norm(&self, w: Weight, n: usize) -> Result<Vec<f32>, ConvertError> {
        let mut v = self.matrix(w, 1, n)?;
        v.iter_mut().for_each(|x| *x -= 1.0);
        Ok(v)
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
    convert(from, to, weights, tokenizer, false).map(|_| ())
}

/// [`gguf_to_sbs`], also returning every tensor's compression error.
pub fn gguf_to_sbs_measured(
    from: &Path,
    to: &Path,
    weights: Codec,
    tokenizer: &[u8],
) -> Result<Vec<TensorDistortion>, ConvertError> {
    convert(from, to, weights, tokenizer, true).map(|d| d.unwrap_or_default())
}

fn convert(
    from: &Path,
    to: &Path,
    weights: Codec,
    tokenizer: &[u8],
    measure: bool,
) -> Result<Option<Vec<TensorDistortion>>, ConvertError> {
    let loaded = crate::LoadedModel::open(from).map_err(|e| err(e.to_string()))?;
    let g = loaded
        .gguf()
        .ok_or_else(|| err(format!("{} is not a GGUF file", from.display())))?;
    let cfg = loaded.model().config;
    write_sbs(&GgufSource(g), &cfg, to, weights, tokenizer, measure)
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
    let bytes =
        crate::loaded::map_file(from).map_err(|e| err(format!("{}: {e}", from.display())))?;
    let legacy = crate::legacy_sbs::LegacySbs::parse(&bytes)
        .map_err(|e| err(format!("{}: {e}", from.display())))?;
    let cfg = legacy.config()?;
    write_sbs(&legacy, &cfg, to, weights, tokenizer, measure)
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
    let file = File::create(&tmp).map_err(|e| err(format!("{}: {e}", tmp.display())))?;
    let result = (|| {
        let w = BlobWriter::new(BufWriter::with_capacity(1 << 20, file))
            .map_err(|e| err(e.to_string()))?;
        let mut out = Out {
            w,
            records: Vec::new(),
            scratch: vec![0f32; NUQ_ENCODE_SCRATCH_LEN],
            distortions: measure.then(Vec::new),
        };
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
    match result {
        Ok(d) => std::fs::rename(&tmp, to)
            .map(|()| d)
            .map_err(|e| err(format!("{}: {e}", to.display()))),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn write_tensors(
    src: &dyn Source,
    cfg: &ModelConfig,
    weights: Codec,
    small: Codec,
    out: &mut Out,
) -> Result<(), ConvertError> {
    let (d, hd, ff, h) = (cfg.d_model, cfg.head_dim, cfg.d_ff, cfg.n_heads);
    out.tensor(
        "c_embedding".into(),
        small,
        cfg.vocab_size,
        d,
        src.matrix(Weight::Embedding, cfg.vocab_size, d)?,
    )?;
    out.tensor(
        "c_final_norm".into(),
        small,
        1,
        d,
        src.norm(Weight::FinalNorm, d)?,
    )?;
    for l in 0..cfg.n_layers {
        // Q rows, then for each KV head its K rows and its V rows.
        let kvh = cfg.n_kv_heads;
        let mut qkv = src.matrix(Weight::Q(l), h * hd, d)?;
        let (k, v) = (
            src.matrix(Weight::K(l), kvh * hd, d)?,
            src.matrix(Weight::V(l), kvh * hd, d)?,
        );
        for j in 0..kvh {
            qkv.extend_from_slice(&k[j * hd * d..(j + 1) * hd * d]);
            qkv.extend_from_slice(&v[j * hd * d..(j + 1) * hd * d]);
        }
        out.tensor(format!("qkv_ein_{l}"), weights, (h + 2 * kvh) * hd, d, qkv)?;
        // The output projection is [d, h*hd]; att_ein row h*d + m holds its
        // row m's columns h*hd..(h+1)*hd.
        let o = src.matrix(Weight::O(l), d, h * hd)?;
        let mut att = vec![0f32; h * d * hd];
        for head in 0..h {
            for m in 0..d {
                let row = &o[m * h * hd + head * hd..m * h * hd + (head + 1) * hd];
                att[(head * d + m) * hd..(head * d + m + 1) * hd].copy_from_slice(row);
            }
        }
        out.tensor(format!("att_ein_{l}"), weights, h * d, hd, att)?;
        let mut gating = src.matrix(Weight::Gate(l), ff, d)?;
        gating.extend(src.matrix(Weight::Up(l), ff, d)?);
        out.tensor(format!("gating_ein_{l}"), weights, 2 * ff, d, gating)?;
        let down = src.matrix(Weight::Down(l), d, ff)?;
        out.tensor(format!("linear_w_{l}"), weights, d, ff, down)?;
        let mut norm = |w: Weight, sbs: &str, n: usize| -> Result<(), ConvertError> {
            let v = src.norm(w, n)?;
            out.tensor(format!("{sbs}_{l}"), small, 1, n, v)
        };
        norm(Weight::AttnNorm(l), "pre_att_ns", d)?;
        norm(Weight::FfnNorm(l), "pre_ff_ns", d)?;
        if cfg.post_norms {
            norm(Weight::PostAttnNorm(l), "post_att_ns", d)?;
            norm(Weight::PostFfwNorm(l), "post_ff_ns", d)?;
        }
        if cfg.qk_norm {
            norm(Weight::QNorm(l), "query_norm", hd)?;
            norm(Weight::KNorm(l), "key_norm", hd)?;
        }
    }
    Ok(())
}
