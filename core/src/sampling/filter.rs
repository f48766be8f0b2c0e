//! The sampling pipeline with cuts (top-k, top-p, min-p), written plainly:
//! gather into `work` only what can make the cut, rank it with
//! `select_nth_unstable_by` and a sort, then softmax, cut and draw. (Top-p
//! without top-k hands the ranking to `nucleus.rs`.)
//!
//! It replaced a 1/32-nat histogram pre-filter and a radix selection for
//! top-k: on real 262144-entry rows it takes 0.14 to 0.19 ms for top-k 64
//! or Gemma's defaults where those took 0.37 (and 0.19 ms on a flat row
//! where they took 3.6), and 0.27 ms for min-p alone where streaming took
//! 0.52 (`benches/benches/sampling.rs`), because its one pass over the
//! vocabulary only compares each logit with the entry bar of a small
//! buffer, or with the min-p threshold.

use super::{Candidate, SamplingParams, Weigher};
use core::cmp::Ordering;

/// Rank order: higher value first, ties to the lower id. Values are never
/// NaN here.
fn by_rank(a: &Candidate, b: &Candidate) -> Ordering {
    b.value.total_cmp(&a.value).then(a.id.cmp(&b.id))
}

/// Steps 1-5 of the pipeline (temperature > 0, `work` at least as long as
/// `logits`): leaves the surviving candidates in `work[..n]`, in id order,
/// with their unnormalized weights (the top one has weight 1.0), and
/// returns `n`.
pub(super) fn filter(
    p: &SamplingParams,
    wr: &Weigher,
    logits: &[f32],
    work: &mut [Candidate],
) -> usize {
    let (mut n, ranked) = if p.top_k > 0 && p.top_k < logits.len() {
        (top_k_then_top_p(p, wr, logits, work), true)
    } else if p.top_p < 1.0 {
        (super::nucleus::top_p_only(p, wr, logits, work), false)
    } else {
        (gather(wr, logits, work), false)
    };
    // 5. Min-p (the top weight is 1.0, so this is `prob < min_p * max_prob`).
    if p.min_p > 0.0 {
        let mut m = 0;
        for i in 0..n {
            let c = work[i];
            work[m] = c;
            m += (c.value >= p.min_p) as usize;
        }
        n = m;
    }
    if ranked {
        work[..n].sort_unstable_by_key(|c| c.id);
    }
    n
}

/// Every candidate the weigher keeps, with its weight, in id order.
fn gather(wr: &Weigher, logits: &[f32], work: &mut [Candidate]) -> usize {
    let mut n = 0;
    for (i, &l) in logits.iter().enumerate() {
        let v = Weigher::value(l);
        if wr.passes(l, v) {
            let w = wr.weight(v);
            if wr.keeps(w) {
                work[n] = Candidate {
                    id: i as u32,
                    value: w,
                };
                n += 1;
            }
        }
    }
    n
}

/// The (at most) `k` best candidates in rank order that pass the weigher's
/// prefilter, into `work[..n]` in no particular order, with their values;
/// `n < k` when there are fewer. One pass: a logit enters the buffer only
/// if it beats the worst of the best `k` kept so far (a later id with an
/// equal value ranks below it), and a full buffer is cut back to its best
/// `k` by `select_nth_unstable_by`.
fn best_k(wr: &Weigher, logits: &[f32], k: usize, work: &mut [Candidate]) -> usize {
    debug_assert!(k > 0);
    let cap = k.saturating_mul(4).max(k + 64).min(work.len());
    let mut n = 0;
    let mut bar = f32::NEG_INFINITY;
    for (i, &l) in logits.iter().enumerate() {
        let v = Weigher::value(l);
        if v > bar && wr.passes(l, v) {
            work[n] = Candidate {
                id: i as u32,
                value: v,
            };
            n += 1;
            if n == cap && cap > k {
                work[..n].select_nth_unstable_by(k - 1, by_rank);
                n = k;
                bar = work[k - 1].value;
            }
        }
    }
    if n > k {
        work[..n].select_nth_unstable_by(k - 1, by_rank);
        n = k;
    }
    n
}

/// Sorts `cands` by rank and turns their values into weights; returns how
/// many the weigher keeps (a prefix: weights only fall along the ranking).
fn rank_and_weigh(wr: &Weigher, cands: &mut [Candidate]) -> usize {
    cands.sort_unstable_by(by_rank);
    let mut n = 0;
    for c in cands.iter_mut() {
        c.value = wr.weight(c.value);
        n += wr.keeps(c.value) as usize;
    }
    n
}

/// Length of the shortest prefix of rank-sorted `cands` whose weight
/// reaches `target` (summed in rank order); `None` if the whole falls short.
fn nucleus_len(cands: &[Candidate], target: f64) -> Option<usize> {
    let mut acc = 0.0f64;
    for (i, c) in cands.iter().enumerate() {
        acc += c.value as f64;
        if acc >= target {
            return Some(i + 1);
        }
    }
    None
}

/// 2-4. Top-k, then weights, then top-p on the `top_k` survivors; leaves
/// them in rank order.
fn top_k_then_top_p(
    p: &SamplingParams,
    wr: &Weigher,
    logits: &[f32],
    work: &mut [Candidate],
) -> usize {
    let n = best_k(wr, logits, p.top_k, work);
    let n = rank_and_weigh(wr, &mut work[..n]);
    if p.top_p < 1.0 {
        let cands = &work[..n];
        let total: f64 = cands.iter().map(|c| c.value as f64).sum();
        // Rounding may leave the sum short of `top_p * total`: keep all.
        nucleus_len(cands, p.top_p as f64 * total).unwrap_or(n)
    } else {
        n
    }
}

/// Inverse-CDF draw over the weights in `cands` (in id order) with uniform
/// `u` in `[0, 1)`; `None` if no weight is positive.
pub(super) fn draw(cands: &[Candidate], u: f64) -> Option<u32> {
    let total: f64 = cands.iter().map(|c| c.value as f64).sum();
    super::stream::scan(cands.iter().copied(), 0.0, u * total)
}
