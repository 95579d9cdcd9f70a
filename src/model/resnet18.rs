//! ResNet-18, CIFAR variant (docs/METHOD.md §3): 3x3 stem without max-pool, four stages of two
//! BasicBlocks (64, 128, 256, 512 channels), 1x1 conv + BN projection shortcuts (`shortcut.0`,
//! `shortcut.1`), global average pool, linear head `fc` (checkpoints naming it `linear` are accepted
//! on import).
use tch::nn;

use super::arch::ArchSpec;
use super::resnet::{ResNet, ResNetConfig, ShortcutKind};
use super::{ModelMeta, Net};

const CONFIG: ResNetConfig = ResNetConfig {
    stem_planes: 64,
    stages: &[(64, 1), (128, 2), (256, 2), (512, 2)],
    blocks_per_stage: 2,
    shortcut: ShortcutKind::Conv,
};

/// ResNet-18 in the registry.
pub(super) struct ResNet18Spec;

impl ArchSpec for ResNet18Spec {
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
        64
    }
    fn import_aliases(&self) -> &'static [(&'static str, &'static str)] {
        &[("linear.", "fc.")]
    }
}
