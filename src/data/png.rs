//! PNG writers for uint8 HWC images: single images (scaled up for visibility) and grids of samples.
use std::path::Path;

use image::ImageEncoder;

use super::ImageSet;
use crate::error::{Error, Result};
use crate::util::write_atomic;

fn encode(path: &Path, pixels: &[u8], h: usize, w: usize, c: usize) -> Result<()> {
    let color = if c == 1 { image::ExtendedColorType::L8 } else { image::ExtendedColorType::Rgb8 };
    let mut bytes = vec![];
    image::codecs::png::PngEncoder::new(&mut bytes)
        .write_image(pixels, w as u32, h as u32, color)
        .map_err(|e| Error::bad_file(path, format!("cannot encode PNG: {e}")))?;
    write_atomic(path, &bytes)
}

/// Writes an HWC image, each pixel repeated `scale` times in both directions.
pub fn write_hwc(path: &Path, pixels: &[u8], h: usize, w: usize, c: usize, scale: usize) -> Result<()> {
    let s = scale.max(1);
    let (hh, ww) = (h * s, w * s);
    let mut out = vec![0u8; hh * ww * c];
    for y in 0..hh {
        for x in 0..ww {
            let src = ((y / s) * w + x / s) * c;
            out[(y * ww + x) * c..(y * ww + x + 1) * c].copy_from_slice(&pixels[src..src + c]);
        }
    }
    encode(path, &out, hh, ww, c)
}

/// Writes up to `rows x cols` images of `set` as a grid with 2-pixel gaps, scaled x2.
pub fn write_grid(path: &Path, set: &ImageSet, rows: usize, cols: usize) -> Result<()> {
    let (h, w, c, gap) = (set.height, set.width, set.channels, 2);
    let (gh, gw) = (rows * (h + gap) + gap, cols * (w + gap) + gap);
    let mut out = vec![255u8; gh * gw * c];
    for k in 0..set.n.min(rows * cols) {
        let (r, q) = (k / cols, k % cols);
        let img = set.image(k);
        for y in 0..h {
            let dst = ((gap + r * (h + gap) + y) * gw + gap + q * (w + gap)) * c;
            out[dst..dst + w * c].copy_from_slice(&img[y * w * c..(y + 1) * w * c]);
        }
    }
    write_hwc(path, &out, gh, gw, c, 2)
}
