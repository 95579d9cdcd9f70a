//! Supervised training (docs/METHOD.md §3): SGD with momentum and weight decay, multi-step learning rate, seeded
//! shuffling and augmentation, per-epoch metrics and atomic per-epoch checkpoints with `--resume`.
//!
//! Reproducibility: the weights are initialised after `tch::manual_seed(seed)`; epoch `e` shuffles and
//! augments with a stream derived from `(seed, e)` alone, so a run resumed after epoch `e` replays the
//! same batches as an uninterrupted one. The checkpoint holds weights, BN statistics and momentum.
mod sgd;

pub use sgd::Sgd;

use std::collections::HashMap;
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use tch::{Kind, Tensor};

use crate::data::{Augment, Batches, ImageSet, Normalization};
use crate::error::{Error, Result};
use crate::eval::evaluate;
use crate::model::{from_raw, Model};
use crate::util::{write_atomic, write_json};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    /// Epochs at which the learning rate is multiplied by `gamma`.
    pub milestones: Vec<usize>,
    pub gamma: f64,
    pub seed: u64,
    pub augment: Augment,
}

impl TrainConfig {
    /// The reference's schedule (docs/METHOD.md §3): lr 0.1, momentum 0.9, wd 5e-4, batch 128, x0.1 at 50%/75%.
    pub fn reference(epochs: usize, seed: u64, augment: Augment) -> Self {
        TrainConfig { epochs, batch_size: 128, lr: 0.1, momentum: 0.9, weight_decay: 5e-4, milestones: vec![epochs / 2, epochs * 3 / 4], gamma: 0.1, seed, augment }
    }

    pub fn lr_at(&self, epoch: usize) -> f64 {
        let k = self.milestones.iter().filter(|&&m| m <= epoch).count();
        self.lr * self.gamma.powi(k as i32)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid("training config", m));
        if self.batch_size == 0 {
            return bad("--batch-size must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("--lr must be positive, got {}", self.lr));
        }
        if !(0.0..1.0).contains(&self.momentum) || !(self.weight_decay >= 0.0) {
            return bad(format!("--momentum must be in [0, 1) and --weight-decay >= 0, got {} and {}", self.momentum, self.weight_decay));
        }
        Ok(())
    }
}

/// Per-epoch seed: splitmix64 of (seed, epoch).
pub fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    let mut z = seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub test_accuracy: Option<f64>,
    pub test_loss: Option<f64>,
    pub seconds: f64,
    pub images_per_second: f64,
}

/// One epoch of training; returns mean loss and accuracy over the epoch's samples.
pub fn train_epoch(model: &Model, opt: &mut Sgd, batches: Batches, lr: f64, epoch: usize, bar: &ProgressBar) -> Result<(f64, f64)> {
    let (mut loss_sum, mut correct, mut seen) = (0.0, 0i64, 0usize);
    for (step, b) in batches.enumerate() {
        let logits = model.forward_t(&b.images, true);
        let loss = logits.cross_entropy_for_logits(&b.labels);
        opt.zero_grad();
        loss.backward();
        let l = loss.double_value(&[]);
        if !l.is_finite() {
            return Err(Error::Diverged { epoch, step, loss: l, remedy: "lower --lr (e.g. 10x), check --normalize, or resume from the last good checkpoint" });
        }
        opt.step(lr);
        let n = b.indices.len();
        loss_sum += l * n as f64;
        correct += logits.argmax(-1, false).eq_tensor(&b.labels).sum(Kind::Int64).int64_value(&[]);
        seen += n;
        bar.inc(n as u64);
        if crate::interrupt::requested() {
            // The caller names the last saved state (see `fit`).
            return Err(Error::Interrupted(PathBuf::new()));
        }
    }
    Ok((loss_sum / seen.max(1) as f64, correct as f64 / seen.max(1) as f64))
}

/// The data a run trains and evaluates on.
pub struct TrainData<'a> {
    pub train: &'a ImageSet,
    pub test: Option<&'a ImageSet>,
    pub norm: &'a Normalization,
}

/// Files of a training run folder.
pub struct RunFiles {
    pub dir: PathBuf,
}

impl RunFiles {
    pub fn state(&self) -> PathBuf {
        self.dir.join("train-state.safetensors")
    }
    pub fn state_json(&self) -> PathBuf {
        self.dir.join("train-state.json")
    }
    pub fn metrics(&self) -> PathBuf {
        self.dir.join("metrics.jsonl")
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct StateJson {
    next_epoch: usize,
    config: TrainConfig,
    history: Vec<EpochMetrics>,
}

/// How a `fit` call runs beyond its config.
#[derive(Default)]
pub struct FitOptions<'a> {
    /// Folder for metrics and the per-epoch checkpoint.
    pub run: Option<&'a RunFiles>,
    /// Continue from the checkpoint in `run`.
    pub resume: bool,
    /// Pruning masks (parameter name -> 0/1 tensor) kept through training.
    pub masks: HashMap<String, Tensor>,
    /// First epoch (IMP's rounds start at the rewind epoch, with the schedule advanced).
    pub start_epoch: usize,
}

/// Trains `model` over epochs `opts.start_epoch..cfg.epochs`. With a run folder, writes metrics and an
/// atomic checkpoint after every epoch, and with `resume` continues from the last one. `on_epoch` sees
/// each finished epoch (IMP saves its rewind point there).
pub fn fit(model: &Model, data: &TrainData, cfg: &TrainConfig, opts: FitOptions, mut on_epoch: impl FnMut(usize, &Model) -> Result<()>) -> Result<Vec<EpochMetrics>> {
    cfg.validate()?;
    for (set, what) in std::iter::once((data.train, "training images")).chain(data.test.map(|t| (t, "test images"))) {
        model.meta.check_images((set.channels, set.height, set.width), what)?;
    }
    let FitOptions { run, resume, masks, start_epoch } = opts;
    let mut opt = Sgd::new(model.named_parameters(), cfg.momentum, cfg.weight_decay);
    opt.set_masks(masks);
    let mut start = start_epoch;
    let mut history = vec![];
    if let (Some(run), true) = (run, resume) {
        if run.state().exists() && run.state_json().exists() {
            let (next, hist) = load_state(run, model, &mut opt, cfg)?;
            start = next;
            history = hist;
            eprintln!("resuming {} at epoch {}", run.dir.display(), start + 1);
        }
    }
    let total = (cfg.epochs.saturating_sub(start) * data.train.n) as u64;
    let bar = ProgressBar::new(total).with_style(ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} img {per_sec} eta {eta}").expect("valid template").progress_chars("=> "));
    for epoch in start..cfg.epochs {
        let lr = cfg.lr_at(epoch);
        bar.set_message(format!("epoch {}/{} lr {lr:.4}", epoch + 1, cfg.epochs));
        let t0 = std::time::Instant::now();
        let batches = Batches::new(data.train, cfg.batch_size, data.norm, cfg.augment, Some(epoch_seed(cfg.seed, epoch)), model.device());
        let (train_loss, train_accuracy) = train_epoch(model, &mut opt, batches, lr, epoch, &bar).map_err(|e| match (e, run) {
            // The epoch in progress is dropped; the last completed epoch's state is on disk.
            (Error::Interrupted(_), Some(run)) => Error::Interrupted(run.state_json()),
            (e, _) => e,
        })?;
        let seconds = t0.elapsed().as_secs_f64();
        let test = data.test.map(|t| evaluate(model, t, data.norm, 500));
        let m = EpochMetrics {
            epoch: epoch + 1,
            lr,
            train_loss,
            train_accuracy,
            test_accuracy: test.as_ref().map(|t| t.accuracy),
            test_loss: test.as_ref().map(|t| t.loss),
            seconds,
            images_per_second: data.train.n as f64 / seconds,
        };
        bar.suspend(|| eprintln!(
            "epoch {:>3}  loss {:.4}  train acc {:.4}{}  {:.1}s",
            m.epoch,
            m.train_loss,
            m.train_accuracy,
            m.test_accuracy.map(|a| format!("  test acc {a:.4}")).unwrap_or_default(),
            seconds
        ));
        history.push(m.clone());
        on_epoch(epoch + 1, model)?;
        if let Some(run) = run {
            save_state(run, model, &opt, cfg, epoch + 1, &history)?;
            // Rewritten whole from the saved history, so it always matches the checkpoint.
            let lines: String = history.iter().map(|h| serde_json::to_string(h).expect("metrics serialize") + "\n").collect();
            write_atomic(&run.metrics(), lines.as_bytes())?;
        }
    }
    bar.finish_and_clear();
    Ok(history)
}

fn save_state(run: &RunFiles, model: &Model, opt: &Sgd, cfg: &TrainConfig, next_epoch: usize, history: &[EpochMetrics]) -> Result<()> {
    let mut tensors: Vec<(String, torchfile::RawTensor)> = model.state_dict(0).into_iter().map(|(n, t)| (format!("model.{n}"), t)).collect();
    tensors.extend(opt.buffers().into_iter().map(|(n, b)| (format!("momentum.{n}"), crate::model::to_raw(&b))));
    // Two files cannot be renamed at once, so the JSON (config and history up to `next_epoch`) is
    // written first and the tensors, labelled with their epoch, last: after a kill between the two the
    // JSON is one epoch ahead and [`load_state`] keeps the tensors' epoch and that much history. (With
    // the JSON written last and the tensors unlabelled, a kill between the writes left epoch e+1's
    // tensors under an epoch-e record, and the resumed run trained that epoch twice: caught by the
    // IMP SIGKILL test.)
    write_json(&run.state_json(), &StateJson { next_epoch, config: cfg.clone(), history: history.to_vec() })?;
    let meta = std::collections::BTreeMap::from([(EPOCH_KEY.to_string(), next_epoch.to_string())]);
    torchfile::save_safetensors(&run.state(), &tensors, &meta)?;
    Ok(())
}

/// Metadata key of `train-state.safetensors`: the `next_epoch` its tensors belong to.
const EPOCH_KEY: &str = "quarantine.next_epoch";

fn load_state(run: &RunFiles, model: &Model, opt: &mut Sgd, cfg: &TrainConfig) -> Result<(usize, Vec<EpochMetrics>)> {
    let path = run.state_json();
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let st: StateJson = serde_json::from_slice(&bytes).map_err(|e| Error::bad_file(&path, format!("corrupt training state: {e}")))?;
    if st.config != *cfg {
        return Err(Error::bad_file(&path, "was written with a different training configuration; --resume needs the same options (or start a new --out)"));
    }
    let sd = torchfile::load(&run.state())?;
    let next_epoch = match sd.metadata.get(EPOCH_KEY) {
        Some(e) => e.parse::<usize>().map_err(|_| Error::bad_file(run.state(), format!("corrupt {EPOCH_KEY} `{e}`")))?,
        None => st.next_epoch,
    };
    if next_epoch > st.next_epoch {
        return Err(Error::bad_file(&path, format!("records epoch {} but {} holds the later epoch {next_epoch}", st.next_epoch, run.state().display())));
    }
    let mut history = st.history;
    history.retain(|h| h.epoch <= next_epoch);
    let mut model_sd = vec![];
    let mut bufs = HashMap::new();
    for (name, raw) in sd.tensors {
        if let Some(n) = name.strip_prefix("model.") {
            model_sd.push((n.to_string(), raw));
        } else if let Some(n) = name.strip_prefix("momentum.") {
            bufs.insert(n.to_string(), from_raw(&raw, &run.state(), &name)?);
        }
    }
    model.load_state_dict(&model_sd, &run.state())?;
    opt.load_buffers(bufs);
    Ok((next_epoch, history))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multistep_schedule() {
        let mut c = TrainConfig::reference(200, 0, Augment::NONE);
        c.milestones = vec![100, 150];
        assert_eq!(c.lr_at(0), 0.1);
        assert!((c.lr_at(100) - 0.01).abs() < 1e-12);
        assert!((c.lr_at(199) - 0.001).abs() < 1e-12);
    }

    #[test]
    fn epoch_seeds_differ_and_repeat() {
        assert_eq!(epoch_seed(1, 3), epoch_seed(1, 3));
        assert_ne!(epoch_seed(1, 3), epoch_seed(1, 4));
        assert_ne!(epoch_seed(1, 3), epoch_seed(2, 3));
    }
}
