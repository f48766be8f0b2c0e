//! The generation loop: prefill, then sample and feed one token at a time.
//!
//! A [`Session`] owns nothing: its KV cache, activations, logits and
//! sampling scratch are carved from buffers the caller hands in once, so the
//! loop never allocates, whatever the host.

use crate::exec::Executor;
use crate::model::{ForwardError, KvCache, Model, Scratch};
use crate::sampling::{Candidate, Sampler};
use core::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionError {
    /// The buffers are smaller than [`SessionSizes`] asks for.
    BuffersTooSmall,
    /// Context or batch of size zero, or sizes that overflow.
    BadSize,
    EmptyPrompt,
    Forward(ForwardError),
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::BuffersTooSmall => write!(f, "session buffers are smaller than required"),
            SessionError::BadSize => write!(f, "context and batch sizes must be non-zero"),
            SessionError::EmptyPrompt => write!(f, "the prompt has no tokens"),
            SessionError::Forward(e) => e.fmt(f),
        }
    }
}

impl From<ForwardError> for SessionError {
    fn from(e: ForwardError) -> Self {
        SessionError::Forward(e)
    }
}

/// How much memory a session needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionSizes {
    /// f32s for the KV cache, the activations and one row of logits.
    pub floats: usize,
    /// Sampling candidates (one per vocabulary entry).
    pub candidates: usize,
}

impl SessionSizes {
    pub fn new(model: &Model, max_context: usize, max_batch: usize) -> Option<Self> {
        let cfg = &model.config;
        let kv = KvCache::required_len(cfg, max_context, max_batch)?;
        let scratch = Scratch::required_len(cfg, max_batch)?;
        let floats = kv.checked_add(scratch)?.checked_add(cfg.vocab_size)?;
        Some(Self {
            floats,
            candidates: cfg.vocab_size,
        })
    }

    /// Bytes in all, for reporting.
    pub fn bytes(&self) -> usize {
        self.floats * 4 + self.candidates * core::mem::size_of::<Candidate>()
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

#[derive(Clone, Copy, Debug)]
pub struct GenerateOptions<'s> {
    pub max_new_tokens: usize,
    /// Sampling one of these ends generation (EOS, `<end_of_turn>`, …).
    pub stop_tokens: &'s [u32],
    /// Positions before this see each other bidirectionally (PaliGemma's
    /// prefix-LM); 0 for a plain causal model.
    pub prefix_end: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub generated: usize,
    pub stop: StopReason,
}

pub struct Session<'m, 'a, 'b> {
    model: &'m Model<'a>,
    cache: KvCache<'b>,
    scratch: Scratch<'b>,
    logits: &'b mut [f32],
    candidates: &'b mut [Candidate],
    pos: usize,
}

impl<'m, 'a, 'b> Session<'m, 'a, 'b> {
    pub fn new(
        model: &'m Model<'a>,
        max_context: usize,
        max_batch: usize,
        floats: &'b mut [f32],
        candidates: &'b mut [Candidate],
    ) -> Result<Self, SessionError> {
        let cfg = &model.config;
        let sizes =
            SessionSizes::new(model, max_context, max_batch).ok_or(SessionError::BadSize)?;
        if floats.len() < sizes.floats || candidates.len() < sizes.candidates {
            return Err(SessionError::BuffersTooSmall);
        }
        let kv_len =
            KvCache::required_len(cfg, max_context, max_batch).ok_or(SessionError::BadSize)?;
        let scratch_len = Scratch::required_len(cfg, max_batch).ok_or(SessionError::BadSize)?;
        let (kv_buf, rest) = floats.split_at_mut(kv_len);
        let (scratch_buf, rest) = rest.split_at_mut(scratch_len);
        let cache = KvCache::new(cfg, max_context, max_batch, kv_buf)
            .map_err(|_| SessionError::BuffersTooSmall)?;
        let scratch =
            Scratch::new(cfg, max_batch, scratch_buf).ok_or(SessionError::BuffersTooSmall)?;
        Ok(Self {
            model,
            cache,
            scratch,
            logits: &mut rest[..cfg.vocab_size],
            candidates: &mut candidates[..cfg.vocab_size],
            pos: 0,
        })
    }

    pub fn model(&self) -> &Model<'a> {
        self.model
    }

    /// Positions fed so far.
    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn max_context(&self) -> usize {
        self.cache.max_context()
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
        if pos > self.cache.max_context() {
            return Err(ForwardError::ContextFull {
                needed: pos,
                max: self.cache.max_context(),
            }
            .into());
        }
        self.pos = pos;
        Ok(())
    }

    /// Whether a cache filled up to `filled` positions still holds every
    /// key a continuation from `pos` needs. Global layers keep all
    /// positions; a local layer's ring keeps the last `window + max_batch - 1`,
    /// so it can step back at most `max_batch - 1` positions.
    pub fn can_rewind(&self, filled: usize, pos: usize) -> bool {
        if pos > filled {
            return false;
        }
        let cfg = &self.model.config;
        (0..cfg.n_layers).all(|l| {
            let cap = self.cache.capacity(l);
            let need = if cfg.is_local(l) {
                cfg.sliding_window.min(pos)
            } else {
                pos
            };
            // Slots of positions [pos - need, pos) must not have been
            // overwritten by positions [pos, filled).
            cap >= filled || filled - pos + need <= cap
        })
    }

    /// Logits after the last token fed by [`Self::prefill`] or [`Self::step`].
    pub fn logits(&self) -> &[f32] {
        self.logits
    }

    /// Feeds up to `max_batch` tokens in one pass and returns their
    /// final-normed hidden states (`tokens.len() x d_model`), without
    /// computing logits. For teacher-forced evaluation.
    pub fn forward_chunk(
        &mut self,
        exec: &dyn Executor,
        tokens: &[u32],
        prefix_end: usize,
    ) -> Result<&[f32], SessionError> {
        self.model.forward(
            exec,
            tokens,
            self.pos,
            prefix_end,
            &mut self.cache,
            &mut self.scratch,
        )?;
        self.pos += tokens.len();
        Ok(&self.scratch.hidden()[..tokens.len() * self.model.config.d_model])
    }

    /// Feeds `tokens` (in passes of at most `max_batch`) and computes the
    /// logits of the last one.
    pub fn prefill(
        &mut self,
        exec: &dyn Executor,
        tokens: &[u32],
        prefix_end: usize,
    ) -> Result<&[f32], SessionError> {
        if tokens.is_empty() {
            return Err(SessionError::EmptyPrompt);
        }
        let end = self.pos.saturating_add(tokens.len());
        if end > self.cache.max_context() {
            return Err(ForwardError::ContextFull {
                needed: end,
                max: self.cache.max_context(),
            }
            .into());
        }
        // A bidirectional prefix must go in one pass; callers size max_batch for it.
        let batch = self.scratch.max_batch().max(1);
        let mut last_chunk = 0;
        for chunk in tokens.chunks(batch) {
            self.forward_chunk(exec, chunk, prefix_end)?;
            last_chunk = chunk.len();
        }
        let d = self.model.config.d_model;
        let hidden = &self.scratch.hidden()[(last_chunk - 1) * d..last_chunk * d];
        self.model.logits(exec, hidden, 1, self.logits);
        Ok(self.logits)
    }

    /// Feeds one token and computes its logits.
    pub fn step(&mut self, exec: &dyn Executor, token: u32) -> Result<&[f32], SessionError> {
        self.prefill(exec, &[token], 0)
    }

    /// Prefills `prompt`, then samples up to `opts.max_new_tokens` tokens,
    /// calling `on_token` with each; it returns `false` to stop.
    pub fn generate(
        &mut self,
        exec: &dyn Executor,
        prompt: &[u32],
        sampler: &mut Sampler,
        opts: &GenerateOptions,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<Outcome, SessionError> {
        self.prefill(exec, prompt, opts.prefix_end)?;
        let mut generated = 0;
        loop {
            if generated == opts.max_new_tokens {
                return Ok(Outcome {
                    generated,
                    stop: StopReason::MaxTokens,
                });
            }
            let token = sampler.sample(self.logits, self.candidates);
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
            if self.pos >= self.cache.max_context() {
                return Ok(Outcome {
                    generated,
                    stop: StopReason::ContextFull,
                });
            }
            self.step(exec, token)?;
        }
    }
}
