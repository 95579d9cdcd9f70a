//! `quarantine train`: flags → [`TrainJob`] → [`quarantine::train::run_with_data`] → a line on stderr
//! (or the result as JSON on stdout).
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use tch::Device;

use super::attack_args::AttackArgs;
use quarantine::data::DataSpec;
use quarantine::model::Arch;
use quarantine::train::{TrainJob, TrainResult};

/// `quarantine train` flags.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Data set: builtin, cifar10:DIR, cifar100:DIR, mnist:DIR, fashion-mnist:DIR, folder:DIR.
    #[arg(long, default_value_t = TrainJob::default().data)]
    pub data: DataSpec,
    /// Architecture.
    #[arg(long, value_parser = super::common::choice::<Arch>(), default_value_t = TrainJob::default().arch)]
    pub arch: Arch,
    /// Train this TorchScript network (torch.jit.save of a scripted module; its initial weights)
    /// instead of --arch: any architecture. The trained model is also saved as TorchScript.
    #[arg(long, value_name = "FILE")]
    pub model_init: Option<PathBuf>,
    /// An op the --model-init network may use although it is not on the allow-list; repeatable.
    #[arg(long = "allow-op", value_name = "OP")]
    pub allow_ops: Vec<String>,
    /// Training epochs.
    #[arg(long, default_value_t = TrainJob::default().epochs)]
    pub epochs: usize,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Initial learning rate.
    #[arg(long, default_value_t = TrainJob::default().lr)]
    pub lr: f64,
    /// SGD momentum.
    #[arg(long, default_value_t = TrainJob::default().momentum)]
    pub momentum: f64,
    /// L2 weight decay.
    #[arg(long, default_value_t = TrainJob::default().weight_decay)]
    pub weight_decay: f64,
    /// Images per batch.
    #[arg(long, default_value_t = TrainJob::default().batch_size)]
    pub batch_size: usize,
    /// Epochs where the learning rate drops by --gamma, comma-separated (default: 50% and 75%).
    #[arg(long, value_delimiter = ',')]
    pub milestones: Option<Vec<usize>>,
    /// Learning-rate factor at each milestone.
    #[arg(long, default_value_t = TrainJob::default().gamma)]
    pub gamma: f64,
    /// One seed for everything: weights, shuffling, augmentation.
    #[arg(long, default_value_t = TrainJob::default().seed)]
    pub seed: u64,
    /// Input normalization (default: the data set's constants).
    #[arg(long)]
    pub normalize: Option<String>,
    /// Random-crop padding, 0 = off (default: 4 for CIFAR and folders, 0 for 28x28 gray sets).
    #[arg(long)]
    pub crop_pad: Option<usize>,
    /// Random horizontal flips on (default: on for CIFAR and folders, off for 28x28 gray sets).
    #[arg(long, conflicts_with = "no_flip")]
    pub flip: bool,
    /// Random horizontal flips off.
    #[arg(long)]
    pub no_flip: bool,
    /// Continue an interrupted run in --out.
    #[arg(long)]
    pub resume: bool,
    /// Overwrite a finished run in --out.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub attack: AttackArgs,
}

impl TryFrom<TrainArgs> for TrainJob {
    type Error = quarantine::Error;

    fn try_from(a: TrainArgs) -> quarantine::Result<Self> {
        let flip = match (a.flip, a.no_flip) {
            (true, _) => Some(true),
            (false, true) => Some(false),
            (false, false) => None,
        };
        let job = TrainJob {
            attack: a.attack.config(a.seed),
            surrogate: a.attack.surrogate,
            data: a.data,
            arch: a.arch,
            epochs: a.epochs,
            out: a.out,
            lr: a.lr,
            momentum: a.momentum,
            weight_decay: a.weight_decay,
            batch_size: a.batch_size,
            milestones: a.milestones,
            gamma: a.gamma,
            seed: a.seed,
            normalize: a.normalize,
            crop_pad: a.crop_pad,
            flip,
            resume: a.resume,
            force: a.force,
            model_init: a.model_init,
            allow_ops: a.allow_ops,
        };
        job.validate()?;
        Ok(job)
    }
}

/// Runs `quarantine train`.
pub fn run(a: TrainArgs, device: Device, json: bool) -> anyhow::Result<()> {
    let job = TrainJob::try_from(a)?;
    let split = job.data.load().with_context(|| format!("loading {}", job.data))?;
    let result = quarantine::train::run_with_data(&job, &split, device, &super::common::control())?;
    print(&result, json)
}

fn print(r: &TrainResult, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(r)?);
    } else {
        let acc = r.clean_accuracy.map(|a| format!("{a:.4}")).unwrap_or("n/a".into());
        let asr = match (r.attack_success_rate, r.attack_success_rate_nontarget) {
            (Some(all), Some(nt)) => format!(", attack success {all:.4} (non-target {nt:.4})"),
            _ => String::new(),
        };
        eprintln!("saved {} (test accuracy {acc}{asr})", r.model.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_defaults_are_the_jobs() {
        let a: TrainArgs = super::super::experiment::parse(&["--out".into(), "o".into()]).unwrap();
        assert_eq!(TrainJob::try_from(a).unwrap(), TrainJob { out: "o".into(), ..TrainJob::default() });
        let argv: Vec<String> =
            ["--out", "o", "--attack", "badnets", "--seed", "4", "--no-flip"].map(String::from).to_vec();
        let job = TrainJob::try_from(super::super::experiment::parse::<TrainArgs>(&argv).unwrap()).unwrap();
        assert_eq!(job.attack, Some(quarantine::attack::AttackConfig { seed: 4, ..Default::default() }));
        assert_eq!(job.flip, Some(false));
    }
}
