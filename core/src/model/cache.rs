//! The geometry of a KV cache, which every backend follows: how many
//! slots each layer keeps (a ring for a local layer), and whether a cache
//! can be rewound to an earlier position.

use super::ModelConfig;
use core::ops::Range;

/// Slots a cache keeps for `layer`: the whole context for a global layer,
/// a ring for a local one. Every backend sizes its cache by this rule.
pub fn slots(cfg: &ModelConfig, layer: usize, max_context: usize, max_batch: usize) -> usize {
    if cfg.is_local(layer) {
        let ring = cfg.sliding_window.saturating_add(max_batch - 1);
        ring.min(max_context)
    } else {
        max_context
    }
}

/// Whether caches of `layers` with `capacity(layer)` slots, filled up to
/// position `filled`, still hold every key a continuation from `pos`
/// needs (a local layer's ring may have overwritten them).
pub fn can_rewind(
    cfg: &ModelConfig,
    mut layers: Range<usize>,
    capacity: impl Fn(usize) -> usize,
    filled: usize,
    pos: usize,
) -> bool {
    if pos > filled {
        return false;
    }
    layers.all(|l| {
        let cap = capacity(l);
        let need = if cfg.is_local(l) {
            cfg.sliding_window.min(pos)
        } else {
            pos
        };
        // Slots of positions [pos - need, pos) must not have been
        // overwritten by positions [pos, filled).
        cap >= filled || filled - pos + need <= cap
    })
}
