//! The Trojan score along a pruning path (METHOD.md §5): every ticket of a pruning run scored in
//! turn, each step saved atomically under `RUN/score/step-NNN.json` so that an interrupted run
//! resumes; the winning Trojan ticket (peak score) picked and saved. `quarantine score` and
//! `detect` both run this one loop.
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use tch::Device;

use super::{recalibrate_bn, trojan_score, ScoreConfig, ScoreData};
use crate::attack::{attack_success, Attack};
use crate::control::Control;
use crate::data::{ImageSet, Normalization};
use crate::error::{Error, Result};
use crate::eval::evaluate;
use crate::model::{export, load_checkpoint, save_checkpoint, CheckpointInfo, InputOverrides, Model};
use crate::prune::{load_ticket, Masks, Method};
use crate::util::write_json;

/// Which barrier picks the winning ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScoreKind {
    /// Cross-entropy barrier.
    #[default]
    Loss,
    /// 0-1 error barrier.
    Error,
}
crate::choices!(ScoreKind {
    Loss => "loss": "cross-entropy barrier",
    Error => "error": "0-1 error barrier",
});

/// Clean accuracy and attack success of one network, where test data (and the attack) are known.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metrics {
    /// Accuracy on the clean test split.
    pub clean_accuracy: Option<f64>,
    /// Attack success over all stamped test images (the reference's ASR).
    pub attack_success_rate: Option<f64>,
    /// Attack success over stamped test images of other labels than the target.
    pub attack_success_rate_nontarget: Option<f64>,
}

/// One scored step of a pruning path (a row of `dynamics.json` / `dynamics.csv`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepRow {
    /// Pruning step s (density about 0.8^s).
    pub step: usize,
    /// Fraction of conv weights alive.
    pub density: f64,
    /// 100 · (1 − density).
    pub sparsity: f64,
    /// The Trojan ticket φ (pruned, BN recalibrated when enabled).
    pub ticket: Metrics,
    /// φ_k, the ticket after k finetuning steps.
    pub finetuned: Metrics,
    /// IMP only: the trained round the ticket was pruned from.
    pub trained: Option<Metrics>,
    /// Error barrier of the score.
    pub score_error: f64,
    /// Cross-entropy barrier of the score.
    pub score_loss: f64,
    /// Interpolation points.
    pub alphas: Vec<f64>,
    /// 0-1 error at each α.
    pub errors: Vec<f64>,
    /// Cross-entropy at each α.
    pub losses: Vec<f64>,
}

impl StepRow {
    /// The score of the given kind.
    pub fn score(&self, kind: ScoreKind) -> f64 {
        match kind {
            ScoreKind::Loss => self.score_loss,
            ScoreKind::Error => self.score_error,
        }
    }
}

/// Everything scoring a path needs, loaded once.
pub struct PathContext {
    /// Input normalization of the model.
    pub norm: Normalization,
    /// How the path was pruned (IMP rows also measure the trained round).
    pub method: Method,
    /// The data φ is finetuned on for φ_k.
    pub finetune_set: ImageSet,
    /// The fixed score samples.
    pub data: ScoreData,
    /// Clean test split, for the metrics (None: metrics unknown).
    pub test: Option<ImageSet>,
    /// The known attack, for attack success (experimenters only).
    pub attack: Option<Attack>,
    /// Score settings.
    pub cfg: ScoreConfig,
    /// The score data was made without data (noise or synthesized images labelled by the model).
    pub data_free: bool,
}

/// Clean accuracy and attack success of `model` on the context's test data.
pub fn measure(model: &Model, ctx: &PathContext) -> Metrics {
    let norm = &ctx.norm;
    let clean = ctx.test.as_ref().map(|t| evaluate(model, t, norm, 500).accuracy);
    let asr = match (&ctx.attack, &ctx.test) {
        (Some(a), Some(t)) => Some(attack_success(model, t, a, norm)),
        _ => None,
    };
    Metrics {
        clean_accuracy: clean,
        attack_success_rate: asr.map(|s| s.attack_success_rate),
        attack_success_rate_nontarget: asr.map(|s| s.attack_success_rate_nontarget),
    }
}

/// Ticket `step` of the run in `dir`, BN recalibrated on the score samples when configured.
pub fn load_scored_ticket(
    dir: &Path,
    step: usize,
    ctx: &PathContext,
    device: Device,
) -> Result<(Model, Masks, CheckpointInfo)> {
    let (phi, masks, info) = load_ticket(dir, step, device)?;
    if ctx.cfg.bn_recalibrate {
        recalibrate_bn(&phi, &ctx.data.x);
    }
    Ok((phi, masks, info))
}

/// Scores one step: loads the ticket, recalibrates BN if configured, scores, measures.
pub fn score_step(dir: &Path, step: usize, ctx: &PathContext, device: Device) -> Result<StepRow> {
    let (phi, masks, _) = load_scored_ticket(dir, step, ctx, device)?;
    let (r, phik) = trojan_score(&phi, &masks, &ctx.finetune_set, &ctx.norm, &ctx.data, &ctx.cfg)?;
    let trained = if ctx.method == Method::Imp {
        let round = dir.join(format!("round-{:03}", step - 1)).join("trained.safetensors");
        let (m, _, _) = load_checkpoint(&round, &InputOverrides::default(), device)?;
        Some(measure(&m, ctx))
    } else {
        None
    };
    let density = masks.density().total;
    Ok(StepRow {
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
    })
}

/// Where step `step`'s score is saved in run `dir`.
pub fn step_path(dir: &Path, step: usize) -> PathBuf {
    dir.join("score").join(format!("step-{step:03}.json"))
}

/// Scores the given steps of the run in `dir` in order. Each row is saved atomically as it is
/// done; with `resume`, rows saved earlier are read back instead of recomputed. Stops with
/// `Error::Interrupted` at a step boundary when `ctl` is cancelled.
pub fn score_steps(
    dir: &Path,
    steps: RangeInclusive<usize>,
    ctx: &PathContext,
    device: Device,
    resume: bool,
    ctl: &Control,
) -> Result<Vec<StepRow>> {
    let sdir = dir.join("score");
    std::fs::create_dir_all(&sdir).map_err(|e| Error::io(&sdir, e))?;
    let progress = ctl.progress();
    progress.start("scoring", steps.clone().count() as u64);
    let mut rows = vec![];
    for step in steps {
        ctl.check(&sdir)?;
        let p = step_path(dir, step);
        let row: StepRow = if resume && p.exists() {
            let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
            serde_json::from_slice(&bytes).map_err(|e| Error::bad_file(&p, format!("corrupt step record: {e}")))?
        } else {
            let row = score_step(dir, step, ctx, device)?;
            write_json(&p, &row)?;
            row
        };
        let fmt = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or("-".into());
        progress.note(&format!(
            "step {:>3} density {:.4}: clean {} asr {} | score err {:.4} loss {:.4}",
            row.step,
            row.density,
            fmt(row.ticket.clean_accuracy),
            fmt(row.ticket.attack_success_rate),
            row.score_error,
            row.score_loss
        ));
        rows.push(row);
        progress.inc(1);
    }
    progress.finish();
    Ok(rows)
}

/// Index of the winning ticket: the peak score among rows at or below `max_density`.
pub fn pick_winner(rows: &[StepRow], kind: ScoreKind, max_density: Option<f64>) -> Option<usize> {
    rows.iter()
        .enumerate()
        .filter(|(_, r)| max_density.is_none_or(|m| r.density <= m))
        .max_by(|a, b| a.1.score(kind).partial_cmp(&b.1.score(kind)).unwrap_or(std::cmp::Ordering::Equal))
        .map(|(i, _)| i)
}

/// Saves ticket `phi` (step `step` of its path, pruned by `masks`) into `out` as the winning
/// ticket: `winning-ticket.safetensors` (with sidecar), `winning-ticket.pt` for PyTorch (with the
/// checkpoint's BN batch counter) and `winning-ticket.mask.safetensors`. The one place a winning
/// ticket is written, for `score` and `detect` alike.
pub fn save_ticket(out: &Path, phi: &Model, masks: &Masks, info: &CheckpointInfo, step: usize) -> Result<()> {
    let mut info = info.clone();
    info.metrics = Some(serde_json::json!({"step": step, "density": masks.density().total, "winning_ticket": true}));
    save_checkpoint(&out.join("winning-ticket.safetensors"), phi, &info)?;
    export(&out.join("winning-ticket.pt"), phi, info.batches_tracked)?;
    masks.save(&out.join("winning-ticket.mask.safetensors"))
}

/// The steps as CSV, one row per step (`dynamics.csv`).
pub fn dynamics_csv(rows: &[StepRow]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(step: usize, density: f64, loss: f64, error: f64) -> StepRow {
        let m = Metrics { clean_accuracy: None, attack_success_rate: None, attack_success_rate_nontarget: None };
        StepRow {
            step,
            density,
            sparsity: 100.0 * (1.0 - density),
            ticket: m.clone(),
            finetuned: m,
            trained: None,
            score_error: error,
            score_loss: loss,
            alphas: vec![],
            errors: vec![],
            losses: vec![],
        }
    }

    #[test]
    fn the_winner_is_the_peak_of_the_chosen_score_within_the_density_cap() {
        let rows = [row(1, 0.8, 0.1, 0.5), row(2, 0.64, 0.9, 0.2), row(3, 0.512, 0.4, 0.3)];
        assert_eq!(pick_winner(&rows, ScoreKind::Loss, None), Some(1));
        assert_eq!(pick_winner(&rows, ScoreKind::Error, None), Some(0));
        assert_eq!(pick_winner(&rows, ScoreKind::Loss, Some(0.6)), Some(2));
        assert_eq!(pick_winner(&rows, ScoreKind::Loss, Some(0.1)), None);
    }

    /// The winning-ticket save (once for `score` and `detect`): mask file, native checkpoint and a
    /// PyTorch file whose `num_batches_tracked` is the checkpoint's BN counter (detect's former copy
    /// saved no mask and exported 0).
    #[test]
    fn the_winning_ticket_is_saved_with_its_mask_and_bn_counter() {
        use crate::model::{Arch, ModelMeta};
        use crate::prune::{Criterion, Scope};
        let meta = ModelMeta { arch: Arch::Cnn, in_channels: 1, height: 28, width: 28, num_classes: 10 };
        let model = Model::new(meta.clone(), Device::Cpu).unwrap();
        let masks = Masks::dense(&model).prune(&model, 0.5, Scope::Global, Criterion::Magnitude);
        masks.apply(&model);
        let mut info = CheckpointInfo::new(meta, crate::data::Normalization::mnist());
        info.batches_tracked = 7;
        let d = tempfile::tempdir().unwrap();
        save_ticket(d.path(), &model, &masks, &info, 3).unwrap();
        let back = Masks::load(&d.path().join("winning-ticket.mask.safetensors"), &model).unwrap();
        assert!((back.density().total - masks.density().total).abs() < 1e-12);
        let (_, sidecar, _) = crate::model::load_checkpoint(
            &d.path().join("winning-ticket.safetensors"),
            &InputOverrides::default(),
            Device::Cpu,
        )
        .unwrap();
        assert_eq!(sidecar.metrics.unwrap()["step"], 3);
        let pt = torchfile::load(&d.path().join("winning-ticket.pt")).unwrap();
        let counters: Vec<&torchfile::RawTensor> =
            pt.tensors.iter().filter(|(k, _)| k.ends_with("num_batches_tracked")).map(|(_, t)| t).collect();
        assert!(!counters.is_empty());
        for t in counters {
            assert_eq!(t.data, 7i64.to_le_bytes().to_vec(), "num_batches_tracked");
        }
    }
}
