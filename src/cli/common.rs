//! Arguments shared by several commands.
use std::path::PathBuf;
use std::str::FromStr;

use clap::Args;
use tch::Device;

use crate::model::{Arch, InputOverrides};

#[derive(Debug, Clone, Copy)]
pub struct DeviceArg(Option<usize>);

impl FromStr for DeviceArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(DeviceArg(None)),
            "cuda" => Ok(DeviceArg(Some(0))),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(|n| DeviceArg(Some(n)))
                .ok_or_else(|| format!("`{s}`: expected cpu, cuda or cuda:N")),
        }
    }
}

impl DeviceArg {
    pub fn resolve(self) -> anyhow::Result<Device> {
        match self.0 {
            None => Ok(Device::Cpu),
            Some(n) => {
                let count = tch::Cuda::device_count() as usize;
                anyhow::ensure!(
                    n < count,
                    "--device cuda:{n}: libtorch sees {count} CUDA device(s) (a CUDA build needs QUARANTINE_TORCH=full, see README)"
                );
                Ok(Device::Cuda(n))
            }
        }
    }
}

/// A model to load: a native checkpoint, or a foreign one described by these flags.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Checkpoint: quarantine .safetensors (with its .json sidecar), PyTorch .pt/.pth (zip or legacy
    /// format; pickles are parsed, never executed) or a bare .safetensors.
    #[arg(long)]
    pub model: PathBuf,
    /// Architecture (required for a checkpoint without sidecar).
    #[arg(long, value_parser = super::common::choice::<Arch>())]
    pub arch: Option<Arch>,
    /// Input image size (square) of a foreign checkpoint.
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Input channels of a foreign checkpoint (default: read off the first conv).
    #[arg(long)]
    pub channels: Option<usize>,
    /// Number of classes of a foreign checkpoint (default: read off the head).
    #[arg(long)]
    pub classes: Option<usize>,
    /// Input normalization: cifar10, cifar100, mnist, none, MEAN,STD or M1,M2,M3,S1,S2,S3.
    #[arg(long)]
    pub normalize: Option<String>,
}

impl ModelArgs {
    pub fn overrides(&self) -> InputOverrides {
        InputOverrides { arch: self.arch, image_size: self.image_size, channels: self.channels, classes: self.classes, normalize: self.normalize.clone() }
    }
}

/// A clap value parser for a library [`Choice`](crate::choice::Choice): lists every name with its help.
pub fn choice<T: crate::choice::Choice + Clone>() -> impl clap::builder::TypedValueParser<Value = T> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new(T::ALL.iter().map(|v| PossibleValue::new(v.name()).help(v.help()))).map(|s| T::from_name(&s).expect("clap only passes listed names"))
}
