//! `quarantine zoo`: a population of models, Trojaned and clean, sampled from a spec with one seed
//! (issue 16; README "Populations"). Each model gets a folder `id-NNNN/` in a TrojAI-like layout:
//! the checkpoint (`model.safetensors` + sidecar, and what `train` writes), and `config.json` with the
//! ground truth (poisoned or not, target, attack, trigger, location) and what training measured (clean
//! accuracy, attack success). A poisoned model whose backdoor did not take (non-target attack
//! success below 0.5) is recorded as `backdoor_took: false`, not silently counted as Trojaned.
//! `config.json` is written last: a folder with it is finished and never retrained; one without it
//! is resumed (its training checkpoint) or restarted.
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::attack::{
    AttackConfig, AttackKind, AttackSpec, Blend, CleanLabel, Location, Patch, Pgd, Select, TriggerSpec, Warp,
};
use crate::choice::Choice;
use crate::control::Control;
use crate::data::DataSpec;
use crate::error::{Error, Result};
use crate::model::Arch;
use crate::train::TrainJob;
use crate::util::write_json;

/// A zoo's specification (`configs/zoos/*.toml`): sizes and the distributions every model is drawn
/// from. Lists are sampled uniformly; `[a, b]` ranges of numbers uniformly within.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZooSpec {
    /// Name (the README's tables use it).
    pub name: String,
    /// The one seed every draw and every model's training seed come from.
    pub seed: u64,
    /// Number of models.
    pub models: usize,
    /// Fraction that is poisoned (rounded to a whole number of models, placed at random).
    pub trojaned_fraction: f64,
    /// Data set spec (`builtin`, `cifar10:DIR`, ...).
    pub data: String,
    /// Architectures (`cnn`, `resnet20s`, ... or paths of TorchScript archives to train from,
    /// relative to the spec's folder).
    pub archs: Vec<String>,
    /// Training epochs, `[min, max]`.
    pub epochs: [usize; 2],
    /// Attack kinds: `badnets`, `blended`, `wanet`, `clean-label` (PGD against the zoo's one clean
    /// surrogate, `surrogate/`, trained first; then the patch; labels kept).
    pub attacks: Vec<String>,
    /// BadNets/blended triggers: `paper-gray`, `paper-rgb`, `checkerboard`, `solid`, `image:PATH`
    /// (PATH relative to the spec's folder).
    pub triggers: Vec<String>,
    /// Patch trigger side, `[min, max]` pixels.
    pub trigger_sizes: [usize; 2],
    /// Patch locations: `fixed` (a random corner, kept for the whole training set) and/or `random`
    /// (a new place per image).
    pub locations: Vec<String>,
    /// Poison ratios, `[min, max]`.
    pub poison_ratios: [f64; 2],
    /// A patch at a `random` location (BadNets, clean-label) is at least this many pixels wide: the
    /// drawn size is raised to it (`None`: the drawn size). A patch that moves every image is harder
    /// to learn: the first held-back zoo's 3-4 pixel random patches did not take in 6-8 epochs.
    /// Only the size changes; every other draw of every member stays the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random_min_trigger_size: Option<usize>,
    /// Clean-label PGD radius in 1/255 (step a quarter of it, the paper's 10 steps; `None`: the
    /// paper's 8). Only the clean-label members' PGD changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_label_eps: Option<f64>,
}

impl ZooSpec {
    /// Reads and checks a spec file.
    ///
    /// Files the spec names (`image:PATH` triggers, TorchScript archives) are relative to the spec's
    /// folder, like paths in a Cargo.toml, and must exist.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut spec: ZooSpec =
            toml::from_str(&text).map_err(|e| Error::bad_file(path, format!("not a zoo spec: {e}")))?;
        spec.validate().map_err(|e| Error::bad_file(path, e))?;
        let dir = path.parent().unwrap_or(Path::new(""));
        let resolve = |f: &str, what: &str| -> Result<String> {
            let p = dir.join(f);
            if !p.is_file() {
                return Err(Error::bad_file(
                    path,
                    format!("{what} `{f}` is not a file (paths are relative to the spec's folder: {})", p.display()),
                ));
            }
            Ok(p.to_string_lossy().into_owned())
        };
        for t in &mut spec.triggers {
            if let Some(f) = t.strip_prefix("image:") {
                *t = format!("image:{}", resolve(f, "trigger image")?);
            }
        }
        for a in &mut spec.archs {
            if Arch::from_name(a).is_none() {
                *a = resolve(a, "TorchScript architecture")?;
            }
        }
        Ok(spec)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if self.models == 0 || !(0.0..=1.0).contains(&self.trojaned_fraction) {
            return Err("needs models >= 1 and trojaned_fraction in [0, 1]".into());
        }
        if self.archs.is_empty() || self.attacks.is_empty() || self.triggers.is_empty() || self.locations.is_empty() {
            return Err("archs, attacks, triggers and locations must not be empty".into());
        }
        if self.epochs[0] == 0
            || self.epochs[0] > self.epochs[1]
            || self.trigger_sizes[0] == 0
            || self.trigger_sizes[0] > self.trigger_sizes[1]
        {
            return Err("epochs and trigger_sizes are [min, max] with 1 <= min <= max".into());
        }
        if !(self.poison_ratios[0] > 0.0
            && self.poison_ratios[0] <= self.poison_ratios[1]
            && self.poison_ratios[1] < 1.0)
        {
            return Err("poison_ratios is [min, max] within (0, 1)".into());
        }
        for a in &self.attacks {
            if !["badnets", "blended", "wanet", "clean-label"].contains(&a.as_str()) {
                return Err(format!("attack `{a}`: expected badnets, blended, wanet or clean-label"));
            }
        }
        for l in &self.locations {
            if !["fixed", "random"].contains(&l.as_str()) {
                return Err(format!("location `{l}`: expected fixed or random"));
            }
        }
        for t in &self.triggers {
            trigger(t)?;
        }
        if self.random_min_trigger_size == Some(0) {
            return Err("random_min_trigger_size must be >= 1".into());
        }
        if let Some(e) = self.clean_label_eps {
            if !(e > 0.0 && e <= 255.0) {
                return Err(format!("clean_label_eps {e}: a radius in 1/255, within (0, 255]"));
            }
        }
        for a in &self.archs {
            arch(a)?;
        }
        self.data.parse::<DataSpec>().map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Every member's plan, drawn from the seed (the same spec always gives the same zoo).
    pub fn members(&self) -> Vec<ZooMember> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed ^ 0x5A4F_4F00);
        let trojaned = (self.trojaned_fraction * self.models as f64).round() as usize;
        let mut poisoned: Vec<bool> = (0..self.models).map(|i| i < trojaned).collect();
        poisoned.shuffle(&mut rng);
        let corners = [
            Location::CornerTopLeft,
            Location::CornerTopRight,
            Location::CornerBottomLeft,
            Location::CornerBottomRight,
            Location::ReferenceUpperRight,
        ];
        (0..self.models)
            .map(|i| {
                let seed = self.seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
                let arch = self.archs[rng.gen_range(0..self.archs.len())].clone();
                let epochs = rng.gen_range(self.epochs[0]..=self.epochs[1]);
                let attack = poisoned[i].then(|| {
                    let kind = &self.attacks[rng.gen_range(0..self.attacks.len())];
                    let trig = trigger(&self.triggers[rng.gen_range(0..self.triggers.len())]).expect("validated");
                    let mut size = rng.gen_range(self.trigger_sizes[0]..=self.trigger_sizes[1]);
                    let location = match self.locations[rng.gen_range(0..self.locations.len())].as_str() {
                        "random" => Location::Random,
                        _ => corners[rng.gen_range(0..corners.len())],
                    };
                    if location == Location::Random {
                        size = size.max(self.random_min_trigger_size.unwrap_or(0));
                    }
                    let pgd = self.clean_label_eps.map_or_else(Pgd::default, |e| Pgd {
                        eps: e / 255.0,
                        step: e / 4.0 / 255.0,
                        ..Pgd::default()
                    });
                    let patch = Patch { trigger: trig.clone(), trigger_size: Some(size), location };
                    let spec = match kind.as_str() {
                        "blended" => AttackSpec::Blended(Blend { trigger: trig, trigger_size: None, alpha: 0.15 }),
                        "wanet" => AttackSpec::Wanet(Warp::default()),
                        "clean-label" => AttackSpec::CleanLabel(CleanLabel { patch, pgd }),
                        _ => AttackSpec::Badnets(patch),
                    };
                    AttackConfig {
                        spec,
                        target: Some(rng.gen_range(0..10)),
                        poison_ratio: rng.gen_range(self.poison_ratios[0]..=self.poison_ratios[1]),
                        select: Select::Random,
                        seed,
                    }
                });
                ZooMember { id: format!("id-{i:04}"), arch, epochs, seed, attack }
            })
            .collect()
    }
}

fn trigger(s: &str) -> std::result::Result<TriggerSpec, String> {
    match s {
        // A random-looking but fixed color, so that "solid" is not one of the paper's triggers.
        "solid" => Ok(TriggerSpec::Solid([250, 60, 200])),
        _ => s.parse::<TriggerSpec>().map_err(|e| e.to_string()),
    }
}

/// A built-in architecture by name, or a TorchScript archive by path.
fn arch(s: &str) -> std::result::Result<(Arch, Option<PathBuf>), String> {
    match Arch::from_name(s) {
        Some(Arch::Torchscript) => Err("torchscript: give the archive's path instead".into()),
        Some(a) => Ok((a, None)),
        None if s.ends_with(".pt") => Ok((Arch::Torchscript, Some(PathBuf::from(s)))),
        None => Err(format!("architecture `{s}`: a built-in name or a TorchScript archive (.pt)")),
    }
}

/// One model of a zoo, as planned.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ZooMember {
    /// Folder name, `id-NNNN`.
    pub id: String,
    /// Architecture name or TorchScript archive.
    pub arch: String,
    /// Training epochs.
    pub epochs: usize,
    /// Training (and attack) seed.
    pub seed: u64,
    /// The backdoor, `None` for a clean model.
    pub attack: Option<AttackConfig>,
}

impl ZooMember {
    /// Its backdoor is clean-label (trained against the zoo's surrogate).
    fn is_clean_label(&self) -> bool {
        self.attack.as_ref().is_some_and(|a| a.kind() == AttackKind::CleanLabel)
    }
}

/// A finished member's `config.json`: the plan, the ground truth and what training measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ZooRecord {
    /// The plan.
    #[serde(flatten)]
    pub member: ZooMember,
    /// Poisoned during training.
    pub poisoned: bool,
    /// The all-to-one target (poisoned models).
    pub target: Option<u32>,
    /// The attack kind (`badnets`, `blended`, `wanet`), `None` for clean models.
    pub attack_kind: Option<String>,
    /// The backdoor took: non-target attack success >= 0.5 (`None` for clean models).
    pub backdoor_took: Option<bool>,
    /// Clean test accuracy.
    pub clean_accuracy: Option<f64>,
    /// Attack success rate (all test images, target-class images included).
    pub attack_success_rate: Option<f64>,
    /// Attack success rate on non-target-class test images.
    pub attack_success_rate_nontarget: Option<f64>,
    /// The checkpoint, relative to the member's folder.
    pub model: String,
    /// The spec's name.
    pub zoo: String,
    /// The data set it was trained on (the spec's `data`).
    #[serde(default)]
    pub data: String,
}

/// What `zoo` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ZooSummary {
    /// Members trained now.
    pub trained: usize,
    /// Members already finished (skipped).
    pub skipped: usize,
    /// Every member's record, in id order.
    pub records: Vec<ZooRecord>,
}

/// Trains every member of `spec` into `out` that is not finished yet.
pub fn run(spec: &ZooSpec, out: &Path, device: tch::Device, ctl: &Control) -> Result<ZooSummary> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    write_json(&out.join("zoo.json"), spec)?;
    let data: DataSpec = spec.data.parse()?;
    let split = data.load()?;
    let members = spec.members();
    let surrogate = if members.iter().any(ZooMember::is_clean_label) {
        Some(train_surrogate(spec, out, &data, &split, device, ctl)?)
    } else {
        None
    };
    let (mut trained, mut skipped, mut records) = (0, 0, vec![]);
    for (k, m) in members.iter().enumerate() {
        let dir = out.join(&m.id);
        let cfg_path = dir.join("config.json");
        if cfg_path.exists() {
            records.push(crate::report::records::read_record(&cfg_path)?);
            skipped += 1;
            continue;
        }
        ctl.check(out)?;
        ctl.progress().note(&format!(
            "zoo: {} ({}/{}): {} {} epochs, {}",
            m.id,
            k + 1,
            members.len(),
            m.arch,
            m.epochs,
            m.attack.as_ref().map_or("clean".to_string(), |a| format!(
                "{} to {}",
                a.kind().name(),
                a.target.map_or("all".to_string(), |t| t.to_string())
            ))
        ));
        let (arch, model_init) = arch(&m.arch).map_err(|e| Error::invalid("zoo member", e))?;
        let train_dir = dir.join("train");
        let resume = train_dir.join("train-state.json").exists();
        let job = TrainJob {
            data: data.clone(),
            arch,
            model_init,
            epochs: m.epochs,
            out: train_dir.clone(),
            seed: m.seed,
            attack: m.attack.clone(),
            surrogate: surrogate.clone().filter(|_| m.is_clean_label()),
            resume,
            force: !resume,
            ..TrainJob::default()
        };
        let r = crate::train::run_with_data(&job, &split, device, ctl)?;
        for f in ["model.safetensors", "model.json"] {
            std::fs::copy(train_dir.join(f), dir.join(f)).map_err(|e| Error::io(dir.join(f), e))?;
        }
        let took = m.attack.as_ref().map(|_| r.attack_success_rate_nontarget.unwrap_or(0.0) >= 0.5);
        let record = ZooRecord {
            member: m.clone(),
            poisoned: m.attack.is_some(),
            target: m.attack.as_ref().and_then(|a| a.target),
            attack_kind: m.attack.as_ref().map(|a| a.kind().name().to_string()),
            backdoor_took: took,
            clean_accuracy: r.clean_accuracy,
            attack_success_rate: r.attack_success_rate,
            attack_success_rate_nontarget: r.attack_success_rate_nontarget,
            model: "model.safetensors".into(),
            zoo: spec.name.clone(),
            data: spec.data.clone(),
        };
        write_json(&cfg_path, &record)?;
        records.push(record);
        trained += 1;
    }
    Ok(ZooSummary { trained, skipped, records })
}

/// The clean surrogate every clean-label member perturbs against: the spec's first architecture, its
/// shortest training, a seed of its own; `surrogate/model.safetensors`, trained once (resumable like
/// a member: `surrogate/done` is written last).
fn train_surrogate(
    spec: &ZooSpec,
    out: &Path,
    data: &DataSpec,
    split: &crate::data::Split,
    device: tch::Device,
    ctl: &Control,
) -> Result<PathBuf> {
    let dir = out.join("surrogate");
    let model = dir.join("model.safetensors");
    if dir.join("done").exists() {
        return Ok(model);
    }
    ctl.check(out)?;
    ctl.progress().note("zoo: the clean-label surrogate (clean)");
    let (arch, model_init) = arch(&spec.archs[0]).map_err(|e| Error::invalid("zoo surrogate", e))?;
    let resume = dir.join("train-state.json").exists();
    let job = TrainJob {
        data: data.clone(),
        arch,
        model_init,
        epochs: spec.epochs[0],
        out: dir.clone(),
        seed: spec.seed ^ 0x5355_5252,
        resume,
        force: !resume,
        ..TrainJob::default()
    };
    crate::train::run_with_data(&job, split, device, ctl)?;
    crate::util::write_atomic(&dir.join("done"), b"")?;
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ZooSpec {
        ZooSpec {
            name: "t".into(),
            seed: 3,
            models: 40,
            trojaned_fraction: 0.5,
            data: "builtin".into(),
            archs: vec!["cnn".into(), "resnet20s".into()],
            epochs: [2, 4],
            attacks: vec!["badnets".into(), "blended".into(), "wanet".into(), "clean-label".into()],
            triggers: vec!["paper-gray".into(), "paper-rgb".into(), "checkerboard".into(), "solid".into()],
            trigger_sizes: [3, 6],
            locations: vec!["fixed".into(), "random".into()],
            poison_ratios: [0.05, 0.1],
            random_min_trigger_size: None,
            clean_label_eps: None,
        }
    }

    #[test]
    fn members_are_drawn_from_the_seed_within_the_spec() {
        let s = spec();
        let m = s.members();
        assert_eq!(m, s.members(), "same seed, same zoo");
        assert_eq!(m.iter().filter(|x| x.attack.is_some()).count(), 20);
        assert_ne!(m, ZooSpec { seed: 4, ..s.clone() }.members());
        let kinds: std::collections::BTreeSet<String> =
            m.iter().filter_map(|x| x.attack.as_ref()).map(|a| a.kind().name().to_string()).collect();
        assert_eq!(kinds.len(), 4, "{kinds:?}");
        for x in &m {
            assert!((2..=4).contains(&x.epochs));
            if let Some(a) = &x.attack {
                assert!((0.05..=0.1).contains(&a.poison_ratio) && a.target.unwrap() < 10);
                if let AttackSpec::Badnets(p) | AttackSpec::CleanLabel(CleanLabel { patch: p, .. }) = &a.spec {
                    assert!((3..=6).contains(&p.trigger_size.unwrap()));
                }
            }
        }
        assert!(ZooSpec { attacks: vec!["evil".into()], ..s.clone() }.validate().unwrap_err().contains("evil"));
        assert!(ZooSpec { epochs: [3, 2], ..s.clone() }.validate().is_err());
        assert!(ZooSpec { random_min_trigger_size: Some(0), ..s.clone() }.validate().is_err());
        assert!(ZooSpec { clean_label_eps: Some(-1.0), ..s }.validate().unwrap_err().contains("clean_label_eps"));
    }

    #[test]
    fn files_a_spec_names_are_relative_to_its_folder_and_must_exist() {
        let dir = std::env::temp_dir().join(format!("q-zoo-spec-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("specs")).unwrap();
        let text = |trigger: &str, arch: &str| {
            format!(
                "name = \"t\"\nseed = 1\nmodels = 2\ntrojaned_fraction = 0.5\ndata = \"builtin\"\narchs = [\"{arch}\"]\n\
                 epochs = [1, 1]\nattacks = [\"badnets\"]\ntriggers = [\"{trigger}\"]\ntrigger_sizes = [3, 3]\n\
                 locations = [\"fixed\"]\npoison_ratios = [0.1, 0.1]\n"
            )
        };
        let spec = dir.join("specs/zoo.toml");
        std::fs::write(&spec, text("image:../trig.png", "cnn")).unwrap();
        let e = ZooSpec::load(&spec).unwrap_err().to_string();
        assert!(e.contains("zoo.toml") && e.contains("trigger image `../trig.png`"), "{e}");
        let png = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/triggers/noise32.png");
        std::fs::copy(png, dir.join("trig.png")).unwrap();
        let s = ZooSpec::load(&spec).unwrap();
        let TriggerSpec::Image(p) = trigger(&s.triggers[0]).unwrap() else { panic!("{:?}", s.triggers) };
        assert_eq!(std::fs::canonicalize(p).unwrap(), std::fs::canonicalize(dir.join("trig.png")).unwrap());
        std::fs::write(&spec, text("paper-gray", "net.pt")).unwrap();
        let e = ZooSpec::load(&spec).unwrap_err().to_string();
        assert!(e.contains("TorchScript architecture `net.pt`"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn patch(a: &AttackConfig) -> Option<&Patch> {
        match &a.spec {
            AttackSpec::Badnets(p) | AttackSpec::CleanLabel(CleanLabel { patch: p, .. }) => Some(p),
            _ => None,
        }
    }

    #[test]
    fn the_random_patch_floor_and_the_pgd_radius_change_only_what_they_name() {
        let s = spec();
        let plain = s.members();
        let knobs = ZooSpec { random_min_trigger_size: Some(5), clean_label_eps: Some(16.0), ..s.clone() };
        let tuned = knobs.members();
        let (mut raised, mut pgd) = (0, 0);
        for (a, b) in plain.iter().zip(&tuned) {
            let (Some(x), Some(y)) = (&a.attack, &b.attack) else {
                assert_eq!(a, b, "clean members unchanged");
                continue;
            };
            assert_eq!(
                (a.arch.as_str(), a.epochs, x.target, x.poison_ratio),
                (b.arch.as_str(), b.epochs, y.target, y.poison_ratio)
            );
            assert_eq!(x.kind(), y.kind());
            match (patch(x), patch(y)) {
                (Some(p), Some(q)) => {
                    assert_eq!((&p.trigger, p.location), (&q.trigger, q.location));
                    let want = if p.location == Location::Random {
                        p.trigger_size.unwrap().max(5)
                    } else {
                        p.trigger_size.unwrap()
                    };
                    raised += usize::from(want != p.trigger_size.unwrap());
                    assert_eq!(q.trigger_size, Some(want));
                }
                _ => assert_eq!(x, y),
            }
            if let (AttackSpec::CleanLabel(c), AttackSpec::CleanLabel(d)) = (&x.spec, &y.spec) {
                assert_eq!(c.pgd, Pgd::default());
                assert_eq!((d.pgd.eps, d.pgd.step, d.pgd.steps), (16.0 / 255.0, 4.0 / 255.0, 10));
                pgd += 1;
            }
        }
        assert!(raised > 0 && pgd > 0, "the seed-3 spec draws small random patches ({raised}) and clean-label ({pgd})");
        // An unset knob is not written, so older zoo.json files read back equal.
        let json = serde_json::to_string(&s).unwrap();
        assert!(!json.contains("random_min_trigger_size") && !json.contains("clean_label_eps"));
        assert_eq!(serde_json::from_str::<ZooSpec>(&json).unwrap(), s);
    }
}
