//! The records a detection leaves: `detect.json` ([`DetectRecord`]) and the detection's
//! `dynamics.json` ([`DetectDynamics`]). Written by `crate::report::write_detection`, read back by
//! the HTML report and by callers such as `demo`.
use std::path::{Path, PathBuf};

use super::{Decision, DecisionRule, DetectConfig, Detection};
use crate::data::DataSpec;
use crate::model::{ModelMeta, Versions};
use crate::prune::Method;
use crate::reverse::{AnomalyScale, EarlyStop, Examination, SeedSpec, SynthSummary, WarpConfig, WarpReport};
use crate::score::path::{PathSearch, ScoreKind, StepRow};
use crate::score::ScoreConfig;

/// One reverse engineering's verdict, as `detect.json` summarises it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VerdictSummary {
    /// Argmin-l1 label over the labels that reached success.
    pub detected_target: Option<u32>,
    /// Its mask l1.
    pub l1: Option<f64>,
    /// Its anomaly index on the chosen scale (None when infinite).
    pub anomaly_index: Option<f64>,
    /// The same on the linear scale.
    pub anomaly_index_linear: Option<f64>,
    /// The same on the log scale.
    pub anomaly_index_log: Option<f64>,
    /// Whether this reverse engineering alone flags the model.
    pub flagged: bool,
    /// Median mask l1 over the labels.
    pub median_l1: f64,
    /// Attack success of its binarised recovered trigger on clean test images, when known.
    pub recovered_asr: Option<f64>,
    /// Every label's line.
    pub labels: Vec<LabelLine>,
}

/// One label of a [`VerdictSummary`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LabelLine {
    /// The label.
    pub label: u32,
    /// Its mask l1.
    pub l1: f64,
    /// Its trigger's attack success on the seeds.
    pub attack_success: f64,
    /// Whether it reached the success threshold.
    pub reached: bool,
    /// Its binarised trigger's attack success on clean test images, when known.
    pub recovered_asr: Option<f64>,
}

fn finite(x: Option<f64>) -> Option<f64> {
    x.filter(|a| a.is_finite())
}

impl VerdictSummary {
    /// The summary of one examination.
    pub fn of(exam: &Examination) -> Self {
        let v = &exam.verdict;
        let labels = &exam.report.labels;
        let hit = v.detected_target.and_then(|t| labels.iter().find(|l| l.label == t));
        VerdictSummary {
            detected_target: v.detected_target,
            l1: hit.map(|l| l.l1),
            anomaly_index: finite(v.anomaly_index),
            anomaly_index_linear: finite(v.anomaly_index_linear),
            anomaly_index_log: finite(v.anomaly_index_log),
            flagged: v.flagged,
            median_l1: v.median_l1,
            recovered_asr: hit.and_then(|l| l.recovered_asr),
            labels: labels
                .iter()
                .map(|l| LabelLine {
                    label: l.label,
                    l1: l.l1,
                    attack_success: l.attack_success,
                    reached: l.reached,
                    recovered_asr: l.recovered_asr,
                })
                .collect(),
        }
    }
}

/// The winning ticket in `detect.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WinnerSummary {
    /// Its pruning step.
    pub step: usize,
    /// Its density.
    pub density: f64,
    /// Its cross-entropy score.
    pub score_loss: f64,
    /// Its 0-1 error score.
    pub score_error: f64,
    /// Its clean accuracy, when test data were given.
    pub clean_accuracy: Option<f64>,
}

/// The audited model in `detect.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelRef {
    /// The checkpoint file.
    pub path: PathBuf,
    /// Its architecture and input shape.
    pub meta: ModelMeta,
    /// The foreign format it was imported from, if any.
    pub imported_from: Option<String>,
}

/// The settings block of `detect.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DetectSettings {
    /// Pruning path.
    pub method: Method,
    /// What the path was scored on: "given", "synthesized" or "noise".
    pub score_data: String,
    /// Pruning steps.
    pub steps: usize,
    /// First scored step.
    pub score_from: usize,
    /// Finetuning steps of the score.
    pub k: usize,
    /// Score samples.
    pub score_samples: usize,
    /// Which score picked the winner.
    pub select: ScoreKind,
    /// Reverse-engineering seeds.
    pub seeds: SeedSpec,
    /// Reverse-engineering epochs.
    pub reverse_epochs: usize,
    /// Scale of the anomaly index.
    pub anomaly_scale: AnomalyScale,
    /// Decision rule.
    pub decide: DecisionRule,
    /// Whether tickets' BN statistics were recalibrated.
    pub bn_recalibrate: bool,
    /// How the pruning path was searched (records before the search: a sweep).
    #[serde(default = "super::sweep")]
    pub search: PathSearch,
    /// Grid stride of the coarse search.
    #[serde(default = "super::default_stride")]
    pub stride: usize,
    /// Early stop of the reverse engineering (None: all epochs).
    #[serde(default)]
    pub early_stop: Option<EarlyStop>,
    /// The warp inversion's settings (None: not run, or a record written before it existed).
    #[serde(default)]
    pub warp: Option<WarpConfig>,
}

/// Where a detection's time went, in seconds of wall-clock time.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Timings {
    /// Loading or synthesizing the seed images (also the data-free score data).
    pub seeds: f64,
    /// Cutting the pruning path.
    pub prune: f64,
    /// Scoring the path's steps.
    pub score: f64,
    /// Steps scored (of `steps - score_from + 1`).
    pub steps_scored: usize,
    /// Reverse engineering the dense model.
    pub reverse_dense: f64,
    /// Reverse engineering the winning ticket.
    pub reverse_ticket: f64,
    /// Epochs run, summed over the labels, dense model and ticket (labels x epochs without
    /// early stop).
    pub label_epochs: (usize, usize),
    /// The warp inversion of the dense model (0 when not run).
    #[serde(default)]
    pub warp: f64,
    /// The whole detection.
    pub total: f64,
}

/// `detect.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DetectRecord {
    /// The verdict.
    pub trojaned: bool,
    /// The named target when Trojaned.
    pub target: Option<u32>,
    /// The anomaly index the rule compared (None when infinite or absent).
    pub anomaly_index: Option<f64>,
    /// The rule's whole decision.
    pub decision: Decision,
    /// The threshold.
    pub threshold: f64,
    /// No data were given.
    pub data_free: bool,
    /// How the seed inversion went (synthesized seeds only).
    pub synthesized_seeds: Option<SynthSummary>,
    /// The winning ticket.
    pub winning_ticket: WinnerSummary,
    /// The dense model's reverse engineering.
    pub dense: VerdictSummary,
    /// The winning ticket's reverse engineering.
    pub ticket: VerdictSummary,
    /// The audited model.
    pub model: ModelRef,
    /// The settings.
    pub config: DetectSettings,
    /// The seed.
    pub seed: u64,
    /// The command that reproduces this run.
    pub command: String,
    /// Versions of quarantine and libtorch.
    pub versions: Versions,
    /// Where the time went (absent in records written before it was measured).
    #[serde(default)]
    pub timings: Option<Timings>,
    /// The warp inversion of the dense model ([`crate::reverse::warp`]; absent when not run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warp: Option<WarpReport>,
    /// The calibrated consensus decision (`--calibration`); when present, `trojaned`, `target` and
    /// `anomaly_index` are its verdict and `decision` the uncalibrated rule's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibrated: Option<Calibrated>,
    /// The size rule's decision on the same references (`--calibration`); the verdict with
    /// `--calibrated-rule size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Size>,
    /// Which of the two gives the verdict (`--calibrated-rule`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibrated_rule: Option<super::CalibratedRule>,
}

/// The calibrated consensus rule's decision on one model.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Calibrated {
    /// Flagged: dense and ticket agree after calibration and the pooled anomaly index exceeds the
    /// threshold.
    pub trojaned: bool,
    /// The agreed label (whether or not flagged); None when they disagree.
    pub label: Option<u32>,
    /// Pooled anomaly index of the agreed label; None when they disagree.
    pub anomaly_index: Option<f64>,
    /// Reference models used (0: no reference of this architecture, decided uncalibrated).
    pub references: usize,
}

/// The size rule's decision on one model ([`super::Calibration::size`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Size {
    /// Flagged: `z` exceeds the threshold.
    pub trojaned: bool,
    /// The label whose dense mask is smallest against the references (whether or not flagged).
    pub label: Option<u32>,
    /// How far below the references' null the smallest pooled shift lies, in null standard
    /// deviations; None with too few references.
    pub z: Option<f64>,
    /// Reference models used (those of the architecture and regime that record absolute sizes).
    pub references: usize,
}

/// The detection's `dynamics.json`: the scored pruning path.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DetectDynamics {
    /// One row per scored step.
    pub steps: Vec<StepRow>,
    /// The winning ticket's step.
    pub winning_step: usize,
    /// No data were given.
    pub data_free: bool,
    /// The score settings.
    pub config: ScoreConfig,
}

impl DetectConfig {
    /// The `quarantine detect` command line that reproduces a detection of `model` into `out`
    /// with these settings (and `data`, when given).
    pub fn command_line(&self, model: &Path, out: &Path, data: Option<&DataSpec>) -> String {
        let mut command = format!(
            "quarantine detect --model {} --out {} --method {} --steps {} --score-from {} --k {} --score-samples {} --select {} --seeds {} --reverse-epochs {} --threshold {} --anomaly-scale {} --decide {} --seed {}",
            model.display(),
            out.display(),
            self.method,
            self.steps,
            self.score_from,
            self.k,
            self.score_samples,
            self.select,
            self.seeds,
            self.reverse_epochs,
            self.threshold,
            self.anomaly_scale,
            self.decide,
            self.seed
        );
        match data {
            Some(d) => command.push_str(&format!(" --data {d}")),
            None => command.push_str(&format!(" --free-score-data {}", self.free_score_data)),
        }
        if !self.bn_recalibrate {
            command.push_str(" --no-bn-recalibrate");
        }
        command.push_str(&format!(" --search {} --stride {}", self.search, self.stride));
        if self.cost_patience != super::reference_cost_patience() {
            command.push_str(&format!(" --cost-patience {}", self.cost_patience));
        }
        if self.reverse_lr != super::reference_reverse_lr() {
            command.push_str(&format!(" --reverse-lr {}", self.reverse_lr));
        }
        match (self.reverse_batch, self.reverse_sample) {
            (Some(b), _) => command.push_str(&format!(" --reverse-batch {b}")),
            (None, Some(n)) => command.push_str(&format!(" --reverse-sample {n}")),
            (None, None) => command.push_str(" --reverse-sample all"),
        }
        if let Some(e) = &self.early_stop {
            command.push_str(&format!(" --early-stop --early-stop-patience {}", e.patience));
            command.push_str(&format!(" --early-stop-far {}", e.far.unwrap_or(0.0)));
        }
        match &self.warp {
            Some(w) => command.push_str(&format!(" --warp-budget {} --warp-steps {}", w.budget, w.steps)),
            None => command.push_str(" --no-warp"),
        }
        command
    }
}

impl Detection {
    /// The `detect.json` record of this detection under `cfg`, of the model `model`; `command`
    /// reproduces it.
    pub fn record(&self, cfg: &DetectConfig, model: ModelRef, command: String) -> DetectRecord {
        let d = &self.decision;
        let w = self.winner_row();
        DetectRecord {
            trojaned: d.trojaned,
            target: d.target,
            anomaly_index: finite(d.anomaly_index),
            decision: d.clone(),
            threshold: cfg.threshold,
            data_free: self.data_free,
            synthesized_seeds: self.synthesized.as_ref().map(|s| s.1.clone()),
            winning_ticket: WinnerSummary {
                step: w.step,
                density: w.density,
                score_loss: w.score_loss,
                score_error: w.score_error,
                clean_accuracy: w.ticket.clean_accuracy,
            },
            dense: VerdictSummary::of(&self.dense),
            ticket: VerdictSummary::of(&self.ticket),
            model,
            config: DetectSettings {
                method: cfg.method,
                score_data: self.score_data.to_string(),
                steps: cfg.steps,
                score_from: cfg.score_from,
                k: cfg.k,
                score_samples: cfg.score_samples,
                select: cfg.select,
                seeds: cfg.seeds.clone(),
                reverse_epochs: cfg.reverse_epochs,
                anomaly_scale: cfg.anomaly_scale,
                decide: cfg.decide,
                bn_recalibrate: self.score_config.bn_recalibrate,
                search: cfg.search,
                stride: cfg.stride,
                early_stop: cfg.early_stop,
                warp: cfg.warp_job(),
            },
            seed: cfg.seed,
            command,
            versions: Versions::default(),
            timings: Some(self.timings.clone()),
            warp: self.warp.clone(),
            calibrated: None,
            size: None,
            calibrated_rule: None,
        }
    }

    /// The one-line verdict as `quarantine detect` prints it, e.g. "verdict: TROJANED, target
    /// label 3 (anomaly index 2.68 > 2; rule consensus; ticket density 0.0225)".
    pub fn verdict_line(&self, cfg: &DetectConfig) -> String {
        let d = &self.decision;
        let label = |l: Option<u32>| l.map_or("none".to_string(), |l| l.to_string());
        let ai = d.anomaly_index.map_or("n/a".into(), |x| if x.is_finite() { format!("{x:.2}") } else { "inf".into() });
        let why = match (cfg.decide, d.agree) {
            (DecisionRule::Consensus, false) => format!(
                "dense model points at label {}, ticket at {}: no consensus",
                label(d.dense_target),
                label(d.ticket_target)
            ),
            _ => format!("anomaly index {ai} {} {}", if d.trojaned { ">" } else { "<=" }, cfg.threshold),
        };
        let density = self.winner_row().density;
        let tail = format!(
            "{why}; rule {}; ticket density {density:.4}{}",
            cfg.decide,
            if self.data_free { "; data-free" } else { "" }
        );
        match d.target {
            Some(t) if d.trojaned => format!("verdict: TROJANED, target label {t} ({tail})"),
            _ => format!("verdict: no Trojan found ({tail})"),
        }
    }

    /// The `dynamics.json` record of this detection.
    pub fn dynamics_record(&self) -> DetectDynamics {
        DetectDynamics {
            steps: self.dynamics.clone(),
            winning_step: self.winner_row().step,
            data_free: self.data_free,
            config: self.score_config.clone(),
        }
    }
}
