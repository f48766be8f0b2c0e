//! The inference thread: runs queued requests one at a time.
//!
//! Handlers validate and tokenize a request, then hand it over as a [`Job`]
//! through a bounded queue; a full queue is the handler's 503. Each job
//! carries its own channel back, so outputs never mix: the worker sends the
//! text as it is decoded (stop sequences already cut) and ends with one
//! [`Event::Done`] or [`Event::Failed`]. A closed channel (the client went
//! away) stops generation at the next token.

use super::metrics::Metrics;
use super::pool::Pool;
use super::stop::StopMatcher;
use gemma_core::generate::StopReason;
use gemma_core::sampling::{Sampler, SamplingParams};
use gemma_platform::{Generator, LoadedModel, Streamed, WorkerPool};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;

pub struct Job {
    /// What to do; a generation's prompt is [`Job::prompt`].
    pub kind: JobKind,
    /// BOS included; shorter than the context (checked by the handler).
    pub prompt: Vec<u32>,
    pub params: SamplingParams,
    pub max_tokens: usize,
    pub stops: Vec<String>,
    pub penalties: gemma_platform::Penalties,
    pub events: UnboundedSender<Event>,
}

pub enum JobKind {
    Generate,
    /// Embed each of these (BOS included; each fits the context), in
    /// order: one [`Event::Embedding`] each, then [`Event::Done`].
    Embed(Vec<Vec<u32>>),
}

pub enum Event {
    Text(String),
    Embedding(Vec<f32>),
    Done(Summary),
    Failed(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// A stop token or stop sequence (or the client left).
    Stop,
    /// `max_tokens` or the context ran out.
    Length,
}

#[derive(Clone, Copy, Debug)]
pub struct Summary {
    pub finish: Finish,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Prompt tokens served from a cached conversation.
    pub cached_tokens: usize,
    /// Prompt tokens that went through the model.
    pub prefilled: usize,
}

/// What the worker reports to `/metrics`.
pub struct Meter {
    pub metrics: Arc<Metrics>,
    /// Bytes one pooled conversation holds.
    pub per_conversation: usize,
}

/// Starts the worker with room for `queue` waiting jobs. It runs until every
/// sender is dropped; once `shutdown` is set it ends the job in progress at
/// its next token and refuses the ones still queued.
pub fn spawn(
    loaded: &'static LoadedModel,
    exec: WorkerPool,
    pool: Pool,
    meter: Meter,
    queue: usize,
    shutdown: Arc<AtomicBool>,
) -> std::io::Result<(SyncSender<Job>, std::thread::JoinHandle<()>)> {
    let (tx, rx) = sync_channel(queue);
    let handle = std::thread::Builder::new()
        .name("gemma-inference".into())
        .spawn(move || work(loaded, exec, pool, &meter, rx, &shutdown))?;
    Ok((tx, handle))
}

fn work(
    loaded: &'static LoadedModel,
    exec: WorkerPool,
    mut pool: Pool,
    meter: &Meter,
    jobs: Receiver<Job>,
    shutdown: &AtomicBool,
) {
    let m = &meter.metrics;
    for (n, job) in jobs.iter().enumerate() {
        m.queued.fetch_sub(1, Ordering::Relaxed);
        if job.events.is_closed() {
            continue;
        }
        if shutdown.load(Ordering::Relaxed) {
            let _ = job
                .events
                .send(Event::Failed("the server is shutting down".into()));
            continue;
        }
        let started = Instant::now();
        m.active.fetch_add(1, Ordering::Relaxed);
        let result = run(loaded, &exec, &mut pool, &job, m, shutdown);
        m.active.fetch_sub(1, Ordering::Relaxed);
        m.cache_bytes.store(
            (pool.len() * meter.per_conversation) as u64,
            Ordering::Relaxed,
        );
        match result {
            Ok(s) => {
                m.prefilled.fetch_add(s.prefilled as u64, Ordering::Relaxed);
                m.cached
                    .fetch_add(s.cached_tokens as u64, Ordering::Relaxed);
                m.generated
                    .fetch_add(s.completion_tokens as u64, Ordering::Relaxed);
                eprintln!(
                    "gemma: request {n}: {} prompt tokens ({} cached), {} generated, {:?}, {} ms",
                    s.prompt_tokens,
                    s.cached_tokens,
                    s.completion_tokens,
                    s.finish,
                    started.elapsed().as_millis()
                );
                let _ = job.events.send(Event::Done(s));
            }
            Err(e) => {
                eprintln!("gemma: request {n} failed: {e}");
                let _ = job.events.send(Event::Failed(e));
            }
        }
    }
}

/// Embeds each input of an embedding job on a pooled conversation's
/// memory (whose cache it then forgets).
fn embed(
    loaded: &LoadedModel,
    exec: &WorkerPool,
    pool: &mut Pool,
    inputs: &[Vec<u32>],
    events: &UnboundedSender<Event>,
    shutdown: &AtomicBool,
) -> Result<Summary, String> {
    let model = loaded.model();
    let mut tokens = 0;
    for input in inputs {
        if shutdown.load(Ordering::Relaxed) {
            return Err("the server is shutting down".into());
        }
        if events.is_closed() {
            break;
        }
        let conv = pool
            .get(&model, &[])
            .map_err(|e| format!("cannot allocate a conversation: {e}"))?;
        let e = conv
            .embed(&model, loaded.precision(), exec, input)
            .map_err(|e| conv.explain(&e))?;
        tokens += input.len();
        if events.send(Event::Embedding(e)).is_err() {
            break;
        }
    }
    Ok(Summary {
        finish: Finish::Stop,
        prompt_tokens: tokens,
        completion_tokens: 0,
        cached_tokens: 0,
        prefilled: tokens,
    })
}

fn run(
    loaded: &LoadedModel,
    exec: &WorkerPool,
    pool: &mut Pool,
    job: &Job,
    metrics: &Metrics,
    shutdown: &AtomicBool,
) -> Result<Summary, String> {
    if let JobKind::Embed(inputs) = &job.kind {
        return embed(loaded, exec, pool, inputs, &job.events, shutdown);
    }
    let mut last = Instant::now();
    let mut first = true;
    let mut generator = Generator::new(loaded, exec);
    generator.penalties = job.penalties.clone();
    let conv = pool
        .get(&generator.model, &job.prompt)
        .map_err(|e| format!("cannot allocate a conversation: {e}"))?;
    let mut sampler = Sampler::new(job.params).map_err(|e| e.to_string())?;
    let mut stops = StopMatcher::new(job.stops.clone());
    let events = &job.events;
    let emit = |text: String| text.is_empty() || events.send(Event::Text(text)).is_ok();
    let stats = generator
        .turn(
            conv,
            &job.prompt,
            &mut sampler,
            job.max_tokens,
            &mut |s| match s {
                Streamed::Token { text, .. } => {
                    let now = Instant::now();
                    if first {
                        metrics.first_token(now - last);
                        first = false;
                    } else {
                        metrics.next_token(now - last);
                    }
                    last = now;
                    let text = stops.push(text);
                    emit(text) && !stops.stopped() && !shutdown.load(Ordering::Relaxed)
                }
                Streamed::End { text } => {
                    let rest = stops.push(text);
                    emit(rest + &stops.finish())
                }
            },
        )
        .map_err(|e| conv.explain(&e))?
        .stats;
    if shutdown.load(Ordering::Relaxed) && stats.outcome.stop == StopReason::Callback {
        return Err("the server is shutting down".into());
    }
    let finish = match stats.outcome.stop {
        StopReason::MaxTokens | StopReason::ContextFull if !stops.stopped() => Finish::Length,
        _ => Finish::Stop,
    };
    Ok(Summary {
        finish,
        prompt_tokens: job.prompt.len(),
        completion_tokens: stats.outcome.generated,
        cached_tokens: stats.reused,
        prefilled: stats.prefilled,
    })
}
