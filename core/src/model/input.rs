//! What a pass is fed, and who may see whom.
//!
//! A prompt is a sequence of [`Input`]s: token ids, and precomputed
//! embedding rows (an image encoder's output) that take a token's place.
//! [`Span`]s mark runs of positions that attend to each other in both
//! directions (PaliGemma's prefix, each image of Gemma 3); everything else
//! is causal, and local layers add their sliding window. The prompt
//! builder decides where rows go, the spans decide who sees whom, and the
//! forward pass needs no special case for either.

/// One position of a prompt.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Input<'a> {
    /// A token id, embedded from the model's table and scaled by
    /// `sqrt(d_model)`.
    Token(u32),
    /// A precomputed embedding row of `d_model` floats, used as it is (no
    /// embedding scale).
    Embedding(&'a [f32]),
}

/// The inputs of a pass or a prompt: plain token ids (the common case,
/// with nothing to convert), or any mix of tokens and embedding rows.
#[derive(Clone, Copy, Debug)]
pub enum Inputs<'a> {
    Tokens(&'a [u32]),
    Mixed(&'a [Input<'a>]),
}

impl<'a> Inputs<'a> {
    pub fn len(&self) -> usize {
        match self {
            Inputs::Tokens(t) => t.len(),
            Inputs::Mixed(m) => m.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Input `i` (`None` past the end).
    pub fn get(&self, i: usize) -> Option<Input<'a>> {
        match self {
            Inputs::Tokens(t) => t.get(i).map(|&t| Input::Token(t)),
            Inputs::Mixed(m) => m.get(i).copied(),
        }
    }

    /// Inputs `range` (clamped to what there is).
    pub fn slice(&self, range: core::ops::Range<usize>) -> Inputs<'a> {
        let clamp = |len: usize| range.start.min(len)..range.end.clamp(range.start.min(len), len);
        match self {
            Inputs::Tokens(t) => Inputs::Tokens(&t[clamp(t.len())]),
            Inputs::Mixed(m) => Inputs::Mixed(&m[clamp(m.len())]),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Input<'a>> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }
}

/// A prompt: its inputs and the spans among them that attend both ways
/// (positions counted from the prompt's first input).
#[derive(Clone, Copy, Debug)]
pub struct Prompt<'a> {
    pub inputs: Inputs<'a>,
    pub spans: &'a [Span],
}

impl<'a> Prompt<'a> {
    /// Token ids, causal throughout.
    pub fn tokens(ids: &'a [u32]) -> Self {
        Prompt {
            inputs: Inputs::Tokens(ids),
            spans: &[],
        }
    }
}

/// Positions `start..end` that see each other bidirectionally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }

    pub fn contains(&self, pos: usize) -> bool {
        self.start <= pos && pos < self.end
    }

    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether `spans` are non-empty, in order and disjoint.
pub fn spans_are_ordered(spans: &[Span]) -> bool {
    spans.iter().all(|s| !s.is_empty()) && spans.windows(2).all(|w| w[0].end <= w[1].start)
}

/// Which keys a query may see in one layer.
///
/// A key `k` is visible from query `q` when `k <= q` and, in a local layer,
/// `q - k < window`; or when `q` and `k` lie in the same span (whatever
/// the window: Hugging Face's masks OR the spans onto the sliding-window
/// mask). Either way the visible keys form one range.
#[derive(Clone, Copy, Debug)]
pub struct Mask<'s> {
    /// Local layers: the sliding window; 0 = unlimited.
    pub window: usize,
    /// Ordered, disjoint bidirectional spans ([`spans_are_ordered`]).
    pub spans: &'s [Span],
    /// One past the last position written to the cache.
    pub written_end: usize,
}

impl Mask<'_> {
    /// The inclusive key range visible from query position `q`.
    pub fn keys(&self, q: usize) -> (usize, usize) {
        let mut lo = if self.window > 0 {
            q.saturating_sub(self.window - 1)
        } else {
            0
        };
        let mut hi = q;
        // The last span starting at or before q is the only one that can hold it.
        let i = self.spans.partition_point(|s| s.start <= q);
        if let Some(s) = i.checked_sub(1).map(|i| self.spans[i]) {
            if s.contains(q) {
                lo = lo.min(s.start);
                hi = hi.max(s.end - 1);
            }
        }
        (lo, hi.min(self.written_end.saturating_sub(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Visibility by definition, key by key, for a reference.
    fn visible(q: usize, k: usize, window: usize, spans: &[Span]) -> bool {
        let causal = k <= q && (window == 0 || q - k < window);
        causal || spans.iter().any(|s| s.contains(q) && s.contains(k))
    }

    #[test]
    fn key_ranges_match_the_definition() {
        let span_sets: [&[Span]; 4] = [
            &[],
            &[Span::new(0, 6)],
            &[Span::new(3, 9), Span::new(12, 14)],
            &[Span::new(2, 20)],
        ];
        for spans in span_sets {
            assert!(spans_are_ordered(spans));
            for window in [0, 1, 4, 30] {
                for written_end in [10, 25] {
                    let mask = Mask {
                        window,
                        spans,
                        written_end,
                    };
                    for q in 0..written_end {
                        let (lo, hi) = mask.keys(q);
                        for k in 0..written_end {
                            let want = visible(q, k, window, spans);
                            assert_eq!(
                                lo <= k && k <= hi,
                                want,
                                "spans {spans:?} window {window} q {q} k {k}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn spans_must_be_ordered_disjoint_and_non_empty() {
        assert!(!spans_are_ordered(&[Span::new(3, 9), Span::new(8, 10)]));
        assert!(!spans_are_ordered(&[Span::new(5, 9), Span::new(0, 2)]));
        assert!(!spans_are_ordered(&[Span::new(4, 4)]));
        assert!(spans_are_ordered(&[Span::new(0, 4), Span::new(4, 5)]));
    }
}
