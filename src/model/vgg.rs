//! VGG-16 with batch norm, CIFAR variant (docs/METHOD.md §3): 13 conv3x3 layers with bias, each
//! followed by BN and ReLU, max-pool after stages of 2, 2, 3, 3, 3 convs, then one
//! Linear(512 -> classes) named `classifier`. Conv/BN layers are named `features.{i}` by their index
//! in PyTorch's `nn.Sequential` (conv, BN, ReLU take one index each, as does each max-pool). A
//! max-pool whose input is already 1x1 (inputs smaller than 32x32, e.g. 28x28) is skipped; at 32x32
//! and above nothing changes.
use tch::nn;
use tch::Tensor;

use super::arch::ArchSpec;
use super::layers::{linear, ConvBn, Mode};
use super::{ModelMeta, Net};

const CFG: [i64; 18] = [64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0];

#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // 13 per network, built once
enum Layer {
    ConvBn(ConvBn),
    Pool,
}

/// VGG-16-BN in the registry.
pub(super) struct Vgg16BnSpec;

impl ArchSpec for Vgg16BnSpec {
    fn build(&self, root: &nn::Path, meta: &ModelMeta) -> crate::error::Result<Box<dyn Net>> {
        Ok(Box::new(Vgg16Bn::new(root, meta.in_channels as i64, meta.num_classes as i64)))
    }
    fn head(&self) -> &'static str {
        "classifier.weight"
    }
    fn stem(&self) -> &'static str {
        "features.0.weight"
    }
    fn reverse_images_at_32x32(&self) -> usize {
        64
    }
}

#[derive(Debug)]
struct Vgg16Bn {
    layers: Vec<Layer>,
    classifier: nn::Linear,
}

impl Vgg16Bn {
    fn new(p: &nn::Path, in_channels: i64, num_classes: i64) -> Self {
        let f = p / "features";
        let (mut layers, mut idx, mut cin) = (vec![], 0, in_channels);
        for &c in &CFG {
            if c == 0 {
                layers.push(Layer::Pool);
                idx += 1;
            } else {
                layers.push(Layer::ConvBn(ConvBn::new(&f / idx, &f / (idx + 1), cin, c, 3, 1, 1, true)));
                idx += 3;
                cin = c;
            }
        }
        Vgg16Bn { layers, classifier: linear(p / "classifier", 512, num_classes) }
    }
}

impl Net for Vgg16Bn {
    fn forward(&self, x: &Tensor, mode: Mode) -> Tensor {
        let mut out = x.shallow_clone();
        for l in &self.layers {
            out = match l {
                Layer::ConvBn(cb) => cb.forward(&out, mode).relu(),
                Layer::Pool if out.size()[2] >= 2 && out.size()[3] >= 2 => {
                    out.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false)
                }
                Layer::Pool => out,
            };
        }
        // [N, 512, h, w] -> [N, 512]
        out.adaptive_avg_pool2d([1, 1]).flatten(1, -1).apply(&self.classifier)
    }
}
