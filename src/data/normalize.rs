//! Per-channel normalization `(x/255 - mean) / std` (docs/METHOD.md §2 constants), and their names.
use crate::error::{Error, Result};

/// Per-channel input normalization of a model.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Normalization {
    /// Mean of each channel, in \[0,1\] pixel units.
    pub mean: Vec<f32>,
    /// Standard deviation of each channel, in \[0,1\] pixel units.
    pub std: Vec<f32>,
}

impl Normalization {
    /// The CIFAR-10 constants of the reference code.
    pub fn cifar10() -> Self {
        Self { mean: vec![0.4914, 0.4822, 0.4465], std: vec![0.2470, 0.2435, 0.2616] }
    }
    /// The CIFAR-100 constants.
    pub fn cifar100() -> Self {
        Self { mean: vec![0.5071, 0.4866, 0.4409], std: vec![0.2673, 0.2564, 0.2762] }
    }
    /// The usual MNIST constants, used for Fashion-MNIST too.
    pub fn mnist() -> Self {
        Self { mean: vec![0.1307], std: vec![0.3081] }
    }
    /// No normalization (mean 0, std 1) for `channels` channels.
    pub fn none(channels: usize) -> Self {
        Self { mean: vec![0.0; channels], std: vec![1.0; channels] }
    }

    /// Parses `cifar10|cifar100|mnist|none|MEAN,STD|M1,M2,M3,S1,S2,S3` for images with `channels`.
    pub fn parse(s: &str, channels: usize) -> Result<Self> {
        let n = match s {
            "cifar10" => Self::cifar10(),
            "cifar100" => Self::cifar100(),
            "mnist" => Self::mnist(),
            "none" => Self::none(channels),
            _ => {
                let v: Vec<f32> = s
                    .split(',')
                    .map(|x| x.trim().parse::<f32>())
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|_| {
                        Error::invalid(
                            "normalization",
                            format!("`{s}`: expected cifar10, cifar100, mnist, none, MEAN,STD or 3 means and 3 stds"),
                        )
                    })?;
                match v.len() {
                    2 => Self { mean: vec![v[0]; channels], std: vec![v[1]; channels] },
                    6 => Self { mean: v[..3].to_vec(), std: v[3..].to_vec() },
                    _ => {
                        return Err(Error::invalid(
                            "normalization",
                            format!("`{s}`: expected 2 or 6 numbers, got {}", v.len()),
                        ))
                    }
                }
            }
        };
        n.for_channels(channels)
    }

    /// Checks the channel count, broadcasting a single mean/std to every channel.
    pub fn for_channels(self, channels: usize) -> Result<Self> {
        if self.mean.len() == channels {
            return Ok(self);
        }
        if self.mean.len() == 1 {
            return Ok(Self { mean: vec![self.mean[0]; channels], std: vec![self.std[0]; channels] });
        }
        Err(Error::invalid(
            "normalization",
            format!("{} channel constants for {channels}-channel images", self.mean.len()),
        ))
    }

    /// Errs unless every std is positive and finite and every mean finite.
    pub fn validate(&self) -> Result<()> {
        if self.std.iter().any(|s| *s <= 0.0 || !s.is_finite()) || self.mean.iter().any(|m| !m.is_finite()) {
            return Err(Error::invalid("normalization", format!("std must be positive and finite: {self:?}")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_named_and_numeric() {
        assert_eq!(Normalization::parse("cifar10", 3).unwrap(), Normalization::cifar10());
        assert_eq!(Normalization::parse("mnist", 3).unwrap().mean, vec![0.1307; 3]);
        assert_eq!(Normalization::parse("0.5,0.25", 1).unwrap(), Normalization { mean: vec![0.5], std: vec![0.25] });
        assert!(Normalization::parse("cifar10", 1).is_err());
        assert!(Normalization::parse("1,2,3", 3).unwrap_err().to_string().contains("expected 2 or 6"));
        assert!(Normalization::parse("abc", 3).is_err());
        assert!(Normalization::parse("0.5,0", 1).unwrap().validate().is_err());
    }
}
