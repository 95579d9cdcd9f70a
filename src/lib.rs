//! quarantine: find Trojans (backdoors) in image classifiers through sparsity.
//!
//! Implements, and goes beyond, "Quarantine: Sparsity Can Uncover the Trojan Attack Trigger for
//! Free" (Chen et al., CVPR 2022): prune a model along a path, score each sparse ticket by how
//! linearly connected it stays to itself after a little finetuning (a Trojan keeps a sparse
//! shortcut alive), take the peak as the winning Trojan ticket, reverse-engineer a trigger for
//! every label on it and on the dense model, and decide. The method and the reference code's
//! choices are in `docs/METHOD.md`; the layering of the modules in `ARCHITECTURE.md`.
//!
//! Tensors and kernels come from libtorch through `tch`; everything above is here. Each pipeline
//! is a library call with a typed config and a typed result; writing its files is a separate step
//! in [`report`]; long calls take a [`control::Control`] (cancellation and progress).
//!
//! Audit a checkpoint (the `quarantine detect` command does the same, plus printing):
//!
//! ```no_run
//! use quarantine::control::Control;
//! use quarantine::detect::{self, DetectConfig, ModelRef, Suspect};
//! use quarantine::model::InputOverrides;
//!
//! fn main() -> quarantine::Result<()> {
//!     let path = std::path::Path::new("model.pt"); // a PyTorch or quarantine checkpoint
//!     let suspect = Suspect::load(path, &InputOverrides::default(), tch::Device::Cpu)?;
//!     let out = std::path::Path::new("runs/audit"); // the pruning path is kept here (resumable)
//!     let cfg = DetectConfig::default(); // data-free: synthesized seeds and score data
//!     let found = detect::run(&suspect, None, &cfg, out, false, &Control::quiet())?;
//!     let d = &found.decision;
//!     println!("Trojaned: {} (target {:?}, anomaly index {:?})", d.trojaned, d.target, d.anomaly_index);
//!
//!     // Files: detect.json, dynamics, winning ticket, recovered triggers, report.html.
//!     let model = ModelRef { path: path.into(), meta: suspect.info.meta.clone(), imported_from: None };
//!     let record = found.record(&cfg, model, "my audit".into());
//!     quarantine::report::write_detection(out, &found, &record)?;
//!     Ok(())
//! }
//! ```
//!
//! The same program is `examples/detect.rs` (run in CI on a tiny fixture model).
#![warn(missing_docs)]
pub mod attack;
pub mod choice;
pub mod control;
pub mod data;
pub mod detect;
pub mod error;
pub mod eval;
pub mod interrupt;
pub mod model;
pub mod pipeline;
pub mod prune;
pub mod report;
pub mod reverse;
pub mod scan;
pub mod score;
pub mod train;
pub mod util;

pub use error::{Error, Result};
