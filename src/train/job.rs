//! A whole training run as one library call: load the data, poison it (with an attack), build the
//! model, fit, measure, and write the run folder: `model.safetensors` + sidecar, `metrics.jsonl`,
//! `config.json`, `result.json`, the per-epoch training state (resumable) and, with an attack,
//! the attack's record (see [`crate::attack::poison_and_record`]).
use std::path::PathBuf;

use tch::Device;

use super::{fit, FitOptions, RunFiles, TrainConfig, TrainData};
use crate::attack::{attack_success, load_surrogate, poison_and_record, AttackConfig, AttackSuccess, Poisoned};
use crate::control::Control;
use crate::data::{data_hash, Augment, DataSpec, ImageSet, Normalization, Split};
use crate::error::{Error, Result};
use crate::model::{describe_script, save_checkpoint, Arch, CheckpointInfo, Model, ModelMeta, ScriptSource, Versions};
use crate::util::{prepare_out_dir, write_json};

/// Everything a training run needs (what `quarantine train`'s flags become). `Default` is the
/// command's defaults; set at least `out`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainJob {
    /// The data set (its training split is trained on, its test split measured).
    pub data: DataSpec,
    /// The architecture.
    pub arch: Arch,
    /// Epochs to train.
    pub epochs: usize,
    /// The run folder.
    pub out: PathBuf,
    /// Initial learning rate.
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// Images per batch.
    pub batch_size: usize,
    /// Epochs where the learning rate drops by `gamma` (`None`: at 50% and 75% of the run).
    pub milestones: Option<Vec<usize>>,
    /// Learning-rate factor at each milestone.
    pub gamma: f64,
    /// One seed for everything: weights, shuffling, augmentation.
    pub seed: u64,
    /// Input normalization as `cifar10`, `cifar100`, `mnist`, `none`, `MEAN,STD` or three means and
    /// three stds (`None`: the data set's constants).
    pub normalize: Option<String>,
    /// Random-crop padding, 0 = off (`None`: the data set's default).
    pub crop_pad: Option<usize>,
    /// Random horizontal flips: `Some(true)` on where the data allow them (not for digits),
    /// `Some(false)` off (`None`: the data set's default).
    pub flip: Option<bool>,
    /// Continue an interrupted run in `out`.
    pub resume: bool,
    /// Overwrite a finished run in `out`.
    pub force: bool,
    /// The backdoor to inject (`None`: a clean model).
    pub attack: Option<AttackConfig>,
    /// The surrogate checkpoint a clean-label attack perturbs against.
    pub surrogate: Option<PathBuf>,
    /// A TorchScript archive (`torch.jit.save`) whose network and initial weights are trained
    /// instead of `arch` (any architecture); the trained model is saved as TorchScript too.
    pub model_init: Option<PathBuf>,
    /// Ops the `model_init` archive may use on top of the allow-list.
    pub allow_ops: Vec<String>,
}

impl Default for TrainJob {
    /// The reference's recipe (docs/METHOD.md §3) for 15 epochs of the `cnn` on the built-in data.
    fn default() -> Self {
        let epochs = 15;
        let r = TrainConfig::reference(epochs, 0, Augment::NONE);
        TrainJob {
            data: DataSpec::Builtin,
            arch: Arch::Cnn,
            epochs,
            out: PathBuf::new(),
            lr: r.lr,
            momentum: r.momentum,
            weight_decay: r.weight_decay,
            batch_size: r.batch_size,
            milestones: None,
            gamma: r.gamma,
            seed: r.seed,
            normalize: None,
            crop_pad: None,
            flip: None,
            resume: false,
            force: false,
            attack: None,
            surrogate: None,
            model_init: None,
            allow_ops: vec![],
        }
    }
}

impl TrainJob {
    /// The augmentation: the data set's default with `crop_pad` and `flip` applied.
    pub fn augment(&self) -> Augment {
        let d = self.data.default_augment();
        let flip = match self.flip {
            Some(true) => self.data.flip_ok(),
            Some(false) => false,
            None => d.flip,
        };
        Augment { crop_pad: self.crop_pad.unwrap_or(d.crop_pad), flip }
    }

    /// The training schedule this job runs.
    pub fn train_config(&self) -> TrainConfig {
        let mut c = TrainConfig::reference(self.epochs, self.seed, self.augment());
        c.lr = self.lr;
        c.momentum = self.momentum;
        c.weight_decay = self.weight_decay;
        c.batch_size = self.batch_size;
        c.gamma = self.gamma;
        if let Some(m) = &self.milestones {
            c.milestones = m.clone();
        }
        c
    }

    /// The input normalization for images with `channels` channels.
    pub fn normalization(&self, channels: usize) -> Result<Normalization> {
        let norm = match &self.normalize {
            Some(n) => Normalization::parse(n, channels)?,
            None => self.data.default_normalization(channels).for_channels(channels)?,
        };
        norm.validate()?;
        Ok(norm)
    }

    /// Checks what can be checked before loading anything.
    pub fn validate(&self) -> Result<()> {
        if self.out.as_os_str().is_empty() {
            return Err(Error::invalid("training job", "no output folder"));
        }
        if self.arch == Arch::Torchscript && self.model_init.is_none() {
            return Err(Error::invalid(
                "training job",
                "a torchscript network comes from a file: give it with --model-init FILE (torch.jit.save)",
            ));
        }
        self.train_config().validate()
    }
}

/// What a finished run reports (`result.json`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainResult {
    /// Attack success rate on the stamped test set (with an attack and a test split).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attack_success_rate: Option<f64>,
    /// The same over test images whose true class is not the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attack_success_rate_nontarget: Option<f64>,
    /// Clean test accuracy after the last epoch (with a test split).
    pub clean_accuracy: Option<f64>,
    /// Epochs trained.
    pub epochs: usize,
    /// The saved model.
    pub model: PathBuf,
}

/// Runs `job` on `device`: loads its data, then as [`run_with_data`].
pub fn run(job: &TrainJob, device: Device, ctl: &Control) -> Result<TrainResult> {
    job.validate()?;
    let split = job.data.load()?;
    run_with_data(job, &split, device, ctl)
}

/// Runs `job` on data already loaded (`split` is what `job.data` loads). With `job.resume`,
/// continues the interrupted run in `job.out` bit-for-bit; stops with `Error::Interrupted` when
/// `ctl` is cancelled, leaving the last finished epoch's state.
pub fn run_with_data(job: &TrainJob, split: &Split, device: Device, ctl: &Control) -> Result<TrainResult> {
    job.validate()?;
    prepare_out_dir(&job.out, "model.safetensors", job.resume, job.force)?;
    let poisoned = poison(job, &split.train, device)?;
    let train = poisoned.as_ref().map(|p| &p.set).unwrap_or(&split.train);
    let norm = job.normalization(train.channels)?;
    let cfg = job.train_config();
    let run = RunFiles { dir: job.out.clone() };
    if !job.resume {
        for p in [run.metrics(), run.state(), run.state_json()] {
            let _ = std::fs::remove_file(p);
        }
    }
    let script = match &job.model_init {
        Some(path) => Some(script_source(path, &job.allow_ops, train)?),
        None => None,
    };
    let meta = ModelMeta {
        arch: if script.is_some() { Arch::Torchscript } else { job.arch },
        in_channels: train.channels,
        height: train.height,
        width: train.width,
        num_classes: train.num_classes(),
        script,
    };
    tch::manual_seed(job.seed as i64);
    let model = Model::new(meta.clone(), device)?;
    let (config, data_info) = write_config(job, split, poisoned.as_ref(), &cfg, &norm, device)?;
    let data = TrainData { train, test: split.test.as_ref(), norm: &norm };
    let history = fit(
        &model,
        &data,
        &cfg,
        FitOptions { run: Some(&run), resume: job.resume, ctl: ctl.clone(), ..Default::default() },
        |_, _| Ok(()),
    )?;
    let last = history.last();
    let asr = match (&poisoned, &split.test) {
        (Some(p), Some(t)) => Some(attack_success(&model, t, &p.attack, &norm)),
        _ => None,
    };
    let info = CheckpointInfo {
        meta,
        classes: train.classes.clone(),
        normalization: norm,
        seed: Some(job.seed),
        versions: Versions::default(),
        data: Some(data_info),
        config: Some(config),
        metrics: last.map(|m| serde_json::json!({"clean_accuracy": m.test_accuracy, "train_accuracy": m.train_accuracy, "epochs": m.epoch, "attack": asr})),
        batches_tracked: (cfg.epochs * train.n.div_ceil(cfg.batch_size)) as i64,
        imported_from: None,
    };
    let path = job.out.join("model.safetensors");
    save_checkpoint(&path, &model, &info)?;
    if model.is_script() {
        model.save_torchscript(&job.out.join("model.ts.pt"))?;
    }
    let result = result(path, last.and_then(|m| m.test_accuracy), cfg.epochs, asr);
    write_json(&job.out.join("result.json"), &result)?;
    Ok(result)
}

/// The TorchScript archive `path` as the network to train on `train`: it must take the set's images
/// and output one logit per class.
fn script_source(path: &std::path::Path, allow_ops: &[String], train: &ImageSet) -> Result<ScriptSource> {
    let (_, _, classes) = describe_script(path, allow_ops, Some(train.channels), Some(train.height))?;
    if train.height != train.width {
        return Err(Error::invalid("training job", "TorchScript models are checked on square images only"));
    }
    if classes != train.num_classes() {
        return Err(Error::bad_file(
            path,
            format!("the module outputs {classes} logits, but the data have {} classes", train.num_classes()),
        ));
    }
    ScriptSource::new(path, allow_ops)
}

fn result(model: PathBuf, clean_accuracy: Option<f64>, epochs: usize, asr: Option<AttackSuccess>) -> TrainResult {
    TrainResult {
        attack_success_rate: asr.map(|s| s.attack_success_rate),
        attack_success_rate_nontarget: asr.map(|s| s.attack_success_rate_nontarget),
        clean_accuracy,
        epochs,
        model,
    }
}

/// Poisons the training set into the run folder when the job has an attack.
fn poison(job: &TrainJob, train: &ImageSet, device: Device) -> Result<Option<Poisoned>> {
    let Some(cfg) = &job.attack else { return Ok(None) };
    let surrogate = load_surrogate(cfg, job.surrogate.as_deref(), device)?;
    Ok(Some(poison_and_record(cfg.clone(), train, surrogate.as_ref(), &job.out)?))
}

/// Writes `config.json`; returns its `config` and `data` parts, which the checkpoint's sidecar
/// carries too.
fn write_config(
    job: &TrainJob,
    split: &Split,
    poisoned: Option<&Poisoned>,
    cfg: &TrainConfig,
    norm: &Normalization,
    device: Device,
) -> Result<(serde_json::Value, serde_json::Value)> {
    let data_info = serde_json::json!({
        "spec": job.data.to_string(),
        "train": {"n": split.train.n, "sha256": data_hash(&split.train), "poisoned_sha256": poisoned.map(|p| data_hash(&p.set))},
        "test": split.test.as_ref().map(|t| serde_json::json!({"n": t.n, "sha256": data_hash(t)})),
    });
    let config = serde_json::json!({ "command": "train", "arch": job.arch, "model_init": job.model_init, "allow_ops": job.allow_ops, "train": cfg, "attack": job.attack, "normalization": norm, "device": format!("{device:?}"), "threads": tch::get_num_threads() });
    write_json(
        &job.out.join("config.json"),
        &serde_json::json!({"config": config, "data": data_info, "seed": job.seed, "versions": Versions::default()}),
    )?;
    Ok((config, data_info))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::attack::{AttackSpec, Patch, TriggerSpec};
    use crate::control::Progress;

    fn split() -> Split {
        tiny_split(0)
    }

    /// Two classes of 8x8 gray images (drawn with `seed`): 64 to train on, 32 to test.
    pub(crate) fn tiny_split(seed: u64) -> Split {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut set = |n: usize| {
            let labels: Vec<u32> = (0..n as u32).map(|i| i % 2).collect();
            let images = labels
                .iter()
                .flat_map(|&l| [l as u8 * 200; 64])
                .map(|v| v.saturating_add(rng.gen_range(0..40)))
                .collect();
            ImageSet { images, labels, n, height: 8, width: 8, channels: 1, classes: vec!["a".into(), "b".into()] }
        };
        Split { train: set(64), test: Some(set(32)) }
    }

    fn job(out: &std::path::Path) -> TrainJob {
        let patch = Patch { trigger: TriggerSpec::Solid([255; 3]), trigger_size: Some(2), ..Patch::default() };
        let attack = AttackConfig {
            spec: AttackSpec::Badnets(patch),
            target: Some(1),
            poison_ratio: 0.1,
            ..AttackConfig::default()
        };
        TrainJob {
            data: DataSpec::Folder("unused".into()),
            epochs: 2,
            batch_size: 16,
            normalize: Some("none".into()),
            out: out.to_path_buf(),
            attack: Some(attack),
            ..TrainJob::default()
        }
    }

    /// Records stages, images and notes; cancels `stop` once it sees the note of epoch 1.
    #[derive(Default)]
    struct Record {
        lines: Mutex<Vec<String>>,
        images: Mutex<u64>,
        stop: Option<Arc<AtomicBool>>,
    }
    impl Progress for Record {
        fn start(&self, stage: &str, total: u64) {
            self.lines.lock().unwrap().push(format!("{stage} ({total})"));
        }
        fn inc(&self, n: u64) {
            *self.images.lock().unwrap() += n;
        }
        fn message(&self, msg: &str) {
            self.lines.lock().unwrap().push(msg.to_string());
        }
        fn note(&self, line: &str) {
            if let (Some(stop), true) = (&self.stop, line.starts_with("epoch   1")) {
                stop.store(true, Ordering::SeqCst);
            }
            self.lines.lock().unwrap().push(line.to_string());
        }
    }

    #[test]
    fn a_job_writes_its_run_reports_progress_and_does_not_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let j = job(&dir.path().join("run"));
        let rec = Arc::new(Record::default());
        let ctl = Control::quiet().with_progress(rec.clone());
        let r = run_with_data(&j, &split(), Device::Cpu, &ctl).unwrap();
        let back: TrainResult = serde_json::from_slice(&std::fs::read(j.out.join("result.json")).unwrap()).unwrap();
        assert_eq!(r, back);
        assert_eq!((r.epochs, r.model.clone()), (2, j.out.join("model.safetensors")));
        assert!(r.clean_accuracy.is_some() && r.attack_success_rate.is_some());
        for f in
            ["model.safetensors", "config.json", "metrics.jsonl", "plan.json", "trigger.png", "poisoned-samples.png"]
        {
            assert!(j.out.join(f).exists(), "{f}");
        }
        let lines = rec.lines.lock().unwrap().clone();
        assert_eq!(lines[..2], ["img (128)", "epoch 1/2 lr 0.1000"]);
        assert!(lines[2].starts_with("epoch   1  loss"), "{lines:?}");
        assert_eq!(*rec.images.lock().unwrap(), 128);
        let again = run_with_data(&j, &split(), Device::Cpu, &Control::quiet()).unwrap_err();
        assert!(matches!(again, Error::WouldOverwrite { .. }), "{again}");
    }

    #[test]
    fn a_cancelled_job_names_its_state_and_resumes_bit_for_bit() {
        let dir = tempfile::tempdir().unwrap();
        let whole = job(&dir.path().join("whole"));
        run_with_data(&whole, &split(), Device::Cpu, &Control::quiet()).unwrap();
        let cut = job(&dir.path().join("cut"));
        let stop = Arc::new(AtomicBool::new(false));
        let ctl = Control::new(stop.clone(), Arc::new(Record { stop: Some(stop), ..Record::default() }));
        let e = run_with_data(&cut, &split(), Device::Cpu, &ctl).unwrap_err();
        assert!(matches!(e, Error::Interrupted(ref p) if *p == cut.out.join("train-state.json")), "{e}");
        assert!(!cut.out.join("model.safetensors").exists());
        run_with_data(&TrainJob { resume: true, ..cut.clone() }, &split(), Device::Cpu, &Control::quiet()).unwrap();
        assert!(
            std::fs::read(whole.out.join("model.safetensors")).unwrap()
                == std::fs::read(cut.out.join("model.safetensors")).unwrap()
        );
    }
}
