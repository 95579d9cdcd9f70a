//! ResNet-20s (He et al. 2016, CIFAR ResNet; SPEC §3): conv3x3(C->16)+BN+ReLU, three stages of three
//! BasicBlocks (16, 32, 64 channels; stride 2 opening stages 2 and 3), option-A shortcuts
//! (`x[:, :, ::2, ::2]` zero-padded by planes/4 channels on each side), global average pool and a
//! linear head (`fc`). 267,696 conv weights at C = 3. Logits equal PyTorch's to 1e-5 (tests/golden.rs).
use tch::nn;
use tch::Tensor;

use super::layers::{linear, ConvBn, Mode};
use super::Net;

#[derive(Debug)]
struct Block {
    c1: ConvBn,
    c2: ConvBn,
    /// Option-A shortcut: (stride, channels padded on each side), or identity.
    shortcut: Option<i64>,
}

impl Block {
    fn new(p: nn::Path, cin: i64, planes: i64, stride: i64) -> Self {
        Block {
            c1: ConvBn::new(&p / "conv1", &p / "bn1", cin, planes, 3, stride, 1, false),
            c2: ConvBn::new(&p / "conv2", &p / "bn2", planes, planes, 3, 1, 1, false),
            shortcut: (stride != 1 || cin != planes).then_some(planes / 4),
        }
    }
}

impl Block {
    fn forward(&self, x: &Tensor, mode: Mode) -> Tensor {
        let out = self.c1.forward(x, mode).relu();
        let out = self.c2.forward(&out, mode);
        let short = match self.shortcut {
            // [N, C, H, W] -> [N, C + 2*pad, H/2, W/2]
            Some(pad) => x.slice(2, 0, None, 2).slice(3, 0, None, 2).constant_pad_nd([0, 0, 0, 0, pad, pad]),
            None => x.shallow_clone(),
        };
        (out + short).relu()
    }
}

#[derive(Debug)]
pub struct ResNet20s {
    stem: ConvBn,
    blocks: Vec<Block>,
    fc: nn::Linear,
}

impl ResNet20s {
    pub fn new(p: &nn::Path, in_channels: i64, num_classes: i64) -> Self {
        let mut blocks = vec![];
        let mut cin = 16;
        for (stage, (planes, stride)) in [(16, 1), (32, 2), (64, 2)].into_iter().enumerate() {
            for i in 0..3 {
                let s = if i == 0 { stride } else { 1 };
                blocks.push(Block::new(p / format!("layer{}", stage + 1) / i, cin, planes, s));
                cin = planes;
            }
        }
        ResNet20s {
            stem: ConvBn::new(p / "conv1", p / "bn1", in_channels, 16, 3, 1, 1, false),
            blocks,
            fc: linear(p / "fc", 64, num_classes),
        }
    }
}

impl Net for ResNet20s {
    fn forward(&self, x: &Tensor, mode: Mode) -> Tensor {
        let mut out = self.stem.forward(x, mode).relu();
        for b in &self.blocks {
            out = b.forward(&out, mode);
        }
        // [N, 64, H', W'] -> [N, 64]
        out.adaptive_avg_pool2d([1, 1]).flatten(1, -1).apply(&self.fc)
    }
}
