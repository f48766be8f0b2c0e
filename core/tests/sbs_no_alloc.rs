//! Reading an `.sbs` file allocates nothing, whatever its counts: a counting
//! global allocator watches parsing, lookups, every iterator and writing
//! into a caller's buffer.

use gemma_core::format::sbs::{write_toc, BlobStore, Directory, ModelConfig, Toc};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

mod common;
use common::data;

struct Counting;

thread_local! {
    // Per thread, so the test harness's other threads do not count; const
    // initialization, so reading it does not allocate.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn note() {
    if COUNTING.with(Cell::get) {
        ALLOCS.with(|a| a.set(a.get() + 1));
    }
}

// SAFETY: forwards every call to the system allocator unchanged; it only
// counts allocations made by the current thread while COUNTING is set.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn count_allocs<R>(f: impl FnOnce() -> R) -> (R, usize) {
    ALLOCS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (r, ALLOCS.with(Cell::get))
}

#[test]
fn sbs_reading_allocates_nothing() {
    let tiny = data("blobstore_tiny.sbs");
    let tail = data("model_sfp_tail_dir_header.bin");
    let config = data("model_sfp_config.bin");
    let toc = data("model_sfp_toc.bin");
    let mut out = [0u8; 9000];

    let (sum, allocs) = count_allocs(|| {
        let store = BlobStore::parse(&tiny).unwrap();
        let mut sum: usize = store.blobs().map(|b| b.bytes.len() + b.name.len()).sum();
        sum += store.blob("hello5").unwrap().len();

        let dir = Directory::from_tail(&tail, 441_188_352).unwrap();
        sum += dir.entries().filter(|e| e.name.starts_with("qkv")).count();
        sum += dir.find("toc").unwrap().index;

        let c = ModelConfig::parse(&config).unwrap();
        sum += c
            .layer_configs
            .iter()
            .map(|l| l.heads as usize)
            .sum::<usize>();
        sum += c.attention_window_sizes.iter().count();
        sum += c.scale_base_names.iter().map(str::len).sum::<usize>();
        sum += c.write(&mut out).unwrap();

        let t = Toc::parse(&toc).unwrap();
        sum += t.iter().map(|e| e.rows as usize).sum::<usize>();
        sum += t.get("key_norm_17").unwrap().cols as usize;
        sum += write_toc(t.iter(), &mut out).unwrap();
        sum
    });
    assert!(sum > 0);
    assert_eq!(allocs, 0);
}
