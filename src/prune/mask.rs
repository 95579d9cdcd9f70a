//! Pruning masks over conv weights (docs/METHOD.md §4): global unstructured L1 magnitude pruning over all conv
//! layers jointly (first conv and 1x1 shortcut convs included), or layer by layer; random pruning as
//! the control. Linear layers, BN parameters and biases are never pruned.
//!
//! One pruning step removes `round(rate * alive)` of the weights still alive (as
//! `torch.nn.utils.prune` computes it), choosing the smallest |w| among the alive ones, so after n steps
//! the density is 0.8^n up to rounding.
use std::collections::BTreeMap;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

use crate::model::Model;

/// Where the pruning threshold applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// One threshold over all conv weights jointly (the reference).
    Global,
    /// The same fraction removed from every conv layer.
    Layer,
}
crate::choices!(Scope {
    Global => "global": "one threshold over all conv weights jointly (the reference)",
    Layer => "layer": "the same fraction removed from every conv layer",
});

/// Which alive weights are removed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Criterion {
    /// The smallest by absolute value.
    Magnitude,
    /// Uniformly random among the alive weights (the control), seeded.
    Random(u64),
}

/// A 0/1 float mask per conv weight, by parameter name.
#[derive(Debug)]
pub struct Masks {
    /// Mask per conv weight name.
    pub masks: BTreeMap<String, Tensor>,
}

impl Clone for Masks {
    fn clone(&self) -> Self {
        Masks { masks: self.masks.iter().map(|(k, v)| (k.clone(), v.copy())).collect() }
    }
}

/// How much of the masked weights is left.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Density {
    /// Alive fraction over all masked weights.
    pub total: f64,
    /// Alive weights.
    pub alive: i64,
    /// All masked weights.
    pub size: i64,
    /// Alive fraction per layer.
    pub layers: BTreeMap<String, f64>,
}

impl Masks {
    /// All-ones masks over the model's conv weights.
    pub fn dense(model: &Model) -> Self {
        let vars = model.vs.variables();
        let masks = model.conv_weight_names().into_iter().map(|n| (n.clone(), vars[&n].ones_like().detach())).collect();
        Masks { masks }
    }

    /// Masks from a state dict's `weight_mask`s (e.g. a PyTorch-pruned checkpoint); conv weights
    /// without one get all-ones.
    pub fn from_named(model: &Model, named: Vec<(String, Tensor)>) -> Self {
        let mut m = Masks::dense(model);
        for (name, t) in named {
            if let Some(slot) = m.masks.get_mut(&name) {
                if t.size() == slot.size() {
                    *slot = t.to_kind(Kind::Float).ne(0.0).to_kind(Kind::Float).to_device(slot.device());
                }
            }
        }
        m
    }

    /// The density of these masks.
    pub fn density(&self) -> Density {
        let mut layers = BTreeMap::new();
        let (mut alive, mut size) = (0i64, 0i64);
        for (n, m) in &self.masks {
            let a = m.sum(Kind::Float).double_value(&[]) as i64;
            let s = m.numel() as i64;
            layers.insert(n.clone(), a as f64 / s.max(1) as f64);
            alive += a;
            size += s;
        }
        Density { total: alive as f64 / size.max(1) as f64, alive, size, layers }
    }

    /// Sets masked weights of `model` to zero.
    pub fn apply(&self, model: &Model) {
        let vars = model.vs.variables();
        tch::no_grad(|| {
            for (n, m) in &self.masks {
                let _ = vars[n].shallow_clone().g_mul_(m);
            }
        });
    }

    /// Masks from raw state-dict tensors (a mask file, or a PyTorch checkpoint's `weight_mask`s).
    pub fn from_raw(
        model: &Model,
        raw: &[(String, torchfile::RawTensor)],
        source: &std::path::Path,
    ) -> crate::Result<Self> {
        let dev = model.device();
        let named = raw
            .iter()
            .map(|(n, r)| Ok((n.clone(), crate::model::from_raw(r, source, n)?.to_device(dev))))
            .collect::<crate::Result<Vec<_>>>()?;
        Ok(Masks::from_named(model, named))
    }

    /// Reads masks saved by [`Masks::save`].
    pub fn load(path: &std::path::Path, model: &Model) -> crate::Result<Self> {
        Masks::from_raw(model, &torchfile::load(path)?.tensors, path)
    }

    /// Writes the masks as safetensors (parameter name -> 0/1 float tensor), atomically.
    pub fn save(&self, path: &std::path::Path) -> crate::Result<()> {
        let raw: Vec<_> = self.masks.iter().map(|(n, m)| (n.clone(), crate::model::to_raw(m))).collect();
        Ok(torchfile::save_safetensors(path, &raw, &Default::default())?)
    }

    /// Masks as the optimizer wants them.
    pub fn to_map(&self) -> std::collections::HashMap<String, Tensor> {
        self.masks.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect()
    }

    /// Prunes `rate` of the alive weights of `model` (by `criterion`) and returns the new masks.
    pub fn prune(&self, model: &Model, rate: f64, scope: Scope, criterion: Criterion) -> Masks {
        let vars = model.vs.variables();
        let mut rng_seed = match criterion {
            Criterion::Random(s) => Some(ChaCha8Rng::seed_from_u64(s)),
            Criterion::Magnitude => None,
        };
        let mut score = |name: &str, m: &Tensor| -> Tensor {
            let w = vars[name].detach().to_device(Device::Cpu).to_kind(Kind::Float);
            let s = match rng_seed.as_mut() {
                None => w.abs(),
                Some(rng) => {
                    use rand::Rng;
                    let v: Vec<f32> = (0..w.numel()).map(|_| rng.gen::<f32>()).collect();
                    Tensor::from_slice(&v).view_as(&w)
                }
            };
            // Dead weights never come back: score +inf so they are never among the smallest alive.
            s.where_self(&m.to_device(Device::Cpu).gt(0.0), &Tensor::from(f32::INFINITY))
        };
        let mut out = self.clone();
        match scope {
            Scope::Global => {
                let scores: Vec<(String, Tensor)> = self.masks.iter().map(|(n, m)| (n.clone(), score(n, m))).collect();
                // [sum of numels]
                let flat = Tensor::cat(&scores.iter().map(|(_, s)| s.view([-1])).collect::<Vec<_>>(), 0);
                let alive = self.density().alive;
                let k = (rate * alive as f64).round() as i64;
                let cut = smallest_mask(&flat, k);
                let mut off = 0;
                for (n, s) in &scores {
                    let len = s.numel() as i64;
                    let keep = cut.narrow(0, off, len).view_as(s);
                    let m = out.masks.get_mut(n).expect("same names");
                    *m = (&*m * keep.to_device(m.device())).detach();
                    off += len;
                }
            }
            Scope::Layer => {
                for (n, m) in out.masks.iter_mut() {
                    let s = score(n, m).view([-1]);
                    let alive = m.sum(Kind::Float).double_value(&[]);
                    let k = (rate * alive).round() as i64;
                    let keep = smallest_mask(&s, k).view_as(m);
                    *m = (&*m * keep.to_device(m.device())).detach();
                }
            }
        }
        out
    }
}

/// 0/1 float vector that is 0 at the `k` smallest entries of `scores` (ties broken by position).
fn smallest_mask(scores: &Tensor, k: i64) -> Tensor {
    let keep = Tensor::ones_like(scores);
    if k <= 0 {
        return keep;
    }
    let (_, idx) = scores.sort(0, false);
    let _ = keep.shallow_clone().index_fill_(0, &idx.narrow(0, 0, k.min(scores.numel() as i64)), 0.0);
    keep
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Arch, ModelMeta};

    fn model() -> Model {
        tch::manual_seed(1);
        Model::new(
            ModelMeta { arch: Arch::Resnet20s, in_channels: 3, height: 32, width: 32, num_classes: 10, script: None },
            Device::Cpu,
        )
        .unwrap()
    }

    #[test]
    fn density_after_n_rounds_is_0_8_pow_n() {
        let m = model();
        let mut masks = Masks::dense(&m);
        assert_eq!(masks.density().size, 267_696);
        let mut alive = 267_696i64;
        for n in 1..=5 {
            masks = masks.prune(&m, 0.2, Scope::Global, Criterion::Magnitude);
            masks.apply(&m);
            alive -= (0.2 * alive as f64).round() as i64;
            let d = masks.density();
            assert_eq!(d.alive, alive, "round {n}");
            assert!((d.total - 0.8f64.powi(n)).abs() < 1e-4);
        }
    }

    #[test]
    fn global_magnitude_removes_the_smallest_and_never_revives() {
        let m = model();
        let masks = Masks::dense(&m).prune(&m, 0.5, Scope::Global, Criterion::Magnitude);
        let vars = m.vs.variables();
        // Every pruned weight is no larger than every kept weight.
        let (mut max_pruned, mut min_kept) = (0f64, f64::INFINITY);
        for (n, mask) in &masks.masks {
            let w = vars[n].abs();
            let pruned = w.masked_select(&mask.eq(0.0));
            let kept = w.masked_select(&mask.eq(1.0));
            if pruned.numel() > 0 {
                max_pruned = max_pruned.max(pruned.max().double_value(&[]));
            }
            if kept.numel() > 0 {
                min_kept = min_kept.min(kept.min().double_value(&[]));
            }
        }
        assert!(max_pruned <= min_kept);
        // Pruning again with masks applied never turns a 0 back to 1.
        masks.apply(&m);
        let again = masks.prune(&m, 0.2, Scope::Global, Criterion::Magnitude);
        for (n, a) in &again.masks {
            assert_eq!((a - &masks.masks[n]).max().double_value(&[]), 0.0);
        }
    }

    #[test]
    fn layer_scope_and_random_prune_each_layer_equally() {
        let m = model();
        for c in [Criterion::Magnitude, Criterion::Random(3)] {
            let masks = Masks::dense(&m).prune(&m, 0.2, Scope::Layer, c);
            for (_, d) in masks.density().layers {
                assert!((d - 0.8).abs() < 0.01, "{d}");
            }
        }
        let a = Masks::dense(&m).prune(&m, 0.2, Scope::Global, Criterion::Random(3));
        let b = Masks::dense(&m).prune(&m, 0.2, Scope::Global, Criterion::Random(3));
        assert!(a.masks.iter().all(|(n, t)| t.equal(&b.masks[n])));
    }
}
