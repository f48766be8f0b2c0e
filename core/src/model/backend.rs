//! The seam between the forward pass and the hardware that runs it.
//!
//! A [`Backend`] owns its activations, its view or copy of the weights and
//! the KV cache of the layers it runs, all wherever its device keeps them.
//! The forward pass ([`super::forward`]) names buffers ([`Act`]) and
//! tensors ([`TensorId`]) and says what to do with them; only logits and,
//! at a hand-over between two backends, the residual stream cross to the
//! host. The CPU backend is `crate::cpu`; a GPU backend implements the same
//! trait in its own crate, without touching this module.

use super::input::{Inputs, Mask};
use super::ModelConfig;
use crate::weights::TensorId;
use core::fmt;
use core::ops::Range;

/// The activation buffers of a pass, each with a row per token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Act {
    /// The residual stream (`d_model` per token).
    X,
    /// A normed copy of the stream, or a sub-block's output (`d_model`).
    Xn,
    /// Queries (`n_heads * head_dim`).
    Q,
    /// Keys and values of the pass (`n_kv_heads * head_dim` each).
    K,
    V,
    /// Attention output, before the output projection (`n_heads * head_dim`).
    Att,
    /// The feed-forward block's gate and up projections (`d_ff`).
    Gate,
    Up,
    /// Final-normed hidden states (`d_model`).
    Hidden,
}

impl Act {
    pub const ALL: [Act; 9] = [
        Act::X,
        Act::Xn,
        Act::Q,
        Act::K,
        Act::V,
        Act::Att,
        Act::Gate,
        Act::Up,
        Act::Hidden,
    ];

    /// Floats per token.
    pub fn width(self, cfg: &ModelConfig) -> usize {
        match self {
            Act::X | Act::Xn | Act::Hidden => cfg.d_model,
            Act::Q | Act::Att => cfg.q_dim(),
            Act::K | Act::V => cfg.kv_dim(),
            Act::Gate | Act::Up => cfg.d_ff,
        }
    }
}

/// An RMSNorm: `x / rms(x) * g`, or `* (1 + g)` when the stored gains are
/// Gemma's raw `w` (`plus_one`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Norm {
    pub gain: TensorId,
    pub eps: f32,
    pub plus_one: bool,
}

/// The rotary embedding of one kind of layer: angle `(pos / scale) *
/// base^(-2i / head_dim)` on the half-split pairs `(i, i + head_dim / 2)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rope {
    pub base: f32,
    pub scale: f32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardError {
    /// A token id at or above the vocabulary size.
    TokenOutOfRange { token: u32, vocab: usize },
    /// An embedding row whose length is not the model's width.
    EmbeddingWidth { got: usize, want: usize },
    /// The positions would run past the KV cache's context.
    ContextFull { needed: usize, max: usize },
    /// More tokens than the buffers were sized for in one pass.
    BatchTooLarge { got: usize, max: usize },
    /// A bidirectional span must be fed in one pass.
    SpanSplit,
    /// Spans that overlap, are empty or out of order.
    BadSpans,
    /// A layer this backend does not hold, or stages that do not cover
    /// every layer once, in order.
    LayerNotHeld(usize),
    /// Buffers, cache or weights sized for another model.
    Mismatch,
    /// The device failed.
    Device(&'static str),
}

impl fmt::Display for ForwardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ForwardError::TokenOutOfRange { token, vocab } => {
                write!(f, "token id {token} is outside the vocabulary of {vocab}")
            }
            ForwardError::EmbeddingWidth { got, want } => {
                write!(
                    f,
                    "an embedding row has {got} values, the model's width is {want}"
                )
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
            ForwardError::SpanSplit => {
                write!(f, "a bidirectional span must be processed in a single pass")
            }
            ForwardError::BadSpans => {
                write!(
                    f,
                    "bidirectional spans must be non-empty, ordered and disjoint"
                )
            }
            ForwardError::LayerNotHeld(l) => {
                write!(f, "layer {l} is not held by the backend it was given to")
            }
            ForwardError::Mismatch => {
                write!(f, "buffers or cache were sized for another model")
            }
            ForwardError::Device(what) => write!(f, "device error: {what}"),
        }
    }
}

/// What every backend's [`Backend::begin`] checks: a pass of `n` tokens
/// at `start` fits passes of `max_batch` and a cache of `max_context`.
pub fn check_pass(
    start: usize,
    n: usize,
    max_batch: usize,
    max_context: usize,
) -> Result<(), ForwardError> {
    if n > max_batch {
        return Err(ForwardError::BatchTooLarge {
            got: n,
            max: max_batch,
        });
    }
    match start.checked_add(n) {
        Some(end) if end <= max_context => Ok(()),
        end => Err(ForwardError::ContextFull {
            needed: end.unwrap_or(usize::MAX),
            max: max_context,
        }),
    }
}

/// One device's share of the forward pass. Every operation works on the
/// rows of the current pass (set by [`Backend::begin`]).
pub trait Backend: Send {
    /// The most tokens one pass may hold.
    fn max_batch(&self) -> usize;
    /// The most positions the KV cache holds.
    fn max_context(&self) -> usize;
    /// The layers whose KV cache this backend keeps.
    fn layers(&self) -> Range<usize>;
    /// Whether a cache filled up to position `filled` still holds every key
    /// a continuation from `pos <= filled` needs (a ring of a local layer
    /// may have overwritten them).
    fn can_rewind(&self, filled: usize, pos: usize) -> bool;

    /// Starts a pass of `n` tokens at positions `start..start + n`.
    fn begin(&mut self, start: usize, n: usize) -> Result<(), ForwardError>;
    /// `X` from the pass's inputs: a token's embedding row times `scale`,
    /// a given row as it is.
    fn embed(&mut self, inputs: Inputs, scale: f32) -> Result<(), ForwardError>;
    /// RMSNorm of each row of `src` into `dst` (in place when they are the
    /// same buffer).
    fn rms_norm(&mut self, src: Act, dst: Act, norm: &Norm) -> Result<(), ForwardError>;
    /// RMSNorm of each `head_dim` slice of `buf`, in place (QK-norm).
    fn head_norm(&mut self, buf: Act, norm: &Norm) -> Result<(), ForwardError>;
    /// Rotates each `head_dim` slice of `buf` by its token's position.
    fn rope(&mut self, buf: Act, rope: Rope) -> Result<(), ForwardError>;
    /// `buf *= factor`.
    fn scale(&mut self, buf: Act, factor: f32) -> Result<(), ForwardError>;
    /// `dst[t] = W · src[t]` for every token `t`, `W` the tensor `w`.
    fn matmul(&mut self, w: TensorId, src: Act, dst: Act) -> Result<(), ForwardError>;
    /// Stores the pass's keys and values in `layer`'s cache.
    fn store_kv(&mut self, layer: usize, k: Act, v: Act) -> Result<(), ForwardError>;
    /// Softmax attention of the queries in `q` over `layer`'s cache into
    /// `out`, scores soft-capped at `softcap` (0: not), keys per `mask`.
    fn attend(
        &mut self,
        layer: usize,
        q: Act,
        out: Act,
        mask: &Mask,
        softcap: f32,
    ) -> Result<(), ForwardError>;
    /// `gate = gelu_tanh(gate) * up`.
    fn gelu_gate(&mut self, gate: Act, up: Act) -> Result<(), ForwardError>;
    /// `dst += src`.
    fn add(&mut self, dst: Act, src: Act) -> Result<(), ForwardError>;
    /// Logits of rows `rows` of `src` (`rows.len() x vocab` floats into
    /// host memory), soft-capped at `softcap` (0: not). Rows refer to the
    /// last pass.
    fn logits(
        &mut self,
        src: Act,
        rows: Range<usize>,
        softcap: f32,
        out: &mut [f32],
    ) -> Result<(), ForwardError>;
    /// The index of the largest logit of row `row` of `src`, soft-capped
    /// at `softcap` (0: not) as [`Self::logits`] would return it (a cap can
    /// turn distinct logits into ties), found where the logits are, so greedy decoding returns four bytes instead of a vocabulary
    /// of floats; `Ok(None)` when the backend has no such shortcut (the
    /// caller then reads the row with [`Self::logits`]). Ties go to the
    /// lowest index.
    fn argmax(&mut self, src: Act, row: usize, softcap: f32) -> Result<Option<u32>, ForwardError> {
        let _ = (src, row, softcap);
        Ok(None)
    }
    /// Copies the pass's rows of `src` to host memory.
    fn read(&mut self, src: Act, out: &mut [f32]) -> Result<(), ForwardError>;
    /// Sets the pass's rows of `dst` from host memory.
    fn write(&mut self, dst: Act, data: &[f32]) -> Result<(), ForwardError>;
}
