//! `gemma chat` at a terminal, driven through a pseudo-terminal: Ctrl-C
//! (byte 0x03, which the terminal driver turns into SIGINT) stops a reply
//! and keeps the conversation, Ctrl-C at the prompt leaves with status 130,
//! end of input ends the prompt's line, and the default model announces
//! itself as a base model.
//!
//! The child runs on the default model path: `GEMMA_MODEL` is removed and
//! `GEMMA_RS_CACHE` names a directory whose default model file links to the
//! real model. Greedy replies of this base model to these questions run to
//! the token cap, so a reply is always still going when Ctrl-C comes.
//!
//! Echo is off on the pty (rexpect turns it off), so the output is exactly
//! what chat writes: replies on stdout and everything else on stderr, both
//! on the terminal, with `\n` written as `\r\n`.
#![cfg(unix)]

use gemma_tests::{encode_template, real_model_path, user_turn};
use rexpect::process::WaitStatus;
use rexpect::session::{spawn_command, PtySession};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const FIRST: &str = "What is the capital of France?";
const SECOND: &str = "And of Italy?";
/// Far more than a test waits for: a reply ends only by Ctrl-C.
const LONG: &str = "2000";
/// Longest wait for any one expected output; a hang fails the test.
const TIMEOUT_MS: u64 = 120_000;
const BANNER: &str = "the default model is Gemma 3 270M (Q4_K_M), a base (pretrained) model";
/// One `--stats` line: prefilled, reused and generated tokens.
const STATS: &str = r"\[prefill (\d+) tokens \((\d+) reused\), (\d+) tokens, [0-9.]+ tok/s\]";

/// A cache directory holding the real model under the default model's
/// name, so that chat resolves the default path without fetching. The link
/// is made under a temporary name and renamed into place, so test processes
/// running at once each see a whole one.
fn default_cache() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("chat-pty-cache");
        std::fs::create_dir_all(&dir).unwrap();
        let tmp = dir.join(format!(".link-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(real_model_path(), &tmp).unwrap();
        std::fs::rename(&tmp, dir.join(gemma_platform::fetch::DEFAULT_MODEL_FILE)).unwrap();
        dir
    })
}

/// `gemma chat ARGS` on the default model, in a pseudo-terminal.
fn spawn_chat(args: &[&str]) -> PtySession {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gemma"));
    cmd.arg("chat")
        .args(args)
        .env_remove("GEMMA_MODEL")
        .env("GEMMA_RS_CACHE", default_cache());
    spawn_command(cmd, Some(TIMEOUT_MS)).expect("gemma chat starts in a pty")
}

/// Waits for the banner lines and the first prompt; returns what came
/// before the prompt.
fn first_prompt(p: &mut PtySession) -> String {
    p.exp_string("> ").expect("the first prompt")
}

/// The exit status, waiting at most `TIMEOUT_MS`.
fn exit_status(p: &PtySession) -> WaitStatus {
    let deadline = Instant::now() + Duration::from_millis(TIMEOUT_MS);
    loop {
        match p.process().status() {
            Some(WaitStatus::StillAlive) | None if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Some(status) => return status,
            None => panic!("gemma chat did not exit within {TIMEOUT_MS} ms"),
        }
    }
}

/// Output as the bytes chat wrote (rexpect reads each byte as one char),
/// with the terminal's `\r\n` back to `\n`.
fn written(s: &str) -> String {
    let bytes: Vec<u8> = s.chars().map(|c| c as u32 as u8).collect();
    String::from_utf8_lossy(&bytes).replace("\r\n", "\n")
}

/// Waits for some of a reply: a few dozen characters.
fn some_reply(p: &mut PtySession) -> String {
    let (before, text) = p.exp_regex("(?s)^.{40}").expect("a reply starts");
    assert_eq!(before, "");
    text
}

/// Waits for the `--stats` line that ends a turn, then the prompt; returns
/// the rest of the reply and the line's `(prefilled, reused, generated)`.
fn turn_end(p: &mut PtySession) -> (String, (usize, usize, usize)) {
    let (rest, line) = p.exp_regex(STATS).expect("the turn's --stats line");
    let nums: Vec<usize> = regex_numbers(&line);
    let between = p.exp_string("> ").expect("the prompt after the turn");
    assert_eq!(
        between, "\r\n",
        "only the stats line ends before the prompt"
    );
    (rest, (nums[0], nums[1], nums[2]))
}

fn regex_numbers(line: &str) -> Vec<usize> {
    line.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect()
}

#[test]
fn ctrl_c_stops_a_reply_and_the_conversation_goes_on() {
    let saved = default_cache().join(format!("interrupted-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&saved);
    let mut p = spawn_chat(&["--temperature", "0", "-n", LONG, "--stats"]);
    let opening = first_prompt(&mut p);
    assert!(opening.contains(BANNER), "{opening:?}");

    // The first reply, stopped by Ctrl-C.
    p.send_line(FIRST).unwrap();
    let start = some_reply(&mut p);
    p.send_control('c').unwrap();
    let (rest, (prefilled1, reused1, generated1)) = turn_end(&mut p);
    let printed1 = written(&format!("{start}{rest}"));
    assert_eq!(reused1, 0);
    assert_eq!(prefilled1, 1 + encode_template(&user_turn(FIRST)).len());
    assert!(
        (1..LONG.parse().unwrap()).contains(&generated1),
        "Ctrl-C cut the reply short: {generated1} tokens"
    );

    // The second turn continues the first: everything but the first reply's
    // last token (sampled, never fed) comes from the cache, and what is new
    // is that token, the `<end_of_turn>\n` that closes the reply and the
    // new user turn.
    p.send_line(SECOND).unwrap();
    some_reply(&mut p);
    p.send_control('c').unwrap();
    let (_, (prefilled2, reused2, generated2)) = turn_end(&mut p);
    assert_eq!(reused2, prefilled1 + generated1 - 1, "the history was kept");
    assert_eq!(
        prefilled2,
        1 + encode_template(&format!("<end_of_turn>\n{}", user_turn(SECOND))).len(),
        "the interrupted reply was closed as the model's turn"
    );
    assert!(generated2 >= 1);

    // The saved conversation holds both turns, each reply closed.
    p.send_line(&format!("/save {}", saved.display())).unwrap();
    let note = p.exp_string("\r\n> ").expect("/save's note and the prompt");
    let close = encode_template("<end_of_turn>\n");
    let total = reused2 + prefilled2 + generated2 + close.len();
    assert!(
        note.starts_with(&format!("saved 2 turns ({total} tokens)")),
        "{note:?}"
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    let tokens: Vec<u32> = v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(tokens.len(), total);
    let end1 = prefilled1 + generated1;
    assert_eq!(tokens[end1..end1 + close.len()], close[..]);
    assert_eq!(tokens[total - close.len()..], close[..]);
    assert_eq!(v["turns"][0]["user"], FIRST);
    assert_eq!(v["turns"][1]["user"], SECOND);
    let reply1 = v["turns"][0]["model"].as_str().unwrap();
    let printed1 = printed1.strip_suffix('\n').unwrap();
    assert!(printed1.len() >= 20, "{printed1:?}");
    assert!(
        reply1.starts_with(printed1),
        "saved {reply1:?}, printed {printed1:?}"
    );

    // End of input: the prompt's line is ended and chat exits 0.
    p.send_control('d').unwrap();
    let tail = p.exp_eof().expect("chat exits at end of input");
    assert_eq!(tail, "\r\n");
    assert!(matches!(exit_status(&p), WaitStatus::Exited(_, 0)));
    let _ = std::fs::remove_file(&saved);
}

#[test]
fn ctrl_c_at_an_empty_prompt_leaves_with_status_130() {
    let mut p = spawn_chat(&[]);
    first_prompt(&mut p);
    p.send_control('c').unwrap();
    let tail = p.exp_eof().expect("chat exits at Ctrl-C");
    assert_eq!(tail, "\r\n", "the prompt's line is ended");
    let status = exit_status(&p);
    assert!(
        matches!(status, WaitStatus::Exited(_, 130)),
        "exit status {status:?}"
    );
}

#[test]
fn a_second_ctrl_c_at_the_prompt_after_a_stopped_reply_leaves() {
    let mut p = spawn_chat(&["--temperature", "0", "-n", LONG, "--stats"]);
    first_prompt(&mut p);
    p.send_line(FIRST).unwrap();
    some_reply(&mut p);
    p.send_control('c').unwrap();
    let (_, (_, _, generated)) = turn_end(&mut p);
    assert!(generated < LONG.parse().unwrap());
    p.send_control('c').unwrap();
    let tail = p.exp_eof().expect("chat exits at the second Ctrl-C");
    assert_eq!(tail, "\r\n");
    let status = exit_status(&p);
    assert!(
        matches!(status, WaitStatus::Exited(_, 130)),
        "exit status {status:?}"
    );
}

#[test]
fn end_of_input_at_the_prompt_ends_its_line() {
    let mut p = spawn_chat(&[]);
    let opening = first_prompt(&mut p);
    assert!(opening.contains(BANNER), "{opening:?}");
    p.send_control('d').unwrap();
    let tail = p.exp_eof().expect("chat exits at end of input");
    assert_eq!(tail, "\r\n");
    let status = exit_status(&p);
    assert!(
        matches!(status, WaitStatus::Exited(_, 0)),
        "exit status {status:?}"
    );
}

#[test]
fn no_banner_when_a_model_is_chosen() {
    let model = real_model_path();
    let mut p = spawn_chat(&["--model", model.to_str().unwrap()]);
    let opening = first_prompt(&mut p);
    assert!(opening.contains("/help lists the commands"), "{opening:?}");
    assert!(!opening.contains(BANNER), "{opening:?}");
    p.send_line("/quit").unwrap();
    p.exp_eof().expect("chat exits at /quit");
    assert!(matches!(exit_status(&p), WaitStatus::Exited(_, 0)));
}
