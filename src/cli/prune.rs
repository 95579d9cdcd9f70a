//! `quarantine prune`: flags → [`PruneJob`] → [`quarantine::prune::run_with_data`] → a line on stderr
//! (or the record as JSON on stdout). The run folder's `prune.json` is what `score` reads.
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use tch::Device;

use super::attack_args::AttackArgs;
use quarantine::data::DataSpec;
use quarantine::model::Arch;
use quarantine::prune::{Method, PruneJob, Rewind, Scope};

/// `quarantine prune` flags.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Trained model to prune (OMP/random). IMP trains its own dense model from --arch.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Architecture: IMP's dense model, or of a checkpoint without sidecar.
    #[arg(long, value_parser = super::common::choice::<Arch>())]
    pub arch: Option<Arch>,
    /// IMP: train this TorchScript network (torch.jit.save; its initial weights) instead of --arch.
    #[arg(long, value_name = "FILE", conflicts_with = "arch")]
    pub model_init: Option<PathBuf>,
    /// An op a TorchScript model may use although it is not on the allow-list; repeatable.
    #[arg(long = "allow-op", value_name = "OP")]
    pub allow_ops: Vec<String>,
    /// Input image size (square) of a checkpoint without sidecar.
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Input normalization: cifar10, cifar100, mnist, none, MEAN,STD or M1,M2,M3,S1,S2,S3.
    #[arg(long)]
    pub normalize: Option<String>,
    /// The (possibly poisoned) training data: IMP trains on it, `score` finetunes and scores on it.
    #[arg(long, default_value_t = PruneJob::default().data)]
    pub data: DataSpec,
    /// Output run folder.
    #[arg(long)]
    pub out: PathBuf,
    /// How the path is made.
    #[arg(long, value_parser = super::common::choice::<Method>(), default_value_t = PruneJob::default().method)]
    pub method: Method,
    /// Fraction of the alive weights removed per step.
    #[arg(long, default_value_t = PruneJob::default().rate)]
    pub rate: f64,
    /// Number of pruning steps / tickets (density 0.8^s, s = 1..steps).
    #[arg(long, alias = "rounds", default_value_t = PruneJob::default().steps)]
    pub steps: usize,
    /// Global or per-layer thresholds.
    #[arg(long, value_parser = super::common::choice::<Scope>(), default_value_t = PruneJob::default().scope)]
    pub scope: Scope,
    /// IMP: rewind to the state after this many dense epochs (the reference: 3).
    #[arg(long, default_value_t = default_rewind_epoch())]
    pub rewind_epoch: usize,
    /// IMP: rewind to `epoch` (--rewind-epoch), `init`, or `none` (finetune).
    #[arg(long, default_value_t = rewind_name(PruneJob::default().rewind).to_string(), value_parser = ["epoch", "init", "none"])]
    pub rewind: String,
    /// IMP: epochs of the dense run.
    #[arg(long, default_value_t = PruneJob::default().epochs)]
    pub epochs: usize,
    /// IMP: epochs per pruned round (default: from the rewind epoch to the end).
    #[arg(long)]
    pub epochs_per_round: Option<usize>,
    /// IMP: initial learning rate.
    #[arg(long, default_value_t = PruneJob::default().lr)]
    pub lr: f64,
    /// IMP: images per batch.
    #[arg(long, default_value_t = PruneJob::default().batch_size)]
    pub batch_size: usize,
    /// Seed of IMP's training and of random pruning.
    #[arg(long, default_value_t = PruneJob::default().seed)]
    pub seed: u64,
    /// Continue an interrupted run in --out.
    #[arg(long)]
    pub resume: bool,
    /// Replace a finished run in --out.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub attack: AttackArgs,
}

/// `--rewind`'s spelling of a rewind.
fn rewind_name(r: Rewind) -> &'static str {
    match r {
        Rewind::Epoch(_) => "epoch",
        Rewind::Init => "init",
        Rewind::None => "none",
    }
}

/// `--rewind-epoch`'s default: the library's default rewind epoch.
fn default_rewind_epoch() -> usize {
    match PruneJob::default().rewind {
        Rewind::Epoch(e) => e,
        Rewind::Init | Rewind::None => 0,
    }
}

impl TryFrom<PruneArgs> for PruneJob {
    type Error = quarantine::Error;

    fn try_from(a: PruneArgs) -> quarantine::Result<Self> {
        let rewind = match a.rewind.as_str() {
            "init" => Rewind::Init,
            "none" => Rewind::None,
            _ => Rewind::Epoch(a.rewind_epoch),
        };
        let job = PruneJob {
            attack: a.attack.config(a.seed),
            surrogate: a.attack.surrogate,
            model: a.model,
            model_init: a.model_init,
            allow_ops: a.allow_ops,
            arch: a.arch,
            image_size: a.image_size,
            normalize: a.normalize,
            data: a.data,
            out: a.out,
            method: a.method,
            rate: a.rate,
            steps: a.steps,
            scope: a.scope,
            rewind,
            epochs: a.epochs,
            epochs_per_round: a.epochs_per_round,
            lr: a.lr,
            batch_size: a.batch_size,
            seed: a.seed,
            resume: a.resume,
            force: a.force,
        };
        job.validate()?;
        Ok(job)
    }
}

/// Runs `quarantine prune`.
pub fn run(a: PruneArgs, device: Device, json: bool) -> anyhow::Result<()> {
    let job = PruneJob::try_from(a)?;
    let split = job.data.load().with_context(|| format!("loading {}", job.data))?;
    let record = quarantine::prune::run_with_data(&job, &split, device, &super::common::control())?;
    if json {
        println!("{}", serde_json::to_string(&record)?);
    } else {
        let (first, last) = (record.densities.first().unwrap_or(&1.0), record.densities.last().unwrap_or(&1.0));
        let (tickets, dir) = (job.out.join("tickets"), job.out.display());
        eprintln!(
            "{} tickets in {} (densities {first:.4} .. {last:.4}); next: quarantine score --run {dir}",
            record.densities.len(),
            tickets.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_defaults_are_the_jobs() {
        let argv: Vec<String> = ["--out", "o", "--model", "m"].map(String::from).to_vec();
        let a: PruneArgs = super::super::experiment::parse(&argv).unwrap();
        assert_eq!(
            PruneJob::try_from(a).unwrap(),
            PruneJob { out: "o".into(), model: Some("m".into()), ..PruneJob::default() }
        );
        let argv: Vec<String> =
            ["--out", "o", "--method", "imp", "--arch", "cnn", "--rewind-epoch", "2"].map(String::from).to_vec();
        let job = PruneJob::try_from(super::super::experiment::parse::<PruneArgs>(&argv).unwrap()).unwrap();
        assert_eq!(job.rewind, Rewind::Epoch(2));
        let argv: Vec<String> = ["--out", "o", "--method", "imp", "--model", "m"].map(String::from).to_vec();
        assert!(PruneJob::try_from(super::super::experiment::parse::<PruneArgs>(&argv).unwrap()).is_err());
    }
}
