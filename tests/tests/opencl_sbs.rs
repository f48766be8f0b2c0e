//! The real model converted to gemma.cpp's `.sbs` with SFP and with NUQ
//! weights, through the OpenCL backend (PoCL in CI) and the CPU backend
//! on the same file: every logit of golden prompt 0, teacher-forced,
//! within 0.01. This covers the kernels' reading of gemma.cpp streams as
//! the loader views them: Q, K and V rows of one `qkv_ein` per layer
//! (K and V interleaved per KV head), the head-major `att_ein`, and
//! groups of 256 (NUQ) that straddle rows.

use gemma_core::codec::Codec;
use gemma_core::generate::Session;
use gemma_core::model::{Backend, Model};
use gemma_core::sampling::Candidate;
use gemma_gpu::opencl::{test_device, OpenClBackend};
use gemma_platform::convert::gguf_to_sbs;
use gemma_platform::{LoadedModel, SessionBuffers, WorkerPool};
use gemma_tests::{goldens, real_model_path, u32s, TempDir};
use std::path::PathBuf;

fn tokenizer_proto() -> Vec<u8> {
    let p =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../core/tests/data/gemma3-tokenizer.spm");
    std::fs::read(p).unwrap()
}

/// Logits at every position of `tokens`, in passes of the backend's batch.
fn logits(model: &Model, backend: &mut dyn Backend, tokens: &[u32]) -> Vec<f32> {
    let vocab = model.config.vocab_size;
    let (mut row, mut cand) = (vec![0f32; vocab], vec![Candidate::default(); vocab]);
    let mut s = Session::new(&model.config, backend, &mut row, &mut cand).unwrap();
    let mut out = vec![0f32; tokens.len() * vocab];
    let batch = s.max_batch();
    for (chunk, rows) in tokens.chunks(batch).zip(out.chunks_mut(batch * vocab)) {
        s.forward_logits(chunk, rows).unwrap();
    }
    out
}

#[test]
fn sfp_and_nuq_files_match_the_cpu_backend() {
    let Some(gpu) = test_device("sfp_and_nuq_files_match_the_cpu_backend") else {
        return;
    };
    let p = &goldens()["prompts"][0];
    let mut tokens = u32s(&p["input_ids"]);
    tokens.extend(u32s(&p["greedy_ids"]));
    let dir = TempDir::new(env!("CARGO_TARGET_TMPDIR"), "opencl-sbs");
    let proto = tokenizer_proto();
    for codec in [Codec::SFP, Codec::NUQ] {
        let path = dir.0.join(format!("model-{codec:?}.sbs"));
        gguf_to_sbs(&real_model_path(), &path, codec, &proto).unwrap();
        let loaded = LoadedModel::open(&path).unwrap();
        let model = loaded.model();
        let (ctx, batch) = (tokens.len(), 16);
        let exec = WorkerPool::new(0).unwrap();
        let mut bufs = SessionBuffers::new(&model.config, ctx, batch).unwrap();
        let mut cpu = bufs.cpu(&model, &exec, loaded.precision()).unwrap().backend;
        let want = logits(&model, &mut cpu, &tokens);
        let n = model.config.n_layers;
        let mut ocl = OpenClBackend::new(gpu.clone(), &model, 0..n, ctx, batch).unwrap();
        let got = logits(&model, &mut ocl, &tokens);
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, |m, d| if d.is_nan() || d > m { d } else { m });
        eprintln!(
            "{codec:?}: {} positions, worst logit difference {worst:.2e}",
            tokens.len()
        );
        // `<=` is false for NaN.
        assert!(worst <= 0.01, "{codec:?}: logits differ by {worst}");
    }
}
