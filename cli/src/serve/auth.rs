//! `--api-key`: every route but `/health` needs the key, as OpenAI's
//! clients send it (`Authorization: Bearer KEY`) or as Google's do
//! (`x-goog-api-key: KEY` or `?key=KEY`); anything else gets a 401.

use super::api::ApiError;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::path::Path;
use std::sync::Arc;

/// The key from `--api-key`, else the first line of `--api-key-file`,
/// else `$GEMMA_API_KEY`; `None` when none is set (the server is open).
/// The file and the variable keep the key out of `ps`.
pub fn key(flag: Option<&str>, file: Option<&Path>) -> Result<Option<Arc<str>>, String> {
    let key = match (flag, file) {
        (Some(_), Some(_)) => return Err("give --api-key or --api-key-file, not both".into()),
        (Some(k), None) => k.to_string(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map_err(|e| format!("--api-key-file {}: {e}", f.display()))?
            .lines()
            .next()
            .unwrap_or("")
            .to_string(),
        (None, None) => match std::env::var("GEMMA_API_KEY") {
            Ok(k) => k,
            Err(_) => return Ok(None),
        },
    };
    let key = key.trim();
    if key.is_empty() {
        return Err("the API key is empty".into());
    }
    Ok(Some(key.into()))
}

/// Lets a request through when it carries `key` (or asks for `/health`).
pub async fn require(State(key): State<Arc<str>>, req: Request, next: Next) -> Response {
    if req.uri().path() == "/health" || carries(&req, &key) {
        return next.run(req).await;
    }
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_api_key",
        "this server needs its API key: `Authorization: Bearer KEY`, \
         `x-goog-api-key: KEY` or `?key=KEY`",
    )
    .into_response()
}

fn carries(req: &Request, key: &str) -> bool {
    let header_value = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    let bearer = header_value(header::AUTHORIZATION).and_then(|v| v.strip_prefix("Bearer "));
    let google = header_value(header::HeaderName::from_static("x-goog-api-key"));
    let query = req
        .uri()
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("key="));
    [bearer, google, query]
        .into_iter()
        .flatten()
        .any(|given| same(given.trim().as_bytes(), key.as_bytes()))
}

/// Compares in time that depends on the lengths only, so response times
/// do not tell how much of a guessed key was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn same_compares_whole_keys() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
        assert!(!same(b"", b"a"));
    }
}
