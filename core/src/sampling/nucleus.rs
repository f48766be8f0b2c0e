//! Top-p without top-k, over the whole vocabulary: a weight histogram
//! finds which candidates can be in the nucleus, and a radix selection on
//! those finds the exact cut, both in time linear in the vocabulary.
//!
//! Without top-k the nucleus can be anything from one token to most of the
//! vocabulary, and comparison-based selection pays for its size: on real
//! 262144-entry rows at temperature 1 this path costs 1.2 to 1.4 ms, where
//! the plain alternative costs 0.6 to 5 ms, and on wide nuclei
//! (the same rows at temperature 1.5 to 2, or a flat row) it stays at 2 to
//! 5 ms where `select_nth_unstable_by` and sorting cost 9 to 21 ms
//! (`benches/benches/sampling.rs`; the wide cases were measured once, by
//! hand). Everything stays in token-id order, so nothing is sorted.

use super::stream::{chunk_sum, weights, CHUNK};
use super::{Candidate, SamplingParams, Weigher};

/// Histogram size of the pre-filter.
const BINS: usize = 1024;

/// Radix levels of the selection: (shift, bits) from the top of the key.
const RADIX_LEVELS: [(u32, u32); 3] = [(21, 11), (10, 11), (0, 10)];

/// Pre-filter bin of a weight in `[0, 1]`: 32 bins per octave over
/// `[2^-32, 1]`, everything smaller in bin 0. Non-decreasing in `w`, and a
/// function of its bits, so equal weights share a bin.
#[inline]
fn bin(w: f32) -> usize {
    let rel = w.to_bits().saturating_sub(95 << 23);
    ((rel >> 18) as usize).min(BINS - 1)
}

/// 3-4 (`top_p < 1`, no top-k): leaves the nucleus in `work[..n]`, in id
/// order, with its weights, and returns `n`. Candidates rank by weight,
/// ties to the lower id.
pub(super) fn top_p_only(
    p: &SamplingParams,
    wr: &Weigher,
    logits: &[f32],
    work: &mut [Candidate],
) -> usize {
    // One read-only pass: the total mass, and the mass per bin of the
    // weight's own bits. Equal weights always share a bin, so gathering
    // every bin down to the one where the mass reaches the target gathers
    // everything down to the exact cut. Four interleaved histograms, so that
    // runs of weights in one bin do not serialize on one counter.
    let mut buf = [0.0f32; CHUNK];
    let mut hist = [[0.0f64; BINS]; 4];
    let mut total = 0.0f64;
    for chunk in logits.chunks(CHUNK) {
        weights(wr, chunk, &mut buf);
        let ws = &buf[..chunk.len()];
        total += chunk_sum(ws);
        let mut quads = ws.chunks_exact(4);
        for q in &mut quads {
            for (h, &w) in hist.iter_mut().zip(q) {
                h[bin(w)] += w as f64;
            }
        }
        for &w in quads.remainder() {
            hist[0][bin(w)] += w as f64;
        }
    }
    let target = p.top_p as f64 * total;
    let mut floor = 0;
    let mut above = 0.0f64;
    for b in (0..BINS).rev() {
        above += hist[0][b] + hist[1][b] + hist[2][b] + hist[3][b];
        if above >= target {
            floor = b;
            break;
        }
    }
    // Gather the candidates in the bins at or above the cut's bin, in id
    // order.
    let mut m = 0;
    for (ci, chunk) in logits.chunks(CHUNK).enumerate() {
        weights(wr, chunk, &mut buf);
        let ws = &buf[..chunk.len()];
        // Bins grow with the weight: skip chunks whose largest is too small.
        let top = ws.iter().fold(0.0f32, |a, &w| a.max(w));
        if !((top > 0.0) & (bin(top) >= floor)) {
            continue;
        }
        for (j, &w) in ws.iter().enumerate() {
            // One well-predicted branch when top-p leaves few.
            if (w > 0.0) & (bin(w) >= floor) {
                work[m] = Candidate {
                    id: (ci * CHUNK + j) as u32,
                    value: w,
                };
                m += 1;
            }
        }
    }
    keep_top(&mut work[..m], target)
}

/// Maps a non-NaN `f32` to a `u32` with the same order (`-0.0` is assumed
/// normalized to `+0.0` beforehand).
#[inline]
fn order_key(v: f32) -> u32 {
    let b = v.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// Keeps (stably, in place) the shortest prefix of `cands` in rank order
/// (weight descending, then id ascending) whose weight reaches `target`,
/// and returns its length. If the whole weight falls short of `target`
/// (rounding), everything is kept.
///
/// The cut is found by radix selection on [`order_key`]: each level builds a
/// histogram of the next bits among the candidates that share the prefix
/// found so far, then walks it from the top until the target is reached.
fn keep_top(cands: &mut [Candidate], target: f64) -> usize {
    let mut prefix = 0u32;
    let mut pmask = 0u32;
    let mut rest = target;
    let mut hist = [0.0f64; 2048];
    let mut len = cands.len();
    for (li, &(shift, bits)) in RADIX_LEVELS.iter().enumerate() {
        let cands = &mut cands[..len];
        let buckets = 1usize << bits;
        let bmask = (buckets as u32) - 1;
        let hist = &mut hist[..buckets];
        hist.fill(0.0);
        for c in cands.iter() {
            let k = order_key(c.value);
            if k & pmask == prefix {
                hist[((k >> shift) & bmask) as usize] += c.value as f64;
            }
        }
        let mut above = 0.0f64;
        let mut chosen = None;
        let mut lowest_nonempty = None;
        for b in (0..buckets).rev() {
            let h = hist[b];
            if h > 0.0 {
                lowest_nonempty = Some((b, above));
            }
            if h > 0.0 && above + h >= rest {
                chosen = Some((b, above));
                break;
            }
            above += h;
        }
        let (b, above) = match (chosen, lowest_nonempty) {
            (Some(c), _) => c,
            // Short of the target at the top level: keep everything.
            (None, _) if li == 0 => return cands.len(),
            // Deeper down, rounding between the levels' sums: take the
            // lowest bucket, whose ties then all stay.
            (None, Some(l)) => l,
            (None, None) => return cands.len(),
        };
        prefix |= (b as u32) << shift;
        pmask |= bmask << shift;
        rest -= above;
        if li == 0 {
            // Everything below the chosen bucket is out: drop it now
            // (stably, branch-free) so the later levels scan only the rest.
            let floor = prefix;
            let mut j = 0;
            for i in 0..len {
                let c = cands[i];
                cands[j] = c;
                j += (order_key(c.value) >= floor) as usize;
            }
            len = j;
        }
    }
    let cands = &mut cands[..len];
    // `prefix` is now the exact key at the cut; keep all above it and, in id
    // order, just enough of its ties to cover what remains of the target.
    let mut n = 0;
    let mut ties = 0.0f64;
    for i in 0..cands.len() {
        let c = cands[i];
        let k = order_key(c.value);
        let keep = if k == prefix {
            let take = ties < rest;
            ties += c.value as f64;
            take
        } else {
            k > prefix
        };
        if keep {
            cands[n] = c;
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_key_is_monotone() {
        let vals = [
            -f32::MAX,
            -1e10,
            -1.0,
            -1e-30,
            0.0,
            1e-40,
            1e-30,
            0.5,
            1.0,
            3.0,
            f32::MAX,
        ];
        for w in vals.windows(2) {
            assert!(order_key(w[0]) < order_key(w[1]), "{:?}", w);
        }
    }

    #[test]
    fn bins_grow_with_the_weight() {
        let mut prev = 0;
        let mut w = 1e-12f32;
        while w <= 1.0 {
            let b = bin(w);
            assert!(b >= prev, "{w}");
            prev = b;
            w *= 1.01;
        }
        assert_eq!(bin(1.0), BINS - 1);
        assert_eq!(bin(0.0), 0);
    }
}
