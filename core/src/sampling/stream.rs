//! Passes that compute weights straight from the logits, in 64-entry
//! chunks whose arithmetic vectorizes, and write no scratch: the whole draw
//! for plain temperature sampling, and the weights `nucleus.rs` builds its
//! histogram from; and the inverse-CDF scan that this draw and the
//! pipeline's (`filter.rs`) share.
//!
//! One of the two clever paths that stay (with `nucleus.rs`): on real
//! 262144-entry rows the streaming draw costs about 0.5 ms, where gathering
//! every candidate into `work` and drawing from there (the plain way) costs
//! over 2 ms, 14% of a decode step (`benches/benches/sampling.rs`).

use super::{Candidate, Weigher};

/// Chunk length: a chunk's weights are computed branch-free into a small
/// stack buffer (so `exp_nonpositive` vectorizes), then consumed.
pub(super) const CHUNK: usize = 64;

/// Weights of `logits` (at most `CHUNK` of them) into `out`; 0 for
/// non-candidates and for weights the weigher drops. Branch-free inside;
/// plain temperature sampling (no ratio) skips the ratio test, which costs
/// it 8% (40 us a row).
#[inline]
pub(super) fn weights(wr: &Weigher, logits: &[f32], out: &mut [f32; CHUNK]) {
    let ratio = wr.ratio;
    if ratio > 0.0 {
        for (o, &l) in out.iter_mut().zip(logits) {
            let w = wr.weight(Weigher::value(l));
            *o = if (l > f32::NEG_INFINITY) & (w >= ratio) {
                w
            } else {
                0.0
            };
        }
    } else {
        for (o, &l) in out.iter_mut().zip(logits) {
            let w = wr.weight(Weigher::value(l));
            *o = if l > f32::NEG_INFINITY { w } else { 0.0 };
        }
    }
}

/// Sum of a chunk of weights over eight fixed lanes (vectorizes; the same
/// on every platform).
#[inline]
pub(super) fn chunk_sum(ws: &[f32]) -> f64 {
    let mut lanes = [0.0f64; 8];
    let mut chunks = ws.chunks_exact(8);
    for c in &mut chunks {
        for j in 0..8 {
            lanes[j] += c[j] as f64;
        }
    }
    let mut s = 0.0;
    for l in lanes {
        s += l;
    }
    for &w in chunks.remainder() {
        s += w as f64;
    }
    s
}

/// Total weight of the candidates the weigher keeps, summed chunk by chunk
/// in token-id order.
fn total(wr: &Weigher, logits: &[f32]) -> f64 {
    let mut buf = [0.0f32; CHUNK];
    let mut total = 0.0f64;
    for chunk in logits.chunks(CHUNK) {
        weights(wr, chunk, &mut buf);
        total += chunk_sum(&buf[..chunk.len()]);
    }
    total
}

/// Inverse-CDF draw over every candidate with uniform `u` in `[0, 1)`. The
/// second pass adds whole chunk sums until the draw falls in a chunk, then
/// scans that chunk token by token; both passes use the same sums, so the
/// result depends only on the logits and `u`. `None` when no weight is
/// positive.
pub(super) fn draw(wr: &Weigher, u: f64, logits: &[f32]) -> Option<u32> {
    let target = u * total(wr, logits);
    let mut buf = [0.0f32; CHUNK];
    let mut acc = 0.0f64;
    let mut last_positive = None;
    for (ci, chunk) in logits.chunks(CHUNK).enumerate() {
        weights(wr, chunk, &mut buf);
        let ws = &buf[..chunk.len()];
        let s = chunk_sum(ws);
        if s > 0.0 {
            if acc + s > target {
                // The draw lands in this chunk: the same scan as a gathered
                // draw, over the chunk's candidates.
                let cands = ws.iter().enumerate().map(|(j, &w)| Candidate {
                    id: (ci * CHUNK + j) as u32,
                    value: w,
                });
                // Rounding (lane sums vs. the sequential scan) may leave the
                // scan short: then the chunk's last real token.
                return scan(cands, acc, target);
            }
            let lp = ws.iter().rposition(|&w| w > 0.0);
            last_positive = lp.map(|j| (ci * CHUNK + j) as u32);
        }
        acc += s;
    }
    // Rounding left `acc` at or below `target`: the last real token.
    last_positive
}

/// The first candidate at which the running sum, from `acc`, exceeds
/// `target`; if rounding keeps it from getting there, the last candidate
/// with a positive weight. Zero weights are never picked.
pub(super) fn scan(
    cands: impl IntoIterator<Item = Candidate>,
    mut acc: f64,
    target: f64,
) -> Option<u32> {
    let mut last_positive = None;
    for c in cands {
        if c.value > 0.0 {
            acc += c.value as f64;
            last_positive = Some(c.id);
            if acc > target {
                break;
            }
        }
    }
    last_positive
}
