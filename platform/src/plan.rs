//! Device plans as `gemma info --devices` prints them: core's planner
//! (`model::plan`) applied to a model file or to a model gemma.cpp knows
//! by name (shapes from its table, bytes from an encoding's bits per
//! weight), a device's memory and the OpenCL backend's scratch buffers.

use gemma_core::format::sbs::{ConfigStorage, PromptWrapping, TensorType, KNOWN_MODELS};
use gemma_core::load;
use gemma_core::model::plan::{max_full_context, plan, Footprint, Overheads};
use gemma_core::model::ModelConfig;
use std::fmt::Write;

/// Device memory left to the driver, the runtime and whatever else uses
/// the card (a desktop's display), not counted as the model's.
pub const RESERVE_BYTES: u64 = 256 << 20;

/// Bits per weight of the encodings a plan can assume for a known model:
/// GGML blocks (scales included; Q4_K_M and Q5_K_M mix K-quants, the
/// figure is llama.cpp's average) and gemma.cpp's codecs.
pub const ENCODINGS: [(&str, f32); 10] = [
    ("f32", 32.0),
    ("bf16", 16.0),
    ("f16", 16.0),
    ("q8_0", 8.5),
    ("q6_k", 6.5625),
    ("q5_k_m", 5.69),
    ("q4_k_m", 4.89),
    ("q4_0", 4.5),
    ("sfp", 8.0),
    ("nuq", 4.5),
];

/// The bits per weight of `name` (case-insensitive), or an error that
/// lists the names.
pub fn bits_per_weight(name: &str) -> Result<f32, String> {
    let lower = name.to_ascii_lowercase();
    ENCODINGS
        .iter()
        .find(|(n, _)| *n == lower)
        .map(|&(_, b)| b)
        .ok_or_else(|| {
            let names: Vec<_> = ENCODINGS.iter().map(|(n, _)| *n).collect();
            format!("unknown encoding {name:?}: one of {}", names.join(", "))
        })
}

/// The configuration of a model gemma.cpp knows, by its name (`Gemma3_1B`,
/// `gemma2-2b`: case and `-`/`_` do not matter): its language model (a
/// Gemma 3 vision model's image encoder is not counted; PaliGemma models
/// are Gemma 2's language models).
pub fn known_config(name: &str) -> Result<ModelConfig, String> {
    let norm = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let known = KNOWN_MODELS
        .iter()
        .filter(|k| k.default_wrapping != PromptWrapping::PaliGemma)
        .find(|k| norm(k.display_name) == norm(name));
    let Some(k) = known else {
        let names: Vec<_> = KNOWN_MODELS
            .iter()
            .filter(|k| k.default_wrapping != PromptWrapping::PaliGemma)
            .map(|k| k.display_name)
            .collect();
        return Err(format!(
            "no known text model {name:?}: one of {}",
            names.join(", ")
        ));
    };
    let mut storage = ConfigStorage::default();
    let cfg = k.config(TensorType::BF16, k.default_wrapping, &mut storage);
    let fields = load::sbs::fields(&cfg).map_err(|e| e.to_string())?;
    ModelConfig::derive(&fields).map_err(|e| e.to_string())
}

/// Passes a plan assumes: the CLI's `--batch` default.
pub const PLAN_BATCH: usize = 256;

/// The context a plan assumes when none is given: the model's, at most
/// 4096.
pub fn default_context(cfg: &ModelConfig) -> usize {
    cfg.context_length.clamp(1, 4096)
}

/// What a device holds besides the model's weights and KV cache, for
/// passes of `batch`: the backend's scratch buffers and the reserve.
pub fn overheads(cfg: &ModelConfig, batch: usize) -> Overheads {
    Overheads {
        scratch: scratch_bytes(cfg, batch),
        reserve: RESERVE_BYTES,
    }
}

/// Device bytes the OpenCL backend holds besides weights and KV cache,
/// for passes of `batch` (0 in a build without OpenCL).
pub fn scratch_bytes(cfg: &ModelConfig, batch: usize) -> u64 {
    #[cfg(feature = "opencl")]
    return gemma_gpu::opencl::OpenClBackend::scratch_bytes(cfg, batch);
    #[cfg(not(feature = "opencl"))]
    {
        let _ = (cfg, batch);
        0
    }
}

/// A plan for one device of `free` bytes, in a few lines.
pub fn describe(
    cfg: &ModelConfig,
    fp: &Footprint,
    device: &str,
    free: u64,
    context: usize,
    batch: usize,
) -> String {
    let mib = |b: u64| b.div_ceil(1 << 20);
    let over = overheads(cfg, batch);
    let p = plan(cfg, fp, context, batch, free, over);
    let mut s = format!("{device} ({} MiB): ", mib(free));
    let n = cfg.n_layers;
    let _ = match (p.gpu_layers, p.output_on_device) {
        (0, _) => write!(s, "nothing fits; every layer on the CPU"),
        (l, true) => write!(s, "all {l} layers and the output"),
        (l, false) => write!(
            s,
            "layers 0..{l} of {n} and the embedding table; the rest on the CPU"
        ),
    };
    if p.gpu_layers > 0 {
        let _ = write!(
            s,
            "\n    weights {} MiB + KV cache {} MiB (context {context}) + scratch {} MiB + \
             reserve {} MiB = {} MiB",
            mib(p.weight_bytes),
            mib(p.kv_bytes),
            mib(over.scratch),
            mib(over.reserve),
            mib(p.device_bytes())
        );
    }
    let full = max_full_context(cfg, fp, batch, free, over, cfg.context_length);
    let _ = match full {
        0 => write!(s, "\n    the whole model does not fit at any context"),
        c => write!(s, "\n    the whole model fits up to a context of {c}"),
    };
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_models_are_found_by_any_spelling_and_others_are_listed() {
        let c = known_config("gemma3-1b").unwrap();
        assert_eq!((c.n_layers, c.d_model, c.vocab_size), (26, 1152, 262_144));
        assert_eq!(known_config("GEMMA2_2B").unwrap().n_layers, 26);
        let e = known_config("gemma9").unwrap_err();
        assert!(e.contains("Gemma3_4B"), "{e}");
        assert!(!e.contains("PaliGemma"), "{e}");
        assert_eq!(bits_per_weight("Q4_K_M").unwrap(), 4.89);
        assert!(bits_per_weight("q3").unwrap_err().contains("q8_0"));
    }

    #[test]
    fn a_plan_names_what_goes_where() {
        let cfg = known_config("gemma3_1b").unwrap();
        let fp = Footprint::estimate(&cfg, 4.89);
        let big = describe(&cfg, &fp, "a", 8 << 30, 4096, 64);
        assert!(big.contains("all 26 layers and the output"), "{big}");
        assert!(big.contains("fits up to a context of 32768"), "{big}");
        let small = describe(&cfg, &fp, "b", 600 << 20, 4096, 64);
        assert!(small.contains("layers 0.."), "{small}");
        assert!(small.contains("does not fit"), "{small}");
        let none = describe(&cfg, &fp, "c", 100 << 20, 4096, 64);
        assert!(none.contains("nothing fits"), "{none}");
    }
}
