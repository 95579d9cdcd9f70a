//! Arguments shared by several commands.
use std::path::PathBuf;
use std::str::FromStr;

use clap::Args;
use tch::Device;

use quarantine::model::{Arch, InputOverrides, InputRange};

/// `--device`: cpu (`None`) or a CUDA device index.
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
    /// The device, checked against what libtorch sees.
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
    /// format; pickles are parsed, never executed), a bare .safetensors, or a TorchScript archive
    /// (torch.jit.save; any architecture: its code is vetted against an op allow-list, then run).
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
    /// Pixel range a TorchScript model takes before normalization (default 0-1).
    #[arg(long, value_parser = super::common::choice::<InputRange>())]
    pub input_range: Option<InputRange>,
    /// An op a TorchScript model may use although it is not on the allow-list (e.g. aten::erfinv);
    /// repeatable. Only for models you trust with that op.
    #[arg(long = "allow-op", value_name = "OP")]
    pub allow_ops: Vec<String>,
}

impl ModelArgs {
    /// The flags as checkpoint-loading overrides.
    pub fn overrides(&self) -> InputOverrides {
        InputOverrides {
            arch: self.arch,
            image_size: self.image_size,
            channels: self.channels,
            classes: self.classes,
            normalize: self.normalize.clone(),
            input_range: self.input_range,
            allow_ops: self.allow_ops.clone(),
        }
    }
}

/// A clap value parser for a library [`Choice`](quarantine::choice::Choice): lists every name with its help.
pub fn choice<T: quarantine::choice::Choice + Clone>() -> impl clap::builder::TypedValueParser<Value = T> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new(T::ALL.iter().map(|v| PossibleValue::new(v.name()).help(v.help())))
        .map(|s| T::from_name(&s).expect("clap only passes listed names"))
}

/// Progress bars on stderr (indicatif) for the library's long computations; notes are printed
/// above the bar.
#[derive(Default)]
pub struct Bars {
    bar: std::sync::Mutex<Option<indicatif::ProgressBar>>,
}

impl quarantine::control::Progress for Bars {
    fn start(&self, stage: &str, total: u64) {
        let style =
            indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {prefix} {per_sec} eta {eta}")
                .expect("valid template")
                .progress_chars("=> ");
        let bar = indicatif::ProgressBar::new(total).with_style(style).with_prefix(stage.to_string());
        *self.bar.lock().expect("progress lock") = Some(bar);
    }
    fn inc(&self, n: u64) {
        if let Some(b) = &*self.bar.lock().expect("progress lock") {
            b.inc(n);
        }
    }
    fn message(&self, msg: &str) {
        if let Some(b) = &*self.bar.lock().expect("progress lock") {
            b.set_message(msg.to_string());
        }
    }
    fn finish(&self) {
        if let Some(b) = self.bar.lock().expect("progress lock").take() {
            b.finish_and_clear();
        }
    }
    fn note(&self, line: &str) {
        match &*self.bar.lock().expect("progress lock") {
            Some(b) => b.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}

/// The [`Control`](quarantine::control::Control) of a command: Ctrl-C cancels, progress shows as bars.
pub fn control() -> quarantine::control::Control {
    quarantine::control::Control::new(quarantine::interrupt::flag(), std::sync::Arc::new(Bars::default()))
}

/// The early stop of reverse engineering (`reverse`, `detect`): off by default (it changed verdicts;
/// README "Faster detect").
#[derive(Debug, Clone, Args)]
pub struct EarlyStopArgs {
    /// Stop labels before the last epoch once their mask stops shrinking or is far above the
    /// smallest (about half the work; it changed 1 of 11 verdicts, README "Faster detect").
    #[arg(long)]
    pub early_stop: bool,
    /// Epochs without a 1% improvement of a successful label's mask l1 after which it stops.
    #[arg(long, default_value_t = EARLY_STOP.patience)]
    pub early_stop_patience: usize,
    /// Also stop a successful label whose mask l1 exceeds this multiple of the smallest so far
    /// (0: never).
    #[arg(long, default_value_t = EARLY_STOP.far.unwrap_or(0.0))]
    pub early_stop_far: f64,
}

static EARLY_STOP: std::sync::LazyLock<quarantine::reverse::EarlyStop> =
    std::sync::LazyLock::new(quarantine::reverse::EarlyStop::default);

impl EarlyStopArgs {
    /// The early stop these flags ask for (`None`: off).
    pub fn early_stop(&self) -> Option<quarantine::reverse::EarlyStop> {
        self.early_stop.then(|| quarantine::reverse::EarlyStop {
            patience: self.early_stop_patience,
            far: (self.early_stop_far != 0.0).then_some(self.early_stop_far),
            ..*EARLY_STOP
        })
    }
}
