//! Trigger reverse engineering (docs/METHOD.md §6; Neural Cleanse with TABOR's regularisers, as the reference's
//! `remask_tabor`), for every candidate target label at once.
//!
//! For a target `t` a trigger is a mask `m = (tanh a_m + 1)/2` (`H x W`, shared by the channels) and a
//! pattern `p = (tanh a_p + 1)/2` (`C x H x W`), stamped as `x' = (1−m)⊙x + m⊙p`, and it minimises
//!
//! ```text
//! class(f(x'), t) + c1(‖m‖₁ + ‖m‖₂²) + c2(‖(1−m)⊙p‖₁ + ‖(1−m)⊙p‖₂²) + c3·TV²(m)
//!     + c4·Σ_ch TV²(((1−m)⊙p)_ch) + c5·class(f(m⊙p), t)
//! ```
//!
//! Decisions, each matching the reference unless said otherwise:
//! - `class` is cross-entropy averaged over the batch (`nn.CrossEntropyLoss`), or with
//!   [`LossKind::Cw`] the C&W margin `max(max_{j≠t} z_j − z_t, −κ)`, κ = 0, averaged over the batch
//!   (the paper's formula); CW then replaces BOTH class terms.
//! - The norms and TV² terms are SUMS over the one mask / pattern of the label (`norm(p=1)`,
//!   `norm(p=2)**2`), not means and not per sample: they do not grow with the batch.
//! - `c = [1e-3, 1e-5, 2e-3, 1e-4, 1]`; Adam (lr 0.1, betas (0.5, 0.9), eps 1e-8) over `a_m, a_p`
//!   only; the model stays in eval mode (BN running statistics) and gets no gradients (backward is
//!   asked for the trigger variables alone).
//! - Epochs of mini-batches over the seed set (default: one batch of all seeds; the reference runs 100
//!   epochs of one 100-image batch). After each epoch the attack accuracy over the epoch's batches
//!   (computed in the same forward passes as the loss, i.e. before each update) decides up (≥ 0.99) or
//!   down; 5 in a row scales all five costs by 1.5 or 1/1.5^1.5 and restarts the count.
//! - The kept trigger is the one after the LAST epoch whose accuracy reached 0.99. A label that never
//!   reaches it keeps its last epoch's trigger with `reached = false` and is never reported as a
//!   trigger (the reference would keep its first epoch's trigger and still rank it).
//! - Initialisation: `a_m, a_p ~ N(0, 1)` as the reference, drawn from ChaCha8 keyed by
//!   `(--seed, label)`, not from libtorch's global generator: a label's start does not depend on
//!   which other labels run, nor on the device.
//! - `Space::Pixel` (default): seeds and pattern are pixel images in \[0,1\]; stamping happens there and
//!   the result is normalized for the model, so the pattern can take any pixel value.
//!   `Space::Normalized` (the reference): seeds are normalized images and `p ∈ [0,1]` is stamped in
//!   normalized units (for CIFAR-10 that is pixel values ≈ 0.49..0.74 only).
//! - Seeds: see [`Seeds`] (noise in normalized space, mapped to pixels unclamped). Every label sees
//!   the same seeds at the same step, so running labels together or one by one
//!   ([`ReverseConfig::label_chunk`]) gives the same triggers up to float rounding.
//!
//! Batching: L labels are stacked into `[L,1,H,W]` masks and `[L,C,H,W]` patterns; one forward pass
//! over the `[L·B + L, C, H, W]` batch (every label's trigger on every seed, then the L cropped
//! triggers of the last term) serves all labels; the per-label losses are summed, and since the labels'
//! parameters are disjoint each gets exactly its own gradient; Adam is elementwise, so one Adam over
//! the stacks is L independent Adams; costs and up/down counters are per label.
//! Cost: a batched step does the same arithmetic as L single-label steps. On an idle 2-core CPU a
//! 100-image batch already keeps both cores busy, so batching gains little there; it pays when the
//! cores are shared (10x fewer parallel regions to synchronise; see BENCHMARKS.md) and on GPUs,
//! which one label's batch cannot fill. Large
//! batches make glibc page-fault their activations in on every step; [`retain_freed_memory`]
//! avoids that (the CLI calls it).
//!
//! Verdict: detected target = argmin of the soft-mask l1 over labels that reached success; anomaly
//! index (Neural Cleanse) `(median − l1) / (1.4826·MAD)` with median and MAD over all labels' l1
//! (`--anomaly-scale linear`, faithful) or over ln(l1) (`log`, the default: see [`AnomalyScale`]);
//! flagged above the threshold (default 2).
mod eval;
mod job;
mod optim;
mod report;
mod seeds;
mod synth;
#[cfg(test)]
mod tests;
pub mod warp;

use crate::data::normals;
pub use eval::{
    anomaly_index, anomaly_of, binarize_top_k, iou, median, median_mad, recovered_asr, AnomalyScale, TrueTrigger,
    MAD_CONSISTENCY,
};
pub use job::{examine, prepare_out, run, Examination, ReverseJob, ReverseRun, TestImages};
pub use optim::{class_loss, l1_l2sq, squash, stamp, tv2, CostSchedule, CW_KAPPA};
pub use report::{verdict, LabelL1, LabelSummary, ReverseReport, Verdict};
pub use seeds::{load_seeds, SeedSpec, Seeds};
pub use synth::{synthesize, synthesize_with, SynthConfig, SynthSummary, SYNTH_STEPS};
pub use warp::{invert_warps, warp_flags, WarpConfig, WarpLabel, WarpReport, WARP_FLAG_ASR};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

use crate::control::{Control, Progress};
use crate::data::Normalization;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::train::epoch_seed;
use optim::{losses, Adam, InputSpace};

/// Where the stamp is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Space {
    /// Stamp on \[0,1\] pixel images, then normalize (pattern = a valid image).
    Pixel,
    /// Stamp on normalized images with p in \[0,1\] (the reference).
    Normalized,
}
crate::choices!(Space {
    Pixel => "pixel": "stamp on [0,1] pixel images, then normalize",
    Normalized => "normalized": "stamp on normalized images (the reference)",
});

/// The classification term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossKind {
    /// Cross-entropy (the reference code).
    Ce,
    /// Carlini & Wagner margin with κ = 0 (the paper's formula).
    Cw,
}
crate::choices!(LossKind {
    Ce => "ce": "cross-entropy (the reference code)",
    Cw => "cw": "Carlini & Wagner margin (the paper's formula)",
});

/// Initial costs `[c1..c5]` (docs/METHOD.md §6).
pub const INIT_COST: [f64; 5] = [1e-3, 1e-5, 2e-3, 1e-4, 1.0];

/// Stream keys (xored into the seed) of the independent random streams.
const INIT_KEY: u64 = 0x5245_5645_5253_4530;
const SEED_KEY: u64 = 0x5345_4544_5354_524D;
const EVAL_KEY: u64 = 0x4556_414C_5345_4544;

/// Settings of trigger reverse engineering; the default is the reference's (every label runs all
/// epochs; [`EarlyStop`] is an option).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReverseConfig {
    /// Passes over the seed set.
    pub epochs: usize,
    /// Seeds per step; `None` = all seeds in one batch (the reference with 100 seeds).
    pub batch_size: Option<usize>,
    /// Each epoch is ONE step on this many seeds drawn at random (fresh noise, or a fresh shuffle
    /// of the seed images), and its attack accuracy is measured on them; `None` = every seed each
    /// epoch (the reference). Excludes `batch_size`.
    #[serde(default)]
    pub sample: Option<usize>,
    /// Adam learning rate.
    pub lr: f64,
    /// Adam (β1, β2).
    pub betas: (f64, f64),
    /// Adam ε.
    pub eps: f64,
    /// Starting costs `[c1..c5]` of the loss terms (see [`INIT_COST`]).
    pub init_cost: [f64; 5],
    /// Epochs in a row before the costs change.
    pub patience: usize,
    /// Factor the costs are multiplied by after `patience` successful epochs in a row.
    pub cost_up: f64,
    /// Divisor of the costs after `patience` unsuccessful epochs in a row.
    pub cost_down: f64,
    /// Epoch attack accuracy that counts as success.
    pub success_threshold: f64,
    /// Classification term: cross-entropy or C&W margin.
    pub loss: LossKind,
    /// Where the trigger is stamped: pixel or normalized space.
    pub space: Space,
    /// Seed of the trigger initialisation, seed batching and noise draws.
    pub seed: u64,
    /// Labels optimised together in one batched computation; `None` = as many as keep
    /// `labels x batch` within the architecture's memory budget ([`Arch::reverse_images_per_pass`]:
    /// 1,024 images for the cnn, 256 for ResNet-20s at 32x32, scaled by input area); `Some(1)` = one
    /// label at a time.
    ///
    /// [`Arch::reverse_images_per_pass`]: crate::model::Arch::reverse_images_per_pass
    pub label_chunk: Option<usize>,
    /// Stop labels before `epochs` ([`EarlyStop`]); `None` (the default) runs every label for all
    /// epochs, as the reference.
    #[serde(default)]
    pub early_stop: Option<EarlyStop>,
}

/// When a label stops before the last epoch (our addition; Neural Cleanse's own early stop, plus a
/// cut for labels that cannot become the smallest mask). A stopped label keeps its last successful
/// epoch's trigger, as at the end of a full run, and leaves the batch: the labels still running
/// are the only ones stamped and back-propagated.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EarlyStop {
    /// Converged: the label has reached the success threshold, and its kept mask's l1 has not
    /// improved by more than `min_delta` (relative) on its best for `patience` epochs in a row.
    pub patience: usize,
    /// Relative l1 improvement that counts as progress (Neural Cleanse: 1%).
    pub min_delta: f64,
    /// Far: a label that has reached success stops when its kept l1 exceeds `far` times the
    /// smallest kept l1 any label had reached by the same epoch (`None`: never). Such a label is unlikely to become the
    /// argmin; its l1, frozen larger than a full run would leave it, still enters the median of
    /// the anomaly index, which raises the index of a clear outlier (README, "Faster detect").
    pub far: Option<f64>,
}

impl Default for EarlyStop {
    /// Patience 10 epochs at 1%, far cut at 2.5x: chosen on the full-run histories of the
    /// README's models, where shorter patience or a closer cut changed verdicts (README, "Faster
    /// detect").
    fn default() -> Self {
        EarlyStop { patience: 10, min_delta: 0.01, far: Some(2.5) }
    }
}

impl Default for ReverseConfig {
    fn default() -> Self {
        ReverseConfig {
            epochs: 100,
            batch_size: None,
            sample: None,
            lr: 0.1,
            betas: (0.5, 0.9),
            eps: 1e-8,
            init_cost: INIT_COST,
            patience: 5,
            cost_up: 1.5,
            cost_down: 1.5f64.powf(1.5),
            success_threshold: 0.99,
            loss: LossKind::Ce,
            space: Space::Pixel,
            seed: 0,
            label_chunk: None,
            early_stop: None,
        }
    }
}

impl ReverseConfig {
    /// Rejects zero epochs, batch or chunk sizes, non-positive lr, betas outside [0, 1) and bad costs.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid("reverse-engineering config", m));
        if self.epochs == 0 {
            return bad("epochs must be at least 1".into());
        }
        if self.batch_size == Some(0) || self.label_chunk == Some(0) || self.sample == Some(0) {
            return bad("the batch size, the sample and the label chunk must be at least 1".into());
        }
        if self.batch_size.is_some() && self.sample.is_some() {
            return bad("give a batch size (several steps per epoch) or a sample (one step per epoch), not both".into());
        }
        if self.patience == 0 {
            return bad("the cost patience must be at least 1 epoch".into());
        }
        if !(self.lr > 0.0
            && self.lr.is_finite()
            && (0.0..1.0).contains(&self.betas.0)
            && (0.0..1.0).contains(&self.betas.1))
        {
            return bad(format!("need lr > 0 and betas in [0, 1), got {} and {:?}", self.lr, self.betas));
        }
        if self.init_cost.iter().any(|c| !(*c >= 0.0 && c.is_finite())) {
            return bad(format!("costs must be finite and non-negative: {:?}", self.init_cost));
        }
        if let Some(e) = &self.early_stop {
            if e.patience == 0 || !(0.0..1.0).contains(&e.min_delta) || e.far.is_some_and(|f| f.is_nan() || f <= 1.0) {
                return bad(format!("early stop needs patience >= 1, 0 <= min_delta < 1 and far > 1, got {e:?}"));
            }
        }
        Ok(())
    }

    fn chunk(&self, labels: usize, batch: usize, images_per_pass: usize) -> usize {
        self.label_chunk.unwrap_or((images_per_pass / batch.max(1)).max(1)).clamp(1, labels.max(1))
    }
}

/// One epoch of one label.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochStat {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean total loss over the epoch's seeds.
    pub loss: f64,
    /// Fraction of the epoch's stamped seeds classified as the label.
    pub attack_success: f64,
    /// Soft-mask l1 after the epoch.
    pub l1: f64,
    /// c1 after the epoch's schedule update (the others keep their ratios to it).
    pub c1: f64,
}

/// The recovered trigger of one candidate label.
#[derive(Debug, Clone)]
pub struct LabelResult {
    /// The candidate target label.
    pub label: u32,
    /// (C, H, W).
    pub shape: (usize, usize, usize),
    /// Soft mask, H·W, in \[0,1\].
    pub mask: Vec<f32>,
    /// Pattern, C·H·W (CHW), in \[0,1\] in the stamping space.
    pub pattern: Vec<f32>,
    /// The pattern as a pixel image in \[0,1\] (for pictures): the pattern itself in pixel space,
    /// `clamp(p·std + mean)` in normalized space.
    pub pattern_image: Vec<f32>,
    /// ‖m‖₁ of the soft mask.
    pub l1: f64,
    /// Whether some epoch reached the success threshold; if not, this is NOT a trigger.
    pub reached: bool,
    /// 1-based epoch the kept trigger comes from.
    pub epoch: usize,
    /// Epochs the label ran before it stopped (the configured epochs without early stop).
    pub epochs_run: usize,
    /// Attack accuracy of the kept epoch (over its batches).
    pub epoch_attack_success: f64,
    /// Attack success of the kept trigger on a fresh pass over the seeds (fresh noise draw, or the
    /// seed images without augmentation).
    pub attack_success: f64,
    /// Costs `[c1..c5]` after the last epoch.
    pub final_cost: [f64; 5],
    /// Per-epoch statistics, in order.
    pub history: Vec<EpochStat>,
}

/// Initial `(a_m [H·W], a_p [C·H·W])` of a label: N(0,1) from ChaCha8 keyed by (seed, label).
pub fn initial_params(seed: u64, label: u32, (c, h, w): (usize, usize, usize)) -> (Vec<f32>, Vec<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(epoch_seed(seed ^ INIT_KEY, label as usize));
    let am = normals(&mut rng, h * w);
    let ap = normals(&mut rng, c * h * w);
    (am, ap)
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    Vec::try_from(t.detach().to_device(tch::Device::Cpu).to_kind(Kind::Float).flatten(0, -1)).expect("float tensor")
}

/// Reverse-engineers a trigger for every label of `labels` (all of them when empty) on `model`
/// (inputs normalized with `norm`), from `seeds`. Labels run together in chunks of
/// [`ReverseConfig::label_chunk`]; results come back in the order of `labels`. Silent; see
/// [`reverse_engineer_with`] for progress.
pub fn reverse_engineer(
    model: &Model,
    norm: &Normalization,
    seeds: &Seeds,
    cfg: &ReverseConfig,
    labels: &[u32],
) -> Result<Vec<LabelResult>> {
    reverse_engineer_with(model, norm, seeds, cfg, labels, &Control::quiet())
}

/// [`reverse_engineer`], reporting the epochs done to `ctl`'s progress.
pub fn reverse_engineer_with(
    model: &Model,
    norm: &Normalization,
    seeds: &Seeds,
    cfg: &ReverseConfig,
    labels: &[u32],
    ctl: &Control,
) -> Result<Vec<LabelResult>> {
    cfg.validate()?;
    let k = model.meta.num_classes;
    let labels: Vec<u32> = if labels.is_empty() { (0..k as u32).collect() } else { labels.to_vec() };
    if let Some(&bad) = labels.iter().find(|&&l| l as usize >= k) {
        return Err(Error::invalid("labels", format!("label {bad} does not exist (the model has {k} classes)")));
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(&dup) = labels.iter().find(|&&l| !seen.insert(l)) {
        return Err(Error::invalid("labels", format!("label {dup} is listed twice")));
    }
    if seeds.is_empty() {
        return Err(Error::invalid("seeds", "no seed images"));
    }
    let shape = (model.meta.in_channels, model.meta.height, model.meta.width);
    if let Seeds::Images { images, .. } = seeds {
        model.meta.check_images((images.channels, images.height, images.width), "seed images")?;
    }
    let norm = norm.clone().for_channels(shape.0)?;
    let batch = cfg.sample.or(cfg.batch_size).unwrap_or(seeds.len()).min(seeds.len());
    let chunk = cfg.chunk(labels.len(), batch, model.meta.arch.reverse_images_per_pass(shape.1, shape.2));
    let chunks: Vec<&[u32]> = labels.chunks(chunk).collect();
    let progress = ctl.progress();
    progress.start("epochs", (chunks.len() * cfg.epochs) as u64);
    let mut out = vec![];
    // Per epoch, the smallest kept l1 any label of the finished chunks had reached by then (the
    // early stop's `far` cut compares a label with the others at the same epoch).
    let mut floors = vec![f64::INFINITY; cfg.epochs];
    for (i, ls) in chunks.iter().enumerate() {
        progress.message(&if chunks.len() > 1 {
            format!("labels {ls:?} ({}/{})", i + 1, chunks.len())
        } else {
            format!("{} labels", ls.len())
        });
        out.extend(optimise_chunk(model, &norm, seeds, cfg, ls, batch, &mut floors, progress)?);
    }
    progress.finish();
    Ok(out)
}

/// The trigger variables of a chunk of labels, with their optimiser and schedules.
pub(crate) struct TriggerVars {
    /// Mask variables before squashing, [L, 1, H, W].
    pub a_m: Tensor,
    /// Pattern variables before squashing, [L, C, H, W].
    pub a_p: Tensor,
    adam: Adam,
    /// One cost schedule per label.
    pub schedules: Vec<CostSchedule>,
    /// The labels as targets, [L] int64.
    pub targets: Tensor,
}

impl TriggerVars {
    /// `a_m [L,1,H,W]`, `a_p [L,C,H,W]` (CPU or device tensors; copied).
    pub fn new(a_m: &Tensor, a_p: &Tensor, labels: &[u32], cfg: &ReverseConfig, device: tch::Device) -> Self {
        let a_m = a_m.to_device(device).to_kind(Kind::Float).detach().copy().set_requires_grad(true);
        let a_p = a_p.to_device(device).to_kind(Kind::Float).detach().copy().set_requires_grad(true);
        let adam = Adam::new(&[&a_m, &a_p], cfg.lr, cfg.betas, cfg.eps);
        let schedules =
            labels.iter().map(|_| CostSchedule::new(cfg.init_cost, cfg.patience, cfg.cost_up, cfg.cost_down)).collect();
        let t: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
        TriggerVars { a_m, a_p, adam, schedules, targets: Tensor::from_slice(&t).to_device(device) }
    }

    /// Keeps rows `keep` (ascending) of the variables, their Adam moments, schedules and targets:
    /// the labels that stopped leave the batch.
    pub fn retain(&mut self, keep: &[usize]) {
        let idx = Tensor::from_slice(&keep.iter().map(|&r| r as i64).collect::<Vec<_>>()).to_device(self.a_m.device());
        let pick = |t: &Tensor| t.index_select(0, &idx).detach().set_requires_grad(true);
        self.a_m = pick(&self.a_m);
        self.a_p = pick(&self.a_p);
        self.adam.retain_rows(&idx);
        self.schedules = keep.iter().map(|&r| self.schedules[r].clone()).collect();
        self.targets = self.targets.index_select(0, &idx);
    }

    /// The current costs of all labels as an [L, 5] float tensor on the variables' device.
    pub fn cost_tensor(&self) -> Tensor {
        let c: Vec<f32> = self.schedules.iter().flat_map(|s| s.cost.iter().map(|&v| v as f32)).collect();
        Tensor::from_slice(&c).view([self.schedules.len() as i64, 5]).to_device(self.a_m.device())
    }

    /// One Adam step on seed batch `x`; returns per-label losses and correct counts (before the step).
    pub fn step(&mut self, model: &Model, space: &InputSpace, x: &Tensor, kind: LossKind) -> (Vec<f64>, Vec<i64>) {
        let cost = self.cost_tensor();
        let l = losses(model, space, &self.a_m, &self.a_p, x, &self.targets, &cost, kind);
        let grads = Tensor::run_backward(&[l.total.sum(Kind::Float)], &[&self.a_m, &self.a_p], false, false);
        self.adam.step(&mut [&mut self.a_m, &mut self.a_p], &grads);
        let loss: Vec<f64> =
            Vec::try_from(l.total.detach().to_device(tch::Device::Cpu).to_kind(Kind::Double)).expect("losses");
        let correct: Vec<i64> = Vec::try_from(l.correct.to_device(tch::Device::Cpu)).expect("counts");
        (loss, correct)
    }
}

#[allow(clippy::too_many_arguments)]
fn optimise_chunk(
    model: &Model,
    norm: &Normalization,
    seeds: &Seeds,
    cfg: &ReverseConfig,
    labels: &[u32],
    batch: usize,
    floors: &mut [f64],
    progress: &dyn Progress,
) -> Result<Vec<LabelResult>> {
    let device = model.device();
    let shape @ (c, h, w) = (model.meta.in_channels, model.meta.height, model.meta.width);
    let l = labels.len();
    let (mut am, mut ap) = (vec![], vec![]);
    for &label in labels {
        let (m, p) = initial_params(cfg.seed, label, shape);
        am.extend(m);
        ap.extend(p);
    }
    let a_m = Tensor::from_slice(&am).view([l as i64, 1, h as i64, w as i64]);
    let a_p = Tensor::from_slice(&ap).view([l as i64, c as i64, h as i64, w as i64]);
    let mut vars = TriggerVars::new(&a_m, &a_p, labels, cfg, device);
    let space = InputSpace::new(cfg.space, norm, c, device);
    let mut track = Tracker::new(l);
    // Row r of `vars` is label `live[r]` of the chunk.
    let mut live: Vec<usize> = (0..l).collect();
    // The smallest kept l1 of this chunk's labels so far.
    let mut floor = f64::INFINITY;
    #[allow(clippy::needless_range_loop)] // `epoch` also feeds run_epoch; `floors` is read only with early stop
    for epoch in 0..cfg.epochs {
        run_epoch(model, &space, seeds, cfg, norm, batch, epoch, &live, &mut vars, &mut track)?;
        progress.inc(1);
        let Some(stop) = &cfg.early_stop else { continue };
        floor = live.iter().filter_map(|&i| track.kept_l1(i)).fold(floor, f64::min);
        let cut = floor.min(floors[epoch]);
        let keep: Vec<usize> = (0..live.len()).filter(|&r| !track.converged(live[r], stop, cut)).collect();
        if keep.len() == live.len() {
            continue;
        }
        for r in (0..live.len()).filter(|r| !keep.contains(r)) {
            track.finish(live[r], &vars, r, epoch + 1);
        }
        if keep.is_empty() {
            progress.inc((cfg.epochs - epoch - 1) as u64);
            live.clear();
            break;
        }
        vars.retain(&keep);
        live = keep.iter().map(|&r| live[r]).collect();
    }
    for (r, &i) in live.iter().enumerate() {
        track.finish(i, &vars, r, cfg.epochs);
    }
    for h in &track.history {
        let mut low = f64::INFINITY;
        for (e, f) in floors.iter_mut().enumerate() {
            if let Some(stat) = h.get(e).filter(|s| s.attack_success >= cfg.success_threshold) {
                low = low.min(stat.l1);
            }
            *f = f.min(low);
        }
    }
    let finals: Vec<Final> = track.finals.iter_mut().map(|f| f.take().expect("every label finished")).collect();
    let m = Tensor::stack(&finals.iter().map(|f| f.mask.shallow_clone()).collect::<Vec<_>>(), 0);
    let p = Tensor::stack(&finals.iter().map(|f| f.pattern.shallow_clone()).collect::<Vec<_>>(), 0);
    let targets = Tensor::from_slice(&labels.iter().map(|&l| l as i64).collect::<Vec<_>>()).to_device(device);
    let success = seed_success(model, &space, seeds, cfg, norm, shape, batch, &targets, &m, &p);
    let mut out = vec![];
    for (i, f) in finals.into_iter().enumerate() {
        let mask = to_vec(&f.mask);
        let pattern = to_vec(&f.pattern);
        let pattern_image = pattern_image(&pattern, cfg.space, norm, h * w);
        out.push(LabelResult {
            label: labels[i],
            shape,
            l1: mask.iter().map(|&v| v as f64).sum(),
            mask,
            pattern,
            pattern_image,
            reached: f.reached,
            epoch: f.epoch,
            epochs_run: f.epochs_run,
            epoch_attack_success: f.accuracy,
            attack_success: success[i],
            final_cost: f.cost,
            history: std::mem::take(&mut track.history[i]),
        });
    }
    Ok(out)
}

/// The pattern as a pixel image in \[0,1\]: itself in pixel space, `clamp(p·std + mean)` in
/// normalized space (`hw` pixels per channel).
fn pattern_image(pattern: &[f32], space: Space, norm: &Normalization, hw: usize) -> Vec<f32> {
    match space {
        Space::Pixel => pattern.to_vec(),
        Space::Normalized => pattern
            .iter()
            .enumerate()
            .map(|(j, v)| (v * norm.std[j / hw] + norm.mean[j / hw]).clamp(0.0, 1.0))
            .collect(),
    }
}

/// A label's outcome once it stops: its kept trigger (`[1,H,W]` mask, `[C,H,W]` pattern) and
/// how it got there.
struct Final {
    mask: Tensor,
    pattern: Tensor,
    reached: bool,
    epoch: usize,
    epochs_run: usize,
    accuracy: f64,
    cost: [f64; 5],
}

/// A label's trigger kept so far: mask, pattern, 1-based epoch, attack accuracy, mask l1.
type KeptTrigger = (Tensor, Tensor, usize, f64, f64);

/// Per label of a chunk (indexed by the label's position in the chunk, not its row in the
/// shrinking batch): the trigger kept so far (mask, pattern, 1-based epoch, accuracy, l1), the
/// epoch history, the last epoch's accuracy, the early stop's best l1 and epochs since, and the
/// outcome once the label stopped.
struct Tracker {
    kept: Vec<Option<KeptTrigger>>,
    history: Vec<Vec<EpochStat>>,
    last_acc: Vec<f64>,
    best: Vec<(f64, usize)>,
    finals: Vec<Option<Final>>,
}

impl Tracker {
    fn new(l: usize) -> Self {
        Tracker {
            kept: (0..l).map(|_| None).collect(),
            history: vec![vec![]; l],
            last_acc: vec![0.0; l],
            best: vec![(f64::INFINITY, 0); l],
            finals: (0..l).map(|_| None).collect(),
        }
    }

    /// l1 of label `i`'s kept trigger, if it has one.
    fn kept_l1(&self, i: usize) -> Option<f64> {
        self.kept[i].as_ref().map(|k| k.4)
    }

    /// Records a successful epoch's l1 for the early stop: a new best by more than `min_delta`
    /// restarts the count of epochs without progress.
    fn note_progress(&mut self, i: usize, l1: Option<f64>, min_delta: f64) {
        let (best, since) = &mut self.best[i];
        match l1 {
            Some(v) if v < *best * (1.0 - min_delta) => {
                *best = v;
                *since = 0;
            }
            _ if best.is_finite() => *since += 1,
            _ => {}
        }
    }

    /// Whether label `i` stops now: it reached success and either made no progress for
    /// `stop.patience` epochs or its kept mask is `stop.far` times the smallest (`floor`).
    fn converged(&self, i: usize, stop: &EarlyStop, floor: f64) -> bool {
        let Some(l1) = self.kept_l1(i) else { return false };
        self.best[i].1 >= stop.patience || stop.far.is_some_and(|f| l1 > f * floor)
    }

    /// Stops label `i` (row `row` of `vars`) after `epochs_run` epochs: the last successful
    /// epoch's trigger, else the current one (not reached).
    fn finish(&mut self, i: usize, vars: &TriggerVars, row: usize, epochs_run: usize) {
        let cost = vars.schedules[row].cost;
        let f = match self.kept[i].take() {
            Some((mask, pattern, epoch, accuracy, _)) => {
                Final { mask, pattern, reached: true, epoch, epochs_run, accuracy, cost }
            }
            None => {
                let (m, p) = tch::no_grad(|| (squash(&vars.a_m.get(row as i64)), squash(&vars.a_p.get(row as i64))));
                Final {
                    mask: m,
                    pattern: p,
                    reached: false,
                    epoch: epochs_run,
                    epochs_run,
                    accuracy: self.last_acc[i],
                    cost,
                }
            }
        };
        self.finals[i] = Some(f);
    }
}

/// One epoch of the labels still running (`live[r]` is row r's label): a step per seed batch (one
/// step on a random sample with [`ReverseConfig::sample`]), then each label's accuracy over the
/// epoch's seeds decides its kept trigger and its cost schedule.
#[allow(clippy::too_many_arguments)]
fn run_epoch(
    model: &Model,
    space: &InputSpace,
    seeds: &Seeds,
    cfg: &ReverseConfig,
    norm: &Normalization,
    batch: usize,
    epoch: usize,
    live: &[usize],
    vars: &mut TriggerVars,
    track: &mut Tracker,
) -> Result<()> {
    let l = live.len();
    let shape = (model.meta.in_channels, model.meta.height, model.meta.width);
    let stream = epoch_seed(cfg.seed ^ SEED_KEY, epoch);
    let xs = match cfg.sample {
        Some(size) => vec![seeds.sample(size, stream, cfg.space, norm, shape, model.device())],
        None => seeds.batches(batch, stream, true, cfg.space, norm, shape, model.device()),
    };
    let (mut loss_sum, mut correct, mut n) = (vec![0.0; l], vec![0i64; l], 0usize);
    for (step, x) in xs.iter().enumerate() {
        let b = x.size()[0] as usize;
        let (loss, ok) = vars.step(model, space, x, cfg.loss);
        if let Some(bad) = loss.iter().find(|v| !v.is_finite()) {
            let remedy = "check the input normalization and the stamping space, or lower the learning rate";
            return Err(Error::Diverged { epoch, step, loss: *bad, remedy });
        }
        for r in 0..l {
            loss_sum[r] += loss[r] * b as f64;
            correct[r] += ok[r];
        }
        n += b;
    }
    let (m, p) = tch::no_grad(|| (squash(&vars.a_m), squash(&vars.a_p)));
    let l1s: Vec<f64> =
        Vec::try_from(m.sum_dim_intlist([1i64, 2, 3].as_slice(), false, Kind::Double).to_device(tch::Device::Cpu))
            .expect("l1");
    let min_delta = cfg.early_stop.map_or(0.0, |e| e.min_delta);
    for (r, &i) in live.iter().enumerate() {
        let acc = correct[r] as f64 / n as f64;
        track.last_acc[i] = acc;
        let success = acc >= cfg.success_threshold;
        if success {
            track.kept[i] = Some((m.get(r as i64).copy(), p.get(r as i64).copy(), epoch + 1, acc, l1s[r]));
        }
        track.note_progress(i, success.then_some(l1s[r]), min_delta);
        vars.schedules[r].update(success);
        let stat = EpochStat {
            epoch: epoch + 1,
            loss: loss_sum[r] / n as f64,
            attack_success: acc,
            l1: l1s[r],
            c1: vars.schedules[r].cost[0],
        };
        track.history[i].push(stat);
    }
    Ok(())
}

/// Attack success of the triggers `m [L,1,H,W]`, `p [L,C,H,W]` on a fresh pass over the seeds.
#[allow(clippy::too_many_arguments)]
fn seed_success(
    model: &Model,
    space: &InputSpace,
    seeds: &Seeds,
    cfg: &ReverseConfig,
    norm: &Normalization,
    shape: (usize, usize, usize),
    batch: usize,
    targets: &Tensor,
    m: &Tensor,
    p: &Tensor,
) -> Vec<f64> {
    let l = m.size()[0];
    let xs = seeds.batches(batch, cfg.seed ^ EVAL_KEY, false, cfg.space, norm, shape, model.device());
    let mut hits = Tensor::zeros([l], (Kind::Int64, model.device()));
    let mut n = 0i64;
    tch::no_grad(|| {
        for x in &xs {
            let b = x.size()[0];
            let logits = model.forward_frozen(&space.to_model(&stamp(x, m, p))).view([l, b, -1]);
            hits += logits.argmax(-1, false).eq_tensor(&targets.view([l, 1])).sum_dim_intlist(
                [1i64].as_slice(),
                false,
                Kind::Int64,
            );
            n += b;
        }
    });
    let hits: Vec<i64> = Vec::try_from(hits.to_device(tch::Device::Cpu)).expect("counts");
    hits.iter().map(|&h| h as f64 / n.max(1) as f64).collect()
}

/// Makes glibc keep freed memory for reuse instead of handing it back to the kernel: no `mmap` for
/// large blocks (`M_MMAP_MAX = 0`) and no trimming of the heap below 2 GiB free (`M_TRIM_THRESHOLD`).
///
/// Why: a batched step over 10 labels x 100 CIFAR seeds allocates activations of tens of MB each;
/// glibc serves every block above 32 MB with a fresh `mmap` and unmaps it on free, so each step
/// page-faults its gigabytes of activations in again, a large share of the run time spent in the
/// kernel (see BENCHMARKS.md). With this call the heap grows once and is reused. Process-wide and permanent (the process keeps its
/// peak heap), so the library never calls it on its own: `quarantine reverse` does, and so should
/// other long-running batched callers. No-op off glibc.
pub fn retain_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::raw::c_int;
        extern "C" {
            fn mallopt(param: c_int, value: c_int) -> c_int;
        }
        const M_TRIM_THRESHOLD: c_int = -1;
        const M_MMAP_MAX: c_int = -4;
        // SAFETY: mallopt only changes allocator tuning parameters; it is called with valid
        // parameter codes and has no memory-safety preconditions.
        unsafe {
            mallopt(M_MMAP_MAX, 0);
            mallopt(M_TRIM_THRESHOLD, c_int::MAX);
        }
    }
}
