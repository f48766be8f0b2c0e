//! Ctrl-C in an interactive chat: while a reply is generated it stops that
//! reply (the token callback asks [`requested`]); at the prompt, or a
//! second time before the reply has noticed the first (as during a long
//! prefill), it leaves with status 130.
//!
//! The handler runs on its own thread (the signal only wakes it), and
//! `read` restarts after the signal, so a read at the prompt is left by
//! exiting from the handler. The state is the process's own: there is one
//! terminal and one chat.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// What the main thread is doing, for the Ctrl-C handler.
const BUSY: u8 = 0;
/// Blocked reading a line at the prompt: Ctrl-C leaves.
const READING: u8 = 1;
/// Generating a reply: Ctrl-C stops it.
const GENERATING: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(BUSY);
/// Set by Ctrl-C; the token callback stops the reply when it sees it.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static EXITING: AtomicBool = AtomicBool::new(false);

/// Leaves with the status of an interrupted program, once: whichever of the
/// main thread and the handler's thread comes second waits for the exit.
fn exit_interrupted() -> ! {
    if EXITING.swap(true, Ordering::SeqCst) {
        loop {
            std::thread::park();
        }
    }
    // The terminal echoed ^C (or nothing) after the prompt: end that line.
    eprintln!();
    std::process::exit(130)
}

/// The handler: leaves, or marks the reply to stop.
fn on_ctrl_c() {
    let pending = INTERRUPTED.swap(true, Ordering::SeqCst);
    match MODE.load(Ordering::SeqCst) {
        READING => exit_interrupted(),
        // A second Ctrl-C before the reply noticed the first (a long
        // prefill feeds no tokens): stop waiting.
        GENERATING if pending => exit_interrupted(),
        // Generating: the token callback stops the reply. Busy: the next
        // read sees the flag and leaves.
        _ => {}
    }
}

/// Sends Ctrl-C to this module's handler (only at a terminal: without
/// one, Ctrl-C keeps its default and ends the process).
pub fn install() -> Result<(), String> {
    ctrlc::set_handler(on_ctrl_c).map_err(|e| format!("cannot handle Ctrl-C: {e}"))
}

/// Runs `read`, the wait for a line at the prompt, where Ctrl-C leaves. A
/// Ctrl-C since the last reply (during a command, say) counts as one here.
pub fn reading<T>(read: impl FnOnce() -> T) -> T {
    MODE.store(READING, Ordering::SeqCst);
    if INTERRUPTED.load(Ordering::SeqCst) {
        exit_interrupted();
    }
    let got = read();
    MODE.store(BUSY, Ordering::SeqCst);
    got
}

/// A reply is being generated: Ctrl-C stops it. A Ctrl-C since the line was
/// read stops it at its first token.
pub fn generating() {
    MODE.store(GENERATING, Ordering::SeqCst);
}

/// Whether the reply being generated should stop.
pub fn requested() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// The reply ended: a Ctrl-C that stopped it (or came as it ended) is spent.
pub fn generated() {
    MODE.store(BUSY, Ordering::SeqCst);
    INTERRUPTED.store(false, Ordering::SeqCst);
}
