//! `GET /metrics`: what the server has done, in Prometheus' text format
//! (version 0.0.4). Handlers count requests by route and status (a
//! middleware), the submit path counts the queue, the inference thread
//! counts tokens, the KV cache in use and the latencies.

use super::api::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds, in seconds, of the latency histograms' buckets.
const TTFT_BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const TOKEN_BUCKETS: [f64; 9] = [0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 1.0];

/// A Prometheus histogram: counts per bucket, the sum and the count.
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    /// The sum in microseconds (an integer, so it can be atomic).
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|&b| s <= b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Everything `/metrics` reports; shared by the handlers and the worker.
pub struct Metrics {
    /// Answered requests by (route, status).
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// Jobs handed to the worker and not yet picked up.
    pub queued: AtomicU64,
    /// Generations running now (0 or 1: one inference thread).
    pub active: AtomicU64,
    /// Bytes of KV cache and activations held by cached conversations.
    pub cache_bytes: AtomicU64,
    /// Prompt tokens that went through the model.
    pub prefilled: AtomicU64,
    /// Prompt tokens served from a cached conversation.
    pub cached: AtomicU64,
    /// Tokens generated.
    pub generated: AtomicU64,
    ttft: Histogram,
    per_token: Histogram,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            requests: Mutex::new(BTreeMap::new()),
            queued: AtomicU64::new(0),
            active: AtomicU64::new(0),
            cache_bytes: AtomicU64::new(0),
            prefilled: AtomicU64::new(0),
            cached: AtomicU64::new(0),
            generated: AtomicU64::new(0),
            ttft: Histogram::new(&TTFT_BUCKETS),
            per_token: Histogram::new(&TOKEN_BUCKETS),
        })
    }

    /// From the request's arrival at the worker to its first token.
    pub fn first_token(&self, d: Duration) {
        self.ttft.observe(d);
    }

    /// Between two tokens of one generation.
    pub fn next_token(&self, d: Duration) {
        self.per_token.observe(d);
    }

    fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP gemma_requests_total Requests answered, by route and status.\n\
             # TYPE gemma_requests_total counter"
        );
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        for ((route, status), n) in requests.iter() {
            let route = route.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(
                out,
                "gemma_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        drop(requests);
        let scalars = [
            (
                "gemma_prompt_tokens_prefilled_total",
                "counter",
                "Prompt tokens that went through the model.",
                &self.prefilled,
            ),
            (
                "gemma_prompt_tokens_cached_total",
                "counter",
                "Prompt tokens served from a cached conversation.",
                &self.cached,
            ),
            (
                "gemma_generated_tokens_total",
                "counter",
                "Tokens generated.",
                &self.generated,
            ),
            (
                "gemma_queue_length",
                "gauge",
                "Requests waiting for the model.",
                &self.queued,
            ),
            (
                "gemma_active_sequences",
                "gauge",
                "Generations running now.",
                &self.active,
            ),
            (
                "gemma_kv_cache_bytes",
                "gauge",
                "Bytes held by cached conversations (KV caches and their buffers).",
                &self.cache_bytes,
            ),
        ];
        for (name, kind, help, v) in scalars {
            let v = v.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
        self.ttft.write(
            &mut out,
            "gemma_time_to_first_token_seconds",
            "From a request reaching the model to its first token.",
        );
        self.per_token.write(
            &mut out,
            "gemma_time_per_output_token_seconds",
            "Between consecutive generated tokens.",
        );
        out
    }
}

/// Counts every answered request under its route's pattern (`unmatched`
/// for a path no route takes, so a scan cannot grow the label set).
pub async fn count(State(m): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    *m.requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry((route, status))
        .or_insert(0) += 1;
    resp
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
