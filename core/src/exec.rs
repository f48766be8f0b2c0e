//! How work is split across threads, without core owning any threads.
//!
//! Kernels cut their work into independent tasks and hand them to an
//! [`Executor`]. Core ships [`Serial`]; `gemma-platform` runs the tasks on
//! rayon, and an embedded host can plug in its own scheduler.

pub trait Executor: Sync {
    /// How many tasks can usefully run at once (used to size the split).
    fn threads(&self) -> usize;
    /// Runs `task(i)` for every `i` in `0..n_tasks`, in any order, possibly
    /// concurrently, and returns when all are done.
    fn run(&self, n_tasks: usize, task: &(dyn Fn(usize) + Sync));
}

/// Runs every task on the calling thread, in order.
#[derive(Clone, Copy, Debug, Default)]
pub struct Serial;

impl Executor for Serial {
    fn threads(&self) -> usize {
        1
    }

    fn run(&self, n_tasks: usize, task: &(dyn Fn(usize) + Sync)) {
        (0..n_tasks).for_each(task);
    }
}

/// Splits `n` items into at most `threads * per_thread` contiguous ranges of
/// at least `min_len` items; returns (task count, items per task).
pub fn split(n: usize, threads: usize, per_thread: usize, min_len: usize) -> (usize, usize) {
    if n == 0 {
        return (0, 0);
    }
    let max_tasks = threads.max(1).saturating_mul(per_thread.max(1));
    let len = n.div_ceil(max_tasks).max(min_len.max(1));
    (n.div_ceil(len), len)
}
