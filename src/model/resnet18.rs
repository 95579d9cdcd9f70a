//! ResNet-18, CIFAR variant (SPEC §3): 3x3 stem without max-pool, four stages of two BasicBlocks
//! (64, 128, 256, 512 channels), 1x1 conv + BN projection shortcuts (`shortcut.0`, `shortcut.1`),
//! global average pool, linear head `fc` (checkpoints naming it `linear` are accepted on import).
use tch::nn::{self, ModuleT};
use tch::Tensor;

use super::layers::{bn, conv, linear};

#[derive(Debug)]
struct Block {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    bn2: nn::BatchNorm,
    shortcut: Option<(nn::Conv2D, nn::BatchNorm)>,
}

impl Block {
    fn new(p: nn::Path, cin: i64, planes: i64, stride: i64) -> Self {
        let shortcut = (stride != 1 || cin != planes).then(|| {
            let s = &p / "shortcut";
            (conv(&s / 0, cin, planes, 1, stride, 0, false), bn(&s / 1, planes))
        });
        Block {
            conv1: conv(&p / "conv1", cin, planes, 3, stride, 1, false),
            bn1: bn(&p / "bn1", planes),
            conv2: conv(&p / "conv2", planes, planes, 3, 1, 1, false),
            bn2: bn(&p / "bn2", planes),
            shortcut,
        }
    }
}

impl ModuleT for Block {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let out = x.apply(&self.conv1).apply_t(&self.bn1, train).relu();
        let out = out.apply(&self.conv2).apply_t(&self.bn2, train);
        let short = match &self.shortcut {
            Some((c, b)) => x.apply(c).apply_t(b, train),
            None => x.shallow_clone(),
        };
        (out + short).relu()
    }
}

#[derive(Debug)]
pub struct ResNet18 {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
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
        ResNet18 { conv1: conv(p / "conv1", in_channels, 64, 3, 1, 1, false), bn1: bn(p / "bn1", 64), blocks, fc: linear(p / "fc", 512, num_classes) }
    }
}

impl ModuleT for ResNet18 {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut out = x.apply(&self.conv1).apply_t(&self.bn1, train).relu();
        for b in &self.blocks {
            out = b.forward_t(&out, train);
        }
        // [N, 512, H', W'] -> [N, 512]
        out.adaptive_avg_pool2d([1, 1]).flatten(1, -1).apply(&self.fc)
    }
}
