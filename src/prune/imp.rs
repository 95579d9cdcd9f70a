//! Iterative magnitude pruning with rewinding (docs/METHOD.md §4), resumable round by round.
//!
//! Layout under the run folder: `round-000/` (dense training: train state, metrics, `trained.*`),
//! `rewind.safetensors` (full state at the rewind epoch, or at init), `round-RRR/` for each pruned
//! round (`trained.*` + `mask.safetensors`), and `tickets/` (see the parent module). A finished round
//! is never retrained; an interrupted one resumes from its last epoch.
use std::path::Path;

use crate::control::Control;
use crate::error::{Error, Result};
use crate::model::{load_checkpoint, save_checkpoint, CheckpointInfo, InputOverrides, Model};
use crate::train::{fit, FitOptions, RunFiles, TrainConfig, TrainData};

use super::{save_ticket, ticket_path, Criterion, Density, Masks, Scope};

/// The state each pruned IMP round starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rewind {
    /// Rewind to the state after this many dense epochs (the reference: 3).
    Epoch(usize),
    /// Rewind to the random initialisation (classic lottery tickets).
    Init,
    /// No rewinding: finetune the pruned weights.
    None,
}

/// An IMP run: the dense schedule, the pruning and the rewinding.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImpConfig {
    /// The dense run's schedule; `train.epochs` is the dense length E.
    pub train: TrainConfig,
    /// Number of tickets (pruning steps); rounds 0..steps-1 are trained.
    pub steps: usize,
    /// Fraction of the alive weights removed per step.
    pub rate: f64,
    /// Global or per-layer thresholds.
    pub scope: Scope,
    /// The state each pruned round starts from.
    pub rewind: Rewind,
    /// Epochs each pruned round trains: from the rewind epoch on (default: up to E), or for
    /// `Rewind::None` the last `epochs_per_round` epochs of the schedule (default E/2).
    pub epochs_per_round: Option<usize>,
    /// Random instead of magnitude pruning (the control).
    pub random: bool,
}

impl ImpConfig {
    /// Epoch range [start, end) of a pruned round.
    pub fn round_epochs(&self) -> (usize, usize) {
        let e = self.train.epochs;
        match self.rewind {
            Rewind::Epoch(r) => (r, r + self.epochs_per_round.unwrap_or(e.saturating_sub(r))),
            Rewind::Init => (0, self.epochs_per_round.unwrap_or(e)),
            Rewind::None => {
                let n = self.epochs_per_round.unwrap_or((e / 2).max(1));
                (e.saturating_sub(n), e)
            }
        }
    }

    /// Checks the rewind epoch, the rate and the rounds' length.
    pub fn validate(&self) -> Result<()> {
        if let Rewind::Epoch(r) = self.rewind {
            if r > self.train.epochs {
                return Err(Error::invalid(
                    "rewind epoch",
                    format!("{r} is past the dense run's {} epochs", self.train.epochs),
                ));
            }
        }
        if !(0.0 < self.rate && self.rate < 1.0) {
            return Err(Error::invalid("pruning rate", format!("must be in (0, 1), got {}", self.rate)));
        }
        let (s, e) = self.round_epochs();
        if e <= s {
            return Err(Error::invalid("epochs per round", "rounds must train at least one epoch"));
        }
        Ok(())
    }
}

fn round_dir(dir: &Path, r: usize) -> std::path::PathBuf {
    dir.join(format!("round-{r:03}"))
}

fn save_state(path: &Path, model: &Model) -> Result<()> {
    Ok(torchfile::save_safetensors(path, &model.state_dict(0), &Default::default())?)
}

fn load_state(path: &Path, model: &Model) -> Result<()> {
    let sd = torchfile::load(path)?;
    model.load_state_dict(&sd.tensors, path)
}

/// Runs (or resumes) IMP. `model` is freshly initialised (seeded); `info` describes it for the saved
/// checkpoints. Returns the tickets' densities. Training stops with `Error::Interrupted` when `ctl`
/// is cancelled; progress and the rounds go to its progress sink.
pub fn run_imp(
    dir: &Path,
    model: &Model,
    data: &TrainData,
    cfg: &ImpConfig,
    info: &CheckpointInfo,
    resume: bool,
    ctl: &Control,
) -> Result<Vec<Density>> {
    cfg.validate()?;
    let rewind_path = dir.join("rewind.safetensors");
    let trained = |r: usize| round_dir(dir, r).join("trained.safetensors");
    // Round 0: dense training, saving the rewind point.
    let r0 = round_dir(dir, 0);
    std::fs::create_dir_all(&r0).map_err(|e| Error::io(&r0, e))?;
    if !trained(0).exists() {
        if cfg.rewind == Rewind::Init && !rewind_path.exists() {
            save_state(&rewind_path, model)?;
        }
        ctl.progress().note(&format!("IMP round 0: dense training, {} epochs", cfg.train.epochs));
        let run = RunFiles { dir: r0.clone() };
        fit(
            model,
            data,
            &cfg.train,
            FitOptions { run: Some(&run), resume, ctl: ctl.clone(), ..Default::default() },
            |epoch, m| match cfg.rewind {
                Rewind::Epoch(r) if epoch == r => save_state(&rewind_path, m),
                _ => Ok(()),
            },
        )?;
        if let Rewind::Epoch(0) = cfg.rewind {
            return Err(Error::invalid("rewind epoch", "epoch 0 is the initialisation: rewind to init instead"));
        }
        save_checkpoint(&trained(0), model, info)?;
    }
    let mut masks = Masks::dense(model);
    let mut densities = vec![];
    let (start, end) = cfg.round_epochs();
    for step in 1..=cfg.steps {
        // Round step-1's final weights, pruned once more: ticket `step`.
        let (prev, _, _) = load_checkpoint(&trained(step - 1), &InputOverrides::default(), model.device())?;
        model.copy_from(&prev)?;
        if step > 1 {
            masks = Masks::load(&round_dir(dir, step - 1).join("mask.safetensors"), model)?;
        }
        let crit =
            if cfg.random { Criterion::Random(cfg.train.seed.wrapping_add(step as u64)) } else { Criterion::Magnitude };
        let next = masks.prune(model, cfg.rate, cfg.scope, crit);
        if !ticket_path(dir, step).exists() {
            save_ticket(dir, step, model, &next, info)?;
        }
        densities.push(next.density());
        if step == cfg.steps {
            break;
        }
        // Train round `step` with mask `next`, unless already done.
        let rd = round_dir(dir, step);
        if trained(step).exists() {
            continue;
        }
        std::fs::create_dir_all(&rd).map_err(|e| Error::io(&rd, e))?;
        let mp = rd.join("mask.safetensors");
        if !mp.exists() {
            next.save(&mp)?;
        }
        match cfg.rewind {
            Rewind::Epoch(_) | Rewind::Init => load_state(&rewind_path, model)?,
            Rewind::None => {}
        }
        next.apply(model);
        ctl.progress().note(&format!("IMP round {step}: density {:.4}, epochs {start}..{end}", next.density().total));
        let mut round_cfg = cfg.train.clone();
        round_cfg.epochs = end;
        let run = RunFiles { dir: rd.clone() };
        fit(
            model,
            data,
            &round_cfg,
            FitOptions { run: Some(&run), resume: true, masks: next.to_map(), start_epoch: start, ctl: ctl.clone() },
            |_, _| Ok(()),
        )?;
        save_checkpoint(&trained(step), model, info)?;
    }
    Ok(densities)
}
