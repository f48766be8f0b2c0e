//! Every operation of the seam on the OpenCL backend against the CPU
//! backend, one at a time, on random activations of awkward shapes: a
//! model of width 48 with 3 query heads of 24 sharing one KV head (a
//! group of 3, a head that is not a whole number of attention threads),
//! a pass of 13 tokens starting at position 12 (so a local layer's ring of
//! 19 slots wraps), masks with a sliding window, a bidirectional span and
//! a soft-cap.

mod support;

use gemma_core::cpu::CpuBackend;
use gemma_core::exec::Serial;
use gemma_core::format::gguf::Gguf;
use gemma_core::load;
use gemma_core::model::{Act, Backend, Inputs, Mask, Norm, Rope, Span};
use gemma_core::weights::{Role, TensorId};
use gemma_gpu::opencl::OpenClBackend;
use gemma_platform::synthetic::{tiny_model, TinySpec};
use support::{device, max_diff};

const START: usize = 12;
const N: usize = 13;

fn random(len: usize, seed: u32) -> Vec<f32> {
    support::random(len, seed, 2.0)
}

#[test]
fn every_operation_matches_the_cpu_backend() {
    let test = "every_operation_matches_the_cpu_backend";
    let Some(gpu) = device(test) else { return };
    let spec = TinySpec {
        d_model: 48,
        d_ff: 80,
        n_heads: 3,
        n_kv_heads: 1,
        head_dim: 24,
        sliding_window: 4,
        ..TinySpec::default()
    };
    let bytes = tiny_model(&spec);
    let g = Gguf::parse(&bytes).unwrap();
    let model = load::gguf::model(&g).unwrap();
    let cfg = model.config;
    let layers = 0..cfg.n_layers;
    let (ctx, batch) = (32, 16);
    let len = CpuBackend::required_len(&cfg, layers.clone(), ctx, batch).unwrap();
    let mut buf = vec![0f32; len];
    let mut cpu = CpuBackend::new(&model, &Serial, layers.clone(), ctx, batch, &mut buf).unwrap();
    let mut ocl = OpenClBackend::new(gpu, &model, layers, ctx, batch).unwrap();
    let backends: [&mut dyn Backend; 2] = [&mut cpu, &mut ocl];
    let [cpu, ocl] = backends;

    let mut pair = Pair {
        cpu,
        ocl,
        cfg,
        seed: 1,
    };
    let check = |pair: &mut Pair,
                 what: &str,
                 acts: &[Act],
                 out: Act,
                 op: &mut dyn FnMut(&mut dyn Backend)| {
        pair.check(what, &mut |_| {}, acts, out, op)
    };

    let norm = |role, layer| Norm {
        gain: TensorId::layer(role, layer),
        eps: cfg.rms_eps,
        plus_one: cfg.norm_gain_plus_one,
    };
    let final_norm = Norm {
        gain: TensorId::global(Role::FinalNorm),
        ..norm(Role::AttnNorm, 0)
    };
    check(&mut pair, "rms_norm", &[Act::X], Act::Xn, &mut |b| {
        b.rms_norm(Act::X, Act::Xn, &norm(Role::AttnNorm, 2))
            .unwrap()
    });
    check(
        &mut pair,
        "rms_norm in place",
        &[Act::X],
        Act::X,
        &mut |b| b.rms_norm(Act::X, Act::X, &final_norm).unwrap(),
    );
    check(&mut pair, "head_norm", &[Act::Q], Act::Q, &mut |b| {
        b.head_norm(Act::Q, &norm(Role::QNorm, 1)).unwrap()
    });
    for base in [10_000.0, 1_000_000.0] {
        check(&mut pair, "rope", &[Act::Q], Act::Q, &mut |b| {
            b.rope(Act::Q, Rope { base, scale: 1.0 }).unwrap()
        });
    }
    check(
        &mut pair,
        "rope, scaled positions",
        &[Act::K],
        Act::K,
        &mut |b| {
            b.rope(
                Act::K,
                Rope {
                    base: 1e6,
                    scale: 8.0,
                },
            )
            .unwrap()
        },
    );
    check(&mut pair, "scale", &[Act::Q], Act::Q, &mut |b| {
        b.scale(Act::Q, 0.37).unwrap()
    });
    check(&mut pair, "add", &[Act::X, Act::Xn], Act::X, &mut |b| {
        b.add(Act::X, Act::Xn).unwrap()
    });
    check(
        &mut pair,
        "gelu_gate",
        &[Act::Gate, Act::Up],
        Act::Gate,
        &mut |b| b.gelu_gate(Act::Gate, Act::Up).unwrap(),
    );
    for (role, src, dst) in [
        (Role::Q, Act::Xn, Act::Q),
        (Role::K, Act::Xn, Act::K),
        (Role::O, Act::Att, Act::Xn),
        (Role::Gate, Act::Xn, Act::Gate),
        (Role::Down, Act::Gate, Act::Xn),
    ] {
        check(
            &mut pair,
            &format!("matmul {role:?}"),
            &[src],
            dst,
            &mut |b| b.matmul(TensorId::layer(role, 3), src, dst).unwrap(),
        );
    }
    check(&mut pair, "embed", &[], Act::X, &mut |b| {
        let tokens: Vec<u32> = (0..N as u32).map(|t| t * 17 % 250).collect();
        b.embed(Inputs::Tokens(&tokens), 6.93).unwrap()
    });

    // Attention over a cache filled by an earlier pass (positions 0..12),
    // then this pass's 13: layer 0 is local (a ring of window + batch - 1
    // = 19 slots, which positions 19..25 wrap), layer 5 global, as the
    // forward pass masks them (the window on local layers only).
    let spans = [Span::new(14, 19)];
    let cases = [
        (0, 4, &[][..], 0.0),
        (0, 4, &spans[..], 50.0),
        (5, 0, &[][..], 0.0),
        (5, 0, &spans[..], 50.0),
    ];
    for (layer, window, spans, cap) in cases {
        let mask = Mask {
            window,
            spans,
            written_end: START + N,
        };
        let what = format!(
            "attend, layer {layer}, window {window}, {} spans, cap {cap}",
            spans.len()
        );
        let early = random(START * cfg.kv_dim(), 1000 + layer as u32);
        let mut fill = |b: &mut dyn Backend| {
            b.begin(0, START).unwrap();
            b.write(Act::K, &early).unwrap();
            b.write(Act::V, &early).unwrap();
            b.store_kv(layer, Act::K, Act::V).unwrap();
        };
        pair.check(
            &what,
            &mut fill,
            &[Act::K, Act::V, Act::Q],
            Act::Att,
            &mut |b| {
                b.store_kv(layer, Act::K, Act::V).unwrap();
                b.attend(layer, Act::Q, Act::Att, &mask, cap).unwrap()
            },
        );
    }

    // Logits of some rows, soft-capped, and the argmax of one.
    let (cpu, ocl) = (pair.cpu, pair.ocl);
    for b in [&mut *cpu, &mut *ocl] {
        b.begin(START, N).unwrap();
    }
    let h = random(N * cfg.d_model, 77);
    cpu.write(Act::Hidden, &h).unwrap();
    ocl.write(Act::Hidden, &h).unwrap();
    let vocab = cfg.vocab_size;
    for cap in [0.0, 30.0] {
        let (mut want, mut got) = (vec![0f32; 11 * vocab], vec![0f32; 11 * vocab]);
        cpu.logits(Act::Hidden, 1..12, cap, &mut want).unwrap();
        ocl.logits(Act::Hidden, 1..12, cap, &mut got).unwrap();
        let d = max_diff(&got, &want);
        assert!(d <= 1e-4, "logits, cap {cap}: differ by {d}");
        let row = &want[2 * vocab..3 * vocab];
        let host = (0..vocab).fold(0, |b, i| if row[i] > row[b] { i } else { b });
        let dev = ocl.argmax(Act::Hidden, 3, cap).unwrap().unwrap();
        assert_eq!(dev as usize, host, "argmax, cap {cap}");
    }
}

/// The two backends under comparison.
struct Pair<'a> {
    cpu: &'a mut dyn Backend,
    ocl: &'a mut dyn Backend,
    cfg: gemma_core::model::ModelConfig,
    seed: u32,
}

impl Pair<'_> {
    /// Runs `before` on both backends, starts the pass, sets `acts` to the
    /// same random values on both, runs `op` on both and compares `out`.
    fn check(
        &mut self,
        what: &str,
        before: &mut dyn FnMut(&mut dyn Backend),
        acts: &[Act],
        out: Act,
        op: &mut dyn FnMut(&mut dyn Backend),
    ) {
        let cfg = self.cfg;
        for b in [&mut *self.cpu, &mut *self.ocl] {
            before(b);
            b.begin(START, N).unwrap();
        }
        for &a in acts {
            self.seed += 1;
            let v = random(N * a.width(&cfg), self.seed);
            self.cpu.write(a, &v).unwrap();
            self.ocl.write(a, &v).unwrap();
        }
        op(self.cpu);
        op(self.ocl);
        let width = out.width(&cfg);
        let (mut want, mut got) = (vec![0f32; N * width], vec![0f32; N * width]);
        self.cpu.read(out, &mut want).unwrap();
        self.ocl.read(out, &mut got).unwrap();
        let scale = want.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
        let d = max_diff(&got, &want);
        assert!(d <= 1e-5 * scale.max(1.0), "{what}: differs by {d}");
        eprintln!("{what}: {d:.1e}");
    }
}
