//! Tiny synthetic Gemma 1, 2 and 3 models through the OpenCL backend:
//! the logits at every position (batched prefill, then single-token decode
//! steps) against the CPU backend's.

mod support;

use gemma_core::cpu::CpuBackend;
use gemma_core::exec::Serial;
use gemma_core::format::gguf::Gguf;
use gemma_core::generate::{GenerateOptions, Session};
use gemma_core::load;
use gemma_core::model::plan::Footprint;
use gemma_core::model::{Act, Backend, Input, Inputs, Model, Prompt, Span};
use gemma_core::quant::WeightType;
use gemma_core::sampling::{Candidate, Sampler};
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
    // The planner's arithmetic counts what the upload holds.
    let planned = Footprint::of(&model).total();
    assert_eq!(
        ocl.weights().device_bytes(),
        planned,
        "{test}: uploaded bytes"
    );
    let got = logits(&model, &mut ocl, prefill);
    let (mut worst, mut largest) = (0f32, 0f32);
    for (p, (g, w)) in got.iter().zip(&want).enumerate() {
        let d = max_diff(g, w);
        assert!(d < 5e-3, "{test}: position {p}: logits differ by {d}");
        worst = worst.max(d);
        largest = w.iter().fold(largest, |a, v| a.max(v.abs()));
    }
    // Logits near zero would make any backend look right.
    assert!(
        largest > 0.5,
        "{test}: logits too small to compare ({largest})"
    );
    eprintln!("{test}: worst difference {worst:.1e}, largest logit {largest:.1}");
}

#[test]
fn gemma3_tiny_model_matches_the_cpu() {
    check("gemma3_tiny_model_matches_the_cpu", TinySpec::default());
}

/// Every GGML type in Gemma 1, 2 and 3 models wide enough for K-quant
/// super-blocks (256 columns): sliding windows over ring buffers, GQA,
/// QK-norm, Gemma 2's soft-caps.
#[test]
fn every_ggml_type_in_every_family_matches_the_cpu() {
    for arch in ["gemma", "gemma2", "gemma3"] {
        for ty in WeightType::ALL {
            let spec = TinySpec {
                arch,
                d_model: 256,
                d_ff: 512,
                n_heads: 4,
                n_kv_heads: 2,
                head_dim: 64,
                weight_type: ty,
                ..TinySpec::default()
            };
            check(&format!("{arch} {}", ty.name()), spec);
        }
    }
}

/// Embedding rows among the tokens, in a bidirectional span longer than
/// the sliding window (Gemma 3's image blocks, PaliGemma's prefix): the
/// rows enter unscaled, and every position of the span sees the whole
/// span in every layer.
#[test]
fn embedding_rows_in_a_bidirectional_span_match_the_cpu() {
    let test = "embedding_rows_in_a_bidirectional_span_match_the_cpu";
    let Some(gpu) = device(test) else { return };
    let bytes = tiny_model(&TinySpec::default());
    let g = Gguf::parse(&bytes).unwrap();
    let model = load::gguf::model(&g).unwrap();
    let cfg = &model.config;
    let d = cfg.d_model;
    let rows: Vec<Vec<f32>> = (0..6)
        .map(|r| (0..d).map(|i| ((r * d + i) as f32 * 0.37).sin()).collect())
        .collect();
    let mut inputs = vec![Input::Token(2), Input::Token(9), Input::Token(17)];
    inputs.extend(rows.iter().map(|r| Input::Embedding(r)));
    inputs.extend([40, 7, 7].map(Input::Token));
    let spans = [Span::new(3, 9)];
    let run = |backend: &mut dyn Backend| {
        let vocab = cfg.vocab_size;
        let (mut l, mut c) = (vec![0f32; vocab], vec![Candidate::default(); vocab]);
        let mut s = Session::new(cfg, backend, &mut l, &mut c).unwrap();
        s.forward_chunk(Inputs::Mixed(&inputs), &spans).unwrap();
        let mut out = vec![0f32; inputs.len() * vocab];
        s.logits_rows(0..inputs.len(), &mut out).unwrap();
        out.extend_from_slice(s.step(100).unwrap());
        out
    };
    let (ctx, batch) = (32, 16);
    let len = CpuBackend::required_len(cfg, 0..cfg.n_layers, ctx, batch).unwrap();
    let mut buf = vec![0f32; len];
    let mut cpu = CpuBackend::new(&model, &Serial, 0..cfg.n_layers, ctx, batch, &mut buf).unwrap();
    let want = run(&mut cpu);
    let mut ocl = OpenClBackend::new(gpu, &model, 0..cfg.n_layers, ctx, batch).unwrap();
    let got = run(&mut ocl);
    let d = max_diff(&got, &want);
    assert!(d < 5e-3, "{test}: logits differ by {d}");
}

/// Greedy generation takes the argmax on the device (four bytes back per
/// token); its tokens are the CPU backend's, in every family.
#[test]
fn greedy_generation_with_the_device_argmax_matches_the_cpu() {
    let test = "greedy_generation_with_the_device_argmax_matches_the_cpu";
    let Some(gpu) = device(test) else { return };
    for arch in ["gemma", "gemma2", "gemma3"] {
        let spec = TinySpec {
            arch,
            ..TinySpec::default()
        };
        let bytes = tiny_model(&spec);
        let g = Gguf::parse(&bytes).unwrap();
        let model = load::gguf::model(&g).unwrap();
        let cfg = &model.config;
        let run = |backend: &mut dyn Backend| {
            let vocab = cfg.vocab_size;
            let (mut l, mut c) = (vec![0f32; vocab], vec![Candidate::default(); vocab]);
            let mut s = Session::new(cfg, backend, &mut l, &mut c).unwrap();
            let mut sampler = Sampler::greedy();
            let opts = GenerateOptions {
                max_new_tokens: 12,
                stop_tokens: &[],
                prefill_progress: None,
                adjust_logits: None,
            };
            let mut out = vec![];
            s.generate(
                Prompt::tokens(&TOKENS[..5]),
                &mut sampler,
                &opts,
                &mut |t| {
                    out.push(t);
                    true
                },
            )
            .unwrap();
            out
        };
        let (ctx, batch) = (32, 4);
        let len = CpuBackend::required_len(cfg, 0..cfg.n_layers, ctx, batch).unwrap();
        let mut buf = vec![0f32; len];
        let mut cpu =
            CpuBackend::new(&model, &Serial, 0..cfg.n_layers, ctx, batch, &mut buf).unwrap();
        let want = run(&mut cpu);
        let mut ocl = OpenClBackend::new(gpu.clone(), &model, 0..cfg.n_layers, ctx, batch).unwrap();
        let got = run(&mut ocl);
        assert_eq!(got.len(), 12);
        assert_eq!(got, want, "{arch}");
        // The device's argmax of the last pass is the host argmax of the
        // logits it returns.
        let cap = cfg.final_softcap;
        let best = ocl
            .argmax(Act::Hidden, 0, cap)
            .unwrap()
            .expect("a device argmax");
        let mut row = vec![0f32; cfg.vocab_size];
        ocl.logits(Act::Hidden, 0..1, cap, &mut row).unwrap();
        let host = (0..row.len()).fold(0, |b, i| if row[i] > row[b] { i } else { b });
        assert_eq!(best as usize, host, "{arch}");
    }
}
