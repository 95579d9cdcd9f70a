//! `quarantine scan` (detect over populations, [`quarantine::scan`]) and `quarantine zoo` (train a
//! population, [`quarantine::pipeline::zoo`]).
use std::path::PathBuf;

use clap::Args;
use tch::Device;

use super::detect::DetectSettingsArgs;
use quarantine::data::DataSpec;
use quarantine::detect::DetectConfig;
use quarantine::pipeline::zoo::{self, ZooSpec};
use quarantine::scan::{self, ScanJob, Shard};

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Folders of models: a zoo (`id-*/model.safetensors` + `config.json`), TrojAI-style
    /// (`id-*/model.pt`), or a flat folder of checkpoints. With --merge: scan output folders.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Output folder: rows/ (one JSON per model), models/ (each detect), scan.csv, metrics.json,
    /// roc.png/svg, report.html.
    #[arg(long)]
    pub out: PathBuf,
    /// Scan every N-th model from I (0-based), e.g. --shard $SLURM_ARRAY_TASK_ID/16; shards may share --out.
    #[arg(long)]
    pub shard: Option<Shard>,
    /// Join the rows of the given scan output folders into --out (no scanning).
    #[arg(long)]
    pub merge: bool,
    /// Clean data for every model (its training split scores; default: data-free).
    #[arg(long)]
    pub data: Option<DataSpec>,
    /// Bootstrap resamples for the 95% intervals.
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    #[command(flatten)]
    pub settings: DetectSettingsArgs,
}

pub fn run(a: ScanArgs, device: Device, json: bool) -> anyhow::Result<()> {
    let detect = DetectConfig::try_from(&a.settings)?;
    if a.merge {
        let rows = scan::merge(&a.dirs, &a.out, a.bootstrap, detect.seed)?;
        if json {
            println!("{}", serde_json::json!({"out": a.out, "models": rows.len()}));
        }
        eprintln!("scan: merged {} rows into {}", rows.len(), a.out.join("scan.csv").display());
        return Ok(());
    }
    let job =
        ScanJob { dirs: a.dirs, out: a.out.clone(), shard: a.shard, detect, data: a.data, bootstrap: a.bootstrap };
    quarantine::reverse::retain_freed_memory();
    let s = scan::run(&job, device, &super::common::control())?;
    if json {
        println!("{}", serde_json::to_string(&s)?);
    }
    eprintln!(
        "scan: {} models in this shard, {} scanned now, {} already done, {} error rows; {}",
        s.models,
        s.scanned,
        s.skipped,
        s.errors,
        a.out.join("scan.csv").display()
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct ZooArgs {
    /// The zoo's spec (TOML; see configs/zoos/*.toml).
    #[arg(long)]
    pub spec: PathBuf,
    /// Output folder: one `id-NNNN/` per model; finished models are never retrained.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn zoo(a: ZooArgs, device: Device, json: bool) -> anyhow::Result<()> {
    let spec = ZooSpec::load(&a.spec)?;
    let s = zoo::run(&spec, &a.out, device, &super::common::control())?;
    if json {
        println!("{}", serde_json::to_string(&s)?);
    }
    let took = s.records.iter().filter(|r| r.backdoor_took == Some(true)).count();
    let failed = s.records.iter().filter(|r| r.backdoor_took == Some(false)).count();
    eprintln!(
        "zoo {}: {} models ({} trained now, {} already done): {} Trojaned, {} poisoned without effect, {} clean",
        spec.name,
        s.records.len(),
        s.trained,
        s.skipped,
        took,
        failed,
        s.records.iter().filter(|r| !r.poisoned).count()
    );
    Ok(())
}
