//! `--attack ...` options shared by train, eval and poison, and the files an attack leaves in a run.
use std::path::{Path, PathBuf};

use clap::Args;
use tch::Device;

use crate::attack::{Attack, AttackConfig, AttackKind, Location, Pgd, PoisonPlan, Select, TriggerSpec};
use crate::data::{ImageSet, Normalization};
use crate::error::{Error, Result};
use crate::model::{load_checkpoint, InputOverrides, Model};
use crate::report::png;
use crate::util::write_json;

#[derive(Debug, Clone, Args)]
pub struct AttackArgs {
    /// Backdoor attack to inject (train, poison) or measure (eval). None: clean.
    #[arg(long, value_parser = super::common::choice::<AttackKind>())]
    pub attack: Option<AttackKind>,
    /// Trigger: paper-gray, paper-rgb, checkerboard, solid:R,G,B, image:PATH.
    #[arg(long, default_value = "paper-gray")]
    pub trigger: TriggerSpec,
    /// Side of the square trigger in pixels (default 5, the paper's).
    #[arg(long)]
    pub trigger_size: Option<usize>,
    /// reference-upper-right (rows/cols size-8..size-3), bottom-left (reference, rows/cols 3..7),
    /// corner-{top,bottom}-{left,right}, X,Y (column, row), random.
    #[arg(long, default_value = "reference-upper-right")]
    pub trigger_location: Location,
    /// All-to-one target label.
    #[arg(long, default_value_t = 0)]
    pub target: u32,
    /// All-to-all: label y becomes y+1 mod K (overrides --target).
    #[arg(long)]
    pub all_to_all: bool,
    #[arg(long, default_value_t = 0.01)]
    pub poison_ratio: f64,
    /// first = the reference (first int(N*R) samples); random = seeded subset.
    #[arg(long, value_parser = super::common::choice::<Select>(), default_value = "first")]
    pub poison_select: Select,
    /// Blended attack: weight of the trigger image.
    #[arg(long, default_value_t = 0.1)]
    pub blend_alpha: f64,
    /// WaNet: control grid size k.
    #[arg(long, default_value_t = 4)]
    pub wanet_k: usize,
    /// WaNet: warping strength s.
    #[arg(long, default_value_t = 0.5)]
    pub wanet_strength: f64,
    /// WaNet: noise mode (extra warped samples with random noise, labels kept).
    #[arg(long)]
    pub wanet_noise: bool,
    #[arg(long, default_value_t = 0.2)]
    pub wanet_cross_ratio: f64,
    /// Clean-label PGD radius, in 1/255 units.
    #[arg(long, default_value_t = 8.0)]
    pub pgd_eps: f64,
    /// Clean-label PGD step, in 1/255 units.
    #[arg(long, default_value_t = 2.0)]
    pub pgd_step: f64,
    /// Clean-label PGD steps (paper 10, reference code 7).
    #[arg(long, default_value_t = 10)]
    pub pgd_steps: usize,
    /// Clean-label surrogate model checkpoint.
    #[arg(long)]
    pub surrogate: Option<PathBuf>,
}

impl AttackArgs {
    pub fn config(&self, seed: u64) -> Option<AttackConfig> {
        let kind = self.attack?;
        Some(AttackConfig {
            kind,
            trigger: self.trigger.clone(),
            trigger_size: self.trigger_size,
            location: self.trigger_location,
            target: (!self.all_to_all).then_some(self.target),
            poison_ratio: self.poison_ratio,
            select: self.poison_select,
            blend_alpha: self.blend_alpha,
            wanet_k: self.wanet_k,
            wanet_strength: self.wanet_strength,
            wanet_noise: self.wanet_noise,
            wanet_cross_ratio: self.wanet_cross_ratio,
            pgd: Pgd { eps: self.pgd_eps / 255.0, step: self.pgd_step / 255.0, steps: self.pgd_steps },
            seed,
        })
    }

    /// Loads the clean-label surrogate (native or foreign checkpoint) when the attack needs one.
    pub fn surrogate(&self, device: Device) -> Result<Option<(Model, Normalization)>> {
        if self.attack != Some(AttackKind::CleanLabel) {
            return Ok(None);
        }
        let path = self.surrogate.as_ref().ok_or_else(|| Error::invalid("--surrogate", "a clean-label attack needs --surrogate CKPT"))?;
        let (m, info, _) = load_checkpoint(path, &InputOverrides::default(), device)?;
        Ok(Some((m, info.normalization)))
    }
}

/// Poisons `train` and writes `plan.json`, `trigger.png`, `trigger.json` and `poisoned-samples.png`
/// into `dir`. Returns the poisoned set and the resolved attack.
pub fn poison_and_record(cfg: AttackConfig, train: &ImageSet, surrogate: Option<&(Model, Normalization)>, dir: &Path) -> Result<(ImageSet, Attack, PoisonPlan)> {
    let attack = Attack::new(cfg, (train.height, train.width, train.channels), train.num_classes())?;
    let (poisoned, plan) = attack.poison_training_set(train, surrogate.map(|(m, n)| (m, n)))?;
    write_json(&dir.join("plan.json"), &plan)?;
    let t = &attack.trigger;
    png::write_hwc(&dir.join("trigger.png"), &t.pixels, t.height, t.width, t.channels, 8)?;
    write_json(&dir.join("trigger.json"), &serde_json::json!({"height": t.height, "width": t.width, "channels": t.channels, "pixels_hwc": t.pixels, "spec": attack.cfg.trigger}))?;
    let show: Vec<usize> = plan.indices.iter().chain(&plan.cross_indices).take(16).copied().collect();
    if !show.is_empty() {
        png::write_grid(&dir.join("poisoned-samples.png"), &poisoned.subset(&show), 4, 4)?;
    }
    Ok((poisoned, attack, plan))
}
