//! Nothing allocates in proportion to a count or size read from a file
//! before checking it against the bytes that are there: files claiming
//! 2^40 tensors, a 2^62-byte string, a 2^31 x 2^31 tensor and the like are
//! refused at once, with a small peak allocation, through the same paths
//! the CLI uses (`LoadedModel::open`, the safetensors and tokenizer
//! readers). The counting allocator tracks the peak of live heap bytes.

use gemma_core::format::safetensors::Safetensors;
use gemma_core::tokenizer::TokenizerTables;
use gemma_platform::LoadedModel;
use gemma_tests::hostile::corpus;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(live, Ordering::SeqCst);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Tests in this file measure one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Peak live bytes allocated while `f` runs, above what was live before.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let out = f();
    (out, PEAK.load(Ordering::SeqCst) - before)
}

/// Room for error messages, paths and small fixed tables.
const SLACK: usize = 1 << 20;

#[test]
fn hostile_files_are_refused_without_large_allocations() {
    let _one = SERIAL.lock().unwrap();
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bounded-alloc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut worst = (0usize, String::new());
    for (format, cases) in corpus() {
        for (name, bytes) in cases {
            let path = dir.join(format!("{name}.{format}"));
            std::fs::write(&path, &bytes).unwrap();
            let limit = SLACK + bytes.len();
            let (refused, peak) = peak_during(|| match format {
                "safetensors" => Safetensors::parse(&bytes).is_err(),
                "spm" => TokenizerTables::from_spm(&bytes).is_err(),
                _ => LoadedModel::open(&path).is_err(),
            });
            assert!(refused, "{format}/{name} was accepted");
            assert!(
                peak <= limit,
                "{format}/{name}: peak allocation {peak} bytes for a {}-byte file",
                bytes.len()
            );
            if peak > worst.0 {
                worst = (peak, format!("{format}/{name}"));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("largest peak allocation: {} bytes ({})", worst.0, worst.1);
}

/// The counter works: a valid model's tokenizer tables are allocated and
/// counted (so a zero peak above is not a broken counter).
#[test]
fn the_counter_sees_real_allocations() {
    let _one = SERIAL.lock().unwrap();
    let proto = std::fs::read(gemma_tests::hostile::spm_path()).unwrap();
    let (tables, peak) = peak_during(|| TokenizerTables::from_spm(&proto).unwrap());
    assert!(peak > 262_144 * 4, "peak {peak}");
    drop(tables);
}
