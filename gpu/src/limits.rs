//! The limits of the smallest device we design for (an NVIDIA GTX 1050,
//! sm_61), enforced by the host whatever device runs the kernels: PoCL and
//! most desktop GPUs allow more, so nothing else would catch a launch that
//! a GTX 1050 refuses.

use std::fmt;

/// Threads per block (CUDA's limit on every architecture since Fermi).
pub const MAX_THREADS_PER_BLOCK: usize = 1024;
/// Static shared memory per block on sm_61.
pub const MAX_SHARED_BYTES: u64 = 48 * 1024;
/// Threads of a warp: block sizes are whole warps.
pub const WARP: usize = 32;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitError {
    /// A block of `threads` threads: not a whole number of warps, or more
    /// than a block may hold.
    BlockSize {
        kernel: &'static str,
        threads: usize,
    },
    /// A kernel whose shared memory exceeds the target's.
    SharedMemory { kernel: String, bytes: u64 },
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitError::BlockSize { kernel, threads } => write!(
                f,
                "kernel {kernel}: a block of {threads} threads (the target needs a multiple \
                 of {WARP}, at most {MAX_THREADS_PER_BLOCK})"
            ),
            LimitError::SharedMemory { kernel, bytes } => write!(
                f,
                "kernel {kernel}: {bytes} bytes of shared memory, the target has {MAX_SHARED_BYTES}"
            ),
        }
    }
}

impl std::error::Error for LimitError {}

/// Checks a block size against the target.
pub fn check_block(kernel: &'static str, threads: usize) -> Result<(), LimitError> {
    if threads == 0 || threads > MAX_THREADS_PER_BLOCK || !threads.is_multiple_of(WARP) {
        return Err(LimitError::BlockSize { kernel, threads });
    }
    Ok(())
}

/// Checks a kernel's shared memory against the target.
pub fn check_shared(kernel: &str, bytes: u64) -> Result<(), LimitError> {
    if bytes > MAX_SHARED_BYTES {
        return Err(LimitError::SharedMemory {
            kernel: kernel.into(),
            bytes,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_whole_warps_within_the_target() {
        assert!(check_block("k", 32).is_ok());
        assert!(check_block("k", 1024).is_ok());
        for bad in [0, 16, 48, 1056, 2048] {
            let e = check_block("k", bad).unwrap_err();
            assert!(e.to_string().contains("kernel k"), "{e}");
        }
        assert!(check_shared("k", 48 * 1024).is_ok());
        assert!(check_shared("k", 48 * 1024 + 4).is_err());
    }
}
