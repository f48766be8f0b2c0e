//! The Gemma forward pass, written once for every family and weight format.
//!
//! Per block: RMSNorm → Q/K/V → (QK-norm) → RoPE → attention → output
//! projection → (post-norm) → residual; RMSNorm → GELU-gated FFW →
//! (post-norm) → residual. A batch of `n` tokens goes through each weight
//! matrix as one matrix product.

use super::attention::{attend, Mask};
use super::config::{ConfigError, ModelConfig};
use super::kv_cache::KvCache;
use super::weights::{Matrix, Weights, WeightsError};
use crate::exec::Executor;
use crate::format::gguf::Gguf;
use crate::kernels::matmul::matmul_with;
use crate::kernels::ops::{gelu_gate, rms_norm, rms_norm_inplace, rope_apply, rope_table, softcap};
use crate::kernels::{for_row_chunks, Precision};
use core::fmt;

/// A model: its configuration, borrowed weights, and the arithmetic its
/// matrix products use.
#[derive(Clone, Copy, Debug)]
pub struct Model<'a> {
    pub config: ModelConfig,
    pub weights: Weights<'a>,
    pub precision: Precision,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelError {
    Config(ConfigError),
    Weights(WeightsError),
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::Config(e) => e.fmt(f),
            ModelError::Weights(e) => e.fmt(f),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardError {
    /// A token id at or above the vocabulary size.
    TokenOutOfRange { token: u32, vocab: usize },
    /// The positions would run past the KV cache's context.
    ContextFull { needed: usize, max: usize },
    /// More tokens than the scratch and cache were sized for in one call.
    BatchTooLarge { got: usize, max: usize },
    /// A bidirectional prefix must be fed in the same call that starts it.
    PrefixSplit,
    /// Scratch or cache built for another configuration.
    Mismatch,
}

impl fmt::Display for ForwardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ForwardError::TokenOutOfRange { token, vocab } => {
                write!(f, "token id {token} is outside the vocabulary of {vocab}")
            }
            ForwardError::ContextFull { needed, max } => {
                write!(
                    f,
                    "context full: {needed} positions needed, the cache holds {max}"
                )
            }
            ForwardError::BatchTooLarge { got, max } => {
                write!(f, "{got} tokens in one pass, at most {max}")
            }
            ForwardError::PrefixSplit => {
                write!(
                    f,
                    "a bidirectional prefix must be processed in a single pass"
                )
            }
            ForwardError::Mismatch => write!(f, "scratch or cache was sized for another model"),
        }
    }
}

/// Activation buffers for batches of up to `max_batch` tokens, carved from
/// one caller-provided slice.
pub struct Scratch<'a> {
    max_batch: usize,
    x: &'a mut [f32],
    xn: &'a mut [f32],
    q: &'a mut [f32],
    k: &'a mut [f32],
    v: &'a mut [f32],
    att: &'a mut [f32],
    gate: &'a mut [f32],
    up: &'a mut [f32],
    cos: &'a mut [f32],
    sin: &'a mut [f32],
    /// Final-normed hidden states of the last pass, `n x d_model`.
    hidden: &'a mut [f32],
}

fn scratch_sizes(cfg: &ModelConfig, b: usize) -> Option<[usize; 11]> {
    let half = cfg.head_dim / 2;
    let m = |x: usize| b.checked_mul(x);
    Some([
        m(cfg.d_model)?,
        m(cfg.d_model)?,
        m(cfg.q_dim())?,
        m(cfg.kv_dim())?,
        m(cfg.kv_dim())?,
        m(cfg.q_dim())?,
        m(cfg.d_ff)?,
        m(cfg.d_ff)?,
        // cos and sin: a local-layer table, then a global-layer one.
        m(half)?.checked_mul(2)?,
        m(half)?.checked_mul(2)?,
        m(cfg.d_model)?,
    ])
}

impl<'a> Scratch<'a> {
    pub fn required_len(cfg: &ModelConfig, max_batch: usize) -> Option<usize> {
        scratch_sizes(cfg, max_batch)?
            .iter()
            .try_fold(0usize, |a, &s| a.checked_add(s))
    }

    pub fn new(cfg: &ModelConfig, max_batch: usize, buf: &'a mut [f32]) -> Option<Self> {
        if max_batch == 0 || buf.len() < Self::required_len(cfg, max_batch)? {
            return None;
        }
        let sizes = scratch_sizes(cfg, max_batch)?;
        let mut rest = buf;
        let mut take = |n: usize| {
            let (head, tail) = core::mem::take(&mut rest).split_at_mut(n);
            rest = tail;
            head
        };
        Some(Self {
            max_batch,
            x: take(sizes[0]),
            xn: take(sizes[1]),
            q: take(sizes[2]),
            k: take(sizes[3]),
            v: take(sizes[4]),
            att: take(sizes[5]),
            gate: take(sizes[6]),
            up: take(sizes[7]),
            cos: take(sizes[8]),
            sin: take(sizes[9]),
            hidden: take(sizes[10]),
        })
    }

    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Final-normed hidden states written by the last [`Model::forward`].
    pub fn hidden(&self) -> &[f32] {
        self.hidden
    }
}

impl<'a> Model<'a> {
    pub fn from_gguf(g: &Gguf<'a>) -> Result<Self, ModelError> {
        let config = ModelConfig::from_gguf(g).map_err(ModelError::Config)?;
        let weights = Weights::from_gguf(g, &config).map_err(ModelError::Weights)?;
        Ok(Self {
            config,
            weights,
            precision: Precision::Exact,
        })
    }

    /// A gemma.cpp `.sbs` model: same forward pass, weights decoded with
    /// gemma.cpp's codecs.
    pub fn from_sbs(f: &crate::format::sbs::SbsFile<'a>) -> Result<Self, ModelError> {
        let config = ModelConfig::from_sbs(&f.config).map_err(ModelError::Config)?;
        let weights = Weights::from_sbs(f, &config).map_err(ModelError::Weights)?;
        Ok(Self {
            config,
            weights,
            precision: Precision::Exact,
        })
    }

    /// The same model with its matrix products at `precision`.
    pub fn with_precision(self, precision: Precision) -> Self {
        Self { precision, ..self }
    }

    /// Runs `tokens` at positions `start..start + tokens.len()`, storing their
    /// keys and values in `cache` and leaving the final-normed hidden state
    /// of every token in [`Scratch::hidden`]. Keys before `prefix_end` are
    /// visible to every query of the prefix.
    pub fn forward(
        &self,
        exec: &dyn Executor,
        tokens: &[u32],
        start: usize,
        prefix_end: usize,
        cache: &mut KvCache,
        s: &mut Scratch,
    ) -> Result<(), ForwardError> {
        let cfg = &self.config;
        let n = tokens.len();
        if n > s.max_batch || n > cache.max_batch() {
            return Err(ForwardError::BatchTooLarge {
                got: n,
                max: s.max_batch.min(cache.max_batch()),
            });
        }
        let end = start.checked_add(n).ok_or(ForwardError::ContextFull {
            needed: usize::MAX,
            max: cache.max_context(),
        })?;
        if end > cache.max_context() {
            return Err(ForwardError::ContextFull {
                needed: end,
                max: cache.max_context(),
            });
        }
        if prefix_end > end && start < prefix_end {
            return Err(ForwardError::PrefixSplit);
        }
        if s.x.len() != s.max_batch * cfg.d_model {
            return Err(ForwardError::Mismatch);
        }
        let d = cfg.d_model;
        for (b, &t) in tokens.iter().enumerate() {
            if t as usize >= cfg.vocab_size {
                return Err(ForwardError::TokenOutOfRange {
                    token: t,
                    vocab: cfg.vocab_size,
                });
            }
            let row = &mut s.x[b * d..(b + 1) * d];
            let e = &self.weights.embed;
            if !e.decode_span(t as usize, 0, row) {
                return Err(ForwardError::Mismatch);
            }
            row.iter_mut().for_each(|v| *v *= cfg.embed_scale);
        }
        // RoPE tables, once per pass for each kind of layer present (local
        // and global layers rotate with different bases).
        let half = cfg.head_dim / 2;
        let table = s.max_batch * half;
        for (kind, local) in [true, false].into_iter().enumerate() {
            if !(0..cfg.n_layers).any(|l| cfg.is_local(l) == local) {
                continue;
            }
            let (base, scale) = if local {
                (cfg.rope_base_local, 1.0)
            } else {
                (cfg.rope_base_global, cfg.rope_scale_global)
            };
            let (cos, sin) = (
                &mut s.cos[kind * table..][..n * half],
                &mut s.sin[kind * table..][..n * half],
            );
            for (b, (c, sn)) in cos
                .chunks_exact_mut(half)
                .zip(sin.chunks_exact_mut(half))
                .enumerate()
            {
                rope_table(start + b, base, scale, c, sn);
            }
        }
        for layer in 0..cfg.n_layers {
            self.block(exec, layer, start, n, prefix_end, cache, s);
        }
        for b in 0..n {
            rms_norm(
                &s.x[b * d..(b + 1) * d],
                &self.weights.final_norm,
                cfg.rms_eps,
                cfg.norm_gain_plus_one,
                &mut s.hidden[b * d..(b + 1) * d],
            );
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn block(
        &self,
        exec: &dyn Executor,
        layer: usize,
        start: usize,
        n: usize,
        prefix_end: usize,
        cache: &mut KvCache,
        s: &mut Scratch,
    ) {
        let cfg = &self.config;
        let w = &self.weights.layers[layer];
        let (d, hd, half) = (cfg.d_model, cfg.head_dim, cfg.head_dim / 2);
        let (eps, p1) = (cfg.rms_eps, cfg.norm_gain_plus_one);
        // Per-token steps run on the executor's threads too; each task
        // takes whole rows (tokens).
        let norm_rows = |x: &[f32], gain: &Matrix, out: &mut [f32]| {
            for_row_chunks(exec, &mut out[..n * d], d, &|first, rows| {
                for (row, src) in rows.chunks_exact_mut(d).zip(x[first * d..].chunks_exact(d)) {
                    rms_norm(src, gain, eps, p1, row);
                }
            });
        };
        // x += post_norm(y) (or x += y): the residual connection.
        let add_residual = |x: &mut [f32], y: &mut [f32], post_norm: &Matrix| {
            if cfg.post_norms {
                for_row_chunks(exec, &mut y[..n * d], d, &|_, rows| {
                    for row in rows.chunks_exact_mut(d) {
                        rms_norm_inplace(row, post_norm, eps, p1);
                    }
                });
            }
            let y = &*y;
            for_row_chunks(exec, &mut x[..n * d], d, &|first, rows| {
                add_into(rows, &y[first * d..]);
            });
        };

        // Attention.
        norm_rows(s.x, &w.attn_norm, s.xn);
        matmul_with(exec, &w.q, s.xn, n, s.q, self.precision);
        matmul_with(exec, &w.k, s.xn, n, s.k, self.precision);
        matmul_with(exec, &w.v, s.xn, n, s.v, self.precision);

        let local = cfg.is_local(layer);
        // The table forward() filled for this kind of layer.
        let table = if local { 0 } else { s.max_batch * half };
        for b in 0..n {
            let (c, sn) = (
                &s.cos[table + b * half..table + (b + 1) * half],
                &s.sin[table + b * half..table + (b + 1) * half],
            );
            for head in s.q[b * cfg.q_dim()..(b + 1) * cfg.q_dim()].chunks_exact_mut(hd) {
                if cfg.qk_norm {
                    rms_norm_inplace(head, &w.q_norm, eps, p1);
                }
                rope_apply(head, c, sn);
                head.iter_mut().for_each(|v| *v *= cfg.query_scale);
            }
            for head in s.k[b * cfg.kv_dim()..(b + 1) * cfg.kv_dim()].chunks_exact_mut(hd) {
                if cfg.qk_norm {
                    rms_norm_inplace(head, &w.k_norm, eps, p1);
                }
                rope_apply(head, c, sn);
            }
            let kv = cfg.kv_dim();
            cache.store(
                layer,
                start + b,
                &s.k[b * kv..(b + 1) * kv],
                &s.v[b * kv..(b + 1) * kv],
            );
        }
        let mask = Mask {
            window: if local { cfg.sliding_window } else { 0 },
            prefix_end,
            written_end: start + n,
        };
        attend(exec, cfg, layer, cache, s.q, start, n, mask, s.att);
        matmul_with(exec, &w.o, s.att, n, s.xn, self.precision);
        add_residual(s.x, s.xn, &w.post_attn_norm);

        // Feed-forward.
        norm_rows(s.x, &w.ffn_norm, s.xn);
        matmul_with(exec, &w.gate, s.xn, n, s.gate, self.precision);
        matmul_with(exec, &w.up, s.xn, n, s.up, self.precision);
        let ff = n * cfg.d_ff;
        let (dff, up) = (cfg.d_ff, &*s.up);
        for_row_chunks(exec, &mut s.gate[..ff], dff, &|first, rows| {
            gelu_gate(rows, &up[first * dff..]);
        });
        matmul_with(exec, &w.down, s.gate, n, s.xn, self.precision);
        add_residual(s.x, s.xn, &w.post_ffw_norm);
    }

    /// Logits for `n` final hidden states (`n x d_model` → `n x vocab`),
    /// soft-capped when the model says so.
    pub fn logits(&self, exec: &dyn Executor, hidden: &[f32], n: usize, out: &mut [f32]) {
        matmul_with(exec, &self.weights.output, hidden, n, out, self.precision);
        let cap = self.config.final_softcap;
        if cap > 0.0 {
            let len = (n * self.config.vocab_size).min(out.len());
            out[..len].iter_mut().for_each(|v| *v = softcap(*v, cap));
        }
    }
}

fn add_into(dst: &mut [f32], src: &[f32]) {
    for (a, b) in dst.iter_mut().zip(src) {
        *a += b;
    }
}
