//! Shared helpers for the workspace tests: the real model, the goldens, npy.

use serde_json::Value;
use std::path::PathBuf;
use std::sync::OnceLock;

/// Tolerances of the real-generation acceptance criteria.
pub mod hostile;

pub mod tolerance {
    /// Each golden top-20 logit, teacher-forced.
    pub const TOP20_LOGIT: f32 = 0.005;
    /// Our top-1 must equal the golden one where its margin exceeds this.
    pub const TOP1_MARGIN: f32 = 0.01;
    /// The golden argmax logit versus our maximum at every prompt position.
    pub const PROMPT_ARGMAX: f32 = 0.01;
}

pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// The real model: `$GEMMA_MODEL`, else the cached default, fetched if
/// missing. Tests that need it fail loudly rather than skip when it cannot
/// be had.
pub fn real_model_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os("GEMMA_MODEL") {
            return PathBuf::from(p);
        }
        gemma_platform::fetch::ensure_default_model(&mut std::io::stderr()).unwrap_or_else(|e| {
            panic!("the real model is needed for this test and could not be fetched: {e}")
        })
    })
    .clone()
}

/// The real model, loaded once per test binary.
pub fn real_model() -> &'static gemma_platform::LoadedModel {
    static M: OnceLock<gemma_platform::LoadedModel> = OnceLock::new();
    M.get_or_init(|| gemma_platform::LoadedModel::open(&real_model_path()).unwrap())
}

/// The real model's tokens of `text` with control tokens parsed, as Gemma's
/// chat template is tokenized.
pub fn encode_template(text: &str) -> Vec<u32> {
    real_model().tokenizer().encode_to_vec(text, true).unwrap()
}

/// A user turn in Gemma's chat template, and the model turn it opens.
pub fn user_turn(text: &str) -> String {
    format!("<start_of_turn>user\n{text}<end_of_turn>\n<start_of_turn>model\n")
}

pub fn goldens() -> &'static Value {
    static G: OnceLock<Value> = OnceLock::new();
    G.get_or_init(|| {
        let path = data_dir().join("gemma3-270m/goldens.json");
        let text = std::fs::read_to_string(&path).expect("goldens.json");
        serde_json::from_str(&text).expect("goldens.json parses")
    })
}

pub fn u32s(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("int") as u32)
        .collect()
}

pub fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

/// A little-endian float32 or int32 `.npy` array: (shape, values as f32).
pub fn load_npy(name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(data_dir().join("gemma3-270m/capital").join(name)).expect("npy file");
    assert_eq!(&bytes[..6], b"\x93NUMPY", "npy magic");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).expect("npy header");
    let shape_str = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .expect("shape");
    let shape: Vec<usize> = shape_str
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let data = &bytes[10 + header_len..];
    let values = if header.contains("<i4") {
        data.chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f32)
            .collect()
    } else {
        assert!(header.contains("<f4"), "only f4/i4 npy files are used");
        data.chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    (shape, values)
}

/// Indices of the `k` largest values, largest first, ties to the lower index.
pub fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// How close teacher-forced logits must be to the goldens.
#[derive(Clone, Copy, Debug)]
pub struct Tolerances {
    /// Each golden top-20 logit.
    pub top20: f32,
    /// Our top-1 must equal the golden one where its margin exceeds this.
    pub top1_margin: f32,
    /// The golden argmax logit versus our maximum at every prompt position.
    pub prompt_argmax: f32,
}

impl Tolerances {
    /// The GGUF model (and an F32 `.sbs` converted from it).
    pub const GGUF: Tolerances = Tolerances {
        top20: tolerance::TOP20_LOGIT,
        top1_margin: tolerance::TOP1_MARGIN,
        prompt_argmax: tolerance::PROMPT_ARGMAX,
    };
}

/// Teacher-forces golden prompt `i` through `loaded`: the input ids in
/// batched passes (the prefill kernels, logits at every position), then the
/// golden greedy ids one decode step at a time (the single-token kernels).
/// Checks every step's top-20 logits and every prompt position's argmax;
/// returns the worst top-20 difference.
pub fn teacher_forced(loaded: &gemma_platform::LoadedModel, i: usize, tol: &Tolerances) -> f32 {
    teacher_forced_stats(loaded, i, tol).worst_top20
}

/// What [`teacher_forced_stats`] measured over one golden prompt.
#[derive(Clone, Copy, Debug)]
pub struct Forced {
    /// Largest difference from a golden top-20 logit.
    pub worst_top20: f32,
    /// Sum over the steps of KL(golden || ours), both distributions taken
    /// over the step's 20 golden ids (softmax of those logits only).
    pub kl_top20_sum: f64,
    /// Steps compared.
    pub steps: usize,
}

/// KL(p || q) of the softmaxes of two logit vectors over the same ids.
pub fn kl_of_logits(p_logits: &[f32], q_logits: &[f32]) -> f64 {
    let log_softmax = |l: &[f32]| -> Vec<f64> {
        let max = l.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = max + l.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
        l.iter().map(|&v| v as f64 - lse).collect()
    };
    let (lp, lq) = (log_softmax(p_logits), log_softmax(q_logits));
    lp.iter().zip(&lq).map(|(a, b)| a.exp() * (a - b)).sum()
}

/// [`teacher_forced`], also measuring the KL divergence at every step.
pub fn teacher_forced_stats(
    loaded: &gemma_platform::LoadedModel,
    i: usize,
    tol: &Tolerances,
) -> Forced {
    use gemma_platform::{SessionBuffers, WorkerPool};
    let model = loaded.model();
    let total = golden_len(i);
    let exec = WorkerPool::new(0).unwrap();
    let batch = 64;
    let mut bufs = SessionBuffers::new(&model.config, total, batch).unwrap();
    let precision = loaded.precision();
    let parts = bufs.cpu(&model, &exec, precision).unwrap();
    let mut backend = parts.backend;
    let label = format!("{precision:?}");
    teacher_forced_on(&model, &mut backend, &label, i, tol)
}

/// Positions golden prompt `i` teacher-forces: its input and greedy ids.
pub fn golden_len(i: usize) -> usize {
    let p = &goldens()["prompts"][i];
    u32s(&p["input_ids"]).len() + u32s(&p["greedy_ids"]).len()
}

/// [`teacher_forced_stats`] on a given backend (whose context holds at
/// least [`golden_len`] positions), e.g. a GPU one; `label` names it in the
/// summary line.
pub fn teacher_forced_on(
    model: &gemma_core::model::Model,
    backend: &mut dyn gemma_core::model::Backend,
    label: &str,
    i: usize,
    tol: &Tolerances,
) -> Forced {
    use gemma_core::generate::Session;
    let p = &goldens()["prompts"][i];
    let input = u32s(&p["input_ids"]);
    let greedy = u32s(&p["greedy_ids"]);
    let steps = p["steps"].as_array().unwrap();
    let prompt_argmax = u32s(&p["prompt_argmax"]);
    assert_eq!(steps.len(), greedy.len() + 1);
    let total = input.len() + greedy.len();
    let vocab = model.config.vocab_size;
    let (mut row, mut candidates) = (
        vec![0f32; vocab],
        vec![gemma_core::sampling::Candidate::default(); vocab],
    );
    let mut session = Session::new(&model.config, backend, &mut row, &mut candidates).unwrap();
    let batch = session.max_batch();
    let last_prompt = input.len() - 1;
    let mut worst = 0f32;
    let mut kl_sum = 0f64;
    let mut kl_steps = 0usize;
    let mut check = |pos: usize, row: &[f32]| {
        let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        if pos < input.len() {
            let want = prompt_argmax[pos] as usize;
            assert!(
                max - row[want] <= tol.prompt_argmax,
                "prompt {i} pos {pos}: golden argmax {want} logit {} vs our max {max}",
                row[want]
            );
        }
        if pos >= last_prompt {
            let k = pos - last_prompt;
            let step = &steps[k];
            let ids = u32s(&step["top_ids"]);
            let want = f32s(&step["top_logits"]);
            let ours: Vec<f32> = ids.iter().map(|&id| row[id as usize]).collect();
            kl_sum += kl_of_logits(&want, &ours);
            kl_steps += 1;
            for (&id, &w) in ids.iter().zip(&want) {
                let d = (row[id as usize] - w).abs();
                worst = worst.max(d);
                assert!(
                    d <= tol.top20,
                    "prompt {i} step {k}: token {id} logit {} vs golden {w}",
                    row[id as usize]
                );
            }
            let margin = step["top1_margin"].as_f64().unwrap() as f32;
            if margin > tol.top1_margin {
                assert_eq!(
                    top_k(row, 1)[0],
                    ids[0] as usize,
                    "prompt {i} step {k} top-1"
                );
            }
        }
    };
    let mut logits = vec![0f32; batch * vocab];
    let mut pos = 0;
    for chunk in input.chunks(batch) {
        session.forward_logits(chunk, &mut logits).unwrap();
        for row in logits.chunks_exact(vocab).take(chunk.len()) {
            check(pos, row);
            pos += 1;
        }
    }
    for &t in &greedy {
        let row = session.step(t).unwrap().to_vec();
        check(pos, &row);
        pos += 1;
    }
    assert_eq!(pos, total);
    eprintln!(
        "prompt {i} ({label}): {total} positions, worst top-20 logit difference {worst:.2e}, \
         mean top-20 KL {:.3e}",
        kl_sum / kl_steps.max(1) as f64
    );
    Forced {
        worst_top20: worst,
        kl_top20_sum: kl_sum,
        steps: kl_steps,
    }
}

/// A directory under `base` (a test's `CARGO_TARGET_TMPDIR`), named after
/// the test and the process, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(base: &str, name: &str) -> Self {
        let dir = PathBuf::from(base).join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Checks what `gemma logits --ids <golden prompt i's input> --top 20`
/// printed (one JSON line a position) against the goldens: the last
/// position's top-20 ids and logits (within [`tolerance::TOP20_LOGIT`])
/// and every position's argmax.
pub fn assert_logits_lines_match_golden(out: &str, i: usize) {
    let p = &goldens()["prompts"][i];
    let ids = u32s(&p["input_ids"]);
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), ids.len());
    let last = &lines[ids.len() - 1];
    assert_eq!(last["pos"].as_u64().unwrap() as usize, ids.len() - 1);
    let step = &p["steps"][0];
    assert_eq!(u32s(&last["top_ids"]), u32s(&step["top_ids"]));
    for (got, want) in f32s(&last["top_logits"])
        .iter()
        .zip(f32s(&step["top_logits"]))
    {
        assert!(
            (got - want).abs() <= tolerance::TOP20_LOGIT,
            "{got} vs {want}"
        );
    }
    let argmax = u32s(&p["prompt_argmax"]);
    for (pos, line) in lines.iter().enumerate() {
        assert_eq!(u32s(&line["top_ids"])[0], argmax[pos], "argmax at {pos}");
    }
}
