//! `gemma serve`: the model behind an HTTP API.
//!
//! One tokio thread answers HTTP; one inference thread (see [`worker`])
//! runs requests one at a time on the rayon pool, taking them from a bounded
//! queue. Conversations keep their KV caches between requests ([`pool`]),
//! so a chat that resends its history only prefills the new turn.

mod api;
mod auth;
mod embeddings;
mod google;
mod metrics;
mod openai;
mod pool;
mod stop;
mod worker;

use crate::{ComputeArgs, ModelArgs};
use api::AppState;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use clap::Args;
use gemma_core::generate::SessionSizes;
use gemma_platform::{LoadedModel, WorkerPool};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

type Result<T> = std::result::Result<T, String>;

/// `gemma serve`'s options.
#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub compute: ComputeArgs,
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0 = any free one); the bound address is printed on stdout
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Tokens of context per conversation [default: the model's, at most 8192]
    #[arg(long)]
    pub context: Option<usize>,
    /// MiB of memory for cached conversations (KV caches); at least one is kept
    #[arg(long, default_value_t = 512)]
    pub cache_mb: usize,
    /// Requests that may wait for the model; more are refused with 503
    #[arg(long, default_value_t = 16)]
    pub queue: usize,
    /// Largest request body in bytes; larger ones are refused with 413
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Longest prompt in tokens; longer ones are refused with 400
    /// [default: the context less one]
    #[arg(long)]
    pub max_prompt_tokens: Option<usize>,
    /// Require this key on every route but /health (`Authorization: Bearer
    /// KEY`, `x-goog-api-key` or `?key=`) [default: $GEMMA_API_KEY, else none]
    #[arg(long)]
    pub api_key: Option<String>,
    /// Read the key from the first line of this file (keeps it out of `ps`)
    #[arg(long)]
    pub api_key_file: Option<std::path::PathBuf>,
    /// Most tokens one request may generate; larger `max_tokens` are
    /// refused with 400, and requests without one get this many
    /// [default: no limit; requests without `max_tokens` get 512]
    #[arg(long)]
    pub max_tokens: Option<usize>,
}

/// Context per conversation when `--context` is not given: the model's, but
/// no more than this (Gemma 3 advertises 32K-128K, and a full-size KV cache
/// per conversation would leave the cache budget room for very few).
const DEFAULT_CONTEXT: usize = 8192;

/// How long open connections may keep the server alive after a signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What `/v1/models` says the model is. The default model is the
/// pretrained 270M, and clients should know that chat with it goes badly;
/// another file is described by its GGUF name and fine-tune tag (an `-it`
/// build says `it`), or by its file name.
fn describe_model(loaded: &LoadedModel) -> String {
    if gemma_platform::fetch::is_default_model(loaded.path()) {
        return format!(
            "{}; for chat, start the server with --model pointing at an \
             instruction-tuned GGUF or .sbs file",
            gemma_platform::fetch::DEFAULT_MODEL_DESCRIPTION
        );
    }
    let file = loaded.path().display().to_string();
    let Some(gguf) = loaded.gguf() else {
        return file;
    };
    match (
        gguf.get_str("general.name"),
        gguf.get_str("general.finetune"),
    ) {
        (Some(name), Some(tune)) => format!("{name} ({tune}), from {file}"),
        (Some(name), None) => format!("{name}, from {file}"),
        _ => file,
    }
}

fn load(args: &ModelArgs) -> Result<LoadedModel> {
    args.load()
}

pub fn serve(a: ServeArgs) -> Result<()> {
    // Checked before the model loads, so a bad key file fails at once.
    let api_key = auth::key(a.api_key.as_deref(), a.api_key_file.as_deref())?;
    // The model lives as long as the process; the worker and the handlers
    // borrow it from any thread.
    let mut loaded = load(&a.model)?;
    loaded.set_precision(a.compute.precision());
    let loaded: &'static LoadedModel = Box::leak(Box::new(loaded));
    let model = loaded.model();
    let max_context = model.config.context_length;
    let context = a.context.unwrap_or(max_context.min(DEFAULT_CONTEXT));
    if context == 0 || context > max_context {
        return Err(format!(
            "--context {context}: must be between 1 and the model's {max_context}"
        ));
    }
    let batch = (a.compute.batch as usize).min(context);
    let per_conversation = SessionSizes::new(&model.config, context, batch)
        .ok_or("context too large to allocate")?
        .bytes();
    let capacity = (a.cache_mb.saturating_mul(1 << 20) / per_conversation).max(1);
    let exec = WorkerPool::new(a.compute.threads)
        .map_err(|e| format!("cannot start worker threads: {e}"))?;
    let engine = crate::device::engine(&a.compute, &model)?;
    let device = engine.to_string();
    let shutdown = Arc::new(AtomicBool::new(false));
    let metrics = metrics::Metrics::new();
    let (jobs, worker) = worker::spawn(
        loaded,
        exec,
        pool::Pool::new(engine, capacity, context, batch),
        worker::Meter {
            metrics: metrics.clone(),
            per_conversation,
        },
        a.queue,
        shutdown.clone(),
    )
    .map_err(|e| format!("cannot start the inference thread: {e}"))?;
    let model_id = loaded
        .path()
        .file_stem()
        .map_or_else(|| "gemma".into(), |s| s.to_string_lossy().into_owned());
    let state = Arc::new(AppState {
        tokenizer: loaded.tokenizer(),
        model_id: model_id.clone(),
        model_description: describe_model(loaded),
        device: device.clone(),
        context,
        max_prompt_tokens: a.max_prompt_tokens.unwrap_or(usize::MAX),
        max_tokens: a.max_tokens.unwrap_or(usize::MAX),
        default_max_tokens: a.max_tokens.unwrap_or(api::DEFAULT_MAX_TOKENS),
        jobs,
        metrics: metrics.clone(),
    });
    let mut app = router(state, a.max_body_bytes);
    if let Some(key) = api_key {
        app = app.layer(axum::middleware::from_fn_with_state(key, auth::require));
    }
    // Outermost, so refused requests (401) are counted too.
    app = app.layer(axum::middleware::from_fn_with_state(
        metrics,
        metrics::count,
    ));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the HTTP runtime: {e}"))?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind((a.host.as_str(), a.port))
            .await
            .map_err(|e| format!("cannot listen on {}:{}: {e}", a.host, a.port))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        eprintln!(
            "gemma: serving {model_id} on {device}: context {context}, up to {capacity} cached conversations of {} MiB, queue {}",
            per_conversation >> 20,
            a.queue
        );
        // On stdout, alone, so a script that asked for --port 0 can read it.
        let mut out = std::io::stdout().lock();
        writeln!(out, "gemma: listening on http://{addr}")
            .and_then(|_| out.flush())
            .map_err(|e| e.to_string())?;
        drop(out);

        let signalled = Arc::new(tokio::sync::Notify::new());
        let server = axum::serve(listener, app).with_graceful_shutdown({
            let (shutdown, signalled) = (shutdown.clone(), signalled.clone());
            async move {
                wait_for_signal().await;
                eprintln!("gemma: shutting down");
                // Ends the generation in progress and refuses queued ones, so
                // open streams finish promptly.
                shutdown.store(true, Ordering::Relaxed);
                signalled.notify_one();
            }
        });
        tokio::select! {
            r = server => r.map_err(|e| e.to_string()),
            _ = async { signalled.notified().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
                eprintln!("gemma: connections still open after {SHUTDOWN_GRACE:?}; closing them");
                Ok(())
            }
        }
    })?;
    // Dropping the runtime drops the router and with it the queue's sender:
    // the worker finishes and returns.
    drop(rt);
    worker
        .join()
        .map_err(|_| "the inference thread panicked".to_string())
}

fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics::metrics))
        .route("/v1/models", get(openai::models))
        .route("/v1/models/{id}", get(openai::model))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route("/v1beta/models", get(google::models))
        .route(
            "/v1beta/models/{target}",
            post(google::model_action).get(google::model),
        )
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

async fn health() -> axum::response::Response {
    api::json_response(
        axum::http::StatusCode::OK,
        &serde_json::json!({"status": "ok"}),
        None,
    )
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
