//! The generation loop: prefill, then sample and feed one token at a time.
//!
//! A [`Session`] owns nothing: it drives backends the caller made (each
//! with its cache and activations in caller memory) and keeps its logits
//! and sampling scratch in buffers handed in once, so the loop never
//! allocates, whatever the host.

use crate::cpu::CpuBackend;
use crate::model::{
    check_stages, forward, greedy, logits, Act, Backend, ForwardError, Inputs, ModelConfig, Prompt,
    Span, Stage,
};
use crate::sampling::{Candidate, Sampler};
use core::fmt;
use core::ops::Range;

/// The most backends one session splits the layers over.
pub const MAX_STAGES: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionError {
    /// The buffers are smaller than [`SessionSizes`] asks for.
    BuffersTooSmall,
    /// Context or batch of size zero, or sizes that overflow.
    BadSize,
    EmptyPrompt,
    /// A bidirectional span longer than one pass can hold.
    SpanTooLong {
        len: usize,
        max_batch: usize,
    },
    Forward(ForwardError),
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::BuffersTooSmall => write!(f, "session buffers are smaller than required"),
            SessionError::BadSize => write!(f, "context and batch sizes must be non-zero"),
            SessionError::EmptyPrompt => write!(f, "the prompt has no tokens"),
            SessionError::SpanTooLong { len, max_batch } => write!(
                f,
                "a bidirectional span of {len} positions does not fit a pass of {max_batch}"
            ),
            SessionError::Forward(e) => e.fmt(f),
        }
    }
}

impl From<ForwardError> for SessionError {
    fn from(e: ForwardError) -> Self {
        SessionError::Forward(e)
    }
}

/// How much memory a session on one [`CpuBackend`] needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionSizes {
    /// f32s for the backend (KV cache, activations) and one row of logits.
    pub floats: usize,
    /// Sampling candidates (one per vocabulary entry).
    pub candidates: usize,
}

impl SessionSizes {
    pub fn new(cfg: &ModelConfig, max_context: usize, max_batch: usize) -> Option<Self> {
        let backend = CpuBackend::required_len(cfg, 0..cfg.n_layers, max_context, max_batch)?;
        Some(Self {
            floats: backend.checked_add(cfg.vocab_size)?,
            candidates: cfg.vocab_size,
        })
    }

    /// Bytes in all, for reporting.
    pub fn bytes(&self) -> usize {
        self.floats * 4 + self.candidates * core::mem::size_of::<Candidate>()
    }

    /// Splits `floats` into the backend's share and the logits row.
    pub fn split<'b>(
        cfg: &ModelConfig,
        floats: &'b mut [f32],
    ) -> Result<(&'b mut [f32], &'b mut [f32]), SessionError> {
        let at = floats
            .len()
            .checked_sub(cfg.vocab_size)
            .ok_or(SessionError::BuffersTooSmall)?;
        Ok(floats.split_at_mut(at))
    }
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The sampled token is one of the stop tokens (not emitted).
    StopToken(u32),
    MaxTokens,
    /// The token callback asked to stop.
    Callback,
    /// The KV cache has no room for another position.
    ContextFull,
}

/// Told how a prefill goes, for a progress display: called with (tokens
/// fed, tokens to feed) before the first pass and after each pass (the last
/// report is (n, n)). `Sync`, as a prefill may run on a worker thread.
pub type PrefillProgress<'s> = &'s (dyn Fn(usize, usize) + Sync);

#[derive(Clone, Copy)]
pub struct GenerateOptions<'s> {
    pub max_new_tokens: usize,
    /// Sampling one of these ends generation (EOS, `<end_of_turn>`, …).
    pub stop_tokens: &'s [u32],
    /// Told how the prompt's prefill goes; `None` for no reports.
    pub prefill_progress: Option<PrefillProgress<'s>>,
    /// Changes each logits row before a token is sampled from it (logit
    /// biases, repetition penalties); `None` for none. With it, greedy
    /// decoding reads the row on the host instead of asking the backend
    /// for its argmax.
    pub adjust_logits: Option<AdjustLogits<'s>>,
}

/// See [`GenerateOptions::adjust_logits`].
/// `Sync`, as generation may run on a worker thread.
pub type AdjustLogits<'s> = &'s (dyn Fn(&mut [f32]) + Sync);

impl fmt::Debug for GenerateOptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenerateOptions")
            .field("max_new_tokens", &self.max_new_tokens)
            .field("stop_tokens", &self.stop_tokens)
            .field("prefill_progress", &self.prefill_progress.is_some())
            .field("adjust_logits", &self.adjust_logits.is_some())
            .finish()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub generated: usize,
    pub stop: StopReason,
}

pub struct Session<'m, 'b> {
    cfg: &'m ModelConfig,
    stages: heapless::Vec<Stage<'b>, MAX_STAGES>,
    /// The residual stream on its way between stages.
    staging: &'b mut [f32],
    logits: &'b mut [f32],
    candidates: &'b mut [Candidate],
    max_batch: usize,
    max_context: usize,
    /// Rows of the last pass, for [`Self::logits_rows`].
    last_pass: usize,
    pos: usize,
}

impl<'m, 'b> Session<'m, 'b> {
    /// A session on one backend that runs every layer. `logits` holds a
    /// row of the vocabulary, `candidates` one per entry.
    pub fn new(
        cfg: &'m ModelConfig,
        backend: &'b mut dyn Backend,
        logits: &'b mut [f32],
        candidates: &'b mut [Candidate],
    ) -> Result<Self, SessionError> {
        let stage = Stage {
            layers: 0..cfg.n_layers,
            backend,
        };
        Self::staged(cfg, [stage], &mut [], logits, candidates)
    }

    /// A session whose layers are split over several backends, in order
    /// (partial offload); `staging` holds `max_batch * d_model` floats for
    /// the residual stream at each hand-over.
    pub fn staged<const N: usize>(
        cfg: &'m ModelConfig,
        stages: [Stage<'b>; N],
        staging: &'b mut [f32],
        logits: &'b mut [f32],
        candidates: &'b mut [Candidate],
    ) -> Result<Self, SessionError> {
        let mut held = heapless::Vec::<Stage<'b>, MAX_STAGES>::new();
        for s in stages {
            held.push(s).map_err(|_| SessionError::BadSize)?;
        }
        let stages = held;
        check_stages(cfg, &stages)?;
        let max_batch = stages
            .iter()
            .map(|s| s.backend.max_batch())
            .min()
            .unwrap_or(0);
        let max_context = stages
            .iter()
            .map(|s| s.backend.max_context())
            .min()
            .unwrap_or(0);
        if max_batch == 0 || max_context == 0 {
            return Err(SessionError::BadSize);
        }
        let vocab = cfg.vocab_size;
        if logits.len() < vocab
            || candidates.len() < vocab
            || (stages.len() > 1 && staging.len() < max_batch * cfg.d_model)
        {
            return Err(SessionError::BuffersTooSmall);
        }
        Ok(Self {
            cfg,
            stages,
            staging,
            logits: &mut logits[..vocab],
            candidates: &mut candidates[..vocab],
            max_batch,
            max_context,
            last_pass: 0,
            pos: 0,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        self.cfg
    }

    /// Positions fed so far.
    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn max_context(&self) -> usize {
        self.max_context
    }

    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Forgets the conversation (the cache is overwritten as positions are reused).
    pub fn reset(&mut self) {
        self.pos = 0;
    }

    /// Continues from position `pos` of a conversation whose keys and values
    /// an earlier session left in the same buffers (sessions are cheap views;
    /// the cache contents persist in the caller's memory). Also rewinds: see
    /// [`Self::can_rewind`].
    pub fn set_pos(&mut self, pos: usize) -> Result<(), SessionError> {
        if pos > self.max_context {
            return Err(ForwardError::ContextFull {
                needed: pos,
                max: self.max_context,
            }
            .into());
        }
        self.pos = pos;
        Ok(())
    }

    /// Whether a cache filled up to `filled` positions still holds every
    /// key a continuation from `pos` needs (a local layer's ring keeps the
    /// last `window + max_batch - 1` positions, so it can step back at
    /// most `max_batch - 1`).
    pub fn can_rewind(&self, filled: usize, pos: usize) -> bool {
        self.stages
            .iter()
            .all(|s| s.backend.can_rewind(filled, pos))
    }

    /// Logits after the last token fed by [`Self::prefill`] or [`Self::step`]
    /// (after [`Self::generate`] they are unspecified: greedy decoding on a
    /// device takes its argmax there and leaves this row alone).
    pub fn logits(&self) -> &[f32] {
        self.logits
    }

    /// Feeds up to `max_batch` inputs in one pass, without computing
    /// logits (see [`Self::logits_rows`]); `spans` are the bidirectional
    /// spans in absolute positions. For teacher-forced evaluation.
    pub fn forward_chunk(&mut self, inputs: Inputs, spans: &[Span]) -> Result<(), SessionError> {
        forward(
            self.cfg,
            &mut self.stages,
            inputs,
            self.pos,
            spans,
            self.staging,
        )?;
        self.pos += inputs.len();
        self.last_pass = inputs.len();
        Ok(())
    }

    /// Feeds `tokens` (at most `max_batch`) in one pass and writes the
    /// logits of every one of them (`tokens.len() x vocab` floats): what
    /// teacher-forced evaluation wants.
    pub fn forward_logits(&mut self, tokens: &[u32], out: &mut [f32]) -> Result<(), SessionError> {
        self.forward_chunk(Inputs::Tokens(tokens), &[])?;
        self.logits_rows(0..tokens.len(), out)
    }

    /// The final-normed hidden states of the last pass (`n x d_model`
    /// floats), copied to `out`.
    pub fn read_hidden(&mut self, out: &mut [f32]) -> Result<(), SessionError> {
        let last = self.stages.last_mut().ok_or(SessionError::BadSize)?;
        let n = self.last_pass * self.cfg.d_model;
        let out = out.get_mut(..n).ok_or(SessionError::BuffersTooSmall)?;
        last.backend.read(Act::Hidden, out)?;
        Ok(())
    }

    /// Logits of rows `rows` of the last pass (`rows.len() x vocab` floats).
    pub fn logits_rows(&mut self, rows: Range<usize>, out: &mut [f32]) -> Result<(), SessionError> {
        if rows.end > self.last_pass {
            return Err(ForwardError::Mismatch.into());
        }
        let last = self.stages.last_mut().ok_or(SessionError::BadSize)?;
        logits(self.cfg, &mut *last.backend, rows, out)?;
        Ok(())
    }

    /// Feeds `prompt` (in passes of at most `max_batch`, never cutting a
    /// bidirectional span) and computes the logits of its last input.
    /// The prompt's spans count from its first input, wherever the session
    /// stands.
    pub fn prefill(&mut self, prompt: Prompt) -> Result<&[f32], SessionError> {
        self.prefill_reporting(prompt, None)
    }

    /// [`Self::prefill`], telling `progress` how it goes: (0, n) before the
    /// first pass and (tokens fed, n) after each.
    pub fn prefill_reporting(
        &mut self,
        prompt: Prompt,
        progress: Option<PrefillProgress>,
    ) -> Result<&[f32], SessionError> {
        self.feed(prompt, progress)?;
        self.last_logits()
    }

    /// Feeds `prompt` in passes (see [`Self::prefill_reporting`]) without
    /// computing any logits.
    fn feed(
        &mut self,
        prompt: Prompt,
        progress: Option<PrefillProgress>,
    ) -> Result<(), SessionError> {
        let inputs = prompt.inputs;
        if inputs.is_empty() {
            return Err(SessionError::EmptyPrompt);
        }
        let end = self.pos.saturating_add(inputs.len());
        if end > self.max_context {
            return Err(ForwardError::ContextFull {
                needed: end,
                max: self.max_context,
            }
            .into());
        }
        let mut spans = heapless::Vec::<Span, MAX_SPANS>::new();
        for s in prompt.spans {
            if s.end > inputs.len() {
                return Err(ForwardError::BadSpans.into());
            }
            if s.len() > self.max_batch {
                return Err(SessionError::SpanTooLong {
                    len: s.len(),
                    max_batch: self.max_batch,
                });
            }
            spans
                .push(Span::new(s.start + self.pos, s.end + self.pos))
                .map_err(|_| SessionError::from(ForwardError::BadSpans))?;
        }
        let base = self.pos;
        let report = |done| {
            if let Some(p) = progress {
                p(done, inputs.len());
            }
        };
        report(0);
        let mut done = 0;
        while done < inputs.len() {
            let cut = chunk_end(done, inputs.len(), self.max_batch, prompt.spans);
            self.forward_chunk(inputs.slice(done..cut), &spans)?;
            done = cut;
            report(done);
        }
        debug_assert_eq!(self.pos, base + inputs.len());
        Ok(())
    }

    /// The logits of the last input fed, into `self.logits`.
    fn last_logits(&mut self) -> Result<&[f32], SessionError> {
        let last = self
            .last_pass
            .checked_sub(1)
            .ok_or(SessionError::EmptyPrompt)?;
        let stage = self.stages.last_mut().ok_or(SessionError::BadSize)?;
        logits(self.cfg, &mut *stage.backend, last..last + 1, self.logits)?;
        Ok(self.logits)
    }

    /// The next token after the last input fed: greedy decoding asks the
    /// last backend for its argmax (a GPU returns four bytes), anything
    /// else samples the logits row on the host.
    fn next_token(
        &mut self,
        sampler: &mut Sampler,
        adjust: Option<AdjustLogits>,
    ) -> Result<u32, SessionError> {
        if sampler.params().is_greedy() && adjust.is_none() {
            let row = self
                .last_pass
                .checked_sub(1)
                .ok_or(SessionError::EmptyPrompt)?;
            let stage = self.stages.last_mut().ok_or(SessionError::BadSize)?;
            if let Some(t) = greedy(self.cfg, &mut *stage.backend, row)? {
                return Ok(t);
            }
        }
        self.last_logits()?;
        if let Some(adjust) = adjust {
            adjust(self.logits);
        }
        Ok(sampler.sample(self.logits, self.candidates))
    }

    /// Feeds one token and computes its logits.
    pub fn step(&mut self, token: u32) -> Result<&[f32], SessionError> {
        self.prefill(Prompt::tokens(&[token]))
    }

    /// Prefills `prompt`, then samples up to `opts.max_new_tokens` tokens,
    /// calling `on_token` with each; it returns `false` to stop.
    pub fn generate(
        &mut self,
        prompt: Prompt,
        sampler: &mut Sampler,
        opts: &GenerateOptions,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<Outcome, SessionError> {
        self.feed(prompt, opts.prefill_progress)?;
        let mut generated = 0;
        loop {
            if generated == opts.max_new_tokens {
                return Ok(Outcome {
                    generated,
                    stop: StopReason::MaxTokens,
                });
            }
            let token = self.next_token(sampler, opts.adjust_logits)?;
            if opts.stop_tokens.contains(&token) {
                return Ok(Outcome {
                    generated,
                    stop: StopReason::StopToken(token),
                });
            }
            generated += 1;
            if !on_token(token) {
                return Ok(Outcome {
                    generated,
                    stop: StopReason::Callback,
                });
            }
            if generated == opts.max_new_tokens {
                return Ok(Outcome {
                    generated,
                    stop: StopReason::MaxTokens,
                });
            }
            if self.pos >= self.max_context {
                return Ok(Outcome {
                    generated,
                    stop: StopReason::ContextFull,
                });
            }
            self.feed(Prompt::tokens(&[token]), None)?;
        }
    }
}

/// The most bidirectional spans one prompt may hold.
pub const MAX_SPANS: usize = 64;

/// Where the pass starting at input `from` ends: `max_batch` inputs on,
/// the prompt's end, or, where that would cut a span, the span's start.
fn chunk_end(from: usize, len: usize, max_batch: usize, spans: &[Span]) -> usize {
    let cut = (from + max_batch).min(len);
    match spans
        .iter()
        .find(|s| s.start < cut && cut < s.end && s.start > from)
    {
        Some(s) => s.start,
        None => cut,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_end_before_a_span_they_would_cut() {
        let spans = [Span::new(3, 9), Span::new(12, 14)];
        // A pass of 8 from 0 would cut [3, 9): it ends at 3.
        assert_eq!(chunk_end(0, 20, 8, &spans), 3);
        // From 3 the span fits.
        assert_eq!(chunk_end(3, 20, 8, &spans), 11);
        assert_eq!(chunk_end(11, 20, 2, &spans), 12);
        assert_eq!(chunk_end(12, 20, 2, &spans), 14);
        assert_eq!(chunk_end(14, 20, 8, &spans), 20);
        assert_eq!(chunk_end(0, 20, 8, &[]), 8);
    }
}
