//! Scoring a whole pruning run (`quarantine score`, and the score stage of `run`): every ticket of
//! the run scored in turn ([`score_steps`], resumable), the winning Trojan ticket picked, the
//! result returned as a [`ScoredPath`]; the files (`dynamics.*`, `winning-ticket.*`) are written by
//! `crate::report::write_scored_path`.
use std::path::{Path, PathBuf};

use tch::Device;

use super::path::{load_scored_ticket, pick_winner, score_steps, Metrics, PathContext, ScoreKind, StepRow};
use super::{score_samples, AlphaGrid, ScoreConfig};
use crate::attack::Attack;
use crate::control::Control;
use crate::data::{noise_set, DataSpec, ImageSet};
use crate::error::{Error, Result};
use crate::eval::predict;
use crate::model::{load_checkpoint, CheckpointInfo, InputOverrides, Model, Versions};
use crate::prune::{load_ticket, Masks, Method, PruneRecord};

/// What the tickets of a run are scored on.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum ScoreSource {
    /// The run's (possibly poisoned) training set.
    #[default]
    Train,
    /// Data-free: noise images labelled by the dense model.
    Noise,
    /// Another data set's training split, labels as given.
    Data(DataSpec),
}

impl std::str::FromStr for ScoreSource {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "train" => ScoreSource::Train,
            "noise" => ScoreSource::Noise,
            spec => ScoreSource::Data(spec.parse()?),
        })
    }
}

impl std::fmt::Display for ScoreSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScoreSource::Train => f.write_str("train"),
            ScoreSource::Noise => f.write_str("noise"),
            ScoreSource::Data(d) => write!(f, "{d}"),
        }
    }
}

impl From<ScoreSource> for String {
    fn from(s: ScoreSource) -> String {
        s.to_string()
    }
}

impl TryFrom<String> for ScoreSource {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

/// How to score a pruning run. `Default` is `quarantine score`'s defaults.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScoreJob {
    /// Finetuning steps for φ_k (ignored with `reference`).
    pub k: usize,
    /// Reproduce the reference code: 21 steps, unshuffled loader, its α grid, no BN recalibration.
    pub reference: bool,
    /// α grid (None: uniform, or the reference's with `reference`).
    pub alpha_grid: Option<AlphaGrid>,
    /// Score data.
    pub score_data: ScoreSource,
    /// Number of score samples (fixed, seeded).
    pub score_samples: usize,
    /// Recompute BN running statistics on the score samples after pruning.
    pub bn_recalibrate: bool,
    /// Which score picks the winning ticket.
    pub select: ScoreKind,
    /// Only tickets at or below this density compete for the winner.
    pub max_density: Option<f64>,
}

impl Default for ScoreJob {
    fn default() -> Self {
        ScoreJob {
            k: 10,
            reference: false,
            alpha_grid: None,
            score_data: ScoreSource::Train,
            score_samples: 1024,
            bn_recalibrate: true,
            select: ScoreKind::Loss,
            max_density: None,
        }
    }
}

/// A scored pruning run.
pub struct ScoredPath {
    /// The run's record.
    pub record: PruneRecord,
    /// The score settings used.
    pub config: ScoreConfig,
    /// Whether the score data were made without data.
    pub data_free: bool,
    /// One row per step.
    pub rows: Vec<StepRow>,
    /// The winning ticket (index into `rows`, the ticket as scored, its masks and sidecar), if any
    /// ticket competed.
    pub winner: Option<(usize, Model, Masks, CheckpointInfo)>,
}

/// `score.json`-style summary of the winner in `dynamics.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WinnerRecord {
    /// Its step.
    pub step: usize,
    /// Its density.
    pub density: f64,
    /// Its 0-1 error score.
    pub score_error: f64,
    /// Its cross-entropy score.
    pub score_loss: f64,
    /// Its metrics.
    pub ticket: Metrics,
    /// Where it was saved.
    pub path: PathBuf,
}

/// A scored run's `dynamics.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScoreDynamics {
    /// The winning ticket.
    pub winning_ticket: Option<WinnerRecord>,
    /// Which score picked it.
    pub select: ScoreKind,
    /// The score settings.
    pub config: ScoreConfig,
    /// The score data.
    pub score_data: ScoreSource,
    /// Whether the score data were made without data.
    pub data_free: bool,
    /// Number of score samples.
    pub score_samples: usize,
    /// One row per step.
    pub steps: Vec<StepRow>,
    /// Versions of quarantine and libtorch.
    pub versions: Versions,
    /// The run's seed.
    pub seed: u64,
}

impl ScoredPath {
    /// The `dynamics.json` record of this scoring of run `dir` by `job`.
    pub fn record(&self, dir: &Path, job: &ScoreJob) -> ScoreDynamics {
        let winning_ticket = self.winner.as_ref().map(|(w, ..)| {
            let r = &self.rows[*w];
            WinnerRecord {
                step: r.step,
                density: r.density,
                score_error: r.score_error,
                score_loss: r.score_loss,
                ticket: r.ticket.clone(),
                path: dir.join("winning-ticket.safetensors"),
            }
        });
        ScoreDynamics {
            winning_ticket,
            select: job.select,
            config: self.config.clone(),
            score_data: job.score_data.clone(),
            data_free: self.data_free,
            score_samples: job.score_samples,
            steps: self.rows.clone(),
            versions: Versions::default(),
            seed: self.record.seed,
        }
    }
}

/// Reads `dir/prune.json`.
pub fn read_record(dir: &Path) -> Result<PruneRecord> {
    let rp = dir.join("prune.json");
    let bytes = std::fs::read(&rp).map_err(|e| Error::io(&rp, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::bad_file(&rp, format!("not a prune record: {e}")))
}

/// Deletes the saved per-step scores of run `dir` (a fresh scoring).
pub fn clear_scores(dir: &Path) -> Result<()> {
    let sdir = dir.join("score");
    if sdir.exists() {
        std::fs::remove_dir_all(&sdir).map_err(|e| Error::io(&sdir, e))?;
    }
    Ok(())
}

/// Makes run `dir` ready for scoring: a scored run (`dynamics.json`) is only continued with
/// `resume` or redone with `force` (which deletes the saved per-step scores unless resuming).
pub fn prepare(dir: &Path, resume: bool, force: bool) -> Result<()> {
    crate::util::prepare_out_dir(dir, "dynamics.json", resume, force)?;
    if force && !resume {
        clear_scores(dir)?;
    }
    Ok(())
}

/// Scores every ticket of the pruning run in `dir` (resuming saved steps with `resume`) and picks
/// the winning ticket.
pub fn run(dir: &Path, job: &ScoreJob, resume: bool, device: Device, ctl: &Control) -> Result<ScoredPath> {
    let record = read_record(dir)?;
    let ctx = context(dir, &record, job, device)?;
    let rows = score_steps(dir, 1..=record.steps, &ctx, device, resume, ctl)?;
    let winner = match pick_winner(&rows, job.select, job.max_density) {
        Some(w) => {
            let (phi, masks, info) = load_scored_ticket(dir, rows[w].step, &ctx, device)?;
            Some((w, phi, masks, info))
        }
        None => None,
    };
    Ok(ScoredPath { record, config: ctx.cfg, data_free: ctx.data_free, rows, winner })
}

/// The dense model the path started from (labels for data-free score data).
fn source_model(dir: &Path, record: &PruneRecord, device: Device) -> Result<Model> {
    let rp = dir.join("prune.json");
    let path = match record.method {
        Method::Imp => dir.join("round-000").join("trained.safetensors"),
        _ => record.source_model.clone().ok_or_else(|| Error::bad_file(&rp, "no source model"))?,
    };
    // A foreign source checkpoint is described by the first ticket's sidecar.
    let (_, _, info) = load_ticket(dir, 1, Device::Cpu)?;
    let ov = InputOverrides {
        arch: Some(info.meta.arch),
        image_size: Some(info.meta.height),
        channels: Some(info.meta.in_channels),
        classes: Some(info.meta.num_classes),
        normalize: None,
        input_range: None,
        allow_ops: info.meta.script.map(|s| s.allow_ops).unwrap_or_default(),
    };
    Ok(load_checkpoint(&path, &ov, device)?.0)
}

/// Everything scoring run `dir` needs, loaded once.
pub fn context(dir: &Path, record: &PruneRecord, job: &ScoreJob, device: Device) -> Result<PathContext> {
    let mut cfg = if job.reference {
        ScoreConfig::reference(record.augment, record.seed)
    } else {
        ScoreConfig::paper(record.augment, record.seed)
    };
    if !job.reference {
        cfg.k = job.k;
    }
    if let Some(g) = job.alpha_grid {
        cfg.alpha_grid = g;
    }
    if !job.bn_recalibrate {
        cfg.bn_recalibrate = false;
    }
    let norm = record.normalization.clone();
    let split = record.data.load()?;
    let (h, w, c) = (split.train.height, split.train.width, split.train.channels);
    let attack = match &record.attack {
        Some(cfg) => Some(Attack::new(cfg.clone(), (h, w, c), split.train.num_classes())?),
        None => None,
    };
    let finetune_set: ImageSet = match &job.score_data {
        // Same attack, same seed: the same poisoned set the model was trained on.
        ScoreSource::Train => match &attack {
            Some(att) => {
                att.poison_training_set(&split.train, None).map(|p| p.0).unwrap_or_else(|_| split.train.clone())
            }
            None => split.train.clone(),
        },
        ScoreSource::Noise => {
            let mut s = noise_set(
                job.score_samples.max(cfg.batch_size),
                (h, w, c),
                &norm,
                split.train.num_classes(),
                record.seed,
            );
            s.labels = predict(&source_model(dir, record, device)?, &s, &norm);
            s
        }
        ScoreSource::Data(spec) => spec.load()?.train,
    };
    let (data, _) = score_samples(&finetune_set, job.score_samples, &norm, record.seed, device);
    let data_free = job.score_data == ScoreSource::Noise;
    Ok(PathContext {
        norm,
        method: record.method,
        finetune_set,
        data,
        test: split.test,
        attack,
        cfg,
        data_free,
        select: job.select,
    })
}
