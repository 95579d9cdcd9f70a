//! WaNet (Nguyen & Tran, ICLR 2021): an imperceptible warping trigger. A random `k x k` field of 2-D
//! offsets, normalised by its mean absolute value, is upsampled bicubically (align_corners) to the image
//! size and scaled by `s / H`; the warped image samples the original bilinearly at
//! `identity + field`, clamped to [-1, 1] (as `F.grid_sample(..., align_corners=True)`).
//! Noise mode adds, for "cross" samples, a fresh random offset `U(-1, 1) / H` per pixel and keeps their
//! labels, which teaches the network that only the exact warp is the trigger.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

/// A warping field: for each output pixel, the normalized (x, y) source coordinate in [-1, 1].
#[derive(Debug, Clone)]
pub struct WarpField {
    /// Image rows.
    pub height: usize,
    /// Image columns.
    pub width: usize,
    /// `[H*W*2]` (x, y) pairs, row-major.
    pub grid: Vec<f32>,
}

impl WarpField {
    /// A random field for `height x width` images from a `k x k` grid, scaled by `strength`.
    pub fn new(height: usize, width: usize, k: usize, strength: f64, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let k = k.max(2);
        let ins: Vec<f32> = (0..2 * k * k).map(|_| rng.gen::<f32>() * 2.0 - 1.0).collect();
        let mean_abs = ins.iter().map(|v| v.abs()).sum::<f32>() / ins.len() as f32;
        let ins: Vec<f32> = ins.iter().map(|v| v / mean_abs).collect();
        // [1, 2, k, k] -> [1, 2, H, W]
        let up = Tensor::from_slice(&ins).view([1, 2, k as i64, k as i64]).to_device(Device::Cpu);
        let up =
            up.upsample_bicubic2d([height as i64, width as i64], true, None, None).to_kind(Kind::Float).contiguous();
        let field: Vec<f32> = Vec::try_from(up.view([-1])).expect("float field");
        let (h, w) = (height, width);
        let lin = |i: usize, n: usize| if n > 1 { -1.0 + 2.0 * i as f32 / (n - 1) as f32 } else { 0.0 };
        let mut grid = vec![0f32; h * w * 2];
        for y in 0..h {
            for x in 0..w {
                let o = (y * w + x) * 2;
                grid[o] = (lin(x, w) + strength as f32 * field[y * w + x] / h as f32).clamp(-1.0, 1.0);
                grid[o + 1] = (lin(y, h) + strength as f32 * field[h * w + y * w + x] / h as f32).clamp(-1.0, 1.0);
            }
        }
        WarpField { height, width, grid }
    }

    /// Warps a uint8 HWC image; with `noise`, adds per-pixel offsets drawn from `rng` (noise mode).
    pub fn warp(&self, img: &mut [u8], channels: usize, noise: Option<&mut ChaCha8Rng>) {
        let (h, w, c) = (self.height, self.width, channels);
        let src = img.to_vec();
        let mut noise = noise;
        for y in 0..h {
            for x in 0..w {
                let o = (y * w + x) * 2;
                let (mut gx, mut gy) = (self.grid[o], self.grid[o + 1]);
                if let Some(r) = noise.as_deref_mut() {
                    gx = (gx + (r.gen::<f32>() * 2.0 - 1.0) / h as f32).clamp(-1.0, 1.0);
                    gy = (gy + (r.gen::<f32>() * 2.0 - 1.0) / h as f32).clamp(-1.0, 1.0);
                }
                // align_corners=True: -1 -> pixel 0, 1 -> pixel n-1.
                let sx = (gx + 1.0) / 2.0 * (w - 1) as f32;
                let sy = (gy + 1.0) / 2.0 * (h - 1) as f32;
                let (x0, y0) = (sx.floor() as usize, sy.floor() as usize);
                let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
                let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
                for ch in 0..c {
                    let p = |yy: usize, xx: usize| src[(yy * w + xx) * c + ch] as f32;
                    let v = (1.0 - fy) * ((1.0 - fx) * p(y0, x0) + fx * p(y0, x1))
                        + fy * ((1.0 - fx) * p(y1, x0) + fx * p(y1, x1));
                    img[(y * w + x) * c + ch] = v.round().clamp(0.0, 255.0) as u8;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_strength_is_the_identity() {
        let f = WarpField::new(6, 5, 4, 0.0, 1);
        let mut img: Vec<u8> = (0..30).map(|v| v as u8 * 7).collect();
        let orig = img.clone();
        f.warp(&mut img, 1, None);
        assert_eq!(img, orig);
    }

    #[test]
    fn warp_is_seeded_and_changes_pixels() {
        let a = WarpField::new(28, 28, 4, 1.0, 3);
        let b = WarpField::new(28, 28, 4, 1.0, 3);
        assert_eq!(a.grid, b.grid);
        let mut img: Vec<u8> = (0..28 * 28).map(|i| ((i * 37) % 256) as u8).collect();
        let orig = img.clone();
        a.warp(&mut img, 1, None);
        assert_ne!(img, orig);
        assert!(a.grid.iter().all(|v| (-1.0..=1.0).contains(v)));
    }
}
