//! The Trojan score (docs/METHOD.md §5, paper eq. 2): linear mode connectivity between a Trojan ticket φ and
//! φ_k, the same ticket finetuned k steps with its mask kept:
//!
//! `S(φ) = max_{α ∈ grid} E(α·φ + (1−α)·φ_k) − (E(φ) + E(φ_k)) / 2`
//!
//! for E = 0-1 error and E = cross-entropy, every state tensor interpolated (weights, BN affine and
//! running statistics), the interpolated network evaluated in eval mode on fixed score samples.
//! Defaults follow the paper (k = 10, uniform 11-point grid); [`ScoreConfig::reference`] reproduces the
//! code (21 finetuning steps on the unshuffled loader, its in-place-update α grid).
//!
//! BN recalibration (our option, on by default where it holds up; README has the numbers): after
//! pruning, the dense model's BN running statistics no longer describe the pruned network's
//! activations; [`recalibrate_bn`] recomputes them exactly on the score samples.
pub mod job;
pub mod path;

pub use path::{ScoreKind, StepRow};

use tch::{Device, Kind, Tensor};

use crate::data::{Augment, Batches, ImageSet, Normalization};
use crate::error::Result;
use crate::model::Model;
use crate::prune::Masks;
use crate::train::{epoch_seed, Sgd};

/// The reference's effective α grid: its interpolation overwrites its own endpoint in place.
pub const REFERENCE_ALPHAS: [f64; 11] = [0.0, 0.1, 0.28, 0.496, 0.6976, 0.8488, 0.9395, 0.9819, 0.9964, 0.9996, 1.0];

/// The α values at which the interpolated network is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlphaGrid {
    /// 11 points i/10.
    Uniform,
    /// The reference code's effective grid.
    Reference,
}
crate::choices!(AlphaGrid {
    Uniform => "uniform": "11 points i/10",
    Reference => "reference": "the reference code's effective grid",
});

impl AlphaGrid {
    /// The grid's α values, ascending from 0 to 1.
    pub fn alphas(&self) -> Vec<f64> {
        match self {
            AlphaGrid::Uniform => (0..=10).map(|i| i as f64 / 10.0).collect(),
            AlphaGrid::Reference => REFERENCE_ALPHAS.to_vec(),
        }
    }
}

/// Settings of the Trojan score: the finetuning that makes φ_k and the α grid.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScoreConfig {
    /// Finetuning steps for φ_k.
    pub k: usize,
    /// SGD learning rate of the finetuning.
    pub lr: f64,
    /// SGD momentum of the finetuning.
    pub momentum: f64,
    /// SGD weight decay of the finetuning.
    pub weight_decay: f64,
    /// Finetuning batch size.
    pub batch_size: usize,
    /// Shuffle the finetuning data (the reference does not).
    pub shuffle: bool,
    /// Augmentation of the finetuning batches.
    pub augment: Augment,
    /// α values of the interpolation.
    pub alpha_grid: AlphaGrid,
    /// Recompute BN running statistics of the ticket on the score samples before scoring.
    pub bn_recalibrate: bool,
    /// Seed of the finetuning order and augmentation.
    pub seed: u64,
}

impl ScoreConfig {
    /// The paper: k = 10, uniform grid, shuffled finetuning.
    pub fn paper(augment: Augment, seed: u64) -> Self {
        ScoreConfig {
            k: 10,
            lr: 1e-3,
            momentum: 0.9,
            weight_decay: 5e-4,
            batch_size: 128,
            shuffle: true,
            augment,
            alpha_grid: AlphaGrid::Uniform,
            bn_recalibrate: true,
            seed,
        }
    }
    /// The reference code: 21 finetuning steps on the unshuffled loader, its effective α grid, no BN
    /// recalibration.
    pub fn reference(augment: Augment, seed: u64) -> Self {
        ScoreConfig {
            k: 21,
            shuffle: false,
            alpha_grid: AlphaGrid::Reference,
            bn_recalibrate: false,
            ..Self::paper(augment, seed)
        }
    }
}

/// The interpolation curve and the two barrier scores of one ticket.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScoreResult {
    /// The α values evaluated (1 = φ, 0 = φ_k).
    pub alphas: Vec<f64>,
    /// 0-1 error of the interpolated network at each α.
    pub errors: Vec<f64>,
    /// Mean cross-entropy at each α.
    pub losses: Vec<f64>,
    /// Barrier score of the 0-1 error curve.
    pub score_error: f64,
    /// Barrier score of the cross-entropy curve.
    pub score_loss: f64,
}

/// Score samples as tensors: normalized images [N, C, H, W] and labels \[N\].
pub struct ScoreData {
    /// Normalized images, [N, C, H, W] float32.
    pub x: Tensor,
    /// Labels, \[N\] int64.
    pub y: Tensor,
}

/// The barrier score of a curve of E values whose endpoints are α = 0 (φ_k) and α = 1 (φ).
pub fn barrier(alphas: &[f64], values: &[f64]) -> f64 {
    let at = |a: f64| alphas.iter().position(|&x| x == a).map(|i| values[i]);
    let (phi, phik) = (at(1.0).unwrap_or(values[values.len() - 1]), at(0.0).unwrap_or(values[0]));
    values.iter().cloned().fold(f64::NEG_INFINITY, f64::max) - (phi + phik) / 2.0
}

/// Error and loss of `model` in eval mode on the score samples.
pub fn error_and_loss(model: &Model, data: &ScoreData) -> (f64, f64) {
    let n = data.y.size()[0];
    let (mut wrong, mut loss) = (0i64, 0.0);
    tch::no_grad(|| {
        let mut i = 0;
        while i < n {
            let len = 256.min(n - i);
            let x = data.x.narrow(0, i, len);
            let y = data.y.narrow(0, i, len);
            let logits = model.forward_frozen(&x);
            loss += logits.cross_entropy_for_logits(&y).double_value(&[]) * len as f64;
            wrong += logits.argmax(-1, false).ne_tensor(&y).sum(Kind::Int64).int64_value(&[]);
            i += len;
        }
    });
    (wrong as f64 / n.max(1) as f64, loss / n.max(1) as f64)
}

/// Recomputes every BN layer's running statistics as the exact batch statistics of `x` (one
/// train-mode forward over all samples, running stats reset to 0 and divided by the momentum after).
/// A TorchScript model's BN layers may use any momentum (or a cumulative average): there the
/// momentum is measured with a second pass ([`recalibrate_bn_script`]).
pub fn recalibrate_bn(model: &Model, x: &Tensor) -> Result<()> {
    if model.is_script() {
        return recalibrate_bn_script(model, x);
    }
    let stats = running_stats(model);
    tch::no_grad(|| {
        for (_, t) in &stats {
            let _ = t.shallow_clone().zero_();
        }
        let _ = model.forward_t(x, true);
        // running = (1 - m)·0 + m·batch_stat with m = 0.1 (PyTorch/tch default momentum).
        for (_, t) in &stats {
            let _ = t.shallow_clone().g_div_scalar_(0.1);
        }
    });
    Ok(())
}

/// Whether BN recalibration can work on `model`: false for a TorchScript module whose BN layers do
/// not update their statistics in train mode (a traced module keeps the mode it was traced in),
/// found by one train-mode pass of a copy on a few of `x`. True for the built-in networks and for
/// modules without BN statistics.
pub fn bn_updates_in_train_mode(model: &Model, x: &Tensor) -> Result<bool> {
    if !model.is_script() || running_stats(model).is_empty() {
        return Ok(true);
    }
    let copy = Model::new(model.meta.clone(), model.device())?;
    copy.copy_from(model)?;
    let before: Vec<Tensor> = running_stats(&copy).into_iter().map(|(_, t)| t.copy()).collect();
    let n = x.size()[0].clamp(1, 8);
    let _ = tch::no_grad(|| copy.try_forward_t(&x.narrow(0, 0, n), true)).map_err(|e| {
        crate::error::Error::invalid("BN recalibration", format!("the module's train-mode forward failed: {e}"))
    })?;
    Ok(running_stats(&copy).iter().zip(&before).any(|((_, a), b)| !a.equal(b)))
}

fn running_stats(model: &Model) -> Vec<(String, Tensor)> {
    model
        .named_tensors()
        .into_iter()
        .filter(|(n, _)| n.ends_with(".running_mean") || n.ends_with(".running_var"))
        .collect()
}

/// BN recalibration of a TorchScript module, whose BN momentum m is not known: from zeroed running
/// statistics (and batch counters), one train-mode pass leaves r1 = m·s (s the batch statistic); a
/// second pass leaves r2 = (1 − m)·r1 + m·s = r1·(2 − m), so m = 2 − r2/r1 per layer (also for
/// PyTorch's cumulative average, momentum=None, where m = 1 on the first batch), and s = r1/m.
/// An error when train mode does not update the statistics (a traced module: its BN layers are
/// frozen in the mode they were traced in).
pub fn recalibrate_bn_script(model: &Model, x: &Tensor) -> Result<()> {
    let stats = running_stats(model);
    if stats.is_empty() {
        return Ok(());
    }
    let counters: Vec<(Tensor, Tensor)> = model
        .named_tensors()
        .into_iter()
        .filter(|(n, _)| n.ends_with(".num_batches_tracked"))
        .map(|(_, t)| {
            let saved = t.copy();
            (t, saved)
        })
        .collect();
    let pass = |zero: bool| -> std::result::Result<(), String> {
        tch::no_grad(|| {
            for (_, t) in &stats {
                if zero {
                    let _ = t.shallow_clone().zero_();
                }
            }
            if zero {
                for (t, _) in &counters {
                    let _ = t.shallow_clone().zero_();
                }
            }
            model.try_forward_t(x, true).map(|_| ())
        })
    };
    let fail = |e: String| {
        crate::error::Error::invalid("BN recalibration", format!("the module's train-mode forward failed: {e}"))
    };
    pass(true).map_err(fail)?;
    let r1: Vec<Tensor> = stats.iter().map(|(_, t)| t.copy()).collect();
    pass(false).map_err(fail)?;
    tch::no_grad(|| -> Result<()> {
        // Per layer, |r2| = (2 − m)·|r1| summed over its mean and variance (a layer whose input is
        // constant zero, e.g. behind a fully pruned convolution, has r1 = 0 and keeps it).
        let layer_of = |name: &str| name.rsplit_once('.').map_or(String::new(), |(p, _)| p.to_string());
        let mut sums: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
        for ((name, t), r1) in stats.iter().zip(&r1) {
            let e = sums.entry(layer_of(name)).or_default();
            e.0 += r1.abs().sum(Kind::Double).double_value(&[]);
            e.1 += t.abs().sum(Kind::Double).double_value(&[]);
        }
        if sums.values().all(|&(a1, _)| a1 == 0.0) {
            return Err(crate::error::Error::invalid(
                "BN recalibration",
                "no BN layer updates its statistics in train mode (a traced module keeps the mode it was traced \
                 in): score without it (--no-bn-recalibrate), or export the model with torch.jit.script",
            ));
        }
        for ((name, t), r1) in stats.iter().zip(&r1) {
            let (a1, a2) = sums[&layer_of(name)];
            let m = if a1 > 0.0 && a1.is_finite() { (2.0 - a2 / a1).clamp(1e-6, 1.0) } else { 1.0 };
            t.shallow_clone().copy_(&(r1 / m));
        }
        for (t, saved) in &counters {
            t.shallow_clone().copy_(saved);
        }
        Ok(())
    })
}

/// Copies φ, finetunes the copy `k` steps on `train` with `masks` kept: φ_k.
pub fn finetune(
    phi: &Model,
    masks: &Masks,
    train: &ImageSet,
    norm: &Normalization,
    cfg: &ScoreConfig,
) -> Result<Model> {
    let phik = Model::new(phi.meta.clone(), phi.device())?;
    phik.copy_from(phi)?;
    let mut opt = Sgd::new(phik.named_parameters(), cfg.momentum, cfg.weight_decay);
    opt.set_masks(masks.to_map());
    let mut step = 0;
    let mut epoch = 0;
    while step < cfg.k {
        let batches = if cfg.shuffle {
            Batches::new(
                train,
                cfg.batch_size,
                norm,
                cfg.augment,
                Some(epoch_seed(cfg.seed ^ 0x4654, epoch)),
                phik.device(),
            )
        } else {
            // The reference's loader is unshuffled but still augments: draw augmentation from the seed.
            Batches::with_order(
                train,
                (0..train.n).collect(),
                cfg.batch_size,
                norm,
                cfg.augment,
                rand::SeedableRng::seed_from_u64(epoch_seed(cfg.seed, epoch)),
                phik.device(),
            )
        };
        for b in batches {
            if step >= cfg.k {
                break;
            }
            let loss = phik.forward_t(&b.images, true).cross_entropy_for_logits(&b.labels);
            opt.zero_grad();
            loss.backward();
            opt.step(cfg.lr);
            step += 1;
        }
        epoch += 1;
    }
    Ok(phik)
}

/// Interpolates all state tensors into `into`: α·a + (1−α)·b.
pub fn interpolate(into: &Model, a: &Model, b: &Model, alpha: f64) {
    let (va, vb) = (a.vs.variables(), b.vs.variables());
    tch::no_grad(|| {
        for (n, t) in into.vs.variables() {
            let v = &va[&n] * alpha + &vb[&n] * (1.0 - alpha);
            t.shallow_clone().copy_(&v.to_kind(t.kind()));
        }
    });
}

/// The LMC Trojan score of ticket `phi` (already pruned, BN recalibrated if wanted).
pub fn trojan_score(
    phi: &Model,
    masks: &Masks,
    train: &ImageSet,
    norm: &Normalization,
    data: &ScoreData,
    cfg: &ScoreConfig,
) -> Result<(ScoreResult, Model)> {
    let phik = finetune(phi, masks, train, norm, cfg)?;
    let interp = Model::new(phi.meta.clone(), phi.device())?;
    let alphas = cfg.alpha_grid.alphas();
    let (mut errors, mut losses) = (vec![], vec![]);
    for &a in &alphas {
        interpolate(&interp, phi, &phik, a);
        let (e, l) = error_and_loss(&interp, data);
        errors.push(e);
        losses.push(l);
    }
    let score_error = barrier(&alphas, &errors);
    let score_loss = barrier(&alphas, &losses);
    Ok((ScoreResult { alphas, errors, losses, score_error, score_loss }, phik))
}

/// Fixed, seeded score samples from a set: `n` indices drawn without replacement.
pub fn score_samples(
    set: &ImageSet,
    n: usize,
    norm: &Normalization,
    seed: u64,
    device: Device,
) -> (ScoreData, Vec<usize>) {
    use rand::seq::SliceRandom;
    let mut rng: rand_chacha::ChaCha8Rng = rand::SeedableRng::seed_from_u64(seed ^ 0x5343_4F52);
    let mut idx: Vec<usize> = (0..set.n).collect();
    idx.shuffle(&mut rng);
    idx.truncate(n.min(set.n));
    idx.sort_unstable();
    let (x, y) = crate::data::to_tensor(set, Some(&idx), norm, device);
    (ScoreData { x, y }, idx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Arch, ModelMeta};

    fn tiny_set(n: usize) -> ImageSet {
        use rand::Rng;
        let mut rng: rand_chacha::ChaCha8Rng = rand::SeedableRng::seed_from_u64(0);
        ImageSet {
            images: (0..n * 64).map(|_| rng.gen()).collect(),
            labels: (0..n).map(|i| (i % 3) as u32).collect(),
            n,
            height: 8,
            width: 8,
            channels: 1,
            classes: vec!["a".into(), "b".into(), "c".into()],
        }
    }

    fn model() -> Model {
        tch::manual_seed(4);
        Model::new(
            ModelMeta { arch: Arch::Cnn, in_channels: 1, height: 8, width: 8, num_classes: 3, script: None },
            Device::Cpu,
        )
        .unwrap()
    }

    #[test]
    fn barrier_by_hand() {
        // E(φ_k) = 0.2 at α = 0, E(φ) = 0.4 at α = 1, peak 0.9: 0.9 - 0.3 = 0.6.
        let s = barrier(&[0.0, 0.5, 1.0], &[0.2, 0.9, 0.4]);
        assert!((s - 0.6).abs() < 1e-12);
    }

    #[test]
    fn endpoints_reproduce_phi_and_phik_exactly() {
        let a = model();
        let b = model();
        tch::no_grad(|| {
            for (_, t) in b.vs.variables() {
                let _ = t.shallow_clone().g_add_scalar_(0.5);
            }
        });
        let into = model();
        interpolate(&into, &a, &b, 1.0);
        assert!(into.vs.variables().iter().all(|(n, t)| t.equal(&a.vs.variables()[n])));
        interpolate(&into, &a, &b, 0.0);
        assert!(into.vs.variables().iter().all(|(n, t)| t.equal(&b.vs.variables()[n])));
    }

    #[test]
    fn score_of_phi_equal_phik_is_zero() {
        let m = model();
        let set = tiny_set(64);
        let norm = Normalization::none(1);
        let (data, _) = score_samples(&set, 32, &norm, 1, Device::Cpu);
        let mut cfg = ScoreConfig::paper(Augment::NONE, 0);
        cfg.k = 0;
        let (r, _) = trojan_score(&m, &Masks::dense(&m), &set, &norm, &data, &cfg).unwrap();
        assert_eq!(r.score_error, 0.0);
        assert!(r.score_loss.abs() < 1e-6, "{}", r.score_loss);
        assert_eq!(r.alphas.len(), 11);
    }

    #[test]
    fn finetune_keeps_the_mask_and_bn_recalibration_gives_batch_stats() {
        let m = model();
        let masks = Masks::dense(&m).prune(&m, 0.5, crate::prune::Scope::Global, crate::prune::Criterion::Magnitude);
        masks.apply(&m);
        let set = tiny_set(64);
        let norm = Normalization::none(1);
        let mut cfg = ScoreConfig::paper(Augment { crop_pad: 1, flip: true }, 0);
        cfg.k = 3;
        let phik = finetune(&m, &masks, &set, &norm, &cfg).unwrap();
        let v = phik.vs.variables();
        for (n, mask) in &masks.masks {
            assert_eq!(v[n].masked_select(&mask.eq(0.0)).abs().sum(Kind::Float).double_value(&[]), 0.0);
        }
        let (data, _) = score_samples(&set, 64, &norm, 0, Device::Cpu);
        recalibrate_bn(&m, &data.x).unwrap();
        // The first BN sees conv1's output directly: its running mean is the batch mean per channel.
        let w = &m.vs.variables()["conv1.weight"];
        let y = data.x.conv2d(w, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1);
        let want = y.mean_dim([0i64, 2, 3].as_slice(), false, Kind::Float);
        let got = &m.vs.variables()["bn1.running_mean"];
        assert!((got - want).abs().max().double_value(&[]) < 1e-5);
    }
}
