//! A whole pruning run as one library call: the (poisoned) training data, the dense model (trained
//! by IMP itself, or loaded for OMP / random), the path of tickets, and `prune.json`, the
//! [`PruneRecord`] that scoring reads.
use std::path::{Path, PathBuf};

use tch::Device;

use super::{one_shot_path, run_imp, Criterion, ImpConfig, Masks, Method, PruneRecord, Rewind, Scope};
use crate::attack::{load_surrogate, poison_and_record, AttackConfig};
use crate::control::Control;
use crate::data::{data_hash, Augment, DataSpec, ImageSet, Normalization, Split};
use crate::error::{Error, Result};
use crate::model::{load_checkpoint, Arch, CheckpointInfo, InputOverrides, Model, ModelMeta, Versions};
use crate::train::{TrainConfig, TrainData};
use crate::util::{prepare_out_dir, write_json};

/// Everything a pruning run needs (what `quarantine prune`'s flags become). `Default` is the
/// command's defaults; set at least `out`, and `model` (OMP, random) or `arch` (IMP).
#[derive(Debug, Clone, PartialEq)]
pub struct PruneJob {
    /// The trained model to prune (OMP, random). IMP trains its own dense model.
    pub model: Option<PathBuf>,
    /// The architecture: IMP's dense model, or of a checkpoint without sidecar.
    pub arch: Option<Arch>,
    /// Input image size of a checkpoint without sidecar.
    pub image_size: Option<usize>,
    /// Input normalization (as [`crate::train::TrainJob::normalize`]; `None`: the model's, or for
    /// IMP the data set's).
    pub normalize: Option<String>,
    /// The (possibly poisoned) training data: IMP trains on it, scoring finetunes and scores on it.
    pub data: DataSpec,
    /// The run folder.
    pub out: PathBuf,
    /// How the path is made.
    pub method: Method,
    /// Fraction of the alive weights removed per step.
    pub rate: f64,
    /// Number of pruning steps / tickets (density (1-rate)^s, s = 1..steps).
    pub steps: usize,
    /// Global or per-layer thresholds.
    pub scope: Scope,
    /// IMP: the state each pruned round starts from.
    pub rewind: Rewind,
    /// IMP: epochs of the dense run.
    pub epochs: usize,
    /// IMP: epochs per pruned round (`None`: from the rewind epoch to the end).
    pub epochs_per_round: Option<usize>,
    /// IMP: initial learning rate.
    pub lr: f64,
    /// IMP: images per batch.
    pub batch_size: usize,
    /// Seed of IMP's training and of random pruning.
    pub seed: u64,
    /// Continue an interrupted run in `out`.
    pub resume: bool,
    /// Replace a finished run in `out` (its tickets, rounds and scores).
    pub force: bool,
    /// The attack poisoning IMP's training data (and measured along every path).
    pub attack: Option<AttackConfig>,
    /// The surrogate checkpoint a clean-label attack perturbs against.
    pub surrogate: Option<PathBuf>,
    /// IMP: a TorchScript archive whose network (and initial weights) IMP trains instead of `arch`.
    pub model_init: Option<PathBuf>,
    /// Ops a TorchScript model (`model` or `model_init`) may use on top of the allow-list.
    pub allow_ops: Vec<String>,
}

impl Default for PruneJob {
    /// OMP, 15 steps of 20%; for IMP the reference's 12 dense epochs rewound to epoch 3 (docs/METHOD.md §4).
    fn default() -> Self {
        let epochs = 12;
        let r = TrainConfig::reference(epochs, 0, Augment::NONE);
        PruneJob {
            model: None,
            arch: None,
            image_size: None,
            normalize: None,
            data: DataSpec::Builtin,
            out: PathBuf::new(),
            method: Method::Omp,
            rate: 0.2,
            steps: 15,
            scope: Scope::Global,
            rewind: Rewind::Epoch(3),
            epochs,
            epochs_per_round: None,
            lr: r.lr,
            batch_size: r.batch_size,
            seed: r.seed,
            resume: false,
            force: false,
            attack: None,
            surrogate: None,
            model_init: None,
            allow_ops: vec![],
        }
    }
}

impl PruneJob {
    /// IMP's configuration: the reference schedule with this job's epochs, learning rate and batch.
    pub fn imp_config(&self) -> ImpConfig {
        let mut train = TrainConfig::reference(self.epochs, self.seed, self.data.default_augment());
        train.lr = self.lr;
        train.batch_size = self.batch_size;
        ImpConfig {
            train,
            steps: self.steps,
            rate: self.rate,
            scope: self.scope,
            rewind: self.rewind,
            epochs_per_round: self.epochs_per_round,
            random: false,
        }
    }

    /// Checks what can be checked before loading anything.
    pub fn validate(&self) -> Result<()> {
        if self.out.as_os_str().is_empty() {
            return Err(Error::invalid("pruning job", "no output folder"));
        }
        match (self.method, &self.model, self.arch) {
            (Method::Imp, Some(_), _) => Err(Error::invalid(
                "pruning job",
                "IMP trains its own dense model (it needs the rewind point): give an architecture, not a model",
            )),
            (Method::Imp, None, None) if self.model_init.is_some() => Ok(()),
            (Method::Imp, None, None) => Err(Error::invalid(
                "pruning job",
                "IMP needs the architecture of the model it trains (--arch or --model-init)",
            )),
            (Method::Imp, None, Some(_)) => Ok(()),
            (m, None, _) => Err(Error::invalid(
                "pruning job",
                format!("a {} path prunes a trained model: give its checkpoint", m.title()),
            )),
            (_, Some(_), _) => Ok(()),
        }
    }
}

/// Runs `job` on `device`: loads its data, then as [`run_with_data`].
pub fn run(job: &PruneJob, device: Device, ctl: &Control) -> Result<PruneRecord> {
    job.validate()?;
    let split = job.data.load()?;
    run_with_data(job, &split, device, ctl)
}

/// Runs `job` on data already loaded (`split` is what `job.data` loads): writes the tickets and
/// `prune.json` into `job.out`. IMP resumes round by round with `job.resume` and stops with
/// `Error::Interrupted` when `ctl` is cancelled.
pub fn run_with_data(job: &PruneJob, split: &Split, device: Device, ctl: &Control) -> Result<PruneRecord> {
    job.validate()?;
    prepare_out_dir(&job.out, "prune.json", job.resume, job.force)?;
    if job.force && !job.resume {
        clear_run(&job.out)?;
    }
    let train = match &job.attack {
        Some(cfg) => {
            let surrogate = load_surrogate(cfg, job.surrogate.as_deref(), device)?;
            poison_and_record(cfg.clone(), &split.train, surrogate.as_ref(), &job.out)?.set
        }
        None => split.train.clone(),
    };
    let (model, info) = dense_model(job, &train, device)?;
    let mut imp = None;
    let densities = match job.method {
        Method::Imp => {
            let cfg = job.imp_config();
            let data = TrainData { train: &train, test: split.test.as_ref(), norm: &info.normalization };
            let d = run_imp(&job.out, &model, &data, &cfg, &info, job.resume, ctl)?;
            imp = Some(cfg);
            d
        }
        Method::Omp | Method::Random => {
            let crit = if job.method == Method::Random { Criterion::Random(job.seed) } else { Criterion::Magnitude };
            one_shot_path(&job.out, &model, &info, job.steps, job.rate, job.scope, crit, Masks::dense(&model))?
        }
    };
    let record = PruneRecord {
        method: job.method,
        steps: job.steps,
        rate: job.rate,
        scope: job.scope,
        data: job.data.clone(),
        normalization: info.normalization.clone(),
        augment: job.data.default_augment(),
        attack: job.attack.clone(),
        seed: job.seed,
        source_model: job.model.clone(),
        imp,
        densities: densities.iter().map(|d| d.total).collect(),
        versions: Versions::default(),
        data_sha256: data_hash(&train),
    };
    write_json(&job.out.join("prune.json"), &record)?;
    Ok(record)
}

/// The dense model the path starts from: for IMP a fresh one (seeded), else the job's checkpoint.
fn dense_model(job: &PruneJob, train: &ImageSet, device: Device) -> Result<(Model, CheckpointInfo)> {
    let Some(path) = &job.model else {
        let script = match &job.model_init {
            Some(p) => {
                let (_, _, classes) =
                    crate::model::describe_script(p, &job.allow_ops, Some(train.channels), Some(train.height))?;
                if classes != train.num_classes() {
                    return Err(Error::bad_file(
                        p,
                        format!(
                            "the module outputs {classes} logits, but the data have {} classes",
                            train.num_classes()
                        ),
                    ));
                }
                Some(crate::model::ScriptSource::new(p, &job.allow_ops)?)
            }
            None => None,
        };
        let arch = match (&script, job.arch) {
            (Some(_), _) => Arch::Torchscript,
            (None, Some(a)) => a,
            (None, None) => {
                return Err(Error::invalid("pruning job", "IMP needs the architecture of the model it trains"))
            }
        };
        let norm = match &job.normalize {
            Some(n) => Normalization::parse(n, train.channels)?,
            None => job.data.default_normalization(train.channels).for_channels(train.channels)?,
        };
        let meta = ModelMeta {
            arch,
            in_channels: train.channels,
            height: train.height,
            width: train.width,
            num_classes: train.num_classes(),
            script,
        };
        tch::manual_seed(job.seed as i64);
        let info = CheckpointInfo {
            meta: meta.clone(),
            classes: train.classes.clone(),
            normalization: norm,
            seed: Some(job.seed),
            versions: Versions::default(),
            data: Some(serde_json::json!({"spec": job.data.to_string(), "train_sha256": data_hash(train)})),
            config: Some(serde_json::json!({"command": "prune", "attack": job.attack})),
            metrics: None,
            batches_tracked: 0,
            imported_from: None,
        };
        return Ok((Model::new(meta, device)?, info));
    };
    let ov = InputOverrides {
        arch: job.arch,
        image_size: job.image_size,
        channels: None,
        classes: None,
        normalize: job.normalize.clone(),
        allow_ops: job.allow_ops.clone(),
        ..Default::default()
    };
    let (m, info, _) = load_checkpoint(path, &ov, device)?;
    Ok((m, info))
}

/// With `force`: removes what an earlier pruning run left (tickets, rounds, scores), nothing else.
fn clear_run(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let p = entry.map_err(|e| Error::io(dir, e))?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let ours = name == "tickets"
            || name == "score"
            || name.starts_with("round-")
            || name == "rewind.safetensors"
            || name.starts_with("winning-ticket")
            || name.starts_with("dynamics.");
        if ours {
            let removed = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            removed.map_err(|e| Error::io(&p, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::control::Progress;

    fn split() -> Split {
        crate::train::job::tests::tiny_split(1)
    }

    /// Cancels its flag at the first note of a pruned round's training.
    struct StopInRound1(Arc<AtomicBool>);
    impl Progress for StopInRound1 {
        fn note(&self, line: &str) {
            if line.starts_with("IMP round 1") {
                self.0.store(true, Ordering::SeqCst);
            }
        }
    }

    #[test]
    fn imp_job_stops_when_cancelled_and_resumes_to_the_same_tickets() {
        let dir = tempfile::tempdir().unwrap();
        let job = |name: &str| PruneJob {
            method: Method::Imp,
            arch: Some(Arch::Cnn),
            data: DataSpec::Folder("unused".into()),
            normalize: Some("none".into()),
            out: dir.path().join(name),
            epochs: 3,
            rewind: Rewind::Epoch(1),
            steps: 3,
            batch_size: 16,
            ..PruneJob::default()
        };
        let whole = run_with_data(&job("whole"), &split(), Device::Cpu, &Control::quiet()).unwrap();
        assert_eq!(whole.densities.len(), 3);
        assert!(whole.imp.is_some());
        let stop = Arc::new(AtomicBool::new(false));
        let ctl = Control::new(stop.clone(), Arc::new(StopInRound1(stop)));
        let cut = job("cut");
        let e = run_with_data(&cut, &split(), Device::Cpu, &ctl).unwrap_err();
        assert!(matches!(e, Error::Interrupted(ref p) if *p == cut.out.join("round-001/train-state.json")), "{e}");
        assert!(!cut.out.join("prune.json").exists());
        let resumed =
            run_with_data(&PruneJob { resume: true, ..cut.clone() }, &split(), Device::Cpu, &Control::quiet()).unwrap();
        assert_eq!(resumed.densities, whole.densities);
        for step in 1..=3 {
            let f = format!("tickets/step-{step:03}.safetensors");
            assert!(
                std::fs::read(cut.out.join(&f)).unwrap() == std::fs::read(job("whole").out.join(&f)).unwrap(),
                "{f}"
            );
        }
    }

    #[test]
    fn jobs_that_cannot_run_are_refused_before_loading_anything() {
        let base = PruneJob { out: "o".into(), ..PruneJob::default() };
        assert!(base.validate().unwrap_err().to_string().contains("trained model"));
        assert!(PruneJob { method: Method::Imp, model: Some("m".into()), ..base.clone() }.validate().is_err());
        assert!(PruneJob { method: Method::Imp, ..base.clone() }.validate().is_err());
        assert!(PruneJob { method: Method::Imp, arch: Some(Arch::Cnn), ..base.clone() }.validate().is_ok());
        assert!(PruneJob { out: PathBuf::new(), model: Some("m".into()), ..base }.validate().is_err());
    }
}
