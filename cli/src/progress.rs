//! Progress bars for long work: prefill, `gemma perplexity`, `gemma
//! convert`. A bar is drawn on stderr, and only when stderr is a terminal
//! and the work has run for a second; it is cleared when the work ends,
//! before anything else is printed. Redirected or piped stderr gets
//! nothing, so logs and tests see exactly what they did before.

use indicatif::{HumanDuration, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use std::io::IsTerminal;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

/// How long work runs before its bar shows: quick work shows none.
const DELAY: Duration = Duration::from_secs(1);

/// One bar, for work reported as (steps done, steps in all); it can be
/// reused for work after work (each turn of a chat, say).
pub struct Progress {
    bar: ProgressBar,
    /// Until the bar shows: what tells it not to.
    timer: Mutex<Option<(mpsc::Sender<()>, JoinHandle<()>)>>,
}

impl Progress {
    /// A bar for `what` (`prefill`), counting `unit`s (`tokens`); the
    /// message, set with [`Self::set_message`], follows the count.
    pub fn new(what: &str, unit: &str) -> Self {
        let template = String::from("{spinner} gemma: ")
            + what
            + " {wide_bar} {pos}/{len} "
            + unit
            + "{msg} ({elapsed}{left})";
        let style = ProgressStyle::with_template(&template)
            .expect("a valid template")
            .progress_chars("=> ")
            // No estimate before the first step is done.
            .with_key("left", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                if s.pos() > 0 {
                    let _ = write!(w, ", about {:#} left", HumanDuration(s.eta()));
                }
            });
        let bar =
            ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden()).with_style(style);
        Self {
            bar,
            timer: Mutex::new(None),
        }
    }

    /// Reports `done` of `total` steps: `(0, total)` starts the work (and
    /// the second after which its bar shows), `(total, total)` ends it.
    /// This is the shape of the platform's progress hooks.
    pub fn report(&self, done: usize, total: usize) {
        if done >= total {
            self.finish();
        } else if done == 0 {
            self.start(total as u64);
        } else {
            self.bar.set_position(done as u64);
        }
    }

    /// Follows the count: `", perplexity 12.3"`.
    pub fn set_message(&self, msg: String) {
        self.bar.set_message(msg);
    }

    fn start(&self, total: u64) {
        self.finish();
        self.bar.set_draw_target(ProgressDrawTarget::hidden());
        self.bar.reset();
        self.bar.set_length(total);
        self.bar.set_message("");
        if !std::io::stderr().is_terminal() {
            return;
        }
        let (stop, stopped) = mpsc::channel();
        let bar = self.bar.clone();
        let thread = std::thread::spawn(move || {
            if stopped.recv_timeout(DELAY) == Err(RecvTimeoutError::Timeout) {
                bar.set_draw_target(ProgressDrawTarget::stderr());
                bar.enable_steady_tick(Duration::from_millis(100));
            }
        });
        *self.timer.lock().unwrap_or_else(|e| e.into_inner()) = Some((stop, thread));
    }

    /// Ends the work: the bar, if it shows, is cleared (it does not show
    /// after this).
    pub fn finish(&self) {
        let timer = self.timer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((stop, thread)) = timer {
            drop(stop);
            let _ = thread.join();
        }
        self.bar.disable_steady_tick();
        self.bar.finish_and_clear();
    }
}

impl Drop for Progress {
    /// Work that ends in an error clears its bar too.
    fn drop(&mut self) {
        self.finish();
    }
}
