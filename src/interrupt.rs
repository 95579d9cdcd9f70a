//! Ctrl-C for long commands. The first SIGINT asks them to stop at the next safe point (after the
//! current training batch, pruning round or scored step): their last atomic checkpoint is complete,
//! they return [`Error::Interrupted`] naming it, the binary exits with code 130, and `--resume`
//! continues bit-for-bit. A second SIGINT exits at once.
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// The flag SIGINT sets, shared with [`crate::control::Control`]s built by [`flag`].
static FLAG: std::sync::OnceLock<std::sync::Arc<AtomicBool>> = std::sync::OnceLock::new();

/// The cancellation flag a SIGINT sets (for a [`crate::control::Control`]).
pub fn flag() -> std::sync::Arc<AtomicBool> {
    FLAG.get_or_init(|| std::sync::Arc::new(AtomicBool::new(REQUESTED.load(Ordering::SeqCst)))).clone()
}

#[cfg(unix)]
extern "C" fn on_sigint(_: libc::c_int) {
    if let Some(f) = FLAG.get() {
        f.store(true, Ordering::SeqCst);
    }
    if REQUESTED.swap(true, Ordering::SeqCst) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
    let msg = b"\ninterrupted: stopping at the next safe point (Ctrl-C again to abort at once)\n";
    // SAFETY: write(2) is async-signal-safe; the buffer is static.
    unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
}

/// Installs the SIGINT handler (the binary calls this; library users keep their own handling).
pub fn install() {
    let _ = flag();
    #[cfg(unix)]
    // SAFETY: the handler only touches an atomic and calls async-signal-safe functions.
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t);
    }
}

/// Whether a stop was asked for.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Asks for a stop, as SIGINT does (for tests and embedding programs).
pub fn request() {
    flag().store(true, Ordering::SeqCst);
    REQUESTED.store(true, Ordering::SeqCst);
}

/// `Err(Interrupted(state))` once a stop was asked for: `state` is what `--resume` continues from.
pub fn check(state: &Path) -> Result<()> {
    if requested() {
        Err(Error::Interrupted(state.to_path_buf()))
    } else {
        Ok(())
    }
}
