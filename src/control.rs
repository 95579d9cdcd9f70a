//! How a caller steers a long library computation: a cancellation flag checked at safe points, and
//! a progress sink. The library never reads a global for either; the binary wires Ctrl-C
//! ([`crate::interrupt`]) and progress bars (in `cli`) into a [`Control`], a library user passes
//! [`Control::quiet`] or its own.
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};

/// Receives progress of a long computation. Every method has a no-op default.
pub trait Progress: Send + Sync {
    /// A stage with `total` units of work starts (`total` 0: unknown).
    fn start(&self, _stage: &str, _total: u64) {}
    /// `n` more units of the current stage are done.
    fn inc(&self, _n: u64) {}
    /// What the current stage is working on now (shown next to its progress).
    fn message(&self, _msg: &str) {}
    /// The current stage is finished.
    fn finish(&self) {}
    /// A line for the user (a stage's result, a note).
    fn note(&self, _line: &str) {}
}

/// A [`Progress`] that shows nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;
impl Progress for Silent {}

/// Cancellation and progress for one library call.
#[derive(Clone)]
pub struct Control {
    cancel: Arc<AtomicBool>,
    progress: Arc<dyn Progress>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control").field("cancelled", &self.cancelled()).finish()
    }
}

impl Default for Control {
    fn default() -> Self {
        Control::quiet()
    }
}

impl Control {
    /// Never cancelled, no progress output.
    pub fn quiet() -> Self {
        Control { cancel: Arc::new(AtomicBool::new(false)), progress: Arc::new(Silent) }
    }

    /// A control over the given flag (set it to stop the computation) and progress sink.
    pub fn new(cancel: Arc<AtomicBool>, progress: Arc<dyn Progress>) -> Self {
        Control { cancel, progress }
    }

    /// The same cancellation flag with another progress sink.
    pub fn with_progress(&self, progress: Arc<dyn Progress>) -> Self {
        Control { cancel: self.cancel.clone(), progress }
    }

    /// The same progress sink with a flag of its own that nothing sets: for a stage that has no
    /// state to resume from and so is not stopped halfway.
    pub fn uncancellable(&self) -> Self {
        Control { cancel: Arc::new(AtomicBool::new(false)), progress: self.progress.clone() }
    }

    /// Asks the computation to stop at its next safe point.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for.
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// `Err(Interrupted(state))` once a stop was asked for: `state` is what a resumed run continues from.
    pub fn check(&self, state: &Path) -> Result<()> {
        if self.cancelled() {
            Err(Error::Interrupted(state.to_path_buf()))
        } else {
            Ok(())
        }
    }

    /// The progress sink.
    pub fn progress(&self) -> &dyn Progress {
        &*self.progress
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_fails_once_cancelled_and_names_the_state() {
        let c = Control::quiet();
        assert!(c.check(Path::new("s")).is_ok());
        c.with_progress(Arc::new(Silent)).cancel();
        let e = c.check(Path::new("state-dir")).unwrap_err();
        assert!(matches!(e, Error::Interrupted(ref p) if p == Path::new("state-dir")), "{e}");
        assert!(c.uncancellable().check(Path::new("s")).is_ok() && c.cancelled());
    }
}
