//! Batching: uint8 HWC images -> normalized float NCHW tensors, with seeded augmentation.
//!
//! Augmentation follows torchvision's `RandomCrop(size, padding=p)` (zero padding of the raw image,
//! top-left corner uniform in [0, 2p]) then `RandomHorizontalFlip()`, fused with normalization into one
//! pass over the bytes, so batching is cheap next to a training step (timed by `quarantine bench`;
//! see BENCHMARKS.md).
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

use super::{ImageSet, Normalization};

/// Training-time augmentation. `crop_pad = 0` disables the random crop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Augment {
    /// Zero padding (pixels) on each side before a random crop back to the original size.
    pub crop_pad: usize,
    /// Random horizontal flip with probability 1/2.
    pub flip: bool,
}

impl Augment {
    /// No augmentation.
    pub const NONE: Augment = Augment { crop_pad: 0, flip: false };
    /// Whether this is [`Augment::NONE`] (no crop, no flip).
    pub fn is_none(&self) -> bool {
        self.crop_pad == 0 && !self.flip
    }
}

/// One batch of normalized images with their labels.
pub struct Batch {
    /// [N, C, H, W] float32, normalized.
    pub images: Tensor,
    /// \[N\] int64.
    pub labels: Tensor,
    /// Indices into the source set.
    pub indices: Vec<usize>,
}

/// An epoch's worth of batches over a set, in shuffled (seeded) or dataset order.
pub struct Batches<'a> {
    set: &'a ImageSet,
    order: Vec<usize>,
    pos: usize,
    batch_size: usize,
    lut: Vec<[f32; 256]>,
    augment: Augment,
    rng: ChaCha8Rng,
    device: Device,
}

impl<'a> Batches<'a> {
    /// `seed = None` keeps dataset order (evaluation, the reference's unshuffled finetune loader);
    /// with a seed, the order is a seeded permutation and augmentation draws from the same stream.
    pub fn new(
        set: &'a ImageSet,
        batch_size: usize,
        norm: &Normalization,
        augment: Augment,
        seed: Option<u64>,
        device: Device,
    ) -> Self {
        let mut order: Vec<usize> = (0..set.n).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(seed.unwrap_or(0));
        if seed.is_some() {
            order.shuffle(&mut rng);
        }
        Self::with_order(set, order, batch_size, norm, augment, rng, device)
    }

    /// Batches over `order` (indices into `set`) as given; `rng` drives augmentation only.
    pub fn with_order(
        set: &'a ImageSet,
        order: Vec<usize>,
        batch_size: usize,
        norm: &Normalization,
        augment: Augment,
        rng: ChaCha8Rng,
        device: Device,
    ) -> Self {
        Batches {
            set,
            order,
            pos: 0,
            batch_size: batch_size.max(1),
            lut: luts(norm, set.channels),
            augment,
            rng,
            device,
        }
    }

    /// Total number of batches in the epoch (the last may be short).
    pub fn len(&self) -> usize {
        self.order.len().div_ceil(self.batch_size)
    }

    /// Whether the epoch has no images at all.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

impl Iterator for Batches<'_> {
    type Item = Batch;
    fn next(&mut self) -> Option<Batch> {
        if self.pos >= self.order.len() {
            return None;
        }
        let end = (self.pos + self.batch_size).min(self.order.len());
        let idx = self.order[self.pos..end].to_vec();
        self.pos = end;
        let s = self.set;
        let (c, h, w) = (s.channels, s.height, s.width);
        let mut buf = vec![0f32; idx.len() * c * h * w];
        for (k, &i) in idx.iter().enumerate() {
            let (dy, dx, flip) = if self.augment.is_none() {
                (0, 0, false)
            } else {
                let p = self.augment.crop_pad as isize;
                let dy = if p > 0 { self.rng.gen_range(0..=2 * p) - p } else { 0 };
                let dx = if p > 0 { self.rng.gen_range(0..=2 * p) - p } else { 0 };
                let flip = self.augment.flip && self.rng.gen_bool(0.5);
                (dy, dx, flip)
            };
            write_chw(s.image(i), (c, h, w), dy, dx, flip, &self.lut, &mut buf[k * c * h * w..(k + 1) * c * h * w]);
        }
        let images =
            Tensor::from_slice(&buf).view([idx.len() as i64, c as i64, h as i64, w as i64]).to_device(self.device);
        let labels: Vec<i64> = idx.iter().map(|&i| s.labels[i] as i64).collect();
        let labels = Tensor::from_slice(&labels).to_device(self.device);
        Some(Batch { images, labels, indices: idx })
    }
}

fn luts(norm: &Normalization, channels: usize) -> Vec<[f32; 256]> {
    (0..channels)
        .map(|ch| {
            let (m, sd) = (norm.mean[ch.min(norm.mean.len() - 1)], norm.std[ch.min(norm.std.len() - 1)]);
            let mut t = [0f32; 256];
            for (v, x) in t.iter_mut().enumerate() {
                *x = (v as f32 / 255.0 - m) / sd;
            }
            t
        })
        .collect()
}

/// Writes one HWC uint8 image as normalized CHW floats. The output pixel (y, x) reads the source at
/// (y + dy, x' + dx) where x' = W-1-x when flipped (flip applied after the crop, as torchvision);
/// outside the image it reads 0 (zero padding of the raw image).
fn write_chw(
    img: &[u8],
    (c, h, w): (usize, usize, usize),
    dy: isize,
    dx: isize,
    flip: bool,
    lut: &[[f32; 256]],
    out: &mut [f32],
) {
    for ch in 0..c {
        let l = &lut[ch];
        for y in 0..h {
            let sy = y as isize + dy;
            let row = &mut out[(ch * h + y) * w..(ch * h + y + 1) * w];
            for (x, o) in row.iter_mut().enumerate() {
                let xc = if flip { w - 1 - x } else { x };
                let sx = xc as isize + dx;
                let v = if sy < 0 || sx < 0 || sy >= h as isize || sx >= w as isize {
                    0
                } else {
                    img[(sy as usize * w + sx as usize) * c + ch]
                };
                *o = l[v as usize];
            }
        }
    }
}

/// The whole of `indices` (or the whole set) as one normalized [N, C, H, W] tensor, no augmentation.
pub fn to_tensor(set: &ImageSet, indices: Option<&[usize]>, norm: &Normalization, device: Device) -> (Tensor, Tensor) {
    let order = indices.map(|i| i.to_vec()).unwrap_or_else(|| (0..set.n).collect());
    let n = order.len().max(1);
    let mut b = Batches::with_order(set, order, n, norm, Augment::NONE, ChaCha8Rng::seed_from_u64(0), device);
    match b.next() {
        Some(batch) => (batch.images, batch.labels),
        None => (
            Tensor::zeros([0, set.channels as i64, set.height as i64, set.width as i64], (Kind::Float, device)),
            Tensor::zeros([0], (Kind::Int64, device)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ImageSet {
        // 2 images of 2x3, 1 channel: pixel value = 10*y + x (+100 for the second image).
        let mut images = vec![];
        for k in 0..2u8 {
            for y in 0..2u8 {
                for x in 0..3u8 {
                    images.push(100 * k + 10 * y + x);
                }
            }
        }
        ImageSet {
            images,
            labels: vec![3, 7],
            n: 2,
            height: 2,
            width: 3,
            channels: 1,
            classes: (0..10).map(|i| i.to_string()).collect(),
        }
    }

    #[test]
    fn crop_and_flip_match_hand_computation() {
        let lut = luts(&Normalization::none(1), 1);
        let img = tiny();
        let mut out = vec![0f32; 6];
        // Shift down-right by one: out(y,x) = in(y+1, x+1), zero outside.
        write_chw(img.image(0), (1, 2, 3), 1, 1, false, &lut, &mut out);
        let want: Vec<f32> = [11, 12, 0, 0, 0, 0].iter().map(|v| *v as f32 / 255.0).collect();
        assert_eq!(out, want);
        // Flip only: out(y,x) = in(y, 2-x).
        write_chw(img.image(0), (1, 2, 3), 0, 0, true, &lut, &mut out);
        let want: Vec<f32> = [2, 1, 0, 12, 11, 10].iter().map(|v| *v as f32 / 255.0).collect();
        assert_eq!(out, want);
    }

    #[test]
    fn normalizes_and_keeps_order_without_seed() {
        let set = tiny();
        let norm = Normalization { mean: vec![0.5], std: vec![0.25] };
        let b: Vec<Batch> = Batches::new(&set, 1, &norm, Augment::NONE, None, Device::Cpu).collect();
        assert_eq!(b.len(), 2);
        assert_eq!(b[1].indices, vec![1]);
        assert_eq!(b[1].labels.int64_value(&[0]), 7);
        let v = b[0].images.double_value(&[0, 0, 1, 2]);
        assert!((v - ((12.0 / 255.0 - 0.5) / 0.25)).abs() < 1e-6);
    }

    #[test]
    fn same_seed_same_batches() {
        let set = tiny();
        let norm = Normalization::none(1);
        let aug = Augment { crop_pad: 1, flip: true };
        let a: Vec<Tensor> = Batches::new(&set, 2, &norm, aug, Some(5), Device::Cpu).map(|b| b.images).collect();
        let b: Vec<Tensor> = Batches::new(&set, 2, &norm, aug, Some(5), Device::Cpu).map(|b| b.images).collect();
        assert!(a[0].equal(&b[0]));
    }
}
