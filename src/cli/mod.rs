//! Command-line interface: arguments are parsed by clap and turned into validated configs here;
//! each command lives in its own file.
mod attack_args;
mod bench;
mod common;
mod demo;
mod detect;
mod eval;
mod experiment;
mod export;
mod poison;
mod prune;
mod report;
mod reverse;
mod scan;
mod score;
mod train;

use clap::{Parser, Subcommand};

pub use common::{DeviceArg, ModelArgs};

#[derive(Debug, Parser)]
#[command(name = "quarantine", version, about = "Find Trojans (backdoors) in image classifiers through sparsity")]
pub struct Cli {
    /// Compute device: cpu, cuda or cuda:N.
    #[arg(long, global = true, default_value = "cpu")]
    pub device: DeviceArg,
    /// CPU threads for libtorch (default: all cores).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// Print the result as JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The whole idea in minutes on built-in data: a Trojaned model (hidden target) and a clean
    /// control, detection on both as black boxes, verdicts, report.html.
    Demo(demo::DemoArgs),
    /// Train a model, clean or with a backdoor (--attack), with SGD and a multi-step learning rate.
    Train(train::TrainArgs),
    /// Evaluate a checkpoint's clean accuracy on a data set's test split.
    Eval(eval::EvalArgs),
    /// Convert a checkpoint to a file PyTorch loads (.pt zip format or .safetensors).
    Export(export::ExportArgs),
    /// Describe a checkpoint: format, tensors, masks, sidecar.
    Inspect(export::InspectArgs),
    /// Write a poisoned copy of a training set in the input's own format, plus a grid of samples.
    Poison(poison::PoisonArgs),
    /// Prune a model along a path (IMP, OMP, random) into Trojan tickets.
    Prune(prune::PruneArgs),
    /// Score the tickets of a pruning run (LMC Trojan score) and pick the winning Trojan ticket.
    Score(score::ScoreArgs),
    /// Reverse-engineer a trigger for every label (Neural Cleanse / TABOR) and name the Trojan target.
    Reverse(reverse::ReverseArgs),
    /// The auditor's pipeline: prune, score, winning ticket, reverse engineering, verdict.
    Detect(detect::DetectArgs),
    /// Detect over every model in folders (resumable, sharded), with ROC-AUC where ground truth is known.
    Scan(scan::ScanArgs),
    /// Train a population of Trojaned and clean models from a spec (configs/zoos/*.toml).
    Zoo(scan::ZooArgs),
    /// Fit the calibrated consensus rule on the clean models of finished scans (for scan --calibration).
    Calibrate(scan::CalibrateArgs),
    /// Run a whole experiment described by a TOML file (see configs/): train, prune, score, reverse.
    Run(experiment::RunArgs),
    /// Write the self-contained report.html of a run folder (demo, detect, reverse, score).
    Report(report::ReportArgs),
    /// Measure training and inference throughput (images/s).
    Bench(bench::BenchArgs),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(t) = cli.threads {
        anyhow::ensure!(t > 0, "--threads must be at least 1");
        tch::set_num_threads(t as i32);
        tch::set_num_interop_threads(t as i32);
    }
    let device = cli.device.resolve()?;
    match cli.command {
        Command::Demo(a) => demo::run(a, device, cli.json),
        Command::Train(a) => train::run(a, device, cli.json),
        Command::Eval(a) => eval::run(a, device, cli.json),
        Command::Export(a) => export::run(a, device, cli.json),
        Command::Inspect(a) => export::inspect(a, cli.json),
        Command::Poison(a) => poison::run(a, device, cli.json),
        Command::Prune(a) => prune::run(a, device, cli.json),
        Command::Score(a) => score::run(a, device, cli.json),
        Command::Reverse(a) => reverse::run(a, device, cli.json),
        Command::Detect(a) => detect::run(a, device, cli.json),
        Command::Scan(a) => scan::run(a, device, cli.json),
        Command::Zoo(a) => scan::zoo(a, device, cli.json),
        Command::Calibrate(a) => scan::calibrate(a, cli.json),
        Command::Run(a) => experiment::run(a, device, cli.json),
        Command::Report(a) => report::run(a, cli.json),
        Command::Bench(a) => bench::run(a, device, cli.json),
    }
}

/// The command-line flag behind a library error, for a hint after the message: the library names
/// what was wrong in its own terms, the command line knows which flag sets it.
pub fn hint(e: &anyhow::Error) -> Option<String> {
    use quarantine::Error;
    let err = e.chain().find_map(|c| c.downcast_ref::<Error>())?;
    let flag = match err {
        Error::Interrupted(_) => return Some("continue with --resume".into()),
        Error::WouldOverwrite { .. } => {
            return Some("pass --resume to continue that run or --force to overwrite it".into())
        }
        Error::BadFile { msg, .. } if msg.contains("sidecar") => "--arch (and --image-size, --channels, --classes)",
        Error::Invalid { what, .. } => match *what {
            "normalization" => "--normalize",
            "seeds" | "synthesized seeds" => "--seeds",
            "labels" => "--labels",
            "true trigger" => "--true-trigger",
            "target" => "--target",
            "poison ratio" => "--poison-ratio",
            "blend alpha" => "--blend-alpha",
            "trigger" => "--trigger",
            "trigger size" => "--trigger-size",
            "trigger location" => "--trigger-location",
            "surrogate" => "--surrogate",
            "data spec" => "--data",
            "pruning rate" => "--rate",
            "rewind epoch" => "--rewind-epoch",
            "epochs per round" => "--epochs-per-round",
            "score steps" => "--steps and --score-from",
            "pruning method" => "--method (IMP trains: `quarantine prune --method imp`)",
            "test data" => "--test-data",
            _ => return None,
        },
        _ => return None,
    };
    Some(format!("see {flag}"))
}
