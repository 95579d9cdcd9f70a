//! Data-free inputs: uint8 images whose normalized values are N(0, 1) (clamped to the pixel range),
//! i.e. pixel = round(255·(mean + std·z)); labels come from a model (its own predictions).
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::{ImageSet, Normalization};

/// `n` seeded noise images of shape (h, w, c) with all labels 0 (to be relabelled by a model);
/// `num_classes` only names the classes.
pub fn noise_set(
    n: usize,
    (h, w, c): (usize, usize, usize),
    norm: &Normalization,
    num_classes: usize,
    seed: u64,
) -> ImageSet {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x004E_4F49_5345);
    let mut images = vec![0u8; n * h * w * c];
    for (i, p) in images.iter_mut().enumerate() {
        let ch = i % c;
        let z: f32 = StandardNormal.sample(&mut rng);
        *p = (255.0 * (norm.mean[ch] + norm.std[ch] * z)).round().clamp(0.0, 255.0) as u8;
    }
    ImageSet {
        images,
        labels: vec![0; n],
        n,
        height: h,
        width: w,
        channels: c,
        classes: (0..num_classes).map(|i| i.to_string()).collect(),
    }
}

/// `n` standard normals (Box–Muller over ChaCha8).
pub fn normals(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        // u1 in (0, 1] so that ln(u1) is finite.
        let u1: f64 = 1.0 - rng.gen::<f64>();
        let u2: f64 = rng.gen();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
        out.push((r * c) as f32);
        out.push((r * s) as f32);
    }
    out.truncate(n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_seeded_and_centred_on_the_mean() {
        let norm = Normalization { mean: vec![0.5], std: vec![0.1] };
        let a = noise_set(50, (8, 8, 1), &norm, 10, 1);
        let b = noise_set(50, (8, 8, 1), &norm, 10, 1);
        assert_eq!(a.images, b.images);
        let mean = a.images.iter().map(|&v| v as f64).sum::<f64>() / a.images.len() as f64;
        assert!((mean - 127.5).abs() < 3.0, "{mean}");
    }
}
