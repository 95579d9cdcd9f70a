//! Readers and writers of image-classification data sets, with no dependency on libtorch.
//!
//! Every reader gives an [`ImageSet`] (or a [`Split`] of a training and an optional test set): all
//! images of one size and channel count, as `u8` in HWC order, one `u32` label per image and the
//! class names. The writers put a set back into the format it came from, so that a modified (for
//! example poisoned) training set can be handed to other tools unchanged in form.
//!
//! | format | read | write | module |
//! | --- | --- | --- | --- |
//! | CIFAR-10 binary (`data_batch_*.bin`, `test_batch.bin`) | [`cifar10`] | [`write_cifar10_bin`], [`write_cifar10_test`] | [`cifar`] |
//! | CIFAR-100 binary (`train.bin`, `test.bin`) | [`cifar100`] | [`write_cifar100_bin`] | [`cifar`] |
//! | IDX, raw or gzipped ((Fashion-)MNIST) | [`idx_pair`], [`idx_pair_from_bytes`], [`mnist_dir`] | [`write_idx_pair`] | [`idx`] |
//! | image folder (torchvision `ImageFolder`) | [`folder()`] | [`write_folder`] | [`folder`](mod@folder) |
//!
//! Readers never panic on bad input and never trust a size declared in a header before checking it
//! against the data actually there; every error names the file and says what is wrong
//! (see [`Error`]). Writers are atomic per file: each file is written to a temporary beside it,
//! fsynced and renamed into place (crate `atomicfile`); [`write_folder`] renames a whole folder.

#![warn(missing_docs)]

mod atomic;
pub mod cifar;
mod error;
pub mod folder;
pub mod idx;
mod layout;

pub use cifar::{
    cifar10, cifar100, write_cifar100_bin, write_cifar10_bin, write_cifar10_test, Cifar100Label,
    CIFAR100_COARSE_CLASSES, CIFAR100_COARSE_OF_FINE, CIFAR100_FINE_CLASSES, CIFAR10_CLASSES,
};
pub use error::{Error, Result};
pub use folder::{folder, folder_class_names, write_folder};
pub use idx::{idx_pair, idx_pair_from_bytes, mnist_dir, write_idx_pair, FASHION_MNIST_CLASSES, MNIST_CLASSES};
pub use layout::chw_to_hwc;

/// The most elements (bytes) a declared size may have; larger headers are refused before anything
/// is allocated.
pub const MAX_ELEMENTS: usize = 1 << 31;

/// A labelled set of same-sized images held in memory.
///
/// `images` holds `n` images one after the other, each `height * width * channels` bytes in HWC
/// order (row-major: row, then column, then channel), the layout of the CIFAR python arrays and of
/// torchvision's PIL images. `labels[i]` is the class index of image `i`, an index into `classes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSet {
    /// `n * height * width * channels` bytes, HWC per image.
    pub images: Vec<u8>,
    /// `n` class indices.
    pub labels: Vec<u32>,
    /// Number of images.
    pub n: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// 1 (grayscale) or 3 (RGB).
    pub channels: usize,
    /// Class names; label `k` is `classes[k]`.
    pub classes: Vec<String>,
}

/// A training set and, where the source has one, a test set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// The training set.
    pub train: ImageSet,
    /// The test set, `None` where the source has none.
    pub test: Option<ImageSet>,
}

impl ImageSet {
    /// Bytes per image: `height * width * channels`.
    pub fn image_len(&self) -> usize {
        self.height * self.width * self.channels
    }

    /// The bytes of image `i` (HWC). Panics if `i >= n`, like slice indexing.
    pub fn image(&self, i: usize) -> &[u8] {
        let len = self.image_len();
        &self.images[i * len..(i + 1) * len]
    }

    /// The images at `idx` (in that order, repeats allowed) with their labels; same classes.
    /// Panics if an index is `>= n`, like slice indexing.
    pub fn subset(&self, idx: &[usize]) -> ImageSet {
        let len = self.image_len();
        let mut images = Vec::with_capacity(idx.len() * len);
        let mut labels = Vec::with_capacity(idx.len());
        for &i in idx {
            images.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        ImageSet {
            images,
            labels,
            n: idx.len(),
            height: self.height,
            width: self.width,
            channels: self.channels,
            classes: self.classes.clone(),
        }
    }

    /// Number of classes (`classes.len()`), whether or not every class has images.
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// How many images each class has (`num_classes()` entries; labels out of range are not counted).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for &l in &self.labels {
            if let Some(c) = counts.get_mut(l as usize) {
                *c += 1;
            }
        }
        counts
    }

    /// Replaces the class names (e.g. `FASHION_MNIST_CLASSES` for an IDX pair read with
    /// [`idx_pair`]) and checks that every label is still in range.
    pub fn with_classes<S: AsRef<str>>(mut self, classes: &[S]) -> Result<ImageSet> {
        self.classes = classes.iter().map(|s| s.as_ref().to_string()).collect();
        self.validate()?;
        Ok(self)
    }

    /// Checks that the fields agree with each other: channels 1 or 3, `labels.len() == n`,
    /// `images.len() == n * height * width * channels`, at least one class, every label in range.
    pub fn validate(&self) -> Result<()> {
        if self.channels != 1 && self.channels != 3 {
            return Err(Error::invalid(format!(
                "{} channels: only 1 (grayscale) or 3 (RGB) are supported",
                self.channels
            )));
        }
        if self.labels.len() != self.n {
            return Err(Error::invalid(format!("{} labels for {} images", self.labels.len(), self.n)));
        }
        let expected =
            [self.n, self.height, self.width, self.channels].iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        match expected {
            Some(e) if e == self.images.len() => {}
            Some(e) => {
                return Err(Error::invalid(format!(
                    "{} images of {}x{}x{} need {} bytes, have {}",
                    self.n,
                    self.height,
                    self.width,
                    self.channels,
                    e,
                    self.images.len()
                )))
            }
            None => {
                return Err(Error::invalid(format!(
                    "{} images of {}x{}x{}: size overflows",
                    self.n, self.height, self.width, self.channels
                )))
            }
        }
        if self.classes.is_empty() {
            return Err(Error::invalid("no class names"));
        }
        check_labels(&self.labels, self.classes.len()).map_err(Error::invalid)
    }
}

/// `Err("label 12 (image 7) out of range for 10 classes")` for the first label `>= num_classes`.
pub(crate) fn check_labels(labels: &[u32], num_classes: usize) -> std::result::Result<(), String> {
    match labels.iter().position(|&l| l as usize >= num_classes) {
        None => Ok(()),
        Some(i) => Err(format!("label {} (image {}) out of range for {} classes", labels[i], i, num_classes)),
    }
}

/// Decimal class names `"0"`, `"1"`, ... for `k` classes.
pub(crate) fn numeric_classes(k: usize) -> Vec<String> {
    (0..k).map(|i| i.to_string()).collect()
}

pub(crate) fn to_strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn tiny(n: usize, h: usize, w: usize, c: usize, k: usize) -> ImageSet {
        let len = h * w * c;
        ImageSet {
            images: (0..n * len).map(|i| (i * 7 + i / 3) as u8).collect(),
            labels: (0..n).map(|i| (i % k) as u32).collect(),
            n,
            height: h,
            width: w,
            channels: c,
            classes: numeric_classes(k),
        }
    }

    #[test]
    fn image_and_subset() {
        let s = tiny(5, 2, 3, 3, 3);
        s.validate().unwrap();
        assert_eq!(s.image_len(), 18);
        assert_eq!(s.image(2), &s.images[36..54]);
        let sub = s.subset(&[4, 0, 4]);
        assert_eq!(sub.n, 3);
        assert_eq!(sub.labels, vec![s.labels[4], s.labels[0], s.labels[4]]);
        assert_eq!(sub.image(0), s.image(4));
        assert_eq!(sub.image(1), s.image(0));
        assert_eq!(sub.classes, s.classes);
        sub.validate().unwrap();
        assert_eq!(s.class_counts(), vec![2, 2, 1]);
        assert_eq!(s.num_classes(), 3);
    }

    #[test]
    fn validate_finds_each_inconsistency() {
        let good = tiny(4, 2, 2, 1, 2);
        let mut s = good.clone();
        s.labels[3] = 12;
        s.classes = numeric_classes(10);
        assert_eq!(s.validate().unwrap_err().to_string(), "label 12 (image 3) out of range for 10 classes");
        let mut s = good.clone();
        s.channels = 2;
        assert!(s.validate().unwrap_err().to_string().contains("2 channels"));
        let mut s = good.clone();
        s.labels.pop();
        assert!(s.validate().unwrap_err().to_string().contains("3 labels for 4 images"));
        let mut s = good.clone();
        s.images.pop();
        assert!(s.validate().unwrap_err().to_string().contains("need 16 bytes, have 15"));
        let mut s = good.clone();
        s.classes.clear();
        assert!(s.validate().unwrap_err().to_string().contains("no class names"));
        let mut s = good;
        s.height = usize::MAX;
        assert!(s.validate().unwrap_err().to_string().contains("overflows"));
    }

    #[test]
    fn with_classes_checks_range() {
        let s = tiny(4, 1, 1, 1, 3);
        let named = s.clone().with_classes(&["a", "b", "c"]).unwrap();
        assert_eq!(named.classes, vec!["a", "b", "c"]);
        let err = s.with_classes(&["a", "b"]).unwrap_err().to_string();
        assert!(err.contains("label 2 (image 2) out of range for 2 classes"), "{err}");
    }
}
