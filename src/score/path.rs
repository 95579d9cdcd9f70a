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
    /// The score a search along the path climbs (the one that picks the winner).
    pub select: ScoreKind,
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
        recalibrate_bn(&phi, &ctx.data.x)?;
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

/// How the steps of a pruning path are chosen for scoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PathSearch {
    /// Every step from a coarse grid (every `stride`-th step, counted down from the sparsest),
    /// then every step within `stride - 1` of the grid's peak ([`coarse_to_fine`]).
    #[default]
    Coarse,
    /// Every step (the full dynamics curve).
    Sweep,
}
crate::choices!(PathSearch {
    Coarse => "coarse": "a coarse grid of steps, then every step around its peak",
    Sweep => "sweep": "every step (the full dynamics curve)",
});

/// Grid stride of the default coarse-to-fine search: on every recorded dynamics curve the
/// search finds the full sweep's peak with it (unit test), scoring about half the steps.
pub const DEFAULT_STRIDE: usize = 4;

/// The steps of `steps` scored by a coarse-to-fine search for the peak of `score` (called once per
/// step, in the returned order): the grid `hi, hi − stride, …` down to `lo` (and `lo` itself),
/// then every unscored step within `stride − 1` of the grid's best (ties: the sparser step).
/// The search finds the exhaustive peak whenever it lies within `stride − 1` steps of the grid's
/// best point; on the recorded dynamics curves it does (unit test). `stride` 1 scores every step.
pub fn coarse_to_fine<E>(
    steps: RangeInclusive<usize>,
    stride: usize,
    mut score: impl FnMut(usize) -> std::result::Result<f64, E>,
) -> std::result::Result<Vec<usize>, E> {
    let (lo, hi) = (*steps.start(), *steps.end());
    if lo > hi {
        return Ok(vec![]);
    }
    let stride = stride.max(1);
    let mut grid: Vec<usize> = (lo..=hi).rev().step_by(stride).collect();
    if grid.last() != Some(&lo) {
        grid.push(lo);
    }
    let mut done: Vec<(usize, f64)> = vec![];
    for &s in &grid {
        done.push((s, score(s)?));
    }
    let best = |done: &[(usize, f64)]| {
        done.iter().copied().fold(None, |b: Option<(usize, f64)>, (s, v)| match b {
            Some((bs, bv)) if bv > v || (bv == v && bs > s) => Some((bs, bv)),
            _ if v.is_nan() => b,
            _ => Some((s, v)),
        })
    };
    if let Some((peak, _)) = best(&done) {
        let r = stride - 1;
        for s in peak.saturating_sub(r).max(lo)..=(peak + r).min(hi) {
            if !done.iter().any(|d| d.0 == s) {
                done.push((s, score(s)?));
            }
        }
    }
    Ok(done.into_iter().map(|d| d.0).collect())
}

/// Step `step`'s row of the run in `dir`: read back when `resume` finds it saved, else scored
/// and saved atomically.
fn scored_row(dir: &Path, step: usize, ctx: &PathContext, device: Device, resume: bool) -> Result<StepRow> {
    let p = step_path(dir, step);
    if resume && p.exists() {
        let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
        return serde_json::from_slice(&bytes).map_err(|e| Error::bad_file(&p, format!("corrupt step record: {e}")));
    }
    let row = score_step(dir, step, ctx, device)?;
    write_json(&p, &row)?;
    Ok(row)
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
    search_steps(dir, steps, PathSearch::Sweep, 1, ctx, device, resume, ctl)
}

/// Scores the steps of the run in `dir` that `search` visits (every step, or [`coarse_to_fine`]
/// with `stride`), saving each row as [`score_steps`] does (so a resumed search reads back what
/// it had scored and takes the same path). Rows come back sorted by step.
#[allow(clippy::too_many_arguments)]
pub fn search_steps(
    dir: &Path,
    steps: RangeInclusive<usize>,
    search: PathSearch,
    stride: usize,
    ctx: &PathContext,
    device: Device,
    resume: bool,
    ctl: &Control,
) -> Result<Vec<StepRow>> {
    let sdir = dir.join("score");
    std::fs::create_dir_all(&sdir).map_err(|e| Error::io(&sdir, e))?;
    let stride = if search == PathSearch::Sweep { 1 } else { stride.max(1) };
    let n = steps.clone().count();
    let expected = if stride == 1 { n } else { n.div_ceil(stride) + 1 + 2 * (stride - 1) }.min(n);
    let progress = ctl.progress();
    progress.start("scoring", expected as u64);
    let mut rows: Vec<StepRow> = vec![];
    coarse_to_fine(steps, stride, |step| {
        ctl.check(&sdir)?;
        let row = scored_row(dir, step, ctx, device, resume)?;
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
        let v = row.score(ctx.select);
        rows.push(row);
        progress.inc(1);
        Ok::<f64, Error>(v)
    })?;
    progress.finish();
    rows.sort_by_key(|r| r.step);
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
/// checkpoint's BN batch counter) and `winning-ticket.mask.safetensors`; a TorchScript model's
/// ticket also as TorchScript, `winning-ticket.ts.pt` (its code with the ticket's weights, for
/// `torch.jit.load`), with the sidecar `winning-ticket.ts.json`. The one place a winning ticket is
/// written, for `score` and `detect` alike.
pub fn save_ticket(out: &Path, phi: &Model, masks: &Masks, info: &CheckpointInfo, step: usize) -> Result<()> {
    let mut info = info.clone();
    info.metrics = Some(serde_json::json!({"step": step, "density": masks.density().total, "winning_ticket": true}));
    save_checkpoint(&out.join("winning-ticket.safetensors"), phi, &info)?;
    export(&out.join("winning-ticket.pt"), phi, info.batches_tracked)?;
    if phi.is_script() {
        let ts = out.join("winning-ticket.ts.pt");
        phi.save_torchscript(&ts)?;
        let mut ts_info = info.clone();
        ts_info.meta.script = Some(crate::model::ScriptSource::new(
            &ts,
            &info.meta.script.as_ref().map(|s| s.allow_ops.clone()).unwrap_or_default(),
        )?);
        let json = serde_json::to_vec_pretty(&ts_info).expect("sidecar serializes");
        crate::util::write_atomic(&crate::model::checkpoint_sidecar(&ts), &json)?;
    }
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

    /// The coarse-to-fine search visits the grid from the sparsest step down, then the peak's
    /// neighbourhood; it scores every step with stride 1 and nothing on an empty range.
    #[test]
    fn coarse_to_fine_visits_the_grid_then_the_peak_neighbourhood() {
        let curve = |s: usize| -> Result<f64> { Ok(-((s as f64) - 7.0).powi(2)) };
        let seen = coarse_to_fine(1..=12, 4, curve).unwrap();
        assert_eq!(seen, vec![12, 8, 4, 1, 5, 6, 7, 9, 10, 11]);
        assert_eq!(coarse_to_fine(3..=6, 1, curve).unwrap(), vec![6, 5, 4, 3]);
        let (lo, hi) = (5, 4);
        assert!(coarse_to_fine(lo..=hi, 4, curve).unwrap().is_empty());
        // Ties go to the sparser step, as `pick_winner` (the last maximum).
        let flat = coarse_to_fine(1..=9, 4, |_| Ok::<f64, Error>(1.0)).unwrap();
        assert_eq!(flat, vec![9, 5, 1, 6, 7, 8]);
        // An error stops the search at once.
        let mut n = 0;
        let stopped = coarse_to_fine(1..=9, 4, |s| {
            n += 1;
            if s == 5 {
                Err("interrupted")
            } else {
                Ok(0.0)
            }
        });
        assert_eq!((stopped, n), (Err("interrupted"), 2));
    }

    /// On every recorded dynamics curve (docs/dynamics/*.csv: OMP and IMP paths of the README's
    /// experiments, and data-free `detect` paths), the default search finds the step a full sweep
    /// picks (the peak of the cross-entropy score), scoring about half the steps.
    #[test]
    fn the_default_search_finds_the_sweeps_winner_on_the_recorded_curves() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/dynamics");
        let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.retain(|p| p.extension().is_some_and(|e| e == "csv"));
        files.sort();
        assert!(files.len() >= 13, "{files:?}");
        let (mut scored, mut total) = (0, 0);
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            let mut lines = text.lines();
            let head: Vec<&str> = lines.next().unwrap().split(',').collect();
            let col = |name: &str| head.iter().position(|h| *h == name).unwrap();
            let (cs, cl, cd) = (col("step"), col("score_loss"), col("density"));
            let rows: Vec<StepRow> = lines
                .map(|l| {
                    let v: Vec<&str> = l.split(',').collect();
                    row(v[cs].parse().unwrap(), v[cd].parse().unwrap(), v[cl].parse().unwrap(), 0.0)
                })
                .collect();
            let sweep = rows[pick_winner(&rows, ScoreKind::Loss, None).unwrap()].step;
            let (lo, hi) = (rows[0].step, rows[rows.len() - 1].step);
            let by_step = |s: usize| Ok::<f64, Error>(rows.iter().find(|r| r.step == s).unwrap().score_loss);
            let seen = coarse_to_fine(lo..=hi, DEFAULT_STRIDE, by_step).unwrap();
            let found = seen
                .iter()
                .copied()
                .max_by(|a, b| by_step(*a).unwrap().partial_cmp(&by_step(*b).unwrap()).unwrap().then(a.cmp(b)));
            assert_eq!(found, Some(sweep), "{}: the search scored {seen:?}", f.display());
            scored += seen.len();
            total += rows.len();
        }
        assert!(scored * 10 <= total * 6, "the search scored {scored} of {total} steps");
    }

    /// The winning-ticket save (once for `score` and `detect`): mask file, native checkpoint and a
    /// PyTorch file whose `num_batches_tracked` is the checkpoint's BN counter (detect's former copy
    /// saved no mask and exported 0).
    #[test]
    fn the_winning_ticket_is_saved_with_its_mask_and_bn_counter() {
        use crate::model::{Arch, ModelMeta};
        use crate::prune::{Criterion, Scope};
        let meta = ModelMeta { arch: Arch::Cnn, in_channels: 1, height: 28, width: 28, num_classes: 10, script: None };
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
