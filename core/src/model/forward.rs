//! The Gemma forward pass, written once for every family, weight format
//! and device.
//!
//! Per block: RMSNorm → Q/K/V → (QK-norm) → RoPE → query scale → store K/V
//! → attention → output projection → (post-norm) → residual; RMSNorm →
//! gate and up → GELU-gated product → down → (post-norm) → residual. A
//! batch of `n` tokens goes through each weight matrix as one matrix
//! product. What runs where is the [`Backend`]'s business; the layers may
//! be split over several backends ([`Stage`]), the residual stream handed
//! from one to the next once per pass.

use super::backend::{Act, Backend, ForwardError, Norm, Rope};
use super::config::ModelConfig;
use super::input::{spans_are_ordered, Inputs, Mask, Span};
use crate::weights::{Role, TensorId, Weights};
use core::ops::Range;

/// A model: its configuration and borrowed weight views.
#[derive(Clone, Debug)]
pub struct Model<'a> {
    pub config: ModelConfig,
    pub weights: Weights<'a>,
}

/// A backend and the layers it runs.
pub struct Stage<'s> {
    pub layers: Range<usize>,
    pub backend: &'s mut dyn Backend,
}

/// Checks that `stages` run every layer of `cfg` once, in order, each on a
/// backend that holds it.
pub fn check_stages(cfg: &ModelConfig, stages: &[Stage]) -> Result<(), ForwardError> {
    let mut next = 0;
    for s in stages {
        let held = s.backend.layers();
        if s.layers.start != next
            || s.layers.end < s.layers.start
            || held.start > s.layers.start
            || held.end < s.layers.end
        {
            return Err(ForwardError::LayerNotHeld(next));
        }
        next = s.layers.end;
    }
    if next != cfg.n_layers || stages.is_empty() {
        return Err(ForwardError::LayerNotHeld(next));
    }
    Ok(())
}

/// Runs `inputs` at positions `start..start + inputs.len()`. The first
/// stage embeds them; each stage runs its layers, storing keys and values
/// in its cache; the last leaves the final-normed hidden state of every
/// input in [`Act::Hidden`]. Between stages the residual stream crosses
/// through `staging` (host memory, `inputs.len() * d_model` floats; unused
/// with one stage). Positions inside one of `spans` see each other both
/// ways; a span must lie in one pass or outside it.
pub fn forward(
    cfg: &ModelConfig,
    stages: &mut [Stage],
    inputs: Inputs,
    start: usize,
    spans: &[Span],
    staging: &mut [f32],
) -> Result<(), ForwardError> {
    check_stages(cfg, stages)?;
    let n = inputs.len();
    let end = start.checked_add(n).ok_or(ForwardError::ContextFull {
        needed: usize::MAX,
        max: stages[0].backend.max_context(),
    })?;
    if !spans_are_ordered(spans) {
        return Err(ForwardError::BadSpans);
    }
    let overlaps = |s: &Span| s.start < end && start < s.end;
    if spans
        .iter()
        .any(|s| overlaps(s) && (s.start < start || s.end > end))
    {
        return Err(ForwardError::SpanSplit);
    }
    let d = cfg.d_model;
    for i in 0..stages.len() {
        let (done, rest) = stages.split_at_mut(i);
        let stage = &mut rest[0];
        let b = &mut *stage.backend;
        b.begin(start, n)?;
        match done.last_mut() {
            None => b.embed(inputs, cfg.embed_scale)?,
            Some(prev) => {
                let room = staging.len() / d.max(1);
                let rows = staging
                    .get_mut(..n * d)
                    .ok_or(ForwardError::BatchTooLarge { got: n, max: room })?;
                prev.backend.read(Act::X, rows)?;
                b.write(Act::X, rows)?;
            }
        }
        for layer in stage.layers.clone() {
            block(cfg, b, layer, end, spans)?;
        }
    }
    let last = stages.last_mut().ok_or(ForwardError::LayerNotHeld(0))?;
    last.backend.rms_norm(
        Act::X,
        Act::Hidden,
        &norm(cfg, TensorId::global(Role::FinalNorm)),
    )
}

/// Logits of rows `rows` of the last pass's hidden states (`rows.len() x
/// vocab` floats into `out`), soft-capped where the model says so.
pub fn logits(
    cfg: &ModelConfig,
    last: &mut dyn Backend,
    rows: Range<usize>,
    out: &mut [f32],
) -> Result<(), ForwardError> {
    last.logits(Act::Hidden, rows, cfg.final_softcap, out)
}

/// The greedy token of row `row` of the last pass, where the last stage's
/// backend can find it without returning the logits.
pub fn greedy(
    cfg: &ModelConfig,
    last: &mut dyn Backend,
    row: usize,
) -> Result<Option<u32>, ForwardError> {
    last.argmax(Act::Hidden, row, cfg.final_softcap)
}

fn norm(cfg: &ModelConfig, gain: TensorId) -> Norm {
    Norm {
        gain,
        eps: cfg.rms_eps,
        plus_one: cfg.norm_gain_plus_one,
    }
}

/// One transformer block over the pass's tokens, which end at `end`.
fn block(
    cfg: &ModelConfig,
    b: &mut dyn Backend,
    layer: usize,
    end: usize,
    spans: &[Span],
) -> Result<(), ForwardError> {
    let w = |role| TensorId::layer(role, layer);
    let norm = |role| norm(cfg, w(role));
    let local = cfg.is_local(layer);
    let rope = if local {
        Rope {
            base: cfg.rope_base_local,
            scale: 1.0,
        }
    } else {
        Rope {
            base: cfg.rope_base_global,
            scale: cfg.rope_scale_global,
        }
    };

    // Attention.
    b.rms_norm(Act::X, Act::Xn, &norm(Role::AttnNorm))?;
    b.matmul(w(Role::Q), Act::Xn, Act::Q)?;
    b.matmul(w(Role::K), Act::Xn, Act::K)?;
    b.matmul(w(Role::V), Act::Xn, Act::V)?;
    if cfg.qk_norm {
        b.head_norm(Act::Q, &norm(Role::QNorm))?;
        b.head_norm(Act::K, &norm(Role::KNorm))?;
    }
    b.rope(Act::Q, rope)?;
    b.rope(Act::K, rope)?;
    b.scale(Act::Q, cfg.query_scale)?;
    b.store_kv(layer, Act::K, Act::V)?;
    let mask = Mask {
        window: if local { cfg.sliding_window } else { 0 },
        spans,
        written_end: end,
    };
    b.attend(layer, Act::Q, Act::Att, &mask, cfg.attn_softcap)?;
    b.matmul(w(Role::O), Act::Att, Act::Xn)?;
    if cfg.post_norms {
        b.rms_norm(Act::Xn, Act::Xn, &norm(Role::PostAttnNorm))?;
    }
    b.add(Act::X, Act::Xn)?;

    // Feed-forward.
    b.rms_norm(Act::X, Act::Xn, &norm(Role::FfnNorm))?;
    b.matmul(w(Role::Gate), Act::Xn, Act::Gate)?;
    b.matmul(w(Role::Up), Act::Xn, Act::Up)?;
    b.gelu_gate(Act::Gate, Act::Up)?;
    b.matmul(w(Role::Down), Act::Gate, Act::Xn)?;
    if cfg.post_norms {
        b.rms_norm(Act::Xn, Act::Xn, &norm(Role::PostFfwNorm))?;
    }
    b.add(Act::X, Act::Xn)
}
