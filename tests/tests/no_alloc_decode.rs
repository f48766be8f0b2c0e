//! After set-up, generating tokens allocates nothing: a counting global
//! allocator watches the decode loop, with the serial and the rayon executor.

use gemma_core::exec::{Executor, Serial};
use gemma_core::format::gguf::Gguf;
use gemma_core::generate::{GenerateOptions, Session};
use gemma_core::kernels::Precision;
use gemma_core::model::Prompt;
use gemma_core::sampling::{Sampler, SamplingParams};
use gemma_platform::synthetic::{tiny_model, TinySpec};
use gemma_platform::{SessionBuffers, WorkerPool};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Set on the threads that run the decode loop (the test's own, or the
    /// pool's workers), so the test harness's bookkeeping on its other
    /// threads is not counted.
    static MEASURED: Cell<bool> = const { Cell::new(false) };
}

fn measured_thread() -> bool {
    MEASURED.with(Cell::get)
}

// SAFETY: forwards every call to the system allocator unchanged; it only
// counts allocations while COUNTING is set.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) && measured_thread() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) && measured_thread() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by a whole `generate` call (prefill and `n` tokens).
fn allocations_while_decoding(exec: &dyn Executor, n: usize) -> usize {
    let bytes = tiny_model(&TinySpec::default());
    let g = Gguf::parse(&bytes).unwrap();
    let model = gemma_core::load::gguf::model(&g).unwrap();
    let mut bufs = SessionBuffers::new(&model.config, 64, 8).unwrap();
    let parts = bufs.cpu(&model, exec, Precision::Exact).unwrap();
    let mut backend = parts.backend;
    let mut session =
        Session::new(&model.config, &mut backend, parts.logits, parts.candidates).unwrap();
    let mut sampler = Sampler::new(SamplingParams {
        temperature: 0.9,
        top_k: 0,
        top_p: 0.9,
        min_p: 0.0,
        seed: 3,
    })
    .unwrap();
    let prompt = [2u32, 9, 17, 40, 7];
    // Warm up once so lazily initialized runtime state (thread pools) exists.
    let opts = GenerateOptions {
        max_new_tokens: 2,
        stop_tokens: &[],
        prefill_progress: None,
        adjust_logits: None,
    };
    session
        .generate(Prompt::tokens(&prompt), &mut sampler, &opts, &mut |_| true)
        .unwrap();
    session.reset();

    let opts = GenerateOptions {
        max_new_tokens: n,
        stop_tokens: &[],
        prefill_progress: None,
        adjust_logits: None,
    };
    let mut generated = 0usize;
    ALLOCS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    let outcome = session.generate(Prompt::tokens(&prompt), &mut sampler, &opts, &mut |_| {
        generated += 1;
        true
    });
    COUNTING.store(false, Ordering::SeqCst);
    let outcome = outcome.unwrap();
    assert_eq!((outcome.generated, generated), (n, n));
    ALLOCS.load(Ordering::SeqCst)
}

#[test]
fn decode_loop_allocates_nothing() {
    MEASURED.with(|m| m.set(true));
    // The counter sees allocations on a measured thread, so zero below
    // means nothing was allocated, not that nothing was counted.
    ALLOCS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    let v = std::hint::black_box(vec![1u8; 100]);
    COUNTING.store(false, Ordering::SeqCst);
    drop(v);
    assert_eq!(ALLOCS.load(Ordering::SeqCst), 1);
    assert_eq!(allocations_while_decoding(&Serial, 40), 0);
    let pool = WorkerPool::new(2).unwrap();
    let allocs = pool.install(|| {
        rayon::broadcast(|_| MEASURED.with(|m| m.set(true)));
        allocations_while_decoding(&pool, 40)
    });
    assert_eq!(allocs, 0);
}
