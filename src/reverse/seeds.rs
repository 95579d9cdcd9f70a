//! Seed images: data-free noise or a few clean training images (docs/METHOD.md §6), batched per epoch in the
//! stamping space.
//!
//! Noise: standard-normal images in NORMALIZED space, as the reference (`torch.randn_like` of a
//! normalized batch), redrawn for every step. In pixel space they are mapped back WITHOUT clamping,
//! `x = z·std + mean`, so what reaches the model after stamping and normalizing is exactly the
//! reference's N(0,1) noise wherever the mask is 0 (clamping to [0,1] would turn a third of MNIST-style
//! noise into black pixels); the pattern, not the seeds, is what must be a valid image.
//! The noise comes from ChaCha8 keyed by (seed, epoch) alone, so every label (and every chunking of
//! the labels) sees the same seeds at the same step.
//!
//! Data: the first N images of a training split, reshuffled every epoch and augmented as the data
//! set's default training augmentation (`DataSpec::default_augment`: the reference's random crop with
//! 4-pixel zero padding + horizontal flip for CIFAR and folders, none for the 28x28 grayscale sets),
//! as the reference's `Subset(train_set, range(N))` loader with `shuffle=True`.
use std::path::Path;
use std::str::FromStr;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Tensor};

use super::synth::{synthesize_with, SynthConfig, SynthSummary, SYNTH_STEPS};
use super::Space;
use crate::control::Control;
use crate::data::normals;
use crate::data::{Augment, Batches, DataSpec, ImageSet, Normalization};
use crate::error::{Error, Result};
use crate::model::Model;

/// `--seeds` values: `noise:N`, `synth:N[:STEPS]` or `data:SPEC:N`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum SeedSpec {
    /// N standard-normal noise images, redrawn every step (data-free, the paper's).
    Noise(usize),
    /// N images synthesized from the model by inversion in STEPS Adam steps (data-free;
    /// src/reverse/synth.rs); `synth:N` takes [`SYNTH_STEPS`].
    Synth(usize, usize),
    /// The first N images of the training split of a data spec.
    Data(DataSpec, usize),
}

impl FromStr for SeedSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(
                "seeds",
                format!(
                    "`{s}`: expected noise:N, synth:N[:STEPS] or data:SPEC:N (e.g. noise:100, synth:100, data:builtin:100)"
                ),
            )
        };
        let count = |n: &str| n.trim().parse::<usize>().ok().filter(|&n| n > 0).ok_or_else(bad);
        if let Some(n) = s.strip_prefix("noise:") {
            return Ok(SeedSpec::Noise(count(n)?));
        }
        if let Some(rest) = s.strip_prefix("synth:") {
            return Ok(match rest.split_once(':') {
                Some((n, steps)) => SeedSpec::Synth(count(n)?, count(steps)?),
                None => SeedSpec::Synth(count(rest)?, SYNTH_STEPS),
            });
        }
        if let Some(rest) = s.strip_prefix("data:") {
            let (spec, n) = rest.rsplit_once(':').ok_or_else(bad)?;
            return Ok(SeedSpec::Data(spec.parse()?, count(n)?));
        }
        Err(bad())
    }
}

impl std::fmt::Display for SeedSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SeedSpec::Noise(n) => write!(f, "noise:{n}"),
            SeedSpec::Synth(n, steps) => write!(f, "synth:{n}:{steps}"),
            SeedSpec::Data(d, n) => write!(f, "data:{d}:{n}"),
        }
    }
}

impl From<SeedSpec> for String {
    fn from(s: SeedSpec) -> String {
        s.to_string()
    }
}

impl TryFrom<String> for SeedSpec {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl SeedSpec {
    /// The kind of seeds without their counts: `noise`, `synth` or `data:SPEC`. Mask sizes measured
    /// under one kind are comparable with each other, not with another kind's (a calibration keys its
    /// reference models by it).
    pub fn regime(&self) -> String {
        match self {
            SeedSpec::Noise(_) => "noise".into(),
            SeedSpec::Synth(..) => "synth".into(),
            SeedSpec::Data(d, _) => format!("data:{d}"),
        }
    }

    /// Loads the seed images (data seeds: the first N of the training split; synthesized seeds:
    /// inverted from `model`, with a summary of the inversion).
    /// The synthesis stops on `ctl` (returning `Interrupted(state)`) and reports its steps to `ctl`'s
    /// progress.
    pub fn load(
        &self,
        model: &Model,
        norm: &Normalization,
        seed: u64,
        ctl: &Control,
        state: &Path,
    ) -> Result<(Seeds, Option<SynthSummary>)> {
        match self {
            SeedSpec::Noise(n) => Ok((Seeds::Noise { n: *n }, None)),
            SeedSpec::Synth(n, steps) => {
                let cfg = SynthConfig { steps: *steps, ..SynthConfig::new(*n, seed) };
                let (images, summary) = synthesize_with(model, norm, &cfg, ctl, state)?;
                Ok((Seeds::Images { images, augment: Augment::NONE }, Some(summary)))
            }
            SeedSpec::Data(spec, n) => {
                let split = spec.load()?;
                if *n > split.train.n {
                    return Err(Error::invalid(
                        "seeds",
                        format!("{self}: the training split of {spec} has only {} images", split.train.n),
                    ));
                }
                let images = split.train.subset(&(0..*n).collect::<Vec<_>>());
                Ok((Seeds::Images { images, augment: spec.default_augment() }, None))
            }
        }
    }
}

/// Loads the seeds of `spec` for `model` ([`SeedSpec::load`]), telling `ctl`'s progress what is
/// happening: synthesizing seeds takes a while, and how well the inversion went is worth a line. A
/// stop asked for during the synthesis returns `Interrupted(state)`.
pub fn load_seeds(
    spec: &SeedSpec,
    model: &Model,
    norm: &Normalization,
    seed: u64,
    ctl: &Control,
    state: &Path,
) -> Result<(Seeds, Option<SynthSummary>)> {
    let progress = ctl.progress();
    if matches!(spec, SeedSpec::Synth(..)) {
        progress.note(&format!("seeds: synthesizing {spec} from the model (model inversion)"));
    }
    let (seeds, summary) = spec.load(model, norm, seed, ctl, state)?;
    if let (Seeds::Images { images, .. }, Some(s)) = (&seeds, &summary) {
        progress.note(&format!(
            "seeds: {} images in {:.1} s, {:.0}% classified as their intended label",
            images.n,
            s.seconds,
            s.accuracy * 100.0
        ));
    }
    Ok((seeds, summary))
}

/// The seed set of a reverse-engineering run.
#[derive(Debug, Clone)]
pub enum Seeds {
    /// `n` standard-normal noise images (normalized space), redrawn every step.
    Noise {
        /// Number of noise images per epoch.
        n: usize,
    },
    /// Fixed clean images, reshuffled and augmented every epoch.
    Images {
        /// The seed images.
        images: ImageSet,
        /// Augmentation applied to them every epoch.
        augment: Augment,
    },
}

impl Seeds {
    /// Number of seed images per epoch.
    pub fn len(&self) -> usize {
        match self {
            Seeds::Noise { n } => *n,
            Seeds::Images { images, .. } => images.n,
        }
    }

    /// Whether there are no seed images.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One batch of `size` seeds drawn at random for the epoch keyed by `stream` (all seeds when
    /// `size` is the seed count or more), augmented, in the stamping space: noise draws `size`
    /// fresh images, data seeds are the first `size` of the epoch's shuffle.
    pub fn sample(
        &self,
        size: usize,
        stream: u64,
        space: Space,
        norm: &Normalization,
        shape: (usize, usize, usize),
        device: Device,
    ) -> Tensor {
        let size = size.clamp(1, self.len().max(1));
        let first = |mut v: Vec<Tensor>| v.swap_remove(0);
        match self {
            Seeds::Noise { .. } => {
                first(Seeds::Noise { n: size }.batches(size, stream, true, space, norm, shape, device))
            }
            Seeds::Images { images, augment } => {
                let view = match space {
                    Space::Pixel => Normalization::none(shape.0),
                    Space::Normalized => norm.clone(),
                };
                let mut batches = Batches::new(images, size, &view, *augment, Some(stream), device);
                batches.next().expect("at least one seed image").images
            }
        }
    }

    /// One epoch of seed batches (`batch_size` images, the last one shorter) in the stamping space:
    /// pixel values in \[0,1\] (noise: unclamped) for `Space::Pixel`, normalized values otherwise.
    /// `augmented = false` gives the un-augmented images in dataset order (final evaluation).
    #[allow(clippy::too_many_arguments)]
    pub fn batches(
        &self,
        batch_size: usize,
        stream: u64,
        augmented: bool,
        space: Space,
        norm: &Normalization,
        (c, h, w): (usize, usize, usize),
        device: Device,
    ) -> Vec<Tensor> {
        let bs = batch_size.max(1);
        match self {
            Seeds::Noise { n } => {
                let mut rng = ChaCha8Rng::seed_from_u64(stream);
                let mut out = vec![];
                let mut left = *n;
                while left > 0 {
                    let b = left.min(bs);
                    left -= b;
                    let mut z = normals(&mut rng, b * c * h * w);
                    if space == Space::Pixel {
                        for (i, v) in z.iter_mut().enumerate() {
                            let ch = (i / (h * w)) % c;
                            *v = *v * norm.std[ch] + norm.mean[ch];
                        }
                    }
                    out.push(Tensor::from_slice(&z).view([b as i64, c as i64, h as i64, w as i64]).to_device(device));
                }
                out
            }
            Seeds::Images { images, augment } => {
                let view = match space {
                    Space::Pixel => Normalization::none(c),
                    Space::Normalized => norm.clone(),
                };
                let batches = if augmented {
                    Batches::new(images, bs, &view, *augment, Some(stream), device)
                } else {
                    Batches::new(images, bs, &view, Augment::NONE, None, device)
                };
                batches.map(|b| b.images).collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_seed_specs() {
        assert_eq!("noise:100".parse::<SeedSpec>().unwrap(), SeedSpec::Noise(100));
        assert_eq!("data:builtin:10".parse::<SeedSpec>().unwrap(), SeedSpec::Data(DataSpec::Builtin, 10));
        assert_eq!("synth:64".parse::<SeedSpec>().unwrap(), SeedSpec::Synth(64, SYNTH_STEPS));
        assert_eq!("synth:64:50".parse::<SeedSpec>().unwrap(), SeedSpec::Synth(64, 50));
        assert_eq!(SeedSpec::Synth(64, 50).to_string(), "synth:64:50");
        let s: SeedSpec = "data:cifar10:/d/c10:100".parse().unwrap();
        assert_eq!(s.to_string(), "data:cifar10:/d/c10:100");
        for bad in ["noise:0", "noise:x", "data:builtin", "pixels:3", "synth:0", "synth:5:0", "synth:5:x"] {
            assert!(bad.parse::<SeedSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn noise_is_standard_normal_and_maps_to_pixels() {
        let z = normals(&mut ChaCha8Rng::seed_from_u64(1), 100_000);
        let mean = z.iter().map(|&v| v as f64).sum::<f64>() / z.len() as f64;
        let var = z.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / z.len() as f64;
        assert!(mean.abs() < 0.02 && (var - 1.0).abs() < 0.02, "{mean} {var}");
        let norm = Normalization { mean: vec![0.5], std: vec![0.25] };
        let seeds = Seeds::Noise { n: 5 };
        let px = seeds.batches(2, 7, true, Space::Pixel, &norm, (1, 4, 4), Device::Cpu);
        let nz = seeds.batches(2, 7, true, Space::Normalized, &norm, (1, 4, 4), Device::Cpu);
        assert_eq!(px.iter().map(|t| t.size()[0]).collect::<Vec<_>>(), vec![2, 2, 1]);
        // Same stream: pixel = z*std + mean exactly.
        let back = (&px[1] - 0.5) / 0.25;
        assert!((back - &nz[1]).abs().max().double_value(&[]) < 1e-6);
    }
}
