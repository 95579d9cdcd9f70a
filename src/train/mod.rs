//! Supervised training (docs/METHOD.md §3): SGD with momentum and weight decay, multi-step learning
//! rate, seeded shuffling and augmentation, per-epoch metrics and atomic per-epoch checkpoints that a
//! resumed run continues from. [`run`] is the whole `train` command as a library call: a
//! [`TrainJob`] in, a [`TrainResult`] out.
//!
//! Reproducibility: the weights are initialised after `tch::manual_seed(seed)`; epoch `e` shuffles and
//! augments with a stream derived from `(seed, e)` alone, so a run resumed after epoch `e` replays the
//! same batches as an uninterrupted one. The checkpoint holds weights, BN statistics and momentum.
pub(crate) mod job;
mod sgd;
mod state;

pub use job::{run, run_with_data, TrainJob, TrainResult};
pub use sgd::Sgd;

use std::collections::HashMap;
use std::path::PathBuf;

use tch::{Kind, Tensor};

use crate::control::Control;
use crate::data::{Augment, Batches, ImageSet, Normalization};
use crate::error::{Error, Result};
use crate::eval::evaluate;
use crate::model::Model;
use crate::util::write_atomic;
use state::{load_state, save_state};

/// The schedule and recipe of one training run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    /// Epochs to train.
    pub epochs: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// Initial learning rate.
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// Epochs at which the learning rate is multiplied by `gamma`.
    pub milestones: Vec<usize>,
    /// Learning-rate factor at each milestone.
    pub gamma: f64,
    /// Seed of the shuffling and augmentation.
    pub seed: u64,
    /// Training augmentation.
    pub augment: Augment,
}

impl TrainConfig {
    /// The reference's schedule (docs/METHOD.md §3): lr 0.1, momentum 0.9, wd 5e-4, batch 128, x0.1 at 50%/75%.
    pub fn reference(epochs: usize, seed: u64, augment: Augment) -> Self {
        TrainConfig {
            epochs,
            batch_size: 128,
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 5e-4,
            milestones: vec![epochs / 2, epochs * 3 / 4],
            gamma: 0.1,
            seed,
            augment,
        }
    }

    /// The learning rate of epoch `epoch` (0-based).
    pub fn lr_at(&self, epoch: usize) -> f64 {
        let k = self.milestones.iter().filter(|&&m| m <= epoch).count();
        self.lr * self.gamma.powi(k as i32)
    }

    /// Checks batch size, learning rate, momentum and weight decay.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid("training config", m));
        if self.batch_size == 0 {
            return bad("the batch size must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("the learning rate must be positive, got {}", self.lr));
        }
        if !(0.0..1.0).contains(&self.momentum) || self.weight_decay.is_nan() || self.weight_decay < 0.0 {
            return bad(format!(
                "the momentum must be in [0, 1) and the weight decay >= 0, got {} and {}",
                self.momentum, self.weight_decay
            ));
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

/// One line of `metrics.jsonl`: a finished epoch.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochMetrics {
    /// The epoch, 1-based.
    pub epoch: usize,
    /// Its learning rate.
    pub lr: f64,
    /// Mean training loss over the epoch.
    pub train_loss: f64,
    /// Training accuracy over the epoch (augmented, in training mode).
    pub train_accuracy: f64,
    /// Clean test accuracy after the epoch, with a test set.
    pub test_accuracy: Option<f64>,
    /// Clean test loss after the epoch, with a test set.
    pub test_loss: Option<f64>,
    /// Wall time of the training part of the epoch.
    pub seconds: f64,
    /// Training throughput.
    pub images_per_second: f64,
}

/// One epoch of training; returns mean loss and accuracy over the epoch's samples. Reports each
/// batch's images to `ctl`'s progress, and stops with `Error::Interrupted` (naming no state: the
/// caller knows it) after the batch during which `ctl` was cancelled.
pub fn train_epoch(
    model: &Model,
    opt: &mut Sgd,
    batches: Batches,
    lr: f64,
    epoch: usize,
    ctl: &Control,
) -> Result<(f64, f64)> {
    let (mut loss_sum, mut correct, mut seen) = (0.0, 0i64, 0usize);
    for (step, b) in batches.enumerate() {
        let logits = model.forward_t(&b.images, true);
        let loss = logits.cross_entropy_for_logits(&b.labels);
        opt.zero_grad();
        loss.backward();
        let l = loss.double_value(&[]);
        if !l.is_finite() {
            return Err(Error::Diverged { epoch, step, loss: l, remedy: "lower the learning rate (e.g. 10x), check the input normalization, or resume from the last good checkpoint" });
        }
        opt.step(lr);
        let n = b.indices.len();
        loss_sum += l * n as f64;
        correct += logits.argmax(-1, false).eq_tensor(&b.labels).sum(Kind::Int64).int64_value(&[]);
        seen += n;
        ctl.progress().inc(n as u64);
        if ctl.cancelled() {
            // The caller names the last saved state (see `fit`).
            return Err(Error::Interrupted(PathBuf::new()));
        }
    }
    Ok((loss_sum / seen.max(1) as f64, correct as f64 / seen.max(1) as f64))
}

/// The data a run trains and evaluates on.
pub struct TrainData<'a> {
    /// The (possibly poisoned) training set.
    pub train: &'a ImageSet,
    /// The clean test set evaluated after each epoch.
    pub test: Option<&'a ImageSet>,
    /// The model's input normalization.
    pub norm: &'a Normalization,
}

/// Files of a training run folder.
pub struct RunFiles {
    /// The run folder.
    pub dir: PathBuf,
}

impl RunFiles {
    /// The per-epoch tensors (weights, BN statistics, momentum).
    pub fn state(&self) -> PathBuf {
        self.dir.join("train-state.safetensors")
    }
    /// The per-epoch record (config, next epoch, history).
    pub fn state_json(&self) -> PathBuf {
        self.dir.join("train-state.json")
    }
    /// One JSON line of [`EpochMetrics`] per finished epoch.
    pub fn metrics(&self) -> PathBuf {
        self.dir.join("metrics.jsonl")
    }
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
    /// Cancellation (checked after every batch) and progress (per epoch, in images).
    pub ctl: Control,
}

/// Trains `model` over epochs `opts.start_epoch..cfg.epochs`. With a run folder, writes metrics and an
/// atomic checkpoint after every epoch, and with `resume` continues from the last one. `on_epoch` sees
/// each finished epoch (IMP saves its rewind point there). Stops with `Error::Interrupted` naming the
/// last saved state when `opts.ctl` is cancelled.
pub fn fit(
    model: &Model,
    data: &TrainData,
    cfg: &TrainConfig,
    opts: FitOptions,
    mut on_epoch: impl FnMut(usize, &Model) -> Result<()>,
) -> Result<Vec<EpochMetrics>> {
    cfg.validate()?;
    for (set, what) in std::iter::once((data.train, "training images")).chain(data.test.map(|t| (t, "test images"))) {
        model.meta.check_images((set.channels, set.height, set.width), what)?;
    }
    let FitOptions { run, resume, masks, start_epoch, ctl } = opts;
    let mut opt = Sgd::new(model.named_parameters(), cfg.momentum, cfg.weight_decay);
    opt.set_masks(masks);
    let mut start = start_epoch;
    let mut history = vec![];
    if let (Some(run), true) = (run, resume) {
        if run.state().exists() && run.state_json().exists() {
            let (next, hist) = load_state(run, model, &mut opt, cfg)?;
            start = next;
            history = hist;
            ctl.progress().note(&format!("resuming {} at epoch {}", run.dir.display(), start + 1));
        }
    }
    // One bar over every epoch left, in images (the stage is named by its unit).
    ctl.progress().start("img", (cfg.epochs.saturating_sub(start) * data.train.n) as u64);
    for epoch in start..cfg.epochs {
        let m = fit_epoch(model, &mut opt, data, cfg, epoch, &ctl).map_err(|e| match (e, run) {
            // The epoch in progress is dropped; the last completed epoch's state is on disk.
            (Error::Interrupted(_), Some(run)) => Error::Interrupted(run.state_json()),
            (e, _) => e,
        })?;
        history.push(m);
        on_epoch(epoch + 1, model)?;
        if let Some(run) = run {
            save_state(run, model, &opt, cfg, epoch + 1, &history)?;
            // Rewritten whole from the saved history, so it always matches the checkpoint.
            let lines: String =
                history.iter().map(|h| serde_json::to_string(h).expect("metrics serialize") + "\n").collect();
            write_atomic(&run.metrics(), lines.as_bytes())?;
        }
    }
    ctl.progress().finish();
    Ok(history)
}

/// Epoch `epoch` of [`fit`]: trains, evaluates on the test set, reports the metrics line.
fn fit_epoch(
    model: &Model,
    opt: &mut Sgd,
    data: &TrainData,
    cfg: &TrainConfig,
    epoch: usize,
    ctl: &Control,
) -> Result<EpochMetrics> {
    let lr = cfg.lr_at(epoch);
    let progress = ctl.progress();
    progress.message(&format!("epoch {}/{} lr {lr:.4}", epoch + 1, cfg.epochs));
    let t0 = std::time::Instant::now();
    let batches = Batches::new(
        data.train,
        cfg.batch_size,
        data.norm,
        cfg.augment,
        Some(epoch_seed(cfg.seed, epoch)),
        model.device(),
    );
    let (train_loss, train_accuracy) = train_epoch(model, opt, batches, lr, epoch, ctl)?;
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
    let test = m.test_accuracy.map(|a| format!("  test acc {a:.4}")).unwrap_or_default();
    progress.note(&format!(
        "epoch {:>3}  loss {:.4}  train acc {:.4}{test}  {seconds:.1}s",
        m.epoch, m.train_loss, m.train_accuracy
    ));
    Ok(m)
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
