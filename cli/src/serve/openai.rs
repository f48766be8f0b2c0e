//! OpenAI-compatible routes: `/v1/models`, `/v1/chat/completions`,
//! `/v1/completions`, streamed (SSE chunks ending with `data: [DONE]`) or not.

use super::api::{
    check_n, data, generate_n, json_response, parse_body, response_id, sse, submit, unix_time,
    ApiError, AppState, Gen, OneOrMany, PromptText, Sampling,
};
use super::worker::{Event, Finish, Summary};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use gemma_platform::{Penalties, Speaker};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

pub async fn models(State(state): State<Arc<AppState>>) -> Response {
    let body = json!({"object": "list", "data": [model_object(&state)]});
    json_response(StatusCode::OK, &body, None)
}

/// `GET /v1/models/{id}`: the served model. Requests name it by any
/// `model` value (the server has one), so any id finds it; the answer
/// carries its real id.
pub async fn model(State(state): State<Arc<AppState>>) -> Response {
    json_response(StatusCode::OK, &model_object(&state), None)
}

fn model_object(state: &AppState) -> Value {
    json!({
        "id": state.model_id,
        "object": "model",
        "created": 0,
        "owned_by": "gemma-rs",
        "description": state.model_description,
        "device": state.device,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Message {
    role: String,
    #[serde(default)]
    content: Option<Content>,
}

/// A message's content: a string, or a list of parts of which only text is
/// supported.
#[derive(Deserialize)]
#[serde(untagged, expecting = "a string or a list of content parts")]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// The request fields [`Common`] reads, and `model`, which any value
/// satisfies (the server has one model).
macro_rules! common_fields {
    ($($extra:literal),*) => {
        &[
            "model", "stream", "stream_options", "max_tokens", "temperature", "top_p",
            "top_k", "min_p", "seed", "stop", "n", "presence_penalty", "frequency_penalty",
            "logit_bias", $($extra),*
        ]
    };
}
const CHAT_FIELDS: &[&str] = common_fields!("messages", "max_completion_tokens");
const COMPLETION_FIELDS: &[&str] = common_fields!("prompt");

/// The fields both completion requests take.
#[derive(Deserialize)]
struct Common {
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    /// Not OpenAI's; llama.cpp and vLLM take it too.
    #[serde(default)]
    top_k: Option<usize>,
    #[serde(default)]
    min_p: Option<f32>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    stop: Option<OneOrMany>,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    presence_penalty: Option<f32>,
    #[serde(default)]
    frequency_penalty: Option<f32>,
    /// Token id (as a string, JSON keys are) to a bias in [-100, 100].
    #[serde(default)]
    logit_bias: Option<std::collections::BTreeMap<String, f32>>,
}

impl Common {
    fn sampling(&self) -> Sampling {
        Sampling {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            min_p: self.min_p,
            seed: self.seed,
        }
    }

    fn penalties(&self) -> Result<Penalties, ApiError> {
        let mut bias = Vec::new();
        for (k, &v) in self.logit_bias.iter().flatten() {
            let id = k.parse::<u32>().map_err(|_| {
                ApiError::invalid(
                    "logit_bias",
                    format!("`logit_bias` keys are token ids, not {k:?}"),
                )
            })?;
            bias.push((id, v));
        }
        Ok(Penalties {
            presence: self.presence_penalty.unwrap_or(0.0),
            frequency: self.frequency_penalty.unwrap_or(0.0),
            bias,
        })
    }

    fn stops(&mut self) -> Vec<String> {
        self.stop.take().map_or_else(Vec::new, OneOrMany::into_vec)
    }

    fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage)
    }
}

#[derive(Deserialize)]
struct ChatRequest {
    messages: Vec<Message>,
    /// The newer name of `max_tokens`.
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(flatten)]
    common: Common,
}

fn turns(messages: Vec<Message>) -> Result<Vec<(Speaker, String)>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "at least one message is needed",
        ));
    }
    messages
        .into_iter()
        .map(|m| {
            let role = match m.role.as_str() {
                "system" | "developer" => Speaker::System,
                "user" => Speaker::User,
                "assistant" | "model" => Speaker::Model,
                other => {
                    return Err(ApiError::invalid(
                        "messages",
                        format!("role '{other}' is not supported (system, user, assistant)"),
                    ))
                }
            };
            let text = match m.content {
                None => String::new(),
                Some(Content::Text(t)) => t,
                Some(Content::Parts(parts)) => {
                    let mut text = String::new();
                    for p in parts {
                        if p.kind != "text" {
                            return Err(ApiError::invalid(
                                "messages",
                                format!("content of type '{}' is not supported", p.kind),
                            ));
                        }
                        text.push_str(p.text.as_deref().unwrap_or(""));
                    }
                    text
                }
            };
            Ok((role, text))
        })
        .collect()
}

/// A response that is not streamed.
struct Whole {
    id: String,
    created: u64,
    model: String,
    object: &'static str,
}

impl Whole {
    /// One choice per result, its text under `key` as `content` makes it.
    fn response(
        &self,
        results: &[(String, Summary)],
        key: &str,
        content: impl Fn(&str) -> Value,
    ) -> Response {
        let choices: Vec<Value> = results
            .iter()
            .enumerate()
            .map(|(i, (text, s))| {
                json!({
                    "index": i,
                    key: content(text),
                    "logprobs": null,
                    "finish_reason": finish_reason(s.finish),
                })
            })
            .collect();
        let summary = total(results);
        let body = json!({
            "id": self.id,
            "object": self.object,
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": usage(&summary),
        });
        json_response(StatusCode::OK, &body, Some(&summary))
    }
}

/// The summary of `n` choices of one prompt: the first's prompt and cache
/// figures, every choice's completion tokens.
fn total(results: &[(String, Summary)]) -> Summary {
    let mut s = results[0].1;
    s.completion_tokens = results.iter().map(|(_, r)| r.completion_tokens).sum();
    s
}

fn usage(s: &Summary) -> Value {
    json!({
        "prompt_tokens": s.prompt_tokens,
        "completion_tokens": s.completion_tokens,
        "total_tokens": s.prompt_tokens + s.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": s.cached_tokens},
    })
}

fn finish_reason(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "stop",
        Finish::Length => "length",
    }
}

/// The event that reports a generation failed part-way through a stream.
fn stream_error(message: String) -> Vec<axum::response::sse::Event> {
    let e = ApiError::internal(message);
    vec![data(e.body()), done_marker()]
}

fn done_marker() -> axum::response::sse::Event {
    axum::response::sse::Event::default().data("[DONE]")
}

pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let mut req: ChatRequest = parse_body(body, CHAT_FIELDS)?;
    let n = check_n(req.common.n, req.common.stream.unwrap_or(false))?;
    let (max_tokens, param) = match req.max_completion_tokens {
        Some(m) => (Some(m), "max_completion_tokens"),
        None => (req.common.max_tokens, "max_tokens"),
    };
    let turns = turns(std::mem::take(&mut req.messages))?;
    let stops = req.common.stops();
    let gen = Gen::new(
        &state,
        PromptText::Chat(&turns),
        &req.common.sampling(),
        max_tokens,
        param,
        stops,
    )?
    .with_penalties(&state, req.common.penalties()?)?;
    let id = response_id("chatcmpl");
    let created = unix_time();
    let model = state.model_id.clone();
    if !req.common.stream.unwrap_or(false) {
        let results = generate_n(&state, gen, n).await?;
        let message = |text: &str| json!({"role": "assistant", "content": text});
        let whole = Whole {
            id,
            created,
            model,
            object: "chat.completion",
        };
        return Ok(whole.response(&results, "message", message));
    }
    let rx = submit(&state, gen)?;
    let include_usage = req.common.include_usage();
    let chunk = move |delta: Value, finish: Option<&str>| {
        let mut c = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if include_usage {
            c["usage"] = Value::Null;
        }
        c
    };
    let first = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    Ok(sse(first, rx, move |ev| match ev {
        Event::Embedding(_) => vec![],
        Event::Text(t) => vec![data(chunk(json!({ "content": t }), None))],
        Event::Done(s) => {
            let mut out = vec![data(chunk(json!({}), Some(finish_reason(s.finish))))];
            if include_usage {
                let mut u = chunk(json!({}), None);
                u["choices"] = json!([]);
                u["usage"] = usage(&s);
                out.push(data(u));
            }
            out.push(done_marker());
            out
        }
        Event::Failed(m) => stream_error(m),
    }))
}

/// `"prompt"`: a string, or a list holding one.
#[derive(Deserialize)]
struct CompletionRequest {
    prompt: OneOrMany,
    #[serde(flatten)]
    common: Common,
}

/// OpenAI's default for `/v1/completions` when `max_tokens` is absent.
const COMPLETIONS_DEFAULT_MAX_TOKENS: u64 = 16;

pub async fn completions(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let mut req: CompletionRequest = parse_body(body, COMPLETION_FIELDS)?;
    let n = check_n(req.common.n, req.common.stream.unwrap_or(false))?;
    let prompt = match req.prompt {
        OneOrMany::One(p) => p,
        OneOrMany::Many(mut v) if v.len() == 1 => v.remove(0),
        OneOrMany::Many(_) => {
            return Err(ApiError::invalid(
                "prompt",
                "exactly one prompt is supported",
            ))
        }
    };
    let stops = req.common.stops();
    let max_tokens = req
        .common
        .max_tokens
        .unwrap_or(COMPLETIONS_DEFAULT_MAX_TOKENS);
    let gen = Gen::new(
        &state,
        PromptText::Raw(&prompt),
        &req.common.sampling(),
        Some(max_tokens),
        "max_tokens",
        stops,
    )?
    .with_penalties(&state, req.common.penalties()?)?;
    let id = response_id("cmpl");
    let created = unix_time();
    let model = state.model_id.clone();
    if !req.common.stream.unwrap_or(false) {
        let results = generate_n(&state, gen, n).await?;
        let whole = Whole {
            id,
            created,
            model,
            object: "text_completion",
        };
        return Ok(whole.response(&results, "text", |text| json!(text)));
    }
    let rx = submit(&state, gen)?;
    let include_usage = req.common.include_usage();
    let chunk = move |text: &str, finish: Option<&str>| {
        json!({
            "id": id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": finish}],
        })
    };
    Ok(sse(Vec::new(), rx, move |ev| match ev {
        Event::Embedding(_) => vec![],
        Event::Text(t) => vec![data(chunk(&t, None))],
        Event::Done(s) => {
            let mut out = vec![data(chunk("", Some(finish_reason(s.finish))))];
            if include_usage {
                let mut u = chunk("", None);
                u["choices"] = json!([]);
                u["usage"] = usage(&s);
                out.push(data(u));
            }
            out.push(done_marker());
            out
        }
        Event::Failed(m) => stream_error(m),
    }))
}
