//! The OpenCL backend: the forward pass's operations as kernel launches on
//! one device, over weights uploaded once and activations and a KV cache
//! that stay on the device; only logits (or a greedy token) and hand-over
//! rows come back.

use super::buffers::{self, alloc, launch, Arg};
use super::weights::{DeviceMatrix, DeviceWeights};
use super::{Gpu, Unavailable};
use crate::kernels::{self, ENCODINGS};
use gemma_core::kernels::ops::rope_table;
use gemma_core::model::backend::check_pass;
use gemma_core::model::cache as kv_cache;
use gemma_core::model::{
    Act, Backend, ForwardError, Input, Inputs, Mask, Model, ModelConfig, Norm, Rope,
};
use gemma_core::weights::{Role, TensorId};
use opencl3::command_queue::CommandQueue;
use opencl3::kernel::Kernel;
use opencl3::memory::{Buffer, ClMem};
use std::ops::Range;
use std::sync::Arc;

/// Rows of logits computed (and read back) at a time.
const LOGIT_ROWS: usize = 8;
/// RoPE tables kept per pass: one per kind of layer.
const ROPE_TABLES: usize = 2;
/// Masks kept per pass: one per kind of layer.
const MASKS: usize = 2;

/// One layer's cache: `capacity` slots of keys, then of values.
struct LayerCache {
    keys: Buffer<f32>,
    values: Buffer<f32>,
    capacity: usize,
}

/// The kernels of one weight encoding.
struct MatmulKernels {
    matvec: Kernel,
    tiled: Kernel,
    embed: Kernel,
}

struct OpsKernels {
    rms_norm: Kernel,
    rope: Kernel,
    scale: Kernel,
    add: Kernel,
    gelu_gate: Kernel,
    softcap: Kernel,
    store_kv: Kernel,
    argmax: Kernel,
    attend: Kernel,
}

fn kernel(p: &opencl3::program::Program, name: &str) -> Result<Kernel, Unavailable> {
    Kernel::create(p, name).map_err(|e| super::api(name, e))
}

/// A backend running `layers` of a model on an OpenCL device. It keeps
/// no borrow of the model: what it needs of the weights is on the device.
pub struct OpenClBackend {
    weights: Arc<DeviceWeights>,
    queue: CommandQueue,
    cfg: ModelConfig,
    layers: Range<usize>,
    max_context: usize,
    max_batch: usize,
    ops: OpsKernels,
    /// By encoding code ([`ENCODINGS`] order), for the encodings the
    /// weights use.
    matmul: Vec<Option<MatmulKernels>>,
    acts: Vec<Buffer<f32>>,
    caches: Vec<LayerCache>,
    cos: Vec<Buffer<f32>>,
    sin: Vec<Buffer<f32>>,
    tables: [Option<Rope>; ROPE_TABLES],
    /// Key ranges of the pass's queries, one buffer per mask in use (a
    /// pass has at most two: local and global layers), with the host copy
    /// each holds, so a pass writes each once instead of once per layer.
    ranges: Vec<Buffer<i32>>,
    ranges_held: [Vec<i32>; MASKS],
    ranges_valid: [bool; MASKS],
    /// This call's key ranges, before they are matched or written.
    ranges_scratch: Vec<i32>,
    tokens: Buffer<i32>,
    logit_x: Buffer<f32>,
    logits: Buffer<f32>,
    best: Buffer<i32>,
    start: usize,
    n: usize,
    last_error: Option<String>,
}

impl OpenClBackend {
    /// A backend for `layers` of `model` on `gpu`, with a cache of
    /// `max_context` positions and passes of up to `max_batch` tokens.
    /// Uploads the layers' weights, the embedding, the final norm and the
    /// output projection.
    /// Uploads `layers` of `model` to `gpu` and makes a backend for them
    /// (see [`Self::with_weights`]).
    pub fn new(
        gpu: Arc<Gpu>,
        model: &Model,
        layers: Range<usize>,
        max_context: usize,
        max_batch: usize,
    ) -> Result<Self, Unavailable> {
        let weights = DeviceWeights::upload(gpu, model, layers)?;
        Self::with_weights(weights, &model.config, max_context, max_batch)
    }

    /// A backend for the layers of `weights` (of a model configured as
    /// `cfg`), with a cache of `max_context` positions and passes of up to
    /// `max_batch` tokens.
    pub fn with_weights(
        weights: Arc<DeviceWeights>,
        cfg: &ModelConfig,
        max_context: usize,
        max_batch: usize,
    ) -> Result<Self, Unavailable> {
        super::keeping_signals(|| Self::create(weights, cfg, max_context, max_batch))
    }

    fn create(
        weights: Arc<DeviceWeights>,
        cfg: &ModelConfig,
        max_context: usize,
        max_batch: usize,
    ) -> Result<Self, Unavailable> {
        let cfg = *cfg;
        let layers = weights.layers();
        let gpu = weights.gpu.clone();
        let bad = |what: &str| Unavailable::Api(what.to_string());
        if max_context == 0
            || max_batch == 0
            || layers.end > cfg.n_layers
            || layers.start > layers.end
        {
            return Err(bad(
                "context, batch and layers must be non-empty and within the model",
            ));
        }
        if cfg.head_dim > kernels::MAX_HEAD_DIM
            || !cfg.head_dim.is_multiple_of(2)
            || cfg.n_kv_heads == 0
            || !cfg.n_heads.is_multiple_of(cfg.n_kv_heads)
        {
            return Err(bad("the model's heads do not fit the attention kernel"));
        }
        let ctx = &gpu.context;
        let queue = gpu.queue()?;
        let ops_program = gpu.ops()?;
        let k = |n| kernel(&ops_program, n);
        let ops = OpsKernels {
            rms_norm: k("rms_norm")?,
            rope: k("rope")?,
            scale: k("scale")?,
            add: k("add")?,
            gelu_gate: k("gelu_gate")?,
            softcap: k("softcap")?,
            store_kv: k("store_kv")?,
            argmax: k("argmax")?,
            attend: k("attend")?,
        };
        let a = |len: usize| alloc::<f32>(ctx, len).map_err(Unavailable::Api);
        let acts = Act::ALL
            .iter()
            .map(|act| a(max_batch * act.width(&cfg)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut caches = Vec::new();
        for l in layers.clone() {
            let capacity = kv_cache::slots(&cfg, l, max_context, max_batch);
            let len = capacity * cfg.kv_dim();
            caches.push(LayerCache {
                keys: a(len)?,
                values: a(len)?,
                capacity,
            });
        }
        let half = cfg.head_dim / 2;
        let tables = (0..ROPE_TABLES).map(|_| a(max_batch * half));
        let cos = tables.collect::<Result<Vec<_>, _>>()?;
        let sin = (0..ROPE_TABLES)
            .map(|_| a(max_batch * half))
            .collect::<Result<Vec<_>, _>>()?;
        let ints = |len| alloc::<i32>(ctx, len).map_err(Unavailable::Api);
        let mut matmul: Vec<_> = (0..ENCODINGS.len()).map(|_| None).collect();
        for code in weights.codes() {
            let p = gpu.matmul(ENCODINGS[code])?;
            matmul[code] = Some(MatmulKernels {
                matvec: kernel(&p, "matvec")?,
                tiled: kernel(&p, "matmul_tiled")?,
                embed: kernel(&p, "embed")?,
            });
        }
        Ok(Self {
            queue,
            cfg,
            layers: layers.clone(),
            max_context,
            max_batch,
            ops,
            matmul,
            acts,
            caches,
            cos,
            sin,
            tables: [None; ROPE_TABLES],
            ranges: (0..MASKS)
                .map(|_| ints(2 * max_batch))
                .collect::<Result<Vec<_>, _>>()?,
            ranges_held: [0; MASKS].map(|_| Vec::with_capacity(2 * max_batch)),
            ranges_valid: [false; MASKS],
            ranges_scratch: Vec::with_capacity(2 * max_batch),
            tokens: ints(max_batch)?,
            logit_x: a(LOGIT_ROWS * cfg.d_model)?,
            logits: a(LOGIT_ROWS * cfg.vocab_size)?,
            best: ints(LOGIT_ROWS)?,
            start: 0,
            n: 0,
            last_error: None,
            weights,
        })
    }

    /// Device bytes a backend holds besides its weights and KV cache, for
    /// passes of `max_batch` (what `with_weights` allocates: activations,
    /// RoPE tables, key ranges, token ids, logits rows).
    pub fn scratch_bytes(cfg: &ModelConfig, max_batch: usize) -> u64 {
        let b = max_batch as u64;
        let acts: u64 = Act::ALL.iter().map(|a| b * a.width(cfg) as u64).sum();
        let tables = 2 * ROPE_TABLES as u64 * b * (cfg.head_dim / 2) as u64;
        let ints = MASKS as u64 * 2 * b + b + LOGIT_ROWS as u64;
        let logits = LOGIT_ROWS as u64 * (cfg.d_model + cfg.vocab_size) as u64;
        4 * (acts + tables + ints + logits)
    }

    /// The device it runs on.
    pub fn gpu(&self) -> &Gpu {
        &self.weights.gpu
    }

    /// The weights it runs on (shared with other backends).
    pub fn weights(&self) -> &Arc<DeviceWeights> {
        &self.weights
    }

    /// What the last [`ForwardError::Device`] was about, in full.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Records a device failure's detail and names the operation.
    fn fail(&mut self, op: &'static str, detail: String) -> ForwardError {
        self.last_error = Some(format!("{op}: {detail}"));
        ForwardError::Device(op)
    }

    fn act(&self, a: Act) -> Arg {
        Arg::Mem(self.acts[a as usize].get())
    }

    fn cache(&self, layer: usize) -> Result<&LayerCache, ForwardError> {
        if !self.layers.contains(&layer) {
            return Err(ForwardError::LayerNotHeld(layer));
        }
        Ok(&self.caches[layer - self.layers.start])
    }

    /// `y[t] = W x[t]` for `n` rows of `x` (buffers given as arguments).
    fn product(&mut self, dm: &DeviceMatrix, x: Arg, y: Arg, n: usize) -> Result<(), ForwardError> {
        // The matrix, x, y and (for the tiled product) n, without a heap
        // allocation: this runs seven times a layer.
        let m = self.weights.args(dm);
        let mut args = [Arg::I32(0); 12];
        args[..9].copy_from_slice(&m);
        args[9..].copy_from_slice(&[x, y, Arg::I32(n as i32)]);
        let ks = self.matmul[dm.code]
            .as_ref()
            .ok_or(ForwardError::Mismatch)?;
        let blocks = dm.rows.div_ceil(kernels::MM_ROWS);
        let threads = kernels::MM_ROWS * 32;
        let r = if n == 1 {
            launch(
                &self.queue,
                &ks.matvec,
                "matvec",
                &args[..11],
                [blocks, 1],
                threads,
            )
        } else {
            let tiles = n.div_ceil(kernels::TILE);
            launch(
                &self.queue,
                &ks.tiled,
                "matmul_tiled",
                &args,
                [blocks, tiles],
                threads,
            )
        };
        r.map_err(|e| self.fail("matrix product", e))
    }

    fn elementwise(
        &mut self,
        which: Elementwise,
        args: &[Arg],
        count: usize,
    ) -> Result<(), ForwardError> {
        let t = kernels::ELEMENT_THREADS;
        let (k, name) = match which {
            Elementwise::Scale => (&self.ops.scale, "scale"),
            Elementwise::Add => (&self.ops.add, "add"),
            Elementwise::GeluGate => (&self.ops.gelu_gate, "gelu_gate"),
            Elementwise::Softcap => (&self.ops.softcap, "softcap"),
        };
        launch(&self.queue, k, name, args, [count.div_ceil(t), 1], t)
            .map_err(|e| self.fail(name, e))
    }

    fn norm_rows(
        &mut self,
        src: Arg,
        dst: Arg,
        norm: &Norm,
        width: usize,
        rows: usize,
    ) -> Result<(), ForwardError> {
        let gain = self
            .weights
            .gain(norm.gain, width)
            .ok_or(ForwardError::Mismatch)?;
        let args = [
            src,
            dst,
            gain,
            Arg::I32(width as i32),
            Arg::F32(norm.eps),
            Arg::F32(if norm.plus_one { 1.0 } else { 0.0 }),
        ];
        let t = kernels::NORM_THREADS;
        launch(
            &self.queue,
            &self.ops.rms_norm,
            "rms_norm",
            &args,
            [rows, 1],
            t,
        )
        .map_err(|e| self.fail("rms_norm", e))
    }

    /// The table for `rope`, computed on the host for the pass's positions
    /// (in f64, as the CPU backend does) and uploaded on first use.
    fn table(&mut self, rope: Rope) -> Result<usize, ForwardError> {
        if let Some(i) = self.tables.iter().position(|t| *t == Some(rope)) {
            return Ok(i);
        }
        let i = self.tables.iter().position(Option::is_none).unwrap_or(0);
        let half = self.cfg.head_dim / 2;
        let (mut c, mut s) = (vec![0f32; self.n * half], vec![0f32; self.n * half]);
        for (b, (c, s)) in c
            .chunks_exact_mut(half)
            .zip(s.chunks_exact_mut(half))
            .enumerate()
        {
            rope_table(self.start + b, rope.base, rope.scale, c, s);
        }
        let r = buffers::write(&self.queue, &mut self.cos[i], 0, &c)
            .and_then(|_| buffers::write(&self.queue, &mut self.sin[i], 0, &s));
        r.map_err(|e| self.fail("rope table", e))?;
        self.tables[i] = Some(rope);
        Ok(i)
    }

    /// The buffer holding the key ranges now in `ranges_scratch`, written
    /// on first use in this pass (host copies are kept in preallocated
    /// vectors, so attention allocates nothing).
    fn ranges_slot(&mut self) -> Result<usize, ForwardError> {
        let scratch = &self.ranges_scratch;
        let held = |i: usize| self.ranges_valid[i] && self.ranges_held[i] == *scratch;
        if let Some(i) = (0..MASKS).find(|&i| held(i)) {
            return Ok(i);
        }
        let i = self.ranges_valid.iter().position(|v| !v).unwrap_or(0);
        let r = buffers::write(&self.queue, &mut self.ranges[i], 0, &self.ranges_scratch);
        r.map_err(|e| self.fail("attend", e))?;
        self.ranges_held[i].clear();
        self.ranges_held[i].extend_from_slice(&self.ranges_scratch);
        self.ranges_valid[i] = true;
        Ok(i)
    }

    /// The greedy token of row `row` of the last pass: logits and argmax on
    /// the device, four bytes back.
    fn device_argmax(&mut self, src: Act, row: usize, softcap: f32) -> Result<u32, ForwardError> {
        self.logits_on_device(src, row..row + 1, softcap)?;
        let vocab = self.cfg.vocab_size;
        let args = [
            Arg::Mem(self.logits.get()),
            Arg::I32(vocab as i32),
            Arg::Mem(self.best.get()),
        ];
        let t = kernels::ARGMAX_THREADS;
        launch(&self.queue, &self.ops.argmax, "argmax", &args, [1, 1], t)
            .map_err(|e| self.fail("argmax", e))?;
        let mut best = [0i32];
        buffers::read(&self.queue, &self.best, 0, &mut best).map_err(|e| self.fail("argmax", e))?;
        Ok(best[0] as u32)
    }

    /// Logits of up to [`LOGIT_ROWS`] rows of `src` into the device's
    /// logits buffer.
    fn logits_on_device(
        &mut self,
        src: Act,
        rows: Range<usize>,
        cap: f32,
    ) -> Result<(), ForwardError> {
        let (d, vocab) = (self.cfg.d_model, self.cfg.vocab_size);
        let n = rows.len();
        if rows.end > self.n || n > LOGIT_ROWS || src.width(&self.cfg) != d {
            return Err(ForwardError::Mismatch);
        }
        let r = buffers::copy(
            &self.queue,
            &self.acts[src as usize],
            rows.start * d,
            &mut self.logit_x,
            0,
            n * d,
        );
        r.map_err(|e| self.fail("logits", e))?;
        let w = self
            .weights
            .matrix(TensorId::global(Role::Output))
            .ok_or(ForwardError::Mismatch)?;
        if w.cols != d || w.rows != vocab {
            return Err(ForwardError::Mismatch);
        }
        let (x, y) = (Arg::Mem(self.logit_x.get()), Arg::Mem(self.logits.get()));
        self.product(&w, x, y, n)?;
        if cap > 0.0 {
            let count = n * vocab;
            let args = [y, Arg::F32(cap), Arg::I32(count as i32)];
            self.elementwise(Elementwise::Softcap, &args, count)?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Elementwise {
    Scale,
    Add,
    GeluGate,
    Softcap,
}

impl Backend for OpenClBackend {
    fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn max_context(&self) -> usize {
        self.max_context
    }

    fn layers(&self) -> Range<usize> {
        self.layers.clone()
    }

    fn can_rewind(&self, filled: usize, pos: usize) -> bool {
        let cap = |l: usize| self.caches[l - self.layers.start].capacity;
        kv_cache::can_rewind(&self.cfg, self.layers.clone(), cap, filled, pos)
    }

    fn begin(&mut self, start: usize, n: usize) -> Result<(), ForwardError> {
        check_pass(start, n, self.max_batch, self.max_context)?;
        self.start = start;
        self.n = n;
        self.tables = [None; ROPE_TABLES];
        self.ranges_valid = [false; MASKS];
        Ok(())
    }

    fn embed(&mut self, inputs: Inputs, scale: f32) -> Result<(), ForwardError> {
        if inputs.len() != self.n {
            return Err(ForwardError::Mismatch);
        }
        let (d, vocab) = (self.cfg.d_model, self.cfg.vocab_size);
        let mut ids = vec![-1i32; self.n];
        for (id, input) in ids.iter_mut().zip(inputs.iter()) {
            match input {
                Input::Token(t) if t as usize >= vocab => {
                    return Err(ForwardError::TokenOutOfRange { token: t, vocab });
                }
                Input::Token(t) => *id = t as i32,
                Input::Embedding(e) if e.len() != d => {
                    return Err(ForwardError::EmbeddingWidth {
                        got: e.len(),
                        want: d,
                    });
                }
                Input::Embedding(_) => {}
            }
        }
        let dm = self
            .weights
            .matrix(TensorId::global(Role::Embedding))
            .ok_or(ForwardError::Mismatch)?;
        // A table with fewer rows than the vocabulary (a `.sbs` config can
        // say otherwise) would be read past its end by a valid token.
        if dm.cols != d || dm.rows < vocab {
            return Err(ForwardError::Mismatch);
        }
        let r = buffers::write(&self.queue, &mut self.tokens, 0, &ids);
        r.map_err(|e| self.fail("embed", e))?;
        let mut args = self.weights.args(&dm).to_vec();
        args.extend([
            Arg::Mem(self.tokens.get()),
            self.act(Act::X),
            Arg::F32(scale),
        ]);
        let ks = self.matmul[dm.code]
            .as_ref()
            .ok_or(ForwardError::Mismatch)?;
        launch(&self.queue, &ks.embed, "embed", &args, [self.n, 1], 32)
            .map_err(|e| self.fail("embed", e))?;
        for (b, input) in inputs.iter().enumerate() {
            if let Input::Embedding(e) = input {
                let r = buffers::write(&self.queue, &mut self.acts[Act::X as usize], b * d, e);
                r.map_err(|e| self.fail("embed", e))?;
            }
        }
        Ok(())
    }

    fn rms_norm(&mut self, src: Act, dst: Act, norm: &Norm) -> Result<(), ForwardError> {
        let width = src.width(&self.cfg);
        if dst.width(&self.cfg) != width {
            return Err(ForwardError::Mismatch);
        }
        self.norm_rows(self.act(src), self.act(dst), norm, width, self.n)
    }

    fn head_norm(&mut self, buf: Act, norm: &Norm) -> Result<(), ForwardError> {
        let hd = self.cfg.head_dim;
        let rows = self.n * buf.width(&self.cfg) / hd;
        self.norm_rows(self.act(buf), self.act(buf), norm, hd, rows)
    }

    fn rope(&mut self, buf: Act, rope: Rope) -> Result<(), ForwardError> {
        let i = self.table(rope)?;
        let width = buf.width(&self.cfg);
        let args = [
            self.act(buf),
            Arg::Mem(self.cos[i].get()),
            Arg::Mem(self.sin[i].get()),
            Arg::I32(width as i32),
            Arg::I32(self.cfg.head_dim as i32),
            Arg::I32(self.n as i32),
        ];
        let t = kernels::ELEMENT_THREADS;
        let pairs = self.n * width / 2;
        launch(
            &self.queue,
            &self.ops.rope,
            "rope",
            &args,
            [pairs.div_ceil(t), 1],
            t,
        )
        .map_err(|e| self.fail("rope", e))
    }

    fn scale(&mut self, buf: Act, factor: f32) -> Result<(), ForwardError> {
        let count = self.n * buf.width(&self.cfg);
        let args = [self.act(buf), Arg::F32(factor), Arg::I32(count as i32)];
        self.elementwise(Elementwise::Scale, &args, count)
    }

    fn matmul(&mut self, w: TensorId, src: Act, dst: Act) -> Result<(), ForwardError> {
        let m = self.weights.matrix(w).ok_or(ForwardError::Mismatch)?;
        if m.cols != src.width(&self.cfg) || m.rows != dst.width(&self.cfg) || src == dst {
            return Err(ForwardError::Mismatch);
        }
        self.product(&m, self.act(src), self.act(dst), self.n)
    }

    fn store_kv(&mut self, layer: usize, k: Act, v: Act) -> Result<(), ForwardError> {
        let kv = self.cfg.kv_dim();
        if k.width(&self.cfg) != kv || v.width(&self.cfg) != kv {
            return Err(ForwardError::Mismatch);
        }
        let c = self.cache(layer)?;
        let args = [
            self.act(k),
            self.act(v),
            Arg::Mem(c.keys.get()),
            Arg::Mem(c.values.get()),
            Arg::I32(kv as i32),
            Arg::I32(self.start as i32),
            Arg::I32(self.n as i32),
            Arg::I32(c.capacity as i32),
        ];
        let t = kernels::ELEMENT_THREADS;
        let blocks = (self.n * kv).div_ceil(t);
        launch(
            &self.queue,
            &self.ops.store_kv,
            "store_kv",
            &args,
            [blocks, 1],
            t,
        )
        .map_err(|e| self.fail("store_kv", e))
    }

    fn attend(
        &mut self,
        layer: usize,
        q: Act,
        out: Act,
        mask: &Mask,
        softcap: f32,
    ) -> Result<(), ForwardError> {
        let qd = self.cfg.q_dim();
        if q.width(&self.cfg) != qd || out.width(&self.cfg) != qd || q == out {
            return Err(ForwardError::Mismatch);
        }
        self.ranges_scratch.clear();
        for b in 0..self.n {
            let (lo, hi) = mask.keys(self.start + b);
            // An empty range (hi < lo) gives zeros, as on the CPU.
            self.ranges_scratch.extend([lo as i32, hi as i32]);
        }
        let slot = self.ranges_slot()?;
        let ranges = Arg::Mem(self.ranges[slot].get());
        let c = self.cache(layer)?;
        let cfg = &self.cfg;
        let args = [
            self.act(q),
            self.act(out),
            Arg::Mem(c.keys.get()),
            Arg::Mem(c.values.get()),
            ranges,
            Arg::I32(cfg.n_heads as i32),
            Arg::I32(cfg.n_kv_heads as i32),
            Arg::I32(cfg.head_dim as i32),
            Arg::I32(c.capacity as i32),
            Arg::F32(softcap),
        ];
        let groups = [self.n * cfg.n_heads, 1];
        launch(
            &self.queue,
            &self.ops.attend,
            "attend",
            &args,
            groups,
            kernels::ATT_THREADS,
        )
        .map_err(|e| self.fail("attend", e))
    }

    fn gelu_gate(&mut self, gate: Act, up: Act) -> Result<(), ForwardError> {
        let width = gate.width(&self.cfg);
        if up.width(&self.cfg) != width || gate == up {
            return Err(ForwardError::Mismatch);
        }
        let count = self.n * width;
        let args = [self.act(gate), self.act(up), Arg::I32(count as i32)];
        self.elementwise(Elementwise::GeluGate, &args, count)
    }

    fn add(&mut self, dst: Act, src: Act) -> Result<(), ForwardError> {
        let width = dst.width(&self.cfg);
        if src.width(&self.cfg) != width || src == dst {
            return Err(ForwardError::Mismatch);
        }
        let count = self.n * width;
        let args = [self.act(dst), self.act(src), Arg::I32(count as i32)];
        self.elementwise(Elementwise::Add, &args, count)
    }

    fn logits(
        &mut self,
        src: Act,
        rows: Range<usize>,
        cap: f32,
        out: &mut [f32],
    ) -> Result<(), ForwardError> {
        let vocab = self.cfg.vocab_size;
        if rows.end > self.n || rows.start > rows.end || out.len() < rows.len() * vocab {
            return Err(ForwardError::Mismatch);
        }
        let mut at = rows.start;
        for chunk in out[..rows.len() * vocab].chunks_mut(LOGIT_ROWS * vocab) {
            let n = chunk.len() / vocab;
            self.logits_on_device(src, at..at + n, cap)?;
            let r = buffers::read(&self.queue, &self.logits, 0, chunk);
            r.map_err(|e| self.fail("logits", e))?;
            at += n;
        }
        Ok(())
    }

    fn argmax(&mut self, src: Act, row: usize, softcap: f32) -> Result<Option<u32>, ForwardError> {
        self.device_argmax(src, row, softcap).map(Some)
    }

    fn read(&mut self, src: Act, out: &mut [f32]) -> Result<(), ForwardError> {
        let len = self.n * src.width(&self.cfg);
        let out = out.get_mut(..len).ok_or(ForwardError::Mismatch)?;
        let r = buffers::read(&self.queue, &self.acts[src as usize], 0, out);
        r.map_err(|e| self.fail("read", e))
    }

    fn write(&mut self, dst: Act, data: &[f32]) -> Result<(), ForwardError> {
        let len = self.n * dst.width(&self.cfg);
        let data = data.get(..len).ok_or(ForwardError::Mismatch)?;
        let r = buffers::write(&self.queue, &mut self.acts[dst as usize], 0, data);
        r.map_err(|e| self.fail("write", e))
    }
}
