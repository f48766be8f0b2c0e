//! Token sampling: greedy, temperature, top-k, top-p (nucleus) and min-p.
//!
//! This file holds what callers see (parameters, errors, [`Sampler`],
//! [`argmax`]) and the dispatch between the two ways a token is drawn;
//! `rng.rs` is the seeded generator, `stream.rs` the scratch-free draw for
//! plain temperature sampling, `filter.rs` the pipeline with cuts,
//! `nucleus.rs` its linear-time top-p for when there is no top-k, and
//! `tests.rs` checks them all against a naive reference.
//!
//! Everything here works without an allocator: [`Sampler::sample`] takes a
//! caller-provided scratch slice of [`Candidate`]s (one per vocabulary entry)
//! and never touches the logits it is given.
//!
//! # Order of operations
//!
//! With `temperature == 0` the result is [`argmax`] and no random number is
//! drawn. Otherwise, as llama.cpp / gemma.cpp users expect:
//!
//! 1. candidates are the logits that are neither NaN nor `-inf` (`+inf` is
//!    treated as `f32::MAX`, so several `+inf` logits share the top rank);
//! 2. **top-k** (`top_k > 0`): keep the `top_k` highest logits;
//! 3. **temperature**: divide by `temperature` and take the softmax
//!    (max subtracted first, weights in `f32` via [`exp_nonpositive`], sums
//!    in `f64`);
//! 4. **top-p** (`top_p < 1`): keep the smallest set of most probable
//!    candidates whose cumulative probability is `>= top_p`;
//! 5. **min-p** (`min_p > 0`): drop candidates whose probability is below
//!    `min_p * max_prob`;
//! 6. renormalize what is left and draw one token with the [`Rng`].
//!
//! Ties are broken towards the lowest token id: top-k ranks by logit, top-p
//! by weight (the same order, unless two logits round to the same `f32`
//! weight). So with `top_k == 1` the result equals [`argmax`] at any
//! temperature, and so it does with a tiny `top_p` unless the temperature
//! is so high that the top weights round to the same value. Weights are `f32`: a candidate more than
//! 87 (scaled) nats below the top has weight 0 and is never drawn.
//!
//! ## Pruning negligible candidates
//!
//! When `top_p < 1`, candidates whose weight is below [`PRUNE_RATIO`]
//! (`1e-9`) times the top one's are dropped before anything else (before
//! top-k and the softmax). Their combined mass is at most `vocab * 1e-9` of
//! the top candidate's (2.6e-4 for a 262144-entry vocabulary), so this only
//! nudges where the nucleus boundary falls, by a negligible amount.
//!
//! # Cost
//!
//! Measured per call on real 262144-entry rows of Gemma 3 270M
//! (`benches/benches/sampling.rs`, 2 cores, against a 16 ms decode step):
//!
//! * temperature only: two read-only passes over the logits, no scratch
//!   written (`stream.rs`, about 0.5 ms; gathering into `work` first costs
//!   2.2 ms);
//! * top-k, and Gemma's defaults: one pass that buffers only the logits
//!   that beat the k-th best seen so far, cut back with
//!   `select_nth_unstable_by` (`filter.rs`, 0.14 to 0.19 ms);
//! * min-p alone: one pass gathering what clears the min-p threshold
//!   (about 0.27 ms);
//! * top-p alone: a weight histogram in one pass, a gather of the bins
//!   that reach `top_p`, and a radix selection among them (`nucleus.rs`,
//!   1.2 to 1.4 ms; 2 to 5 ms on nuclei of a large part of the vocabulary,
//!   where selecting and sorting cost 9 to 21 ms).
//!
//! # Reproducibility
//!
//! The [`Rng`] is integer-only (SplitMix64 seeding xoshiro256**),
//! [`exp_nonpositive`] uses only basic IEEE operations (no FMA, no platform
//! `exp`), and every sum runs in a fixed order (token-id order; the
//! cumulative sums of a cut in rank order), so the same seed and logits give
//! the same tokens on every platform. Each call of [`Sampler::sample`] with
//! `temperature > 0` consumes exactly one `next_u64` draw, whatever the
//! logits; with `temperature == 0` it consumes none.

use core::fmt;

mod filter;
mod nucleus;
mod rng;
mod stream;
#[cfg(test)]
mod tests;

pub use crate::kernels::ops::exp_nonpositive;
pub use rng::Rng;

/// When `top_p < 1`, candidates whose weight (after temperature) is below
/// this fraction of the top candidate's are dropped first.
pub const PRUNE_RATIO: f32 = 1e-9;

/// Why sampling parameters (or a call) were refused.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SamplingError {
    /// `temperature` must be finite and `>= 0` (0 means greedy).
    Temperature(f32),
    /// `top_p` must be in `(0, 1]` (1 disables it).
    TopP(f32),
    /// `min_p` must be in `[0, 1]` (0 disables it).
    MinP(f32),
    /// The scratch slice handed to [`Sampler::try_sample`] is shorter than
    /// the logits.
    WorkTooSmall { needed: usize, got: usize },
}

impl fmt::Display for SamplingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SamplingError::Temperature(t) => write!(
                f,
                "invalid temperature {t}: must be a finite number >= 0 (0 means greedy)"
            ),
            SamplingError::TopP(p) => write!(
                f,
                "invalid top_p {p}: must be in the range (0, 1] (1 disables top-p)"
            ),
            SamplingError::MinP(p) => write!(
                f,
                "invalid min_p {p}: must be in the range [0, 1] (0 disables min-p)"
            ),
            SamplingError::WorkTooSmall { needed, got } => write!(
                f,
                "sampling scratch too small: {got} candidates for {needed} logits"
            ),
        }
    }
}

// No `core::error::Error` impl: it needs Rust 1.81 and the workspace MSRV is
// 1.80. Callers with `std` can wrap it (it implements `Display` + `Debug`).

/// Sampling settings. `top_k == 0`, `top_p == 1` and `min_p == 0` each turn
/// their filter off; `temperature == 0` means greedy decoding.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingParams {
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; 0 = off.
    pub top_k: usize,
    /// Nucleus sampling threshold in `(0, 1]`; 1.0 = off.
    pub top_p: f32,
    /// Drop tokens below `min_p * max_prob`, in `[0, 1]`; 0 = off.
    pub min_p: f32,
    pub seed: u64,
}

impl SamplingParams {
    /// Greedy decoding (argmax); no random numbers are drawn.
    pub const fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: 0,
        }
    }

    /// Gemma's published generation defaults: temperature 1, top-k 64,
    /// top-p 0.95.
    pub const fn gemma_default(seed: u64) -> Self {
        Self {
            temperature: 1.0,
            top_k: 64,
            top_p: 0.95,
            min_p: 0.0,
            seed,
        }
    }

    /// Plain temperature sampling, every other filter off.
    pub const fn with_temperature(temperature: f32, seed: u64) -> Self {
        Self {
            temperature,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed,
        }
    }

    /// `true` when sampling reduces to [`argmax`] (temperature 0).
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// Checks the ranges: temperature finite and `>= 0`, `top_p` in `(0, 1]`,
    /// `min_p` in `[0, 1]`. NaN is refused everywhere.
    pub fn validate(&self) -> Result<(), SamplingError> {
        let t = self.temperature;
        if !(t.is_finite() && t >= 0.0) {
            return Err(SamplingError::Temperature(t));
        }
        let p = self.top_p;
        if !(p > 0.0 && p <= 1.0) {
            return Err(SamplingError::TopP(p));
        }
        let m = self.min_p;
        if !(0.0..=1.0).contains(&m) {
            return Err(SamplingError::MinP(m));
        }
        Ok(())
    }
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self::greedy()
    }
}

/// One entry of the sampling scratch: a token id and a value that holds its
/// (clamped) logit, and later its unnormalized probability weight.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Candidate {
    pub id: u32,
    pub value: f32,
}

impl Candidate {
    /// For initializing scratch arrays: `[Candidate::ZERO; N]`.
    pub const ZERO: Candidate = Candidate { id: 0, value: 0.0 };
}

/// Largest non-NaN value of `xs` (`-inf` if there is none). Eight independent
/// lanes so it vectorizes.
fn max_ignoring_nan(xs: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for j in 0..8 {
            // `f32::max` ignores a NaN operand.
            lanes[j] = lanes[j].max(c[j]);
        }
    }
    let mut m = f32::NEG_INFINITY;
    for &x in chunks.remainder().iter().chain(lanes.iter()) {
        m = m.max(x);
    }
    m
}

/// Index of the largest logit. Ties go to the lowest id, NaN never wins,
/// `-0.0 == 0.0`. Empty or all-NaN input gives 0; all `-inf` gives the first
/// `-inf`.
pub fn argmax(logits: &[f32]) -> u32 {
    let m = max_ignoring_nan(logits);
    logits.iter().position(|&x| x == m).unwrap_or(0) as u32
}

/// A seeded sampler: parameters plus the random stream.
#[derive(Clone, Debug)]
pub struct Sampler {
    params: SamplingParams,
    rng: Rng,
}

impl Sampler {
    /// Validates `params` and seeds the generator with `params.seed`.
    pub fn new(params: SamplingParams) -> Result<Self, SamplingError> {
        params.validate()?;
        Ok(Self {
            params,
            rng: Rng::new(params.seed),
        })
    }

    /// Shorthand for a greedy sampler.
    pub fn greedy() -> Self {
        Self {
            params: SamplingParams::greedy(),
            rng: Rng::new(0),
        }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Replaces the parameters, keeping the random stream where it is.
    pub fn set_params(&mut self, params: SamplingParams) -> Result<(), SamplingError> {
        params.validate()?;
        self.params = params;
        Ok(())
    }

    /// Restarts the random stream from `seed` (and records it in the params).
    pub fn reseed(&mut self, seed: u64) {
        self.params.seed = seed;
        self.rng = Rng::new(seed);
    }

    pub fn rng(&self) -> &Rng {
        &self.rng
    }

    pub fn rng_mut(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// Picks a token id from `logits` (one entry per vocabulary token).
    ///
    /// `work` is scratch of at least `logits.len()` entries; its contents on
    /// entry are ignored and on return are unspecified. `logits` is only
    /// read, never modified.
    ///
    /// Never panics. Empty logits give 0; logits with no usable entry (all
    /// NaN or `-inf`) give [`argmax`]'s answer. If `work` is too short this
    /// falls back to [`argmax`] (use [`Sampler::try_sample`] to get an error
    /// instead). Either way a non-greedy sampler consumes its one draw.
    pub fn sample(&mut self, logits: &[f32], work: &mut [Candidate]) -> u32 {
        match self.try_sample(logits, work) {
            Ok(t) => t,
            Err(_) => argmax(logits),
        }
    }

    /// [`Sampler::sample`], but a `work` slice shorter than `logits` is an
    /// error (the random draw is still consumed, so streams stay aligned).
    pub fn try_sample(
        &mut self,
        logits: &[f32],
        work: &mut [Candidate],
    ) -> Result<u32, SamplingError> {
        let p = self.params;
        if p.temperature == 0.0 {
            return Ok(argmax(logits));
        }
        // Exactly one draw per non-greedy call, whatever happens below.
        let u = self.rng.next_f64();
        if work.len() < logits.len() {
            return Err(SamplingError::WorkTooSmall {
                needed: logits.len(),
                got: work.len(),
            });
        }
        Ok(sample_with(&p, u, logits, work))
    }

    /// Convenience for callers with an allocator: grows `work` as needed.
    #[cfg(feature = "alloc")]
    pub fn sample_vec(&mut self, logits: &[f32], work: &mut alloc::vec::Vec<Candidate>) -> u32 {
        if work.len() < logits.len() {
            work.resize(logits.len(), Candidate::ZERO);
        }
        self.sample(logits, work)
    }
}

/// How one logit becomes a candidate value and a weight, for one call.
#[derive(Clone, Copy)]
struct Weigher {
    /// The largest logit, clamped to `f32::MAX`.
    maxc: f32,
    temperature: f32,
    /// Weights below this are dropped (the top weight is 1.0): `PRUNE_RATIO`
    /// when top-p is on, else `min_p` (exactly min-p's test), else 0.
    ratio: f32,
    /// Prefilter on the scaled distance `(value - maxc) / temperature`: below
    /// it the weight is 0 or under `ratio` (a little slack, so that the exact
    /// test on the weight has the last word).
    floor: f32,
}

impl Weigher {
    /// `None` when no logit is a candidate (empty, all NaN or `-inf`).
    fn new(p: &SamplingParams, logits: &[f32]) -> Option<Self> {
        let max = max_ignoring_nan(logits);
        if max == f32::NEG_INFINITY {
            return None;
        }
        let ratio = if p.top_p < 1.0 { PRUNE_RATIO } else { p.min_p };
        // `exp_nonpositive` is 0 below -87; e^(ln r - 1e-3) is r less 0.1%,
        // far more than its error, so nothing the weight test keeps is lost.
        let floor = if ratio > 0.0 {
            (libm::logf(ratio) - 1e-3).max(-87.0)
        } else {
            -87.0
        };
        Some(Weigher {
            maxc: max.min(f32::MAX),
            temperature: p.temperature,
            ratio,
            floor,
        })
    }

    /// The candidate value of logit `l`: `+inf` clamped, `-0.0` made `+0.0`,
    /// so values rank as a clean total order.
    #[inline]
    fn value(l: f32) -> f32 {
        l.min(f32::MAX) + 0.0
    }

    /// Whether logit `l` (value `v`) is a candidate that can survive the
    /// weight test. NaN and `-inf` fail `l > -inf`.
    #[inline]
    fn passes(&self, l: f32, v: f32) -> bool {
        (l > f32::NEG_INFINITY) & ((v - self.maxc) / self.temperature >= self.floor)
    }

    /// Unnormalized probability of a candidate value (the top gets 1.0).
    #[inline]
    fn weight(&self, v: f32) -> f32 {
        exp_nonpositive((v - self.maxc) / self.temperature)
    }

    /// The exact pruning (or min-p) test on a weight.
    #[inline]
    fn keeps(&self, w: f32) -> bool {
        (w > 0.0) & (w >= self.ratio)
    }
}

/// The non-greedy path, with the uniform draw `u` in `[0, 1)` already taken
/// and `work` at least as long as `logits`.
fn sample_with(p: &SamplingParams, u: f64, logits: &[f32], work: &mut [Candidate]) -> u32 {
    let Some(wr) = Weigher::new(p, logits) else {
        return argmax(logits);
    };
    let top_k_on = p.top_k > 0 && p.top_k < logits.len();
    let drawn = if !top_k_on && p.top_p >= 1.0 && p.min_p == 0.0 {
        // Nothing to rank or cut: stream over the logits, no scratch.
        stream::draw(&wr, u, logits)
    } else {
        let n = filter::filter(p, &wr, logits, work);
        filter::draw(&work[..n], u)
    };
    drawn.unwrap_or_else(|| argmax(logits))
}
