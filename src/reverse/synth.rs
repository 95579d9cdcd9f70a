//! Data-free seed images by model inversion (`--seeds synth:N`), after DeepInversion (Yin et al.,
//! "Dreaming to Distill", CVPR 2020). Beyond the paper, whose data-free mode uses N(0,1) noise
//! (docs/METHOD.md §6).
//!
//! Why: noise is far from every training image, and on the built-in cnn some clean labels ("sandal",
//! "bag") take noise with masks as small as a real trigger's (README, "Detection on the built-in
//! data"), so the trigger's label is not an outlier. A model with batch norm stores, in every BN
//! layer, the mean and variance its training images produced there; images that reproduce those
//! statistics and that the model classifies as each label in turn are a stand-in for a clean sample.
//!
//! Algorithm: N images, label `i mod K` for image i, pixels `x = (tanh a + 1)/2` (always a valid
//! image), `a ~ 0.5·N(0,1)`. Adam (lr 0.1 with cosine decay to 0, betas (0.5, 0.9)) on `a` for 400
//! steps of
//! `CE(f(norm(jitter(x))), y) + λ_bn · Σ_layers (‖μ_l − μ̂_l‖₂ + ‖σ²_l − σ̂²_l‖₂) + λ_tv · TV²(x)/N`,
//! with μ_l, σ²_l the batch statistics of BN layer l's input and μ̂_l, σ̂²_l its running statistics,
//! jitter a random roll of up to 2 pixels each way (the same for the whole batch, drawn from the
//! seed), the model frozen in eval mode. Images are optimised in batches of the architecture's
//! reverse-engineering budget (each batch matches the statistics on its own). A model without batch
//! norm gets only the class and smoothness terms. Defaults λ_bn = 1, λ_tv = 0.005, chosen on one
//! built-in Trojaned cnn (paper-gray, seed 103) among a few settings: there, reverse engineering on
//! the synthesized seeds put the true target at the smallest mask, where noise seeds put two clean
//! labels first. Timings and results over more models: README.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

use super::optim::{tv2, Adam};
use crate::control::Control;
use crate::data::normals;
use crate::data::{ImageSet, Normalization};
use crate::error::{Error, Result};
use crate::model::{with_bn_probe, Model};

/// Adam steps of the inversion by default (`synth:N`; `detect --fast` uses 200).
pub const SYNTH_STEPS: usize = 400;

/// Settings of the inversion.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SynthConfig {
    /// Number of images to synthesize (labels `i mod K`).
    pub n: usize,
    /// Adam steps per batch of images.
    pub steps: usize,
    /// Initial Adam learning rate (cosine-decayed to 0).
    pub lr: f64,
    /// λ_bn, the weight of the BN-statistics term.
    pub bn_weight: f64,
    /// λ_tv, the weight of the smoothness term (per image).
    pub tv_weight: f64,
    /// Largest roll in pixels.
    pub jitter: i64,
    /// Seed of the initialisation and jitter draws.
    pub seed: u64,
}

impl SynthConfig {
    /// The defaults ([`SYNTH_STEPS`] steps, lr 0.1, λ_bn = 1, λ_tv = 0.005, jitter 2) for `n` images.
    pub fn new(n: usize, seed: u64) -> Self {
        SynthConfig { n, steps: SYNTH_STEPS, lr: 0.1, bn_weight: 1.0, tv_weight: 0.005, jitter: 2, seed }
    }
}

/// How the inversion ended, for the report.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SynthSummary {
    /// Fraction of the images the model assigns to their intended label.
    pub accuracy: f64,
    /// Mean BN-statistics distance per layer at the end (before weighting).
    pub bn_distance: f64,
    /// Mean cross-entropy of the final images against their intended labels.
    pub cross_entropy: f64,
    /// Wall-clock time of the inversion, in seconds.
    pub seconds: f64,
}

/// Synthesizes `cfg.n` images (HWC bytes, labels = intended labels) from `model`.
pub fn synthesize(model: &Model, norm: &Normalization, cfg: &SynthConfig) -> Result<(ImageSet, SynthSummary)> {
    synthesize_with(model, norm, cfg, &Control::quiet(), std::path::Path::new(""))
}

/// [`synthesize`], stoppable: `ctl` is checked before every Adam step (the inversion of 100 images
/// takes minutes on one core), a stop returns `Interrupted(state)`, and `ctl`'s progress counts
/// the steps. Nothing of an interrupted inversion is kept: a resumed run starts it again.
pub fn synthesize_with(
    model: &Model,
    norm: &Normalization,
    cfg: &SynthConfig,
    ctl: &Control,
    state: &std::path::Path,
) -> Result<(ImageSet, SynthSummary)> {
    let t0 = std::time::Instant::now();
    let meta = &model.meta;
    let (c, h, w, k) = (meta.in_channels, meta.height, meta.width, meta.num_classes);
    if cfg.n == 0 || cfg.steps == 0 {
        return Err(Error::invalid("synthesized seeds", "needs at least one image and one step".to_string()));
    }
    let device = model.device();
    let norm = norm.clone().for_channels(c)?;
    let mean = Tensor::from_slice(&norm.mean).view([1, c as i64, 1, 1]).to_device(device);
    let std = Tensor::from_slice(&norm.std).view([1, c as i64, 1, 1]).to_device(device);
    let per_pass = meta.arch.reverse_images_per_pass(h, w).max(k);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x0053_594E_5448);
    let mut pixels: Vec<u8> = Vec::with_capacity(cfg.n * c * h * w);
    let labels: Vec<u32> = (0..cfg.n).map(|i| (i % k) as u32).collect();
    let (mut hits, mut bn_sum, mut ce_sum) = (0i64, 0.0, 0.0);
    let progress = ctl.progress();
    progress.start("seeds", (cfg.n.div_ceil(per_pass) * cfg.steps) as u64);
    for start in (0..cfg.n).step_by(per_pass) {
        let b = per_pass.min(cfg.n - start);
        let init: Vec<f32> = normals(&mut rng, b * c * h * w).into_iter().map(|z| 0.5 * z).collect();
        let mut a = Tensor::from_slice(&init)
            .view([b as i64, c as i64, h as i64, w as i64])
            .to_device(device)
            .set_requires_grad(true);
        let y = Tensor::from_slice(&labels[start..start + b].iter().map(|&l| l as i64).collect::<Vec<_>>())
            .to_device(device);
        let mut adam = Adam::new(&[&a], cfg.lr, (0.5, 0.9), 1e-8);
        for step in 0..cfg.steps {
            ctl.check(state)?;
            progress.inc(1);
            adam.lr = cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / cfg.steps as f64).cos());
            let (dy, dx) = (rng.gen_range(-cfg.jitter..=cfg.jitter), rng.gen_range(-cfg.jitter..=cfg.jitter));
            let x = (a.tanh() + 1.0) * 0.5;
            let input = (x.roll([dy, dx], [2, 3]) - &mean) / &std;
            let (logits, stats) = with_bn_probe(|| model.forward_frozen(&input));
            let ce = logits.cross_entropy_for_logits(&y);
            let bn = bn_distance(&stats, device);
            let loss = &ce + &bn * cfg.bn_weight + tv2(&x).mean(Kind::Float) * cfg.tv_weight;
            let v = loss.double_value(&[]);
            if !v.is_finite() {
                return Err(Error::Diverged {
                    epoch: 0,
                    step,
                    loss: v,
                    remedy: "model inversion diverged: check the input normalization, or use noise or data seeds",
                });
            }
            let grads = Tensor::run_backward(&[loss], &[&a], false, false);
            adam.step(&mut [&mut a], &grads);
        }
        let x = tch::no_grad(|| (a.tanh() + 1.0) * 0.5);
        let input = (&x - &mean) / &std;
        let (logits, stats) = tch::no_grad(|| with_bn_probe(|| model.forward_frozen(&input)));
        hits += logits.argmax(-1, false).eq_tensor(&y).sum(Kind::Int64).int64_value(&[]);
        ce_sum += logits.cross_entropy_for_logits(&y).double_value(&[]) * b as f64;
        bn_sum += bn_distance(&stats, device).double_value(&[]) / stats.len().max(1) as f64 * b as f64;
        // [B, C, H, W] in [0,1] -> HWC bytes
        let bytes = (x * 255.0)
            .round()
            .clamp(0.0, 255.0)
            .to_kind(Kind::Uint8)
            .permute([0, 2, 3, 1])
            .contiguous()
            .to_device(tch::Device::Cpu);
        let v: Vec<u8> = Vec::try_from(bytes.flatten(0, -1)).expect("uint8 pixels");
        pixels.extend(v);
    }
    let n = cfg.n;
    let set = ImageSet {
        images: pixels,
        labels,
        n,
        height: h,
        width: w,
        channels: c,
        classes: (0..k).map(|i| i.to_string()).collect(),
    };
    let summary = SynthSummary {
        accuracy: hits as f64 / n as f64,
        bn_distance: bn_sum / n as f64,
        cross_entropy: ce_sum / n as f64,
        seconds: t0.elapsed().as_secs_f64(),
    };
    progress.finish();
    Ok((set, summary))
}

/// `Σ_l ‖μ_l − μ̂_l‖₂ + ‖σ²_l − σ̂²_l‖₂` (0 without BN layers).
fn bn_distance(stats: &[crate::model::BnStat], device: tch::Device) -> Tensor {
    stats.iter().fold(Tensor::zeros([], (Kind::Float, device)), |acc, s| {
        acc + (&s.mean - &s.running_mean).norm() + (&s.var - &s.running_var).norm()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Arch, ModelMeta};

    #[test]
    fn inversion_matches_labels_and_statistics_and_is_seeded() {
        tch::manual_seed(0);
        let model = Model::new(
            ModelMeta { arch: Arch::Cnn, in_channels: 1, height: 12, width: 12, num_classes: 3, script: None },
            tch::Device::Cpu,
        )
        .unwrap();
        let norm = Normalization { mean: vec![0.5], std: vec![0.25] };
        let mut cfg = SynthConfig::new(6, 1);
        cfg.steps = 1;
        let (_, before) = synthesize(&model, &norm, &cfg).unwrap();
        cfg.steps = 60;
        let (a, after) = synthesize(&model, &norm, &cfg).unwrap();
        let (b, _) = synthesize(&model, &norm, &cfg).unwrap();
        assert_eq!(a.images, b.images, "same seed, same images");
        assert_eq!((a.n, a.height, a.width, a.channels, a.images.len()), (6, 12, 12, 1, 6 * 144));
        assert_eq!(a.labels, vec![0, 1, 2, 0, 1, 2]);
        assert!(after.bn_distance < 0.9 * before.bn_distance, "{before:?} -> {after:?}");
        // The class term alone drives every image to its label.
        cfg.bn_weight = 0.0;
        let (_, class_only) = synthesize(&model, &norm, &cfg).unwrap();
        assert!(
            class_only.cross_entropy < 0.9 * before.cross_entropy && class_only.accuracy == 1.0,
            "{before:?} -> {class_only:?}"
        );
        cfg.n = 0;
        assert!(synthesize(&model, &norm, &cfg).is_err());
        // A stop asked for ends the inversion with Interrupted naming the state to resume from.
        cfg.n = 6;
        let ctl = crate::control::Control::quiet();
        ctl.cancel();
        let e = synthesize_with(&model, &norm, &cfg, &ctl, std::path::Path::new("detect-out")).unwrap_err();
        assert!(matches!(e, Error::Interrupted(ref p) if p == std::path::Path::new("detect-out")), "{e}");
    }
}
