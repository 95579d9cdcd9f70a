//! Poisoning a training set for a run, and the files that record it: `plan.json` (the attack and
//! the poisoned indices), `trigger.png` + `trigger.json` (the resolved trigger, for attacks that
//! have a trigger image) and `poisoned-samples.png` (up to 16 poisoned images).
use std::path::Path;

use tch::Device;

use super::{Attack, AttackConfig, AttackSpec, PoisonPlan};
use crate::data::{png, ImageSet, Normalization};
use crate::error::{Error, Result};
use crate::model::{load_checkpoint, InputOverrides, Model};
use crate::util::write_json;

/// A poisoned training set with the attack that made it and the record of what was poisoned.
#[derive(Debug, Clone)]
pub struct Poisoned {
    /// The poisoned training set.
    pub set: ImageSet,
    /// The attack, resolved for the set's image shape.
    pub attack: Attack,
    /// Which samples were poisoned.
    pub plan: PoisonPlan,
}

/// Loads the surrogate model a clean-label attack perturbs against (a native or foreign checkpoint
/// at `path`); `None` for the other attacks.
pub fn load_surrogate(
    cfg: &AttackConfig,
    path: Option<&Path>,
    device: Device,
) -> Result<Option<(Model, Normalization)>> {
    if !matches!(cfg.spec, AttackSpec::CleanLabel(_)) {
        return Ok(None);
    }
    let path =
        path.ok_or_else(|| Error::invalid("surrogate", "a clean-label attack needs a surrogate model checkpoint"))?;
    let (m, info, _) = load_checkpoint(path, &InputOverrides::default(), device)?;
    Ok(Some((m, info.normalization)))
}

/// Poisons `train` with `cfg` and writes `plan.json`, `trigger.png`, `trigger.json` and
/// `poisoned-samples.png` into `dir`.
pub fn poison_and_record(
    cfg: AttackConfig,
    train: &ImageSet,
    surrogate: Option<&(Model, Normalization)>,
    dir: &Path,
) -> Result<Poisoned> {
    let attack = Attack::new(cfg, (train.height, train.width, train.channels), train.num_classes())?;
    let (set, plan) = attack.poison_training_set(train, surrogate.map(|(m, n)| (m, n)))?;
    write_json(&dir.join("plan.json"), &plan)?;
    if let (Some(t), Some(spec)) = (&attack.trigger, attack.cfg.spec.trigger()) {
        png::write_hwc(&dir.join("trigger.png"), &t.pixels, t.height, t.width, t.channels, 8)?;
        let json = serde_json::json!({"height": t.height, "width": t.width, "channels": t.channels, "pixels_hwc": t.pixels, "spec": spec});
        write_json(&dir.join("trigger.json"), &json)?;
    }
    let show: Vec<usize> = plan.indices.iter().chain(&plan.cross_indices).take(16).copied().collect();
    if !show.is_empty() {
        png::write_grid(&dir.join("poisoned-samples.png"), &set.subset(&show), 4, 4)?;
    }
    Ok(Poisoned { set, attack, plan })
}
