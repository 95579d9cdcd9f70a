//! The auditor's pipeline (docs/METHOD.md §5-6): on a model of unknown status, a one-shot
//! magnitude pruning path (no training), the Trojan score along it, the winning Trojan ticket (peak
//! score), trigger reverse engineering on the ticket AND on the dense model, and a verdict by a
//! decision [`Rule`].
//!
//! With data ([`AuditData`], e.g. the possibly poisoned training set, the paper's setting) the
//! score runs on it; without, the whole pipeline is data-free: the score runs on images labelled
//! by the model itself, by default the images synthesized from it for the seeds
//! ([`FreeScoreData::Synth`]), with every ticket's BN statistics recalibrated on them; with
//! [`FreeScoreData::Noise`] on noise (dense BN statistics kept).
//!
//! [`run`] returns a [`Detection`]; writing its files is a separate step
//! (`crate::report::write_detection`). The pruning path and its per-step scores are saved under
//! `WORK/path/` as they are computed, so an interrupted detection resumes.
//!
//! ```no_run
//! use quarantine::control::Control;
//! use quarantine::detect::{self, DetectConfig, Suspect};
//! use quarantine::model::InputOverrides;
//!
//! let suspect = Suspect::load("model.pt".as_ref(), &InputOverrides::default(), tch::Device::Cpu)?;
//! let work = std::path::Path::new("runs/audit");
//! let found = detect::run(&suspect, None, &DetectConfig::default(), work, false, &Control::quiet())?;
//! println!("Trojaned: {}, target {:?}", found.decision.trojaned, found.decision.target);
//! # Ok::<(), quarantine::Error>(())
//! ```
pub mod calibrate;
mod decide;
mod record;

pub use calibrate::{size_warp, warp_line, Calibration, Reference, SizeWarp, SIZE_MIN_REFERENCES};
pub use decide::{decide, CalibratedRule, Consensus, Decision, DecisionRule, DenseOnly, Evidence, Rule, TicketOnly};
pub use record::{
    Calibrated, DetectDynamics, DetectRecord, DetectSettings, ModelRef, Size, Timings, VerdictSummary, WinnerSummary,
};

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::control::Control;
use crate::data::{noise_set, Augment, DataSpec, ImageSet};
use crate::error::{Error, Result};
use crate::eval::predict;
use crate::model::{load_checkpoint, CheckpointInfo, InputOverrides, Model};
use crate::prune::{one_shot_path, ticket_path, Criterion, Masks, Method, Scope};
use crate::reverse::{
    examine, invert_warps, load_seeds, synthesize, AnomalyScale, EarlyStop, Examination, ReverseConfig, ReverseJob,
    SeedSpec, Seeds, SynthConfig, SynthSummary, WarpConfig, WarpReport, SYNTH_STEPS,
};
use crate::score::path::{
    load_scored_ticket, pick_winner, search_steps, PathContext, PathSearch, ScoreKind, StepRow, DEFAULT_STRIDE,
};
use crate::score::{score_samples, ScoreConfig};

/// What a data-free detection scores the pruning path on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FreeScoreData {
    /// Images inverted from the model (`reverse::synthesize`), labelled by it.
    #[default]
    Synth,
    /// N(0,1) noise in normalized space, labelled by the model.
    Noise,
}
crate::choices!(FreeScoreData {
    Synth => "synth": "images inverted from the model, labelled by it",
    Noise => "noise": "N(0,1) noise in normalized space, labelled by the model",
});

impl FreeScoreData {
    /// As written to detect.json and the plot title.
    pub fn title(self) -> &'static str {
        match self {
            FreeScoreData::Synth => "synthesized",
            FreeScoreData::Noise => "noise",
        }
    }
}

fn default_stride() -> usize {
    DEFAULT_STRIDE
}

/// Seeds per reverse-engineering step by default ([`DetectConfig::reverse_sample`]): each epoch
/// is one Adam step on 20 seeds drawn at random, where the reference steps on all 100. The same
/// schedule (epochs, cost patience, learning rate) at a fifth of the images per step. Chosen on one
/// tuning-zoo cnn (README "Faster detect": the target's mask l1 13.6 at 80 epochs against the
/// reference's 15.0 at 100; a 20-seed epoch without sampling, 5 steps of the 100 seeds, left the
/// masks larger); verdicts over the tuning zoo against the reference in the README.
pub const DEFAULT_REVERSE_SAMPLE: usize = 20;

/// Adam steps of the seed synthesis with `--fast` and `--quick`.
pub const FAST_SYNTH_STEPS: usize = 200;

/// The reverse-engineering schedule of `--quick` (issue 14): 40 epochs at Adam lr 0.3 with the
/// costs changing after 3 epochs in a row, against the reference's 100 epochs at lr 0.1 and 5.
/// Adam moves each trigger variable by about lr per step, so the reference's masks shrink from
/// l1 ~390 to a trigger's ~15 in 60-70 steps; three times the step gets there in ~25.
pub const QUICK_SCHEDULE: ReverseSchedule = ReverseSchedule { epochs: 40, lr: 0.3, cost_patience: 3 };

/// A reverse-engineering schedule of a detection profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReverseSchedule {
    /// Epochs (one Adam step over all seeds each).
    pub epochs: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Epochs in a row before the costs change.
    pub cost_patience: usize,
}

/// The reference's cost patience (records written before it was a setting).
pub(crate) fn reference_cost_patience() -> usize {
    ReverseConfig::default().patience
}

/// The reference's learning rate of reverse engineering (records written before it was a setting).
pub(crate) fn reference_reverse_lr() -> f64 {
    ReverseConfig::default().lr
}

/// Records written before the search swept the path.
fn sweep() -> PathSearch {
    PathSearch::Sweep
}

/// Every setting of a detection. `Default` is `quarantine detect`'s defaults.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DetectConfig {
    /// Pruning path: one-shot magnitude ([`Method::Omp`]) or random (a control). IMP needs training.
    pub method: Method,
    /// Pruning steps (densities 0.8^s).
    pub steps: usize,
    /// First step scored (denser tickets are cut but not scored).
    pub score_from: usize,
    /// Which steps of the path are scored: a coarse-to-fine search for the peak, or all.
    #[serde(default = "sweep")]
    pub search: PathSearch,
    /// Grid stride of the coarse-to-fine search.
    #[serde(default = "default_stride")]
    pub stride: usize,
    /// Finetuning steps of the score.
    pub k: usize,
    /// Number of score samples.
    pub score_samples: usize,
    /// Which score picks the winning ticket.
    pub select: ScoreKind,
    /// Score data of a data-free detection.
    pub free_score_data: FreeScoreData,
    /// Recalibrate every ticket's BN statistics on the score samples (never on noise).
    pub bn_recalibrate: bool,
    /// Reverse-engineering seeds.
    pub seeds: SeedSpec,
    /// Reverse-engineering epochs.
    pub reverse_epochs: usize,
    /// Reverse engineering: epochs in a row before the costs change ([`ReverseConfig::patience`]).
    #[serde(default = "reference_cost_patience")]
    pub cost_patience: usize,
    /// Reverse engineering: Adam learning rate ([`ReverseConfig::lr`]).
    #[serde(default = "reference_reverse_lr")]
    pub reverse_lr: f64,
    /// Reverse engineering: seeds per Adam step (`None`: all seeds in one step per epoch, the
    /// reference; [`ReverseConfig::batch_size`]).
    #[serde(default)]
    pub reverse_batch: Option<usize>,
    /// Reverse engineering: each epoch one Adam step on this many seeds drawn at random (`None`:
    /// every seed, the reference; [`ReverseConfig::sample`]).
    #[serde(default)]
    pub reverse_sample: Option<usize>,
    /// Early stop of the reverse engineering (`None`: every label runs all epochs).
    #[serde(default)]
    pub early_stop: Option<EarlyStop>,
    /// The warp inversion on the dense model (`None`: not run; [`crate::reverse::warp`]); its
    /// seed is the detection's.
    #[serde(default)]
    pub warp: Option<WarpConfig>,
    /// Anomaly index above which a model is flagged.
    pub threshold: f64,
    /// Scale of the anomaly index.
    pub anomaly_scale: AnomalyScale,
    /// The decision rule.
    pub decide: DecisionRule,
    /// One seed for everything random.
    pub seed: u64,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            method: Method::Omp,
            steps: 30,
            score_from: 1,
            search: PathSearch::Coarse,
            stride: DEFAULT_STRIDE,
            k: 10,
            score_samples: 1024,
            select: ScoreKind::Loss,
            free_score_data: FreeScoreData::Synth,
            bn_recalibrate: true,
            seeds: SeedSpec::Synth(100, SYNTH_STEPS),
            reverse_epochs: 100,
            cost_patience: reference_cost_patience(),
            reverse_lr: reference_reverse_lr(),
            reverse_batch: None,
            reverse_sample: Some(DEFAULT_REVERSE_SAMPLE),
            early_stop: None,
            warp: Some(WarpConfig::default()),
            threshold: 2.0,
            anomaly_scale: AnomalyScale::Log,
            decide: DecisionRule::Consensus,
            seed: 0,
        }
    }
}

impl DetectConfig {
    /// The previous defaults (`detect --exhaustive`): every step of the path scored, and the
    /// reference's reverse engineering, every seed at every step.
    pub fn exhaustive(mut self) -> Self {
        self.search = PathSearch::Sweep;
        self.early_stop = None;
        self.reverse_sample = None;
        self
    }

    /// About twice as fast, not the same verdicts (`detect --fast`): early stop of the reverse
    /// engineering ([`EarlyStop::default`]) and seeds synthesized in [`FAST_SYNTH_STEPS`] steps.
    /// On the README's 11 models it changed 2 verdicts, one for the better and one a false alarm
    /// (README, "Faster detect").
    pub fn fast(mut self) -> Self {
        self.early_stop = Some(EarlyStop::default());
        self.shorter_synthesis()
    }

    /// Default synthesized seeds (`synth:N`) made in [`FAST_SYNTH_STEPS`] steps instead of
    /// [`SYNTH_STEPS`]; other seeds as they are.
    fn shorter_synthesis(mut self) -> Self {
        if let SeedSpec::Synth(n, SYNTH_STEPS) = self.seeds {
            self.seeds = SeedSpec::Synth(n, FAST_SYNTH_STEPS);
        }
        self
    }

    /// A shorter reverse-engineering schedule (`detect --quick`): [`QUICK_SCHEDULE`] on every
    /// seed at every step, and seeds synthesized in [`FAST_SYNTH_STEPS`] steps; the path search as
    /// by default. 1.75x faster than the reference schedule, one new false alarm over nine
    /// tuning-zoo models (README, "Faster detect", item 4).
    pub fn quick(mut self) -> Self {
        self.reverse_epochs = QUICK_SCHEDULE.epochs;
        self.reverse_lr = QUICK_SCHEDULE.lr;
        self.cost_patience = QUICK_SCHEDULE.cost_patience;
        self.reverse_sample = None;
        self.early_stop = None;
        self.shorter_synthesis()
    }

    /// Errs on settings no detection can run with.
    pub fn validate(&self) -> Result<()> {
        if self.method == Method::Imp {
            return Err(Error::invalid("pruning method", "detection prunes the given model without training: use one-shot (omp) or random pruning; IMP needs a training run"));
        }
        if self.steps == 0 || !(1..=self.steps).contains(&self.score_from) {
            return Err(Error::invalid(
                "score steps",
                format!("the first scored step {} must lie in 1..={} (the pruning steps)", self.score_from, self.steps),
            ));
        }
        if self.stride == 0 {
            return Err(Error::invalid("path search", "the stride of the coarse search must be at least 1"));
        }
        self.reverse_job().config.validate()?;
        if let Some(w) = &self.warp {
            w.validate()?;
        }
        if self.score_samples == 0 || self.reverse_epochs == 0 {
            return Err(Error::invalid(
                "detection config",
                "score samples and reverse-engineering epochs must be at least 1",
            ));
        }
        Ok(())
    }

    /// The score data of this detection: the given data, or the data-free kind.
    pub fn score_data(&self, data_given: bool) -> Option<FreeScoreData> {
        (!data_given).then_some(self.free_score_data)
    }

    /// The warp inversion run on the dense model, with the detection's seed (`None`: not run).
    pub fn warp_job(&self) -> Option<WarpConfig> {
        self.warp.clone().map(|w| WarpConfig { seed: self.seed, ..w })
    }

    /// The reverse-engineering job run on the dense model and on the ticket.
    pub fn reverse_job(&self) -> ReverseJob {
        ReverseJob {
            config: ReverseConfig {
                epochs: self.reverse_epochs,
                patience: self.cost_patience,
                lr: self.reverse_lr,
                batch_size: self.reverse_batch,
                sample: self.reverse_sample,
                seed: self.seed,
                early_stop: self.early_stop,
                ..Default::default()
            },
            seeds: self.seeds.clone(),
            threshold: self.threshold,
            anomaly_scale: self.anomaly_scale,
            ..Default::default()
        }
    }
}

/// Data an auditor holds: a training split (scored on) and maybe a clean test split (for the
/// recovered triggers' attack success).
#[derive(Debug, Clone)]
pub struct AuditData {
    /// Images the score finetunes and evaluates on.
    pub train: ImageSet,
    /// Clean test images, when known.
    pub test: Option<ImageSet>,
    /// Augmentation of the finetuning.
    pub augment: Augment,
}

impl AuditData {
    /// Loads a data spec (its training and test splits, its default augmentation). A plain image
    /// folder (no train/test split) is both.
    pub fn load(spec: &DataSpec) -> Result<Self> {
        let split = spec.load()?;
        let test = match (&split.test, spec) {
            (None, DataSpec::Folder(_)) => Some(split.train.clone()),
            _ => split.test,
        };
        Ok(AuditData { train: split.train, test, augment: spec.default_augment() })
    }
}

/// The model under audit, as loaded from its checkpoint.
pub struct Suspect {
    /// The checkpoint file.
    pub path: PathBuf,
    /// The network.
    pub model: Model,
    /// Its sidecar (or what was inferred for a foreign checkpoint).
    pub info: CheckpointInfo,
    /// Its pruning masks (all ones for an unpruned checkpoint): the path starts from them.
    pub masks: Masks,
}

impl Suspect {
    /// Loads a checkpoint (native, PyTorch or bare safetensors; `overrides` describe a foreign one).
    pub fn load(path: &Path, overrides: &InputOverrides, device: tch::Device) -> Result<Self> {
        let (model, info, file_masks) = load_checkpoint(path, overrides, device)?;
        let masks =
            if file_masks.is_empty() { Masks::dense(&model) } else { Masks::from_raw(&model, &file_masks, path)? };
        Ok(Suspect { path: path.to_path_buf(), model, info, masks })
    }
}

/// The winning Trojan ticket of a detection.
pub struct WinningTicket {
    /// Its row in [`Detection::dynamics`].
    pub index: usize,
    /// The ticket as scored (BN recalibrated when enabled).
    pub model: Model,
    /// Its masks.
    pub masks: Masks,
    /// Its sidecar.
    pub info: CheckpointInfo,
}

/// Everything a detection found.
pub struct Detection {
    /// The verdict.
    pub decision: Decision,
    /// Reverse engineering of the dense model.
    pub dense: Examination,
    /// Reverse engineering of the winning ticket.
    pub ticket: Examination,
    /// The winning ticket.
    pub winner: WinningTicket,
    /// The scored pruning path, one row per scored step.
    pub dynamics: Vec<StepRow>,
    /// The score settings used (after the data-free adjustments).
    pub score_config: ScoreConfig,
    /// What the path was scored on: "given", "synthesized" or "noise".
    pub score_data: &'static str,
    /// No data was given.
    pub data_free: bool,
    /// Synthesized seed images and how their inversion went (synthesized seeds only).
    pub synthesized: Option<(ImageSet, SynthSummary)>,
    /// The warp inversion of the dense model, when run.
    pub warp: Option<WarpReport>,
    /// Where the time went.
    pub timings: Timings,
}

impl Detection {
    /// The scored step of the winning ticket.
    pub fn winner_row(&self) -> &StepRow {
        &self.dynamics[self.winner.index]
    }
}

/// Runs a detection on `suspect` with optional `data`; the pruning path is kept under
/// `work/path/` (resumed from there with `resume`).
pub fn run(
    suspect: &Suspect,
    data: Option<&AuditData>,
    cfg: &DetectConfig,
    work: &Path,
    resume: bool,
    ctl: &Control,
) -> Result<Detection> {
    cfg.validate()?;
    let start = Instant::now();
    let lap = |t: &mut Instant| {
        let s = t.elapsed().as_secs_f64();
        *t = Instant::now();
        s
    };
    let mut clock = Instant::now();
    let mut timings = Timings::default();
    let model = &suspect.model;
    if let Some(d) = data {
        model.meta.check_images((d.train.channels, d.train.height, d.train.width), "audit data")?;
    }
    let norm = &suspect.info.normalization;
    // Seeds first: synthesized seeds are also the data-free score data.
    let (seeds, synth) = load_seeds(&cfg.seeds, model, norm, cfg.seed, ctl, work)?;
    let synthesized = match (&seeds, &synth) {
        (Seeds::Images { images, .. }, Some(s)) => Some((images.clone(), s.clone())),
        _ => None,
    };
    let ctx = path_context(suspect, data, cfg, synthesized.as_ref().map(|s| &s.0), ctl)?;
    timings.seeds = lap(&mut clock);
    let path = work.join("path");
    prune_path(suspect, cfg, &path, resume, ctl)?;
    timings.prune = lap(&mut clock);
    let steps = cfg.score_from..=cfg.steps;
    let dynamics = search_steps(&path, steps, cfg.search, cfg.stride, &ctx, model.device(), resume, ctl)?;
    timings.steps_scored = dynamics.len();
    let index = pick_winner(&dynamics, cfg.select, None)
        .ok_or_else(|| Error::invalid("score steps", "no pruning steps were scored"))?;
    let step = dynamics[index].step;
    let (ticket, masks, info) = load_scored_ticket(&path, step, &ctx, model.device())?;
    timings.score = lap(&mut clock);

    let job = cfg.reverse_job();
    let progress = ctl.progress();
    progress.note("detect: reverse engineering the dense model");
    let dense = examine_for_detect(model, suspect, &seeds, &job, ctx.test.as_ref(), ctl)?;
    timings.reverse_dense = lap(&mut clock);
    progress.note(&format!(
        "detect: reverse engineering the winning ticket (step {step}, density {:.4})",
        dynamics[index].density
    ));
    let ticket_exam = examine_for_detect(&ticket, suspect, &seeds, &job, ctx.test.as_ref(), ctl)?;
    timings.reverse_ticket = lap(&mut clock);
    let warp = match cfg.warp_job() {
        Some(w) => {
            progress.note("detect: warp inversion of the dense model");
            Some(invert_warps(model, norm, &seeds, &w, ctl)?)
        }
        None => None,
    };
    timings.warp = lap(&mut clock);
    let epochs = |e: &Examination| e.results.iter().map(|r| r.epochs_run).sum();
    timings.label_epochs = (epochs(&dense), epochs(&ticket_exam));
    timings.total = start.elapsed().as_secs_f64();
    progress.note(&format!(
        "detect: {:.0} s: seeds {:.0} s, path {:.0} s, score {:.0} s ({} steps), reverse engineering {:.0} + {:.0} s ({} + {} label-epochs), warp {:.0} s",
        timings.total,
        timings.seeds,
        timings.prune,
        timings.score,
        timings.steps_scored,
        timings.reverse_dense,
        timings.reverse_ticket,
        timings.label_epochs.0,
        timings.label_epochs.1,
        timings.warp
    ));
    let decision = decide(
        cfg.decide,
        cfg.anomaly_scale,
        cfg.threshold,
        (&dense.verdict, &dense.report.labels),
        (&ticket_exam.verdict, &ticket_exam.report.labels),
    );
    let free = cfg.score_data(data.is_some());
    Ok(Detection {
        decision,
        dense,
        ticket: ticket_exam,
        winner: WinningTicket { index, model: ticket, masks, info },
        dynamics,
        score_config: ctx.cfg,
        score_data: free.map_or("given", FreeScoreData::title),
        data_free: free.is_some(),
        synthesized,
        warp,
        timings,
    })
}

/// Reverse engineering of one network of the detection (the dense model or its ticket, both with
/// the suspect's normalization); the record names the command.
fn examine_for_detect(
    net: &Model,
    suspect: &Suspect,
    seeds: &Seeds,
    job: &ReverseJob,
    test: Option<&ImageSet>,
    ctl: &Control,
) -> Result<Examination> {
    let mut exam = examine(net, &suspect.info.normalization, seeds, job, test, ctl)?;
    exam.report.config = serde_json::json!({"command": "detect", "reverse": job.config});
    Ok(exam)
}

/// The score's data and settings: the given data, or images labelled by the model.
fn path_context(
    suspect: &Suspect,
    data: Option<&AuditData>,
    cfg: &DetectConfig,
    synthesized: Option<&ImageSet>,
    ctl: &Control,
) -> Result<PathContext> {
    let (model, norm) = (&suspect.model, &suspect.info.normalization);
    let m = &model.meta;
    let free = cfg.score_data(data.is_some());
    let (finetune_set, test) = match (data, cfg.free_score_data) {
        (Some(d), _) => (d.train.clone(), d.test.clone()),
        (None, FreeScoreData::Noise) => {
            let mut s = noise_set(
                cfg.score_samples.max(128),
                (m.height, m.width, m.in_channels),
                norm,
                m.num_classes,
                cfg.seed,
            );
            s.labels = predict(model, &s, norm);
            (s, None)
        }
        (None, FreeScoreData::Synth) => {
            let mut s = match synthesized {
                Some(images) => images.clone(),
                None => {
                    let n = cfg.score_samples.min(100);
                    ctl.progress().note(&format!("detect: synthesizing {n} score images from the model"));
                    synthesize(model, norm, &SynthConfig::new(n, cfg.seed))?.0
                }
            };
            s.labels = predict(model, &s, norm);
            (s, None)
        }
    };
    let augment = data.map_or(Augment::NONE, |d| d.augment);
    let mut score = ScoreConfig::paper(augment, cfg.seed);
    score.k = cfg.k;
    // BN statistics recomputed on noise would describe noise, not images: noise keeps them.
    score.bn_recalibrate = cfg.bn_recalibrate && free != Some(FreeScoreData::Noise);
    let (samples, _) = score_samples(&finetune_set, cfg.score_samples, norm, cfg.seed, model.device());
    if score.bn_recalibrate && !crate::score::bn_updates_in_train_mode(model, &samples.x)? {
        ctl.progress().note(
            "detect: this TorchScript module's BN layers do not switch to batch statistics in train mode \
             (traced?): scoring without BN recalibration",
        );
        score.bn_recalibrate = false;
    }
    Ok(PathContext {
        norm: norm.clone(),
        method: cfg.method,
        finetune_set,
        data: samples,
        test,
        attack: None,
        cfg: score,
        data_free: free.is_some(),
        select: cfg.select,
    })
}

/// Cuts the pruning path into `path` (a pruned checkpoint starts from its own masks), unless a
/// resumed run already has its last ticket.
fn prune_path(suspect: &Suspect, cfg: &DetectConfig, path: &Path, resume: bool, ctl: &Control) -> Result<()> {
    if resume && ticket_path(path, cfg.steps).exists() {
        return Ok(());
    }
    let crit = if cfg.method == Method::Random { Criterion::Random(cfg.seed) } else { Criterion::Magnitude };
    ctl.progress().note(&format!("detect: pruning path ({} steps, {})", cfg.steps, cfg.method.title()));
    one_shot_path(path, &suspect.model, &suspect.info, cfg.steps, 0.2, Scope::Global, crit, suspect.masks.clone())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::control::Progress;
    use crate::data::Normalization;
    use crate::model::{Arch, ModelMeta};

    /// Cancels its control after `after` scored steps.
    struct CancelAfter {
        flag: Arc<AtomicBool>,
        after: usize,
        scored: AtomicUsize,
        stage: Mutex<String>,
    }

    impl Progress for CancelAfter {
        fn start(&self, stage: &str, _total: u64) {
            *self.stage.lock().unwrap() = stage.to_string();
        }
        fn inc(&self, _n: u64) {
            if *self.stage.lock().unwrap() == "scoring" && self.scored.fetch_add(1, Ordering::SeqCst) + 1 == self.after
            {
                self.flag.store(true, Ordering::SeqCst);
            }
        }
    }

    fn suspect() -> Suspect {
        tch::manual_seed(9);
        let meta = ModelMeta { arch: Arch::Cnn, in_channels: 1, height: 12, width: 12, num_classes: 4, script: None };
        let model = Model::new(meta.clone(), tch::Device::Cpu).unwrap();
        let masks = Masks::dense(&model);
        Suspect {
            path: "fixture.safetensors".into(),
            model,
            info: CheckpointInfo::new(meta, Normalization::mnist()),
            masks,
        }
    }

    /// The default (coarse) path search and the early-stopped reverse engineering are
    /// deterministic under the seed, and a detection cancelled in the middle of the search
    /// resumes to the same scored steps, winner and verdict as an uninterrupted one.
    #[test]
    fn an_interrupted_search_resumes_to_the_uninterrupted_detection() {
        let s = suspect();
        let cfg = DetectConfig {
            steps: 16,
            k: 2,
            score_samples: 32,
            seeds: SeedSpec::Noise(8),
            free_score_data: FreeScoreData::Noise,
            reverse_epochs: 12,
            early_stop: Some(EarlyStop { patience: 2, min_delta: 0.01, far: None }),
            seed: 5,
            ..DetectConfig::default()
        };
        assert_eq!((cfg.search, cfg.stride), (PathSearch::Coarse, 4));
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let whole = run(&s, None, &cfg, a.path(), false, &Control::quiet()).unwrap();
        // Grid 16, 12, 8, 4, 1, then the neighbourhood of its best: at most 11 steps of 16.
        let steps: Vec<usize> = whole.dynamics.iter().map(|r| r.step).collect();
        assert!(steps.len() <= 11 && [16, 12, 8, 4, 1].iter().all(|s| steps.contains(s)), "{steps:?}");
        let flag = Arc::new(AtomicBool::new(false));
        let progress =
            CancelAfter { flag: flag.clone(), after: 2, scored: AtomicUsize::new(0), stage: Mutex::new(String::new()) };
        let cut = run(&s, None, &cfg, b.path(), false, &Control::new(flag, Arc::new(progress)));
        assert!(matches!(cut, Err(Error::Interrupted(_))), "{:?}", cut.err());
        let saved = std::fs::read_dir(b.path().join("path/score")).unwrap().count();
        assert_eq!(saved, 2, "two steps were scored before the stop");
        let resumed = run(&s, None, &cfg, b.path(), true, &Control::quiet()).unwrap();
        assert_eq!(resumed.dynamics, whole.dynamics);
        assert_eq!(resumed.winner.index, whole.winner.index);
        assert_eq!(resumed.decision, whole.decision);
        let l1 = |d: &Detection| d.dense.results.iter().chain(&d.ticket.results).map(|r| r.l1).collect::<Vec<_>>();
        assert_eq!(l1(&resumed), l1(&whole));
        assert!(whole.dense.results.iter().all(|r| r.epochs_run <= 12));
        assert_eq!(whole.timings.steps_scored, steps.len());
    }

    /// The reverse-engineering schedule is part of the config: a detect.json written before it
    /// was a setting reads as the reference's (lr 0.1, cost patience 5), the reverse job gets what
    /// is set, and the recorded command line reproduces a changed schedule.
    #[test]
    fn the_reverse_schedule_is_recorded_and_old_records_read_as_the_reference() {
        let mut old = serde_json::to_value(DetectConfig::default()).unwrap();
        let map = old.as_object_mut().unwrap();
        assert!(map.remove("reverse_lr").is_some() && map.remove("cost_patience").is_some());
        assert!(map.remove("reverse_batch").is_some() && map.remove("reverse_sample").is_some());
        let read: DetectConfig = serde_json::from_value(old).unwrap();
        // Records from before sampling ran the reference: every seed at every step.
        assert_eq!(
            (read.reverse_lr, read.cost_patience, read.reverse_batch, read.reverse_sample),
            (0.1, 5, None, None)
        );
        let cfg = DetectConfig { reverse_lr: 0.3, cost_patience: 3, ..DetectConfig::default() };
        let job = cfg.reverse_job();
        assert_eq!((job.config.lr, job.config.patience), (0.3, 3));
        let line = cfg.command_line(std::path::Path::new("m.pt"), std::path::Path::new("out"), None);
        assert!(line.contains(" --reverse-lr 0.3") && line.contains(" --cost-patience 3"), "{line}");
        assert!(!line.contains("--reverse-batch"), "{line}");
        assert!(line.contains(" --reverse-sample 20"), "{line}");
        let cfg = DetectConfig { reverse_batch: Some(20), reverse_sample: None, ..DetectConfig::default() };
        assert_eq!(cfg.reverse_job().config.batch_size, Some(20));
        let line = cfg.command_line(std::path::Path::new("m.pt"), std::path::Path::new("out"), None);
        assert!(line.contains(" --reverse-batch 20") && !line.contains("--reverse-sample"), "{line}");
        let line = DetectConfig::default().exhaustive().command_line(
            std::path::Path::new("m.pt"),
            std::path::Path::new("out"),
            None,
        );
        assert!(line.contains(" --reverse-sample all"), "{line}");
        let reference = DetectConfig { reverse_lr: 0.1, cost_patience: 5, ..DetectConfig::default() };
        let line = reference.command_line(std::path::Path::new("m.pt"), std::path::Path::new("out"), None);
        assert!(!line.contains("--reverse-lr") && !line.contains("--cost-patience"), "{line}");
        assert!(DetectConfig { reverse_lr: 0.0, ..DetectConfig::default() }.validate().is_err());
        assert!(DetectConfig { cost_patience: 0, ..DetectConfig::default() }.validate().is_err());
        let quick = DetectConfig::default().quick();
        assert_eq!((quick.reverse_epochs, quick.reverse_lr, quick.cost_patience), (40, 0.3, 3));
        assert_eq!(quick.seeds, SeedSpec::Synth(100, FAST_SYNTH_STEPS));
    }
}
