//! `gemma bench`: prefill and decode speed, time to first token, load time
//! and peak memory of one model on this machine, as a table or one JSON
//! object (`--json`) for scripts such as `scripts/bench-vs-llama.sh`.
//!
//! The prompt is a fixed English text cycled to the requested length, so
//! runs are comparable; decoding is greedy. Timings are best-of `--runs`.

use crate::device::{in_session, Failed};
use crate::{ComputeArgs, ModelArgs};
use clap::Args;
use gemma_core::exec::Executor;
use gemma_core::model::Prompt;
use gemma_core::sampling::argmax;
use gemma_platform::WorkerPool;
use serde_json::json;
use std::time::Instant;

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub compute: ComputeArgs,
    /// Prompt tokens of the long prefill (the short one is 64)
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(2..=32768))]
    pub prompt_tokens: u32,
    /// Tokens to decode after the long prefill
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=32768))]
    pub decode_tokens: u32,
    /// Repetitions; the best of each measurement is reported
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub runs: u32,
    /// Print one JSON object instead of a table
    #[arg(long)]
    pub json: bool,
}

const TEXT: &str = "The history of the city is long and complex. Its first settlers came \
    from the coast, bringing with them new crops, new tools and a new language. Over the \
    centuries the town grew into a market, then a port, and finally a capital whose \
    libraries and universities drew scholars from every part of the continent. ";

/// The process's peak resident set (VmHWM), where the OS reports it.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub fn bench(a: BenchArgs) -> Result<(), String> {
    let started = Instant::now();
    let mut loaded = a.model.load()?;
    loaded.set_precision(a.compute.precision());
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let model = loaded.model();
    let tok = loaded.tokenizer();
    let (n_prompt, n_decode) = (a.prompt_tokens as usize, a.decode_tokens as usize);
    let short = 64.min(n_prompt);
    let context = n_prompt + n_decode;
    if context > model.config.context_length {
        return Err(format!(
            "{n_prompt} + {n_decode} tokens exceed the model's context of {}",
            model.config.context_length
        ));
    }
    let mut prompt = vec![tok.bos_id()];
    let text_ids = tok.encode_to_vec(TEXT, false).map_err(|e| e.to_string())?;
    while prompt.len() < n_prompt {
        prompt.extend(text_ids.iter().take(n_prompt - prompt.len()));
    }
    let batch = (a.compute.batch as usize).min(context);
    let exec = WorkerPool::new(a.compute.threads)
        .map_err(|e| format!("cannot start worker threads: {e}"))?;
    let engine = crate::device::engine(&a.compute, &model)?;
    let mut memory = engine
        .memory(&model.config, context, batch)
        .map_err(|e| e.to_string())?;
    let session_bytes = memory.bytes();
    let threads = exec.threads();

    let (mut short_s, mut long_s, mut ttft_s, mut decode_s) =
        (f64::MAX, f64::MAX, f64::MAX, f64::MAX);
    let precision = loaded.precision();
    in_session(&mut memory, &model, &exec, precision, |session| {
        exec.install(|| -> Result<(), Failed> {
            // Warm-up: touches every weight page once.
            session.reset();
            session.prefill(Prompt::tokens(&prompt[..8]))?;
            for _ in 0..a.runs {
                session.reset();
                let t = Instant::now();
                session.prefill(Prompt::tokens(&prompt[..short]))?;
                short_s = short_s.min(t.elapsed().as_secs_f64());

                session.reset();
                let t = Instant::now();
                let mut next = argmax(session.prefill(Prompt::tokens(&prompt))?);
                let prefilled = t.elapsed().as_secs_f64();
                long_s = long_s.min(prefilled);
                ttft_s = ttft_s.min(prefilled);

                let t = Instant::now();
                for _ in 0..n_decode {
                    next = argmax(session.step(next)?);
                }
                decode_s = decode_s.min(t.elapsed().as_secs_f64());
            }
            Ok(())
        })
    })?;
    let peak = peak_rss_bytes();
    let report = json!({
        "model": loaded.path().display().to_string(),
        "device": engine.to_string(),
        "threads": threads,
        "precision": a.compute.precision,
        "runs": a.runs,
        "prefill_tokens": n_prompt,
        "prefill_tok_s": n_prompt as f64 / long_s,
        "prefill_64_tokens": short,
        "prefill_64_tok_s": short as f64 / short_s,
        "decode_tokens": n_decode,
        "decode_tok_s": n_decode as f64 / decode_s,
        "ttft_ms": ttft_s * 1e3,
        "load_ms": load_ms,
        "peak_rss_bytes": peak,
        "file_bytes": loaded.file_len(),
        "session_bytes": session_bytes,
    });
    if a.json {
        println!("{report}");
    } else {
        println!("model     {}", loaded.path().display());
        println!("device    {engine}");
        println!(
            "threads   {threads}, precision {}, best of {}",
            a.compute.precision, a.runs
        );
        println!(
            "prefill   {short:>5} tokens  {:>8.1} tok/s",
            short as f64 / short_s
        );
        println!(
            "prefill   {n_prompt:>5} tokens  {:>8.1} tok/s",
            n_prompt as f64 / long_s
        );
        println!(
            "decode    {n_decode:>5} tokens  {:>8.1} tok/s",
            n_decode as f64 / decode_s
        );
        println!(
            "ttft      {:>8.1} ms (prefill of {n_prompt} tokens)",
            ttft_s * 1e3
        );
        println!("load      {load_ms:>8.1} ms");
        match peak {
            Some(p) => println!("peak RSS  {:>8.1} MB", p as f64 / 1e6),
            None => println!("peak RSS  unavailable on this OS"),
        }
    }
    Ok(())
}
