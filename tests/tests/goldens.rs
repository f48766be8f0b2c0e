//! The real model against the independent float64 reference in
//! `tests/data/gemma3-270m/goldens.json`: tokenization, teacher-forced
//! logits at every step, free-running greedy text, and the sliding window.

use gemma_core::generate::{GenerateOptions, Session};
use gemma_core::kernels::Precision;
use gemma_core::model::{Inputs, Prompt};
use gemma_core::sampling::Sampler;
use gemma_platform::{LoadedModel, SessionBuffers, WorkerPool};
use gemma_tests::{goldens, real_model_path, tolerance, u32s};
use serde_json::Value;
use std::sync::OnceLock;

fn model() -> &'static LoadedModel {
    static M: OnceLock<LoadedModel> = OnceLock::new();
    M.get_or_init(|| LoadedModel::open(&real_model_path()).expect("real model loads"))
}

fn prompt(i: usize) -> &'static Value {
    &goldens()["prompts"][i]
}

#[test]
fn golden_config_matches_what_we_read() {
    let cfg = model().model().config;
    let g = &goldens()["config"];
    assert_eq!(cfg.n_layers, 18);
    assert_eq!(cfg.d_model as u64, g["d_model"].as_u64().unwrap());
    assert_eq!(cfg.d_ff as u64, g["d_ff"].as_u64().unwrap());
    assert_eq!(cfg.head_dim as u64, g["head_dim"].as_u64().unwrap());
    assert_eq!(cfg.n_kv_heads as u64, g["n_kv_heads"].as_u64().unwrap());
    assert_eq!(
        cfg.sliding_window as u64,
        g["sliding_window"].as_u64().unwrap()
    );
    assert_eq!(
        cfg.rope_base_global as f64,
        g["rope_base_global"].as_f64().unwrap()
    );
    assert_eq!(
        cfg.rope_base_local as f64,
        g["rope_base_local"].as_f64().unwrap()
    );
    assert_eq!(cfg.query_scale as f64, g["query_scale"].as_f64().unwrap());
    let globals: Vec<usize> = (0..cfg.n_layers).filter(|&l| !cfg.is_local(l)).collect();
    assert_eq!(globals, vec![5, 11, 17]);
    assert!((cfg.embed_scale as f64 - g["embed_scale"].as_f64().unwrap()).abs() < 1e-5);
}

#[test]
fn tokenization_matches_goldens_and_round_trips() {
    let tok = model().tokenizer();
    let cases = goldens()["tokenize"].as_array().unwrap();
    assert!(cases.len() >= 16);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want = u32s(&case["ids"]);
        let got = tok.encode_to_vec(text, true).unwrap();
        assert_eq!(got, want, "ids of {text:?}");
        assert_eq!(
            tok.decode_to_string(&got, false),
            text,
            "decode of {text:?}"
        );
    }
    for p in goldens()["prompts"].as_array().unwrap() {
        let ids = u32s(&p["input_ids"]);
        let got = tok
            .encode_to_vec(p["text"].as_str().unwrap(), true)
            .unwrap();
        assert_eq!(ids[0], tok.bos_id());
        assert_eq!(got, ids[1..], "prompt {}", p["id"]);
    }
}

fn teacher_forced(i: usize) {
    gemma_tests::teacher_forced(model(), i, &gemma_tests::Tolerances::GGUF);
}

#[test]
fn teacher_forced_logits_prompt_0_capital() {
    teacher_forced(0);
}
#[test]
fn teacher_forced_logits_prompt_1_code() {
    teacher_forced(1);
}
#[test]
fn teacher_forced_logits_prompt_2_story() {
    teacher_forced(2);
}
#[test]
fn teacher_forced_logits_prompt_3_colors() {
    teacher_forced(3);
}
#[test]
fn teacher_forced_logits_prompt_4_chat() {
    teacher_forced(4);
}
#[test]
fn teacher_forced_logits_prompt_5_long_window_952_tokens() {
    assert!(
        u32s(&prompt(5)["input_ids"]).len() > 900,
        "the long prompt exercises the 512-key window"
    );
    teacher_forced(5);
}

/// Free-running greedy generation equals the golden ids up to the first
/// near-tie step.
#[test]
fn greedy_generation_matches_goldens_until_first_near_tie() {
    let loaded = model();
    let model = loaded.model();
    let exec = WorkerPool::new(0).unwrap();
    for (i, p) in goldens()["prompts"].as_array().unwrap().iter().enumerate() {
        let input = u32s(&p["input_ids"]);
        let greedy = u32s(&p["greedy_ids"]);
        let steps = p["steps"].as_array().unwrap();
        let agree = steps
            .iter()
            .position(|s| (s["top1_margin"].as_f64().unwrap() as f32) < tolerance::TOP1_MARGIN)
            .unwrap_or(greedy.len())
            .min(greedy.len());
        let ctx = input.len() + greedy.len();
        let mut bufs = SessionBuffers::new(&model.config, ctx, 128).unwrap();
        let parts = bufs.cpu(&model, &exec, Precision::Exact).unwrap();
        let mut backend = parts.backend;
        let mut session =
            Session::new(&model.config, &mut backend, parts.logits, parts.candidates).unwrap();
        let opts = GenerateOptions {
            max_new_tokens: greedy.len(),
            stop_tokens: &[],
            prefill_progress: None,
            adjust_logits: None,
        };
        let mut out = vec![];
        session
            .generate(
                Prompt::tokens(&input),
                &mut Sampler::greedy(),
                &opts,
                &mut |t| {
                    out.push(t);
                    true
                },
            )
            .unwrap();
        assert_eq!(
            out[..agree],
            greedy[..agree],
            "prompt {i}: first {agree} greedy tokens"
        );
        eprintln!(
            "prompt {i}: {agree} of {} greedy tokens pinned, all equal",
            greedy.len()
        );
    }
}

#[test]
fn final_hidden_state_matches_golden_intermediate() {
    let (shape, want) = gemma_tests::load_npy("last_hidden_final_norm.npy");
    let (_, ids) = gemma_tests::load_npy("input_ids.npy");
    let ids: Vec<u32> = ids.iter().map(|&v| v as u32).collect();
    let loaded = model();
    let model = loaded.model();
    let exec = WorkerPool::new(0).unwrap();
    let mut bufs = SessionBuffers::new(&model.config, ids.len(), ids.len()).unwrap();
    let parts = bufs.cpu(&model, &exec, Precision::Exact).unwrap();
    let mut backend = parts.backend;
    let mut session =
        Session::new(&model.config, &mut backend, parts.logits, parts.candidates).unwrap();
    session.forward_chunk(Inputs::Tokens(&ids), &[]).unwrap();
    let d = model.config.d_model;
    let mut hidden = vec![0f32; ids.len() * d];
    session.read_hidden(&mut hidden).unwrap();
    assert_eq!(shape.iter().product::<usize>(), d);
    let last = &hidden[(ids.len() - 1) * d..];
    let worst = last
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-3, "final normed hidden state differs by {worst}");
}
