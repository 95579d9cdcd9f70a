//! The one error type of this crate.
//!
//! Every message names the file (or folder) concerned and says what is wrong with it, so that it can
//! be shown to a user as it is, e.g.
//! `data_batch_3.bin: truncated: 30000000 bytes is not a multiple of the 3073-byte CIFAR-10 record`.

use std::path::Path;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while reading, checking or writing a data set.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The operating system refused an operation on `path`.
    #[error("{path}: {action}: {err}")]
    Io {
        /// The file or folder concerned.
        path: String,
        /// What was being done, e.g. "cannot read".
        action: &'static str,
        /// The underlying error (kept out of `source()` so that chained printing does not repeat it).
        err: std::io::Error,
    },
    /// A file (or folder) exists but its content is not what the format requires.
    #[error("{file}: {msg}")]
    Format {
        /// The file or folder concerned.
        file: String,
        /// What is wrong with it.
        msg: String,
    },
    /// An [`ImageSet`](crate::ImageSet) in memory is inconsistent (or cannot be written in a format).
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub(crate) fn io(path: impl AsRef<Path>, action: &'static str, err: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().display().to_string(), action, err }
    }

    pub(crate) fn format(file: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Format { file: file.as_ref().display().to_string(), msg: msg.into() }
    }

    /// A format error for data that is not a file (e.g. bytes embedded in the binary).
    pub(crate) fn format_named(name: &str, msg: impl Into<String>) -> Self {
        Error::Format { file: name.to_string(), msg: msg.into() }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
}
