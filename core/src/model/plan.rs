//! How much of a model fits on a device: pure arithmetic over a model's
//! tensor sizes, its KV cache and a backend's scratch buffers, so it is
//! tested anywhere and answers for models that are not on disk (their
//! shapes come from the known-model table and an encoding).
//!
//! Layers `[0, n)` go to the device and the rest stay on the CPU, as with
//! llama.cpp's `-ngl`. The device stage is the first, so it embeds and
//! holds the embedding table; the final norm and a separate output
//! projection (Gemma ties it to the table) go too when every layer does.

use super::config::MAX_LAYERS;
use super::{Model, ModelConfig};
use crate::weights::{Matrix, TensorId, ROLES};

/// Bytes of a model's weights as a device holds them: matrices as stored,
/// norm gains decoded to f32.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    pub layers: heapless::Vec<u64, MAX_LAYERS>,
    /// The embedding table, which is also the output projection when the
    /// model ties them.
    pub embedding: u64,
    /// A separate output projection (0 when tied).
    pub output: u64,
    pub final_norm: u64,
}

fn gain_bytes(m: &Matrix) -> u64 {
    4 * (m.rows * m.cols) as u64
}

impl Footprint {
    /// The sizes of `model`'s tensors. Views of one stored stream (gemma.cpp
    /// keeps Q, K and V in one tensor) count once per layer.
    pub fn of(model: &Model) -> Self {
        let w = &model.weights;
        let key = |m: &Matrix| (m.data.as_ptr() as usize, m.data.len());
        let mut fp = Footprint {
            embedding: w.embed.data.len() as u64,
            output: if key(&w.output) == key(&w.embed) {
                0
            } else {
                w.output.data.len() as u64
            },
            final_norm: gain_bytes(&w.final_norm),
            ..Footprint::default()
        };
        for l in 0..model.config.n_layers {
            let mut seen: heapless::Vec<(usize, usize), 16> = heapless::Vec::new();
            let mut bytes = 0u64;
            for info in ROLES.iter().filter(|i| i.per_layer) {
                let m = w.get(TensorId::layer(info.role, l));
                if m.is_empty() {
                    continue;
                }
                if m.rows == 1 {
                    bytes += gain_bytes(m);
                } else if !seen.contains(&key(m)) {
                    let _ = seen.push(key(m));
                    bytes += m.data.len() as u64;
                }
            }
            let _ = fp.layers.push(bytes);
        }
        fp
    }

    /// The sizes a model of `cfg` would have with every matrix stored at
    /// `bits_per_weight` (e.g. 4.5 for Q4_K, 8.5 for Q8_0, 8 for SFP):
    /// for models known only by their shapes.
    pub fn estimate(cfg: &ModelConfig, bits_per_weight: f32) -> Self {
        let dims = cfg.dims();
        // Whole bytes of `rows x cols` weights, rounded up (bits per weight
        // are given to a sixteenth: 4.5, 6.5625, ...).
        let sixteenths = (bits_per_weight as f64 * 16.0) as u64;
        let bytes = |(rows, cols): (usize, usize)| -> u64 {
            ((rows * cols) as u64 * sixteenths).div_ceil(128)
        };
        let mut fp = Footprint {
            embedding: bytes((cfg.vocab_size, cfg.d_model)),
            final_norm: 4 * cfg.d_model as u64,
            ..Footprint::default()
        };
        for _ in 0..cfg.n_layers {
            let mut layer = 0u64;
            for info in ROLES.iter().filter(|i| i.per_layer) {
                if !info.role.required(cfg.qk_norm, cfg.post_norms) {
                    continue;
                }
                let shape = (info.shape)(&dims);
                layer += if shape.0 == 1 {
                    4 * shape.1 as u64
                } else {
                    bytes(shape)
                };
            }
            let _ = fp.layers.push(layer);
        }
        fp
    }

    pub fn total(&self) -> u64 {
        self.layers.iter().sum::<u64>() + self.embedding + self.output + self.final_norm
    }
}

/// Bytes of `layer`'s KV cache (keys and values in f32) for `context`
/// positions and passes of `batch`: a local layer keeps a ring.
pub fn kv_bytes(cfg: &ModelConfig, layer: usize, context: usize, batch: usize) -> u64 {
    let slots = super::cache::slots(cfg, layer, context, batch.max(1)) as u64;
    // Saturating: an absurd context plans as "does not fit", never wraps.
    slots.saturating_mul(cfg.kv_dim() as u64 * 2 * 4)
}

/// What a device must hold besides weights and cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overheads {
    /// The backend's activations and staging for passes of `batch`
    /// (e.g. `gemma_gpu`'s `OpenClBackend::scratch_bytes`).
    pub scratch: u64,
    /// Kept free for the driver and runtime (contexts, compiled kernels).
    pub reserve: u64,
}

/// Where a model's parts go, and what the device then holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Layers `[0, gpu_layers)` run on the device.
    pub gpu_layers: usize,
    /// The final norm and output projection are on the device too (only
    /// when every layer is). The embedding table is whenever a layer is.
    pub output_on_device: bool,
    pub weight_bytes: u64,
    pub kv_bytes: u64,
    pub overhead_bytes: u64,
    /// The context the plan was made for.
    pub context: usize,
}

impl Plan {
    pub fn device_bytes(&self) -> u64 {
        self.weight_bytes
            .saturating_add(self.kv_bytes)
            .saturating_add(self.overhead_bytes)
    }
}

/// The bytes of offloading layers `[0, n)` (and the output when `output`).
fn cost(
    cfg: &ModelConfig,
    fp: &Footprint,
    n: usize,
    output: bool,
    context: usize,
    batch: usize,
    over: Overheads,
) -> Plan {
    let mut weights: u64 = fp.layers.iter().take(n).sum();
    if n > 0 {
        weights += fp.embedding;
    }
    if output {
        weights += fp.output + fp.final_norm;
    }
    let kv = (0..n).fold(0u64, |a, l| {
        a.saturating_add(kv_bytes(cfg, l, context, batch))
    });
    let overhead = if n > 0 || output {
        over.scratch + over.reserve
    } else {
        0
    };
    Plan {
        gpu_layers: n,
        output_on_device: output,
        weight_bytes: weights,
        kv_bytes: kv,
        overhead_bytes: overhead,
        context,
    }
}

/// The most of the model that fits in `free` bytes with a `context` of
/// positions and passes of `batch`: every layer and the output if they
/// fit, else the most leading layers that do (possibly none).
pub fn plan(
    cfg: &ModelConfig,
    fp: &Footprint,
    context: usize,
    batch: usize,
    free: u64,
    over: Overheads,
) -> Plan {
    let all = cost(cfg, fp, cfg.n_layers, true, context, batch, over);
    if all.device_bytes() <= free {
        return all;
    }
    // Every layer without the output is not a split the engine runs (the
    // last stage computes the logits): at most all but one layer.
    (0..cfg.n_layers)
        .rev()
        .map(|n| cost(cfg, fp, n, false, context, batch, over))
        .find(|p| p.device_bytes() <= free || p.gpu_layers == 0)
        .unwrap_or_else(|| cost(cfg, fp, 0, false, context, batch, over))
}

/// The largest context (up to `limit`, the model's trained context) with
/// which every layer and the output fit in `free` bytes; 0 when even one
/// position does not fit.
pub fn max_full_context(
    cfg: &ModelConfig,
    fp: &Footprint,
    batch: usize,
    free: u64,
    over: Overheads,
    limit: usize,
) -> usize {
    let fits =
        |ctx: usize| cost(cfg, fp, cfg.n_layers, true, ctx, batch, over).device_bytes() <= free;
    if limit == 0 || !fits(1) {
        return 0;
    }
    // Bytes grow with the context, so the answer is a boundary.
    let (mut lo, mut hi) = (1usize, limit);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::{Family, Fields};

    /// Gemma 3 1B's shapes (26 layers, 5 local to 1 global, window 512).
    fn gemma3_1b() -> ModelConfig {
        let mut f = Fields::new(Family::Gemma3);
        f.n_layers = 26;
        f.d_model = 1152;
        f.d_ff = 6912;
        f.n_heads = 4;
        f.n_kv_heads = 1;
        f.head_dim = Some(256);
        f.vocab_size = 262_144;
        f.context_length = 32_768;
        f.sliding_window = Some(512);
        ModelConfig::derive(&f).unwrap()
    }

    const MIB: u64 = 1 << 20;
    const NONE: Overheads = Overheads {
        scratch: 0,
        reserve: 0,
    };

    #[test]
    fn a_local_layer_keeps_a_ring_and_a_global_one_the_context() {
        let cfg = gemma3_1b();
        let per_slot = 256 * 2 * 4;
        assert!(cfg.is_local(0) && !cfg.is_local(5));
        assert_eq!(kv_bytes(&cfg, 0, 4096, 64), (512 + 63) * per_slot);
        assert_eq!(kv_bytes(&cfg, 5, 4096, 64), 4096 * per_slot);
        // A context shorter than the ring.
        assert_eq!(kv_bytes(&cfg, 0, 100, 64), 100 * per_slot);
    }

    #[test]
    fn plans_take_everything_that_fits_and_leading_layers_otherwise() {
        let cfg = gemma3_1b();
        let fp = Footprint::estimate(&cfg, 4.5);
        let over = Overheads {
            scratch: 50 * MIB,
            reserve: 100 * MIB,
        };
        let all = plan(&cfg, &fp, 4096, 64, 4096 * MIB, over);
        assert_eq!((all.gpu_layers, all.output_on_device), (26, true));
        assert_eq!(all.weight_bytes, fp.total());
        // The table and half of the layers.
        let free = over.scratch
            + over.reserve
            + fp.embedding
            + fp.layers.iter().take(13).sum::<u64>()
            + (0..13).map(|l| kv_bytes(&cfg, l, 4096, 64)).sum::<u64>();
        let some = plan(&cfg, &fp, 4096, 64, free, over);
        assert_eq!((some.gpu_layers, some.output_on_device), (13, false));
        assert!(some.device_bytes() <= free);
        // Every layer fits but not the final norm: all but one layer.
        let layers_only = over.scratch
            + over.reserve
            + fp.embedding
            + fp.layers.iter().sum::<u64>()
            + (0..26).map(|l| kv_bytes(&cfg, l, 4096, 64)).sum::<u64>();
        let most = plan(&cfg, &fp, 4096, 64, layers_only, over);
        assert_eq!((most.gpu_layers, most.output_on_device), (25, false));
        // An absurd context saturates (never wraps): only the local layers
        // before the first global one fit, their rings not growing with it.
        assert_eq!(plan(&cfg, &fp, usize::MAX, 64, 1 << 40, over).gpu_layers, 5);
        let none = plan(&cfg, &fp, 4096, 64, 10 * MIB, over);
        assert_eq!((none.gpu_layers, none.device_bytes()), (0, 0));
    }

    #[test]
    fn the_largest_context_is_the_boundary_of_what_fits() {
        let cfg = gemma3_1b();
        let fp = Footprint::estimate(&cfg, 4.5);
        // About 560 MiB of weights; each position of the 4 global layers
        // then costs 8 KiB.
        let free = 700 * MIB;
        let ctx = max_full_context(&cfg, &fp, 64, free, NONE, 32_768);
        assert!(ctx > 0 && ctx < 32_768);
        let at = |c| cost(&cfg, &fp, 26, true, c, 64, NONE).device_bytes();
        assert!(at(ctx) <= free && at(ctx + 1) > free);
        assert_eq!(max_full_context(&cfg, &fp, 64, MIB, NONE, 32_768), 0);
        assert_eq!(
            max_full_context(&cfg, &fp, 64, 1 << 40, NONE, 32_768),
            32_768
        );
    }

    #[test]
    fn estimates_count_every_tensor_of_the_shapes() {
        let cfg = gemma3_1b();
        let fp = Footprint::estimate(&cfg, 8.0);
        // Per layer: Q, K, V, O, gate, up, down at one byte a weight, and
        // 4 d_model + 2 head_dim norm gains in f32 (Gemma 3: QK-norm and
        // post-norms).
        let (d, q, kv, ff) = (1152u64, 1024u64, 256u64, 6912u64);
        let matrices = d * q + 2 * d * kv + q * d + 3 * d * ff;
        let gains = 4 * (4 * d + 2 * 256);
        assert!(fp.layers.iter().all(|&b| b == matrices + gains));
        assert_eq!(fp.embedding, 262_144 * d);
        assert_eq!(fp.output, 0);
    }
}
