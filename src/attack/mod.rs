//! Backdoor attacks (docs/METHOD.md §2). An attack = an image transform (patch stamp, blend, warp,
//! or PGD + stamp), a label transform (all-to-one target, or all-to-all `y -> y+1 mod K`) and a
//! choice of poisoned samples (the reference's first `int(N*ratio)` in dataset order, or a seeded
//! random subset). The chosen indices are saved with the run (`plan.json`), with the trigger as PNG
//! and numbers ([`poison_and_record`]).
//!
//! Attack success rate (ASR) follows the reference: every test image stamped and relabelled, the
//! fraction classified as the target, target-class images included (so it has a ~1/K floor); the
//! non-target ASR leaves the target class out.
mod clean_label;
mod record;
mod spec;
mod trigger;
mod wanet;

pub use clean_label::{pgd_perturb, Pgd};
pub use record::{load_surrogate, poison_and_record, Poisoned};
pub use spec::{AttackConfig, AttackKind, AttackSpec, Blend, CleanLabel, Patch, Select, Warp};
pub use trigger::{Location, Trigger, TriggerSpec, PAPER_GRAY, PAPER_RGB};
pub use wanet::WarpField;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::Kind;

use crate::data::{Augment, Batches, ImageSet, Normalization};
use crate::error::{Error, Result};
use crate::model::Model;

/// Which samples were poisoned, saved with the run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PoisonPlan {
    /// The attack.
    pub attack: AttackConfig,
    /// Indices (into the training set) of the poisoned samples.
    pub indices: Vec<usize>,
    /// WaNet noise-mode samples (warped with noise, labels kept).
    pub cross_indices: Vec<usize>,
    /// Top-left (row, column) of each stamped trigger, in the order of `indices` (patch attacks).
    pub locations: Vec<(usize, usize)>,
}

/// An attack resolved for images of one shape.
#[derive(Debug, Clone)]
pub struct Attack {
    /// The attack as configured.
    pub cfg: AttackConfig,
    /// The resolved trigger image (`None` for WaNet, whose trigger is a warp).
    pub trigger: Option<Trigger>,
    shape: (usize, usize, usize),
    num_classes: usize,
    blend: Option<Vec<u8>>,
    warp: Option<WarpField>,
}

impl Attack {
    /// Resolves `cfg` for `h x w x c` images of a data set with `num_classes` classes.
    pub fn new(cfg: AttackConfig, (h, w, c): (usize, usize, usize), num_classes: usize) -> Result<Self> {
        cfg.validate(num_classes)?;
        let (mut trigger, mut blend, mut warp) = (None, None, None);
        match &cfg.spec {
            AttackSpec::Badnets(p) | AttackSpec::CleanLabel(CleanLabel { patch: p, .. }) => {
                let t = Trigger::new(&p.trigger, p.trigger_size, c)?;
                // Fail early if the trigger does not fit.
                p.location.place((h, w), (t.height, t.width), |_, _| (0, 0))?;
                trigger = Some(t);
            }
            AttackSpec::Blended(b) => {
                // A blended trigger covers the whole image: resolve it at image size unless told otherwise.
                let t = Trigger::new(&b.trigger, Some(b.trigger_size.unwrap_or(h.max(w))), c)?;
                blend = Some(t.full_image(h, w));
                trigger = Some(t);
            }
            AttackSpec::Wanet(p) => warp = Some(WarpField::new(h, w, p.k, p.strength, cfg.seed ^ 0x5741_4E45)),
        }
        Ok(Attack { cfg, trigger, shape: (h, w, c), num_classes, blend, warp })
    }

    /// The poisoned label of a sample of class `y`.
    pub fn target_of(&self, y: u32) -> u32 {
        match self.cfg.target {
            Some(t) => t,
            None => (y + 1) % self.num_classes as u32,
        }
    }

    /// Applies the image transform to one uint8 HWC image. `key` seeds per-image randomness (random
    /// location). Returns where a patch went.
    pub fn apply(&self, img: &mut [u8], key: u64) -> Option<(usize, usize)> {
        let (h, w, c) = self.shape;
        match &self.cfg.spec {
            AttackSpec::Badnets(p) | AttackSpec::CleanLabel(CleanLabel { patch: p, .. }) => {
                let t = self.trigger.as_ref().expect("patch attacks resolve a trigger");
                let mut rng = ChaCha8Rng::seed_from_u64(self.cfg.seed ^ key.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let at = p
                    .location
                    .place((h, w), (t.height, t.width), |mh, mw| (rng.gen_range(0..=mh), rng.gen_range(0..=mw)))
                    .expect("checked in Attack::new");
                t.stamp(img, (h, w, c), at.0, at.1);
                Some(at)
            }
            AttackSpec::Blended(b) => {
                let a = b.alpha as f32;
                for (p, t) in img.iter_mut().zip(self.blend.as_ref().expect("blend image")) {
                    *p = ((1.0 - a) * *p as f32 + a * *t as f32).round() as u8;
                }
                None
            }
            AttackSpec::Wanet(_) => {
                self.warp.as_ref().expect("warp field").warp(img, c, None);
                None
            }
        }
    }

    /// The indices of `set` that get poisoned: the eligible samples (clean-label: the target
    /// class), the first or a seeded random `int(N*ratio)` of them. Also returns the random stream,
    /// which goes on to draw WaNet's cross samples.
    fn choose(&self, set: &ImageSet) -> (Vec<usize>, ChaCha8Rng) {
        let eligible: Vec<usize> = match self.cfg.spec {
            AttackSpec::CleanLabel(_) => (0..set.n).filter(|&i| Some(set.labels[i]) == self.cfg.target).collect(),
            _ => (0..set.n).collect(),
        };
        let count = ((set.n as f64 * self.cfg.poison_ratio) as usize).min(eligible.len());
        let mut rng = ChaCha8Rng::seed_from_u64(self.cfg.seed ^ 0x504F_4953);
        let indices = match self.cfg.select {
            Select::First => eligible[..count].to_vec(),
            Select::Random => {
                let mut v: Vec<usize> = eligible.choose_multiple(&mut rng, count).copied().collect();
                v.sort_unstable();
                v
            }
        };
        (indices, rng)
    }

    /// Poisons a training set: chosen samples get the image transform and (except clean-label) the
    /// target label. `surrogate` is needed for clean-label (PGD before the trigger).
    pub fn poison_training_set(
        &self,
        set: &ImageSet,
        surrogate: Option<(&Model, &Normalization)>,
    ) -> Result<(ImageSet, PoisonPlan)> {
        let mut out = set.clone();
        let (indices, mut rng) = self.choose(set);
        let clean_label = matches!(self.cfg.spec, AttackSpec::CleanLabel(_));
        if let AttackSpec::CleanLabel(c) = &self.cfg.spec {
            let (model, norm) =
                surrogate.ok_or_else(|| Error::invalid("surrogate", "a clean-label attack needs a surrogate model"))?;
            model.meta.check_images((set.channels, set.height, set.width), "training images")?;
            pgd_perturb(model, norm, &mut out, &indices, &c.pgd, self.cfg.seed)?;
        }
        let len = set.image_len();
        let mut locations = vec![];
        for &i in &indices {
            if let Some(at) = self.apply(&mut out.images[i * len..(i + 1) * len], i as u64) {
                locations.push(at);
            }
            if !clean_label {
                out.labels[i] = self.target_of(set.labels[i]);
            }
        }
        let cross_indices = match &self.cfg.spec {
            AttackSpec::Wanet(p) if p.noise => self.warp_cross(set, &mut out, &indices, p.cross_ratio, &mut rng),
            _ => vec![],
        };
        Ok((out, PoisonPlan { attack: self.cfg.clone(), indices, cross_indices, locations }))
    }

    /// WaNet's noise mode: warps a random `cross_ratio` of the samples not poisoned, with fresh noise
    /// each, labels kept. Returns their indices.
    fn warp_cross(
        &self,
        set: &ImageSet,
        out: &mut ImageSet,
        poisoned: &[usize],
        cross_ratio: f64,
        rng: &mut ChaCha8Rng,
    ) -> Vec<usize> {
        let poisoned: std::collections::HashSet<usize> = poisoned.iter().copied().collect();
        let rest: Vec<usize> = (0..set.n).filter(|i| !poisoned.contains(i)).collect();
        let n_cross = ((set.n as f64 * cross_ratio) as usize).min(rest.len());
        let mut cross: Vec<usize> = rest.choose_multiple(rng, n_cross).copied().collect();
        cross.sort_unstable();
        let warp = self.warp.as_ref().expect("warp field");
        let mut noise = ChaCha8Rng::seed_from_u64(self.cfg.seed ^ 0x4E4F_4953);
        let len = set.image_len();
        for &i in &cross {
            warp.warp(&mut out.images[i * len..(i + 1) * len], set.channels, Some(&mut noise));
        }
        cross
    }

    /// Every test image with the trigger and its poisoned label, plus the indices of the images whose
    /// true class differs from their poisoned label (for the non-target ASR).
    pub fn poison_test_set(&self, set: &ImageSet) -> (ImageSet, Vec<usize>) {
        let mut out = set.clone();
        let len = set.image_len();
        for i in 0..set.n {
            // Test-time keys differ from training keys so random locations are fresh draws.
            self.apply(&mut out.images[i * len..(i + 1) * len], (1u64 << 40) + i as u64);
            out.labels[i] = self.target_of(set.labels[i]);
        }
        let nontarget = (0..set.n).filter(|&i| out.labels[i] != set.labels[i]).collect();
        (out, nontarget)
    }
}

/// How often a model follows the trigger.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct AttackSuccess {
    /// Fraction of all stamped test images classified as their poisoned label (the reference's ASR).
    pub attack_success_rate: f64,
    /// The same over images whose true class is not the target.
    pub attack_success_rate_nontarget: f64,
}

/// ASR of `model` under `attack` on a clean test set.
pub fn attack_success(model: &Model, test: &ImageSet, attack: &Attack, norm: &Normalization) -> AttackSuccess {
    let (poisoned, nontarget) = attack.poison_test_set(test);
    let mut hit = vec![false; test.n];
    tch::no_grad(|| {
        for b in Batches::new(&poisoned, 500, norm, Augment::NONE, None, model.device()) {
            let ok = model.forward_t(&b.images, false).argmax(-1, false).eq_tensor(&b.labels).to_kind(Kind::Int64);
            let ok: Vec<i64> = Vec::try_from(ok.to_device(tch::Device::Cpu)).expect("int64 vector");
            for (i, v) in b.indices.iter().zip(ok) {
                hit[*i] = v == 1;
            }
        }
    });
    let all = hit.iter().filter(|&&h| h).count() as f64 / test.n.max(1) as f64;
    let nt = nontarget.iter().filter(|&&i| hit[i]).count() as f64 / nontarget.len().max(1) as f64;
    AttackSuccess { attack_success_rate: all, attack_success_rate_nontarget: nt }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(n: usize) -> ImageSet {
        ImageSet {
            images: vec![100; n * 8 * 8],
            labels: (0..n).map(|i| (i % 4) as u32).collect(),
            n,
            height: 8,
            width: 8,
            channels: 1,
            classes: (0..4).map(|i| i.to_string()).collect(),
        }
    }

    fn cfg(kind: AttackKind) -> AttackConfig {
        let trigger = TriggerSpec::Solid([255, 255, 255]);
        let patch = Patch { trigger: trigger.clone(), trigger_size: Some(2), ..Patch::default() };
        let spec = match kind {
            AttackKind::Badnets => AttackSpec::Badnets(patch),
            AttackKind::Blended => AttackSpec::Blended(Blend { trigger, trigger_size: Some(2), ..Blend::default() }),
            AttackKind::Wanet => AttackSpec::Wanet(Warp::default()),
            AttackKind::CleanLabel => AttackSpec::CleanLabel(CleanLabel { patch, pgd: Pgd::default() }),
        };
        AttackConfig { spec, poison_ratio: 0.1, ..AttackConfig::badnets(TriggerSpec::PaperGray, 2, 7) }
    }

    fn patch(c: &mut AttackConfig) -> &mut Patch {
        match &mut c.spec {
            AttackSpec::Badnets(p) | AttackSpec::CleanLabel(CleanLabel { patch: p, .. }) => p,
            _ => panic!("not a patch attack"),
        }
    }

    #[test]
    fn first_selection_is_the_reference_prefix() {
        let s = set(50);
        let a = Attack::new(cfg(AttackKind::Badnets), (8, 8, 1), 4).unwrap();
        let (p, plan) = a.poison_training_set(&s, None).unwrap();
        assert_eq!(plan.indices, vec![0, 1, 2, 3, 4]);
        assert!(plan.indices.iter().all(|&i| p.labels[i] == 2));
        assert_eq!(p.labels[5], 1);
        // Reference location on 8x8 with a 2x2 trigger: rows/cols 3..5.
        assert_eq!(plan.locations[0], (3, 3));
        assert_eq!(p.image(0)[3 * 8 + 3], 255);
        assert_eq!(p.image(0)[2 * 8 + 3], 100);
        assert_eq!(p.image(5), s.image(5));
    }

    #[test]
    fn same_seed_same_plan_and_random_differs_by_seed() {
        let s = set(200);
        let mut c = cfg(AttackKind::Badnets);
        c.select = Select::Random;
        patch(&mut c).location = Location::Random;
        let a = Attack::new(c.clone(), (8, 8, 1), 4).unwrap();
        let (p1, plan1) = a.poison_training_set(&s, None).unwrap();
        let (p2, plan2) = a.poison_training_set(&s, None).unwrap();
        assert_eq!(plan1, plan2);
        assert_eq!(p1.images, p2.images);
        c.seed = 8;
        let (_, plan3) = Attack::new(c, (8, 8, 1), 4).unwrap().poison_training_set(&s, None).unwrap();
        assert_ne!(plan1.indices, plan3.indices);
    }

    #[test]
    fn blend_formula() {
        let mut c = cfg(AttackKind::Blended);
        if let AttackSpec::Blended(b) = &mut c.spec {
            b.alpha = 0.2;
        }
        let a = Attack::new(c, (8, 8, 1), 4).unwrap();
        let mut img = vec![100u8; 64];
        a.apply(&mut img, 0);
        // round(0.8 * 100 + 0.2 * 255) = 131
        assert!(img.iter().all(|&v| v == 131));
    }

    #[test]
    fn all_to_all_and_test_set() {
        let mut c = cfg(AttackKind::Badnets);
        c.target = None;
        let a = Attack::new(c, (8, 8, 1), 4).unwrap();
        assert_eq!(a.target_of(3), 0);
        let s = set(8);
        let (t, nontarget) = a.poison_test_set(&s);
        assert_eq!(t.labels[1], 2);
        assert_eq!(nontarget.len(), 8);
        let a1 = Attack::new(cfg(AttackKind::Badnets), (8, 8, 1), 4).unwrap();
        let (_, nt) = a1.poison_test_set(&s);
        assert_eq!(nt, vec![0, 1, 3, 4, 5, 7]);
    }

    #[test]
    fn bad_configs_are_refused() {
        let mut c = cfg(AttackKind::Badnets);
        c.target = Some(9);
        assert!(Attack::new(c, (8, 8, 1), 4).unwrap_err().to_string().contains("label 9"));
        let mut c = cfg(AttackKind::Badnets);
        patch(&mut c).trigger_size = Some(9);
        assert!(Attack::new(c, (8, 8, 1), 4).is_err());
        let c = cfg(AttackKind::CleanLabel);
        let a = Attack::new(c, (8, 8, 1), 4).unwrap();
        assert!(a.poison_training_set(&set(20), None).unwrap_err().to_string().contains("surrogate"));
    }
}
