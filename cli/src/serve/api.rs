//! What the OpenAI and Google routes share: state, errors, validation,
//! handing a request to the worker, and turning its events into a body.

use super::worker::{Event, Job, JobKind, Summary};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use gemma_core::sampling::{SamplingError, SamplingParams};
use gemma_core::tokenizer::{Tokenizer, TokenizerError};
use gemma_platform::{ChatTemplate, Penalties, Speaker};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

pub struct AppState {
    pub tokenizer: Tokenizer<'static>,
    /// The name `/v1/models` lists and responses carry.
    pub model_id: String,
    /// What `/v1/models` says the model is (see [`describe_model`]).
    pub model_description: String,
    /// Where the model runs (`cpu`, `opencl:N name (kind)`), as
    /// `/v1/models` reports it.
    pub device: String,
    /// Tokens per conversation: prompt plus completion must fit.
    pub context: usize,
    /// The operator's limits (`--max-prompt-tokens`, `--max-tokens`).
    pub max_prompt_tokens: usize,
    pub max_tokens: usize,
    /// What a request without `max_tokens` gets: `--max-tokens`, else
    /// [`DEFAULT_MAX_TOKENS`] (capped by the room left in the context).
    pub default_max_tokens: usize,
    pub jobs: SyncSender<Job>,
    pub metrics: std::sync::Arc<super::metrics::Metrics>,
}

/// An error response: `{"error": {"message", "type", "code", "param"}}`, the
/// shape OpenAI's clients parse.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub code: &'static str,
    pub param: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            code,
            param: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn invalid(param: &'static str, message: impl Into<String>) -> Self {
        Self {
            param: Some(param),
            ..Self::bad_request("invalid_value", message)
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
    }

    fn kind(&self) -> &'static str {
        match self.status {
            StatusCode::SERVICE_UNAVAILABLE => "server_busy",
            s if s.is_server_error() => "server_error",
            StatusCode::NOT_FOUND => "not_found_error",
            _ => "invalid_request_error",
        }
    }

    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind(),
            "code": self.code,
            "param": self.param,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, &self.body(), None)
    }
}

pub const PREFILLED_HEADER: &str = "x-gemma-prefilled-tokens";

/// A JSON body, with the prefill count header when a generation produced it.
pub fn json_response(status: StatusCode, body: &Value, summary: Option<&Summary>) -> Response {
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if let Some(s) = summary {
        r.headers_mut().insert(
            HeaderName::from_static(PREFILLED_HEADER),
            HeaderValue::from(s.prefilled),
        );
    }
    r
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

/// Parses a request body: too large is 413, bad JSON 400, JSON of the wrong
/// shape 400 with serde's description of what was wrong.
/// Parses a JSON request body into `T`. A top-level field not in `known`
/// is refused with a 400 that names it: a client that asks for something
/// this server does not do (`logprobs`, `response_format`, ...) must not
/// get an answer that silently lacks it. Nested objects refuse unknown
/// fields through `#[serde(deny_unknown_fields)]`. Null members count as
/// absent.
pub fn parse_body<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    known: &[&str],
) -> Result<T, ApiError> {
    let bytes = body.map_err(|r| {
        let code = if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "invalid_body"
        };
        ApiError::new(r.status(), code, r.body_text())
    })?;
    let invalid = |e: serde_json::Error| {
        let code = if e.is_data() {
            "invalid_request"
        } else {
            "invalid_json"
        };
        ApiError::bad_request(code, format!("request body: {e}"))
    };
    let mut value: Value = serde_json::from_slice(&bytes).map_err(invalid)?;
    drop_nulls(&mut value);
    if let Some(field) = value
        .as_object()
        .and_then(|o| o.keys().find(|k| !known.contains(&k.as_str())))
    {
        return Err(ApiError::bad_request(
            "unsupported_parameter",
            format!(
                "`{field}` is not supported by this server (it takes {})",
                known.join(", ")
            ),
        ));
    }
    serde_json::from_value(value).map_err(invalid)
}

/// Removes every `null` member of every object: a field that is null asks
/// for nothing (clients echo back `"refusal": null`, `"tool_calls": null`),
/// and for the fields read here null and absent mean the same.
fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(o) => {
            o.retain(|_, v| !v.is_null());
            o.values_mut().for_each(drop_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// `"stop"` is a string or a list of strings.
#[derive(Deserialize)]
#[serde(untagged, expecting = "a string or a list of strings")]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// Sampling settings as a request gives them; what it leaves out takes
/// Gemma's published defaults (temperature 1, top-k 64, top-p 0.95).
#[derive(Default)]
pub struct Sampling {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub min_p: Option<f32>,
    pub seed: Option<u64>,
}

impl Sampling {
    pub fn params(&self) -> Result<SamplingParams, ApiError> {
        let seed = self.seed.unwrap_or_else(clock_seed);
        let mut p = SamplingParams::gemma_default(seed);
        p.temperature = self.temperature.unwrap_or(p.temperature);
        p.top_p = self.top_p.unwrap_or(p.top_p);
        p.top_k = self.top_k.unwrap_or(p.top_k);
        p.min_p = self.min_p.unwrap_or(p.min_p);
        p.validate().map_err(|e| {
            let param = match e {
                SamplingError::Temperature(_) => "temperature",
                SamplingError::TopP(_) => "top_p",
                SamplingError::MinP(_) => "min_p",
                SamplingError::WorkTooSmall { .. } => "",
            };
            ApiError::invalid(param, e.to_string())
        })?;
        Ok(p)
    }
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

pub fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A fresh response id: `prefix` plus the time and a counter.
pub fn response_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{:x}{n:06x}", unix_time())
}

/// Stop sequences a request may give (OpenAI allows 4); each is searched for
/// after every token.
const MAX_STOPS: usize = 16;

/// Tokens a request without `max_tokens` may generate when the server was
/// started without `--max-tokens`. A base model rarely stops by itself, so
/// "the rest of the context" (thousands of tokens) would keep a client
/// waiting minutes for text nobody asked for.
pub const DEFAULT_MAX_TOKENS: usize = 512;

/// A validated generation request, ready for the worker.
#[derive(Clone)]
pub struct Gen {
    pub prompt: Vec<u32>,
    pub params: SamplingParams,
    pub max_tokens: usize,
    pub stops: Vec<String>,
    pub penalties: Penalties,
}

/// What a request asks the model to continue.
pub enum PromptText<'a> {
    /// Raw text (`/v1/completions`): control tokens such as
    /// `<start_of_turn>` parsed, BOS first, as `gemma run` does.
    Raw(&'a str),
    /// A conversation, put in Gemma's chat template (message text stays
    /// text, control tokens and all).
    Chat(&'a [(Speaker, String)]),
}

impl PromptText<'_> {
    pub fn tokens(&self, tok: &Tokenizer) -> Result<Vec<u32>, ApiError> {
        let invalid = |e: TokenizerError| ApiError::bad_request("invalid_prompt", e.to_string());
        match self {
            PromptText::Raw(text) => {
                let mut prompt = vec![tok.bos_id()];
                prompt.extend(tok.encode_to_vec(text, true).map_err(invalid)?);
                Ok(prompt)
            }
            PromptText::Chat(turns) => {
                let template = ChatTemplate::new(*tok).ok_or_else(|| {
                    ApiError::bad_request(
                        "unsupported_model",
                        "this model's vocabulary has no <start_of_turn>/<end_of_turn> for chat",
                    )
                })?;
                let turns: Vec<(Speaker, &str)> =
                    turns.iter().map(|(s, t)| (*s, t.as_str())).collect();
                template.prompt(&turns).map_err(invalid)
            }
        }
    }
}

impl Gen {
    /// Tokenizes the prompt and checks that it and `max_tokens` (default:
    /// the server's default cap, or the rest of the context if that is
    /// less) fit the context.
    pub fn new(
        state: &AppState,
        text: PromptText,
        sampling: &Sampling,
        max_tokens: Option<u64>,
        max_tokens_param: &'static str,
        stops: Vec<String>,
    ) -> Result<Self, ApiError> {
        let params = sampling.params()?;
        if stops.len() > MAX_STOPS {
            return Err(ApiError::invalid(
                "stop",
                format!("at most {MAX_STOPS} stop sequences are supported"),
            ));
        }
        let prompt = text.tokens(&state.tokenizer)?;
        if prompt.len() > state.max_prompt_tokens {
            return Err(ApiError::bad_request(
                "prompt_too_long",
                format!(
                    "the prompt has {} tokens, more than this server's limit of {}",
                    prompt.len(),
                    state.max_prompt_tokens
                ),
            ));
        }
        let context = state.context;
        if prompt.len() >= context {
            return Err(ApiError::bad_request(
                "context_length_exceeded",
                format!(
                    "the prompt has {} tokens; the context of {context} leaves no room for a reply",
                    prompt.len()
                ),
            ));
        }
        let room = context - prompt.len();
        let limit = state.max_tokens;
        let max_tokens = match max_tokens {
            None => room.min(state.default_max_tokens),
            Some(m) if m > limit as u64 => {
                return Err(ApiError::invalid(
                    max_tokens_param,
                    format!("{max_tokens_param} {m} exceeds this server's limit of {limit}"),
                ))
            }
            Some(0) => {
                return Err(ApiError::invalid(
                    max_tokens_param,
                    format!("{max_tokens_param} must be at least 1"),
                ))
            }
            Some(m) if m > room as u64 => {
                return Err(ApiError {
                    param: Some(max_tokens_param),
                    ..ApiError::bad_request(
                        "context_length_exceeded",
                        format!(
                            "{m} tokens requested after a prompt of {} tokens, more than the context of {context} holds",
                            prompt.len()
                        ),
                    )
                })
            }
            Some(m) => m as usize,
        };
        Ok(Self {
            prompt,
            params,
            max_tokens,
            stops,
            penalties: Penalties::default(),
        })
    }

    /// The same request with logit biases and penalties, checked against
    /// OpenAI's ranges and the vocabulary.
    pub fn with_penalties(mut self, state: &AppState, p: Penalties) -> Result<Self, ApiError> {
        p.validate(state.tokenizer.vocab_size()).map_err(|e| {
            let param = ["presence_penalty", "frequency_penalty", "logit_bias"]
                .into_iter()
                .find(|f| e.contains(f))
                .unwrap_or("");
            ApiError::invalid(param, e)
        })?;
        self.penalties = p;
        Ok(self)
    }
}

/// The most choices one request may ask for.
pub const MAX_N: u32 = 8;

/// How many choices a request asks for: 1 to [`MAX_N`], and only 1 when
/// streamed (choices are generated one after another).
pub fn check_n(n: Option<u32>, stream: bool) -> Result<usize, ApiError> {
    match n {
        None | Some(1) => Ok(1),
        Some(n) if n == 0 || n > MAX_N => Err(ApiError::invalid(
            "n",
            format!("n must be between 1 and {MAX_N}"),
        )),
        Some(_) if stream => Err(ApiError::invalid(
            "n",
            "n > 1 is supported without `stream` only",
        )),
        Some(n) => Ok(n as usize),
    }
}

/// Generates `n` choices of `gen`, one after another (each queued when
/// the one before has finished, so a request takes one queue slot at a
/// time), choice `i` with seed `seed + i` (so a request with a seed gets
/// the same choices again).
pub async fn generate_n(
    state: &AppState,
    gen: Gen,
    n: usize,
) -> Result<Vec<(String, Summary)>, ApiError> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut g = gen.clone();
        g.params.seed = gen.params.seed.wrapping_add(i as u64);
        out.push(collect(submit(state, g)?).await?);
    }
    Ok(out)
}

/// Queues the embedding of `inputs` (BOS included, each fitting the
/// context) for the worker; a full queue answers 503.
pub fn submit_embed(
    state: &AppState,
    inputs: Vec<Vec<u32>>,
) -> Result<UnboundedReceiver<Event>, ApiError> {
    let (events, rx) = unbounded_channel();
    let job = Job {
        kind: JobKind::Embed(inputs),
        prompt: Vec::new(),
        params: SamplingParams::greedy(),
        max_tokens: 0,
        stops: Vec::new(),
        penalties: Penalties::default(),
        events,
    };
    enqueue(state, job)?;
    Ok(rx)
}

/// Queues a request for the worker; a full queue answers 503.
pub fn submit(state: &AppState, gen: Gen) -> Result<UnboundedReceiver<Event>, ApiError> {
    let (events, rx) = unbounded_channel();
    let job = Job {
        kind: JobKind::Generate,
        prompt: gen.prompt,
        params: gen.params,
        max_tokens: gen.max_tokens,
        stops: gen.stops,
        penalties: gen.penalties,
        events,
    };
    enqueue(state, job)?;
    Ok(rx)
}

/// Hands `job` to the worker; a full queue answers 503.
fn enqueue(state: &AppState, job: Job) -> Result<(), ApiError> {
    // Counted before the send, so the worker never takes one uncounted.
    state.metrics.queued.fetch_add(1, Ordering::Relaxed);
    let sent = state.jobs.try_send(job);
    if sent.is_err() {
        state.metrics.queued.fetch_sub(1, Ordering::Relaxed);
    }
    match sent {
        Ok(()) => Ok(()),
        Err(TrySendError::Full(_)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "queue_full",
            "too many requests are waiting; try again later",
        )),
        Err(TrySendError::Disconnected(_)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down",
        )),
    }
}

/// Waits for a whole generation.
pub async fn collect(mut rx: UnboundedReceiver<Event>) -> Result<(String, Summary), ApiError> {
    let mut text = String::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Text(t) => text.push_str(&t),
            // Only embedding jobs send these.
            Event::Embedding(_) => {}
            Event::Done(s) => return Ok((text, s)),
            Event::Failed(m) => return Err(ApiError::internal(m)),
        }
    }
    Err(ApiError::internal("generation ended without a result"))
}

/// Waits for an embedding job: its vectors in order and its summary.
pub async fn collect_embeddings(
    mut rx: UnboundedReceiver<Event>,
) -> Result<(Vec<Vec<f32>>, Summary), ApiError> {
    let mut out = Vec::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Embedding(e) => out.push(e),
            Event::Text(_) => {}
            Event::Done(s) => return Ok((out, s)),
            Event::Failed(m) => return Err(ApiError::internal(m)),
        }
    }
    Err(ApiError::internal("the embedding ended without a result"))
}

/// Server-sent events: `first`, then whatever `each` makes of each worker
/// event. Dropping the stream (the client went away) closes the channel,
/// which stops the worker.
pub fn sse(
    first: Vec<Value>,
    rx: UnboundedReceiver<Event>,
    mut each: impl FnMut(Event) -> Vec<SseEvent> + Send + 'static,
) -> Response {
    let first = stream::iter(
        first
            .into_iter()
            .map(|v| SseEvent::default().data(v.to_string())),
    );
    let rest = stream::unfold(rx, |mut rx| async move {
        let ev = rx.recv().await?;
        Some((ev, rx))
    })
    .flat_map(move |ev| stream::iter(each(ev)));
    let events: std::pin::Pin<Box<dyn Stream<Item = Result<SseEvent, Infallible>> + Send>> =
        Box::pin(first.chain(rest).map(Ok));
    Sse::new(events).into_response()
}

/// An SSE event whose data is `v` as JSON.
pub fn data(v: Value) -> SseEvent {
    SseEvent::default().data(v.to_string())
}
