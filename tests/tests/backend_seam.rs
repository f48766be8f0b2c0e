//! A second backend, written outside `core/src/model/`: it records every
//! operation the forward pass hands it and passes each on to the CPU
//! backend. One decode step of a tiny Gemma 3 model must be exactly
//! Gemma 3's layer order, and the logits those of the CPU backend alone.

use gemma_core::cpu::CpuBackend;
use gemma_core::exec::Serial;
use gemma_core::format::gguf::Gguf;
use gemma_core::generate::{Session, SessionSizes};
use gemma_core::load;
use gemma_core::model::{Act, Backend, ForwardError, Inputs, Mask, Norm, Prompt, Rope};
use gemma_core::sampling::Candidate;
use gemma_core::weights::{Role, TensorId};
use gemma_platform::synthetic::{tiny_model, TinySpec};
use std::ops::Range;

/// One operation as the seam saw it.
#[derive(Clone, Debug, PartialEq)]
enum Op {
    Begin {
        start: usize,
        n: usize,
    },
    Embed {
        n: usize,
    },
    RmsNorm(Act, Act, TensorId),
    HeadNorm(Act, TensorId),
    Rope(Act, f32, f32),
    Scale(Act, f32),
    Matmul(TensorId, Act, Act),
    StoreKv(usize, Act, Act),
    /// Layer, query, output, window, soft-cap.
    Attend(usize, Act, Act, usize, f32),
    GeluGate(Act, Act),
    Add(Act, Act),
    Logits(Act, Range<usize>),
    Read(Act),
    Write(Act),
}

struct Recorder<'a> {
    inner: CpuBackend<'a>,
    ops: Vec<Op>,
}

impl Backend for Recorder<'_> {
    fn max_batch(&self) -> usize {
        self.inner.max_batch()
    }
    fn max_context(&self) -> usize {
        self.inner.max_context()
    }
    fn layers(&self) -> Range<usize> {
        self.inner.layers()
    }
    fn can_rewind(&self, filled: usize, pos: usize) -> bool {
        self.inner.can_rewind(filled, pos)
    }
    fn begin(&mut self, start: usize, n: usize) -> Result<(), ForwardError> {
        self.ops.push(Op::Begin { start, n });
        self.inner.begin(start, n)
    }
    fn embed(&mut self, inputs: Inputs, scale: f32) -> Result<(), ForwardError> {
        self.ops.push(Op::Embed { n: inputs.len() });
        self.inner.embed(inputs, scale)
    }
    fn rms_norm(&mut self, src: Act, dst: Act, norm: &Norm) -> Result<(), ForwardError> {
        self.ops.push(Op::RmsNorm(src, dst, norm.gain));
        self.inner.rms_norm(src, dst, norm)
    }
    fn head_norm(&mut self, buf: Act, norm: &Norm) -> Result<(), ForwardError> {
        self.ops.push(Op::HeadNorm(buf, norm.gain));
        self.inner.head_norm(buf, norm)
    }
    fn rope(&mut self, buf: Act, rope: Rope) -> Result<(), ForwardError> {
        self.ops.push(Op::Rope(buf, rope.base, rope.scale));
        self.inner.rope(buf, rope)
    }
    fn scale(&mut self, buf: Act, factor: f32) -> Result<(), ForwardError> {
        self.ops.push(Op::Scale(buf, factor));
        self.inner.scale(buf, factor)
    }
    fn matmul(&mut self, w: TensorId, src: Act, dst: Act) -> Result<(), ForwardError> {
        self.ops.push(Op::Matmul(w, src, dst));
        self.inner.matmul(w, src, dst)
    }
    fn store_kv(&mut self, layer: usize, k: Act, v: Act) -> Result<(), ForwardError> {
        self.ops.push(Op::StoreKv(layer, k, v));
        self.inner.store_kv(layer, k, v)
    }
    fn attend(
        &mut self,
        layer: usize,
        q: Act,
        out: Act,
        mask: &Mask,
        softcap: f32,
    ) -> Result<(), ForwardError> {
        self.ops
            .push(Op::Attend(layer, q, out, mask.window, softcap));
        self.inner.attend(layer, q, out, mask, softcap)
    }
    fn gelu_gate(&mut self, gate: Act, up: Act) -> Result<(), ForwardError> {
        self.ops.push(Op::GeluGate(gate, up));
        self.inner.gelu_gate(gate, up)
    }
    fn add(&mut self, dst: Act, src: Act) -> Result<(), ForwardError> {
        self.ops.push(Op::Add(dst, src));
        self.inner.add(dst, src)
    }
    fn logits(
        &mut self,
        src: Act,
        rows: Range<usize>,
        softcap: f32,
        out: &mut [f32],
    ) -> Result<(), ForwardError> {
        self.ops.push(Op::Logits(src, rows.clone()));
        self.inner.logits(src, rows, softcap, out)
    }
    fn read(&mut self, src: Act, out: &mut [f32]) -> Result<(), ForwardError> {
        self.ops.push(Op::Read(src));
        self.inner.read(src, out)
    }
    fn write(&mut self, dst: Act, data: &[f32]) -> Result<(), ForwardError> {
        self.ops.push(Op::Write(dst));
        self.inner.write(dst, data)
    }
}

/// One decode step of a Gemma 3 model with `n_layers` layers, written from
/// the architecture (Gemma 3 technical report; Hugging Face's
/// `Gemma3DecoderLayer`): five sliding-window layers (RoPE base 10000) to
/// a global one (the file's base, here 1e6), QK-norm after the
/// projections, RoPE, queries scaled by 1/sqrt(head_dim), post-norms on
/// both sub-blocks, a GELU-gated feed-forward, then the final norm and the
/// tied output projection.
fn gemma3_decode_step(pos: usize, n_layers: usize, window: usize, head_dim: usize) -> Vec<Op> {
    use Act::*;
    let mut ops = vec![Op::Begin { start: pos, n: 1 }, Op::Embed { n: 1 }];
    let scale = 1.0 / (head_dim as f32).sqrt();
    for l in 0..n_layers {
        let w = |role| TensorId::layer(role, l);
        let global = (l + 1) % 6 == 0;
        let (base, window) = if global { (1e6, 0) } else { (1e4, window) };
        ops.extend([
            Op::RmsNorm(X, Xn, w(Role::AttnNorm)),
            Op::Matmul(w(Role::Q), Xn, Q),
            Op::Matmul(w(Role::K), Xn, K),
            Op::Matmul(w(Role::V), Xn, V),
            Op::HeadNorm(Q, w(Role::QNorm)),
            Op::HeadNorm(K, w(Role::KNorm)),
            Op::Rope(Q, base, 1.0),
            Op::Rope(K, base, 1.0),
            Op::Scale(Q, scale),
            Op::StoreKv(l, K, V),
            Op::Attend(l, Q, Att, window, 0.0),
            Op::Matmul(w(Role::O), Att, Xn),
            Op::RmsNorm(Xn, Xn, w(Role::PostAttnNorm)),
            Op::Add(X, Xn),
            Op::RmsNorm(X, Xn, w(Role::FfnNorm)),
            Op::Matmul(w(Role::Gate), Xn, Gate),
            Op::Matmul(w(Role::Up), Xn, Up),
            Op::GeluGate(Gate, Up),
            Op::Matmul(w(Role::Down), Gate, Xn),
            Op::RmsNorm(Xn, Xn, w(Role::PostFfwNorm)),
            Op::Add(X, Xn),
        ]);
    }
    ops.push(Op::RmsNorm(X, Hidden, TensorId::global(Role::FinalNorm)));
    ops.push(Op::Logits(Hidden, 0..1));
    ops
}

#[test]
fn a_recording_backend_sees_gemma3_layer_order_and_changes_no_logit() {
    let spec = TinySpec::default();
    let bytes = tiny_model(&spec);
    let g = Gguf::parse(&bytes).unwrap();
    let model = load::gguf::model(&g).unwrap();
    let cfg = &model.config;
    let (ctx, batch) = (16, 4);
    let prompt = [2u32, 9, 17, 40, 7];
    let vocab = cfg.vocab_size;
    let floats = SessionSizes::new(cfg, ctx, batch).unwrap().floats;

    // The CPU backend alone.
    let mut plain = vec![0f32; floats];
    let (buf, logits) = SessionSizes::split(cfg, &mut plain).unwrap();
    let mut cpu = CpuBackend::new(&model, &Serial, 0..cfg.n_layers, ctx, batch, buf).unwrap();
    let mut candidates = vec![Candidate::default(); vocab];
    let mut s = Session::new(cfg, &mut cpu, logits, &mut candidates).unwrap();
    s.prefill(Prompt::tokens(&prompt)).unwrap();
    let want = s.step(11).unwrap().to_vec();

    // The same through the recorder.
    let mut recorded = vec![0f32; floats];
    let (buf, logits) = SessionSizes::split(cfg, &mut recorded).unwrap();
    let inner = CpuBackend::new(&model, &Serial, 0..cfg.n_layers, ctx, batch, buf).unwrap();
    let mut rec = Recorder { inner, ops: vec![] };
    let mut candidates = vec![Candidate::default(); vocab];
    {
        let mut s = Session::new(cfg, &mut rec, &mut *logits, &mut candidates).unwrap();
        s.prefill(Prompt::tokens(&prompt)).unwrap();
    }
    // The prompt went in two passes of at most four tokens.
    let begins: Vec<&Op> = rec
        .ops
        .iter()
        .filter(|o| matches!(o, Op::Begin { .. }))
        .collect();
    assert_eq!(
        begins,
        [&Op::Begin { start: 0, n: 4 }, &Op::Begin { start: 4, n: 1 }]
    );
    rec.ops.clear();
    // A new session over the same buffers continues where the last left off.
    let mut s = Session::new(cfg, &mut rec, logits, &mut candidates).unwrap();
    s.set_pos(prompt.len()).unwrap();
    let got = s.step(11).unwrap().to_vec();
    drop(s);
    let expected = gemma3_decode_step(
        prompt.len(),
        spec.n_layers as usize,
        spec.sliding_window as usize,
        spec.head_dim as usize,
    );
    assert_eq!(rec.ops.len(), expected.len(), "{:#?}", rec.ops);
    for (i, (got, want)) in rec.ops.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "operation {i}");
    }
    assert_eq!(got, want, "the recorder changed the logits");
}
