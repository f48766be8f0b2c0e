//! The real model through the OpenCL backend (PoCL in CI), teacher-forced
//! through the golden prompts: top-20 logits within 0.01 of the goldens
//! (f32 with another summation order than the CPU's), top-1 equal where
//! the golden margin exceeds 0.02.

use gemma_gpu::opencl::{test_device, OpenClBackend};
use gemma_tests::{golden_len, goldens, real_model, teacher_forced_on, Tolerances};

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
}
