//! Evaluation: clean accuracy and mean cross-entropy of a model in eval mode (BN running statistics).
use tch::Kind;

use crate::data::{Augment, Batches, ImageSet, Normalization};
use crate::model::Model;

/// Clean accuracy and mean loss of a model over a set.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EvalResult {
    /// Fraction of images classified correctly, in [0, 1].
    pub accuracy: f64,
    /// Mean cross-entropy per image (nats).
    pub loss: f64,
    /// Number of images evaluated.
    pub n: usize,
}

/// Accuracy and loss over `set` (dataset order, no augmentation, no gradients).
pub fn evaluate(model: &Model, set: &ImageSet, norm: &Normalization, batch_size: usize) -> EvalResult {
    let (mut correct, mut loss, mut n) = (0i64, 0.0, 0usize);
    tch::no_grad(|| {
        for b in Batches::new(set, batch_size, norm, Augment::NONE, None, model.device()) {
            let logits = model.forward_frozen(&b.images);
            loss += logits.cross_entropy_for_logits(&b.labels).double_value(&[]) * b.indices.len() as f64;
            correct += logits.argmax(-1, false).eq_tensor(&b.labels).sum(Kind::Int64).int64_value(&[]);
            n += b.indices.len();
        }
    });
    EvalResult { accuracy: correct as f64 / n.max(1) as f64, loss: loss / n.max(1) as f64, n }
}

/// The model's predicted labels for every image of `set` (labels for data-free inputs).
pub fn predict(model: &Model, set: &ImageSet, norm: &Normalization) -> Vec<u32> {
    let mut out = vec![0u32; set.n];
    tch::no_grad(|| {
        for b in Batches::new(set, 500, norm, Augment::NONE, None, model.device()) {
            let p: Vec<i64> =
                Vec::try_from(model.forward_frozen(&b.images).argmax(-1, false).to_device(tch::Device::Cpu))
                    .expect("int64 vector");
            for (i, v) in b.indices.iter().zip(p) {
                out[*i] = v as u32;
            }
        }
    });
    out
}
