//! The record of a pruning run (`prune.json`): what scoring its tickets needs to know.
use std::path::PathBuf;

use super::{ImpConfig, Method, Scope};
use crate::data::{Augment, DataSpec, Normalization};
use crate::model::Versions;

/// What `score` needs to know about a pruning run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PruneRecord {
    /// How the path was pruned.
    pub method: Method,
    /// Pruning steps.
    pub steps: usize,
    /// Fraction pruned per step.
    pub rate: f64,
    /// Global or per-layer pruning.
    pub scope: Scope,
    /// The data set.
    pub data: DataSpec,
    /// Input normalization of the models.
    pub normalization: Normalization,
    /// Training augmentation.
    pub augment: Augment,
    /// The attack the training set carried, if any.
    pub attack: Option<crate::attack::AttackConfig>,
    /// The run's seed.
    pub seed: u64,
    /// The dense checkpoint pruned (one-shot paths).
    pub source_model: Option<PathBuf>,
    /// IMP settings (IMP paths).
    pub imp: Option<ImpConfig>,
    /// Density after each step.
    pub densities: Vec<f64>,
    /// Versions of quarantine and libtorch.
    pub versions: Versions,
    /// SHA-256 of the (poisoned) training set.
    pub data_sha256: String,
}
