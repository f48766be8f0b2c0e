//! One generation turn, as `gemma run`, `gemma chat`, `gemma serve` and the
//! C API all run it: Gemma's chat template, the stop tokens the tokenizer
//! names, a conversation's cached prefix, generation on the executor's
//! pool, and the streaming decoder that turns tokens into whole characters.

use crate::penalties::{Penalties, PenaltyState};
use crate::{Conversation, LoadedModel, TurnStats, WorkerPool};
use gemma_core::generate::{GenerateOptions, PrefillProgress, SessionError};
use gemma_core::kernels::Precision;
use gemma_core::model::Model;
use gemma_core::sampling::Sampler;
use gemma_core::tokenizer::{StreamDecoder, Tokenizer, TokenizerError};

/// Who speaks a turn. Gemma has two roles; system text joins the next
/// user turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Speaker {
    System,
    User,
    Model,
}

/// Gemma's chat template as tokens: each turn is
/// `<start_of_turn>{user|model}\n{text}<end_of_turn>\n`, and
/// `<start_of_turn>model\n` opens the reply. Message text is tokenized with
/// control-token parsing off, so `<end_of_turn>` typed by a user stays
/// text; otherwise the ids equal those of the template string tokenized
/// with parsing on, since control tokens cut SentencePiece's input into
/// segments that are encoded apart.
#[derive(Clone, Copy, Debug)]
pub struct ChatTemplate<'t> {
    tok: Tokenizer<'t>,
    start_of_turn: u32,
    end_of_turn: u32,
}

impl<'t> ChatTemplate<'t> {
    /// The template of `tok`'s model; `None` when its vocabulary lacks
    /// Gemma's turn tokens.
    pub fn new(tok: Tokenizer<'t>) -> Option<Self> {
        Some(Self {
            tok,
            start_of_turn: tok.start_of_turn_id()?,
            end_of_turn: tok.end_of_turn_id()?,
        })
    }

    fn text(&self, text: &str, out: &mut Vec<u32>) -> Result<(), TokenizerError> {
        out.extend(self.tok.encode_to_vec(text, false)?);
        Ok(())
    }

    /// Appends one whole turn by `speaker` (a system turn is spoken as the
    /// user's).
    pub fn turn(
        &self,
        speaker: Speaker,
        text: &str,
        out: &mut Vec<u32>,
    ) -> Result<(), TokenizerError> {
        let role = if speaker == Speaker::Model {
            "model"
        } else {
            "user"
        };
        out.push(self.start_of_turn);
        self.text(&format!("{role}\n{text}"), out)?;
        self.close_turn(out)
    }

    /// Appends `<end_of_turn>\n`: what ends a turn, a reply included.
    pub fn close_turn(&self, out: &mut Vec<u32>) -> Result<(), TokenizerError> {
        out.push(self.end_of_turn);
        self.text("\n", out)
    }

    /// Appends `<start_of_turn>model\n`, after which the model replies.
    pub fn open_reply(&self, out: &mut Vec<u32>) -> Result<(), TokenizerError> {
        out.push(self.start_of_turn);
        self.text("model\n", out)
    }

    /// A conversation's prompt: BOS, its turns, and the opened reply.
    /// System text is put before the next user turn's, separated by a
    /// blank line (as Gemma's own template does); trailing system text
    /// becomes a user turn.
    pub fn prompt(&self, turns: &[(Speaker, &str)]) -> Result<Vec<u32>, TokenizerError> {
        let mut out = vec![self.tok.bos_id()];
        let mut system: Vec<&str> = Vec::new();
        let user = |out: &mut Vec<u32>, system: &mut Vec<&str>, text: &str| {
            let mut joined = String::new();
            for s in system.drain(..) {
                joined.push_str(s);
                joined.push_str("\n\n");
            }
            joined.push_str(text);
            self.turn(Speaker::User, &joined, out)
        };
        for &(speaker, text) in turns {
            match speaker {
                Speaker::System => system.push(text),
                Speaker::User => user(&mut out, &mut system, text)?,
                Speaker::Model => self.turn(Speaker::Model, text, &mut out)?,
            }
        }
        if let Some(last) = system.pop() {
            user(&mut out, &mut system, last)?;
        }
        self.open_reply(&mut out)?;
        Ok(out)
    }
}

/// What a turn streams to its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Streamed<'s> {
    /// A generated token and the text it completes (empty while a
    /// character's bytes are incomplete, and for control tokens).
    Token { id: u32, text: &'s str },
    /// Generation ended: the text still held back (an incomplete character
    /// becomes U+FFFD); often empty.
    End { text: &'s str },
}

/// What one turn did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TurnOutput {
    pub stats: TurnStats,
    /// The generated ids (a stop token is not among them).
    pub ids: Vec<u32>,
}

/// A loaded model ready for turns: its weights, tokenizer and arithmetic,
/// and the pool its kernels run on.
pub struct Generator<'a> {
    pub model: Model<'a>,
    pub tokenizer: Tokenizer<'a>,
    pub precision: Precision,
    pub exec: &'a WorkerPool,
    /// Print control tokens and protocol markers (`<end_of_turn>`,
    /// `<start_of_image>`) in streamed text; off by default, as the ids
    /// carry them either way.
    pub show_special: bool,
    /// Told how the prompt's prefill goes, pass by pass (for a progress
    /// display); none by default.
    pub prefill_progress: Option<PrefillProgress<'a>>,
    /// Logit biases and repetition penalties applied before each token is
    /// sampled; none by default.
    pub penalties: Penalties,
}

impl<'a> Generator<'a> {
    pub fn new(loaded: &'a LoadedModel, exec: &'a WorkerPool) -> Self {
        Self {
            model: loaded.model(),
            tokenizer: loaded.tokenizer(),
            precision: loaded.precision(),
            exec,
            show_special: false,
            prefill_progress: None,
            penalties: Penalties::default(),
        }
    }

    /// Generates a reply to `history` (the whole conversation, BOS and
    /// template included) in `conv`, which reuses what it has cached of
    /// it. Up to `max_new_tokens` tokens; it stops at the tokenizer's
    /// end-of-generation tokens or when `on` returns false. Runs on a
    /// worker of the pool, where the kernels dispatch without allocating;
    /// so does `on`.
    pub fn turn(
        &self,
        conv: &mut Conversation,
        history: &[u32],
        sampler: &mut Sampler,
        max_new_tokens: usize,
        on: &mut (dyn FnMut(Streamed) -> bool + Send),
    ) -> Result<TurnOutput, SessionError> {
        let stops = self.tokenizer.stop_tokens();
        let penalties = PenaltyState::new(&self.penalties, max_new_tokens.min(conv.max_context()));
        let adjust = |l: &mut [f32]| penalties.adjust(l);
        let opts = GenerateOptions {
            max_new_tokens,
            stop_tokens: &stops,
            prefill_progress: self.prefill_progress,
            adjust_logits: if self.penalties.is_none() {
                None
            } else {
                Some(&adjust)
            },
        };
        let room = conv.max_context().saturating_sub(history.len()) + 1;
        let (model, precision, exec) = (&self.model, self.precision, self.exec);
        let mut decoder = StreamDecoder::with_skip_special(self.tokenizer, !self.show_special);
        self.exec.install(|| {
            let mut ids = Vec::with_capacity(max_new_tokens.min(room));
            // Pieces of one token are short: this never grows in the loop.
            let mut text = String::with_capacity(256);
            let mut go_on = true;
            let stats =
                conv.generate(model, precision, exec, history, sampler, &opts, &mut |t| {
                    penalties.record(t);
                    ids.push(t);
                    text.clear();
                    decoder.push_with(t, |s| text.push_str(s));
                    go_on = on(Streamed::Token { id: t, text: &text });
                    go_on
                })?;
            if go_on {
                text.clear();
                decoder.finish_with(|s| text.push_str(s));
                on(Streamed::End { text: &text });
            }
            Ok(TurnOutput { stats, ids })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer() -> (gemma_core::tokenizer::TokenizerTables, Vec<u8>) {
        let proto = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../core/tests/data/gemma3-tokenizer.spm"),
        )
        .unwrap();
        let tables = gemma_core::tokenizer::TokenizerTables::from_spm(&proto).unwrap();
        (tables, proto)
    }

    /// The token template equals Gemma's template string tokenized with
    /// control tokens parsed, for messages without control text.
    #[test]
    fn template_tokens_equal_the_template_string() {
        let (tables, proto) = tokenizer();
        let tok = tables.view(&proto).unwrap();
        let t = ChatTemplate::new(tok).unwrap();
        let turns = [
            (Speaker::System, "Be brief."),
            (Speaker::User, "Q1"),
            (Speaker::Model, "A1"),
            (Speaker::User, "Q2 with  spaces\nand lines"),
        ];
        let ids = t.prompt(&turns).unwrap();
        let text = "<start_of_turn>user\nBe brief.\n\nQ1<end_of_turn>\n\
                    <start_of_turn>model\nA1<end_of_turn>\n\
                    <start_of_turn>user\nQ2 with  spaces\nand lines<end_of_turn>\n\
                    <start_of_turn>model\n";
        let mut want = vec![tok.bos_id()];
        want.extend(tok.encode_to_vec(text, true).unwrap());
        assert_eq!(ids, want);
        // Trailing system text becomes a user turn.
        let alone = t.prompt(&[(Speaker::System, "Say hi.")]).unwrap();
        let mut want = vec![tok.bos_id()];
        want.extend(
            tok.encode_to_vec(
                "<start_of_turn>user\nSay hi.<end_of_turn>\n<start_of_turn>model\n",
                true,
            )
            .unwrap(),
        );
        assert_eq!(alone, want);
    }

    /// Control text typed in a message stays text.
    #[test]
    fn control_text_in_a_message_is_not_a_control_token() {
        let (tables, proto) = tokenizer();
        let tok = tables.view(&proto).unwrap();
        let t = ChatTemplate::new(tok).unwrap();
        let ids = t.prompt(&[(Speaker::User, "a<end_of_turn>b")]).unwrap();
        let eot = tok.end_of_turn_id().unwrap();
        // The user turn's own end is the only one.
        assert_eq!(ids.iter().filter(|&&i| i == eot).count(), 1);
    }

    /// A turn that reports its prefill gives the same tokens and stats as
    /// a turn without, fresh and continuing a cached conversation, and the
    /// reports count the new tokens up pass by pass (`batch` at a time).
    #[test]
    fn prefill_progress_changes_nothing_but_reports() {
        use crate::synthetic::{tiny_model, TinySpec};
        use gemma_core::sampling::SamplingParams;
        use std::sync::Mutex;
        let loaded = LoadedModel::from_vec("tiny", tiny_model(&TinySpec::default())).unwrap();
        let pool = WorkerPool::new(2).unwrap();
        let first: Vec<u32> = (0..30).map(|i| 6 + (i * 7) % 40).collect();
        let more: Vec<u32> = (0..10).map(|i| 8 + (i * 5) % 30).collect();
        let turns = |g: &Generator, batch: usize| {
            let mut conv = Conversation::new(&g.model, 64, batch).unwrap();
            let mut sampler = Sampler::new(SamplingParams::with_temperature(1.0, 3)).unwrap();
            let mut history = first.clone();
            let mut out = Vec::new();
            for next in [&more[..], &[]] {
                let turn = g
                    .turn(&mut conv, &history, &mut sampler, 6, &mut |_| true)
                    .unwrap();
                history.extend(&turn.ids);
                history.extend(next);
                out.push(turn);
            }
            out
        };
        for batch in [1, 4, 7, 29, 30, 64] {
            let want = turns(&Generator::new(&loaded, &pool), batch);
            let reports = Mutex::new(Vec::new());
            let report = |done: usize, total: usize| reports.lock().unwrap().push((done, total));
            let g = Generator {
                prefill_progress: Some(&report),
                ..Generator::new(&loaded, &pool)
            };
            let got = turns(&g, batch);
            assert_eq!(got, want, "batch {batch}");
            let reports = std::mem::take(&mut *reports.lock().unwrap());
            // Each turn: (0, n), its pieces, (n, n).
            let mut i = 0;
            for turn in &want {
                let n = turn.stats.prefilled;
                assert_eq!(reports[i], (0, n), "batch {batch}: {reports:?}");
                let mut done = 0;
                loop {
                    i += 1;
                    let (d, t) = reports[i];
                    assert_eq!(t, n);
                    assert_eq!(d, (done + batch).min(n), "batch {batch}: {reports:?}");
                    done = d;
                    if d == n {
                        break;
                    }
                }
                i += 1;
            }
            assert_eq!(i, reports.len(), "batch {batch}: {reports:?}");
        }
    }

    /// Three greedy turns in one conversation: a first prompt, a follow-up
    /// that extends it, and an edit that shares a shorter prefix (the cache
    /// steps back). On an OpenCL device each gives the CPU's tokens and
    /// reuses as much of the cache.
    #[cfg(feature = "opencl")]
    #[test]
    fn a_device_conversation_keeps_its_cache_across_turns_like_the_cpu() {
        use crate::engine::{test_device, Engine};
        use crate::synthetic::{tiny_model, TinySpec};
        let test = "a_device_conversation_keeps_its_cache_across_turns_like_the_cpu";
        let loaded = LoadedModel::from_vec("tiny", tiny_model(&TinySpec::default())).unwrap();
        let pool = WorkerPool::new(2).unwrap();
        let g = Generator::new(&loaded, &pool);
        let Some(engine) = test_device(test, &g.model) else {
            return;
        };
        let first: Vec<u32> = (0..20).map(|i| 6 + (i * 7) % 40).collect();
        let more: Vec<u32> = (0..6).map(|i| 8 + (i * 5) % 30).collect();
        let turns = |engine: &Engine| -> Vec<TurnOutput> {
            let mut conv = Conversation::on(engine, &g.model, 64, 4).unwrap();
            let mut sampler = Sampler::greedy();
            let mut history = first.clone();
            let mut out = Vec::new();
            for _ in 0..2 {
                let turn = g
                    .turn(&mut conv, &history, &mut sampler, 5, &mut |_| true)
                    .unwrap();
                history.extend(&turn.ids);
                history.extend(&more);
                out.push(turn);
            }
            // An edit of the last few tokens.
            history.truncate(history.len() - 3);
            history.push(11);
            let turn = g.turn(&mut conv, &history, &mut sampler, 5, &mut |_| true);
            out.push(turn.unwrap());
            out
        };
        let want = turns(&Engine::cpu());
        assert!(want[1].stats.reused > first.len(), "{want:?}");
        assert!(want[2].stats.reused > 0, "{want:?}");
        assert_eq!(turns(&engine), want);
    }

    /// Greedy turns with logit biases and penalties give the tokens of a
    /// loop written here from OpenAI's definition: logits of each step,
    /// plus the bias, minus (presence + frequency x count) for each token
    /// generated so far, argmax.
    #[test]
    fn penalties_steer_greedy_turns_as_openai_defines_them() {
        use crate::synthetic::{tiny_model, TinySpec};
        use gemma_core::generate::Session;
        use gemma_core::model::Prompt;
        use gemma_core::sampling::SamplingParams;
        let loaded = LoadedModel::from_vec("tiny", tiny_model(&TinySpec::default())).unwrap();
        let pool = WorkerPool::new(1).unwrap();
        let prompt: Vec<u32> = vec![2, 9, 17, 40, 7, 7];
        let steps = 10;
        let reference = |p: &Penalties| {
            let model = loaded.model();
            let cfg = &model.config;
            let mut bufs = crate::SessionBuffers::new(cfg, 32, 8).unwrap();
            let parts = bufs.cpu(&model, &pool, Precision::Exact).unwrap();
            let mut backend = parts.backend;
            let mut s = Session::new(cfg, &mut backend, parts.logits, parts.candidates).unwrap();
            let mut counts = std::collections::HashMap::<u32, f32>::new();
            let mut row = s.prefill(Prompt::tokens(&prompt)).unwrap().to_vec();
            let mut out = vec![];
            for _ in 0..steps {
                for &(t, b) in &p.bias {
                    row[t as usize] += b;
                }
                for (&t, &n) in &counts {
                    row[t as usize] -= p.presence + p.frequency * n;
                }
                let best = (0..cfg.vocab_size).fold(0, |b, i| if row[i] > row[b] { i } else { b });
                out.push(best as u32);
                *counts.entry(best as u32).or_insert(0.0) += 1.0;
                row = s.step(best as u32).unwrap().to_vec();
            }
            out
        };
        let turn = |p: &Penalties| {
            let mut g = Generator::new(&loaded, &pool);
            g.penalties = p.clone();
            let mut conv = Conversation::new(&g.model, 32, 8).unwrap();
            let mut sampler = Sampler::new(SamplingParams::greedy()).unwrap();
            // No stop token: a tiny model's greedy output may hold EOS.
            let mut ids = vec![];
            let out = g.turn(&mut conv, &prompt, &mut sampler, steps, &mut |s| {
                if let Streamed::Token { id, .. } = s {
                    ids.push(id);
                }
                true
            });
            out.unwrap().ids
        };
        let plain = turn(&Penalties::default());
        for p in [
            Penalties {
                presence: 1.5,
                frequency: 0.0,
                bias: vec![],
            },
            Penalties {
                presence: 0.0,
                frequency: 2.0,
                bias: vec![],
            },
            Penalties {
                presence: 0.5,
                frequency: 0.5,
                bias: vec![(100, 4.0), (plain[0], -3.0)],
            },
        ] {
            let want = reference(&p);
            let got = turn(&p);
            assert_eq!(&got[..], &want[..got.len()], "{p:?}");
            assert_ne!(got, plain, "{p:?} changes the greedy output");
        }
    }
}
