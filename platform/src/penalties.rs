//! Changes to each logits row before a token is sampled, as OpenAI's API
//! defines them: `logit_bias` (added to a token's logit) and the presence
//! and frequency penalties (subtracted from the logit of every token
//! generated so far: once, and once per time it was generated).

use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Penalties {
    /// Subtracted once from the logit of each token generated so far.
    pub presence: f32,
    /// Subtracted from a token's logit once per time it was generated.
    pub frequency: f32,
    /// Added to the logits of these tokens.
    pub bias: Vec<(u32, f32)>,
}

impl Penalties {
    /// Penalties in OpenAI's ranges; `None` (no penalties) is fine.
    pub const PENALTY_RANGE: (f32, f32) = (-2.0, 2.0);
    pub const BIAS_RANGE: (f32, f32) = (-100.0, 100.0);

    pub fn is_none(&self) -> bool {
        self.presence == 0.0 && self.frequency == 0.0 && self.bias.is_empty()
    }

    /// Refuses values outside OpenAI's ranges and biased tokens outside a
    /// vocabulary of `vocab`, naming the field.
    pub fn validate(&self, vocab: usize) -> Result<(), String> {
        let (lo, hi) = Self::PENALTY_RANGE;
        for (name, v) in [
            ("presence_penalty", self.presence),
            ("frequency_penalty", self.frequency),
        ] {
            if !(lo..=hi).contains(&v) {
                return Err(format!("`{name}` must be within [{lo}, {hi}], not {v}"));
            }
        }
        let (lo, hi) = Self::BIAS_RANGE;
        for (i, &(t, _)) in self.bias.iter().enumerate() {
            if self.bias[..i].iter().any(|&(u, _)| u == t) {
                return Err(format!("`logit_bias` names token {t} twice"));
            }
        }
        for &(t, b) in &self.bias {
            if t as usize >= vocab {
                return Err(format!(
                    "`logit_bias` names token {t}, outside the vocabulary of {vocab}"
                ));
            }
            if !(lo..=hi).contains(&b) {
                return Err(format!(
                    "`logit_bias` for token {t} must be within [{lo}, {hi}], not {b}"
                ));
            }
        }
        Ok(())
    }

    /// Applies the biases, and the penalties for the tokens generated so
    /// far (`counts`: token → times generated), to one logits row.
    pub fn apply(&self, logits: &mut [f32], counts: &HashMap<u32, u32>) {
        for &(t, b) in &self.bias {
            if let Some(l) = logits.get_mut(t as usize) {
                *l += b;
            }
        }
        if self.presence == 0.0 && self.frequency == 0.0 {
            return;
        }
        for (&t, &n) in counts {
            if let Some(l) = logits.get_mut(t as usize) {
                *l -= self.presence + self.frequency * n as f32;
            }
        }
    }
}

/// The penalties of one turn and the tokens it has generated: the token
/// callback records each, the logits hook applies them (both may run on
/// a worker thread, hence the lock).
pub struct PenaltyState<'p> {
    penalties: &'p Penalties,
    counts: Mutex<HashMap<u32, u32>>,
}

impl<'p> PenaltyState<'p> {
    /// Room for `tokens` distinct generated tokens is made here, so the
    /// decode loop does not allocate (none when there are no penalties).
    pub fn new(penalties: &'p Penalties, tokens: usize) -> Self {
        let room = if penalties.is_none() { 0 } else { tokens };
        Self {
            penalties,
            counts: Mutex::new(HashMap::with_capacity(room)),
        }
    }

    pub fn record(&self, token: u32) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *c.entry(token).or_insert(0) += 1;
    }

    pub fn adjust(&self, logits: &mut [f32]) {
        let c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        self.penalties.apply(logits, &c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn biases_and_penalties_follow_openais_definition() {
        let p = Penalties {
            presence: 0.5,
            frequency: 0.25,
            bias: vec![(1, 10.0), (3, -100.0)],
        };
        let state = PenaltyState::new(&p, 8);
        for t in [2, 2, 2, 0] {
            state.record(t);
        }
        let mut l = [1.0f32, 2.0, 3.0, 4.0];
        state.adjust(&mut l);
        // 0: once (-0.5 - 0.25); 1: +10; 2: three times (-0.5 - 0.75);
        // 3: -100.
        assert_eq!(l, [0.25, 12.0, 1.75, -96.0]);
        assert!(p.validate(4).is_ok());
        assert!(p.validate(3).unwrap_err().contains("token 3"));
        let far = Penalties {
            frequency: 2.5,
            ..Penalties::default()
        };
        assert!(far.validate(4).unwrap_err().contains("frequency_penalty"));
        assert!(Penalties::default().is_none());
        let twice = Penalties {
            bias: vec![(1, 60.0), (1, 60.0)],
            ..Penalties::default()
        };
        assert!(twice.validate(4).unwrap_err().contains("twice"));
    }
}
