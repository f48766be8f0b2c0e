//! The Google API routes gemma.cpp's server speaks:
//! `POST /v1beta/models/{model}:generateContent` and
//! `:streamGenerateContent` (SSE, one `data: {...}` per chunk), and
//! `GET /v1beta/models`; also `:countTokens` and `GET /v1beta/models/{model}`.

use super::api::{
    collect, data, json_response, parse_body, sse, submit, ApiError, AppState, Gen, PromptText,
    Sampling,
};
use super::worker::{Event, Finish, Summary};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use gemma_platform::{Penalties, Speaker};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

pub async fn models(State(state): State<Arc<AppState>>) -> Response {
    let body = json!({"models": [model_object(&state)]});
    json_response(StatusCode::OK, &body, None)
}

/// `GET /v1beta/models/{model}`: the served model, whatever the name (as
/// the generation routes take any).
pub async fn model(State(state): State<Arc<AppState>>) -> Response {
    json_response(StatusCode::OK, &model_object(&state), None)
}

fn model_object(state: &AppState) -> Value {
    json!({
        "name": format!("models/{}", state.model_id),
        "displayName": state.model_id,
        "description": state.model_description,
        "inputTokenLimit": state.context,
        "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"],
    })
}

/// `:countTokens`: the tokens `contents` (and `systemInstruction`) take in
/// Gemma's chat template, as `:generateContent` would prefill them.
fn count_tokens(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct CountRequest {
        contents: Vec<Content>,
        #[serde(default)]
        system_instruction: Option<Content>,
    }
    let req: CountRequest = parse_body(body, &["contents", "systemInstruction"])?;
    let turns = turns(req.contents, req.system_instruction)?;
    let n = PromptText::Chat(&turns).tokens(&state.tokenizer)?.len();
    Ok(json_response(
        StatusCode::OK,
        &json!({"totalTokens": n}),
        None,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Part {
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Content {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    parts: Vec<Part>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GenerationConfig {
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    top_k: Option<usize>,
    #[serde(default)]
    max_output_tokens: Option<u64>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    candidate_count: Option<u32>,
    #[serde(default)]
    presence_penalty: Option<f32>,
    #[serde(default)]
    frequency_penalty: Option<f32>,
}

/// A safety setting: accepted and ignored (the server runs no safety
/// classifier; documented in docs/SERVER.md), but it must be well formed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct SafetySetting {
    category: String,
    threshold: String,
    #[serde(default)]
    method: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    contents: Vec<Content>,
    #[serde(default)]
    system_instruction: Option<Content>,
    #[serde(default)]
    generation_config: Option<GenerationConfig>,
    #[serde(default)]
    #[allow(dead_code)]
    safety_settings: Option<Vec<SafetySetting>>,
}

fn text_of(c: Content) -> String {
    c.parts.into_iter().filter_map(|p| p.text).collect()
}

fn turns(
    req_contents: Vec<Content>,
    system: Option<Content>,
) -> Result<Vec<(Speaker, String)>, ApiError> {
    if req_contents.is_empty() {
        return Err(ApiError::invalid(
            "contents",
            "at least one content is needed",
        ));
    }
    let mut turns: Vec<(Speaker, String)> = system
        .map(|s| (Speaker::System, text_of(s)))
        .into_iter()
        .collect();
    for c in req_contents {
        let role = match c.role.as_deref() {
            None | Some("user") => Speaker::User,
            Some("model") => Speaker::Model,
            Some(other) => {
                return Err(ApiError::invalid(
                    "contents",
                    format!("role '{other}' is not supported (user, model)"),
                ))
            }
        };
        turns.push((role, text_of(c)));
    }
    Ok(turns)
}

fn finish_reason(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "STOP",
        Finish::Length => "MAX_TOKENS",
    }
}

fn usage(s: &Summary) -> Value {
    json!({
        "promptTokenCount": s.prompt_tokens,
        "candidatesTokenCount": s.completion_tokens,
        "totalTokenCount": s.prompt_tokens + s.completion_tokens,
        "cachedContentTokenCount": s.cached_tokens,
    })
}

fn candidate(text: &str, finish: Option<Finish>) -> Value {
    let mut c = json!({
        "content": {"role": "model", "parts": [{"text": text}]},
        "index": 0,
    });
    if let Some(f) = finish {
        c["finishReason"] = json!(finish_reason(f));
    }
    c
}

/// `/v1beta/models/{model}:{method}`: one path segment, split at its last ':'.
pub async fn model_action(
    State(state): State<Arc<AppState>>,
    Path(target): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let stream = match target.rsplit_once(':').map(|(_, m)| m) {
        Some("generateContent") => false,
        Some("streamGenerateContent") => true,
        Some("countTokens") => return count_tokens(&state, body),
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!(
                    "'{target}': expected MODEL:generateContent, MODEL:streamGenerateContent \
                     or MODEL:countTokens"
                ),
            ))
        }
    };
    let req: Request = parse_body(
        body,
        &[
            "contents",
            "systemInstruction",
            "generationConfig",
            "safetySettings",
        ],
    )?;
    let config = req.generation_config.unwrap_or_default();
    if config.candidate_count.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid(
            "candidateCount",
            "only 1 candidate is supported",
        ));
    }
    let turns = turns(req.contents, req.system_instruction)?;
    let sampling = Sampling {
        temperature: config.temperature,
        top_p: config.top_p,
        top_k: config.top_k,
        min_p: None,
        seed: config.seed,
    };
    let gen = Gen::new(
        &state,
        PromptText::Chat(&turns),
        &sampling,
        config.max_output_tokens,
        "maxOutputTokens",
        config.stop_sequences.unwrap_or_default(),
    )?
    .with_penalties(
        &state,
        Penalties {
            presence: config.presence_penalty.unwrap_or(0.0),
            frequency: config.frequency_penalty.unwrap_or(0.0),
            bias: Vec::new(),
        },
    )
    .map_err(|e| {
        // Google's names for the fields.
        let google = |s: &str| {
            s.replace("presence_penalty", "presencePenalty")
                .replace("frequency_penalty", "frequencyPenalty")
        };
        ApiError {
            param: e.param.map(|p| match p {
                "presence_penalty" => "presencePenalty",
                "frequency_penalty" => "frequencyPenalty",
                p => p,
            }),
            message: google(&e.message),
            ..e
        }
    })?;
    let rx = submit(&state, gen)?;
    if !stream {
        let (text, summary) = collect(rx).await?;
        let body = json!({
            "candidates": [candidate(&text, Some(summary.finish))],
            "usageMetadata": usage(&summary),
            "modelVersion": state.model_id,
        });
        return Ok(json_response(StatusCode::OK, &body, Some(&summary)));
    }
    Ok(sse(Vec::new(), rx, move |ev| match ev {
        Event::Embedding(_) => vec![],
        Event::Text(t) => vec![data(json!({"candidates": [candidate(&t, None)]}))],
        Event::Done(s) => vec![data(json!({
            "candidates": [candidate("", Some(s.finish))],
            "usageMetadata": usage(&s),
        }))],
        Event::Failed(m) => vec![data(ApiError::internal(m).body())],
    }))
}
