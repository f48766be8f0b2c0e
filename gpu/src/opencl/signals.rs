//! Signal handlers kept across calls into the OpenCL runtime.
//!
//! PoCL initializes LLVM, which installs its own handlers for the signals
//! that ask a process to stop (they clean up and re-raise the signal, so
//! the default action kills the process). A server that shuts down
//! gracefully on SIGTERM or Ctrl-C would die instead once OpenCL had been
//! looked at, so every call that may load or initialize the runtime (or
//! have it compile) runs inside [`keeping_signals`].

/// Runs `f` and then puts back the handlers the process had before for
/// SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1 and SIGUSR2.
#[cfg(unix)]
pub(crate) fn keeping_signals<R>(f: impl FnOnce() -> R) -> R {
    use libc::{c_int, sigaction, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
    const SIGNALS: [c_int; 6] = [SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2];
    // SAFETY: FFI; an all-zero `sigaction` is a valid value of the C
    // struct, and it is only read after the calls below fill it in.
    let mut saved: [sigaction; SIGNALS.len()] = unsafe { std::mem::zeroed() };
    let mut ok = [false; SIGNALS.len()];
    for (i, &sig) in SIGNALS.iter().enumerate() {
        // SAFETY: FFI; reads the current action of a valid signal into a
        // struct we own; no action is set (the new action is null).
        ok[i] = unsafe { sigaction(sig, std::ptr::null(), &mut saved[i]) } == 0;
    }
    let r = f();
    for (i, &sig) in SIGNALS.iter().enumerate() {
        if ok[i] {
            // SAFETY: FFI; sets back the action read above for the same
            // signal, exactly as it was (handler, mask and flags).
            unsafe { sigaction(sig, &saved[i], std::ptr::null_mut()) };
        }
    }
    r
}

#[cfg(not(unix))]
pub(crate) fn keeping_signals<R>(f: impl FnOnce() -> R) -> R {
    f()
}
