//! `POST /v1/embeddings`: each input's final-normed hidden states, mean-
//! pooled over its tokens (BOS included) and scaled to unit length, as
//! llama.cpp's `--embedding` with mean pooling gives them. A generative
//! model's embeddings are what they are: fine for similarity between
//! texts, not trained for retrieval as an embedding model's are.

use super::api::{collect_embeddings, json_response, parse_body, submit_embed, ApiError, AppState};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use base64::prelude::{Engine as _, BASE64_STANDARD};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// The most inputs one request may embed.
pub const MAX_INPUTS: usize = 64;

const FIELDS: &[&str] = &["input", "model", "encoding_format"];

/// `input` is a string or a list of strings (token-id inputs are refused
/// by the shape check).
#[derive(Deserialize)]
#[serde(untagged, expecting = "a string or a list of strings")]
enum Input {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Request {
    input: Input,
    #[serde(default)]
    encoding_format: Option<String>,
}

pub async fn embeddings(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: Request = parse_body(body, FIELDS)?;
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                "encoding_format",
                format!("`float` or `base64`, not {other:?}"),
            ))
        }
    };
    let texts = match req.input {
        Input::One(t) => vec![t],
        Input::Many(v) => v,
    };
    if texts.is_empty() || texts.len() > MAX_INPUTS {
        return Err(ApiError::invalid(
            "input",
            format!("between 1 and {MAX_INPUTS} inputs are supported"),
        ));
    }
    let tok = &state.tokenizer;
    let mut inputs = Vec::with_capacity(texts.len());
    for (i, text) in texts.iter().enumerate() {
        let mut ids = vec![tok.bos_id()];
        ids.extend(
            tok.encode_to_vec(text, true)
                .map_err(|e| ApiError::bad_request("invalid_prompt", e.to_string()))?,
        );
        let limit = state.max_prompt_tokens.min(state.context);
        if ids.len() > limit {
            return Err(ApiError::invalid(
                "input",
                format!(
                    "input {i} has {} tokens, more than this server's limit of {limit}",
                    ids.len()
                ),
            ));
        }
        inputs.push(ids);
    }
    let rx = submit_embed(&state, inputs)?;
    let (vectors, summary) = collect_embeddings(rx).await?;
    let data: Vec<_> = vectors
        .into_iter()
        .enumerate()
        .map(|(index, e)| {
            let embedding = if base64 {
                // Little-endian f32s, as OpenAI sends them.
                let bytes: Vec<u8> = e.iter().flat_map(|v| v.to_le_bytes()).collect();
                json!(BASE64_STANDARD.encode(bytes))
            } else {
                json!(e)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let body = json!({
        "object": "list",
        "data": data,
        "model": state.model_id,
        "usage": {"prompt_tokens": summary.prompt_tokens, "total_tokens": summary.prompt_tokens},
    });
    Ok(json_response(StatusCode::OK, &body, None))
}
