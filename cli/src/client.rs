//! `gemma client`: a chat client for any OpenAI-compatible server.
//!
//! It keeps the conversation (the server is stateless as far as the API
//! goes; `gemma serve` reuses its cache because the history is resent),
//! asks for a streamed reply and prints each `choices[0].delta.content` as
//! it arrives.

use clap::Args;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::time::Duration;

type Result<T> = std::result::Result<T, String>;

/// `gemma client`'s options.
#[derive(Args)]
pub struct ClientArgs {
    /// The server's base URL (a trailing /v1 is allowed)
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Send one message, stream the reply and exit [default: interactive, reading lines from stdin]
    #[arg(long, short = 'p')]
    pub prompt: Option<String>,
    /// Model name to request [default: the first one the server lists]
    #[arg(long)]
    pub model: Option<String>,
    /// A system message to start the conversation with
    #[arg(long)]
    pub system: Option<String>,
    /// Sampling temperature [default: the server's]
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Most tokens per reply [default: the server's]
    #[arg(short = 'n', long = "max-tokens")]
    pub max_tokens: Option<u32>,
    /// Sent as a bearer token [default: $OPENAI_API_KEY]
    #[arg(long)]
    pub api_key: Option<String>,
}

/// Most bytes of an error response that are read.
const ERROR_BODY_LIMIT: u64 = 64 << 10;

struct Api {
    agent: ureq::Agent,
    /// Base URL without a trailing `/v1`.
    base: String,
    key: Option<String>,
}

impl Api {
    fn new(url: &str, key: Option<String>) -> Self {
        let base = url.trim_end_matches('/');
        let base = base.strip_suffix("/v1").unwrap_or(base).to_string();
        let agent = ureq::Agent::config_builder()
            // Error statuses come back as responses, so their JSON message can be shown.
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .build()
            .into();
        Self { agent, base, key }
    }

    fn auth(&self) -> Option<String> {
        self.key.as_ref().map(|k| format!("Bearer {k}"))
    }

    /// A failed request as one line: a server that cannot be reached is
    /// named with what to check; anything else is "URL: error".
    fn request_error(&self, url: &str, e: ureq::Error) -> String {
        use std::io::ErrorKind;
        let unreachable = match &e {
            ureq::Error::Io(io) => matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::NotConnected
                    | ErrorKind::AddrNotAvailable
                    | ErrorKind::TimedOut
            ),
            ureq::Error::HostNotFound
            | ureq::Error::ConnectionFailed
            | ureq::Error::Timeout(ureq::Timeout::Connect | ureq::Timeout::Resolve) => true,
            _ => false,
        };
        if unreachable {
            format!(
                "no server answers: is `gemma serve` running at {}? \
                 (--url sets the address; {e})",
                self.base
            )
        } else {
            format!("{url}: {e}")
        }
    }

    /// The first model the server lists.
    fn first_model(&self) -> Result<String> {
        let url = format!("{}/v1/models", self.base);
        let mut req = self.agent.get(&url);
        if let Some(a) = self.auth() {
            req = req.header("Authorization", a);
        }
        let resp = req.call().map_err(|e| self.request_error(&url, e))?;
        let body = read_json(resp, &url)?;
        body["data"][0]["id"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| format!("{url}: no model listed (pass --model)"))
    }

    /// Sends the conversation, streams the reply to `out` and returns it.
    fn chat(&self, body: &Value, out: &mut dyn Write) -> Result<String> {
        let url = format!("{}/v1/chat/completions", self.base);
        let mut req = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json")
            .header("Accept", "text/event-stream");
        if let Some(a) = self.auth() {
            req = req.header("Authorization", a);
        }
        let resp = req
            .send(body.to_string())
            .map_err(|e| self.request_error(&url, e))?;
        if !resp.status().is_success() {
            return Err(error_message(resp, &url));
        }
        let mut reply = String::new();
        let reader = BufReader::new(resp.into_body().into_reader());
        for data in sse_events(reader) {
            let data = data.map_err(|e| format!("{url}: reading the stream: {e}"))?;
            if data == "[DONE]" {
                break;
            }
            let chunk: Value = serde_json::from_str(&data)
                .map_err(|e| format!("{url}: a stream chunk is not JSON ({e}): {data}"))?;
            if let Some(err) = chunk.get("error") {
                return Err(format!(
                    "{url}: {}",
                    err["message"].as_str().unwrap_or("error")
                ));
            }
            if let Some(text) = chunk["choices"][0]["delta"]["content"].as_str() {
                out.write_all(text.as_bytes())
                    .and_then(|_| out.flush())
                    .map_err(|e| format!("writing the reply: {e}"))?;
                reply.push_str(text);
            }
        }
        writeln!(out).map_err(|e| format!("writing the reply: {e}"))?;
        Ok(reply)
    }
}

fn read_json(resp: ureq::http::Response<ureq::Body>, url: &str) -> Result<Value> {
    if !resp.status().is_success() {
        return Err(error_message(resp, url));
    }
    let mut text = String::new();
    resp.into_body()
        .into_reader()
        .read_to_string(&mut text)
        .map_err(|e| format!("{url}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("{url}: the answer is not JSON: {e}"))
}

/// "STATUS: message" from an error response, with the message from an
/// OpenAI-style `{"error": {"message"}}` body when there is one.
fn error_message(resp: ureq::http::Response<ureq::Body>, url: &str) -> String {
    let status = resp.status();
    let mut text = String::new();
    let _ = resp
        .into_body()
        .into_reader()
        .take(ERROR_BODY_LIMIT)
        .read_to_string(&mut text);
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(String::from))
        .unwrap_or(text);
    format!("{url}: {status}: {}", message.trim())
}

/// The data of each server-sent event: `data:` lines joined by newlines, an
/// event ending at a blank line (or at the end of the stream).
fn sse_events(reader: impl BufRead) -> impl Iterator<Item = std::io::Result<String>> {
    let mut lines = reader.lines();
    std::iter::from_fn(move || {
        let mut data: Option<String> = None;
        loop {
            match lines.next() {
                None => return data.map(Ok),
                Some(Err(e)) => return Some(Err(e)),
                Some(Ok(line)) => {
                    if line.is_empty() {
                        if data.is_some() {
                            return data.map(Ok);
                        }
                        continue;
                    }
                    if let Some(d) = line.strip_prefix("data:") {
                        let d = d.strip_prefix(' ').unwrap_or(d);
                        match &mut data {
                            Some(acc) => {
                                acc.push('\n');
                                acc.push_str(d);
                            }
                            None => data = Some(d.to_string()),
                        }
                    }
                    // Comments, `event:`, `id:` and `retry:` lines carry nothing we use.
                }
            }
        }
    })
}

pub fn client(a: ClientArgs) -> Result<()> {
    let key = a
        .api_key
        .clone()
        .or_else(|| std::env::var("OPENAI_API_KEY").ok());
    let api = Api::new(&a.url, key);
    let model = match &a.model {
        Some(m) => m.clone(),
        None => api.first_model()?,
    };
    let mut messages: Vec<Value> = Vec::new();
    if let Some(s) = &a.system {
        messages.push(json!({"role": "system", "content": s}));
    }
    let request = |messages: &[Value]| {
        let mut body = json!({"model": model, "messages": messages, "stream": true});
        if let Some(t) = a.temperature {
            body["temperature"] = json!(t);
        }
        if let Some(n) = a.max_tokens {
            body["max_tokens"] = json!(n);
        }
        body
    };
    let mut stdout = std::io::stdout();

    if let Some(p) = &a.prompt {
        messages.push(json!({"role": "user", "content": p}));
        api.chat(&request(&messages), &mut stdout)?;
        return Ok(());
    }

    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    if interactive {
        eprintln!(
            "gemma: chatting with {model} at {} (end with Ctrl-D)",
            api.base
        );
    }
    let mut line = String::new();
    loop {
        if interactive {
            eprint!("> ");
        }
        line.clear();
        let n = stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("reading stdin: {e}"))?;
        if n == 0 {
            return Ok(());
        }
        let text = line.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        messages.push(json!({"role": "user", "content": text}));
        match api.chat(&request(&messages), &mut stdout) {
            Ok(reply) => messages.push(json!({"role": "assistant", "content": reply})),
            Err(e) if interactive => {
                // Forget the unanswered message and let the user try again.
                messages.pop();
                eprintln!("gemma: error: {e}");
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sse_events;

    #[test]
    fn sse_events_join_data_lines_and_skip_everything_else() {
        let stream =
            ": comment\n\ndata: {\"a\":1}\n\nevent: x\ndata: one\ndata:two\n\ndata: [DONE]";
        let got: Vec<String> = sse_events(stream.as_bytes()).map(Result::unwrap).collect();
        assert_eq!(got, ["{\"a\":1}", "one\ntwo", "[DONE]"]);
    }
}
