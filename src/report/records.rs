//! The records of composite runs: `demo.json` ([`DemoRecord`]) and `experiment.json`
//! ([`ExperimentRecord`]), written by the pipelines that make them and read by the HTML report.
//! (Detection, reverse-engineering and score records live with their pipelines:
//! `detect::DetectRecord`, `reverse::ReverseReport`, `score::job::ScoreDynamics`.)
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::model::{Arch, Versions};

/// One model of a demo.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DemoModel {
    /// "trojaned" or "clean".
    pub name: String,
    /// Its training folder, relative to the demo folder.
    pub train_dir: String,
    /// Its detection folder, relative to the demo folder.
    pub detect_dir: String,
    /// The hidden target (None: the clean control).
    pub true_target: Option<u32>,
    /// Clean test accuracy after training.
    pub clean_accuracy: Option<f64>,
    /// Attack success on non-target test images after training.
    pub attack_success: Option<f64>,
    /// The detector's verdict.
    pub trojaned: bool,
    /// The detector's named target.
    pub detected_target: Option<u32>,
    /// The anomaly index the decision compared.
    pub anomaly_index: Option<f64>,
    /// Whether the verdict (and target) matched the truth.
    pub correct: bool,
    /// Whether the backdoor took (non-target attack success at least 0.5; always true when clean).
    pub attack_took: bool,
}

/// `demo.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DemoRecord {
    /// The one seed.
    pub seed: u64,
    /// The hidden target.
    pub target: u32,
    /// BadNets trigger.
    pub trigger: String,
    /// Fraction of training images poisoned.
    pub poison_ratio: f64,
    /// Architecture of both models.
    pub arch: Arch,
    /// Training epochs.
    pub epochs: usize,
    /// Pruning steps of the detector.
    pub steps: usize,
    /// Clean images the detector could use (0: data-free).
    pub clean_images: usize,
    /// Reverse-engineering epochs of the detector.
    pub reverse_epochs: usize,
    /// The Trojaned model, then the clean control.
    pub models: Vec<DemoModel>,
    /// The command that reproduces the demo.
    pub command: String,
    /// Wall time.
    pub seconds: f64,
    /// libtorch CPU threads.
    pub threads: i32,
    /// The device.
    pub device: String,
    /// Versions of quarantine and libtorch.
    pub versions: Versions,
}

/// Which stages an experiment had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExperimentStages {
    /// A dense model was trained first.
    pub train: bool,
    /// The path was scored.
    pub score: bool,
    /// Dense model and winning ticket were reverse-engineered.
    pub reverse: bool,
    /// The path was IMP.
    pub imp: bool,
}

/// `experiment.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExperimentRecord {
    /// The experiment's name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// The config file.
    pub config: PathBuf,
    /// The one seed.
    pub seed: u64,
    /// The data spec.
    pub data: String,
    /// Its stages.
    pub stages: ExperimentStages,
    /// Wall time.
    pub seconds: f64,
    /// Versions of quarantine and libtorch.
    pub versions: Versions,
    /// The command that reproduces it.
    pub command: String,
}

/// Reads a typed JSON record, naming the file when it is missing or malformed.
pub fn read_record<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::bad_file(path, format!("not the record quarantine writes here: {e}")))
}
