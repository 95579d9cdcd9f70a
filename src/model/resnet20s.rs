//! ResNet-20s (He et al. 2016, CIFAR ResNet; docs/METHOD.md §3): conv3x3(C->16)+BN+ReLU, three stages
//! of three BasicBlocks (16, 32, 64 channels; stride 2 opening stages 2 and 3), option-A shortcuts
//! (`x[:, :, ::2, ::2]` zero-padded by planes/4 channels on each side), global average pool and a
//! linear head (`fc`; checkpoints naming it `linear`, as the reference's, are accepted on import).
//! 267,696 conv weights at C = 3. Logits agree with PyTorch's (tests/golden.rs).
use tch::nn;

use super::arch::ArchSpec;
use super::resnet::{ResNet, ResNetConfig, ShortcutKind};
use super::{ModelMeta, Net};

const CONFIG: ResNetConfig = ResNetConfig {
    stem_planes: 16,
    stages: &[(16, 1), (32, 2), (64, 2)],
    blocks_per_stage: 3,
    shortcut: ShortcutKind::ZeroPad,
};

/// ResNet-20s in the registry.
pub(super) struct ResNet20sSpec;

impl ArchSpec for ResNet20sSpec {
    fn build(&self, root: &nn::Path, meta: &ModelMeta) -> crate::error::Result<Box<dyn Net>> {
        Ok(Box::new(ResNet::new(root, &CONFIG, meta.in_channels as i64, meta.num_classes as i64)))
    }
    fn head(&self) -> &'static str {
        "fc.weight"
    }
    fn stem(&self) -> &'static str {
        "conv1.weight"
    }
    fn reverse_images_at_32x32(&self) -> usize {
        256
    }
    fn import_aliases(&self) -> &'static [(&'static str, &'static str)] {
        &[("linear.", "fc.")]
    }
}
