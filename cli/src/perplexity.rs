//! `gemma perplexity --file text.txt`: the model's cross-entropy on a text
//! (mean negative log-likelihood of each token given those before it, in
//! nats) and its perplexity, `exp(mean NLL)`.
//!
//! The text is encoded as the goldens do (BOS + ids, no chat template).
//! Texts longer than `--ctx` are scored in windows of `--ctx` tokens that
//! advance by `--stride`; each token is scored once, by the first window
//! whose context reaches it after its first `ctx - stride` tokens (all
//! tokens of the first window are scored), as Hugging Face's strided
//! perplexity does.

use crate::device::{in_session, Failed};
use crate::{ComputeArgs, ModelArgs};
use clap::Args;
use gemma_core::exec::Executor;
use gemma_core::model::Inputs;
use gemma_platform::WorkerPool;
use serde_json::json;
use std::path::PathBuf;

#[derive(Args)]
pub struct PerplexityArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub compute: ComputeArgs,
    /// The text to score (UTF-8)
    #[arg(long)]
    pub file: PathBuf,
    /// Tokens per window [default: the whole text, at most 4096]
    #[arg(long)]
    pub ctx: Option<usize>,
    /// Tokens each window advances [default: half the window]
    #[arg(long)]
    pub stride: Option<usize>,
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

/// Positions whose logits are computed together (the output projection
/// reads its weights once per group).
const LOGIT_ROWS: usize = 8;

/// `-log softmax(logits)[target]`, in f64.
fn nll(logits: &[f32], target: u32) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    max + sum.ln() - logits[target as usize] as f64
}

pub fn perplexity(a: PerplexityArgs) -> Result<(), String> {
    let text = std::fs::read(&a.file).map_err(|e| format!("{}: {e}", a.file.display()))?;
    let text =
        String::from_utf8(text).map_err(|e| format!("{}: not UTF-8 ({e})", a.file.display()))?;
    let mut loaded = a.model.load()?;
    loaded.set_precision(a.compute.precision());
    let model = loaded.model();
    let tok = loaded.tokenizer();
    let mut ids = vec![tok.bos_id()];
    ids.extend(tok.encode_to_vec(&text, true).map_err(|e| e.to_string())?);
    if ids.len() < 2 {
        return Err("the text has no tokens to score".into());
    }
    let n = ids.len();
    let ctx = a
        .ctx
        .unwrap_or(n.min(4096))
        .min(model.config.context_length);
    if ctx < 2 {
        return Err(format!("--ctx {ctx}: a window needs at least 2 tokens"));
    }
    let stride = a.stride.unwrap_or(ctx / 2).max(1);
    if stride > ctx {
        return Err(format!("--stride {stride} exceeds --ctx {ctx}"));
    }
    let batch = (a.compute.batch as usize).min(ctx);
    let exec = WorkerPool::new(a.compute.threads)
        .map_err(|e| format!("cannot start worker threads: {e}"))?;
    let engine = crate::device::engine(&a.compute, &model)?;
    let mut memory = engine
        .memory(&model.config, ctx, batch)
        .map_err(|e| e.to_string())?;
    let vocab = model.config.vocab_size;
    let mut logits = vec![0f32; LOGIT_ROWS * vocab];

    let mut total = 0f64;
    let mut scored = 0usize;
    // Tokens 1.. are predicted; `next` is the first not yet scored.
    let mut next = 1usize;
    let mut begin = 0usize;
    let mut windows = 0usize;
    let precision = loaded.precision();
    // Tokens scored, with the perplexity so far, on a bar once scoring has
    // run a second (on a terminal's stderr only); cleared before the result.
    let bar = crate::progress::Progress::new("perplexity", "tokens");
    bar.report(0, n - 1);
    in_session(&mut memory, &model, &exec, precision, |session| {
        exec.install(|| -> Result<(), Failed> {
            while next < n {
                let end = (begin + ctx).min(n);
                let window = &ids[begin..end];
                session.reset();
                // Window position p predicts ids[begin + p + 1]: positions
                // first..last are scored, each from the pass that holds it.
                let first = next - 1 - begin;
                let last = window.len() - 1;
                let mut at = 0;
                for chunk in window.chunks(batch) {
                    session.forward_chunk(Inputs::Tokens(chunk), &[])?;
                    let (lo, hi) = (first.max(at), last.min(at + chunk.len()));
                    let mut p = lo;
                    while p < hi {
                        let rows = LOGIT_ROWS.min(hi - p);
                        session.logits_rows(p - at..p - at + rows, &mut logits)?;
                        for r in 0..rows {
                            let target = ids[begin + p + r + 1];
                            total += nll(&logits[r * vocab..(r + 1) * vocab], target);
                        }
                        p += rows;
                    }
                    at += chunk.len();
                    // Tokens scored so far, in all windows.
                    let done = scored + hi.saturating_sub(first);
                    if done > 0 {
                        bar.set_message(format!(", perplexity {:.3}", (total / done as f64).exp()));
                        bar.report(done, n - 1);
                    }
                }
                scored += last - first;
                next = end;
                windows += 1;
                if end == n {
                    break;
                }
                begin += stride;
            }
            Ok(())
        })
    })?;
    bar.finish();
    let mean = total / scored as f64;
    if a.json {
        println!(
            "{}",
            json!({
                "tokens": n,
                "scored": scored,
                "windows": windows,
                "ctx": ctx,
                "stride": stride,
                "threads": exec.threads(),
                "mean_nll": mean,
                "perplexity": mean.exp(),
            })
        );
    } else {
        println!(
            "{} tokens, {scored} scored in {windows} window(s) of {ctx} (stride {stride})",
            n
        );
        println!(
            "cross-entropy {mean:.4} nats/token, perplexity {:.3}",
            mean.exp()
        );
    }
    Ok(())
}
