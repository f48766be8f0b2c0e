//! gemma-core on a host with no operating system services: the model lives
//! in static bytes, every buffer on the stack, and nothing allocates.
#![no_std]

use core::panic::PanicInfo;
use gemma_core::cpu::CpuBackend;
use gemma_core::exec::Serial;
use gemma_core::format::gguf::Gguf;
use gemma_core::generate::{GenerateOptions, Session, SessionSizes};
use gemma_core::model::Prompt;
use gemma_core::sampling::{Candidate, Sampler};
use gemma_core::tokenizer::{GgufVocab, PieceEntry, Tokenizer};

/// A tiny synthetic model, written by the test that builds this crate.
static MODEL: &[u8] = include_bytes!(env!("GEMMA_DEMO_MODEL"));

const PROMPT: &str = "hello the";
const MAX_VOCAB: usize = 1024;
const MAX_INDEX: usize = 8192;
const CONTEXT: usize = 32;
const BATCH: usize = 8;
const FLOATS: usize = 32 * 1024;
const GENERATE: usize = 8;

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    loop {}
}

/// Runs the demo; on success `out` holds the prompt ids then the generated
/// ids, and the return value is the prompt length (negative on error).
fn demo(out: &mut [u32]) -> Result<usize, i32> {
    let gguf = Gguf::parse(MODEL).map_err(|_| -1)?;
    let model = gemma_core::load::gguf::model(&gguf).map_err(|_| -2)?;

    let vocab = GgufVocab::from_gguf(&gguf).map_err(|_| -3)?;
    let mut entries = [PieceEntry::default(); MAX_VOCAB];
    let mut index = [0u32; MAX_INDEX];
    let (ne, ni) = (
        Tokenizer::entries_len(vocab.count()),
        Tokenizer::index_len(vocab.count()),
    );
    if ne > MAX_VOCAB || ni > MAX_INDEX {
        return Err(-4);
    }
    let tok = vocab
        .build(&mut entries[..ne], &mut index[..ni])
        .map_err(|_| -5)?;

    let mut scratch = [0u32; 16 * PROMPT.len()];
    let mut prompt = [0u32; 32];
    prompt[0] = tok.bos_id();
    let n = 1 + tok
        .encode(PROMPT, true, &mut scratch, &mut prompt[1..])
        .map_err(|_| -6)?;

    let cfg = &model.config;
    let sizes = SessionSizes::new(cfg, CONTEXT, BATCH).ok_or(-7)?;
    let mut floats = [0f32; FLOATS];
    let mut candidates = [Candidate::default(); MAX_VOCAB];
    if sizes.floats > FLOATS || sizes.candidates > MAX_VOCAB {
        return Err(-8);
    }
    let (backend_floats, logits) =
        SessionSizes::split(cfg, &mut floats[..sizes.floats]).map_err(|_| -9)?;
    let layers = 0..cfg.n_layers;
    let mut backend =
        CpuBackend::new(&model, &Serial, layers, CONTEXT, BATCH, backend_floats).map_err(|_| -9)?;
    let mut session = Session::new(cfg, &mut backend, logits, &mut candidates).map_err(|_| -9)?;
    let opts = GenerateOptions {
        max_new_tokens: GENERATE,
        stop_tokens: &[],
        prefill_progress: None,
        adjust_logits: None,
    };
    let mut written = n;
    if out.len() < n + GENERATE {
        return Err(-10);
    }
    out[..n].copy_from_slice(&prompt[..n]);
    session
        .generate(
            Prompt::tokens(&prompt[..n]),
            &mut Sampler::greedy(),
            &opts,
            &mut |t| {
                out[written] = t;
                written += 1;
                true
            },
        )
        .map_err(|_| -11)?;
    Ok(n)
}

/// C entry point: writes prompt ids then generated ids into `out`
/// (`cap` entries); returns the prompt length, or a negative error code.
///
/// # Safety
/// `out` must point to `cap` writable `u32`s.
#[no_mangle]
pub unsafe extern "C" fn gemma_demo_run(out: *mut u32, cap: usize) -> i32 {
    if out.is_null() {
        return -100;
    }
    // SAFETY: the caller guarantees `out` points to `cap` writable u32s.
    let out = unsafe { core::slice::from_raw_parts_mut(out, cap) };
    out.fill(u32::MAX);
    match demo(out) {
        Ok(n) => n as i32,
        Err(code) => code,
    }
}
