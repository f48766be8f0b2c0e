//! Which cached conversation serves a request.
//!
//! Each [`Conversation`] keeps the KV cache of the tokens it last saw. A
//! chat client resends the whole conversation with every turn, so the
//! request that continues a chat shares a long prefix with the tokens one
//! conversation holds, and only the new tail needs prefilling.
//!
//! Every prompt shares a few template tokens (BOS, `<start_of_turn>user`)
//! with every other, so "longest shared prefix" alone would let each new
//! chat overwrite whichever cache happens to share them. A conversation
//! therefore only counts as a match when the prompt extends the last prompt
//! it ran (a follow-up turn, or the same request again; the reply itself
//! may differ, as its text retokenizes to other ids than were sampled), or
//! shares at least half of its cached tokens. Among matches the longest
//! shared prefix wins. Without a match, an empty conversation or a new one
//! (while the memory budget allows) takes the request, else the least
//! recently used is evicted.

use gemma_core::model::Model;
use gemma_platform::{Conversation, DeviceError, Engine};

/// What [`choose`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    Existing(usize),
    New,
}

/// Tokens at the start of `a` and `b` that are equal.
pub fn shared_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// What the policy knows of a conversation.
#[derive(Clone, Copy, Debug)]
pub struct SlotView<'a> {
    /// The tokens its KV cache holds: the last prompt, then (most of) the reply.
    pub cached: &'a [u32],
    /// How many of `cached` were the last prompt.
    pub prompt_len: usize,
    /// When it was last used (larger = more recent).
    pub used: u64,
}

/// The policy; `can_grow` tells whether the budget allows another conversation.
pub fn choose(slots: &[SlotView], prompt: &[u32], can_grow: bool) -> Choice {
    let best = slots
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.cached.is_empty())
        .map(|(i, s)| (i, shared_prefix(s.cached, prompt), s))
        .filter(|&(_, shared, s)| shared >= s.prompt_len || shared * 2 >= s.cached.len())
        .max_by_key(|&(_, shared, s)| (shared, s.used));
    if let Some((i, ..)) = best {
        return Choice::Existing(i);
    }
    if let Some(i) = slots.iter().position(|s| s.cached.is_empty()) {
        return Choice::Existing(i);
    }
    if can_grow || slots.is_empty() {
        return Choice::New;
    }
    let lru = slots
        .iter()
        .enumerate()
        .min_by_key(|(_, s)| s.used)
        .map_or(0, |(i, _)| i);
    Choice::Existing(lru)
}

struct Slot {
    conv: Conversation,
    prompt_len: usize,
    last_used: u64,
}

pub struct Pool {
    /// Where every conversation's cache lives (the model's weights are
    /// there once, shared by all).
    engine: Engine,
    slots: Vec<Slot>,
    capacity: usize,
    context: usize,
    batch: usize,
    clock: u64,
}

impl Pool {
    /// Room for `capacity` conversations (at least one) of `context` tokens
    /// on `engine`, allocated as requests need them.
    pub fn new(engine: Engine, capacity: usize, context: usize, batch: usize) -> Self {
        Self {
            engine,
            slots: Vec::new(),
            capacity: capacity.max(1),
            context,
            batch,
            clock: 0,
        }
    }

    /// Conversations allocated so far.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// The conversation to run `prompt` on, or why a new one could not be
    /// allocated.
    pub fn get(&mut self, model: &Model, prompt: &[u32]) -> Result<&mut Conversation, DeviceError> {
        let views: Vec<SlotView> = self
            .slots
            .iter()
            .map(|s| SlotView {
                cached: s.conv.cached_tokens(),
                prompt_len: s.prompt_len,
                used: s.last_used,
            })
            .collect();
        let i = match choose(&views, prompt, self.slots.len() < self.capacity) {
            Choice::Existing(i) => i,
            Choice::New => {
                let conv = Conversation::on(&self.engine, model, self.context, self.batch)?;
                self.slots.push(Slot {
                    conv,
                    prompt_len: 0,
                    last_used: 0,
                });
                self.slots.len() - 1
            }
        };
        self.clock += 1;
        let slot = &mut self.slots[i];
        slot.last_used = self.clock;
        slot.prompt_len = prompt.len();
        Ok(&mut slot.conv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A conversation holding `cached`, the first `prompt_len` of them its last prompt.
    fn slot<'a>(cached: &'a [u32], prompt_len: usize, used: u64) -> SlotView<'a> {
        SlotView {
            cached,
            prompt_len,
            used,
        }
    }

    #[test]
    fn a_follow_up_turn_goes_to_the_conversation_it_extends() {
        let a = [2, 10, 11, 12, 13, 14];
        // Prompt [2, 10, 20], then a long reply the follow-up retokenizes differently.
        let b = [2, 10, 20, 21, 22, 23, 24, 25, 26];
        let follow_up = [2, 10, 20, 21, 99, 98, 97];
        let slots = [slot(&a, 3, 5), slot(&b, 3, 1)];
        assert_eq!(choose(&slots, &follow_up, true), Choice::Existing(1));
        assert_eq!(choose(&slots, &follow_up, false), Choice::Existing(1));
    }

    #[test]
    fn a_shared_template_prefix_alone_does_not_claim_a_conversation() {
        let a = [2, 10, 11, 12, 13, 14];
        let other = [2, 10, 50, 51];
        assert_eq!(choose(&[slot(&a, 4, 1)], &other, true), Choice::New);
    }

    #[test]
    fn a_prompt_sharing_most_of_a_cache_reuses_it() {
        // Same history, another last message: the cache is mostly shared.
        let a = [2, 10, 11, 12, 13, 14, 15, 16];
        let edited = [2, 10, 11, 12, 13, 14, 40];
        assert_eq!(
            choose(&[slot(&a, 7, 1)], &edited, true),
            Choice::Existing(0)
        );
    }

    #[test]
    fn without_a_match_an_empty_one_then_a_new_one_then_the_lru_is_used() {
        let a = [2, 10, 11, 12];
        let b = [2, 10, 13, 14];
        let other = [2, 30, 31];
        assert_eq!(
            choose(&[slot(&a, 3, 3), slot(&[], 0, 1)], &other, true),
            Choice::Existing(1)
        );
        assert_eq!(choose(&[slot(&a, 3, 3)], &other, true), Choice::New);
        assert_eq!(
            choose(&[slot(&a, 3, 3), slot(&b, 3, 2)], &other, false),
            Choice::Existing(1)
        );
        assert_eq!(choose(&[], &other, false), Choice::New);
    }

    #[test]
    fn among_matches_the_longest_shared_prefix_wins_then_the_most_recent() {
        let a = [2, 10, 11, 12];
        let b = [2, 10, 11, 12, 13];
        let prompt = [2, 10, 11, 12, 13, 14];
        assert_eq!(
            choose(&[slot(&a, 4, 9), slot(&b, 5, 1)], &prompt, true),
            Choice::Existing(1)
        );
        assert_eq!(
            choose(&[slot(&a, 4, 1), slot(&a, 4, 2)], &prompt, true),
            Choice::Existing(1)
        );
    }
}
