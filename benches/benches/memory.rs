//! How fast this machine reads memory: the ceiling a decode step (which
//! reads every weight once) cannot beat. Run:
//! `cargo bench -p gemma-benches --bench memory`; the bytes-per-second
//! column, against the model's bytes per token, bounds decode tok/s.

use std::hint::black_box;

fn main() {
    divan::main();
}

/// Larger than any last-level cache, so every pass comes from DRAM.
const BYTES: usize = 256 << 20;

/// Sums `words` eight lanes at a time (the compiler vectorizes this into
/// wide loads), so the loop costs little beyond the loads themselves.
fn sum_words(words: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    for chunk in words.chunks_exact(8) {
        for (a, w) in acc.iter_mut().zip(chunk) {
            *a = a.wrapping_add(*w);
        }
    }
    acc.iter().fold(0, |s, a| s.wrapping_add(*a))
}

#[divan::bench(args = [1, 2], sample_count = 10)]
fn read_256_mib(bencher: divan::Bencher, threads: usize) {
    let words = vec![1u64; BYTES / 8];
    bencher
        .counter(divan::counter::BytesCount::new(BYTES))
        .bench_local(|| {
            std::thread::scope(|s| {
                let per = words.len() / threads;
                let parts: Vec<_> = words
                    .chunks(per)
                    .map(|part| s.spawn(move || sum_words(black_box(part))))
                    .collect();
                parts
                    .into_iter()
                    .map(|h| h.join().expect("reader thread"))
                    .fold(0u64, u64::wrapping_add)
            })
        });
}
