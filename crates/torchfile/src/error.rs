//! Errors.
//!
//! Every public [`Error`] names the file it is about and says in plain words what is wrong with
//! it. Inside the crate, parsers do not know the file name; they return a [`Fault`], which
//! [`Fault::at`] turns into an [`Error`] once the path is known.

use std::path::{Path, PathBuf};

/// Why a checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operating system refused a read or write.
    /// (The I/O error is in the message and not also a `source`, so an error chain prints it once.)
    #[error("{}: {err}", .path.display())]
    Io { path: PathBuf, err: std::io::Error },

    /// The bytes carry none of the signatures this crate knows.
    #[error(
        "{}: not a PyTorch checkpoint (no zip, legacy pickle or safetensors signature)",
        .path.display()
    )]
    NotACheckpoint { path: PathBuf },

    /// The pickle names a Python global outside the allow-list: loading it with `pickle` would
    /// run that code. This is how malicious checkpoints work, so it is never tolerated.
    #[error(
        "{}: pickle refers to `{global}`, which is not a tensor-rebuild function; refusing to load{hint}",
        .path.display()
    )]
    ForbiddenGlobal {
        path: PathBuf,
        /// `module.name` as written in the pickle, e.g. `posix.system`.
        global: String,
        /// Empty, or a sentence (starting with "; ") on what the global suggests.
        hint: String,
    },

    /// A TorchScript archive's code names an op outside the allow-list (src/script.rs): file or
    /// network I/O, a custom-op namespace, or anything else that is not known tensor math.
    #[error(
        "{}: refusing to load this TorchScript model: its code calls `{op}` (in {location}), which is not on the \
         allow-list of tensor ops; {remedy}",
        .path.display()
    )]
    ForbiddenOp {
        path: PathBuf,
        /// The op, `aten::from_file` style.
        op: String,
        /// Where it was found (the code file inside the archive).
        location: String,
        /// What the user can do.
        remedy: String,
    },

    /// The file ends before the data it announces.
    #[error("{}: truncated: {detail}", .path.display())]
    Truncated { path: PathBuf, detail: String },

    /// The file's structure is inconsistent (bad zip directory, bad pickle, a tensor that reads
    /// outside its storage, ...).
    #[error("{}: malformed: {detail}", .path.display())]
    Malformed { path: PathBuf, detail: String },

    /// Valid, but uses a feature this crate does not implement (big-endian data, quantized
    /// tensors, TorchScript archives, ...).
    #[error("{}: unsupported: {detail}", .path.display())]
    Unsupported { path: PathBuf, detail: String },

    /// Loading would exceed a safety limit (memory, nesting, object counts).
    #[error("{}: refusing to load: {detail}", .path.display())]
    LimitExceeded { path: PathBuf, detail: String },

    /// The file was read, but its content is not a usable state dict (e.g. the top-level object
    /// is a list, or a pruning reparametrisation is incomplete).
    #[error("{}: not a usable state dict: {detail}", .path.display())]
    InvalidStateDict { path: PathBuf, detail: String },

    /// A tensor handed to a `save_*` function is inconsistent (data length does not match
    /// shape and dtype, duplicate name, ...).
    #[error("{}: cannot save tensor `{name}`: {detail}", .path.display())]
    InvalidTensor { path: PathBuf, name: String, detail: String },
}

impl Error {
    /// The file this error is about.
    pub fn path(&self) -> &Path {
        match self {
            Error::Io { path, .. }
            | Error::NotACheckpoint { path }
            | Error::ForbiddenGlobal { path, .. }
            | Error::ForbiddenOp { path, .. }
            | Error::Truncated { path, .. }
            | Error::Malformed { path, .. }
            | Error::Unsupported { path, .. }
            | Error::LimitExceeded { path, .. }
            | Error::InvalidStateDict { path, .. }
            | Error::InvalidTensor { path, .. } => path,
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io { path: path.to_owned(), err: source }
    }

    pub(crate) fn invalid_tensor(path: &Path, name: &str, detail: impl Into<String>) -> Self {
        Error::InvalidTensor { path: path.to_owned(), name: name.to_owned(), detail: detail.into() }
    }
}

/// An [`Error`] that does not know its file yet.
#[derive(Debug)]
pub(crate) enum Fault {
    NotACheckpoint,
    Forbidden { global: String, hint: String },
    ForbiddenOp { op: String, location: String, remedy: String },
    Truncated(String),
    Malformed(String),
    Unsupported(String),
    Limit(String),
    StateDict(String),
}

impl Fault {
    pub(crate) fn at(self, path: &Path) -> Error {
        let path = path.to_owned();
        match self {
            Fault::NotACheckpoint => Error::NotACheckpoint { path },
            Fault::Forbidden { global, hint } => Error::ForbiddenGlobal { path, global, hint },
            Fault::ForbiddenOp { op, location, remedy } => Error::ForbiddenOp { path, op, location, remedy },
            Fault::Truncated(detail) => Error::Truncated { path, detail },
            Fault::Malformed(detail) => Error::Malformed { path, detail },
            Fault::Unsupported(detail) => Error::Unsupported { path, detail },
            Fault::Limit(detail) => Error::LimitExceeded { path, detail },
            Fault::StateDict(detail) => Error::InvalidStateDict { path, detail },
        }
    }
}

/// Shorthands for building faults from `format!` strings.
pub(crate) fn malformed(detail: impl Into<String>) -> Fault {
    Fault::Malformed(detail.into())
}
pub(crate) fn truncated(detail: impl Into<String>) -> Fault {
    Fault::Truncated(detail.into())
}
pub(crate) fn unsupported(detail: impl Into<String>) -> Fault {
    Fault::Unsupported(detail.into())
}
pub(crate) fn limit(detail: impl Into<String>) -> Fault {
    Fault::Limit(detail.into())
}
pub(crate) fn state_dict(detail: impl Into<String>) -> Fault {
    Fault::StateDict(detail.into())
}
