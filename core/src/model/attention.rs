//! Scaled dot-product attention over the KV cache, one task per (query, head).
//!
//! Softmax is computed in one streaming pass (running maximum and sum), so
//! no score buffer proportional to the context is needed.

use super::config::ModelConfig;
use super::kv_cache::KvCache;
use crate::exec::Executor;
use crate::kernels::ops::{axpy, dot, exp_nonpositive, softcap};

/// Keys scored together before their softmax weights are applied.
const KEY_BLOCK: usize = 32;
use crate::kernels::SharedOut;

/// Which keys a query may see.
#[derive(Clone, Copy, Debug)]
pub struct Mask {
    /// Local layers: only keys with `q - k < window`; 0 = unlimited.
    pub window: usize,
    /// Keys before this position are visible to every query of the prefix
    /// (bidirectional prefix, as PaliGemma uses); 0 = purely causal.
    pub prefix_end: usize,
    /// One past the last position written to the cache.
    pub written_end: usize,
}

impl Mask {
    /// The inclusive key range visible from query position `q`.
    pub fn keys(&self, q: usize) -> (usize, usize) {
        let lo = if self.window > 0 {
            q.saturating_sub(self.window - 1)
        } else {
            0
        };
        let mut hi = q;
        if q < self.prefix_end {
            hi = hi.max(self.prefix_end - 1);
            if self.window > 0 {
                hi = hi.min(q + self.window - 1);
            }
        }
        (lo, hi.min(self.written_end.saturating_sub(1)))
    }
}

/// `q`: `n x n_heads x head_dim` queries (scaled, rotated) for positions
/// `start..start + n`; writes `out` of the same shape.
#[allow(clippy::too_many_arguments)]
pub fn attend(
    exec: &dyn Executor,
    cfg: &ModelConfig,
    layer: usize,
    cache: &KvCache,
    q: &[f32],
    start: usize,
    n: usize,
    mask: Mask,
    out: &mut [f32],
) {
    let (nh, hd) = (cfg.n_heads, cfg.head_dim);
    let group = nh / cfg.n_kv_heads;
    let shared = SharedOut::new(out);
    let cap = cfg.attn_softcap;
    exec.run(n * nh, &|task| {
        let (b, h) = (task / nh, task % nh);
        let kv_head = h / group;
        let qv = &q[task * hd..(task + 1) * hd];
        // SAFETY: each task writes only its own (b, h) head vector.
        let acc = unsafe { shared.slice(task * hd, hd) };
        acc.fill(0.0);
        let (lo, hi) = mask.keys(start + b);
        // Streaming softmax over blocks of keys: score a block, rescale
        // what was accumulated if the block raised the maximum, then weigh
        // the block's values. Exponentials of a whole block vectorize.
        let mut max = f32::NEG_INFINITY;
        let mut sum = 0f32;
        let mut scores = [0f32; KEY_BLOCK];
        let mut first = lo;
        while first <= hi {
            let last = hi.min(first + KEY_BLOCK - 1);
            let scores = &mut scores[..=last - first];
            let mut block_max = f32::NEG_INFINITY;
            for (s, pos) in scores.iter_mut().zip(first..=last) {
                let k = &cache.key(layer, pos)[kv_head * hd..(kv_head + 1) * hd];
                *s = softcap(dot(qv, k), cap);
                block_max = block_max.max(*s);
            }
            if block_max > max {
                // Rescale what was accumulated under the old maximum.
                let r = exp_nonpositive(max - block_max);
                sum *= r;
                acc.iter_mut().for_each(|a| *a *= r);
                max = block_max;
            }
            scores
                .iter_mut()
                .for_each(|s| *s = exp_nonpositive(*s - max));
            for (&p, pos) in scores.iter().zip(first..=last) {
                sum += p;
                let v = &cache.value(layer, pos)[kv_head * hd..(kv_head + 1) * hd];
                axpy(acc, p, v);
            }
            first = last + 1;
        }
        if sum > 0.0 {
            let inv = 1.0 / sum;
            acc.iter_mut().for_each(|a| *a *= inv);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_is_causal_windowed_and_bidirectional_in_prefix() {
        let causal = Mask {
            window: 0,
            prefix_end: 0,
            written_end: 100,
        };
        assert_eq!(causal.keys(10), (0, 10));
        let local = Mask {
            window: 4,
            prefix_end: 0,
            written_end: 100,
        };
        assert_eq!(local.keys(10), (7, 10));
        assert_eq!(local.keys(2), (0, 2));
        let prefix = Mask {
            window: 0,
            prefix_end: 6,
            written_end: 100,
        };
        assert_eq!(prefix.keys(1), (0, 5));
        assert_eq!(prefix.keys(8), (0, 8));
        let short = Mask {
            window: 0,
            prefix_end: 6,
            written_end: 4,
        };
        assert_eq!(short.keys(1), (0, 3));
    }
}
