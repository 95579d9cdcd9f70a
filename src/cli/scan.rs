//! `quarantine scan` (detect over populations, [`quarantine::scan`]) and `quarantine zoo` (train a
//! population, [`quarantine::pipeline::zoo`]).
use std::path::PathBuf;

use clap::Args;
use tch::Device;

use super::detect::DetectSettingsArgs;
use quarantine::data::DataSpec;
use quarantine::detect::{Calibration, DetectConfig};
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
    /// Also decide with consensus calibrated on clean reference models (a file from `quarantine
    /// calibrate`); a decision over finished detects, so it can be added to a finished scan.
    #[arg(long)]
    pub calibration: Option<PathBuf>,
    #[command(flatten)]
    pub settings: DetectSettingsArgs,
}

pub fn run(a: ScanArgs, device: Device, json: bool) -> anyhow::Result<()> {
    let detect = DetectConfig::try_from(&a.settings)?;
    let calibration = a.calibration.as_deref().map(Calibration::load).transpose()?;
    if a.merge {
        let rows = scan::merge(&a.dirs, &a.out, a.bootstrap, detect.seed, calibration.as_ref())?;
        if json {
            println!("{}", serde_json::json!({"out": a.out, "models": rows.len()}));
        }
        eprintln!("scan: merged {} rows into {}", rows.len(), a.out.join("scan.csv").display());
        return Ok(());
    }
    let job = ScanJob {
        dirs: a.dirs,
        out: a.out.clone(),
        shard: a.shard,
        detect,
        data: a.data,
        bootstrap: a.bootstrap,
        calibration,
    };
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
pub struct CalibrateArgs {
    /// Finished scan output folders; their clean models (ground truth) are the references.
    #[arg(required = true)]
    pub scans: Vec<PathBuf>,
    /// The calibration file to write (refused if it exists, unless --force).
    #[arg(long)]
    pub out: PathBuf,
    /// Every scanned model is a clean reference (a folder of models known to be clean, without
    /// ground-truth files).
    #[arg(long)]
    pub assume_clean: bool,
    /// Overwrite --out.
    #[arg(long)]
    pub force: bool,
}

pub fn calibrate(a: CalibrateArgs, json: bool) -> anyhow::Result<()> {
    anyhow::ensure!(a.force || !a.out.exists(), "{} exists; pass --force to overwrite it", a.out.display());
    let cal = scan::fit_calibration(&a.scans, a.assume_clean)?;
    cal.save(&a.out)?;
    let summary = cal.summary();
    if json {
        println!("{}", serde_json::json!({"out": a.out, "references": summary}));
    }
    for (arch, (n, labels)) in &summary {
        eprintln!("calibrate: {arch}: {n} clean reference models, {labels} labels");
    }
    eprintln!("calibrate: wrote {}", a.out.display());
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
