//! What an attack is, as data: the kind with its own parameters ([`AttackSpec`]) and what every
//! attack shares ([`AttackConfig`]: target, poison ratio, selection, seed).
//!
//! The JSON is flat, as the first format was: `{"kind": "badnets", "trigger": ..., "target": 0, ...}`.
//! Files written before the parameters moved into the variants hold every attack's fields; the
//! fields another kind uses are ignored when they are read back.
use super::clean_label::Pgd;
use super::trigger::{Location, TriggerSpec};
use crate::error::{Error, Result};

/// The kinds of attack, by name (the `kind` of the JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttackKind {
    /// A patch trigger stamped on the image (Gu et al. 2017).
    Badnets,
    /// The trigger image blended over the whole image: x' = (1-a)x + a t (Chen et al. 2017).
    Blended,
    /// Warping trigger (Nguyen & Tran 2021).
    Wanet,
    /// Clean-label: PGD on target-class images against a surrogate, then the patch; labels kept.
    CleanLabel,
}
crate::choices!(AttackKind {
    Badnets => "badnets": "a patch trigger stamped on the image",
    Blended => "blended": "the trigger image blended over the whole image",
    Wanet => "wanet": "warping trigger",
    CleanLabel => "clean-label": "PGD on target-class images, then the patch; labels kept",
});

/// Which training samples are poisoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Select {
    /// The reference: the first int(N*ratio) samples in dataset order, target-class samples included.
    First,
    /// A seeded random subset.
    Random,
}
crate::choices!(Select {
    First => "first": "the first int(N*ratio) samples in dataset order (the reference)",
    Random => "random": "a seeded random subset",
});

/// A patch trigger and where it is stamped (BadNets, clean-label).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Patch {
    /// The trigger pattern.
    pub trigger: TriggerSpec,
    /// Side of the square trigger in pixels (`None`: 5, the paper's).
    pub trigger_size: Option<usize>,
    /// Where the trigger goes.
    pub location: Location,
}

impl Default for Patch {
    /// The paper's gray 5x5 trigger at the reference location (docs/METHOD.md §2).
    fn default() -> Self {
        Patch { trigger: TriggerSpec::PaperGray, trigger_size: None, location: Location::ReferenceUpperRight }
    }
}

/// A trigger image blended over the whole image.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Blend {
    /// The trigger pattern, resized to the image.
    pub trigger: TriggerSpec,
    /// Side the pattern is resolved at before resizing (`None`: the image size).
    pub trigger_size: Option<usize>,
    /// Weight `a` of the trigger in `(1-a)x + a t`.
    #[serde(rename = "blend_alpha")]
    pub alpha: f64,
}

impl Default for Blend {
    /// The paper's gray trigger at weight 0.1.
    fn default() -> Self {
        Blend { trigger: TriggerSpec::PaperGray, trigger_size: None, alpha: 0.1 }
    }
}

/// WaNet's warping field and noise mode.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Warp {
    /// Side `k` of the random control grid.
    #[serde(rename = "wanet_k")]
    pub k: usize,
    /// Warping strength `s`.
    #[serde(rename = "wanet_strength")]
    pub strength: f64,
    /// Noise mode: extra warped samples with random noise, labels kept.
    #[serde(rename = "wanet_noise")]
    pub noise: bool,
    /// Fraction of the training set used as noise-mode "cross" samples.
    #[serde(rename = "wanet_cross_ratio")]
    pub cross_ratio: f64,
}

impl Default for Warp {
    /// WaNet's defaults: k 4, strength 0.5, no noise mode, cross ratio 0.2.
    fn default() -> Self {
        Warp { k: 4, strength: 0.5, noise: false, cross_ratio: 0.2 }
    }
}

/// Clean-label poisoning: the patch, stamped after PGD against a surrogate.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CleanLabel {
    /// The patch stamped after the perturbation.
    #[serde(flatten)]
    pub patch: Patch,
    /// The PGD perturbation of the target-class images.
    pub pgd: Pgd,
}

/// An attack's kind with the parameters only that kind uses.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum AttackSpec {
    /// A patch trigger stamped on the image.
    Badnets(Patch),
    /// The trigger image blended over the whole image.
    Blended(Blend),
    /// Warping trigger.
    Wanet(Warp),
    /// PGD on target-class images, then the patch; labels kept.
    CleanLabel(CleanLabel),
}

impl AttackSpec {
    /// The kind of attack, without its parameters.
    pub fn kind(&self) -> AttackKind {
        match self {
            AttackSpec::Badnets(_) => AttackKind::Badnets,
            AttackSpec::Blended(_) => AttackKind::Blended,
            AttackSpec::Wanet(_) => AttackKind::Wanet,
            AttackSpec::CleanLabel(_) => AttackKind::CleanLabel,
        }
    }

    /// The stamped patch, for the attacks that stamp one.
    pub fn patch(&self) -> Option<&Patch> {
        match self {
            AttackSpec::Badnets(p) => Some(p),
            AttackSpec::CleanLabel(c) => Some(&c.patch),
            AttackSpec::Blended(_) | AttackSpec::Wanet(_) => None,
        }
    }

    /// The trigger pattern, for the attacks that have one (all but WaNet).
    pub fn trigger(&self) -> Option<&TriggerSpec> {
        match self {
            AttackSpec::Blended(b) => Some(&b.trigger),
            _ => self.patch().map(|p| &p.trigger),
        }
    }
}

/// A fully described attack: the kind with its parameters, and what every attack shares.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AttackConfig {
    /// The kind and its own parameters (flattened into this object in JSON, tagged by `kind`).
    #[serde(flatten)]
    pub spec: AttackSpec,
    /// All-to-one target; `None` = all-to-all (y -> y+1 mod K).
    pub target: Option<u32>,
    /// Fraction of the training set poisoned.
    pub poison_ratio: f64,
    /// Which samples are poisoned.
    pub select: Select,
    /// Seed of every random choice of the attack (selection, random locations, warp field).
    pub seed: u64,
}

impl Default for AttackConfig {
    /// BadNets as in the paper (docs/METHOD.md §2): gray trigger, target 0, 1% poison, first samples.
    fn default() -> Self {
        AttackConfig {
            spec: AttackSpec::Badnets(Patch::default()),
            target: Some(0),
            poison_ratio: 0.01,
            select: Select::First,
            seed: 0,
        }
    }
}

impl AttackConfig {
    /// BadNets with the paper's defaults (docs/METHOD.md §2): 1% poison, first samples, reference location.
    pub fn badnets(trigger: TriggerSpec, target: u32, seed: u64) -> Self {
        AttackConfig {
            spec: AttackSpec::Badnets(Patch { trigger, ..Patch::default() }),
            target: Some(target),
            seed,
            ..AttackConfig::default()
        }
    }

    /// The kind of attack.
    pub fn kind(&self) -> AttackKind {
        self.spec.kind()
    }

    /// Checks the parameters against a data set with `num_classes` classes.
    pub fn validate(&self, num_classes: usize) -> Result<()> {
        if !(0.0..=1.0).contains(&self.poison_ratio) {
            return Err(Error::invalid("poison ratio", format!("must be in [0, 1], got {}", self.poison_ratio)));
        }
        if let Some(t) = self.target {
            if t as usize >= num_classes {
                return Err(Error::invalid("target", format!("label {t} does not exist ({num_classes} classes)")));
            }
        }
        match &self.spec {
            AttackSpec::CleanLabel(_) if self.target.is_none() => {
                Err(Error::invalid("target", "a clean-label attack needs one target label, not all-to-all"))
            }
            AttackSpec::Blended(b) if !(0.0..=1.0).contains(&b.alpha) => {
                Err(Error::invalid("blend alpha", format!("must be in [0, 1], got {}", b.alpha)))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `AttackConfig` as the first format wrote it: every kind's fields, flat.
    fn old_json(kind: &str) -> String {
        format!(
            r#"{{"kind":"{kind}","trigger":"solid:1,2,3","trigger_size":3,"location":"corner-top-left","target":2,"poison_ratio":0.05,
               "select":"random","blend_alpha":0.3,"wanet_k":6,"wanet_strength":0.75,"wanet_noise":true,"wanet_cross_ratio":0.1,
               "pgd":{{"eps":0.01,"step":0.005,"steps":7}},"seed":9}}"#
        )
    }

    #[test]
    fn files_of_the_flat_format_still_load() {
        let patch =
            Patch { trigger: TriggerSpec::Solid([1, 2, 3]), trigger_size: Some(3), location: Location::CornerTopLeft };
        let expect = [
            ("badnets", AttackSpec::Badnets(patch.clone())),
            (
                "blended",
                AttackSpec::Blended(Blend {
                    trigger: TriggerSpec::Solid([1, 2, 3]),
                    trigger_size: Some(3),
                    alpha: 0.3,
                }),
            ),
            ("wanet", AttackSpec::Wanet(Warp { k: 6, strength: 0.75, noise: true, cross_ratio: 0.1 })),
            (
                "clean-label",
                AttackSpec::CleanLabel(CleanLabel { patch, pgd: Pgd { eps: 0.01, step: 0.005, steps: 7 } }),
            ),
        ];
        for (kind, spec) in expect {
            let c: AttackConfig = serde_json::from_str(&old_json(kind)).unwrap_or_else(|e| panic!("{kind}: {e}"));
            assert_eq!(
                c,
                AttackConfig { spec, target: Some(2), poison_ratio: 0.05, select: Select::Random, seed: 9 },
                "{kind}"
            );
        }
        // A BadNets record of the first format, exactly as `train` wrote it (all-to-all: null target).
        let written = r#"{"kind":"badnets","trigger":"paper-gray","trigger_size":null,"location":"reference-upper-right","target":null,
            "poison_ratio":0.01,"select":"first","blend_alpha":0.1,"wanet_k":4,"wanet_strength":0.5,"wanet_noise":false,
            "wanet_cross_ratio":0.2,"pgd":{"eps":0.03137254901960784,"step":0.00784313725490196,"steps":10},"seed":0}"#;
        let c: AttackConfig = serde_json::from_str(written).unwrap();
        assert_eq!(c, AttackConfig { target: None, ..AttackConfig::default() });
    }

    #[test]
    fn json_is_flat_and_round_trips() {
        for spec in [
            AttackSpec::Badnets(Patch::default()),
            AttackSpec::Blended(Blend::default()),
            AttackSpec::Wanet(Warp::default()),
            AttackSpec::CleanLabel(CleanLabel::default()),
        ] {
            let c = AttackConfig { spec, ..AttackConfig::default() };
            let v = serde_json::to_value(&c).unwrap();
            assert_eq!(v["kind"], c.kind().to_string());
            assert_eq!(v["poison_ratio"], 0.01);
            assert!(v.get("spec").is_none(), "{v}");
            assert_eq!(serde_json::from_value::<AttackConfig>(v).unwrap(), c);
        }
        let v =
            serde_json::to_value(AttackConfig { spec: AttackSpec::Wanet(Warp::default()), ..AttackConfig::default() })
                .unwrap();
        assert_eq!(v["wanet_k"], 4);
        let v = serde_json::to_value(AttackConfig {
            spec: AttackSpec::CleanLabel(CleanLabel::default()),
            ..AttackConfig::default()
        })
        .unwrap();
        assert_eq!((v["location"].as_str(), v["pgd"]["steps"].as_u64()), (Some("reference-upper-right"), Some(10)));
    }
}
