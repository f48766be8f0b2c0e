//! A conversation that keeps its KV cache between requests.
//!
//! It owns a session's memory (on the CPU or a device, see [`Engine`]) and
//! remembers which tokens the cache holds.
//! A new request that extends (or shares a prefix with) those tokens only
//! prefills what is new; what the cache can no longer serve is recomputed.
//! Chat, the HTTP server and the C API build on it.

use crate::device::DeviceError;
use crate::engine::{Engine, SessionMemory};
use gemma_core::exec::Executor;
use gemma_core::generate::{GenerateOptions, Outcome, SessionError};
use gemma_core::kernels::Precision;
use gemma_core::model::{Inputs, Model, Prompt};
use gemma_core::sampling::Sampler;

pub struct Conversation {
    memory: SessionMemory,
    /// The tokens whose keys and values are in the cache, in order.
    cached: Vec<u32>,
}

/// What one [`Conversation::generate`] call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TurnStats {
    pub outcome: Outcome,
    /// Prompt tokens served from the cache.
    pub reused: usize,
    /// Prompt tokens that went through the model.
    pub prefilled: usize,
}

impl Conversation {
    /// A conversation on the CPU; `None` if its memory is too large.
    pub fn new(model: &Model, max_context: usize, max_batch: usize) -> Option<Self> {
        Self::on(&Engine::cpu(), model, max_context, max_batch).ok()
    }

    /// A conversation on `engine` (of `model`): its cache lives there, for
    /// every turn.
    pub fn on(
        engine: &Engine,
        model: &Model,
        max_context: usize,
        max_batch: usize,
    ) -> Result<Self, DeviceError> {
        let max_batch = max_batch.clamp(1, max_context.max(1));
        Ok(Self {
            memory: engine.memory(&model.config, max_context, max_batch)?,
            cached: Vec::new(),
        })
    }

    pub fn max_context(&self) -> usize {
        self.memory.max_context()
    }

    /// The tokens the cache currently holds.
    pub fn cached_tokens(&self) -> &[u32] {
        &self.cached
    }

    /// Memory held by the session, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.memory.bytes()
    }

    /// A failed turn's error in words, with the device's detail when a
    /// device call failed.
    pub fn explain(&self, e: &SessionError) -> String {
        self.memory.explain(e)
    }

    pub fn reset(&mut self) {
        self.cached.clear();
    }

    /// Generates a continuation of `prompt` (the whole conversation so far,
    /// BOS included) on its engine (the CPU computes at `precision`, on
    /// `exec`), reusing the cached prefix it shares with earlier turns.
    #[allow(clippy::too_many_arguments)]
    pub fn generate(
        &mut self,
        model: &Model,
        precision: Precision,
        exec: &dyn Executor,
        prompt: &[u32],
        sampler: &mut Sampler,
        opts: &GenerateOptions,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<TurnStats, SessionError> {
        if prompt.is_empty() {
            return Err(SessionError::EmptyPrompt);
        }
        let cached = &mut self.cached;
        let turn = self.memory.with_session(model, exec, precision, |session| {
            // At least the last prompt token is fed again, to get its logits.
            let shared = cached
                .iter()
                .zip(prompt)
                .take_while(|(a, b)| a == b)
                .count();
            let mut reuse = shared.min(prompt.len() - 1);
            if !session.can_rewind(cached.len(), reuse) {
                reuse = 0;
            }
            session.set_pos(reuse)?;
            // Until this turn ends, the cache holds only the reused prefix.
            cached.truncate(reuse);
            let mut emitted = Vec::with_capacity(opts.max_new_tokens.min(session.max_context()));
            let new = Prompt::tokens(&prompt[reuse..]);
            let result = session.generate(new, sampler, opts, &mut |t| {
                emitted.push(t);
                on_token(t)
            });
            let outcome = match result {
                Ok(o) => o,
                Err(e) => {
                    // A pass that failed part-way may have overwritten ring slots.
                    cached.clear();
                    return Err(e);
                }
            };
            // The last token emitted is not fed (nor its keys cached).
            let fed_generated = session.pos().saturating_sub(prompt.len());
            cached.extend_from_slice(&prompt[reuse..]);
            cached.extend_from_slice(&emitted[..fed_generated.min(emitted.len())]);
            Ok((outcome, reuse))
        });
        let (outcome, reuse) = turn??;
        Ok(TurnStats {
            outcome,
            reused: reuse,
            prefilled: prompt.len() - reuse,
        })
    }

    /// The mean of the final-normed hidden states of `tokens` (BOS
    /// included), scaled to unit length: a text embedding, as llama.cpp's
    /// `--embedding` with mean pooling gives. Uses this conversation's
    /// memory from position 0, so what it had cached is forgotten.
    pub fn embed(
        &mut self,
        model: &Model,
        precision: Precision,
        exec: &dyn Executor,
        tokens: &[u32],
    ) -> Result<Vec<f32>, SessionError> {
        if tokens.is_empty() {
            return Err(SessionError::EmptyPrompt);
        }
        self.cached.clear();
        let d = model.config.d_model;
        let batch = self.memory.max_batch();
        let mut sum = vec![0f64; d];
        let mut rows = vec![0f32; batch * d];
        self.memory
            .with_session(model, exec, precision, |session| {
                session.set_pos(0)?;
                for chunk in tokens.chunks(batch) {
                    session.forward_chunk(Inputs::Tokens(chunk), &[])?;
                    session.read_hidden(&mut rows)?;
                    for row in rows.chunks_exact(d).take(chunk.len()) {
                        sum.iter_mut().zip(row).for_each(|(s, &v)| *s += v as f64);
                    }
                }
                Ok::<(), SessionError>(())
            })??;
        let norm = sum.iter().map(|v| v * v).sum::<f64>().sqrt();
        let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
        Ok(sum.iter().map(|v| (v * scale) as f32).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{tiny_model, TinySpec};
    use crate::{LoadedModel, SessionBuffers};
    use gemma_core::exec::Serial;

    /// An embedding is the unit-length mean of the final-normed hidden
    /// states: computed here from one pass's rows, it equals what
    /// `embed` gives in passes of 3 over a conversation that had cached
    /// something else.
    #[test]
    fn embeddings_are_the_normalized_mean_of_the_hidden_states() {
        let loaded = LoadedModel::from_vec("tiny", tiny_model(&TinySpec::default())).unwrap();
        let model = loaded.model();
        let cfg = &model.config;
        let tokens = [2u32, 9, 17, 40, 7, 7, 100, 255];
        let d = cfg.d_model;
        let mut bufs = SessionBuffers::new(cfg, 16, 16).unwrap();
        let mut hidden = vec![0f32; tokens.len() * d];
        bufs.with_session(&model, &Serial, Precision::Exact, |s| {
            s.forward_chunk(Inputs::Tokens(&tokens), &[]).unwrap();
            s.read_hidden(&mut hidden).unwrap();
        })
        .unwrap();
        let mean: Vec<f64> = (0..d)
            .map(|i| hidden.chunks_exact(d).map(|r| r[i] as f64).sum::<f64>() / tokens.len() as f64)
            .collect();
        let len = mean.iter().map(|v| v * v).sum::<f64>().sqrt();
        let mut conv = Conversation::new(&model, 16, 3).unwrap();
        let mut sampler = gemma_core::sampling::Sampler::greedy();
        let opts = GenerateOptions {
            max_new_tokens: 2,
            stop_tokens: &[],
            prefill_progress: None,
            adjust_logits: None,
        };
        conv.generate(
            &model,
            Precision::Exact,
            &Serial,
            &[2, 5, 6],
            &mut sampler,
            &opts,
            &mut |_| true,
        )
        .unwrap();
        let got = conv
            .embed(&model, Precision::Exact, &Serial, &tokens)
            .unwrap();
        assert!(conv.cached_tokens().is_empty());
        for (g, m) in got.iter().zip(&mean) {
            assert!((*g as f64 - m / len).abs() < 1e-5, "{g} vs {}", m / len);
        }
        let other = conv
            .embed(&model, Precision::Exact, &Serial, &tokens[..4])
            .unwrap();
        assert!(got.iter().zip(&other).any(|(a, b)| (a - b).abs() > 1e-3));
        assert!(conv.embed(&model, Precision::Exact, &Serial, &[]).is_err());
    }
}
