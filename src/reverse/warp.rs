//! Warp inversion: which label can a small, smooth warp of the seeds reach? (Our addition, for
//! non-patch triggers; issue 16, "non-patch attacks".)
//!
//! Neural Cleanse's mask-and-pattern trigger (the rest of this module) names the target of a patch
//! or blended attack, but not of WaNet (Nguyen & Tran, ICLR 2021), whose trigger is an
//! imperceptible warp of the whole image: on the third and fourth held-back zoos every target the
//! size rule named wrong was a WaNet's (README "Populations"). A warp has its own inversion, in
//! WaNet's own parametrisation ([`crate::attack::WarpField`]): per label `t` a `2 x k x k` field `f`,
//! upsampled bicubically (align_corners) to `H x W` and divided by `H`, is added to the identity
//! sampling grid, clamped to [-1, 1], and every seed is resampled bilinearly at it
//! (`grid_sample(..., align_corners=True)`, border padding). Adam minimises the cross-entropy of
//! the warped seeds towards `t` with the field projected after each step onto `mean |f| <=
//! budget`, in WaNet's units: its trigger is `s * g / mean|g|` for a random `k x k` field `g`, so
//! `mean |f| = s`, the attack's strength (0.5 by WaNet's default).
//!
//! The statistic is each label's attack success at the end (all seeds, unaugmented). A clean
//! model cannot be pushed to another class by a sub-pixel smooth warp, so every label stays near
//! its share of the seeds; a model that learned a warp as a trigger follows it to the target.
//!
//! Cost: `steps` forward and backward passes of `labels x sample` images, about one
//! reverse-engineering run (BENCHMARKS.md).
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

use super::optim::{Adam, InputSpace};
use super::{Seeds, Space};
use crate::control::Control;
use crate::data::{normals, Normalization};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::train::epoch_seed;

/// Attack success of the warped seeds at or above which a label counts as a warp trigger's target
/// (the size-or-warp rule, [`crate::detect::size_warp`]). Chosen on the WaNet tuning zoo
/// (configs/zoos/wanet-tune.toml; README "Populations").
pub const WARP_FLAG_ASR: f64 = 0.5;

/// Whether warped seeds reaching a label with this attack success count as a warp trigger (at or
/// above [`WARP_FLAG_ASR`]).
pub fn warp_flags(attack_success: f64) -> bool {
    attack_success >= WARP_FLAG_ASR
}

/// Stream keys of the warp inversion's random draws.
const WARP_INIT_KEY: u64 = 0x5741_5250_494E_4954;
const WARP_SEED_KEY: u64 = 0x5741_5250_5345_4544;

/// Settings of the warp inversion.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WarpConfig {
    /// Side of the control grid (WaNet's `k`).
    pub k: usize,
    /// Largest mean absolute control offset, in WaNet's strength units.
    pub budget: f64,
    /// Adam steps.
    pub steps: usize,
    /// Seeds drawn at random for each step (`None`: all of them).
    pub sample: Option<usize>,
    /// Adam learning rate.
    pub lr: f64,
    /// Seed of the initial fields and the seed draws.
    pub seed: u64,
}

impl Default for WarpConfig {
    /// WaNet's own grid (k 4) and strength (0.5) as the budget; 100 Adam steps at lr 0.05 on 20
    /// seeds drawn per step (chosen on the WaNet tuning zoo, configs/zoos/wanet-tune.toml).
    fn default() -> Self {
        WarpConfig { k: 4, budget: 0.5, steps: 100, sample: Some(20), lr: 0.05, seed: 0 }
    }
}

impl WarpConfig {
    /// Rejects a grid under 2, a non-positive budget or learning rate, and zero steps or samples.
    pub fn validate(&self) -> Result<()> {
        let ok = self.k >= 2
            && self.budget > 0.0
            && self.budget.is_finite()
            && self.lr > 0.0
            && self.lr.is_finite()
            && self.steps > 0
            && self.sample != Some(0);
        if ok {
            Ok(())
        } else {
            Err(Error::invalid(
                "warp inversion",
                format!("needs k >= 2, budget > 0, lr > 0, steps >= 1 and a sample >= 1, got {self:?}"),
            ))
        }
    }
}

/// One label's warp.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WarpLabel {
    /// The candidate target.
    pub label: u32,
    /// Fraction of the warped seeds classified as the label (all seeds, unaugmented).
    pub attack_success: f64,
    /// Fraction of the unwarped seeds already classified as the label.
    pub base_rate: f64,
    /// Mean absolute control offset of the final field.
    pub magnitude: f64,
}

/// The warp inversion of every label.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WarpReport {
    /// The settings.
    pub config: WarpConfig,
    /// Per label, in label order.
    pub labels: Vec<WarpLabel>,
    /// The label with the highest attack success (the lowest label on a tie).
    pub best: u32,
    /// Its attack success.
    pub best_attack_success: f64,
    /// The second highest attack success.
    pub runner_up_attack_success: f64,
}

impl WarpReport {
    /// The report from per-label results (non-empty).
    fn new(config: WarpConfig, labels: Vec<WarpLabel>) -> Self {
        let mut order: Vec<&WarpLabel> = labels.iter().collect();
        // Highest success first; the lower label first on a tie (a stable sort keeps label order).
        order.sort_by(|a, b| b.attack_success.total_cmp(&a.attack_success));
        let best = order[0];
        let runner_up = order.get(1).map_or(0.0, |l| l.attack_success);
        WarpReport {
            best: best.label,
            best_attack_success: best.attack_success,
            runner_up_attack_success: runner_up,
            config,
            labels,
        }
    }
}

/// The identity sampling grid `[1, H, W, 2]` of `grid_sample(align_corners=True)`: (x, y) in [-1, 1].
fn identity_grid(h: usize, w: usize, device: tch::Device) -> Tensor {
    let lin = |n: usize| (0..n).map(move |i| if n > 1 { -1.0 + 2.0 * i as f32 / (n - 1) as f32 } else { 0.0 });
    let mut g = Vec::with_capacity(h * w * 2);
    for y in lin(h) {
        for x in lin(w) {
            g.extend([x, y]);
        }
    }
    Tensor::from_slice(&g).view([1, h as i64, w as i64, 2]).to_device(device)
}

/// Every label's field applied to every seed: x `[B,C,H,W]`, f `[L,2,k,k]` -> `[L*B,C,H,W]`,
/// label-major (rows `l*B .. (l+1)*B` are label `l`'s warp of the seeds).
pub fn warp_batch(x: &Tensor, f: &Tensor, identity: &Tensor) -> Tensor {
    let (l, [b, c, h, w]) = (f.size()[0], <[i64; 4]>::try_from(x.size()).expect("seeds are [B,C,H,W]"));
    // [L,2,k,k] -> [L,2,H,W] offsets in grid units (WaNet: field / H).
    let up = f.upsample_bicubic2d([h, w], true, None, None) / h as f64;
    // [L,H,W,2]: the sampling grid of each label.
    let grid = (identity + up.permute([0, 2, 3, 1])).clamp(-1.0, 1.0);
    let grid = grid.unsqueeze(1).expand([l, b, h, w, 2], false).reshape([l * b, h, w, 2]);
    let xs = x.unsqueeze(0).expand([l, b, c, h, w], false).reshape([l * b, c, h, w]);
    // interpolation 0 = bilinear, padding 1 = border.
    xs.grid_sampler(&grid, 0, 1, true)
}

/// Initial fields of `labels`: N(0, 0.01²) from ChaCha8 keyed by (seed, label), `[L,2,k,k]`.
fn initial_fields(seed: u64, labels: &[u32], k: usize) -> Tensor {
    let mut v = Vec::with_capacity(labels.len() * 2 * k * k);
    for &label in labels {
        let mut rng = ChaCha8Rng::seed_from_u64(epoch_seed(seed ^ WARP_INIT_KEY, label as usize));
        v.extend(normals(&mut rng, 2 * k * k).into_iter().map(|z| z * 0.01));
    }
    Tensor::from_slice(&v).view([labels.len() as i64, 2, k as i64, k as i64])
}

/// Mean absolute offset of each field: `[L,2,k,k]` -> `[L,1,1,1]`.
fn magnitudes(f: &Tensor) -> Tensor {
    f.abs().mean_dim([1i64, 2, 3].as_slice(), true, Kind::Float)
}

/// Inverts a warp towards every label of `model` (inputs normalized with `norm`) from `seeds`.
pub fn invert_warps(
    model: &Model,
    norm: &Normalization,
    seeds: &Seeds,
    cfg: &WarpConfig,
    ctl: &Control,
) -> Result<WarpReport> {
    cfg.validate()?;
    if seeds.is_empty() {
        return Err(Error::invalid("seeds", "no seed images"));
    }
    let device = model.device();
    let shape @ (c, h, w) = (model.meta.in_channels, model.meta.height, model.meta.width);
    let norm = norm.clone().for_channels(c)?;
    let labels: Vec<u32> = (0..model.meta.num_classes as u32).collect();
    let l = labels.len() as i64;
    let space = InputSpace::new(Space::Pixel, &norm, c, device);
    let identity = identity_grid(h, w, device);
    let mut f = initial_fields(cfg.seed, &labels, cfg.k).to_device(device).set_requires_grad(true);
    let mut adam = Adam::new(&[&f], cfg.lr, (0.9, 0.999), 1e-8);
    let targets = Tensor::from_slice(&labels.iter().map(|&t| t as i64).collect::<Vec<_>>()).to_device(device);
    let progress = ctl.progress();
    progress.start("warp steps", cfg.steps as u64);
    progress.message("warp inversion");
    let sample = cfg.sample.unwrap_or(seeds.len());
    for step in 0..cfg.steps {
        let x = seeds.sample(sample, epoch_seed(cfg.seed ^ WARP_SEED_KEY, step), Space::Pixel, &norm, shape, device);
        let b = x.size()[0];
        let logits = model.forward_frozen(&space.to_model(&warp_batch(&x, &f, &identity)));
        // [L*B] targets, label-major like the batch.
        let t = targets.unsqueeze(1).expand([l, b], false).reshape([l * b]);
        let loss = logits.cross_entropy_for_logits(&t);
        let v = loss.double_value(&[]);
        if !v.is_finite() {
            let remedy = "check the input normalization, or lower the warp learning rate";
            return Err(Error::Diverged { epoch: step, step: 0, loss: v, remedy });
        }
        // The mean over L*B rows is 1/L of each label's own mean: scale back so that every
        // label's field gets the gradient of its own cross-entropy.
        let grads = Tensor::run_backward(&[loss * l as f64], &[&f], false, false);
        adam.step(&mut [&mut f], &grads);
        tch::no_grad(|| {
            let scale = (cfg.budget / magnitudes(&f)).clamp_max(1.0);
            let _ = f.g_mul_(&scale);
        });
        progress.inc(1);
    }
    progress.finish();
    // Final attack success on every seed, unaugmented, and the base rates without a warp.
    let (mut hits, mut base, mut n) = (vec![0i64; l as usize], vec![0i64; l as usize], 0i64);
    tch::no_grad(|| {
        for x in seeds.batches(sample, 0, false, Space::Pixel, &norm, shape, device) {
            let b = x.size()[0];
            let warped = model.forward_frozen(&space.to_model(&warp_batch(&x, &f, &identity))).view([l, b, -1]);
            // [L]: label l's warped seeds classified as l; [L]: unwarped seeds per predicted label.
            let hit = warped.argmax(-1, false).eq_tensor(&targets.view([l, 1])).sum_dim_intlist(
                [1i64].as_slice(),
                false,
                Kind::Int64,
            );
            let plain = model.forward_frozen(&space.to_model(&x)).argmax(-1, false).bincount::<Tensor>(None, l);
            let counts = |t: Tensor| Vec::<i64>::try_from(t.to_device(tch::Device::Cpu)).expect("counts");
            for (acc, add) in [(&mut hits, counts(hit)), (&mut base, counts(plain))] {
                acc.iter_mut().zip(add).for_each(|(a, v)| *a += v);
            }
            n += b;
        }
    });
    let mags: Vec<f64> = Vec::try_from(magnitudes(&f).to_kind(Kind::Double).flatten(0, -1).to_device(tch::Device::Cpu))
        .expect("magnitudes");
    let n = n.max(1) as f64;
    let per_label = labels
        .iter()
        .enumerate()
        .map(|(i, &label)| WarpLabel {
            label,
            attack_success: hits[i] as f64 / n,
            base_rate: base[i] as f64 / n,
            magnitude: mags[i],
        })
        .collect();
    Ok(WarpReport::new(cfg.clone(), per_label))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attack::WarpField;

    /// The batched warp is WaNet's own warp: a field `s * g / mean|g|` on the control grid gives the
    /// sampling grid of [`WarpField`], and the resampled image matches its pixel warp (before
    /// WaNet's rounding to uint8).
    #[test]
    fn the_batched_warp_is_wanets_warp() {
        let (h, w, k, s) = (12usize, 12usize, 4usize, 0.5);
        let field = WarpField::new(h, w, k, s, 7);
        // WarpField draws its control grid from ChaCha8(seed); redraw the same numbers here.
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let ins: Vec<f32> = (0..2 * k * k).map(|_| rand::Rng::gen::<f32>(&mut rng) * 2.0 - 1.0).collect();
        let mean_abs = ins.iter().map(|v| v.abs()).sum::<f32>() / ins.len() as f32;
        let f: Vec<f32> = ins.iter().map(|v| v / mean_abs * s as f32).collect();
        let f = Tensor::from_slice(&f).view([1, 2, k as i64, k as i64]);
        let img: Vec<f32> = (0..h * w).map(|i| ((i * 37) % 251) as f32 / 255.0).collect();
        let x = Tensor::from_slice(&img).view([1, 1, h as i64, w as i64]);
        let out: Vec<f32> =
            Vec::try_from(warp_batch(&x, &f, &identity_grid(h, w, tch::Device::Cpu)).flatten(0, -1)).unwrap();
        let mut u8img: Vec<u8> = img.iter().map(|v| (v * 255.0).round() as u8).collect();
        field.warp(&mut u8img, 1, None);
        for (i, (a, b)) in out.iter().zip(&u8img).enumerate() {
            assert!((a * 255.0 - *b as f32).abs() <= 0.51, "pixel {i}: {} vs {b}", a * 255.0);
        }
        assert!((magnitudes(&f).double_value(&[0, 0, 0, 0]) - s).abs() < 1e-5);
    }

    #[test]
    fn identity_fields_leave_the_seeds_unchanged_and_rows_are_label_major() {
        let x = Tensor::rand([3, 2, 8, 8], (Kind::Float, tch::Device::Cpu));
        let f = Tensor::zeros([2, 2, 4, 4], (Kind::Float, tch::Device::Cpu));
        let out = warp_batch(&x, &f, &identity_grid(8, 8, tch::Device::Cpu));
        assert_eq!(out.size(), [6, 2, 8, 8]);
        let diff = (out.narrow(0, 3, 3) - &x).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "{diff}");
    }

    /// On a small random model: every label gets a field within the budget, the rates are
    /// fractions of the seeds, and the same seed gives the same report (another seed another one).
    #[test]
    fn an_inversion_keeps_the_budget_and_is_deterministic_under_its_seed() {
        tch::manual_seed(5);
        let meta = crate::model::ModelMeta {
            arch: crate::model::Arch::Cnn,
            in_channels: 1,
            height: 8,
            width: 8,
            num_classes: 4,
            script: None,
        };
        let model = Model::new(meta, tch::Device::Cpu).unwrap();
        let norm = Normalization::mnist();
        let seeds = Seeds::Noise { n: 12 };
        let cfg = WarpConfig { steps: 6, sample: Some(5), budget: 0.3, lr: 0.2, seed: 9, ..Default::default() };
        let r = invert_warps(&model, &norm, &seeds, &cfg, &Control::quiet()).unwrap();
        assert_eq!(r.labels.iter().map(|l| l.label).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
        for l in &r.labels {
            assert!(l.magnitude <= 0.3 + 1e-5 && l.magnitude > 0.0, "{l:?}");
            assert!((0.0..=1.0).contains(&l.attack_success) && (0.0..=1.0).contains(&l.base_rate), "{l:?}");
        }
        let base: f64 = r.labels.iter().map(|l| l.base_rate).sum();
        assert!((base - 1.0).abs() < 1e-9, "the unwarped seeds fall in exactly one label each: {base}");
        assert!(r.best_attack_success >= r.runner_up_attack_success);
        assert_eq!(invert_warps(&model, &norm, &seeds, &cfg, &Control::quiet()).unwrap(), r);
        let other = invert_warps(&model, &norm, &seeds, &WarpConfig { seed: 10, ..cfg }, &Control::quiet()).unwrap();
        assert_ne!(other.labels, r.labels);
    }

    #[test]
    fn the_report_ranks_labels_and_breaks_ties_low() {
        let l = |label, attack_success| WarpLabel { label, attack_success, base_rate: 0.1, magnitude: 0.5 };
        let r = WarpReport::new(WarpConfig::default(), vec![l(0, 0.2), l(1, 0.9), l(2, 0.9), l(3, 0.1)]);
        assert_eq!((r.best, r.best_attack_success, r.runner_up_attack_success), (1, 0.9, 0.9));
    }

    #[test]
    fn bad_settings_are_refused() {
        for c in [
            WarpConfig { k: 1, ..Default::default() },
            WarpConfig { budget: 0.0, ..Default::default() },
            WarpConfig { steps: 0, ..Default::default() },
            WarpConfig { sample: Some(0), ..Default::default() },
            WarpConfig { lr: f64::NAN, ..Default::default() },
        ] {
            assert!(c.validate().is_err(), "{c:?}");
        }
        assert!(WarpConfig::default().validate().is_ok());
    }
}
