//! Scaled dot-product attention over the KV cache.
//!
//! Softmax is computed in one streaming pass (running maximum and sum), so
//! no score buffer proportional to the context is needed. A batch (prefill)
//! runs one task per (query, four query heads of one KV head): every key
//! and value row is loaded once for the four heads that share it. A single
//! query, or a batch too small to keep the threads busy that way, runs one
//! task per (query, head).

use super::config::ModelConfig;
use super::kv_cache::KvCache;
use crate::exec::Executor;
use crate::kernels::ops::{axpy, axpy4, dot, dot4, dot4x3, exp_nonpositive, softcap};

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
    if n > 1 && group.is_multiple_of(4) && n * nh / 4 >= 2 * exec.threads() {
        exec.run(n * nh / 4, &|task| {
            let (b, h0) = (task / (nh / 4), task % (nh / 4) * 4);
            let heads = QueryHeads {
                q: core::array::from_fn(|k| {
                    let i = b * nh + h0 + k;
                    &q[i * hd..(i + 1) * hd]
                }),
                kv_head: h0 / group,
            };
            // SAFETY: each task writes only its own four (b, h) head vectors.
            let acc = core::array::from_fn(|k| unsafe { shared.slice((b * nh + h0 + k) * hd, hd) });
            attend4(cfg, layer, cache, heads, mask.keys(start + b), acc);
        });
        return;
    }
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

/// Four query heads that read the same KV head.
struct QueryHeads<'q> {
    q: [&'q [f32]; 4],
    kv_head: usize,
}

/// Attention of four query heads over the keys `lo..=hi` of their shared KV
/// head, into `acc` (one head vector each): the per-head streaming softmax
/// of [`attend`], with each key and value row loaded once for all four.
fn attend4(
    cfg: &ModelConfig,
    layer: usize,
    cache: &KvCache,
    heads: QueryHeads,
    (lo, hi): (usize, usize),
    mut acc: [&mut [f32]; 4],
) {
    let hd = cfg.head_dim;
    let cap = cfg.attn_softcap;
    let span = heads.kv_head * hd..(heads.kv_head + 1) * hd;
    for a in acc.iter_mut() {
        a.fill(0.0);
    }
    let mut max = [f32::NEG_INFINITY; 4];
    let mut sum = [0f32; 4];
    let mut scores = [[0f32; 4]; KEY_BLOCK];
    let mut values: [&[f32]; KEY_BLOCK] = [&[]; KEY_BLOCK];
    let mut first = lo;
    while first <= hi {
        let last = hi.min(first + KEY_BLOCK - 1);
        let len = last - first + 1;
        let key = |pos: usize| &cache.key(layer, pos)[span.clone()];
        let mut j = 0;
        while j + 3 <= len {
            let p = first + j;
            let s = dot4x3([key(p), key(p + 1), key(p + 2)], heads.q);
            scores[j..j + 3].copy_from_slice(&s);
            j += 3;
        }
        while j < len {
            scores[j] = dot4(key(first + j), heads.q);
            j += 1;
        }
        let scores = &mut scores[..len];
        let mut block_max = [f32::NEG_INFINITY; 4];
        for s in scores.iter_mut() {
            for h in 0..4 {
                s[h] = softcap(s[h], cap);
                block_max[h] = block_max[h].max(s[h]);
            }
        }
        for h in 0..4 {
            if block_max[h] > max[h] {
                // Rescale what head h accumulated under its old maximum.
                let r = exp_nonpositive(max[h] - block_max[h]);
                sum[h] *= r;
                acc[h].iter_mut().for_each(|a| *a *= r);
                max[h] = block_max[h];
            }
        }
        for ((s, v), pos) in scores.iter_mut().zip(values.iter_mut()).zip(first..=last) {
            *v = &cache.value(layer, pos)[span.clone()];
            for h in 0..4 {
                s[h] = exp_nonpositive(s[h] - max[h]);
                sum[h] += s[h];
            }
        }
        let [a0, a1, a2, a3] = &mut acc;
        axpy4([a0, a1, a2, a3], scores, &values[..len]);
        first = last + 1;
    }
    for h in 0..4 {
        if sum[h] > 0.0 {
            let inv = 1.0 / sum[h];
            acc[h].iter_mut().for_each(|a| *a *= inv);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The grouped batch path (four heads per task) against the per-head
    /// path, query by query: eight heads over two KV heads, a head size
    /// with a SIMD tail, a soft-cap, a window and a bidirectional prefix.
    #[test]
    fn grouped_heads_match_one_head_per_task() {
        use crate::exec::Serial;
        use crate::model::config::Family;
        let cfg = ModelConfig {
            family: Family::Gemma2,
            n_layers: 1,
            d_model: 64,
            d_ff: 64,
            n_heads: 8,
            n_kv_heads: 2,
            head_dim: 40,
            vocab_size: 16,
            context_length: 128,
            rms_eps: 1e-6,
            sliding_window: 37,
            sliding_window_pattern: 0,
            rope_base_global: 10_000.0,
            rope_base_local: 10_000.0,
            rope_scale_global: 1.0,
            attn_softcap: 5.0,
            final_softcap: 0.0,
            query_scale: 0.2,
            embed_scale: 8.0,
            qk_norm: false,
            post_norms: true,
            norm_gain_plus_one: false,
        };
        let n = 70;
        let mut buf = std::vec![0f32; KvCache::required_len(&cfg, 80, n).unwrap()];
        let mut cache = KvCache::new(&cfg, 80, n, &mut buf).unwrap();
        let noise = |i: usize| ((i * 7919 % 1009) as f32 - 504.0) / 300.0;
        let kv = cfg.kv_dim();
        for pos in 0..n {
            let k: std::vec::Vec<f32> = (0..kv).map(|i| noise(pos * kv + i)).collect();
            let v: std::vec::Vec<f32> = (0..kv).map(|i| noise(pos * kv + i + 99_991)).collect();
            cache.store(0, pos, &k, &v);
        }
        let qd = cfg.n_heads * cfg.head_dim;
        let q: std::vec::Vec<f32> = (0..n * qd).map(|i| noise(i + 12_345)).collect();
        for window in [0, 37] {
            let mask = Mask {
                window,
                prefix_end: 5,
                written_end: n,
            };
            let mut grouped = std::vec![0f32; n * qd];
            attend(&Serial, &cfg, 0, &cache, &q, 0, n, mask, &mut grouped);
            for b in 0..n {
                let (lo, hi) = mask.keys(b);
                for h in 0..cfg.n_heads {
                    let kvh = h / 4;
                    let qh = &q[(b * cfg.n_heads + h) * 40..][..40];
                    let span = kvh * 40..(kvh + 1) * 40;
                    let scores: std::vec::Vec<f64> = (lo..=hi)
                        .map(|p| {
                            let k = &cache.key(0, p)[span.clone()];
                            let d: f64 = qh.iter().zip(k).map(|(a, b)| *a as f64 * *b as f64).sum();
                            5.0 * libm::tanh(d / 5.0)
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let total: f64 = scores.iter().map(|s| libm::exp(s - max)).sum();
                    for i in 0..40 {
                        let want: f64 = (lo..=hi)
                            .zip(&scores)
                            .map(|(p, s)| {
                                libm::exp(s - max) / total
                                    * cache.value(0, p)[span.start + i] as f64
                            })
                            .sum();
                        let got = grouped[(b * cfg.n_heads + h) * 40 + i] as f64;
                        assert!(
                            (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                            "window {window} query {b} head {h} element {i}: {got} vs {want}"
                        );
                    }
                }
            }
        }
        // One query takes the per-head path; it must agree too.
        let mask = Mask {
            window: 0,
            prefix_end: 0,
            written_end: n,
        };
        let mut grouped = std::vec![0f32; n * qd];
        attend(&Serial, &cfg, 0, &cache, &q, 0, n, mask, &mut grouped);
        let b = n - 1;
        let mut one = std::vec![0f32; qd];
        attend(&Serial, &cfg, 0, &cache, &q[b * qd..], b, 1, mask, &mut one);
        for (g, o) in grouped[b * qd..].iter().zip(&one) {
            assert!((g - o).abs() <= 1e-5 * o.abs().max(1.0), "{g} vs {o}");
        }
    }

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
