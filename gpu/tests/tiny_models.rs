//! Tiny synthetic Gemma 1, 2 and 3 models through the OpenCL backend:
//! the logits at every position (batched prefill, then single-token decode
//! steps) against the CPU backend's.

mod support;

use gemma_core::cpu::CpuBackend;
use gemma_core::exec::Serial;
use gemma_core::format::gguf::Gguf;
use gemma_core::generate::Session;
use gemma_core::load;
use gemma_core::model::{Backend, Inputs, Model};
use gemma_core::sampling::Candidate;
use gemma_gpu::opencl::OpenClBackend;
use gemma_platform::synthetic::{tiny_model, TinySpec};
use support::{device, max_diff};

const TOKENS: [u32; 13] = [2, 9, 17, 40, 7, 7, 100, 255, 31, 12, 6, 70, 3];

/// Logits at every position: `prefill` tokens in passes of the backend's
/// batch, the rest one at a time.
fn logits(model: &Model, backend: &mut dyn Backend, prefill: usize) -> Vec<Vec<f32>> {
    let cfg = &model.config;
    let vocab = cfg.vocab_size;
    let (mut logits, mut cand) = (vec![0f32; vocab], vec![Candidate::default(); vocab]);
    let mut s = Session::new(cfg, backend, &mut logits, &mut cand).unwrap();
    let mut out = vec![];
    let mut from = 0;
    while from < TOKENS.len() {
        let step = if from < prefill {
            s.max_batch().min(prefill - from)
        } else {
            1
        };
        let end = from + step;
        s.forward_chunk(Inputs::Tokens(&TOKENS[from..end]), &[])
            .unwrap();
        let mut rows = vec![0f32; step * vocab];
        s.logits_rows(0..step, &mut rows).unwrap();
        out.extend(rows.chunks_exact(vocab).map(|r| r.to_vec()));
        from = end;
    }
    out
}

fn check(test: &str, spec: TinySpec) {
    let Some(gpu) = device(test) else { return };
    let bytes = tiny_model(&spec);
    let g = Gguf::parse(&bytes).unwrap();
    let model = load::gguf::model(&g).unwrap();
    let cfg = &model.config;
    let (ctx, batch, prefill) = (32, 4, 7);
    let len = CpuBackend::required_len(cfg, 0..cfg.n_layers, ctx, batch).unwrap();
    let mut buf = vec![0f32; len];
    let mut cpu = CpuBackend::new(&model, &Serial, 0..cfg.n_layers, ctx, batch, &mut buf).unwrap();
    let want = logits(&model, &mut cpu, prefill);
    let mut ocl = OpenClBackend::new(gpu, &model, 0..cfg.n_layers, ctx, batch).unwrap();
    let got = logits(&model, &mut ocl, prefill);
    for (p, (g, w)) in got.iter().zip(&want).enumerate() {
        let d = max_diff(g, w);
        assert!(d < 5e-3, "{test}: position {p}: logits differ by {d}");
    }
}

#[test]
fn gemma3_tiny_model_matches_the_cpu() {
    check("gemma3_tiny_model_matches_the_cpu", TinySpec::default());
}

#[test]
fn gemma2_tiny_model_matches_the_cpu() {
    let spec = TinySpec {
        arch: "gemma2",
        ..TinySpec::default()
    };
    check("gemma2_tiny_model_matches_the_cpu", spec);
}

#[test]
fn gemma1_tiny_model_matches_the_cpu() {
    let spec = TinySpec {
        arch: "gemma",
        ..TinySpec::default()
    };
    check("gemma1_tiny_model_matches_the_cpu", spec);
}
