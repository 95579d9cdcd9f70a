//! `quarantine score --run DIR`: the Trojan score along a pruning path (SPEC §5), the winning Trojan
//! ticket (peak score, selected automatically and saved), and the dynamics as JSON, CSV and plot.
//! Each scored step is saved atomically under DIR/score/, so `--resume` continues an interrupted run.
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tch::Device;

use super::prune::PruneRecord;
use crate::attack::{attack_success, Attack, AttackSuccess};
use crate::data::{noise_set, DataSpec, ImageSet, Normalization};
use crate::eval::{evaluate, predict};
use crate::model::{export, load_checkpoint, save_checkpoint, InputOverrides, Model, Versions};
use crate::prune::{load_ticket, Masks, Method};
use crate::report::plot::{self, DynPoint};
use crate::score::{recalibrate_bn, score_samples, trojan_score, AlphaGrid, ScoreConfig, ScoreData};
use crate::util::{write_atomic, write_json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScoreKind {
    /// Cross-entropy barrier.
    Loss,
    /// 0-1 error barrier.
    Error,
}
crate::choices!(ScoreKind {
    Loss => "loss": "cross-entropy barrier",
    Error => "error": "0-1 error barrier",
});

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// A folder written by `quarantine prune`.
    #[arg(long)]
    pub run: PathBuf,
    /// Finetuning steps for φ_k (the paper: 10).
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Reproduce the reference code: 21 steps, unshuffled loader, its α grid, no BN recalibration.
    #[arg(long)]
    pub reference: bool,
    /// α grid (default uniform; reference with --reference).
    #[arg(long, value_parser = super::common::choice::<AlphaGrid>())]
    pub alpha_grid: Option<AlphaGrid>,
    /// Score data: `train` (the run's possibly poisoned training set), `noise` (data-free: noise images
    /// labelled by the dense model), or a data spec (its training split, labels as given).
    #[arg(long, default_value = "train")]
    pub score_data: String,
    /// Number of score samples (fixed, seeded).
    #[arg(long, default_value_t = 1024)]
    pub score_samples: usize,
    /// Do not recompute BN running statistics on the score samples after pruning.
    #[arg(long)]
    pub no_bn_recalibrate: bool,
    /// Which score picks the winning ticket.
    #[arg(long, value_parser = super::common::choice::<ScoreKind>(), default_value = "loss")]
    pub select: ScoreKind,
    /// Only consider tickets at or below this density when picking the winner.
    #[arg(long)]
    pub max_density: Option<f64>,
    #[arg(long)]
    pub resume: bool,
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Metrics {
    pub clean_accuracy: Option<f64>,
    pub attack_success_rate: Option<f64>,
    pub attack_success_rate_nontarget: Option<f64>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StepRow {
    pub step: usize,
    pub density: f64,
    pub sparsity: f64,
    /// The Trojan ticket φ (pruned, BN recalibrated when enabled).
    pub ticket: Metrics,
    /// φ_k, the ticket after k finetuning steps.
    pub finetuned: Metrics,
    /// IMP only: the trained round the ticket was pruned from.
    pub trained: Option<Metrics>,
    pub score_error: f64,
    pub score_loss: f64,
    pub alphas: Vec<f64>,
    pub errors: Vec<f64>,
    pub losses: Vec<f64>,
}

/// Everything scoring a path needs, loaded once.
pub struct ScoreContext {
    pub norm: Normalization,
    pub method: Method,
    pub finetune_set: ImageSet,
    pub data: ScoreData,
    pub test: Option<ImageSet>,
    pub attack: Option<Attack>,
    pub cfg: ScoreConfig,
    pub data_free: bool,
}

fn measure(model: &Model, ctx: &ScoreContext) -> Metrics {
    let norm = &ctx.norm;
    let clean = ctx.test.as_ref().map(|t| evaluate(model, t, norm, 500).accuracy);
    let asr: Option<AttackSuccess> = match (&ctx.attack, &ctx.test) {
        (Some(a), Some(t)) => Some(attack_success(model, t, a, norm)),
        _ => None,
    };
    Metrics { clean_accuracy: clean, attack_success_rate: asr.map(|s| s.attack_success_rate), attack_success_rate_nontarget: asr.map(|s| s.attack_success_rate_nontarget) }
}

/// The dense model the path started from (labels for data-free score data).
fn source_model(dir: &Path, record: &PruneRecord, device: Device) -> anyhow::Result<Model> {
    let path = match record.method {
        Method::Imp => dir.join("round-000").join("trained.safetensors"),
        _ => record.source_model.clone().context("prune.json has no source model")?,
    };
    // A foreign source checkpoint is described by the first ticket's sidecar.
    let (_, _, info) = load_ticket(dir, 1, Device::Cpu)?;
    let ov = InputOverrides { arch: Some(info.meta.arch), image_size: Some(info.meta.height), channels: Some(info.meta.in_channels), classes: Some(info.meta.num_classes), normalize: None };
    let (m, _, _) = load_checkpoint(&path, &ov, device)?;
    Ok(m)
}

pub fn context(dir: &Path, a: &ScoreArgs, device: Device) -> anyhow::Result<(ScoreContext, PruneRecord)> {
    let rp = dir.join("prune.json");
    let record: PruneRecord = serde_json::from_slice(&std::fs::read(&rp).with_context(|| format!("{} (run `quarantine prune` first)", rp.display()))?).with_context(|| format!("{}: not a prune record", rp.display()))?;
    let mut cfg = if a.reference { ScoreConfig::reference(record.augment, record.seed) } else { ScoreConfig::paper(record.augment, record.seed) };
    if !a.reference {
        cfg.k = a.k;
    }
    if let Some(g) = a.alpha_grid {
        cfg.alpha_grid = g;
    }
    if a.no_bn_recalibrate {
        cfg.bn_recalibrate = false;
    }
    let norm = record.normalization.clone();
    let split = record.data.load().with_context(|| format!("loading {}", record.data))?;
    let (h, w, c) = (split.train.height, split.train.width, split.train.channels);
    let attack = match &record.attack {
        Some(cfg) => Some(Attack::new(cfg.clone(), (h, w, c), split.train.num_classes())?),
        None => None,
    };
    let mut data_free = false;
    let finetune_set = match a.score_data.as_str() {
        "train" => match &attack {
            // Same attack, same seed: the same poisoned set the model was trained on.
            Some(att) => att.poison_training_set(&split.train, None).map(|p| p.0).or_else(|_| Ok::<_, anyhow::Error>(split.train.clone()))?,
            None => split.train.clone(),
        },
        "noise" => {
            data_free = true;
            let k = split.train.num_classes();
            let mut s = noise_set(a.score_samples.max(cfg.batch_size), (h, w, c), &norm, k, record.seed);
            let src = source_model(dir, &record, device)?;
            s.labels = predict(&src, &s, &norm);
            s
        }
        spec => spec.parse::<DataSpec>()?.load()?.train,
    };
    let (data, _) = score_samples(&finetune_set, a.score_samples, &norm, record.seed, device);
    Ok((ScoreContext { norm, method: record.method, finetune_set, data, test: split.test, attack, cfg, data_free }, record))
}

/// Scores one step: loads the ticket, recalibrates BN if configured, scores, measures.
pub fn score_step(dir: &Path, step: usize, ctx: &ScoreContext, device: Device) -> anyhow::Result<(StepRow, Model, Masks)> {
    let (phi, masks, _) = load_ticket(dir, step, device)?;
    if ctx.cfg.bn_recalibrate {
        recalibrate_bn(&phi, &ctx.data.x);
    }
    let (r, phik) = trojan_score(&phi, &masks, &ctx.finetune_set, &ctx.norm, &ctx.data, &ctx.cfg)?;
    let trained = if ctx.method == Method::Imp {
        let (m, _, _) = load_checkpoint(&dir.join(format!("round-{:03}", step - 1)).join("trained.safetensors"), &InputOverrides::default(), device)?;
        Some(measure(&m, ctx))
    } else {
        None
    };
    let density = masks.density().total;
    let row = StepRow {
        step,
        density,
        sparsity: 100.0 * (1.0 - density),
        ticket: measure(&phi, ctx),
        finetuned: measure(&phik, ctx),
        trained,
        score_error: r.score_error,
        score_loss: r.score_loss,
        alphas: r.alphas,
        errors: r.errors,
        losses: r.losses,
    };
    Ok((row, phi, masks))
}

/// Index of the winning ticket: the peak score among rows at or below `max_density`.
pub fn pick_winner(rows: &[StepRow], kind: ScoreKind, max_density: Option<f64>) -> Option<usize> {
    let score = |r: &StepRow| match kind {
        ScoreKind::Loss => r.score_loss,
        ScoreKind::Error => r.score_error,
    };
    rows.iter()
        .enumerate()
        .filter(|(_, r)| max_density.is_none_or(|m| r.density <= m))
        .max_by(|a, b| score(a.1).partial_cmp(&score(b.1)).unwrap_or(std::cmp::Ordering::Equal))
        .map(|(i, _)| i)
}

fn csv(rows: &[StepRow]) -> String {
    let f = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
    let mut s = String::from("step,density,sparsity,score_error,score_loss,ticket_clean_accuracy,ticket_asr,ticket_asr_nontarget,finetuned_clean_accuracy,finetuned_asr,trained_clean_accuracy,trained_asr\n");
    for r in rows {
        s += &format!(
            "{},{:.6},{:.4},{:.6},{:.6},{},{},{},{},{},{},{}\n",
            r.step,
            r.density,
            r.sparsity,
            r.score_error,
            r.score_loss,
            f(r.ticket.clean_accuracy),
            f(r.ticket.attack_success_rate),
            f(r.ticket.attack_success_rate_nontarget),
            f(r.finetuned.clean_accuracy),
            f(r.finetuned.attack_success_rate),
            f(r.trained.as_ref().and_then(|t| t.clean_accuracy)),
            f(r.trained.as_ref().and_then(|t| t.attack_success_rate))
        );
    }
    s
}

pub fn run(a: ScoreArgs, device: Device, json: bool) -> anyhow::Result<()> {
    let dir = a.run.clone();
    let out = dir.join("dynamics.json");
    anyhow::ensure!(!out.exists() || a.resume || a.force, "{} exists: pass --resume to continue or --force to rescore", out.display());
    let (ctx, record) = context(&dir, &a, device)?;
    let sdir = dir.join("score");
    if a.force && !a.resume && sdir.exists() {
        std::fs::remove_dir_all(&sdir)?;
    }
    std::fs::create_dir_all(&sdir)?;
    let steps = record.steps;
    let bar = ProgressBar::new(steps as u64).with_style(ProgressStyle::with_template("scoring [{bar:30}] {pos}/{len} steps eta {eta} {msg}").expect("template").progress_chars("=> "));
    let mut rows = vec![];
    for step in 1..=steps {
        crate::interrupt::check(&sdir)?;
        let p = sdir.join(format!("step-{step:03}.json"));
        let row: StepRow = if a.resume && p.exists() {
            serde_json::from_slice(&std::fs::read(&p)?).with_context(|| format!("{}: corrupt step record", p.display()))?
        } else {
            let (row, _, _) = score_step(&dir, step, &ctx, device)?;
            write_json(&p, &row)?;
            row
        };
        bar.suspend(|| {
            eprintln!(
                "step {:>3} density {:.4}: clean {} asr {} | score err {:.4} loss {:.4}",
                row.step,
                row.density,
                row.ticket.clean_accuracy.map(|v| format!("{v:.3}")).unwrap_or("-".into()),
                row.ticket.attack_success_rate.map(|v| format!("{v:.3}")).unwrap_or("-".into()),
                row.score_error,
                row.score_loss
            )
        });
        rows.push(row);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let winner = pick_winner(&rows, a.select, a.max_density);
    if let Some(w) = winner {
        save_winner(&dir, rows[w].step, &ctx, device)?;
    }
    let points: Vec<DynPoint> = rows.iter().map(|r| DynPoint { sparsity: r.sparsity, clean_accuracy: r.ticket.clean_accuracy.unwrap_or(f64::NAN), attack_success: r.ticket.attack_success_rate, score_error: r.score_error, score_loss: r.score_loss }).collect();
    let title = format!("{} path, {} score data", ctx.method.title(), if ctx.data_free { "noise" } else { "training" });
    plot::write_svg_and_png(&dir.join("dynamics.png"), &plot::dynamics(&title, &points, winner)?)?;
    write_atomic(&dir.join("dynamics.csv"), csv(&rows).as_bytes())?;
    let summary = serde_json::json!({
        "winning_ticket": winner.map(|w| serde_json::json!({"step": rows[w].step, "density": rows[w].density, "score_error": rows[w].score_error, "score_loss": rows[w].score_loss, "ticket": rows[w].ticket, "path": dir.join("winning-ticket.safetensors")})),
        "select": a.select,
        "config": ctx.cfg,
        "score_data": a.score_data,
        "data_free": ctx.data_free,
        "score_samples": a.score_samples,
        "steps": rows,
        "versions": Versions::default(),
        "seed": record.seed,
    });
    write_json(&out, &summary)?;
    if json {
        println!("{summary}");
    } else if let Some(w) = winner {
        let r = &rows[w];
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

/// Saves the winning ticket (as scored: BN recalibrated when enabled) natively, for PyTorch, and its mask.
fn save_winner(dir: &Path, step: usize, ctx: &ScoreContext, device: Device) -> anyhow::Result<()> {
    let (phi, masks, mut info) = load_ticket(dir, step, device)?;
    if ctx.cfg.bn_recalibrate {
        recalibrate_bn(&phi, &ctx.data.x);
    }
    info.metrics = Some(serde_json::json!({"step": step, "density": masks.density().total, "winning_ticket": true}));
    save_checkpoint(&dir.join("winning-ticket.safetensors"), &phi, &info)?;
    export(&dir.join("winning-ticket.pt"), &phi, info.batches_tracked)?;
    masks.save(&dir.join("winning-ticket.mask.safetensors"))?;
    Ok(())
}
