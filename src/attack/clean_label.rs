//! Clean-label poisoning (Turner et al. 2019; docs/METHOD.md §2): target-class training images are perturbed by
//! untargeted L-inf PGD against a surrogate model (random start, `eps`, `step`, `steps`; the paper uses
//! 10 steps, the reference code 7), so their own features become hard to learn and the trigger stamped
//! afterwards carries the label. Labels are unchanged. PGD runs in pixel space [0, 1] and the result is
//! rounded back to uint8.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

use crate::data::{to_tensor, ImageSet, Normalization};
use crate::error::Result;
use crate::model::Model;

/// An untargeted L-inf PGD attack in pixel space [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Pgd {
    /// Radius.
    pub eps: f64,
    /// Step size.
    pub step: f64,
    /// Number of steps.
    pub steps: usize,
}

impl Default for Pgd {
    /// The paper's: eps 8/255, step 2/255, 10 steps.
    fn default() -> Self {
        Pgd { eps: 8.0 / 255.0, step: 2.0 / 255.0, steps: 10 }
    }
}

/// Perturbs the images at `indices` of `set` in place.
pub fn pgd_perturb(
    model: &Model,
    norm: &Normalization,
    set: &mut ImageSet,
    indices: &[usize],
    pgd: &Pgd,
    seed: u64,
) -> Result<()> {
    let dev = model.device();
    let c = set.channels as i64;
    let mean = Tensor::from_slice(&norm.mean).view([1, c, 1, 1]).to_device(dev);
    let std = Tensor::from_slice(&norm.std).view([1, c, 1, 1]).to_device(dev);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5047_4400);
    let len = set.image_len();
    for chunk in indices.chunks(256) {
        // Pixel-space batch [N, C, H, W] in [0, 1].
        let (x, y) = to_tensor(set, Some(chunk), &Normalization::none(set.channels), dev);
        let start: Vec<f32> = (0..x.numel()).map(|_| (rng.gen::<f64>() * 2.0 - 1.0) as f32 * pgd.eps as f32).collect();
        let mut delta = Tensor::from_slice(&start).view_as(&x).to_device(dev);
        for _ in 0..pgd.steps {
            let d = delta.detach().set_requires_grad(true);
            let xa = (&x + &d).clamp(0.0, 1.0);
            let loss = model.forward_t(&((xa - &mean) / &std), false).cross_entropy_for_logits(&y);
            let g = Tensor::run_backward(&[loss], &[&d], false, false).pop().expect("one gradient");
            delta = (d.detach() + g.sign() * pgd.step).clamp(-pgd.eps, pgd.eps);
        }
        // [N, C, H, W] in [0,1] -> [N, H, W, C] uint8
        let adv = ((&x + &delta).clamp(0.0, 1.0) * 255.0)
            .round()
            .to_kind(Kind::Uint8)
            .permute([0, 2, 3, 1])
            .contiguous()
            .to_device(tch::Device::Cpu);
        let bytes: Vec<u8> = Vec::try_from(adv.view([-1])).expect("uint8 vector");
        for (k, &i) in chunk.iter().enumerate() {
            set.images[i * len..(i + 1) * len].copy_from_slice(&bytes[k * len..(k + 1) * len]);
        }
    }
    Ok(())
}
