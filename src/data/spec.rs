//! `--data` specs: `cifar10:DIR`, `cifar100:DIR`, `mnist:DIR`, `fashion-mnist:DIR`, `folder:DIR`, `builtin`.
use std::path::PathBuf;
use std::str::FromStr;

use super::{builtin, ImageSet, Normalization, Split};
use crate::error::{Error, Result};

/// A parsed `--data` spec; (de)serializes as its `KIND:DIR` string.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum DataSpec {
    /// CIFAR-10, binary version (`cifar10:DIR`).
    Cifar10(PathBuf),
    /// CIFAR-100, binary version, fine labels (`cifar100:DIR`).
    Cifar100(PathBuf),
    /// MNIST from a directory of IDX files (`mnist:DIR`).
    Mnist(PathBuf),
    /// Fashion-MNIST from a directory of IDX files (`fashion-mnist:DIR`).
    FashionMnist(PathBuf),
    /// An `ImageFolder`-style directory, one sub-folder per class, optional train/test (`folder:DIR`).
    Folder(PathBuf),
    /// The Fashion-MNIST subset embedded in the binary (`builtin`).
    Builtin,
}

impl DataSpec {
    /// Loads the train split and, where the data set has one, the test split.
    pub fn load(&self) -> Result<Split> {
        Ok(match self {
            DataSpec::Cifar10(d) => imagesets::cifar10(d)?,
            DataSpec::Cifar100(d) => imagesets::cifar100(d, imagesets::Cifar100Label::Fine)?,
            DataSpec::Mnist(d) => imagesets::mnist_dir(d, &imagesets::MNIST_CLASSES)?,
            DataSpec::FashionMnist(d) => imagesets::mnist_dir(d, &imagesets::FASHION_MNIST_CLASSES)?,
            DataSpec::Folder(d) => imagesets::folder(d)?,
            DataSpec::Builtin => builtin()?,
        })
    }

    /// The set to evaluate on: the test split, or for an image folder without a train/test split the
    /// whole folder (an auditor's few clean images, class folders named by label number keep their
    /// labels). An error for the other sources without a test split.
    pub fn evaluation_set(&self, split: Split) -> Result<ImageSet> {
        match (split.test, self) {
            (Some(test), _) => Ok(test),
            (None, DataSpec::Folder(_)) => Ok(split.train),
            (None, _) => Err(Error::invalid("test data", format!("{self} has no test split"))),
        }
    }

    /// The normalization a model trained on this data uses unless told otherwise (docs/METHOD.md §2).
    pub fn default_normalization(&self, channels: usize) -> Normalization {
        match self {
            DataSpec::Cifar10(_) => Normalization::cifar10(),
            DataSpec::Cifar100(_) => Normalization::cifar100(),
            DataSpec::Mnist(_) | DataSpec::FashionMnist(_) | DataSpec::Builtin => Normalization::mnist(),
            DataSpec::Folder(_) => Normalization::none(channels),
        }
    }

    /// Whether horizontal flips are a label-preserving augmentation (off for digits).
    pub fn flip_ok(&self) -> bool {
        !matches!(self, DataSpec::Mnist(_))
    }

    /// Default training augmentation: the reference's crop (zero padding 4) + flip for CIFAR and image
    /// folders; none for the 28x28 grayscale sets (MNIST, Fashion-MNIST, builtin), where the usual
    /// recipe does not augment and where crop + flip kept a small BadNets attack from being learned
    /// (see README.md).
    pub fn default_augment(&self) -> super::Augment {
        match self {
            DataSpec::Cifar10(_) | DataSpec::Cifar100(_) | DataSpec::Folder(_) => {
                super::Augment { crop_pad: 4, flip: true }
            }
            DataSpec::Mnist(_) | DataSpec::FashionMnist(_) | DataSpec::Builtin => super::Augment::NONE,
        }
    }
}

impl FromStr for DataSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if s == "builtin" {
            return Ok(DataSpec::Builtin);
        }
        let (kind, dir) = s.split_once(':').ok_or_else(|| {
            Error::invalid(
                "data spec",
                format!("`{s}`: expected KIND:DIR (cifar10, cifar100, mnist, fashion-mnist, folder) or `builtin`"),
            )
        })?;
        if dir.is_empty() {
            return Err(Error::invalid("data spec", format!("`{s}`: missing directory after `{kind}:`")));
        }
        let dir = PathBuf::from(dir);
        Ok(match kind {
            "cifar10" => DataSpec::Cifar10(dir),
            "cifar100" => DataSpec::Cifar100(dir),
            "mnist" => DataSpec::Mnist(dir),
            "fashion-mnist" | "fashionmnist" => DataSpec::FashionMnist(dir),
            "folder" => DataSpec::Folder(dir),
            other => return Err(Error::invalid("data spec", format!("unknown data kind `{other}` in `{s}`"))),
        })
    }
}

impl std::fmt::Display for DataSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (k, d) = match self {
            DataSpec::Builtin => return write!(f, "builtin"),
            DataSpec::Cifar10(d) => ("cifar10", d),
            DataSpec::Cifar100(d) => ("cifar100", d),
            DataSpec::Mnist(d) => ("mnist", d),
            DataSpec::FashionMnist(d) => ("fashion-mnist", d),
            DataSpec::Folder(d) => ("folder", d),
        };
        write!(f, "{k}:{}", d.display())
    }
}

impl From<DataSpec> for String {
    fn from(s: DataSpec) -> String {
        s.to_string()
    }
}

impl TryFrom<String> for DataSpec {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_specs() {
        for s in ["builtin", "cifar10:/d/c10", "cifar100:x", "mnist:m", "fashion-mnist:f", "folder:imgs"] {
            assert_eq!(s.parse::<DataSpec>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn rejects_bad_specs() {
        for (s, want) in
            [("cifar10", "KIND:DIR"), ("svhn:x", "unknown data kind `svhn`"), ("mnist:", "missing directory")]
        {
            let e = s.parse::<DataSpec>().unwrap_err().to_string();
            assert!(e.contains(want), "{s}: {e}");
        }
    }
}
