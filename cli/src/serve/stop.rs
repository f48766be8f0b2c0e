//! Stop sequences over streamed text.
//!
//! Text arrives a token at a time and a stop sequence may span tokens, so
//! whatever could still become the start of one is held back until the
//! next piece decides it. Text before a stop sequence is released; the
//! sequence and everything after it are not.

pub struct StopMatcher {
    stops: Vec<String>,
    /// Text received but not yet released.
    held: String,
    stopped: bool,
}

impl StopMatcher {
    /// Empty stop strings are ignored (they would match before any text).
    pub fn new(stops: Vec<String>) -> Self {
        Self {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
            stopped: false,
        }
    }

    /// Whether a stop sequence has been seen; nothing more is released after it.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Adds `piece` and returns the text that is now safe to release.
    pub fn push(&mut self, piece: &str) -> String {
        if self.stopped {
            return String::new();
        }
        self.held.push_str(piece);
        if let Some(at) = self.stops.iter().filter_map(|s| self.held.find(s)).min() {
            self.stopped = true;
            self.held.truncate(at);
            return std::mem::take(&mut self.held);
        }
        // Keep the longest tail of `held` that begins some stop sequence; a
        // stop sequence that ends later must start inside that tail.
        let keep_from = self
            .held
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| {
                let tail = &self.held[i..];
                self.stops.iter().any(|s| s.starts_with(tail))
            })
            .unwrap_or(self.held.len());
        let rest = self.held.split_off(keep_from);
        std::mem::replace(&mut self.held, rest)
    }

    /// Ends the text: what was held back could not have started a stop
    /// sequence after all.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for p in pieces {
            out += &m.push(p);
        }
        out += &m.finish();
        (out, m.stopped())
    }

    #[test]
    fn text_without_stop_sequences_passes_through_unchanged() {
        assert_eq!(run(&[], &["a", "b c"]), ("ab c".into(), false));
        assert_eq!(run(&["xyz"], &["a", "x", "y!"]), ("axy!".into(), false));
    }

    #[test]
    fn text_is_cut_before_a_stop_sequence_that_spans_pieces() {
        assert_eq!(
            run(&["\n\n"], &["Hello", "\n", "\nWorld"]),
            ("Hello".into(), true)
        );
        assert_eq!(run(&["END"], &["abE", "N", "Dxyz"]), ("ab".into(), true));
    }

    #[test]
    fn the_earliest_of_several_stop_sequences_wins() {
        assert_eq!(run(&["c", "ab"], &["xabc"]), ("x".into(), true));
    }

    #[test]
    fn a_possible_stop_prefix_is_held_back_until_decided() {
        let mut m = StopMatcher::new(vec!["END".into()]);
        assert_eq!(m.push("foo E"), "foo ");
        assert_eq!(m.push("N"), "");
        assert_eq!(m.push("d"), "ENd");
        assert!(!m.stopped());
    }

    #[test]
    fn multibyte_text_is_split_only_at_char_boundaries() {
        assert_eq!(run(&["é!"], &["café", "é", "!"]), ("café".into(), true));
        assert_eq!(run(&["日本"], &["今日", "は"]), ("今日は".into(), false));
    }

    #[test]
    fn empty_stop_strings_are_ignored_and_nothing_follows_a_stop() {
        let mut m = StopMatcher::new(vec![String::new(), "x".into()]);
        assert_eq!(m.push("ab"), "ab");
        assert_eq!(m.push("x"), "");
        assert_eq!(m.push("more"), "");
        assert_eq!(m.finish(), "");
    }
}
