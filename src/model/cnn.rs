//! A small CNN for 28x28 (and other small) inputs: two stages of two conv3x3+BN+ReLU layers (16 and 32
//! channels) each closed by a 2x2 max-pool, then `fc1` (flattened features -> 128) + ReLU and `fc2`.
//! Flattening keeps spatial position, so a corner patch trigger is easy to learn. On `builtin` data it
//! reaches ~87% test accuracy in ~1 minute on 2 cores (README results table).
use tch::nn;
use tch::Tensor;

use super::layers::{linear, ConvBn, Mode};
use super::Net;

#[derive(Debug)]
pub struct SmallCnn {
    convs: Vec<ConvBn>,
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl SmallCnn {
    pub fn new(p: &nn::Path, in_channels: i64, height: i64, width: i64, num_classes: i64) -> Self {
        let chans = [(in_channels, 32), (32, 32), (32, 64), (64, 64)];
        let convs = chans
            .iter()
            .enumerate()
            .map(|(i, &(a, b))| ConvBn::new(p / format!("conv{}", i + 1), p / format!("bn{}", i + 1), a, b, 3, 1, 1, false))
            .collect();
        let flat = 64 * (height / 4) * (width / 4);
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
        // [N, 32, H/4, W/4] -> [N, 32*(H/4)*(W/4)]
        out.flatten(1, -1).apply(&self.fc1).relu().apply(&self.fc2)
    }
}
