//! The `builtin` data set, embedded in the binary so the demo needs no download: a class-balanced
//! subset of Fashion-MNIST (Zalando SE, MIT licence; taken from the Debian package
//! `dataset-fashion-mnist`): the first 600 training images of each class (6,000) and the first 100
//! test images of each class (1,000), 28x28 grayscale. Built by `tools/make_builtin.py`; see
//! `data/builtin/README.md`.
use super::Split;
use crate::error::Result;

const TRAIN_IMAGES: &[u8] = include_bytes!("../../data/builtin/train-images-idx3-ubyte.gz");
const TRAIN_LABELS: &[u8] = include_bytes!("../../data/builtin/train-labels-idx1-ubyte.gz");
const TEST_IMAGES: &[u8] = include_bytes!("../../data/builtin/t10k-images-idx3-ubyte.gz");
const TEST_LABELS: &[u8] = include_bytes!("../../data/builtin/t10k-labels-idx1-ubyte.gz");

/// Decodes the embedded `builtin` train and test sets (Fashion-MNIST class names).
pub fn builtin() -> Result<Split> {
    let classes = imagesets::FASHION_MNIST_CLASSES;
    let mut train = imagesets::idx_pair_from_bytes(TRAIN_IMAGES, TRAIN_LABELS, "builtin/train")?;
    let mut test = imagesets::idx_pair_from_bytes(TEST_IMAGES, TEST_LABELS, "builtin/t10k")?;
    for set in [&mut train, &mut test] {
        set.classes = classes.iter().map(|s| s.to_string()).collect();
    }
    Ok(Split { train, test: Some(test) })
}
