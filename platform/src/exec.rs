//! Runs core's kernel tasks on a rayon thread pool.

use gemma_core::exec::Executor;
use rayon::prelude::*;

pub struct RayonExecutor {
    pool: rayon::ThreadPool,
}

impl RayonExecutor {
    /// A pool of `threads` workers (0 = one per available core).
    pub fn new(threads: usize) -> Result<Self, rayon::ThreadPoolBuildError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("gemma-worker-{i}"))
            .build()?;
        Ok(Self { pool })
    }
}

impl RayonExecutor {
    /// Runs `f` on a worker of this pool. Kernels started from inside run
    /// with no allocation per call, so hot loops (generation) belong here.
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }
}

impl Executor for RayonExecutor {
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
