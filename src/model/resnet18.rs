//! ResNet-18, CIFAR variant (SPEC §3): 3x3 stem without max-pool, four stages of two BasicBlocks
//! (64, 128, 256, 512 channels), 1x1 conv + BN projection shortcuts (`shortcut.0`, `shortcut.1`),
//! global average pool, linear head `fc` (checkpoints naming it `linear` are accepted on import).
use tch::nn;
use tch::Tensor;

use super::layers::{linear, ConvBn, Mode};
use super::Net;

#[derive(Debug)]
struct Block {
    c1: ConvBn,
    c2: ConvBn,
    shortcut: Option<ConvBn>,
}

impl Block {
    fn new(p: nn::Path, cin: i64, planes: i64, stride: i64) -> Self {
        let shortcut = (stride != 1 || cin != planes).then(|| {
            let s = &p / "shortcut";
            ConvBn::new(&s / 0, &s / 1, cin, planes, 1, stride, 0, false)
        });
        Block {
            c1: ConvBn::new(&p / "conv1", &p / "bn1", cin, planes, 3, stride, 1, false),
            c2: ConvBn::new(&p / "conv2", &p / "bn2", planes, planes, 3, 1, 1, false),
            shortcut,
        }
    }
}

impl Block {
    fn forward(&self, x: &Tensor, mode: Mode) -> Tensor {
        let out = self.c1.forward(x, mode).relu();
        let out = self.c2.forward(&out, mode);
        let short = match &self.shortcut {
            Some(s) => s.forward(x, mode),
            None => x.shallow_clone(),
        };
        (out + short).relu()
    }
}

#[derive(Debug)]
pub struct ResNet18 {
    stem: ConvBn,
    blocks: Vec<Block>,
    fc: nn::Linear,
}

impl ResNet18 {
    pub fn new(p: &nn::Path, in_channels: i64, num_classes: i64) -> Self {
        let mut blocks = vec![];
        let mut cin = 64;
        for (stage, (planes, stride)) in [(64, 1), (128, 2), (256, 2), (512, 2)].into_iter().enumerate() {
            for i in 0..2 {
                blocks.push(Block::new(p / format!("layer{}", stage + 1) / i, cin, planes, if i == 0 { stride } else { 1 }));
                cin = planes;
            }
        }
        ResNet18 { stem: ConvBn::new(p / "conv1", p / "bn1", in_channels, 64, 3, 1, 1, false), blocks, fc: linear(p / "fc", 512, num_classes) }
    }
}

impl Net for ResNet18 {
    fn forward(&self, x: &Tensor, mode: Mode) -> Tensor {
        let mut out = self.stem.forward(x, mode).relu();
        for b in &self.blocks {
            out = b.forward(&out, mode);
        }
        // [N, 512, H', W'] -> [N, 512]
        out.adaptive_avg_pool2d([1, 1]).flatten(1, -1).apply(&self.fc)
    }
}
