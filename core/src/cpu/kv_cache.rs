//! The key/value cache, in memory the caller hands in.
//!
//! Global layers keep one slot per position of the context. Local layers
//! keep a ring of `window + max_batch - 1` slots: enough that while a batch
//! of up to `max_batch` positions is written, every key any query of that
//! batch may still see is kept (the oldest a query at `p` needs is
//! `p - window + 1`).
//!
//! A cache may hold a range of the layers only (the share of one backend
//! when the layers are split over several); the others get no slots.

use crate::model::cache::slots;
use crate::model::config::{ModelConfig, MAX_LAYERS};
use core::fmt;
use core::ops::Range;

#[derive(Clone, Copy, Debug, Default)]
struct LayerSlots {
    /// Start of this layer's keys in the buffer; values follow the keys.
    offset: usize,
    capacity: usize,
}

pub struct KvCache<'a> {
    buf: &'a mut [f32],
    layers: [LayerSlots; MAX_LAYERS],
    held: Range<usize>,
    kv_dim: usize,
    max_context: usize,
    max_batch: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvError {
    /// The buffer is shorter than [`KvCache::required_len`].
    BufferTooSmall { needed: usize, got: usize },
    /// Sizes overflow or are zero.
    BadSize,
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvError::BufferTooSmall { needed, got } => {
                write!(f, "KV cache buffer holds {got} floats, {needed} are needed")
            }
            KvError::BadSize => write!(
                f,
                "KV cache context and batch sizes must be non-zero and fit in memory"
            ),
        }
    }
}

impl<'a> KvCache<'a> {
    /// Floats needed for `layers`, `max_context` positions and batches of
    /// up to `max_batch`.
    pub fn required_len(
        cfg: &ModelConfig,
        layers: Range<usize>,
        max_context: usize,
        max_batch: usize,
    ) -> Option<usize> {
        if max_context == 0 || max_batch == 0 || layers.end > cfg.n_layers.min(MAX_LAYERS) {
            return None;
        }
        layers.into_iter().try_fold(0usize, |acc, l| {
            let per_layer = slots(cfg, l, max_context, max_batch)
                .checked_mul(cfg.kv_dim())?
                .checked_mul(2)?;
            acc.checked_add(per_layer)
        })
    }

    pub fn new(
        cfg: &ModelConfig,
        layers: Range<usize>,
        max_context: usize,
        max_batch: usize,
        buf: &'a mut [f32],
    ) -> Result<Self, KvError> {
        let needed = Self::required_len(cfg, layers.clone(), max_context, max_batch)
            .ok_or(KvError::BadSize)?;
        if buf.len() < needed {
            return Err(KvError::BufferTooSmall {
                needed,
                got: buf.len(),
            });
        }
        let mut slots_of = [LayerSlots::default(); MAX_LAYERS];
        let mut offset = 0;
        for l in layers.clone() {
            let capacity = slots(cfg, l, max_context, max_batch);
            slots_of[l] = LayerSlots { offset, capacity };
            offset += 2 * capacity * cfg.kv_dim();
        }
        Ok(Self {
            buf: &mut buf[..needed],
            layers: slots_of,
            held: layers,
            kv_dim: cfg.kv_dim(),
            max_context,
            max_batch,
        })
    }

    pub fn max_context(&self) -> usize {
        self.max_context
    }

    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// The layers this cache keeps.
    pub fn layers(&self) -> Range<usize> {
        self.held.clone()
    }

    /// Slots kept for `layer` (the ring size of a local layer; 0 for a
    /// layer not held).
    pub fn capacity(&self, layer: usize) -> usize {
        self.layers.get(layer).map_or(0, |l| l.capacity)
    }

    /// Where `pos` of `layer` lies; an empty range for a layer not held.
    fn range(&self, layer: usize, pos: usize, values: bool) -> Range<usize> {
        if !self.held.contains(&layer) {
            return 0..0;
        }
        let l = self.layers[layer];
        let slot = pos % l.capacity.max(1);
        let base = l.offset + if values { l.capacity * self.kv_dim } else { 0 };
        let start = base + slot * self.kv_dim;
        start..start + self.kv_dim
    }

    /// The key stored for `pos` (whatever occupies its slot; callers only
    /// ask for positions the ring still holds).
    #[inline]
    pub fn key(&self, layer: usize, pos: usize) -> &[f32] {
        &self.buf[self.range(layer, pos, false)]
    }

    #[inline]
    pub fn value(&self, layer: usize, pos: usize) -> &[f32] {
        &self.buf[self.range(layer, pos, true)]
    }

    /// Stores `pos`'s key and value (ignored for a layer not held).
    pub fn store(&mut self, layer: usize, pos: usize, key: &[f32], value: &[f32]) {
        let k = self.range(layer, pos, false);
        let n = k.len().min(key.len());
        self.buf[k.start..k.start + n].copy_from_slice(&key[..n]);
        let v = self.range(layer, pos, true);
        let n = v.len().min(value.len());
        self.buf[v.start..v.start + n].copy_from_slice(&value[..n]);
    }
}
