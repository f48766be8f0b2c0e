//! `gemma chat` end to end on the real model: replies match `gemma run
//! --chat`, later turns prefill only their new tokens, saved conversations
//! continue in another process exactly as they would have in the first,
//! and command mistakes cost one line on stderr, not the session.
//!
//! Greedy decoding makes replies comparable across processes; the forward
//! pass gives bit-identical logits whatever the prefill batch, so a history
//! prefilled at once and one built turn by turn predict the same tokens.

use gemma_tests::{encode_template, real_model, real_model_path, user_turn};
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

const FIRST: &str = "What is the capital of France?";
const SECOND: &str = "And of Italy?";
/// Tokens per reply: enough to compare, few enough to keep the tests fast.
const N: &str = "12";

struct Session {
    stdout: String,
    stderr: String,
}

impl Session {
    /// `(prefilled, reused, generated)` from each `--stats` line.
    fn stats(&self) -> Vec<(usize, usize, usize)> {
        self.stderr
            .lines()
            .filter_map(|l| l.strip_prefix("[prefill "))
            .map(|l| {
                let nums: Vec<usize> = l
                    .split(|c: char| !c.is_ascii_digit())
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse().unwrap())
                    .collect();
                (nums[0], nums[1], nums[2])
            })
            .collect()
    }

    fn stderr_lines_with(&self, needle: &str) -> usize {
        self.stderr.lines().filter(|l| l.contains(needle)).count()
    }
}

/// Runs a greedy chat fed `lines` on stdin; it must exit successfully.
fn chat(lines: &[&str]) -> Session {
    chat_with(&[], lines)
}

fn chat_with(extra: &[&str], lines: &[&str]) -> Session {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gemma"))
        .args(["chat", "--temperature", "0", "-n", N, "--stats"])
        .args(extra)
        .env("GEMMA_MODEL", real_model_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gemma runs");
    let mut input = lines.join("\n");
    input.push('\n');
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let s = Session {
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    };
    assert!(out.status.success(), "chat {lines:?} failed: {}", s.stderr);
    // A model chosen by $GEMMA_MODEL is not announced as the default one.
    assert!(!s.stderr.contains("base (pretrained)"), "{}", s.stderr);
    s
}

/// `gemma run --chat` on FIRST: what the chat's first reply must print.
fn first_reply() -> &'static str {
    static R: OnceLock<String> = OnceLock::new();
    R.get_or_init(|| {
        let out = Command::new(env!("CARGO_BIN_EXE_gemma"))
            .args(["run", "--chat", "--temperature", "0", "-n", N])
            .args(["--prompt", FIRST])
            .env("GEMMA_MODEL", real_model_path())
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    })
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("gemma-chat-{}-{name}", std::process::id()))
}

#[test]
fn replies_match_run_and_later_turns_prefill_only_new_tokens() {
    let s = chat(&[FIRST, SECOND]);
    assert!(
        s.stdout.starts_with(first_reply()),
        "{:?} vs {:?}",
        s.stdout,
        first_reply()
    );
    let stats = s.stats();
    assert_eq!(stats.len(), 2, "{}", s.stderr);
    let (prefilled, reused, generated) = stats[0];
    assert_eq!(
        (prefilled, reused),
        (1 + encode_template(&user_turn(FIRST)).len(), 0)
    );
    // A reply cut at -n leaves its last token unfed; one that ended with
    // `<end_of_turn>` leaves that unfed, and the next turn starts with it.
    let cut = usize::from(generated == N.parse::<usize>().unwrap());
    let new = encode_template(&format!("<end_of_turn>\n{}", user_turn(SECOND))).len() + cut;
    assert_eq!(stats[1].1, prefilled + generated - cut, "reused");
    assert!(stats[1].1 > 0);
    assert_eq!(stats[1].0, new, "prefilled only the new tokens");
}

#[test]
fn a_saved_conversation_continues_elsewhere_as_it_would_have_here() {
    let file = temp_path("saved.json");
    let path = file.to_str().unwrap();
    let save = format!("/save {path}");
    let load = format!("/load {path}");

    let original = chat(&[FIRST, &save, SECOND]);
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let tokens = saved["tokens"].as_array().unwrap().len();
    assert_eq!(saved["tokens"][0], real_model().tokenizer().bos_id());
    assert_eq!(saved["turns"][0]["user"], FIRST);
    assert_eq!(
        saved["turns"][0]["model"].as_str().unwrap(),
        first_reply().strip_suffix('\n').unwrap()
    );

    // A new process: nothing cached, the whole history is prefilled.
    let resumed = chat(&[&load, SECOND]);
    assert_eq!(
        original.stdout,
        format!("{}{}", first_reply(), resumed.stdout)
    );
    let second_turn = encode_template(&user_turn(SECOND)).len();
    assert_eq!(
        resumed.stats(),
        vec![(tokens + second_turn, 0, resumed.stats()[0].2)]
    );

    // The same process after a different turn: the cache rewinds to the
    // prefix it shares with the loaded history and recomputes the rest.
    let other = "Name a color.";
    let rewound = chat(&[FIRST, other, &load, SECOND]);
    assert!(
        rewound.stdout.ends_with(&resumed.stdout),
        "{:?} vs {:?}",
        rewound.stdout,
        resumed.stdout
    );
    let (a, b) = (
        encode_template(&user_turn(other)),
        encode_template(&user_turn(SECOND)),
    );
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let (prefilled, reused, _) = rewound.stats()[2];
    assert_eq!(reused, tokens + common);
    assert_eq!(prefilled, second_turn - common);
    let _ = std::fs::remove_file(file);
}

#[test]
fn the_system_text_opens_the_first_message_only() {
    let system = "Answer in one word.";
    let file = temp_path("system.json");
    let save = format!("/save {}", file.to_str().unwrap());
    chat_with(&["--system", system], &[FIRST, SECOND, &save]);
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let _ = std::fs::remove_file(file);
    assert_eq!(saved["system"], system);
    assert_eq!(saved["turns"][0]["user"], FIRST);
    let tokens: Vec<u32> = saved["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect();
    let mut opening = vec![real_model().tokenizer().bos_id()];
    opening.extend(encode_template(&user_turn(&format!("{system}\n\n{FIRST}"))));
    assert_eq!(tokens[..opening.len()], opening[..]);
    // Later turns are as typed (replies may echo the system text; this
    // base-leaning 270M model does).
    let count = |seq: &[u32]| tokens.windows(seq.len()).filter(|w| *w == seq).count();
    assert_eq!(
        count(&encode_template(&user_turn(SECOND))),
        1,
        "second turn as typed"
    );
}

#[test]
fn reset_starts_the_conversation_over() {
    let s = chat(&[FIRST, "/reset", FIRST]);
    assert_eq!(s.stdout, format!("{0}{0}", first_reply()));
    // The cache still holds the same opening, so only its last token is fed again.
    assert_eq!(s.stats()[1].0, 1);
}

#[test]
fn command_errors_cost_one_line_and_the_session_goes_on() {
    let missing = temp_path("missing/nothing.json");
    let missing = missing.to_str().unwrap();
    let not_json = temp_path("not.json");
    std::fs::write(&not_json, "{ this is not json").unwrap();
    let not_json = not_json.to_str().unwrap();
    let bad_ids = temp_path("bad-ids.json");
    std::fs::write(
        &bad_ids,
        r#"{"format":"gemma-chat","version":1,"system":null,"turns":[],"tokens":[2,4000000000]}"#,
    )
    .unwrap();
    let bad_ids = bad_ids.to_str().unwrap();
    let unsaveable = temp_path("missing/out.json");
    let unsaveable = unsaveable.to_str().unwrap();

    let s = chat(&[
        &format!("/load {missing}"),
        &format!("/load {not_json}"),
        &format!("/load {bad_ids}"),
        &format!("/save {unsaveable}"),
        "/load",
        "/nonsense",
        FIRST,
    ]);
    assert_eq!(s.stdout, first_reply());
    for needle in [
        missing,
        not_json,
        bad_ids,
        unsaveable,
        "usage: /load",
        "/nonsense",
    ] {
        assert_eq!(s.stderr_lines_with(needle), 1, "{needle}: {}", s.stderr);
    }
    assert_eq!(s.stats().len(), 1);
    let _ = std::fs::remove_file(not_json);
    let _ = std::fs::remove_file(bad_ids);
}

#[test]
fn a_full_context_is_reported_and_the_session_goes_on() {
    let opening = 1 + encode_template(&user_turn(FIRST)).len();
    let context = opening + 3;
    let s = chat_with(
        &["--context", &context.to_string()],
        &[FIRST, SECOND, "/reset", FIRST],
    );
    let stats = s.stats();
    // The first reply fills the context, the second turn does not fit, and
    // after /reset the opening fits again (and fills the context again).
    assert_eq!(stats.len(), 2, "{}", s.stderr);
    // Every free position is fed, and the last one's logits give one more token.
    assert_eq!(stats[0].2, context - opening + 1);
    assert_eq!(
        s.stderr_lines_with("/reset to start over"),
        3,
        "{}",
        s.stderr
    );
    let (a, b) = s.stdout.split_at(s.stdout.len() / 2);
    assert_eq!(a, b);
    assert!(first_reply().starts_with(a.strip_suffix('\n').unwrap()));
}

#[test]
fn a_message_over_max_prompt_tokens_is_refused_and_the_session_goes_on() {
    // The limit lets FIRST's turn through exactly; twice FIRST is over it.
    let limit = encode_template(&user_turn(FIRST)).len();
    let long = format!("{FIRST} {FIRST}");
    assert!(encode_template(&user_turn(&long)).len() > limit);
    let s = chat_with(
        &["--max-prompt-tokens", &limit.to_string()],
        &[&long, FIRST],
    );
    assert_eq!(s.stats().len(), 1, "{}", s.stderr);
    assert_eq!(
        s.stderr_lines_with("more than --max-prompt-tokens"),
        1,
        "{}",
        s.stderr
    );
    assert!(first_reply().starts_with(s.stdout.strip_suffix('\n').unwrap()));
}

#[test]
fn replies_are_capped_at_256_tokens_by_default() {
    let out = Command::new(env!("CARGO_BIN_EXE_gemma"))
        .args(["chat", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    // The flag's entry: from its name to the next flag's.
    let (_, rest) = help
        .split_once("--max-tokens")
        .expect("--max-tokens in the help");
    let entry = rest.split("\n  -").next().unwrap();
    assert!(entry.contains("[default: 256]"), "{entry}");
    assert!(help.contains("--special"), "{help}");
}

#[test]
fn special_shows_control_tokens_only_when_asked() {
    // A history in which the model answered `Go` with `a<start_of_image>b…`
    // a few times: greedy decoding answers the same, control token included.
    let example = "<start_of_turn>user\nGo<end_of_turn>\n\
                   <start_of_turn>model\na<start_of_image>b<start_of_image>c<end_of_turn>\n";
    let mut tokens = vec![real_model().tokenizer().bos_id()];
    for _ in 0..4 {
        tokens.extend(encode_template(example));
    }
    let file = temp_path("special.json");
    let saved = serde_json::json!({
        "format": "gemma-chat", "version": 1, "system": null, "turns": [], "tokens": tokens,
    });
    std::fs::write(&file, saved.to_string()).unwrap();
    let load = format!("/load {}", file.to_str().unwrap());
    let marker = "<start_of_image>";
    let shown = chat_with(&["--special"], &[&load, "Go"]);
    let hidden = chat(&[&load, "Go"]);
    let _ = std::fs::remove_file(file);
    assert!(shown.stdout.contains(marker), "{:?}", shown.stdout);
    assert_eq!(hidden.stdout, shown.stdout.replace(marker, ""));
}
