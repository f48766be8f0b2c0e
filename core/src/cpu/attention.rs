//! Scaled dot-product attention over the KV cache.
//!
//! Softmax is computed in one streaming pass (running maximum and sum), so
//! no score buffer proportional to the context is needed. Where four query
//! heads share a KV head, one task serves the four (every key and value
//! row is loaded once for them): a batch (prefill) runs a task per (query,
//! four heads), and a single query (decode) too few such tasks to keep the
//! threads busy also splits its keys into ranges, one task each, whose
//! partial softmaxes are merged afterwards (split-K, as flash-decoding
//! does). Other head groupings run one task per (query, head).

use super::kv_cache::KvCache;
use crate::exec::Executor;
use crate::kernels::ops::{axpy, axpy4, dot, dot4, dot4x3, exp_nonpositive, softcap};
use crate::kernels::Isa;
use crate::model::{Mask, ModelConfig};

/// Keys scored together before their softmax weights are applied.
const KEY_BLOCK: usize = 32;

/// The most key ranges (times four-head groups) a single query is split
/// into, and the largest head size the split path serves: the partial
/// results live on the stack, `MAX_PARTS * 4 * MAX_SPLIT_HEAD_DIM` floats
/// (32 KiB).
const MAX_PARTS: usize = 8;
const MAX_SPLIT_HEAD_DIM: usize = 256;

/// Keys below which a range is not split further.
const MIN_KEYS_PER_PART: usize = 64;
use crate::kernels::SharedOut;

/// The attention shape of a model, the soft-cap of its scores, and the
/// kernels' instruction set.
#[derive(Clone, Copy, Debug)]
pub struct Heads {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// `cap * tanh(s / cap)` on scores; 0 = off.
    pub softcap: f32,
    pub isa: Isa,
}

impl Heads {
    pub fn of(cfg: &ModelConfig, softcap: f32, isa: Isa) -> Self {
        Heads {
            n_heads: cfg.n_heads,
            n_kv_heads: cfg.n_kv_heads,
            head_dim: cfg.head_dim,
            softcap,
            isa,
        }
    }
}

/// `q`: `n x n_heads x head_dim` queries (scaled, rotated) for positions
/// `start..start + n`; writes `out` of the same shape.
#[allow(clippy::too_many_arguments)]
pub fn attend(
    exec: &dyn Executor,
    shape: &Heads,
    layer: usize,
    cache: &KvCache,
    q: &[f32],
    start: usize,
    n: usize,
    mask: &Mask,
    out: &mut [f32],
) {
    let (nh, hd) = (shape.n_heads, shape.head_dim);
    let group = nh / shape.n_kv_heads;
    if group.is_multiple_of(4)
        && n == 1
        && attend_split(exec, shape, layer, cache, q, mask.keys(start), out)
    {
        return;
    }
    let shared = SharedOut::new(out);
    let cap = shape.softcap;
    if group.is_multiple_of(4) {
        exec.run(n * nh / 4, &|task| {
            let (b, first) = (task / (nh / 4), 4 * task);
            let heads = QueryHeads::at(shape, q, first);
            // SAFETY: each task writes only its own four (b, h) head vectors.
            let mut acc = core::array::from_fn(|k| unsafe { shared.slice((first + k) * hd, hd) });
            let (_, sum) = attend4(shape, layer, cache, &heads, mask.keys(start + b), &mut acc);
            for (a, s) in acc.iter_mut().zip(sum) {
                normalize(a, s);
            }
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
                *s = softcap(dot(shape.isa, qv, k), cap);
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
                axpy(shape.isa, acc, p, v);
            }
            first = last + 1;
        }
        normalize(acc, sum);
    });
}

/// Divides an accumulated value vector by its softmax sum (an empty key
/// range leaves zeros).
fn normalize(acc: &mut [f32], sum: f32) {
    if sum > 0.0 {
        let inv = 1.0 / sum;
        acc.iter_mut().for_each(|a| *a *= inv);
    }
}

/// One query (decode) whose groups of four heads are too few for the
/// threads: each group's keys `lo..=hi` are cut into ranges, every (group,
/// range) pair is a task that leaves an unnormalized partial result with
/// its running maxima and sums, and the partials are merged here, each
/// rescaled to the largest maximum. Returns false, having done nothing,
/// where splitting does not pay (one thread, enough groups for the threads,
/// too few keys) or the partials would not fit (head size).
fn attend_split(
    exec: &dyn Executor,
    shape: &Heads,
    layer: usize,
    cache: &KvCache,
    q: &[f32],
    (lo, hi): (usize, usize),
    out: &mut [f32],
) -> bool {
    let (nh, hd) = (shape.n_heads, shape.head_dim);
    let (groups, threads) = (nh / 4, exec.threads());
    let keys = (hi + 1).saturating_sub(lo);
    let ranges = (2 * threads)
        .div_ceil(groups)
        .min(MAX_PARTS / groups.max(1))
        .min(keys / MIN_KEYS_PER_PART)
        .max(1);
    if ranges == 1 || threads < 2 || hd > MAX_SPLIT_HEAD_DIM {
        return false;
    }
    let per_range = keys.div_ceil(ranges).next_multiple_of(KEY_BLOCK);
    let parts = groups * ranges;
    let mut partial = [0f32; MAX_PARTS * 4 * MAX_SPLIT_HEAD_DIM];
    // Part t's four maxima, then its four sums.
    let mut stats = [0f32; MAX_PARTS * 8];
    {
        let shared_partial = SharedOut::new(&mut partial[..parts * 4 * hd]);
        let shared_stats = SharedOut::new(&mut stats[..parts * 8]);
        exec.run(parts, &|t| {
            let (g, r) = (t / ranges, t % ranges);
            let first = lo + r * per_range;
            let last = (first + per_range - 1).min(hi);
            let heads = QueryHeads::at(shape, q, 4 * g);
            // SAFETY: task t alone writes part t's four vectors and stats.
            let mut acc =
                core::array::from_fn(|k| unsafe { shared_partial.slice((4 * t + k) * hd, hd) });
            // A range past `hi` (first > last) leaves zeros and a zero sum,
            // which the merge skips.
            let (max, sum) = attend4(shape, layer, cache, &heads, (first, last), &mut acc);
            // SAFETY: as above.
            let st = unsafe { shared_stats.slice(8 * t, 8) };
            st[..4].copy_from_slice(&max);
            st[4..].copy_from_slice(&sum);
        });
    }
    for g in 0..groups {
        for k in 0..4 {
            let head = 4 * g + k;
            let max = (0..ranges)
                .map(|r| stats[8 * (g * ranges + r) + k])
                .fold(f32::NEG_INFINITY, f32::max);
            let dst = &mut out[head * hd..(head + 1) * hd];
            dst.fill(0.0);
            let mut total = 0f32;
            for r in 0..ranges {
                let t = g * ranges + r;
                let (m, s) = (stats[8 * t + k], stats[8 * t + 4 + k]);
                if s <= 0.0 {
                    continue;
                }
                let w = exp_nonpositive(m - max);
                total += w * s;
                axpy(shape.isa, dst, w, &partial[(4 * t + k) * hd..][..hd]);
            }
            normalize(dst, total);
        }
    }
    true
}

/// Four query heads that read the same KV head.
struct QueryHeads<'q> {
    q: [&'q [f32]; 4],
    kv_head: usize,
}

impl<'q> QueryHeads<'q> {
    /// Query vectors `first..first + 4` of `q` (`first` counts across
    /// tokens: token `first / n_heads`, heads from `first % n_heads`, a
    /// multiple of four within one KV head's group).
    fn at(shape: &Heads, q: &'q [f32], first: usize) -> Self {
        let hd = shape.head_dim;
        let group = shape.n_heads / shape.n_kv_heads;
        QueryHeads {
            q: core::array::from_fn(|k| &q[(first + k) * hd..][..hd]),
            kv_head: first % shape.n_heads / group,
        }
    }
}

/// Attention of four query heads over the keys `lo..=hi` of their shared KV
/// head, into `acc` (one head vector each): the per-head streaming softmax
/// of [`attend`], with each key and value row loaded once for all four.
/// Leaves `acc` unnormalized and returns each head's maximum score and sum
/// of exponentials (relative to that maximum).
fn attend4(
    shape: &Heads,
    layer: usize,
    cache: &KvCache,
    heads: &QueryHeads,
    (lo, hi): (usize, usize),
    acc: &mut [&mut [f32]; 4],
) -> ([f32; 4], [f32; 4]) {
    let hd = shape.head_dim;
    let cap = shape.softcap;
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
            let s = dot4x3(shape.isa, [key(p), key(p + 1), key(p + 2)], heads.q);
            scores[j..j + 3].copy_from_slice(&s);
            j += 3;
        }
        while j < len {
            scores[j] = dot4(shape.isa, key(first + j), heads.q);
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
        let [a0, a1, a2, a3] = acc;
        axpy4(shape.isa, [a0, a1, a2, a3], scores, &values[..len]);
        first = last + 1;
    }
    (max, sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Family, Span};

    /// Eight query heads over two KV heads (four per group), a head size of
    /// 40 (a SIMD tail) and a soft-cap of 5.
    fn eight_heads(family: Family, context_length: usize, sliding_window: usize) -> ModelConfig {
        ModelConfig {
            family,
            n_layers: 1,
            d_model: 64,
            d_ff: 64,
            n_heads: 8,
            n_kv_heads: 2,
            head_dim: 40,
            vocab_size: 16,
            context_length,
            rms_eps: 1e-6,
            sliding_window,
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
        }
    }

    /// Deterministic values in about (-1.7, 1.7).
    fn noise(i: usize) -> f32 {
        ((i * 7919 % 1009) as f32 - 504.0) / 300.0
    }

    /// Stores noise keys and values at positions `0..n` of layer 0.
    fn fill(cfg: &ModelConfig, cache: &mut KvCache, n: usize) {
        let kv = cfg.kv_dim();
        for pos in 0..n {
            let k: std::vec::Vec<f32> = (0..kv).map(|i| noise(pos * kv + i)).collect();
            let v: std::vec::Vec<f32> = (0..kv).map(|i| noise(pos * kv + i + 99_991)).collect();
            cache.store(0, pos, &k, &v);
        }
    }

    /// Softmax attention of one head in f64: keys `lo..=hi` of KV head
    /// `kvh`, head size 40, scores soft-capped at `cap` (0: not capped).
    fn reference(
        cache: &KvCache,
        qh: &[f32],
        kvh: usize,
        (lo, hi): (usize, usize),
        cap: f64,
    ) -> std::vec::Vec<f64> {
        let span = kvh * 40..(kvh + 1) * 40;
        let scores: std::vec::Vec<f64> = (lo..=hi)
            .map(|p| {
                let k = &cache.key(0, p)[span.clone()];
                let d: f64 = qh.iter().zip(k).map(|(a, b)| *a as f64 * *b as f64).sum();
                if cap > 0.0 {
                    cap * libm::tanh(d / cap)
                } else {
                    d
                }
            })
            .collect();
        let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let total: f64 = scores.iter().map(|s| libm::exp(s - max)).sum();
        (0..40)
            .map(|i| {
                (lo..=hi)
                    .zip(&scores)
                    .map(|(p, s)| {
                        libm::exp(s - max) / total * cache.value(0, p)[span.start + i] as f64
                    })
                    .sum()
            })
            .collect()
    }

    /// The grouped batch path (four heads per task) against an f64
    /// softmax, query by query, with a soft-cap, a window and a
    /// bidirectional prefix.
    #[test]
    fn grouped_heads_match_the_reference() {
        use crate::exec::Serial;
        let cfg = eight_heads(Family::Gemma2, 128, 37);
        let heads = Heads::of(&cfg, cfg.attn_softcap, Isa::detect());
        let n = 70;
        let mut buf = std::vec![0f32; KvCache::required_len(&cfg, 0..1, 80, n).unwrap()];
        let mut cache = KvCache::new(&cfg, 0..1, 80, n, &mut buf).unwrap();
        fill(&cfg, &mut cache, n);
        let qd = cfg.n_heads * cfg.head_dim;
        let q: std::vec::Vec<f32> = (0..n * qd).map(|i| noise(i + 12_345)).collect();
        for window in [0, 37] {
            let mask = Mask {
                window,
                spans: &[Span::new(0, 5)],
                written_end: n,
            };
            let mut grouped = std::vec![0f32; n * qd];
            attend(&Serial, &heads, 0, &cache, &q, 0, n, &mask, &mut grouped);
            for b in 0..n {
                for h in 0..cfg.n_heads {
                    let qh = &q[(b * cfg.n_heads + h) * 40..][..40];
                    let want = reference(&cache, qh, h / 4, mask.keys(b), 5.0);
                    for (i, w) in want.iter().enumerate() {
                        let got = grouped[(b * cfg.n_heads + h) * 40 + i] as f64;
                        assert!(
                            (got - w).abs() <= 1e-4 * w.abs().max(1.0),
                            "window {window} query {b} head {h} element {i}: {got} vs {w}"
                        );
                    }
                }
            }
        }
        // One query alone (the decode path) must agree too.
        let mask = Mask {
            window: 0,
            spans: &[],
            written_end: n,
        };
        let mut grouped = std::vec![0f32; n * qd];
        attend(&Serial, &heads, 0, &cache, &q, 0, n, &mask, &mut grouped);
        let b = n - 1;
        let mut one = std::vec![0f32; qd];
        attend(
            &Serial,
            &heads,
            0,
            &cache,
            &q[b * qd..],
            b,
            1,
            &mask,
            &mut one,
        );
        for (g, o) in grouped[b * qd..].iter().zip(&one) {
            assert!((g - o).abs() <= 1e-5 * o.abs().max(1.0), "{g} vs {o}");
        }
    }

    /// Runs tasks in order on the calling thread but claims `self.0`
    /// threads, so that the split paths meant for several threads are taken.
    struct ClaimsThreads(usize);

    impl Executor for ClaimsThreads {
        fn threads(&self) -> usize {
            self.0
        }

        fn run(&self, n_tasks: usize, task: &(dyn Fn(usize) + Sync)) {
            (0..n_tasks).for_each(task);
        }
    }

    /// A single query (decode) over a long context, with its keys split
    /// across 2, 4 and 16 claimed threads, against an f64 softmax: with and
    /// without a soft-cap, windows that start mid-range, and ranges that
    /// come out empty.
    #[test]
    fn split_keys_of_one_query_match_the_reference() {
        let cfg = eight_heads(Family::Gemma3, 512, 0);
        let n = 300;
        let mut buf = std::vec![0f32; KvCache::required_len(&cfg, 0..1, n, 1).unwrap()];
        let mut cache = KvCache::new(&cfg, 0..1, n, 1, &mut buf).unwrap();
        fill(&cfg, &mut cache, n);
        let qd = cfg.n_heads * cfg.head_dim;
        let q: std::vec::Vec<f32> = (0..qd).map(|i| noise(i + 12_345)).collect();
        let cases = [
            (5.0, 0, n - 1),
            (0.0, 0, n - 1),
            (0.0, 150, n - 1),
            (5.0, 0, 140),
            (0.0, 130, 299),
        ];
        for (cap, window, query) in cases {
            let heads = Heads::of(&cfg, cap, Isa::detect());
            let mask = Mask {
                window,
                spans: &[],
                written_end: n,
            };
            for threads in [2, 4, 16] {
                let mut got = std::vec![0f32; qd];
                attend(
                    &ClaimsThreads(threads),
                    &heads,
                    0,
                    &cache,
                    &q,
                    query,
                    1,
                    &mask,
                    &mut got,
                );
                for h in 0..cfg.n_heads {
                    let want = reference(
                        &cache,
                        &q[h * 40..][..40],
                        h / 4,
                        mask.keys(query),
                        cap as f64,
                    );
                    for (i, w) in want.iter().enumerate() {
                        let g = got[h * 40 + i] as f64;
                        assert!(
                            (g - w).abs() <= 1e-4 * w.abs().max(1.0),
                            "cap {cap} window {window} query {query} threads {threads} \
                             head {h} element {i}: {g} vs {w}"
                        );
                    }
                }
            }
        }
    }
}
