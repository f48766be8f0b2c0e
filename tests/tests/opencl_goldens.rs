//! The real model through the OpenCL backend (PoCL in CI), teacher-forced
//! through the golden prompts: top-20 logits within 0.01 of the goldens
//! (f32 with another summation order than the CPU's), top-1 equal where
//! the golden margin exceeds 0.02.

use gemma_core::generate::{GenerateOptions, Session};
use gemma_core::model::Prompt;
use gemma_core::sampling::{Candidate, Sampler};
use gemma_gpu::opencl::{test_device, OpenClBackend};
use gemma_tests::{golden_len, goldens, real_model, teacher_forced_on, u32s, Tolerances};

const TOLERANCE: Tolerances = Tolerances {
    top20: 0.01,
    top1_margin: 0.02,
    prompt_argmax: 0.02,
};

#[test]
fn opencl_matches_every_golden_prompt() {
    let Some(gpu) = test_device("opencl_matches_every_golden_prompt") else {
        return;
    };
    let loaded = real_model();
    let model = loaded.model();
    let prompts = goldens()["prompts"].as_array().unwrap().len();
    let ctx = (0..prompts).map(golden_len).max().unwrap();
    let n = model.config.n_layers;
    let started = std::time::Instant::now();
    let mut backend = OpenClBackend::new(gpu, &model, 0..n, ctx, 64).unwrap();
    eprintln!("upload and build: {:.1} s", started.elapsed().as_secs_f64());
    let mut worst = 0f32;
    for i in 0..prompts {
        let f = teacher_forced_on(&model, &mut backend, "OpenCL", i, &TOLERANCE);
        worst = worst.max(f.worst_top20);
    }
    eprintln!(
        "{prompts} prompts in {:.1} s, worst top-20 difference {worst:.2e}",
        started.elapsed().as_secs_f64()
    );
    // Greedy generation, the argmax taken on the device: the golden ids,
    // up to the first step whose golden top-1 margin is within the
    // tolerance (a near-tie either answer of which is right).
    let p = &goldens()["prompts"][0];
    let (input, greedy) = (u32s(&p["input_ids"]), u32s(&p["greedy_ids"]));
    let steps = p["steps"].as_array().unwrap();
    let sure = steps
        .iter()
        .position(|s| (s["top1_margin"].as_f64().unwrap() as f32) < TOLERANCE.top1_margin)
        .unwrap_or(greedy.len())
        .min(greedy.len());
    assert!(
        sure >= 8,
        "prompt 0 has {sure} greedy steps before a near-tie"
    );
    let greedy = &greedy[..sure];
    let vocab = model.config.vocab_size;
    let (mut row, mut cand) = (vec![0f32; vocab], vec![Candidate::default(); vocab]);
    let mut s = Session::new(&model.config, &mut backend, &mut row, &mut cand).unwrap();
    let opts = GenerateOptions {
        max_new_tokens: greedy.len(),
        stop_tokens: &[],
        prefill_progress: None,
        adjust_logits: None,
    };
    let mut got = vec![];
    s.generate(
        Prompt::tokens(&input),
        &mut Sampler::greedy(),
        &opts,
        &mut |t| {
            got.push(t);
            true
        },
    )
    .unwrap();
    assert_eq!(got, greedy, "greedy ids of prompt 0");
}
