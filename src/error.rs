//! Library error type. Every variant that comes from a file names the file.
use std::path::PathBuf;

/// Every error the library returns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a named file.
    /// (The I/O error is part of the message, not a `source`: with it as both, `anyhow`'s chain
    /// printed it twice, "x: No such file or directory (os error 2): No such file or directory".)
    #[error("{path}: {err}")]
    Io {
        /// The file being read or written.
        path: PathBuf,
        /// The underlying I/O error.
        err: std::io::Error,
    },
    /// An error loading an image data set (from the `imagesets` crate).
    #[error(transparent)]
    Data(#[from] imagesets::Error),
    /// An error reading or writing a checkpoint (from the `torchfile` crate).
    #[error(transparent)]
    Checkpoint(#[from] torchfile::Error),
    /// A file that exists but whose contents are malformed or unexpected.
    #[error("{path}: {msg}")]
    BadFile {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// An invalid argument, option or configuration value.
    #[error("invalid {what}: {msg}")]
    Invalid {
        /// What was invalid (e.g. "data spec").
        what: &'static str,
        /// Why it was rejected.
        msg: String,
    },
    /// Images whose shape `(channels, height, width)` is not the model's input shape.
    #[error("{what} are {}x{}x{} but the model takes {}x{}x{}", .images.0, .images.1, .images.2, .model.0, .model.1, .model.2)]
    ImageShape {
        /// What the images are (e.g. "test images").
        what: String,
        /// Their shape (C, H, W).
        images: (usize, usize, usize),
        /// The model's input shape (C, H, W).
        model: (usize, usize, usize),
    },
    /// An error raised by libtorch through `tch`.
    #[error("{0}")]
    Torch(#[from] tch::TchError),
    /// A training or optimisation loop produced a non-finite loss.
    #[error("training diverged at epoch {epoch}, step {step}: loss is {loss}; {remedy}")]
    Diverged {
        /// Epoch at which the loss diverged.
        epoch: usize,
        /// Step within that epoch.
        step: usize,
        /// The offending loss value.
        loss: f64,
        /// A suggested fix shown to the user.
        remedy: &'static str,
    },
    /// The run was interrupted; its state was saved to the given path, from which it resumes.
    #[error("interrupted; state saved to {0} (resume to continue)")]
    Interrupted(PathBuf),
    /// The output already exists and the run was asked neither to resume nor to overwrite it.
    #[error("{path} already exists: resume to continue that run, or force to overwrite it")]
    WouldOverwrite {
        /// The existing output path.
        path: PathBuf,
    },
}

/// Result with the library's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), err: source }
    }
    /// An [`Error::BadFile`] for `path` with message `msg`.
    pub fn bad_file(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::BadFile { path: path.into(), msg: msg.into() }
    }
    /// An [`Error::Invalid`]: `what` was invalid because of `msg`.
    pub fn invalid(what: &'static str, msg: impl Into<String>) -> Self {
        Error::Invalid { what, msg: msg.into() }
    }
}
