//! quarantine: find Trojans (backdoors) in image classifiers through sparsity.
//!
//! Implements, and goes beyond, "Quarantine: Sparsity Can Uncover the Trojan Attack Trigger for Free"
//! (Chen et al., CVPR 2022). Tensors and kernels come from libtorch through `tch`; everything above
//! (data, models, training, checkpoints, CLI) is here.
pub mod attack;
pub mod choice;
pub mod control;
pub mod cli;
pub mod data;
pub mod detect;
pub mod error;
pub mod eval;
pub mod interrupt;
pub mod model;
pub mod prune;
pub mod report;
pub mod reverse;
pub mod score;
pub mod train;
pub mod util;

pub use error::{Error, Result};
