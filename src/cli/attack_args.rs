//! `--attack ...` options shared by train, prune, eval and poison; they become an [`AttackConfig`]
//! whose variant carries only its kind's parameters. Defaults come from the library's.
use std::path::PathBuf;

use clap::Args;

use quarantine::attack::{
    AttackConfig, AttackKind, AttackSpec, Blend, CleanLabel, Location, Patch, Pgd, Select, TriggerSpec, Warp,
};

/// The attack flags.
#[derive(Debug, Clone, Args)]
pub struct AttackArgs {
    /// Backdoor attack to inject (train, poison) or measure (eval). None: clean.
    #[arg(long, value_parser = super::common::choice::<AttackKind>())]
    pub attack: Option<AttackKind>,
    /// Trigger: paper-gray, paper-rgb, checkerboard, solid:R,G,B, image:PATH.
    #[arg(long, default_value_t = Patch::default().trigger)]
    pub trigger: TriggerSpec,
    /// Side of the square trigger in pixels (default 5, the paper's).
    #[arg(long)]
    pub trigger_size: Option<usize>,
    /// reference-upper-right (rows/cols size-8..size-3), bottom-left (reference, rows/cols 3..7),
    /// corner-{top,bottom}-{left,right}, X,Y (column, row), random.
    #[arg(long, default_value_t = Patch::default().location)]
    pub trigger_location: Location,
    /// All-to-one target label.
    #[arg(long, default_value_t = AttackConfig::default().target.unwrap_or_default())]
    pub target: u32,
    /// All-to-all: label y becomes y+1 mod K (overrides --target).
    #[arg(long)]
    pub all_to_all: bool,
    /// Fraction of the training set poisoned.
    #[arg(long, default_value_t = AttackConfig::default().poison_ratio)]
    pub poison_ratio: f64,
    /// first = the reference (first int(N*R) samples); random = seeded subset.
    #[arg(long, value_parser = super::common::choice::<Select>(), default_value_t = AttackConfig::default().select)]
    pub poison_select: Select,
    /// Blended attack: weight of the trigger image.
    #[arg(long, default_value_t = Blend::default().alpha)]
    pub blend_alpha: f64,
    /// WaNet: control grid size k.
    #[arg(long, default_value_t = Warp::default().k)]
    pub wanet_k: usize,
    /// WaNet: warping strength s.
    #[arg(long, default_value_t = Warp::default().strength)]
    pub wanet_strength: f64,
    /// WaNet: noise mode (extra warped samples with random noise, labels kept).
    #[arg(long)]
    pub wanet_noise: bool,
    /// WaNet: fraction of the training set used as noise-mode samples.
    #[arg(long, default_value_t = Warp::default().cross_ratio)]
    pub wanet_cross_ratio: f64,
    /// Clean-label PGD radius, in 1/255 units.
    #[arg(long, default_value_t = Pgd::default().eps * 255.0)]
    pub pgd_eps: f64,
    /// Clean-label PGD step, in 1/255 units.
    #[arg(long, default_value_t = Pgd::default().step * 255.0)]
    pub pgd_step: f64,
    /// Clean-label PGD steps (paper 10, reference code 7).
    #[arg(long, default_value_t = Pgd::default().steps)]
    pub pgd_steps: usize,
    /// Clean-label surrogate model checkpoint.
    #[arg(long)]
    pub surrogate: Option<PathBuf>,
}

impl AttackArgs {
    /// The attack these flags describe (`None` without `--attack`), seeded with `seed`.
    pub fn config(&self, seed: u64) -> Option<AttackConfig> {
        let patch = || Patch {
            trigger: self.trigger.clone(),
            trigger_size: self.trigger_size,
            location: self.trigger_location,
        };
        let spec = match self.attack? {
            AttackKind::Badnets => AttackSpec::Badnets(patch()),
            AttackKind::Blended => AttackSpec::Blended(Blend {
                trigger: self.trigger.clone(),
                trigger_size: self.trigger_size,
                alpha: self.blend_alpha,
            }),
            AttackKind::Wanet => AttackSpec::Wanet(Warp {
                k: self.wanet_k,
                strength: self.wanet_strength,
                noise: self.wanet_noise,
                cross_ratio: self.wanet_cross_ratio,
            }),
            AttackKind::CleanLabel => {
                let pgd = Pgd { eps: self.pgd_eps / 255.0, step: self.pgd_step / 255.0, steps: self.pgd_steps };
                AttackSpec::CleanLabel(CleanLabel { patch: patch(), pgd })
            }
        };
        Some(AttackConfig {
            spec,
            target: (!self.all_to_all).then_some(self.target),
            poison_ratio: self.poison_ratio,
            select: self.poison_select,
            seed,
        })
    }
}
