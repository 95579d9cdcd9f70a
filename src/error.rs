//! Library error type. Every variant that comes from a file names the file.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Data(#[from] imagesets::Error),
    #[error(transparent)]
    Checkpoint(#[from] torchfile::Error),
    #[error("{path}: {msg}")]
    BadFile { path: PathBuf, msg: String },
    #[error("invalid {what}: {msg}")]
    Invalid { what: &'static str, msg: String },
    /// Images whose shape `(channels, height, width)` is not the model's input shape.
    #[error("{what} are {}x{}x{} but the model takes {}x{}x{}", .images.0, .images.1, .images.2, .model.0, .model.1, .model.2)]
    ImageShape { what: String, images: (usize, usize, usize), model: (usize, usize, usize) },
    #[error("{0}")]
    Torch(#[from] tch::TchError),
    #[error("training diverged at epoch {epoch}, step {step}: loss is {loss}; {remedy}")]
    Diverged { epoch: usize, step: usize, loss: f64, remedy: &'static str },
    #[error("interrupted; state saved to {0} (continue with --resume)")]
    Interrupted(PathBuf),
    #[error("{path} already exists; pass --resume to continue that run or --force to overwrite it")]
    WouldOverwrite { path: PathBuf },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
    pub fn bad_file(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::BadFile { path: path.into(), msg: msg.into() }
    }
    pub fn invalid(what: &'static str, msg: impl Into<String>) -> Self {
        Error::Invalid { what, msg: msg.into() }
    }
}
