//! The CPU backend: today's kernels and executor behind the
//! [`Backend`] seam, over memory the caller hands in.
//!
//! Activations, RoPE tables and the KV cache are carved from one `f32`
//! slice ([`CpuBackend::required_len`]); the weights are the model's
//! borrowed views, decoded inside the matrix products. The per-token steps
//! (norms, RoPE, the gated activation, residual adds) spread over the
//! executor's threads in whole rows, like the matrix products.

pub mod attention;
pub mod kv_cache;

use crate::exec::Executor;
use crate::kernels::matmul::matmul_with;
use crate::kernels::ops::{gelu_gate, rms_norm, rms_norm_inplace, rope_apply, rope_table, softcap};
use crate::kernels::{for_row_chunks, Arith, Precision};
use crate::model::backend::check_pass;
use crate::model::{
    Act, Backend, ForwardError, Input, Inputs, Mask, Model, ModelConfig, Norm, Rope,
};
use crate::weights::{Matrix, TensorId};
use attention::{attend, Heads};
use core::ops::Range;
pub use kv_cache::{KvCache, KvError};

/// RoPE tables kept per pass: one per kind of layer (local, global).
const ROPE_TABLES: usize = 2;

/// A CPU backend for the layers `layers` of a model.
pub struct CpuBackend<'a> {
    cfg: ModelConfig,
    model: &'a Model<'a>,
    exec: &'a dyn Executor,
    arith: Arith,
    cache: KvCache<'a>,
    /// One buffer per [`Act`], `max_batch` rows each, in `Act::ALL` order.
    acts: [&'a mut [f32]; Act::ALL.len()],
    /// cos and sin of each kept table, `max_batch * head_dim / 2` floats.
    cos: &'a mut [f32],
    sin: &'a mut [f32],
    /// Which rotation each table holds for the current pass.
    tables: [Option<Rope>; ROPE_TABLES],
    max_batch: usize,
    start: usize,
    n: usize,
}

fn act_sizes(cfg: &ModelConfig, max_batch: usize) -> Option<[usize; Act::ALL.len()]> {
    let mut sizes = [0; Act::ALL.len()];
    for (s, a) in sizes.iter_mut().zip(Act::ALL) {
        *s = max_batch.checked_mul(a.width(cfg))?;
    }
    Some(sizes)
}

fn table_len(cfg: &ModelConfig, max_batch: usize) -> Option<usize> {
    max_batch
        .checked_mul(cfg.head_dim / 2)?
        .checked_mul(ROPE_TABLES)
}

impl<'a> CpuBackend<'a> {
    /// Floats needed for `layers` of `cfg` with `max_context` positions and
    /// passes of up to `max_batch` tokens.
    pub fn required_len(
        cfg: &ModelConfig,
        layers: Range<usize>,
        max_context: usize,
        max_batch: usize,
    ) -> Option<usize> {
        let kv = KvCache::required_len(cfg, layers, max_context, max_batch)?;
        let acts = act_sizes(cfg, max_batch)?
            .iter()
            .try_fold(0usize, |a, &s| a.checked_add(s))?;
        kv.checked_add(acts)?
            .checked_add(table_len(cfg, max_batch)?.checked_mul(2)?)
    }

    /// A backend running `layers` of `model` on `exec`, its cache and
    /// activations in `buf` (at least [`Self::required_len`] floats).
    pub fn new(
        model: &'a Model<'a>,
        exec: &'a dyn Executor,
        layers: Range<usize>,
        max_context: usize,
        max_batch: usize,
        buf: &'a mut [f32],
    ) -> Result<Self, KvError> {
        let cfg = model.config;
        let bad = KvError::BadSize;
        let needed = Self::required_len(&cfg, layers.clone(), max_context, max_batch).ok_or(bad)?;
        if buf.len() < needed {
            return Err(KvError::BufferTooSmall {
                needed,
                got: buf.len(),
            });
        }
        let kv_len =
            KvCache::required_len(&cfg, layers.clone(), max_context, max_batch).ok_or(bad)?;
        let (kv, mut rest) = buf.split_at_mut(kv_len);
        let cache = KvCache::new(&cfg, layers, max_context, max_batch, kv)?;
        let mut take = |n: usize| {
            let (head, tail) = core::mem::take(&mut rest).split_at_mut(n);
            rest = tail;
            head
        };
        let sizes = act_sizes(&cfg, max_batch).ok_or(bad)?;
        let acts = sizes.map(&mut take);
        let tables = table_len(&cfg, max_batch).ok_or(bad)?;
        let (cos, sin) = (take(tables), take(tables));
        let arith = Arith::detect(Precision::Exact);
        debug!(
            "CPU backend: layers {}..{}, context {}, passes of {}, {} kernels",
            cache.layers().start,
            cache.layers().end,
            max_context,
            max_batch,
            arith.isa.name()
        );
        Ok(Self {
            cfg,
            model,
            exec,
            arith,
            cache,
            acts,
            cos,
            sin,
            tables: [None; ROPE_TABLES],
            max_batch,
            start: 0,
            n: 0,
        })
    }

    /// The same backend with its matrix products at `precision`.
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.arith.precision = precision;
        self
    }

    /// The same backend with `arith`'s precision and instruction set
    /// ([`crate::kernels::Isa::Portable`]: the reference arithmetic).
    pub fn with_arith(mut self, arith: Arith) -> Self {
        self.arith = arith;
        self
    }

    /// The cache, for inspection.
    pub fn cache(&self) -> &KvCache<'a> {
        &self.cache
    }

    fn weight(&self, id: TensorId) -> &'a Matrix<'a> {
        self.model.weights.get(id)
    }

    /// The pass's rows of `a`.
    fn rows(&self, a: Act) -> &[f32] {
        &self.acts[a as usize][..self.n * a.width(&self.cfg)]
    }

    fn rows_mut(&mut self, a: Act) -> &mut [f32] {
        let len = self.n * a.width(&self.cfg);
        &mut self.acts[a as usize][..len]
    }

    /// The pass's rows of `src` and, writable, of `dst` (two buffers).
    fn pair(&mut self, src: Act, dst: Act) -> Result<(&[f32], &mut [f32]), ForwardError> {
        let (ls, ld) = (self.n * src.width(&self.cfg), self.n * dst.width(&self.cfg));
        match self.acts.get_disjoint_mut([src as usize, dst as usize]) {
            Ok([s, d]) => Ok((&s[..ls], &mut d[..ld])),
            Err(_) => Err(ForwardError::Mismatch),
        }
    }

    fn check_layer(&self, layer: usize) -> Result<(), ForwardError> {
        if self.cache.layers().contains(&layer) {
            Ok(())
        } else {
            Err(ForwardError::LayerNotHeld(layer))
        }
    }

    /// The table for `rope`, computed for the pass's positions on first use.
    fn table(&mut self, rope: Rope) -> usize {
        let half = self.cfg.head_dim / 2;
        if let Some(i) = self.tables.iter().position(|t| *t == Some(rope)) {
            return i;
        }
        let i = self.tables.iter().position(Option::is_none).unwrap_or(0);
        let len = self.max_batch * half;
        let (cos, sin) = (
            &mut self.cos[i * len..][..self.n * half],
            &mut self.sin[i * len..][..self.n * half],
        );
        for (b, (c, s)) in cos
            .chunks_exact_mut(half)
            .zip(sin.chunks_exact_mut(half))
            .enumerate()
        {
            rope_table(self.start + b, rope.base, rope.scale, c, s);
        }
        self.tables[i] = Some(rope);
        i
    }

    /// The norm's gain, checked against the width it normalizes.
    fn gain(&self, norm: &Norm, width: usize) -> Result<&'a Matrix<'a>, ForwardError> {
        let g = self.weight(norm.gain);
        if g.rows == 1 && g.cols == width {
            Ok(g)
        } else {
            Err(ForwardError::Mismatch)
        }
    }
}

impl Backend for CpuBackend<'_> {
    fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn max_context(&self) -> usize {
        self.cache.max_context()
    }

    fn layers(&self) -> Range<usize> {
        self.cache.layers()
    }

    fn can_rewind(&self, filled: usize, pos: usize) -> bool {
        let cap = |l| self.cache.capacity(l);
        crate::model::cache::can_rewind(&self.cfg, self.layers(), cap, filled, pos)
    }

    fn begin(&mut self, start: usize, n: usize) -> Result<(), ForwardError> {
        check_pass(start, n, self.max_batch, self.cache.max_context())?;
        self.start = start;
        self.n = n;
        self.tables = [None; ROPE_TABLES];
        Ok(())
    }

    fn embed(&mut self, inputs: Inputs, scale: f32) -> Result<(), ForwardError> {
        if inputs.len() != self.n {
            return Err(ForwardError::Mismatch);
        }
        let (d, vocab) = (self.cfg.d_model, self.cfg.vocab_size);
        let table = &self.model.weights.embed;
        let x = self.rows_mut(Act::X);
        for (input, row) in inputs.iter().zip(x.chunks_exact_mut(d)) {
            match input {
                Input::Token(t) if t as usize >= vocab => {
                    return Err(ForwardError::TokenOutOfRange { token: t, vocab });
                }
                Input::Token(t) => {
                    if !table.decode_span(t as usize, 0, row) {
                        return Err(ForwardError::Mismatch);
                    }
                    row.iter_mut().for_each(|v| *v *= scale);
                }
                Input::Embedding(e) if e.len() != d => {
                    return Err(ForwardError::EmbeddingWidth {
                        got: e.len(),
                        want: d,
                    });
                }
                Input::Embedding(e) => row.copy_from_slice(e),
            }
        }
        Ok(())
    }

    fn rms_norm(&mut self, src: Act, dst: Act, norm: &Norm) -> Result<(), ForwardError> {
        let width = src.width(&self.cfg);
        if dst.width(&self.cfg) != width {
            return Err(ForwardError::Mismatch);
        }
        let gain = self.gain(norm, width)?;
        let (eps, p1, exec, isa) = (norm.eps, norm.plus_one, self.exec, self.arith.isa);
        if src == dst {
            let rows = self.rows_mut(dst);
            for_row_chunks(exec, rows, width, &|_, rows| {
                for row in rows.chunks_exact_mut(width) {
                    rms_norm_inplace(isa, row, gain, eps, p1);
                }
            });
        } else {
            let (x, out) = self.pair(src, dst)?;
            for_row_chunks(exec, out, width, &|first, rows| {
                let x = &x[first * width..];
                for (row, src) in rows.chunks_exact_mut(width).zip(x.chunks_exact(width)) {
                    rms_norm(isa, src, gain, eps, p1, row);
                }
            });
        }
        Ok(())
    }

    fn head_norm(&mut self, buf: Act, norm: &Norm) -> Result<(), ForwardError> {
        let hd = self.cfg.head_dim;
        let gain = self.gain(norm, hd)?;
        let (eps, p1, exec, isa) = (norm.eps, norm.plus_one, self.exec, self.arith.isa);
        let width = buf.width(&self.cfg);
        for_row_chunks(exec, self.rows_mut(buf), width, &|_, rows| {
            for head in rows.chunks_exact_mut(hd) {
                rms_norm_inplace(isa, head, gain, eps, p1);
            }
        });
        Ok(())
    }

    fn rope(&mut self, buf: Act, rope: Rope) -> Result<(), ForwardError> {
        let (hd, half) = (self.cfg.head_dim, self.cfg.head_dim / 2);
        let t = self.table(rope) * self.max_batch * half;
        let width = buf.width(&self.cfg);
        let (cos, sin) = (&self.cos[t..], &self.sin[t..]);
        let rows = &mut self.acts[buf as usize][..self.n * width];
        for_row_chunks(self.exec, rows, width, &|first, rows| {
            for (b, row) in rows.chunks_exact_mut(width).enumerate() {
                let at = (first + b) * half;
                let (c, s) = (&cos[at..at + half], &sin[at..at + half]);
                for head in row.chunks_exact_mut(hd) {
                    rope_apply(head, c, s);
                }
            }
        });
        Ok(())
    }

    fn scale(&mut self, buf: Act, factor: f32) -> Result<(), ForwardError> {
        let width = buf.width(&self.cfg);
        for_row_chunks(self.exec, self.rows_mut(buf), width, &|_, rows| {
            rows.iter_mut().for_each(|v| *v *= factor);
        });
        Ok(())
    }

    fn matmul(&mut self, w: TensorId, src: Act, dst: Act) -> Result<(), ForwardError> {
        let m = self.weight(w);
        if m.cols != src.width(&self.cfg) || m.rows != dst.width(&self.cfg) {
            return Err(ForwardError::Mismatch);
        }
        let (n, exec, arith) = (self.n, self.exec, self.arith);
        let (x, out) = self.pair(src, dst)?;
        matmul_with(exec, m, x, n, out, arith);
        Ok(())
    }

    fn store_kv(&mut self, layer: usize, k: Act, v: Act) -> Result<(), ForwardError> {
        self.check_layer(layer)?;
        let kv = self.cfg.kv_dim();
        if k.width(&self.cfg) != kv || v.width(&self.cfg) != kv {
            return Err(ForwardError::Mismatch);
        }
        for b in 0..self.n {
            let (keys, values) = (&self.acts[k as usize], &self.acts[v as usize]);
            let (key, value) = (&keys[b * kv..][..kv], &values[b * kv..][..kv]);
            self.cache.store(layer, self.start + b, key, value);
        }
        Ok(())
    }

    fn attend(
        &mut self,
        layer: usize,
        q: Act,
        out: Act,
        mask: &Mask,
        softcap: f32,
    ) -> Result<(), ForwardError> {
        self.check_layer(layer)?;
        let qd = self.cfg.q_dim();
        if q.width(&self.cfg) != qd || out.width(&self.cfg) != qd {
            return Err(ForwardError::Mismatch);
        }
        let heads = Heads::of(&self.cfg, softcap, self.arith.isa);
        let (n, start, exec) = (self.n, self.start, self.exec);
        let [queries, att] = self
            .acts
            .get_disjoint_mut([q as usize, out as usize])
            .map_err(|_| ForwardError::Mismatch)?;
        attend(
            exec,
            &heads,
            layer,
            &self.cache,
            &queries[..n * qd],
            start,
            n,
            mask,
            &mut att[..n * qd],
        );
        Ok(())
    }

    fn gelu_gate(&mut self, gate: Act, up: Act) -> Result<(), ForwardError> {
        let width = gate.width(&self.cfg);
        if up.width(&self.cfg) != width {
            return Err(ForwardError::Mismatch);
        }
        let exec = self.exec;
        let (up, gate) = self.pair(up, gate)?;
        for_row_chunks(exec, gate, width, &|first, rows| {
            gelu_gate(rows, &up[first * width..]);
        });
        Ok(())
    }

    fn add(&mut self, dst: Act, src: Act) -> Result<(), ForwardError> {
        let width = dst.width(&self.cfg);
        if src.width(&self.cfg) != width {
            return Err(ForwardError::Mismatch);
        }
        let exec = self.exec;
        let (y, x) = self.pair(src, dst)?;
        for_row_chunks(exec, x, width, &|first, rows| {
            for (a, b) in rows.iter_mut().zip(&y[first * width..]) {
                *a += b;
            }
        });
        Ok(())
    }

    fn logits(
        &mut self,
        src: Act,
        rows: Range<usize>,
        cap: f32,
        out: &mut [f32],
    ) -> Result<(), ForwardError> {
        let (d, vocab) = (self.cfg.d_model, self.cfg.vocab_size);
        let w = &self.model.weights.output;
        let n = rows.len();
        if rows.end > self.n || src.width(&self.cfg) != d || w.cols != d || out.len() < n * vocab {
            return Err(ForwardError::Mismatch);
        }
        let x = &self.rows(src)[rows.start * d..rows.end * d];
        let out = &mut out[..n * vocab];
        matmul_with(self.exec, w, x, n, out, self.arith);
        if cap > 0.0 {
            out.iter_mut().for_each(|v| *v = softcap(*v, cap));
        }
        Ok(())
    }

    fn read(&mut self, src: Act, out: &mut [f32]) -> Result<(), ForwardError> {
        let rows = self.rows(src);
        out.get_mut(..rows.len())
            .ok_or(ForwardError::Mismatch)?
            .copy_from_slice(rows);
        Ok(())
    }

    fn write(&mut self, dst: Act, data: &[f32]) -> Result<(), ForwardError> {
        let rows = self.rows_mut(dst);
        let len = rows.len();
        rows.copy_from_slice(data.get(..len).ok_or(ForwardError::Mismatch)?);
        Ok(())
    }
}
