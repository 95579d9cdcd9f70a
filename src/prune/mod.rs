//! Pruning paths (docs/METHOD.md §4-5): iterative magnitude pruning with rewinding (IMP), one-shot magnitude
//! pruning of a trained model (OMP), and random pruning (the control). Each produces a sequence of
//! Trojan tickets φ_s with masks, saved as `tickets/step-SSS.safetensors` (+ sidecar) and
//! `tickets/step-SSS.mask.safetensors`, which `quarantine score` scores.
//!
//! - IMP: train dense (round 0), saving the state at the rewind epoch; then for each round r:
//!   prune `rate` of the alive weights of round r-1's final weights, rewind, re-apply the mask, train
//!   again with a fresh optimizer and the schedule advanced by the rewind epochs. The ticket of step s
//!   is round s-1's trained weights pruned once more, not retrained (the reference's): density 0.8^s.
//! - OMP: step s is the given trained model pruned to density 0.8^s (s rounds of 20% of the alive
//!   weights by magnitude of the same weights), no retraining: the path an auditor can afford.
//! - Random: like OMP, with random scores instead of magnitudes.
//!
//! [`run`] is the whole `prune` command as a library call: a [`PruneJob`] in, a [`PruneRecord`] out.
mod imp;
mod job;
mod mask;
mod record;

pub use imp::{run_imp, ImpConfig, Rewind};
pub use job::{run, run_with_data, PruneJob};
pub use mask::{Criterion, Density, Masks, Scope};
pub use record::PruneRecord;

use std::path::{Path, PathBuf};

use tch::Device;

use crate::error::Result;
use crate::model::{load_checkpoint, save_checkpoint, CheckpointInfo, InputOverrides, Model};

/// How a pruning path is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Iterative magnitude pruning with rewinding (trains every round).
    Imp,
    /// One-shot magnitude pruning of the given trained model (no training).
    Omp,
    /// Random pruning of the given trained model (control).
    Random,
}
crate::choices!(Method {
    Imp => "imp": "iterative magnitude pruning with rewinding (trains every round)",
    Omp => "omp": "one-shot magnitude pruning of a trained model (no training)",
    Random => "random": "random pruning of a trained model (control)",
});

impl Method {
    /// The method's name in prose and plot titles ("OMP path").
    pub fn title(self) -> &'static str {
        match self {
            Method::Imp => "IMP",
            Method::Omp => "OMP",
            Method::Random => "random pruning",
        }
    }
}

/// Path of ticket `step` of a pruning run.
pub fn ticket_path(dir: &Path, step: usize) -> PathBuf {
    dir.join("tickets").join(format!("step-{step:03}.safetensors"))
}

/// Path of ticket `step`'s mask.
pub fn mask_path(dir: &Path, step: usize) -> PathBuf {
    dir.join("tickets").join(format!("step-{step:03}.mask.safetensors"))
}

/// Saves a ticket (weights with the mask applied, BN state) and its mask, atomically.
pub fn save_ticket(dir: &Path, step: usize, model: &Model, masks: &Masks, info: &CheckpointInfo) -> Result<()> {
    std::fs::create_dir_all(dir.join("tickets")).map_err(|e| crate::Error::io(dir.join("tickets"), e))?;
    masks.apply(model);
    masks.save(&mask_path(dir, step))?;
    let mut info = info.clone();
    let d = masks.density();
    info.metrics = Some(serde_json::json!({"step": step, "density": d.total, "alive": d.alive}));
    save_checkpoint(&ticket_path(dir, step), model, &info)
}

/// Loads ticket `step` of a run (model on `device`, masks, sidecar).
pub fn load_ticket(dir: &Path, step: usize, device: Device) -> Result<(Model, Masks, CheckpointInfo)> {
    let (model, info, _) = load_checkpoint(&ticket_path(dir, step), &InputOverrides::default(), device)?;
    let masks = Masks::load(&mask_path(dir, step), &model)?;
    Ok((model, masks, info))
}

/// OMP / random path: tickets at densities 0.8^s, s = 1..=steps, from one trained model.
#[allow(clippy::too_many_arguments)]
pub fn one_shot_path(
    dir: &Path,
    model: &Model,
    info: &CheckpointInfo,
    steps: usize,
    rate: f64,
    scope: Scope,
    criterion: Criterion,
    start_masks: Masks,
) -> Result<Vec<Density>> {
    let dense: Vec<(String, tch::Tensor)> = model.named_tensors().into_iter().map(|(n, t)| (n, t.copy())).collect();
    let mut masks = start_masks;
    let mut out = vec![];
    for step in 1..=steps {
        // Magnitudes are always those of the trained weights; the mask only shrinks.
        let vars = model.vs.variables();
        tch::no_grad(|| {
            for (n, t) in &dense {
                vars[n].shallow_clone().copy_(t);
            }
        });
        masks.apply(model);
        let crit = match criterion {
            Criterion::Random(s) => Criterion::Random(s.wrapping_add(step as u64)),
            c => c,
        };
        masks = masks.prune(model, rate, scope, crit);
        save_ticket(dir, step, model, &masks, info)?;
        out.push(masks.density());
    }
    // Leave the model as it was given.
    let vars = model.vs.variables();
    tch::no_grad(|| {
        for (n, t) in &dense {
            vars[n].shallow_clone().copy_(t);
        }
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Augment, ImageSet, Normalization};
    use crate::model::ModelMeta;
    use crate::train::{TrainConfig, TrainData};
    use tch::Kind;

    fn tiny() -> (Model, CheckpointInfo, ImageSet) {
        use rand::{Rng, SeedableRng};
        tch::manual_seed(3);
        let meta = ModelMeta {
            arch: crate::model::Arch::Cnn,
            in_channels: 1,
            height: 8,
            width: 8,
            num_classes: 2,
            script: None,
        };
        let model = Model::new(meta.clone(), Device::Cpu).unwrap();
        let info = CheckpointInfo {
            classes: vec!["a".into(), "b".into()],
            seed: Some(3),
            ..CheckpointInfo::new(meta, Normalization::none(1))
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let labels: Vec<u32> = (0..64).map(|i| i % 2).collect();
        let images = labels
            .iter()
            .flat_map(|&l| (0..64).map(move |_| l as u8 * 200))
            .map(|v: u8| v.saturating_add(rng.gen_range(0..40)))
            .collect();
        let set =
            ImageSet { images, labels, n: 64, height: 8, width: 8, channels: 1, classes: vec!["a".into(), "b".into()] };
        (model, info, set)
    }

    fn masked_sum(model: &Model, masks: &Masks) -> f64 {
        let v = model.vs.variables();
        masks.masks.iter().map(|(n, m)| v[n].masked_select(&m.eq(0.0)).abs().sum(Kind::Float).double_value(&[])).sum()
    }

    #[test]
    fn tickets_and_masks_survive_a_checkpoint_round_trip() {
        let (model, info, _) = tiny();
        let dir = tempfile::tempdir().unwrap();
        let masks = Masks::dense(&model).prune(&model, 0.5, Scope::Global, Criterion::Magnitude);
        save_ticket(dir.path(), 1, &model, &masks, &info).unwrap();
        let (back, bmasks, binfo) = load_ticket(dir.path(), 1, Device::Cpu).unwrap();
        assert_eq!(binfo.meta, info.meta);
        for (n, m) in &masks.masks {
            assert!(m.equal(&bmasks.masks[n]), "{n}");
        }
        assert!(model.named_tensors().iter().zip(back.named_tensors()).all(|((a, x), (b, y))| a == &b && x.equal(&y)));
        assert_eq!(masked_sum(&back, &bmasks), 0.0);
    }

    #[test]
    fn imp_rounds_keep_masks_reach_0_8_pow_n_and_resume_without_retraining() {
        let (model, info, set) = tiny();
        let dir = tempfile::tempdir().unwrap();
        let mut train = TrainConfig::reference(3, 3, Augment::NONE);
        train.batch_size = 16;
        let cfg = ImpConfig {
            train,
            steps: 3,
            rate: 0.2,
            scope: Scope::Global,
            rewind: Rewind::Epoch(1),
            epochs_per_round: None,
            random: false,
        };
        let norm = Normalization::none(1);
        let data = TrainData { train: &set, test: None, norm: &norm };
        let ctl = crate::control::Control::quiet();
        let d = run_imp(dir.path(), &model, &data, &cfg, &info, false, &ctl).unwrap();
        let total = d[0].size as f64;
        let mut alive = total as i64;
        for (i, den) in d.iter().enumerate() {
            alive -= (0.2 * alive as f64).round() as i64;
            assert_eq!(den.alive, alive, "step {}", i + 1);
        }
        // Round 2 was trained with ticket 2's mask: its masked weights stayed exactly zero.
        let (round2, _, _) =
            load_checkpoint(&dir.path().join("round-002/trained.safetensors"), &InputOverrides::default(), Device::Cpu)
                .unwrap();
        let (_, m2, _) = load_ticket(dir.path(), 2, Device::Cpu).unwrap();
        assert_eq!(masked_sum(&round2, &m2), 0.0);
        // Resuming a finished run retrains nothing and gives the same tickets.
        let before = std::fs::read(ticket_path(dir.path(), 3)).unwrap();
        let stamp = std::fs::metadata(dir.path().join("round-001/trained.safetensors")).unwrap().modified().unwrap();
        let d2 = run_imp(dir.path(), &model, &data, &cfg, &info, true, &ctl).unwrap();
        assert_eq!(d2.iter().map(|x| x.alive).collect::<Vec<_>>(), d.iter().map(|x| x.alive).collect::<Vec<_>>());
        assert_eq!(std::fs::read(ticket_path(dir.path(), 3)).unwrap(), before);
        assert_eq!(
            std::fs::metadata(dir.path().join("round-001/trained.safetensors")).unwrap().modified().unwrap(),
            stamp
        );
    }
}
