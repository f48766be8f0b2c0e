//! One sampling call over a 262,144-entry logit row, per mode: the engine's
//! `Sampler::sample` against `simple_sample` below, a plain implementation
//! of the same pipeline (prefilter, `select_nth_unstable_by`/sort on what is
//! left, softmax, cuts, draw) that allocates nothing either. Run:
//! `cargo bench -p gemma-benches --bench sampling`.
//!
//! The rows are real: logits of Gemma 3 270M (the cached default model,
//! `$GEMMA_MODEL` to use another) after a few prompts, computed once in the
//! setup. Without the model, synthetic rows of a similar shape stand in (a
//! head of likely logits over a long Gaussian tail); the setup says which
//! on stderr, with how peaked each row is. A decode step takes about 16 ms on the 2-core machine
//! these figures were first taken on, so a path is worth its code only
//! where it saves more than about 0.16 ms (1%) per call.

use gemma_core::sampling::{
    argmax, exp_nonpositive, Candidate, Sampler, SamplingParams, PRUNE_RATIO,
};
use std::sync::OnceLock;

fn main() {
    // The rows first (so their description does not land inside the
    // table), and a check that both implementations draw the same tokens
    // from the same random numbers (they may differ only where rounding
    // moves a cut, which these rows do not hit).
    for (i, row) in rows().iter().enumerate() {
        describe(i, row);
        for mode in MODES {
            let p = mode.params();
            let mut sampler = Sampler::new(p).unwrap();
            let mut rng = sampler.rng().clone();
            let mut work = vec![Candidate::ZERO; VOCAB];
            let same = (0..50)
                .filter(|_| {
                    let a = sampler.sample(row, &mut work);
                    a == simple_sample(&p, rng.next_f64(), row, &mut work)
                })
                .count();
            if same != 50 {
                eprintln!(
                    "row {i}, {mode}: the implementations differ in {} of 50 draws",
                    50 - same
                );
            }
        }
    }
    divan::main();
}

/// The modes compared: temperature only, top-k 64, top-p 0.95, Gemma's
/// defaults (1.0 / 64 / 0.95), min-p 0.05.
#[derive(Clone, Copy, Debug)]
enum Mode {
    Temperature,
    TopK64,
    TopP95,
    GemmaDefault,
    MinP05,
}

impl Mode {
    fn params(self) -> SamplingParams {
        let base = SamplingParams::with_temperature(1.0, 7);
        match self {
            Mode::Temperature => base,
            Mode::TopK64 => SamplingParams { top_k: 64, ..base },
            Mode::TopP95 => SamplingParams {
                top_p: 0.95,
                ..base
            },
            Mode::GemmaDefault => SamplingParams::gemma_default(7),
            Mode::MinP05 => SamplingParams {
                min_p: 0.05,
                ..base
            },
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Mode::Temperature => "temperature",
            Mode::TopK64 => "top_k_64",
            Mode::TopP95 => "top_p_0.95",
            Mode::GemmaDefault => "gemma_default",
            Mode::MinP05 => "min_p_0.05",
        };
        f.write_str(s)
    }
}

const MODES: [Mode; 5] = [
    Mode::Temperature,
    Mode::TopK64,
    Mode::TopP95,
    Mode::GemmaDefault,
    Mode::MinP05,
];

const VOCAB: usize = 262_144;

/// Prompts whose next-token rows are benchmarked: a confident continuation,
/// an open one, and a chat turn.
const PROMPTS: [&str; 3] = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea, there lived",
    "<start_of_turn>user\nWrite a short poem about autumn.<end_of_turn>\n<start_of_turn>model\n",
];

/// The benchmarked rows, computed once.
fn rows() -> &'static [Vec<f32>] {
    static ROWS: OnceLock<Vec<Vec<f32>>> = OnceLock::new();
    ROWS.get_or_init(|| {
        model_rows().unwrap_or_else(|why| {
            eprintln!("sampling bench: synthetic logit rows ({why})");
            (0..PROMPTS.len() as u64).map(synthetic_row).collect()
        })
    })
}

/// Logit rows of the real model after each of [`PROMPTS`].
fn model_rows() -> Result<Vec<Vec<f32>>, String> {
    use gemma_core::exec::Serial;
    use gemma_core::generate::Session;
    use gemma_core::kernels::Precision;
    use gemma_core::model::Prompt;
    use gemma_platform::{LoadedModel, SessionBuffers};

    let path = std::env::var_os("GEMMA_MODEL")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(gemma_platform::fetch::default_model_path);
    if !path.exists() {
        return Err(format!("no model at {}", path.display()));
    }
    let loaded = LoadedModel::open(&path).map_err(|e| e.to_string())?;
    let model = loaded.model();
    let tok = loaded.tokenizer();
    if model.config.vocab_size != VOCAB {
        return Err(format!("vocabulary of {}", model.config.vocab_size));
    }
    let mut out = Vec::new();
    for text in PROMPTS {
        let mut ids = vec![tok.bos_id()];
        ids.extend(tok.encode_to_vec(text, true).map_err(|e| e.to_string())?);
        let mut bufs = SessionBuffers::new(&model.config, ids.len() + 1, ids.len())
            .ok_or("cannot size the session")?;
        let exec = Serial;
        let parts = bufs
            .cpu(&model, &exec, Precision::Exact)
            .map_err(|e| e.to_string())?;
        let mut backend = parts.backend;
        let mut session = Session::new(&model.config, &mut backend, parts.logits, parts.candidates)
            .map_err(|e| e.to_string())?;
        let row = session
            .prefill(Prompt::tokens(&ids))
            .map_err(|e| e.to_string())?;
        out.push(row.to_vec());
    }
    Ok(out)
}

/// Rows shaped like the real ones (see `describe`'s figures for those): a
/// Gaussian bulk (sd 2.5 around 0) under a head of likely tokens, a few
/// hundred over [12, 19] (seed 0), three over [20, 24] (seed 1), or one at
/// 16 with half the mass (seed 2).
fn synthetic_row(seed: u64) -> Vec<f32> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ seed;
    let mut unit = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let mut row: Vec<f32> = (0..VOCAB)
        .map(|_| {
            // Box-Muller.
            let (a, b) = (unit(), unit());
            (2.5 * (-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()) as f32
        })
        .collect();
    let (head, lo, hi) = [(300, 12.0, 19.0), (3, 20.0, 24.0), (1, 16.0, 16.0)][seed as usize % 3];
    for _ in 0..head {
        let id = (unit() * VOCAB as f64) as usize;
        row[id] = (lo + (hi - lo) * unit()) as f32;
    }
    row
}

/// Prints how many logits lie near the top: what the prefilters keep.
fn describe(i: usize, row: &[f32]) {
    let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let within = |d: f32| row.iter().filter(|&&l| l >= max - d).count();
    let mut p: Vec<f64> = row.iter().map(|&l| ((l - max) as f64).exp()).collect();
    let total: f64 = p.iter().sum();
    p.sort_by(|a, b| b.partial_cmp(a).unwrap());
    let mut acc = 0.0;
    let nucleus = p
        .iter()
        .position(|&w| {
            acc += w;
            acc >= 0.95 * total
        })
        .map_or(p.len(), |i| i + 1);
    eprintln!(
        "row {i}: max {max:.2}, top prob {:.3}, nucleus(0.95) {nucleus}, within 3.0 / 20.7 / 87 nats: {} / {} / {}",
        p[0] / total,
        within(3.0),
        within(20.7),
        within(87.0)
    );
}

#[divan::bench(args = MODES, consts = [0, 1, 2], sample_count = 30)]
fn current<const ROW: usize>(bencher: divan::Bencher, mode: Mode) {
    let logits = &rows()[ROW];
    let mut sampler = Sampler::new(mode.params()).unwrap();
    let mut work = vec![Candidate::ZERO; VOCAB];
    bencher.bench_local(|| sampler.sample(divan::black_box(logits), &mut work));
}

#[divan::bench(args = MODES, consts = [0, 1, 2], sample_count = 30)]
fn simple<const ROW: usize>(bencher: divan::Bencher, mode: Mode) {
    let logits = &rows()[ROW];
    let p = mode.params();
    let mut sampler = Sampler::new(p).unwrap();
    let mut work = vec![Candidate::ZERO; VOCAB];
    // Same draw as `Sampler::sample`: one `next_f64` per call.
    bencher.bench_local(|| {
        let u = sampler.rng_mut().next_f64();
        simple_sample(&p, u, divan::black_box(logits), &mut work)
    });
}

// ---------------------------------------------------------------------------
// The plain implementation: same documented semantics as `Sampler::sample`
// (non-greedy, `work.len() >= logits.len()`), none of its clever paths.
// ---------------------------------------------------------------------------

/// Rank order: higher value first, ties to the lower id.
fn by_rank(a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    b.value.total_cmp(&a.value).then(a.id.cmp(&b.id))
}

/// One non-greedy draw with uniform `u` in `[0, 1)`.
pub fn simple_sample(p: &SamplingParams, u: f64, logits: &[f32], work: &mut [Candidate]) -> u32 {
    // 1. Candidates: not NaN, not -inf (+inf as f32::MAX, -0.0 as +0.0).
    let max = max_ignoring_nan(logits);
    if max == f32::NEG_INFINITY {
        return argmax(logits);
    }
    let maxc = max.min(f32::MAX);
    let t = p.temperature;
    let weight = |v: f32| exp_nonpositive((v - maxc) / t);
    // Prefilter: drop what can never be drawn (weight 0: scaled distance
    // below -87) and what is pruned (top-p: weight < PRUNE_RATIO; min-p
    // alone: weight < min_p), with a little slack so the exact test on the
    // weight below has the last word.
    let ratio = if p.top_p < 1.0 { PRUNE_RATIO } else { p.min_p };
    let floor = if ratio > 0.0 {
        (ratio.ln() - 1e-3).max(-87.0)
    } else {
        -87.0
    };
    let mut n = 0;
    for (i, &l) in logits.iter().enumerate() {
        let v = l.min(f32::MAX) + 0.0;
        work[n] = Candidate {
            id: i as u32,
            value: v,
        };
        n += ((l > f32::NEG_INFINITY) & ((v - maxc) / t >= floor)) as usize;
    }
    // 2. Top-k on the logits.
    let mut ranked = false;
    if p.top_k > 0 && p.top_k < n {
        work[..n].select_nth_unstable_by(p.top_k - 1, by_rank);
        n = p.top_k;
        ranked = true;
    }
    // 3. Temperature: unnormalized softmax weights (the top one is 1.0),
    // then the exact pruning test.
    let mut m = 0;
    for i in 0..n {
        let c = work[i];
        let w = weight(c.value);
        work[m] = Candidate { id: c.id, value: w };
        m += (w >= ratio && w > 0.0) as usize;
    }
    let mut n = m;
    // 4. Top-p: the shortest rank-order prefix reaching top_p of the mass.
    if p.top_p < 1.0 {
        let total: f64 = sum_in_id_order(&mut work[..n], ranked);
        n = top_p_prefix(&mut work[..n], p.top_p as f64 * total);
        ranked = true;
    }
    // 5. Min-p (the top weight is 1.0).
    if p.min_p > 0.0 {
        let mut m = 0;
        for i in 0..n {
            let c = work[i];
            work[m] = c;
            m += (c.value >= p.min_p) as usize;
        }
        n = m;
    }
    // 6. Renormalize and draw, in id order.
    let kept = &mut work[..n];
    if ranked {
        kept.sort_unstable_by_key(|c| c.id);
    }
    let total: f64 = kept.iter().map(|c| c.value as f64).sum();
    let target = u * total;
    let mut acc = 0.0;
    for c in kept.iter() {
        acc += c.value as f64;
        if acc > target {
            return c.id;
        }
    }
    kept.last().map_or_else(|| argmax(logits), |c| c.id)
}

/// Sum of the weights in token-id order (sorting by id first if needed).
fn sum_in_id_order(cands: &mut [Candidate], ranked: bool) -> f64 {
    if ranked {
        cands.sort_unstable_by_key(|c| c.id);
    }
    cands.iter().map(|c| c.value as f64).sum()
}

/// Orders `cands` so that its shortest rank-order prefix whose weight
/// reaches `target` comes first, sorted by rank, and returns its length
/// (all of them if the whole falls short). Selects 64, then 4 times more
/// at each round, so a small nucleus costs one selection.
fn top_p_prefix(cands: &mut [Candidate], target: f64) -> usize {
    let mut done = 0;
    let mut acc = 0.0f64;
    let mut step = 64;
    while done < cands.len() {
        let rest = &mut cands[done..];
        let m = step.min(rest.len());
        if m < rest.len() {
            rest.select_nth_unstable_by(m - 1, by_rank);
        }
        rest[..m].sort_unstable_by(by_rank);
        for (i, c) in rest[..m].iter().enumerate() {
            acc += c.value as f64;
            if acc >= target {
                return done + i + 1;
            }
        }
        done += m;
        step *= 4;
    }
    cands.len()
}

/// The largest non-NaN logit, over eight lanes so that it vectorizes.
fn max_ignoring_nan(xs: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for (m, &x) in lanes.iter_mut().zip(c) {
            *m = m.max(x);
        }
    }
    let rest = chunks.remainder().iter();
    rest.chain(&lanes).fold(f32::NEG_INFINITY, |m, &x| m.max(x))
}
