//! `gemma chat`: an interactive conversation in Gemma's turn template.
//!
//! The session keeps one token history, `BOS` then for every turn
//! `<start_of_turn>user\n{text}<end_of_turn>\n<start_of_turn>model\n{reply}<end_of_turn>\n`,
//! and hands the whole of it to [`Conversation::generate`] each turn, which
//! prefills only what its KV cache does not already hold. The reply's stop
//! token is sampled but never fed, so the next turn's new tokens begin with
//! the `<end_of_turn>` that closes it.
//!
//! Replies go to stdout; the prompt marker, command feedback, statistics and
//! errors go to stderr, so piping stdout collects exactly the replies.
//!
//! At a terminal, Ctrl-C while a reply is generated stops that reply: what
//! was generated stays in the history, closed as the model's turn, and the
//! prompt comes back. Ctrl-C at the prompt (or a second one before a reply
//! has noticed the first, as during a long prefill) leaves with status 130.

mod interrupt;

use crate::{ComputeArgs, ModelArgs, SamplingArgs};
use clap::Args;
use gemma_core::generate::StopReason;
use gemma_core::sampling::{Sampler, SamplingParams};
use gemma_core::tokenizer::Tokenizer;
use gemma_platform::{
    ChatTemplate, Conversation, Generator, LoadedModel, Speaker, Streamed, WorkerPool,
};
use serde_json::{json, Value};
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::time::Instant;

type Result<T> = std::result::Result<T, String>;

#[derive(Args)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub compute: ComputeArgs,
    /// Most tokens per reply (Ctrl-C stops a reply sooner)
    #[arg(short = 'n', long = "max-tokens", default_value_t = 256)]
    pub max_tokens: usize,
    /// Sampling; /reset and /load restart the random sequence from --seed
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Context length to allocate, at most the model's [default: 4096, or the model's if smaller]
    #[arg(long)]
    pub context: Option<usize>,
    /// Most tokens one user message may take (template included); longer ones are refused [default: no limit but the context]
    #[arg(long)]
    pub max_prompt_tokens: Option<usize>,
    /// Instructions prepended to the first user message
    #[arg(long)]
    pub system: Option<String>,
    /// After each reply, print prefill and decode statistics to stderr
    #[arg(long)]
    pub stats: bool,
    /// Also print control tokens and markers such as `<start_of_image>` in replies (hidden by default)
    #[arg(long)]
    pub special: bool,
}

const HELP: &str = "\
commands:
  /reset       start a new conversation
  /save FILE   write the conversation to FILE (JSON)
  /load FILE   continue a conversation saved with /save
  /help        this text
  /quit        leave (so does end of input)
a line starting with // sends the rest after one /
Ctrl-C stops a reply (it stays in the conversation); at the prompt it leaves";

/// Enough for a long conversation with a small model; the KV cache is
/// allocated for all of it up front.
const DEFAULT_CONTEXT: usize = 4096;

/// The format tag of saved conversations; bump `version` on any change.
const FORMAT: &str = "gemma-chat";
const VERSION: u64 = 1;

fn load(args: &ModelArgs) -> Result<LoadedModel> {
    args.load()
}

/// Printed to stderr when chat runs on the default model.
fn default_model_banner() -> String {
    format!(
        "gemma chat: the default model is {}.\n  \
         --model PATH or GEMMA_MODEL=PATH points chat at an instruction-tuned GGUF or .sbs file.",
        gemma_platform::fetch::DEFAULT_MODEL_DESCRIPTION
    )
}

/// One line of input.
#[derive(Debug, PartialEq, Eq)]
enum Input<'l> {
    Say(&'l str),
    Reset,
    Save(&'l str),
    Load(&'l str),
    Help,
    Quit,
    Blank,
    /// A command that cannot run: the message to print.
    Bad(String),
}

fn parse_line(line: &str) -> Input<'_> {
    let line = line.trim_end_matches(['\n', '\r']);
    if line.trim().is_empty() {
        return Input::Blank;
    }
    if line.starts_with("//") {
        return Input::Say(&line[1..]);
    }
    if !line.starts_with('/') {
        return Input::Say(line);
    }
    let line = line.trim();
    let (cmd, arg) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let arg = arg.trim();
    if matches!(cmd, "/save" | "/load") && arg.is_empty() {
        return Input::Bad(format!("usage: {cmd} FILE"));
    }
    match cmd {
        "/reset" => Input::Reset,
        "/save" => Input::Save(arg),
        "/load" => Input::Load(arg),
        "/help" | "/?" => Input::Help,
        "/quit" | "/exit" => Input::Quit,
        _ => Input::Bad(format!("unknown command {cmd} (/help lists them)")),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Turn {
    user: String,
    model: String,
}

/// What `/save` writes and `/load` reads. `tokens` is the source of truth
/// (what the model saw); `system` and `turns` are the same conversation as
/// text, for people and other tools.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Transcript {
    system: Option<String>,
    turns: Vec<Turn>,
    tokens: Vec<u32>,
}

impl Transcript {
    fn to_json(&self) -> Value {
        let turns: Vec<Value> = self
            .turns
            .iter()
            .map(|t| json!({ "user": t.user, "model": t.model }))
            .collect();
        json!({
            "format": FORMAT,
            "version": VERSION,
            "system": self.system,
            "turns": turns,
            "tokens": self.tokens,
        })
    }

    /// Parses and checks a saved conversation against the tokenizer and
    /// context it is about to continue in.
    fn from_json(v: &Value, tok: &Tokenizer, context: usize) -> Result<Self> {
        if v["format"] != FORMAT {
            return Err("not a saved gemma chat (no \"format\": \"gemma-chat\")".into());
        }
        if v["version"] != VERSION {
            return Err(format!(
                "saved with format version {}, this gemma reads version {VERSION}",
                v["version"]
            ));
        }
        let system = match &v["system"] {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            _ => return Err("\"system\" is not a string".into()),
        };
        let turns = v["turns"]
            .as_array()
            .ok_or("\"turns\" is not an array")?
            .iter()
            .map(|t| match (t["user"].as_str(), t["model"].as_str()) {
                (Some(user), Some(model)) => Ok(Turn {
                    user: user.into(),
                    model: model.into(),
                }),
                _ => Err("a turn lacks its \"user\" or \"model\" text".to_string()),
            })
            .collect::<Result<Vec<_>>>()?;
        let vocab = tok.vocab_size();
        let tokens = v["tokens"]
            .as_array()
            .ok_or("\"tokens\" is not an array")?
            .iter()
            .map(|t| match t.as_u64() {
                Some(id) if (id as usize) < vocab => Ok(id as u32),
                _ => Err(format!(
                    "{t} is not a token id of this model (vocabulary {vocab})"
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        if tokens.first().is_some_and(|&t| t != tok.bos_id()) {
            return Err("the tokens do not start with BOS".into());
        }
        if tokens.len() >= context {
            return Err(format!(
                "{} tokens do not leave room for a turn in the context of {context} (raise --context)",
                tokens.len()
            ));
        }
        Ok(Self {
            system,
            turns,
            tokens,
        })
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory
/// and a rename, so a crash leaves either the old file or the new one.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
        .and_then(|_| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

struct Chat<'m> {
    generator: Generator<'m>,
    tok: Tokenizer<'m>,
    template: ChatTemplate<'m>,
    conv: Conversation,
    params: SamplingParams,
    sampler: Sampler,
    /// `<end_of_turn>\n`: closes a reply in the history.
    close_turn: Vec<u32>,
    max_tokens: usize,
    max_prompt_tokens: usize,
    system: Option<String>,
    stats: bool,
    now: Transcript,
}

impl Chat<'_> {
    fn context(&self) -> usize {
        self.conv.max_context()
    }

    /// A fresh random stream, so a conversation restarted by /reset or
    /// /load continues as it would in a new process with the same flags.
    fn restart_sampler(&mut self) {
        self.sampler = Sampler::new(self.params).expect("validated at start");
    }

    /// The template tokens of one user turn and the opened reply (the
    /// message's own control text stays text).
    fn user_turn(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        self.template
            .turn(Speaker::User, text, &mut ids)
            .and_then(|()| self.template.open_reply(&mut ids))
            .map_err(|e| format!("tokenizing the message: {e}"))?;
        Ok(ids)
    }

    /// Runs one turn; `Err` only for failures that end the session (stdout).
    fn say(&mut self, text: &str) -> Result<()> {
        let first = self.now.tokens.is_empty();
        let message = match (&self.system, first) {
            (Some(system), true) => format!("{system}\n\n{text}"),
            _ => text.to_string(),
        };
        let turn = match self.user_turn(&message) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("gemma: {e}");
                return Ok(());
            }
        };
        if turn.len() > self.max_prompt_tokens {
            eprintln!(
                "gemma: the message takes {} tokens, more than --max-prompt-tokens {}",
                turn.len(),
                self.max_prompt_tokens
            );
            return Ok(());
        }
        let base = self.now.tokens.len();
        if first {
            self.now.tokens.push(self.tok.bos_id());
        }
        self.now.tokens.extend_from_slice(&turn);
        let context = self.context();
        if self.now.tokens.len() > context {
            eprintln!(
                "gemma: the conversation would take {} tokens, more than the context of {context}; \
                 /reset to start over (or restart with a larger --context)",
                self.now.tokens.len()
            );
            self.now.tokens.truncate(base);
            return Ok(());
        }

        let mut write_failed = None;
        let mut first_at = None;
        let mut last_at = None;
        let started = Instant::now();
        // A Ctrl-C since the line was read stops this reply at its first token.
        interrupt::generating();
        let result = self.generator.turn(
            &mut self.conv,
            &self.now.tokens,
            &mut self.sampler,
            self.max_tokens,
            &mut |s| {
                let text = match s {
                    Streamed::Token { text, .. } => {
                        let at = Instant::now();
                        first_at.get_or_insert(at);
                        last_at = Some(at);
                        text
                    }
                    Streamed::End { text } => text,
                };
                let mut stdout = std::io::stdout().lock();
                if write_failed.is_none() {
                    write_failed = stdout
                        .write_all(text.as_bytes())
                        .and_then(|()| stdout.flush())
                        .err();
                }
                write_failed.is_none() && !interrupt::requested()
            },
        );
        interrupt::generated();
        let mut stdout = std::io::stdout().lock();
        if let Some(e) = write_failed.or_else(|| writeln!(stdout).err()) {
            return Err(format!("writing to stdout: {e}"));
        }
        let (stats, reply) = match result {
            Ok(out) => (out.stats, out.ids),
            Err(e) => {
                eprintln!("gemma: error: {}", self.conv.explain(&e));
                self.now.tokens.truncate(base);
                return Ok(());
            }
        };
        let generated = stats.outcome.generated;
        if self.stats {
            // Decode speed between the first and last token; with fewer
            // than two tokens, the turn's overall speed.
            let rate = match (first_at, last_at) {
                (Some(a), Some(b)) if generated > 1 && b > a => {
                    (generated - 1) as f64 / (b - a).as_secs_f64()
                }
                _ => generated as f64 / started.elapsed().as_secs_f64(),
            };
            eprintln!(
                "[prefill {} tokens ({} reused), {generated} tokens, {rate:.1} tok/s]",
                stats.prefilled, stats.reused
            );
        }
        if stats.outcome.stop == StopReason::ContextFull {
            eprintln!(
                "gemma: the context of {context} tokens is full and the reply was cut short; \
                 /reset to start over (or restart with a larger --context)"
            );
        }
        self.now.tokens.extend_from_slice(&reply);
        self.now.tokens.extend_from_slice(&self.close_turn);
        if first {
            self.now.system = self.system.clone();
        }
        self.now.turns.push(Turn {
            user: text.to_string(),
            model: self
                .tok
                .decode_to_string(&reply, !self.generator.show_special),
        });
        Ok(())
    }

    fn save(&self, path: &str) -> Result<String> {
        let mut text = self.now.to_json().to_string();
        text.push('\n');
        write_atomically(Path::new(path), text.as_bytes())
            .map_err(|e| format!("/save {path}: {e}"))?;
        Ok(format!(
            "saved {} turns ({} tokens) to {path}",
            self.now.turns.len(),
            self.now.tokens.len()
        ))
    }

    /// Replaces the conversation. The cache is left alone: the next turn
    /// reuses whatever prefix it shares with the loaded tokens.
    fn load(&mut self, path: &str) -> Result<String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("/load {path}: {e}"))?;
        let v: Value =
            serde_json::from_str(&text).map_err(|e| format!("/load {path}: not JSON: {e}"))?;
        self.now = Transcript::from_json(&v, &self.tok, self.context())
            .map_err(|e| format!("/load {path}: {e}"))?;
        self.restart_sampler();
        Ok(format!(
            "loaded {} turns ({} tokens) from {path}",
            self.now.turns.len(),
            self.now.tokens.len()
        ))
    }

    /// Forgets the conversation; the cache stays and serves any prefix the
    /// next one shares (BOS, a --system text).
    fn reset(&mut self) {
        self.now = Transcript::default();
        self.restart_sampler();
    }
}

pub fn chat(a: ChatArgs) -> Result<()> {
    let params = a.sampling.params()?;
    let sampler = Sampler::new(params).map_err(|e| e.to_string())?;

    let mut loaded = load(&a.model)?;
    loaded.set_precision(a.compute.precision());
    if a.model.is_default() {
        eprintln!("{}", default_model_banner());
    }
    let exec = WorkerPool::new(a.compute.threads)
        .map_err(|e| format!("cannot start worker threads: {e}"))?;
    // A prefill that runs a second (a long pasted message, a /load) shows a
    // bar on stderr when that is a terminal, cleared before the reply.
    let prefill_bar = crate::progress::Progress::new("prefill", "tokens");
    let report = |done: usize, total: usize| prefill_bar.report(done, total);
    let generator = Generator {
        show_special: a.special,
        prefill_progress: std::io::stderr()
            .is_terminal()
            .then_some(&report as gemma_core::generate::PrefillProgress),
        penalties: a.sampling.penalties(loaded.model().config.vocab_size)?,
        ..Generator::new(&loaded, &exec)
    };
    let tok = generator.tokenizer;
    let template = ChatTemplate::new(tok).ok_or(
        "this model's vocabulary has no <start_of_turn>/<end_of_turn>; chat needs Gemma's turn tokens",
    )?;
    let mut close_turn = Vec::new();
    template
        .close_turn(&mut close_turn)
        .map_err(|e| format!("tokenizing the template: {e}"))?;
    let max_ctx = generator.model.config.context_length;
    let context = a.context.unwrap_or(DEFAULT_CONTEXT.min(max_ctx));
    if context > max_ctx {
        return Err(format!(
            "--context {context} exceeds the model's context length {max_ctx}"
        ));
    }
    // A turn needs room for at least BOS and a token of template.
    let context = context.max(2);
    let engine = crate::device::engine(&a.compute, &generator.model)?;
    let conv = Conversation::on(&engine, &generator.model, context, a.compute.batch as usize)
        .map_err(|e| e.to_string())?;
    let mut chat = Chat {
        generator,
        tok,
        template,
        conv,
        params,
        sampler,
        close_turn,
        max_tokens: a.max_tokens,
        max_prompt_tokens: a.max_prompt_tokens.unwrap_or(usize::MAX),
        system: a.system,
        stats: a.stats,
        now: Transcript::default(),
    };

    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    if interactive {
        eprintln!(
            "gemma chat: /help lists the commands, /quit or end of input leaves; \
             Ctrl-C stops a reply"
        );
        // Without a terminal, Ctrl-C keeps its default: it ends the process.
        interrupt::install()?;
    }
    let mut input = stdin.lock();
    let mut line = Vec::new();
    loop {
        if interactive {
            eprint!("> ");
        }
        line.clear();
        let read = interrupt::reading(|| input.read_until(b'\n', &mut line));
        let n = read.map_err(|e| format!("reading stdin: {e}"))?;
        if n == 0 {
            if interactive {
                // End of input typed after the prompt: end its line.
                eprintln!();
            }
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let note = match parse_line(&text) {
            Input::Blank => continue,
            Input::Quit => return Ok(()),
            Input::Say(t) => {
                chat.say(t)?;
                continue;
            }
            Input::Reset => {
                chat.reset();
                Ok("new conversation".to_string())
            }
            Input::Save(path) => chat.save(path),
            Input::Load(path) => chat.load(path),
            Input::Help => Ok(HELP.to_string()),
            Input::Bad(msg) => Err(msg),
        };
        match note {
            Ok(msg) => eprintln!("{msg}"),
            Err(msg) => eprintln!("gemma: {msg}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_into_messages_and_commands() {
        assert_eq!(parse_line("Hello there\n"), Input::Say("Hello there"));
        assert_eq!(parse_line("  spaced  \r\n"), Input::Say("  spaced  "));
        assert_eq!(parse_line("   \n"), Input::Blank);
        assert_eq!(parse_line("//etc/hosts\n"), Input::Say("/etc/hosts"));
        assert_eq!(parse_line("/reset\n"), Input::Reset);
        assert_eq!(parse_line("/save  a b.json \n"), Input::Save("a b.json"));
        assert_eq!(parse_line("/load\tx.json"), Input::Load("x.json"));
        assert_eq!(parse_line("/quit"), Input::Quit);
        assert_eq!(parse_line("/help"), Input::Help);
        assert!(matches!(parse_line("/save\n"), Input::Bad(m) if m == "usage: /save FILE"));
        assert!(matches!(parse_line("/frobnicate"), Input::Bad(m) if m.contains("/frobnicate")));
    }

    #[test]
    fn saves_go_through_a_temporary_file_and_replace_the_old_one() {
        let dir = std::env::temp_dir().join(format!("gemma-chat-save-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.json");
        write_atomically(&path, b"old").unwrap();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left behind");
        assert!(write_atomically(&dir.join("missing/c.json"), b"x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
