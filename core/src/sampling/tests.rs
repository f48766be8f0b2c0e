//! The sampler checked against an independent reference: the documented
//! pipeline written naively in `f64` below (sort, cut, softmax,
//! renormalize), sharing no code with the sampler.
//!
//! * Exact candidate sets: the tokens the sampler can ever draw, found by
//!   bisection over every draw its `Rng` can produce (`u = k / 2^53`), are
//!   the tokens the reference gives a positive probability; on random
//!   logits (ties included) and on hand-made boundaries.
//! * Distributions: over many seeds, the frequency of every token stays
//!   within a Chernoff bound of the reference probability (see
//!   [`assert_matches_distribution`] for the bound and its false-failure
//!   probability).
//!
//! The random generator's own tests are in `rng.rs`.

use super::*;
use std::vec;
use std::vec::Vec;

// ---------------------------------------------------------------------------
// The reference.

/// What the documented pipeline gives for one call.
struct Reference {
    /// Probability of each token id (0 for the ones cut).
    probs: Vec<f64>,
    /// Moving a threshold (the pruning ratio, `top_p`, `min_p`) by a
    /// relative 1e-5, or the weight-underflow floor by 1e-3 nats, changes
    /// the kept set, so the sampler's `f32` weights may legitimately decide
    /// the other way; or a kept token is too unlikely for a 53-bit draw to
    /// reach. The exact-set check does not apply.
    ambiguous: bool,
}

/// The relative nudge that makes a cut ambiguous: the sampler's `f32`
/// weights are off by at most about 1.5e-6 relative (2 ulp of
/// `exp_nonpositive`, plus `(logit - max) / temperature` rounded in `f32`
/// at up to 20 nats down), and so are its sums; this is several times that.
const NUDGE: f64 = 1e-5;

/// The documented pipeline (module docs of `sampling`), naively, and
/// whether its outcome is within rounding of a threshold.
fn reference(p: &SamplingParams, logits: &[f32]) -> Reference {
    let probs = reference_probs(p, logits, [1.0; 3], 0.0);
    let kept = support(&probs);
    let mut ambiguous = probs.iter().any(|&q| q > 0.0 && q < 1e-12);
    for k in 0..3 {
        for f in [1.0 - NUDGE, 1.0 + NUDGE] {
            let mut nudge = [1.0; 3];
            nudge[k] = f;
            ambiguous |= support(&reference_probs(p, logits, nudge, 0.0)) != kept;
        }
    }
    for shift in [-1e-3, 1e-3] {
        ambiguous |= support(&reference_probs(p, logits, [1.0; 3], shift)) != kept;
    }
    Reference { probs, ambiguous }
}

/// The pipeline with the pruning ratio, `top_p` and `min_p` multiplied by
/// `nudge` and the underflow floor moved by `shift` nats.
fn reference_probs(p: &SamplingParams, logits: &[f32], nudge: [f64; 3], shift: f64) -> Vec<f64> {
    let mut probs = vec![0.0; logits.len()];
    // 1. Candidates: not NaN, not -inf; +inf counts as f32::MAX.
    let mut c: Vec<(usize, f64)> = Vec::new();
    for (i, &l) in logits.iter().enumerate() {
        if !l.is_nan() && l != f32::NEG_INFINITY {
            c.push((i, l.min(f32::MAX) as f64));
        }
    }
    if c.is_empty() {
        return probs;
    }
    // Rank: higher logit first, ties to the lower id.
    c.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap().then(a.0.cmp(&b.0)));
    let max = c[0].1;
    let t = p.temperature as f64;
    let weight = |l: f64| ((l - max) / t).exp();
    // f32 weights are 0 more than 87 scaled nats below the top.
    c.retain(|&(_, l)| (l - max) / t >= -87.0 + shift);
    // Pruning of negligible candidates when top-p is on.
    if p.top_p < 1.0 {
        c.retain(|&(_, l)| weight(l) >= PRUNE_RATIO as f64 * nudge[0]);
    }
    // 2. Top-k.
    if p.top_k > 0 {
        c.truncate(p.top_k);
    }
    // 3. Softmax (unnormalized; the top weight is 1).
    let w: Vec<f64> = c.iter().map(|&(_, l)| weight(l)).collect();
    let total: f64 = w.iter().sum();
    // 4. Top-p: the smallest prefix with cumulative mass >= top_p.
    let mut n = c.len();
    if p.top_p < 1.0 {
        let target = p.top_p as f64 * nudge[1] * total;
        let mut cum = 0.0;
        for (i, wi) in w.iter().enumerate() {
            cum += wi;
            if cum >= target {
                n = i + 1;
                break;
            }
        }
    }
    // 5. Min-p: probability >= min_p * max probability.
    let kept: Vec<usize> = (0..n)
        .filter(|&i| w[i] >= p.min_p as f64 * nudge[2])
        .collect();
    // 6. Renormalize.
    let z: f64 = kept.iter().map(|&i| w[i]).sum();
    for &i in &kept {
        probs[c[i].0] = w[i] / z;
    }
    probs
}

fn support(probs: &[f64]) -> Vec<u32> {
    (0..probs.len() as u32)
        .filter(|&i| probs[i as usize] > 0.0)
        .collect()
}

// ---------------------------------------------------------------------------
// The sampler, seen from outside.

/// The tokens the sampler can draw: every `u = k / 2^53` that `Rng::next_f64`
/// can produce, enumerated by bisection (the draw is an inverse CDF in
/// token-id order, so the token never decreases as `u` grows).
fn drawable(p: &SamplingParams, logits: &[f32]) -> Vec<u32> {
    let mut work = vec![Candidate::ZERO; logits.len()];
    let mut draw = |k: u64| sample_with(p, k as f64 / (1u64 << 53) as f64, logits, &mut work);
    let last = (1u64 << 53) - 1;
    let mut out = Vec::new();
    let mut lo = 0u64;
    loop {
        let t = draw(lo);
        if let Some(&prev) = out.last() {
            assert!(t > prev, "the draw is not monotone in u");
        }
        out.push(t);
        if draw(last) == t {
            return out;
        }
        // draw(lo) == t, draw(hi) != t: find the first u past t.
        let mut hi = last;
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if draw(mid) == t {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo = hi;
    }
}

/// The set the pipeline keeps, read off its scratch (for vocabularies too
/// large to bisect over).
fn kept_by_filter(p: &SamplingParams, logits: &[f32]) -> Vec<u32> {
    let mut work = vec![Candidate::ZERO; logits.len()];
    let wr = Weigher::new(p, logits).unwrap();
    let n = filter::filter(p, &wr, logits, &mut work);
    let mut ids: Vec<u32> = work[..n]
        .iter()
        .filter(|c| c.value > 0.0)
        .map(|c| c.id)
        .collect();
    ids.sort();
    ids
}

fn params(temperature: f32, top_k: usize, top_p: f32, min_p: f32, seed: u64) -> SamplingParams {
    SamplingParams {
        temperature,
        top_k,
        top_p,
        min_p,
        seed,
    }
}

fn sampler(temperature: f32, top_k: usize, top_p: f32, min_p: f32, seed: u64) -> Sampler {
    Sampler::new(params(temperature, top_k, top_p, min_p, seed)).unwrap()
}

/// Test data from its own generator (xorshift64*), not the sampler's.
struct Data(u64);

impl Data {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize
    }

    /// `n` logits spread over `spread` nats; `levels > 0` rounds them to
    /// that many distinct values (many ties).
    fn logits(&mut self, n: usize, spread: f64, levels: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let x = self.unit();
                let x = if levels > 0 {
                    (x * levels as f64).floor() / levels as f64
                } else {
                    x
                };
                (x * spread - spread / 2.0) as f32
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Exact candidate sets.

fn assert_same_set(p: &SamplingParams, logits: &[f32], what: &str) {
    let r = reference(p, logits);
    assert!(!r.ambiguous, "{what}: ambiguous test case {p:?}");
    assert_eq!(drawable(p, logits), support(&r.probs), "{what}: {p:?}");
}

/// Random logits (some tie-heavy, some with NaN and infinities) under random
/// combinations of every filter.
#[test]
fn sampling_drawable_set_matches_reference() {
    let mut d = Data(0x5eed);
    let (mut checked, mut skipped) = (0, 0);
    for case in 0..400 {
        let n = [8, 13, 50, 200][case % 4];
        let levels = [0, 0, 6, 40][d.below(4)];
        let t = [0.3f32, 1.0, 2.5][d.below(3)];
        // Spread well inside what a 53-bit draw can reach at this temperature.
        let mut logits = d.logits(n, 20.0 * t as f64, levels);
        if case % 10 == 9 {
            logits[d.below(n)] = f32::NAN;
            logits[d.below(n)] = f32::NEG_INFINITY;
        }
        let p = params(
            t,
            [0, 0, 1, 2, 5, 64, 150][d.below(7)],
            [1.0, 1.0, 0.99, 0.9, 0.5, 0.1][d.below(6)],
            [0.0, 0.0, 0.01, 0.1, 0.5][d.below(5)],
            0,
        );
        let r = reference(&p, &logits);
        if r.ambiguous {
            skipped += 1;
            continue;
        }
        assert_eq!(
            drawable(&p, &logits),
            support(&r.probs),
            "case {case}: {p:?} on {logits:?}"
        );
        checked += 1;
    }
    // Rounding-close cuts are rare; most cases must count.
    assert!(
        skipped * 20 < checked,
        "{skipped} skipped, {checked} checked"
    );
}

/// Larger vocabularies: the buffered top-k selection cuts its buffer back
/// many times, and top-p alone needs several rounds (nuclei past 64 and
/// 512). The kept set is read off the scratch, and also bisected for where
/// it is small.
#[test]
fn sampling_drawable_set_matches_reference_large() {
    let mut d = Data(77);
    let (mut checked, mut skipped) = (0, 0);
    for case in 0..24 {
        let logits = d.logits(3000, [4.0, 8.0, 14.0][case % 3], [0, 50][case / 12]);
        let p = params(
            [0.7f32, 1.0, 1.6][case % 3],
            [0, 64, 700, 2999][(case / 3) % 4],
            [0.95f32, 0.5][(case / 6) % 2],
            0.0,
            0,
        );
        let r = reference(&p, &logits);
        if r.ambiguous {
            skipped += 1;
            continue;
        }
        let want = support(&r.probs);
        assert_eq!(kept_by_filter(&p, &logits), want, "case {case}: {p:?}");
        // Bisecting over a nucleus of a thousand takes too long; over top-k
        // 64 it does not.
        if want.len() <= 64 {
            assert_eq!(drawable(&p, &logits), want, "case {case}: {p:?}");
        }
        checked += 1;
    }
    assert!(
        skipped * 10 < checked,
        "{skipped} skipped, {checked} checked"
    );
}

/// A full-size row: the kept set read off the scratch.
#[test]
fn sampling_kept_set_matches_reference_full_vocab() {
    let mut d = Data(262_144);
    // A long tail over [-12, 4], and a head of a few hundred likely tokens
    // over [14, 17], as real rows have.
    let mut logits: Vec<f32> = d.logits(262_144, 16.0, 0).iter().map(|l| l - 4.0).collect();
    for i in 0..300 {
        logits[d.below(262_144)] = 14.0 + i as f32 * 0.01;
    }
    for p in [
        SamplingParams::gemma_default(0),
        params(1.0, 64, 1.0, 0.0, 0),
        params(1.0, 0, 0.95, 0.0, 0),
        params(0.8, 0, 0.5, 0.0, 0),
        params(1.0, 0, 1.0, 0.05, 0),
        params(0.7, 40, 0.9, 0.05, 0),
        params(1.0, 100_000, 0.8, 0.001, 0),
    ] {
        let r = reference(&p, &logits);
        assert!(!r.ambiguous, "{p:?}");
        assert_eq!(kept_by_filter(&p, &logits), support(&r.probs), "{p:?}");
    }
}

/// Hand-made boundaries: the cut falls exactly on a threshold or inside a
/// run of ties.
#[test]
fn sampling_boundaries_and_ties() {
    let equal = [1.5f32; 8];
    let next_up = |x: f32| f32::from_bits(x.to_bits() + 1);
    let next_down = |x: f32| f32::from_bits(x.to_bits() - 1);
    // Top-p on ties: 4 of 8 equal tokens reach exactly 0.5; one ulp more
    // needs a fifth; ties go to the lowest ids.
    for (top_p, want) in [
        (0.5, vec![0, 1, 2, 3]),
        (next_up(0.5), vec![0, 1, 2, 3, 4]),
        (next_down(0.5), vec![0, 1, 2, 3]),
        (0.125, vec![0]),
        (next_up(0.875), vec![0, 1, 2, 3, 4, 5, 6, 7]),
    ] {
        let p = params(1.0, 0, top_p, 0.0, 0);
        assert_eq!(drawable(&p, &equal), want, "top_p {top_p}");
        assert_eq!(support(&reference(&p, &equal).probs), want);
    }
    // Top-k inside a run of ties, then top-p on what it leaves (3 of 6).
    let p = params(1.0, 6, 0.5, 0.0, 0);
    assert_eq!(drawable(&p, &equal), [0, 1, 2]);
    let ties = [1.0f32, 3.0, 3.0, 3.0, 2.0, 3.0];
    for (k, want) in [(1, vec![1]), (2, vec![1, 2]), (4, vec![1, 2, 3, 5])] {
        assert_same_set(&params(0.8, k, 1.0, 0.0, 0), &ties, "top-k ties");
        assert_eq!(drawable(&params(0.8, k, 1.0, 0.0, 0), &ties), want);
    }
    // Min-p 1 keeps exactly the tokens tied at the top.
    let p = params(2.0, 0, 1.0, 1.0, 0);
    let l = [2.0f32, 5.0, 5.0, 1.0, 5.0];
    assert_eq!(drawable(&p, &l), [1, 2, 4]);
    assert_eq!(support(&reference(&p, &l).probs), [1, 2, 4]);
    // Min-p after top-p: top-p 0.8 keeps ids 0 and 1 (weights 1 and
    // e^-1 = 0.37 reach 0.88 of the mass), then min-p 0.4 drops id 1 and
    // min-p 0.3 does not.
    let l = [4.0f32, 3.0, 2.0, 1.0];
    assert_eq!(drawable(&params(1.0, 0, 0.8, 0.0, 0), &l), [0, 1]);
    assert_eq!(drawable(&params(1.0, 0, 0.8, 0.4, 0), &l), [0]);
    assert_eq!(drawable(&params(1.0, 0, 0.8, 0.3, 0), &l), [0, 1]);
    // +inf shares the top; finite logits are then infinitely less likely.
    let inf = [1.0, f32::INFINITY, 3.0, f32::INFINITY, f32::NAN];
    for p in [params(1.0, 0, 1.0, 0.0, 0), params(1.0, 3, 0.9, 0.1, 0)] {
        assert_eq!(drawable(&p, &inf), [1, 3], "{p:?}");
        assert_eq!(support(&reference(&p, &inf).probs), [1, 3]);
    }
}

/// The documented pruning: with top-p on, candidates under 1e-9 of the top
/// weight are dropped before the nucleus is measured, so a long tail of
/// them does not drag the nucleus out.
#[test]
fn sampling_pruning_before_top_p() {
    // One token at 0, 100,000 at -21 (weight 7.6e-10 each, 7.6e-5 in all).
    let mut logits = vec![-21.0f32; 100_001];
    logits[0] = 0.0;
    let p = params(1.0, 0, 0.99999, 0.0, 0);
    assert_eq!(kept_by_filter(&p, &logits), [0]);
    assert_eq!(support(&reference(&p, &logits).probs), [0]);
    // At -20 (2.1e-9 each) they are candidates, and the nucleus needs most
    // of them. Where it ends in this flat tail is down to rounding (each
    // token moves the sum by 2e-9), so only its size is compared.
    logits[1..].fill(-20.0);
    let want = support(&reference(&p, &logits).probs).len();
    let got = kept_by_filter(&p, &logits).len();
    assert!(
        want > 90_000 && got.abs_diff(want) < 1000,
        "{got} vs {want}"
    );
    // Without top-p nothing is pruned.
    logits[1..].fill(-21.0);
    let p = params(1.0, 0, 1.0, 0.0, 0);
    assert_eq!(drawable(&p, &logits[..1001]).len(), 1001);
}

// ---------------------------------------------------------------------------
// Distributions.

/// `KL(q || p)` between Bernoulli(q) and Bernoulli(p).
fn kl_bernoulli(q: f64, p: f64) -> f64 {
    let term = |a: f64, b: f64| {
        if a == 0.0 {
            0.0
        } else if b == 0.0 {
            f64::INFINITY
        } else {
            a * (a / b).ln()
        }
    };
    term(q, p) + term(1.0 - q, 1.0 - p)
}

/// Draws `seeds * per_seed` tokens with `p` (one sampler per seed) and checks
/// every token's frequency against the reference.
///
/// The bound: a token of probability `p_i` is drawn `X_i ~ Binomial(N, p_i)`
/// times, and by the Chernoff bound each tail has
/// `P(N * KL(X_i / N || p_i) >= L) <= e^-L`. The check fails if any token
/// has `N * KL(f_i || p_i) > L` with `L = ln(2 V / DELTA)` over the `V`
/// tokens of positive probability, so a correct sampler fails it with
/// probability at most `2 V e^-L = DELTA = 1e-9` per call (a union bound,
/// no normal approximation). Tokens of probability 0 must never be drawn.
/// With N = 120,000 and V = 200 this still catches, say, a token of
/// probability 0.05 drawn at 0.0452 or 0.0550, or any token of probability
/// above 2.3e-4 left out.
fn assert_matches_distribution(p: SamplingParams, logits: &[f32], seeds: u64, per_seed: usize) {
    const DELTA: f64 = 1e-9;
    let r = reference(&p, logits);
    assert!(!r.ambiguous, "ambiguous test case {p:?}");
    let mut counts = vec![0u64; logits.len()];
    let mut work = vec![Candidate::ZERO; logits.len()];
    for seed in 0..seeds {
        let mut s = Sampler::new(SamplingParams {
            seed: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ p.seed,
            ..p
        })
        .unwrap();
        for _ in 0..per_seed {
            counts[s.sample(logits, &mut work) as usize] += 1;
        }
    }
    let n = (seeds as usize * per_seed) as f64;
    let v = r.probs.iter().filter(|&&q| q > 0.0).count() as f64;
    let limit = (2.0 * v / DELTA).ln();
    for (i, (&c, &q)) in counts.iter().zip(&r.probs).enumerate() {
        let f = c as f64 / n;
        let stat = n * kl_bernoulli(f, q);
        assert!(
            stat <= limit,
            "{p:?}: token {i} drawn {c} times in {n} (frequency {f:.5}), reference \
             probability {q:.5}: N*KL = {stat:.1} > {limit:.1}"
        );
    }
}

/// A mix of logits: a head of likely tokens over a flat tail.
fn mixed_logits(n: usize, seed: u64) -> Vec<f32> {
    let mut d = Data(seed);
    let mut l = d.logits(n, 6.0, 0);
    for i in 0..n.min(12) {
        l[d.below(n)] = 3.0 + 0.25 * i as f32;
    }
    l
}

#[test]
fn sampling_distribution_temperature() {
    for (n, t) in [(8, 1.0f32), (50, 0.5), (200, 1.0), (200, 2.0)] {
        let logits = mixed_logits(n, n as u64 + 1);
        assert_matches_distribution(params(t, 0, 1.0, 0.0, 1), &logits, 300, 400);
    }
}

#[test]
fn sampling_distribution_top_k() {
    for (n, k, t) in [(8, 3, 1.0f32), (50, 5, 1.0), (200, 20, 0.7), (200, 64, 1.5)] {
        let logits = mixed_logits(n, n as u64 + 2);
        assert_matches_distribution(params(t, k, 1.0, 0.0, 2), &logits, 300, 400);
    }
}

#[test]
fn sampling_distribution_top_p() {
    for (n, top_p, t) in [
        (8, 0.7f32, 1.0f32),
        (50, 0.9, 1.0),
        (200, 0.5, 0.8),
        (200, 0.95, 1.3),
    ] {
        let logits = mixed_logits(n, n as u64 + 3);
        assert_matches_distribution(params(t, 0, top_p, 0.0, 3), &logits, 300, 400);
    }
}

#[test]
fn sampling_distribution_min_p() {
    for (n, min_p, t) in [(8, 0.3f32, 1.0f32), (50, 0.05, 1.0), (200, 0.1, 1.2)] {
        let logits = mixed_logits(n, n as u64 + 4);
        assert_matches_distribution(params(t, 0, 1.0, min_p, 4), &logits, 300, 400);
    }
}

#[test]
fn sampling_distribution_combined() {
    for (n, p) in [
        (200, SamplingParams::gemma_default(5)),
        (120, SamplingParams::gemma_default(6)),
        (200, params(0.7, 20, 0.9, 0.05, 7)),
        (200, params(1.5, 100, 0.8, 0.02, 8)),
        (50, params(1.0, 10, 1.0, 0.2, 9)),
    ] {
        let logits = mixed_logits(n, n as u64 + 5);
        assert_matches_distribution(p, &logits, 300, 400);
    }
}

// ---------------------------------------------------------------------------
// Edge cases of the public API.

#[test]
fn sampling_argmax_ties_go_to_lowest_id() {
    assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
    assert_eq!(argmax(&[5.0, 5.0, 5.0]), 0);
    assert_eq!(argmax(&[-0.0, 0.0]), 0);
    assert_eq!(argmax(&[0.0, -0.0]), 0);
    // Long enough to go through the vectorized lanes, max in a late lane.
    let mut v = [0.0f32; 37];
    v[30] = 2.0;
    v[13] = 2.0;
    v[36] = 1.0;
    assert_eq!(argmax(&v), 13);
    assert_eq!(argmax(&[f32::INFINITY, 1.0, f32::INFINITY]), 0);
    let mut greedy = Sampler::greedy();
    let mut work = [Candidate::ZERO; 4];
    assert_eq!(greedy.sample(&[1.0, 3.0, 3.0, 2.0], &mut work), 1);
}

#[test]
fn sampling_nan_handling() {
    let nan = f32::NAN;
    assert_eq!(argmax(&[nan, 1.0, nan, 2.0, nan]), 3);
    assert_eq!(argmax(&[nan, nan]), 0);
    assert_eq!(argmax(&[]), 0);
    assert_eq!(argmax(&[f32::NEG_INFINITY, f32::NEG_INFINITY]), 0);
    assert_eq!(argmax(&[nan, f32::NEG_INFINITY]), 1);
    let mut v = [nan; 20];
    v[17] = -5.0;
    assert_eq!(argmax(&v), 17);

    let mut work = [Candidate::ZERO; 8];
    for (t, k, tp, mp) in [
        (1.0, 0, 1.0, 0.0),
        (0.7, 3, 0.9, 0.05),
        (2.0, 0, 0.5, 0.0),
        (1.0, 0, 1.0, 0.3),
    ] {
        let mut s = sampler(t, k, tp, mp, 7);
        for _ in 0..200 {
            let t = s.sample(&[nan, 0.5, nan, 1.0, nan, f32::NEG_INFINITY], &mut work);
            assert!(t == 1 || t == 3, "picked {t}");
        }
        // Nothing usable: falls back to argmax, no panic.
        assert_eq!(s.sample(&[nan, nan, nan], &mut work), 0);
        assert_eq!(s.sample(&[f32::NEG_INFINITY; 3], &mut work), 0);
        assert_eq!(s.sample(&[], &mut work), 0);
        // +inf dominates (shared among the +inf entries).
        for _ in 0..50 {
            let t = s.sample(&[1.0, f32::INFINITY, 3.0, f32::INFINITY], &mut work);
            assert!(t == 1 || t == 3);
        }
        // Extreme finite values do not overflow into NaN.
        for _ in 0..50 {
            let t = s.sample(&[-f32::MAX, f32::MAX, 0.0], &mut work);
            assert_eq!(t, 1);
        }
    }
}

#[test]
fn sampling_work_too_small() {
    let mut s = sampler(1.0, 0, 1.0, 0.0, 1);
    let mut work = [Candidate::ZERO; 2];
    assert_eq!(
        s.try_sample(&[0.0, 1.0, 5.0], &mut work),
        Err(SamplingError::WorkTooSmall { needed: 3, got: 2 })
    );
    assert_eq!(s.sample(&[0.0, 1.0, 5.0], &mut work), 2);
}

#[test]
fn sampling_same_seed_same_sequence() {
    let logits = Data(99).logits(300, 6.0, 0);
    let mut work = [Candidate::ZERO; 300];
    for (k, p, mp) in [
        (0, 1.0, 0.0),
        (40, 0.95, 0.0),
        (0, 0.9, 0.0),
        (0, 1.0, 0.05),
        (10, 0.8, 0.1),
    ] {
        let mut a = sampler(1.0, k, p, mp, 1234);
        let mut b = sampler(1.0, k, p, mp, 1234);
        let mut c = sampler(1.0, k, p, mp, 4321);
        let mut seq_a = [0u32; 64];
        let mut seq_b = [0u32; 64];
        let mut seq_c = [0u32; 64];
        for i in 0..64 {
            seq_a[i] = a.sample(&logits, &mut work);
            seq_b[i] = b.sample(&logits, &mut work);
            seq_c[i] = c.sample(&logits, &mut work);
        }
        assert_eq!(seq_a, seq_b);
        assert_ne!(seq_a, seq_c, "k={k} p={p} min_p={mp}");
    }
}

#[test]
fn sampling_top_k_1_tiny_top_p_and_min_p_1_are_argmax() {
    let mut work = [Candidate::ZERO; 512];
    for seed in 0..20u64 {
        let logits = Data(seed + 1).logits(500, 10.0, 0);
        let want = argmax(&logits);
        for t in [0.01f32, 0.5, 1.0, 3.0, 100.0, 1e6] {
            for (k, p, mp) in [
                (1, 1.0, 0.0),
                (0, 1e-6, 0.0),
                (50, 1e-6, 0.0),
                (0, 1.0, 1.0),
            ] {
                // Not min-p 1 or top-p alone at temperatures so high that
                // weights near the top round to 1.0 and tie with it (both
                // rank by weight; ties then go to the lowest id).
                if (mp == 1.0 || (k == 0 && p < 1.0)) && t > 3.0 {
                    continue;
                }
                let mut s = sampler(t, k, p, mp, seed);
                for _ in 0..5 {
                    assert_eq!(s.sample(&logits, &mut work), want);
                }
            }
        }
    }
    // Ties: lowest id, as argmax.
    for (k, p, mp) in [(1, 1.0, 0.0), (0, 1e-6, 0.0)] {
        let mut s = sampler(5.0, k, p, mp, 3);
        for _ in 0..50 {
            assert_eq!(s.sample(&[0.0, 2.0, 1.0, 2.0, 2.0], &mut work), 1);
        }
    }
}

#[test]
fn sampling_exp_nonpositive_accuracy() {
    assert_eq!(exp_nonpositive(0.0), 1.0);
    assert_eq!(exp_nonpositive(-0.0), 1.0);
    assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
    assert_eq!(exp_nonpositive(-87.5), 0.0);
    assert_eq!(exp_nonpositive(-1e30), 0.0);
    let mut worst = 0.0f64;
    let mut x = -87.0f32;
    while x <= 0.0 {
        let want = libm::exp(x as f64);
        let got = exp_nonpositive(x) as f64;
        let rel = ((got - want) / want).abs();
        worst = worst.max(rel);
        x += 0.000_37;
    }
    // 2 ulp of f32 is about 2.4e-7 relative.
    assert!(worst < 2.4e-7, "worst relative error {worst}");
    // Monotone non-increasing going down (the ranking relies on it).
    let mut prev = 1.0f32;
    let mut x = 0.0f32;
    while x > -90.0 {
        let y = exp_nonpositive(x);
        assert!(y <= prev, "{x}");
        prev = y;
        x -= 0.001_3;
    }
}

#[test]
fn sampling_validate() {
    let ok = params(0.7, 40, 0.9, 0.05, 1);
    assert!(ok.validate().is_ok());
    assert!(SamplingParams::greedy().validate().is_ok());
    assert!(SamplingParams::gemma_default(0).validate().is_ok());
    let with = |f: fn(&mut SamplingParams)| {
        let mut p = ok;
        f(&mut p);
        p.validate()
    };
    assert_eq!(
        with(|p| p.temperature = -0.1),
        Err(SamplingError::Temperature(-0.1))
    );
    assert!(matches!(
        with(|p| p.temperature = f32::NAN),
        Err(SamplingError::Temperature(_))
    ));
    assert!(matches!(
        with(|p| p.temperature = f32::INFINITY),
        Err(SamplingError::Temperature(_))
    ));
    assert_eq!(with(|p| p.top_p = 0.0), Err(SamplingError::TopP(0.0)));
    assert_eq!(with(|p| p.top_p = 1.5), Err(SamplingError::TopP(1.5)));
    assert!(matches!(
        with(|p| p.top_p = f32::NAN),
        Err(SamplingError::TopP(_))
    ));
    assert_eq!(with(|p| p.min_p = 2.0), Err(SamplingError::MinP(2.0)));
    assert_eq!(with(|p| p.min_p = -0.5), Err(SamplingError::MinP(-0.5)));
    assert!(matches!(
        with(|p| p.min_p = f32::NAN),
        Err(SamplingError::MinP(_))
    ));
    assert!(with(|p| p.top_p = 1.0).is_ok());
    assert!(with(|p| p.min_p = 1.0).is_ok());
    assert!(with(|p| p.temperature = 0.0).is_ok());
    assert!(Sampler::new(SamplingParams { top_p: 1.5, ..ok }).is_err());
}

#[cfg(feature = "alloc")]
#[test]
fn sampling_error_messages() {
    use alloc::string::ToString;
    let m = SamplingError::Temperature(-1.0).to_string();
    assert!(m.contains("temperature") && m.contains(">= 0"), "{m}");
    let m = SamplingError::TopP(1.5).to_string();
    assert!(m.contains("top_p") && m.contains("(0, 1]"), "{m}");
    let m = SamplingError::MinP(2.0).to_string();
    assert!(m.contains("min_p") && m.contains("[0, 1]"), "{m}");
}

#[test]
fn sampling_greedy_draws_nothing() {
    let mut s = Sampler::new(SamplingParams {
        seed: 77,
        ..SamplingParams::greedy()
    })
    .unwrap();
    let mut work = [Candidate::ZERO; 3];
    s.sample(&[0.0, 1.0, 2.0], &mut work);
    assert_eq!(s.rng(), &Rng::new(77));
    // Non-greedy: exactly one draw per call, even on degenerate input, in
    // every mode.
    for (k, p, mp) in [(0, 1.0, 0.0), (2, 1.0, 0.0), (0, 0.5, 0.0), (0, 1.0, 0.5)] {
        let mut s = sampler(1.0, k, p, mp, 77);
        let mut r = Rng::new(77);
        s.sample(&[0.0, 1.0, 2.0], &mut work);
        s.sample(&[f32::NAN; 3], &mut work);
        s.sample(&[0.0, 1.0, 2.0], &mut []);
        r.next_u64();
        r.next_u64();
        r.next_u64();
        assert_eq!(s.rng(), &r);
    }
}
