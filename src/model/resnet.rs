//! The CIFAR ResNets' shared structure (He et al. 2016; docs/METHOD.md §3): a conv3x3+BN+ReLU stem
//! (`conv1`, `bn1`), stages of BasicBlocks (`layer{s}.{i}`: conv3x3+BN+ReLU, conv3x3+BN, plus the
//! shortcut, then ReLU; the first block of a stage takes its stride), global average pool and a
//! linear head `fc`. [`ResNetConfig`] says what differs between ResNet-20s and ResNet-18.
use tch::nn;
use tch::Tensor;

use super::layers::{linear, ConvBn, Mode};
use super::Net;

/// How a block whose shape changes (stride or channels) carries its input to the sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ShortcutKind {
    /// Option A: `x[:, :, ::2, ::2]` zero-padded by `planes / 4` channels on each side; no
    /// parameters (ResNet-20s).
    ZeroPad,
    /// A 1x1 conv with the block's stride + BN, named `shortcut.0` and `shortcut.1` (ResNet-18).
    Conv,
}

/// One CIFAR ResNet.
#[derive(Debug, Clone, Copy)]
pub(super) struct ResNetConfig {
    /// Channels of the stem.
    pub stem_planes: i64,
    /// `(planes, stride)` of each stage, in order.
    pub stages: &'static [(i64, i64)],
    /// BasicBlocks per stage.
    pub blocks_per_stage: usize,
    /// Shortcut of the blocks that change shape.
    pub shortcut: ShortcutKind,
}

#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // a handful per network, built once
enum Shortcut {
    Identity,
    /// Option A: channels padded on each side.
    ZeroPad(i64),
    Conv(ConvBn),
}

#[derive(Debug)]
struct Block {
    c1: ConvBn,
    c2: ConvBn,
    shortcut: Shortcut,
}

impl Block {
    fn new(p: nn::Path, cin: i64, planes: i64, stride: i64, kind: ShortcutKind) -> Self {
        // A projection's variables are created before the block's convs (the initialization order,
        // hence the weights drawn after `tch::manual_seed`, is part of reproducibility).
        let shortcut = match kind {
            _ if stride == 1 && cin == planes => Shortcut::Identity,
            ShortcutKind::ZeroPad => Shortcut::ZeroPad(planes / 4),
            ShortcutKind::Conv => {
                let s = &p / "shortcut";
                Shortcut::Conv(ConvBn::new(&s / 0, &s / 1, cin, planes, 1, stride, 0, false))
            }
        };
        Block {
            c1: ConvBn::new(&p / "conv1", &p / "bn1", cin, planes, 3, stride, 1, false),
            c2: ConvBn::new(&p / "conv2", &p / "bn2", planes, planes, 3, 1, 1, false),
            shortcut,
        }
    }

    fn forward(&self, x: &Tensor, mode: Mode) -> Tensor {
        let out = self.c1.forward(x, mode).relu();
        let out = self.c2.forward(&out, mode);
        let short = match &self.shortcut {
            Shortcut::Identity => x.shallow_clone(),
            // [N, C, H, W] -> [N, C + 2*pad, H/2, W/2]
            Shortcut::ZeroPad(pad) => {
                x.slice(2, 0, None, 2).slice(3, 0, None, 2).constant_pad_nd([0, 0, 0, 0, *pad, *pad])
            }
            Shortcut::Conv(s) => s.forward(x, mode),
        };
        (out + short).relu()
    }
}

/// A CIFAR ResNet built from a [`ResNetConfig`].
#[derive(Debug)]
pub(super) struct ResNet {
    stem: ConvBn,
    blocks: Vec<Block>,
    fc: nn::Linear,
}

impl ResNet {
    /// Creates the variables under `p`: the blocks stage by stage, then the stem, then the head.
    pub fn new(p: &nn::Path, cfg: &ResNetConfig, in_channels: i64, num_classes: i64) -> Self {
        let mut blocks = vec![];
        let mut cin = cfg.stem_planes;
        for (stage, &(planes, stride)) in cfg.stages.iter().enumerate() {
            for i in 0..cfg.blocks_per_stage {
                let s = if i == 0 { stride } else { 1 };
                blocks.push(Block::new(p / format!("layer{}", stage + 1) / i, cin, planes, s, cfg.shortcut));
                cin = planes;
            }
        }
        let stem = ConvBn::new(p / "conv1", p / "bn1", in_channels, cfg.stem_planes, 3, 1, 1, false);
        ResNet { stem, blocks, fc: linear(p / "fc", cin, num_classes) }
    }
}

impl Net for ResNet {
    fn forward(&self, x: &Tensor, mode: Mode) -> Tensor {
        let mut out = self.stem.forward(x, mode).relu();
        for b in &self.blocks {
            out = b.forward(&out, mode);
        }
        // [N, C, H', W'] -> [N, C]
        out.adaptive_avg_pool2d([1, 1]).flatten(1, -1).apply(&self.fc)
    }
}
