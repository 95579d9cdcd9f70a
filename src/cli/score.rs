//! `quarantine score --run DIR`: the Trojan score along a pruning path (docs/METHOD.md §5,
//! [`quarantine::score::job`]), the winning Trojan ticket (peak score, selected automatically and
//! saved), and the dynamics as JSON, CSV and plot. Each scored step is saved atomically under
//! DIR/score/, so `--resume` continues an interrupted run.
use std::path::PathBuf;
use std::sync::LazyLock;

use anyhow::Context;
use clap::Args;
use tch::Device;

use quarantine::report::write_scored_path;
use quarantine::score::job::{self, ScoreJob, ScoreSource};
use quarantine::score::{AlphaGrid, ScoreKind};

/// The library's defaults, which clap shows and uses.
static DEFAULTS: LazyLock<ScoreJob> = LazyLock::new(ScoreJob::default);

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// A folder written by `quarantine prune`.
    #[arg(long)]
    pub run: PathBuf,
    /// Finetuning steps for φ_k (the paper: 10).
    #[arg(long, default_value_t = DEFAULTS.k)]
    pub k: usize,
    /// Reproduce the reference code: 21 steps, unshuffled loader, its α grid, no BN recalibration.
    #[arg(long)]
    pub reference: bool,
    /// α grid (default uniform; reference with --reference).
    #[arg(long, value_parser = super::common::choice::<AlphaGrid>())]
    pub alpha_grid: Option<AlphaGrid>,
    /// Score data: `train` (the run's possibly poisoned training set), `noise` (data-free: noise images
    /// labelled by the dense model), or a data spec (its training split, labels as given).
    #[arg(long, default_value_t = DEFAULTS.score_data.clone())]
    pub score_data: ScoreSource,
    /// Number of score samples (fixed, seeded).
    #[arg(long, default_value_t = DEFAULTS.score_samples)]
    pub score_samples: usize,
    /// Do not recompute BN running statistics on the score samples after pruning.
    #[arg(long)]
    pub no_bn_recalibrate: bool,
    /// Which score picks the winning ticket.
    #[arg(long, value_parser = super::common::choice::<ScoreKind>(), default_value_t = DEFAULTS.select)]
    pub select: ScoreKind,
    /// Only consider tickets at or below this density when picking the winner.
    #[arg(long)]
    pub max_density: Option<f64>,
    /// Continue an interrupted scoring.
    #[arg(long)]
    pub resume: bool,
    /// Rescore a scored run from scratch.
    #[arg(long)]
    pub force: bool,
}

impl From<&ScoreArgs> for ScoreJob {
    fn from(a: &ScoreArgs) -> Self {
        ScoreJob {
            k: a.k,
            reference: a.reference,
            alpha_grid: a.alpha_grid,
            score_data: a.score_data.clone(),
            score_samples: a.score_samples,
            bn_recalibrate: !a.no_bn_recalibrate,
            select: a.select,
            max_density: a.max_density,
        }
    }
}

pub fn run(a: ScoreArgs, device: Device, json: bool) -> anyhow::Result<()> {
    let dir = a.run.clone();
    let out = dir.join("dynamics.json");
    anyhow::ensure!(
        !out.exists() || a.resume || a.force,
        "{} exists: pass --resume to continue or --force to rescore",
        out.display()
    );
    anyhow::ensure!(
        dir.join("prune.json").exists(),
        "{} (run `quarantine prune` first)",
        dir.join("prune.json").display()
    );
    job::prepare(&dir, a.resume, a.force)?;
    let sjob = ScoreJob::from(&a);
    let scored = job::run(&dir, &sjob, a.resume, device, &super::common::control())
        .with_context(|| format!("scoring {}", dir.display()))?;
    let record = scored.record(&dir, &sjob);
    write_scored_path(&dir, &scored, &record)?;
    if json {
        println!("{}", serde_json::to_string(&record)?);
    } else if let Some((w, ..)) = &scored.winner {
        let r = &scored.rows[*w];
        eprintln!(
            "winning Trojan ticket: step {} (density {:.4}), clean accuracy {}, attack success {}; saved {}",
            r.step,
            r.density,
            r.ticket.clean_accuracy.map(|v| format!("{v:.3}")).unwrap_or("-".into()),
            r.ticket.attack_success_rate.map(|v| format!("{v:.3}")).unwrap_or("unknown".into()),
            dir.join("winning-ticket.safetensors").display()
        );
    }
    Ok(())
}
