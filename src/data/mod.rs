//! Data sets: command-line specs, the embedded `builtin` set, normalization and batching.
//!
//! Images stay uint8 HWC in memory (as the reference's CIFAR arrays); triggers are stamped on those raw
//! bytes, and only batching turns them into normalized NCHW float tensors (docs/METHOD.md §2 pipeline:
//! stamp -> random crop (zero padding) -> horizontal flip -> to \[0,1\] -> normalize).
mod builtin;
mod loader;
mod noise;
mod normalize;
pub mod png;
mod spec;

pub use builtin::builtin;
pub use imagesets::{ImageSet, Split};
pub use loader::{to_tensor, Augment, Batch, Batches};
pub use noise::{noise_set, normals};
pub use normalize::Normalization;
pub use spec::DataSpec;

use sha2::{Digest, Sha256};

/// SHA-256 over the pixels, labels and shape of a set: written next to every result.
pub fn data_hash(set: &ImageSet) -> String {
    let mut h = Sha256::new();
    for d in [set.n, set.height, set.width, set.channels] {
        h.update((d as u64).to_le_bytes());
    }
    h.update(&set.images);
    for l in &set.labels {
        h.update(l.to_le_bytes());
    }
    format!("{:x}", h.finalize())
}
