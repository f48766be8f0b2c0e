//! `gemma serve` end to end on the real model, over loopback only: the
//! official OpenAI Python client, concurrent requests that must not mix,
//! hostile requests, a full queue, prefix reuse across chat turns, the
//! Google API routes, `gemma client`, and a graceful SIGTERM.
//!
//! Each test starts its own server on a free port (`--port 0`; the server
//! prints the address it bound) and kills it when dropped, failed or not.
//! The tests take turns: the machine has two cores, and the queue test
//! depends on requests being slower than their arrival.

use gemma_tests::real_model_path;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier, Mutex, MutexGuard};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_gemma");

/// Proxy settings a CI environment may carry must not catch loopback traffic.
const PROXY_VARS: [&str; 6] = [
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
];

fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

struct Server {
    child: Child,
    /// `127.0.0.1:PORT`
    addr: String,
    log: PathBuf,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("serve-{}-{n}.log", std::process::id()));
        let mut child = Command::new(BIN)
            .args(["serve", "--host", "127.0.0.1", "--port", "0"])
            .args(extra)
            .env("GEMMA_MODEL", real_model_path())
            // A developer's own key would lock these tests out.
            .env_remove("GEMMA_API_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("server log file"))
            .spawn()
            .expect("gemma serve starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut server = Server {
            child,
            addr: String::new(),
            log,
        };
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no address from gemma serve: {}", server.log_text()));
        server.addr = line
            .trim()
            .strip_prefix("gemma: listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}: {}", server.log_text()))
            .to_string();
        let (status, body) = server.get("/health");
        assert_eq!((status, body), (200, json!({"status": "ok"})));
        server
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let resp = agent()
            .get(format!("{}{path}", self.url()))
            .call()
            .expect("GET answered");
        read_response(resp)
    }

    /// POSTs JSON; returns the status, the `x-gemma-prefilled-tokens` header
    /// and the JSON body.
    fn post(&self, path: &str, body: &Value) -> (u16, Option<usize>, Value) {
        let resp = agent()
            .post(format!("{}{path}", self.url()))
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .expect("POST answered");
        let prefilled = resp
            .headers()
            .get("x-gemma-prefilled-tokens")
            .map(|v| v.to_str().unwrap().parse().unwrap());
        let (status, body) = read_response(resp);
        (status, prefilled, body)
    }

    /// POSTs JSON and returns the `data:` payloads of the event stream.
    fn post_stream(&self, path: &str, body: &Value) -> Vec<String> {
        let resp = agent()
            .post(format!("{}{path}", self.url()))
            .send(body.to_string())
            .expect("POST answered");
        assert_eq!(resp.status().as_u16(), 200);
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/event-stream"), "content-type {ct}");
        BufReader::new(resp.into_body().into_reader())
            .lines()
            .map(|l| l.unwrap())
            .filter_map(|l| l.strip_prefix("data: ").map(String::from))
            .collect()
    }

    /// The reply of a greedy chat completion of `max_tokens` to one message.
    fn chat(&self, message: &str, max_tokens: u32) -> String {
        let (status, _, body) =
            self.post("/v1/chat/completions", &chat_request(message, max_tokens));
        assert_eq!(status, 200, "{body}");
        body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Sends SIGTERM and waits up to `limit` for the process to exit.
    fn terminate(&mut self, limit: Duration) -> (std::process::ExitStatus, Duration) {
        let sent = Instant::now();
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill -TERM failed");
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, sent.elapsed());
            }
            assert!(
                sent.elapsed() < limit,
                "gemma serve still running {limit:?} after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- gemma serve log ---\n{}", self.log_text());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(300)))
        .build()
        .into()
}

fn read_response(resp: ureq::http::Response<ureq::Body>) -> (u16, Value) {
    let status = resp.status().as_u16();
    let mut text = String::new();
    resp.into_body()
        .into_reader()
        .read_to_string(&mut text)
        .unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {text:?}"));
    (status, body)
}

fn chat_request(message: &str, max_tokens: u32) -> Value {
    json!({
        "model": "gemma",
        "messages": [{"role": "user", "content": message}],
        "temperature": 0,
        "max_tokens": max_tokens,
    })
}

/// What `gemma run --chat` prints for a greedy reply, without the newline it ends with.
fn gemma_run_chat(prompt: &str, n: u32) -> String {
    let out = Command::new(BIN)
        .args(["run", "--chat", "--temperature", "0", "-n", &n.to_string()])
        .args(["--prompt", prompt])
        .env("GEMMA_MODEL", real_model_path())
        .output()
        .expect("gemma run runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.strip_suffix('\n')
        .expect("ends with a newline")
        .to_string()
}

/// A raw HTTP/1.1 exchange, for requests a client library would not send.
/// The body is written from another thread while the answer is read, since
/// the server may answer (and stop reading) before the body is all sent.
fn raw_post(addr: &str, path: &str, body: Vec<u8>) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let _ = writer
            .write_all(head.as_bytes())
            .and_then(|_| writer.write_all(&body));
    });
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    let _ = sender.join();
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let status: u16 = reply
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {reply:?}"));
    let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let body = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {body:?}"));
    (status, body)
}

fn assert_json_error(status: u16, body: &Value, what: &str) {
    assert!((400..500).contains(&status), "{what}: status {status}");
    let e = &body["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty())
            && e["type"].is_string()
            && e["code"].is_string(),
        "{what}: not an OpenAI-style error body: {body}"
    );
}

#[test]
fn openai_python_client_and_gemma_client_get_what_gemma_run_prints() {
    let _turn = one_at_a_time();
    let prompt = "Write a haiku about the sea.";
    let expected = gemma_run_chat(prompt, 16);
    assert!(!expected.is_empty());
    let server = Server::start(&[]);

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai_client.py");
    let mut py = Command::new("python3");
    py.args([script, &server.url(), prompt, &expected]);
    for v in PROXY_VARS {
        py.env_remove(v);
    }
    let out = py.output().expect("python3 runs");
    assert!(
        out.status.success(),
        "the openai client script failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let mut client = Command::new(BIN);
    client.args(["client", "--url", &server.url(), "--prompt", prompt]);
    client.args(["--temperature", "0", "--max-tokens", "16"]);
    for v in PROXY_VARS {
        client.env_remove(v);
    }
    let out = client.output().expect("gemma client runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), expected + "\n");
}

#[test]
fn gemma_client_keeps_the_conversation_across_lines_from_stdin() {
    let _turn = one_at_a_time();
    let server = Server::start(&[]);
    let mut client = Command::new(BIN);
    client.args(["client", "--url", &format!("{}/v1", server.url())]);
    client.args(["--temperature", "0", "--max-tokens", "4"]);
    for v in PROXY_VARS {
        client.env_remove(v);
    }
    let mut child = client
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Hello!\n\nHow are you?\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replies = String::from_utf8(out.stdout).unwrap();
    // The second request carried the first exchange: asked again in one
    // request, the same conversation gives the same replies.
    let first = server.chat("Hello!", 4);
    let (status, _, body) = server.post(
        "/v1/chat/completions",
        &json!({
            "messages": [
                {"role": "user", "content": "Hello!"},
                {"role": "assistant", "content": first},
                {"role": "user", "content": "How are you?"},
            ],
            "temperature": 0,
            "max_tokens": 4,
        }),
    );
    assert_eq!(status, 200, "{body}");
    let second = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(replies, format!("{first}\n{second}\n"));
    let log = server.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("request 1:") && !l.contains("(0 cached)")),
        "the second turn reused no cache:\n{log}"
    );
}

/// A greedy completion of `prompt` through `/v1/completions`.
fn complete(server: &Server, prompt: &str, max_tokens: u32) -> String {
    let req = json!({"prompt": prompt, "temperature": 0, "max_tokens": max_tokens});
    let (status, _, body) = server.post("/v1/completions", &req);
    assert_eq!(status, 200, "{body}");
    body["choices"][0]["text"].as_str().unwrap().to_string()
}

#[test]
fn fifty_concurrent_requests_each_get_their_own_output() {
    let _turn = one_at_a_time();
    const N: usize = 50;
    const MAX_TOKENS: u32 = 4;
    let server = Arc::new(Server::start(&["--queue", "64"]));
    // Counting prompts: each continuation names its own numbers, so outputs
    // that crossed requests could not pass for the right ones.
    let prompts: Vec<String> = (0..N)
        .map(|i| format!("Count: {}, {},", 17 * i + 3, 17 * i + 4))
        .collect();
    let started = Instant::now();
    let barrier = Arc::new(Barrier::new(N));
    let threads: Vec<_> = prompts
        .iter()
        .cloned()
        .map(|p| {
            let (server, barrier) = (server.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                complete(&server, &p, MAX_TOKENS)
            })
        })
        .collect();
    let together: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let concurrent_s = started.elapsed().as_secs_f64();
    for (i, p) in prompts.iter().enumerate() {
        assert_eq!(
            together[i],
            complete(&server, p, MAX_TOKENS),
            "prompt {i}: {p:?}"
        );
    }
    let distinct: std::collections::HashSet<_> = together.iter().collect();
    assert!(
        distinct.len() > N / 2,
        "too few distinct outputs to tell mixed ones apart: {together:?}"
    );
    eprintln!(
        "{N} concurrent requests in {concurrent_s:.1} s, then {N} alone in {:.1} s",
        started.elapsed().as_secs_f64() - concurrent_s
    );
}

#[test]
fn bad_requests_get_json_errors_and_the_server_stays_up() {
    let _turn = one_at_a_time();
    let server = Server::start(&[]);
    let chat = "/v1/chat/completions";

    let (status, body) = raw_post(&server.addr, chat, b"{\"messages\": [".to_vec());
    assert_json_error(status, &body, "malformed JSON");
    assert_eq!(status, 400);

    let (status, body) = raw_post(&server.addr, chat, vec![b'x'; 10 << 20]);
    assert_json_error(status, &body, "a 10 MB body");
    assert_eq!(status, 413);

    let hi = |extra: Value| {
        let mut r = chat_request("Hi", 4);
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        r
    };
    for (what, req) in [
        ("temperature -1", hi(json!({"temperature": -1}))),
        ("top_p 2", hi(json!({"top_p": 2}))),
        ("top_p 0", hi(json!({"top_p": 0}))),
        ("max_tokens 0", hi(json!({"max_tokens": 0}))),
        (
            "max_tokens beyond the context",
            hi(json!({"max_tokens": 1_000_000})),
        ),
        ("n 9", hi(json!({"n": 9}))),
        ("n 0", hi(json!({"n": 0}))),
        ("n 2 streamed", hi(json!({"n": 2, "stream": true}))),
        ("no messages", json!({"messages": []})),
        (
            "an unknown role",
            json!({"messages": [{"role": "wizard", "content": "x"}]}),
        ),
        ("messages not a list", json!({"messages": "Hi"})),
        ("stop not a string", hi(json!({"stop": 7}))),
    ] {
        let (status, _, body) = server.post(chat, &req);
        assert_json_error(status, &body, what);
    }
    let (status, _, body) = server.post("/v1/completions", &json!({"prompt": "Hi", "top_k": -1}));
    assert_json_error(status, &body, "top_k -1");

    // A prompt longer than the context.
    let small = Server::start(&["--context", "64"]);
    let (status, _, body) = small.post(chat, &chat_request(&"word ".repeat(100), 4));
    assert_json_error(status, &body, "a prompt longer than the context");
    assert_eq!(body["error"]["code"], "context_length_exceeded");

    // The operator's limits on prompt and reply lengths.
    let limited = Server::start(&["--max-prompt-tokens", "40", "--max-tokens", "3"]);
    let (status, _, body) = limited.post(chat, &chat_request(&"word ".repeat(60), 2));
    assert_json_error(status, &body, "a prompt over --max-prompt-tokens");
    assert_eq!(body["error"]["code"], "prompt_too_long");
    let (status, _, body) = limited.post(chat, &chat_request("Hi", 4));
    assert_json_error(status, &body, "max_tokens over --max-tokens");
    assert_eq!(body["error"]["param"], "max_tokens");
    let (status, _, body) = limited.post(
        chat,
        &json!({"messages": [{"role": "user", "content": "Hi"}], "temperature": 0}),
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body["usage"]["completion_tokens"].as_u64().unwrap() <= 3,
        "{body}"
    );

    let (status, body) = server.get("/no/such/route");
    assert_json_error(status, &body, "an unknown route");
    assert_eq!(server.get("/health"), (200, json!({"status": "ok"})));
    assert!(!server.chat("Hi", 2).is_empty(), "still generates");
}

#[test]
fn a_full_queue_answers_503_while_queued_requests_succeed() {
    let _turn = one_at_a_time();
    const N: usize = 6;
    let server = Arc::new(Server::start(&["--queue", "1"]));
    let barrier = Arc::new(Barrier::new(N));
    let threads: Vec<_> = (0..N)
        .map(|i| {
            let (server, barrier) = (server.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                server.post(
                    "/v1/chat/completions",
                    &chat_request(&format!("Tell me a long story about dragon {i}."), 24),
                )
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let ok = results.iter().filter(|r| r.0 == 200).count();
    let busy: Vec<_> = results.iter().filter(|r| r.0 == 503).collect();
    assert_eq!(ok + busy.len(), N, "only 200 and 503 expected: {results:?}");
    assert!(
        ok >= 1 && !busy.is_empty(),
        "{ok} succeeded, {} refused",
        busy.len()
    );
    for (_, _, body) in busy {
        assert_eq!(body["error"]["code"], "queue_full", "{body}");
    }
    assert_eq!(server.get("/health"), (200, json!({"status": "ok"})));
}

#[test]
fn a_follow_up_chat_turn_reuses_the_cached_prefix() {
    let _turn = one_at_a_time();
    let server = Server::start(&[]);
    let first = "Name three fruits.";
    let (status, prefilled, body) = server.post("/v1/chat/completions", &chat_request(first, 8));
    assert_eq!(status, 200, "{body}");
    let prompt1 = body["usage"]["prompt_tokens"].as_u64().unwrap() as usize;
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(prefilled, Some(prompt1));
    let reply = body["choices"][0]["message"]["content"].as_str().unwrap();

    let follow_up = json!({
        "model": "gemma",
        "messages": [
            {"role": "user", "content": first},
            {"role": "assistant", "content": reply},
            {"role": "user", "content": "And three vegetables?"},
        ],
        "temperature": 0,
        "max_tokens": 4,
    });
    let (status, prefilled, body) = server.post("/v1/chat/completions", &follow_up);
    assert_eq!(status, 200, "{body}");
    let prompt2 = body["usage"]["prompt_tokens"].as_u64().unwrap() as usize;
    let cached = body["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap() as usize;
    let prefilled = prefilled.expect("x-gemma-prefilled-tokens header");
    assert!(
        cached >= prompt1 - 1,
        "cached {cached} of the first prompt's {prompt1}"
    );
    assert!(prefilled < prompt2, "prefilled {prefilled} of {prompt2}");
    assert_eq!(cached + prefilled, prompt2);
}

#[test]
fn google_generate_content_streamed_and_not() {
    let _turn = one_at_a_time();
    let server = Server::start(&[]);
    let req = json!({
        "contents": [{"role": "user", "parts": [{"text": "Why is the sky blue?"}]}],
        "generationConfig": {"temperature": 0, "topP": 1, "topK": 1, "maxOutputTokens": 6},
    });
    let (status, _, body) = server.post("/v1beta/models/gemma:generateContent", &req);
    assert_eq!(status, 200, "{body}");
    let cand = &body["candidates"][0];
    assert_eq!(cand["content"]["role"], "model");
    let text = cand["content"]["parts"][0]["text"].as_str().unwrap();
    assert!(!text.is_empty());
    assert!(["STOP", "MAX_TOKENS"].contains(&cand["finishReason"].as_str().unwrap()));
    let u = &body["usageMetadata"];
    assert_eq!(
        u["totalTokenCount"].as_u64().unwrap(),
        u["promptTokenCount"].as_u64().unwrap() + u["candidatesTokenCount"].as_u64().unwrap()
    );
    assert_eq!(text, server.chat("Why is the sky blue?", 6));

    let chunks = server.post_stream("/v1beta/models/gemma:streamGenerateContent?alt=sse", &req);
    let chunks: Vec<Value> = chunks
        .iter()
        .map(|c| serde_json::from_str(c).unwrap())
        .collect();
    let streamed: String = chunks
        .iter()
        .map(|c| {
            c["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(streamed, text);
    assert_eq!(
        chunks.last().unwrap()["candidates"][0]["finishReason"],
        cand["finishReason"]
    );
}

#[test]
fn sigterm_ends_an_open_stream_and_exits_within_seconds() {
    let _turn = one_at_a_time();
    let mut server = Server::start(&[]);
    let resp = agent()
        .post(format!("{}/v1/chat/completions", server.url()))
        .send(
            json!({
                "messages": [{"role": "user", "content": "Count to one thousand."}],
                "max_tokens": 2000,
                "stream": true,
            })
            .to_string(),
        )
        .unwrap();
    let mut lines = BufReader::new(resp.into_body().into_reader()).lines();
    // Wait for generation to be under way.
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("data: "), "{first}");
    let (status, took) = server.terminate(Duration::from_secs(10));
    assert!(status.success(), "exit status {status}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.len() < 4000, "the stream ran on after SIGTERM");
    assert!(server.log_text().contains("shutting down"));
}

/// A chat request without `max_tokens` ends at the cap docs/SERVER.md
/// documents (512) rather than running to the end of the context; a
/// server started with `--max-tokens` uses that instead. The default
/// model, a base model that seldom stops by itself, says what it is.
#[test]
fn a_request_without_max_tokens_ends_at_the_documented_default() {
    const DOCUMENTED_DEFAULT: u64 = 512;
    let _turn = one_at_a_time();
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/SERVER.md")).unwrap();
    assert!(
        docs.contains(&format!(
            "a request without `max_tokens` gets {DOCUMENTED_DEFAULT}"
        )),
        "docs/SERVER.md no longer documents the default of {DOCUMENTED_DEFAULT}"
    );
    let request = json!({
        "messages": [{"role": "user", "content": "Count from 1 to 1000, one number per line."}],
        "temperature": 0,
    });
    let ask = |server: &Server| {
        let (status, _, body) = server.post("/v1/chat/completions", &request);
        assert_eq!(status, 200, "{body}");
        (
            body["choices"][0]["finish_reason"].clone(),
            body["usage"]["completion_tokens"].as_u64().unwrap(),
        )
    };

    let server = Server::start(&[]);
    let (_, models) = server.get("/v1/models");
    if gemma_platform::fetch::is_default_model(&real_model_path()) {
        let description = models["data"][0]["description"].as_str().unwrap();
        assert!(description.contains("base (pretrained)"), "{models}");
    }
    assert_eq!(ask(&server), (json!("length"), DOCUMENTED_DEFAULT));
    drop(server);

    let server = Server::start(&["--max-tokens", "40"]);
    assert_eq!(ask(&server), (json!("length"), 40));
}

/// A field the server does not implement is refused with a 400 that names
/// it, at the top of a request and inside messages and Google's config;
/// `model` with any value and fields that are `null` are fine.
#[test]
fn unsupported_fields_are_refused_by_name() {
    let _turn = one_at_a_time();
    let server = Server::start(&[]);
    let with = |extra: Value| {
        let mut r = chat_request("Hi", 2);
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        r
    };
    for (field, req) in [
        ("logprobs", with(json!({"logprobs": true}))),
        (
            "response_format",
            with(json!({"response_format": {"type": "json_object"}})),
        ),
        ("tools", with(json!({"tools": []}))),
    ] {
        let (status, _, body) = server.post("/v1/chat/completions", &req);
        assert_eq!(status, 400, "{field}: {body}");
        assert_eq!(body["error"]["code"], "unsupported_parameter", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("`{field}`")), "{message}");
    }
    let (status, _, body) = server.post(
        "/v1/completions",
        &json!({"prompt": "Hi", "max_tokens": 2, "echo": true}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("`echo`"));

    let (status, _, body) = server.post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "Hi", "name": "ann"}], "max_tokens": 2}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`name`"),
        "{body}"
    );

    let (status, _, body) = server.post(
        "/v1beta/models/gemma:generateContent",
        &json!({"contents": [{"parts": [{"text": "Hi"}]}],
                "generationConfig": {"maxOutputTokens": 2, "responseMimeType": "application/json"}}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("responseMimeType"),
        "{body}"
    );

    // What a client echoes back from a reply: nulls ask for nothing.
    let (status, _, body) = server.post(
        "/v1/chat/completions",
        &json!({"model": "anything", "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello", "refusal": null, "tool_calls": null},
            {"role": "user", "content": "Bye"}],
            "max_tokens": 2, "logprobs": null, "temperature": 0}),
    );
    assert_eq!(status, 200, "{body}");
}

/// The model is found by id on both APIs, and `:countTokens` counts what
/// `:generateContent` then reports as its prompt.
#[test]
fn models_are_found_by_id_and_count_tokens_matches_the_prompt() {
    let _turn = one_at_a_time();
    let server = Server::start(&[]);
    let (_, list) = server.get("/v1/models");
    let id = list["data"][0]["id"].as_str().unwrap().to_string();
    for name in [id.as_str(), "gemma"] {
        let (status, model) = server.get(&format!("/v1/models/{name}"));
        assert_eq!(status, 200, "{model}");
        assert_eq!(model["id"], id.as_str(), "{model}");
        assert_eq!(model["object"], "model");
        let (status, model) = server.get(&format!("/v1beta/models/{name}"));
        assert_eq!(status, 200, "{model}");
        assert_eq!(model["name"], format!("models/{id}"), "{model}");
    }

    let contents = json!([
        {"role": "user", "parts": [{"text": "Name three rivers."}]},
        {"role": "model", "parts": [{"text": "The Nile, the Amazon"}]},
        {"role": "user", "parts": [{"text": "And one more?"}]},
    ]);
    let system = json!({"parts": [{"text": "Answer briefly."}]});
    let (status, _, counted) = server.post(
        "/v1beta/models/gemma:countTokens",
        &json!({"contents": contents, "systemInstruction": system}),
    );
    assert_eq!(status, 200, "{counted}");
    let (status, _, generated) = server.post(
        "/v1beta/models/gemma:generateContent",
        &json!({"contents": contents, "systemInstruction": system,
                "generationConfig": {"maxOutputTokens": 1, "temperature": 0}}),
    );
    assert_eq!(status, 200, "{generated}");
    let prompt_tokens = generated["usageMetadata"]["promptTokenCount"]
        .as_u64()
        .unwrap();
    assert!(prompt_tokens > 20, "{generated}");
    assert_eq!(
        counted["totalTokens"].as_u64(),
        Some(prompt_tokens),
        "{counted}"
    );
}

/// With `--api-key-file`, every route but `/health` needs the key, in any
/// of the three places clients put it; `gemma client --api-key` sends it.
#[test]
fn an_api_key_locks_every_route_but_health() {
    let _turn = one_at_a_time();
    const KEY: &str = "sk-test-0123456789";
    let file =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("api-key-{}", std::process::id()));
    std::fs::write(&file, format!("{KEY}\n")).unwrap();
    let server = Server::start(&["--api-key-file", file.to_str().unwrap()]);
    let url = server.url();
    let get = |path: &str, header: Option<(&str, String)>| {
        let mut req = agent().get(format!("{url}{path}"));
        if let Some((name, value)) = header {
            req = req.header(name, value);
        }
        read_response(req.call().expect("GET answered"))
    };
    assert_eq!(get("/health", None).0, 200);
    let (status, body) = get("/v1/models", None);
    assert_eq!(status, 401, "{body}");
    assert_json_error(status, &body, "no key");
    assert_eq!(
        get(
            "/v1/models",
            Some(("Authorization", "Bearer sk-wrong".into()))
        )
        .0,
        401
    );
    assert_eq!(
        get(
            "/v1/models",
            Some(("Authorization", format!("Bearer {KEY}")))
        )
        .0,
        200
    );
    assert_eq!(
        get("/v1beta/models", Some(("x-goog-api-key", KEY.into()))).0,
        200
    );
    assert_eq!(get(&format!("/v1beta/models?key={KEY}"), None).0, 200);
    assert_eq!(
        get("/no/such/route", None).0,
        401,
        "no route is told apart without the key"
    );

    let client = |key: Option<&str>| {
        let mut c = Command::new(BIN);
        c.args([
            "client",
            "--url",
            &url,
            "--prompt",
            "Hi",
            "--max-tokens",
            "2",
        ]);
        c.args(["--temperature", "0"]);
        if let Some(k) = key {
            c.args(["--api-key", k]);
        }
        c.env_remove("OPENAI_API_KEY");
        for v in PROXY_VARS {
            c.env_remove(v);
        }
        c.output().expect("gemma client runs")
    };
    let out = client(Some(KEY));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = client(None);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("API key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_file(file);
}

/// `/metrics` parses with Prometheus' own parser (`prometheus_client`), and
/// its counters match the requests this test made.
#[test]
fn metrics_parse_with_prometheus_and_count_the_requests_made() {
    let _turn = one_at_a_time();
    let server = Server::start(&[]);
    let chat = "/v1/chat/completions";
    let mut generated = 0;
    let mut prompt = 0;
    for (i, message) in ["Hi", "Name a colour."].into_iter().enumerate() {
        let (status, _, body) = server.post(chat, &chat_request(message, 3 + i as u32));
        assert_eq!(status, 200, "{body}");
        generated += body["usage"]["completion_tokens"].as_u64().unwrap();
        prompt += body["usage"]["prompt_tokens"].as_u64().unwrap();
    }
    let (status, _, _) = server.post(chat, &json!({"messages": []}));
    assert_eq!(status, 400);
    assert_eq!(server.get("/no/such/route").0, 404);

    let text = agent()
        .get(format!("{}/metrics", server.url()))
        .call()
        .expect("GET /metrics answered")
        .into_body()
        .read_to_string()
        .unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/prometheus_parse.py");
    let mut py = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    py.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client could not parse /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples: Vec<(String, BTreeMap<String, String>, f64)> =
        serde_json::from_slice(&out.stdout).unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| {
        samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && labels.len() == l.len()
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.2)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
    };
    let requests = |route, status| {
        value(
            "gemma_requests_total",
            &[("route", route), ("status", status)],
        )
    };
    assert_eq!(requests(chat, "200"), 2.0);
    assert_eq!(requests(chat, "400"), 1.0);
    assert_eq!(requests("unmatched", "404"), 1.0);
    // Server::start asked for /health once.
    assert_eq!(requests("/health", "200"), 1.0);
    assert_eq!(value("gemma_generated_tokens_total", &[]), generated as f64);
    assert_eq!(
        value("gemma_prompt_tokens_prefilled_total", &[])
            + value("gemma_prompt_tokens_cached_total", &[]),
        prompt as f64
    );
    assert_eq!(value("gemma_queue_length", &[]), 0.0);
    assert_eq!(value("gemma_active_sequences", &[]), 0.0);
    assert!(value("gemma_kv_cache_bytes", &[]) > 0.0);
    assert_eq!(value("gemma_time_to_first_token_seconds_count", &[]), 2.0);
    assert_eq!(
        value("gemma_time_per_output_token_seconds_count", &[]),
        (generated - 2) as f64
    );
}

/// `logit_bias` and the presence and frequency penalties change what is
/// generated as OpenAI defines them, and values outside its ranges (or
/// tokens outside the vocabulary) are refused naming the field.
#[test]
fn logit_bias_and_penalties_steer_greedy_completions() {
    let _turn = one_at_a_time();
    let out = Command::new(BIN)
        .args(["tokenize", "--text", " banana", "--json"])
        .env("GEMMA_MODEL", real_model_path())
        .output()
        .unwrap();
    let ids: Vec<u32> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ids.len(), 1, "one token: {ids:?}");
    let server = Server::start(&[]);
    let complete = |extra: Value| {
        let mut req =
            json!({"prompt": "1, 1, 1, 1, 1, 1, 1, 1,", "max_tokens": 12, "temperature": 0});
        for (k, v) in extra.as_object().unwrap() {
            req[k] = v.clone();
        }
        let (status, _, body) = server.post("/v1/completions", &req);
        (status, body)
    };
    let text = |body: &Value| body["choices"][0]["text"].as_str().unwrap().to_string();
    // A bias of 100 makes the token the only choice.
    let (status, body) = complete(json!({"logit_bias": {ids[0].to_string(): 100}}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(text(&body), " banana".repeat(12));
    // The plain continuation repeats itself; a frequency penalty on what
    // was generated steers it elsewhere. (A presence penalty of 2 is too
    // little against this continuation's margin; both penalties are checked
    // against a reference loop in platform's turn tests.)
    let (_, plain) = complete(json!({}));
    let plain = text(&plain);
    assert!(plain.matches('1').count() >= 3, "{plain:?}");
    let (status, body) = complete(json!({"frequency_penalty": 2.0}));
    assert_eq!(status, 200, "{body}");
    assert_ne!(text(&body), plain);
    let (status, body) = complete(json!({"presence_penalty": 2.0, "frequency_penalty": 0.5}));
    assert_eq!(status, 200, "{body}");
    for (field, extra) in [
        ("presence_penalty", json!({"presence_penalty": 2.5})),
        ("frequency_penalty", json!({"frequency_penalty": -3})),
        ("logit_bias", json!({"logit_bias": {"999999999": 1}})),
        ("logit_bias", json!({"logit_bias": {"5": 101}})),
        ("logit_bias", json!({"logit_bias": {"x": 1}})),
        ("logit_bias", json!({"logit_bias": {"5": 60, "05": 60}})),
    ] {
        let (status, body) = complete(extra);
        assert_eq!(status, 400, "{field}: {body}");
        assert_eq!(body["error"]["param"], field, "{body}");
    }
}

/// Google's `safetySettings` are accepted and ignored (no classifier runs;
/// documented), but must be well formed; `generationConfig`'s penalties
/// are taken and checked like OpenAI's.
#[test]
fn google_safety_settings_are_accepted_and_penalties_checked() {
    let _turn = one_at_a_time();
    let server = Server::start(&[]);
    let route = "/v1beta/models/gemma:generateContent";
    let req = |extra: Value| {
        let mut r = json!({"contents": [{"parts": [{"text": "Hi"}]}],
                           "generationConfig": {"maxOutputTokens": 2, "temperature": 0}});
        for (k, v) in extra.as_object().unwrap() {
            if k == "generationConfig" {
                for (ck, cv) in v.as_object().unwrap() {
                    r[k][ck] = cv.clone();
                }
            } else {
                r[k] = v.clone();
            }
        }
        server.post(route, &r)
    };
    let safety = json!({"safetySettings": [
        {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}
    ]});
    let (status, _, body) = req(safety);
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = req(json!({"safetySettings": [{"category": "X", "level": 1}]}));
    assert_eq!(status, 400, "{body}");
    let (status, _, body) = req(json!({"generationConfig": {"frequencyPenalty": 1.0}}));
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = req(json!({"generationConfig": {"presencePenalty": 3.0}}));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "presencePenalty", "{body}");
}

/// `/v1/embeddings` in floats: a unit vector of the model's width per
/// input, the same for the same text; inputs it cannot take are refused
/// naming the field.
#[test]
fn embeddings_are_unit_vectors_and_bad_inputs_are_refused() {
    let _turn = one_at_a_time();
    let server = Server::start(&["--max-prompt-tokens", "64"]);
    let (status, _, body) = server.post(
        "/v1/embeddings",
        &json!({"input": ["Paris is in France.", "Paris is in France."], "encoding_format": "float"}),
    );
    assert_eq!(status, 200, "{body}");
    let vecs: Vec<Vec<f64>> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            d["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(vecs.len(), 2);
    assert_eq!(vecs[0].len(), 640, "Gemma 3 270M's width");
    let norm = vecs[0].iter().map(|v| v * v).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    assert_eq!(vecs[0], vecs[1]);
    assert_eq!(body["data"][1]["index"], 1);
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 4);
    let long = "word ".repeat(100);
    for (field, req) in [
        ("input", json!({"input": []})),
        ("input", json!({"input": long})),
        (
            "encoding_format",
            json!({"input": "x", "encoding_format": "int8"}),
        ),
        ("", json!({"input": [[1, 2, 3]]})),
        ("", json!({"input": "x", "dimensions": 8})),
    ] {
        let (status, _, body) = server.post("/v1/embeddings", &req);
        assert_eq!(status, 400, "{req}: {body}");
        if !field.is_empty() {
            assert_eq!(body["error"]["param"], field, "{body}");
        }
    }
}

/// `n` choices, generated one after another, choice i with seed + i: the
/// same request gives the same choices, and choice 0 is what the request
/// without `n` gives.
#[test]
fn n_choices_come_back_in_order_and_repeat_with_the_seed() {
    let _turn = one_at_a_time();
    let server = Server::start(&[]);
    let ask = |n: Option<u32>| {
        let mut req =
            json!({"prompt": "Once upon a time", "max_tokens": 6, "temperature": 1.0, "seed": 11});
        if let Some(n) = n {
            req["n"] = json!(n);
        }
        let (status, _, body) = server.post("/v1/completions", &req);
        assert_eq!(status, 200, "{body}");
        body
    };
    let three = ask(Some(3));
    let texts: Vec<&str> = three["choices"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            assert_eq!(c["index"], i);
            c["text"].as_str().unwrap()
        })
        .collect();
    assert_eq!(texts.len(), 3);
    assert!(texts[0] != texts[1] || texts[1] != texts[2], "{texts:?}");
    assert_eq!(ask(Some(3))["choices"], three["choices"]);
    assert_eq!(ask(None)["choices"][0]["text"], texts[0]);
    let completion = three["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(completion > 6 && completion <= 18, "{}", three["usage"]);
    // The chat route too.
    let mut chat = chat_request("Hi", 3);
    chat["n"] = json!(2);
    let (status, _, body) = server.post("/v1/chat/completions", &chat);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"].as_array().unwrap().len(), 2);
}
