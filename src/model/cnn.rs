//! A small CNN for 28x28 (and other small) inputs: two stages of two conv3x3+BN+ReLU layers (32 and 64
//! channels) each closed by a 2x2 max-pool, then `fc1` (flattened features -> 128) + ReLU and `fc2`.
//! Flattening keeps spatial position, so a corner patch trigger is easy to learn. Its accuracy and
//! training time on `builtin` data: README (results table).
use tch::nn;
use tch::Tensor;

use torchfile::RawTensor;

use super::arch::ArchSpec;
use super::layers::{linear, ConvBn, Mode};
use super::{ModelMeta, Net};

/// Channels of the last conv: `fc1` sees `WIDTH * (H/4) * (W/4)` features.
const WIDTH: i64 = 64;

/// The small CNN in the registry.
pub(super) struct SmallCnnSpec;

impl ArchSpec for SmallCnnSpec {
    fn build(&self, root: &nn::Path, meta: &ModelMeta) -> crate::error::Result<Box<dyn Net>> {
        let (c, h, w, k) = (meta.in_channels as i64, meta.height as i64, meta.width as i64, meta.num_classes as i64);
        Ok(Box::new(SmallCnn::new(root, c, h, w, k)))
    }
    fn head(&self) -> &'static str {
        "fc2.weight"
    }
    fn stem(&self) -> &'static str {
        "conv1.weight"
    }
    fn reverse_images_at_32x32(&self) -> usize {
        1024
    }
    /// Read off `fc1`'s input features, `WIDTH * (side/4)^2` (square images).
    fn image_size(&self, tensors: &[(String, RawTensor)]) -> Option<usize> {
        let (_, fc1) = tensors.iter().find(|(k, _)| k == "fc1.weight")?;
        let flat = *fc1.shape.get(1)?;
        let quarter = ((flat / WIDTH as usize) as f64).sqrt().round() as usize;
        (quarter > 0 && WIDTH as usize * quarter * quarter == flat).then_some(4 * quarter)
    }
}

#[derive(Debug)]
struct SmallCnn {
    convs: Vec<ConvBn>,
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl SmallCnn {
    fn new(p: &nn::Path, in_channels: i64, height: i64, width: i64, num_classes: i64) -> Self {
        let chans = [(in_channels, 32), (32, 32), (32, WIDTH), (WIDTH, WIDTH)];
        let convs = chans
            .iter()
            .enumerate()
            .map(|(i, &(a, b))| {
                ConvBn::new(p / format!("conv{}", i + 1), p / format!("bn{}", i + 1), a, b, 3, 1, 1, false)
            })
            .collect();
        let flat = WIDTH * (height / 4) * (width / 4);
        SmallCnn { convs, fc1: linear(p / "fc1", flat, 128), fc2: linear(p / "fc2", 128, num_classes) }
    }
}

impl Net for SmallCnn {
    fn forward(&self, x: &Tensor, mode: Mode) -> Tensor {
        let mut out = x.shallow_clone();
        for (i, cb) in self.convs.iter().enumerate() {
            out = cb.forward(&out, mode).relu();
            if i % 2 == 1 {
                out = out.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
            }
        }
        // [N, 64, H/4, W/4] -> [N, 64*(H/4)*(W/4)]
        out.flatten(1, -1).apply(&self.fc1).relu().apply(&self.fc2)
    }
}
