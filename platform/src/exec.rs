//! The worker pool core's kernel tasks run on: rayon with the `threads`
//! feature; without it, a stand-in with the same API that runs every task
//! on the calling thread.

use gemma_core::exec::Executor;

#[cfg(feature = "threads")]
pub use pool::WorkerPool;
#[cfg(not(feature = "threads"))]
pub use serial::WorkerPool;

#[cfg(feature = "threads")]
mod pool {
    use super::Executor;
    use rayon::prelude::*;

    pub struct WorkerPool {
        pool: rayon::ThreadPool,
    }

    impl WorkerPool {
        /// A pool of `threads` workers (0 = one per available core).
        pub fn new(threads: usize) -> Result<Self, rayon::ThreadPoolBuildError> {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("gemma-worker-{i}"))
                .build()?;
            Ok(Self { pool })
        }

        /// Runs `f` on a worker of this pool. Kernels started from inside
        /// run with no allocation per call (from outside, rayon injects
        /// each job through a global queue that allocates), so hot loops
        /// (generation) belong here.
        pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
            self.pool.install(f)
        }
    }

    impl Executor for WorkerPool {
        fn threads(&self) -> usize {
            self.pool.current_num_threads()
        }

        fn run(&self, n_tasks: usize, task: &(dyn Fn(usize) + Sync)) {
            if n_tasks <= 1 || self.threads() == 1 {
                (0..n_tasks).for_each(task);
                return;
            }
            self.pool
                .install(|| (0..n_tasks).into_par_iter().for_each(task));
        }
    }
}

#[cfg(not(feature = "threads"))]
mod serial {
    use super::Executor;

    /// The single-threaded stand-in: the same API, every task in order on
    /// the calling thread.
    pub struct WorkerPool;

    impl WorkerPool {
        /// Accepts any thread count; there is one.
        pub fn new(_threads: usize) -> Result<Self, std::convert::Infallible> {
            Ok(WorkerPool)
        }

        pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
            f()
        }
    }

    impl Executor for WorkerPool {
        fn threads(&self) -> usize {
            1
        }

        fn run(&self, n_tasks: usize, task: &(dyn Fn(usize) + Sync)) {
            (0..n_tasks).for_each(task);
        }
    }
}
