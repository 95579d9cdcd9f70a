//! SGD with momentum and weight decay, exactly PyTorch's `torch.optim.SGD` (dampening 0, no Nesterov):
//! `d = g + wd·p; buf = d` on the first step, else `buf = μ·buf + d`; `p -= lr·buf`.
//! Written here rather than taken from tch so that (a) the momentum buffers can be checkpointed for
//! bit-exact resumed runs, and (b) pruning masks are honoured: a masked entry's gradient is zeroed before
//! the update and the weight is re-masked after it, so it gets no update, no momentum and stays 0.
use std::collections::HashMap;

use tch::Tensor;

/// The optimizer: named parameters, their momentum buffers and masks.
pub struct Sgd {
    params: Vec<(String, Tensor)>,
    bufs: Vec<Option<Tensor>>,
    /// Momentum μ.
    pub momentum: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
    masks: HashMap<String, Tensor>,
}

impl Sgd {
    /// `params`: the explicit variable list to optimise (name, tensor), e.g. `Model::named_parameters`.
    pub fn new(params: Vec<(String, Tensor)>, momentum: f64, weight_decay: f64) -> Self {
        let n = params.len();
        Sgd { params, bufs: (0..n).map(|_| None).collect(), momentum, weight_decay, masks: HashMap::new() }
    }

    /// Masks (same shape as the parameter, 1 = kept) for the named parameters.
    pub fn set_masks(&mut self, masks: HashMap<String, Tensor>) {
        self.masks = masks;
    }

    /// Zeroes every parameter's gradient.
    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }

    /// One update with learning rate `lr` from the current gradients.
    pub fn step(&mut self, lr: f64) {
        tch::no_grad(|| {
            for ((name, p), buf) in self.params.iter_mut().zip(self.bufs.iter_mut()) {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let mask = self.masks.get(name);
                let g = match mask {
                    Some(m) => &g * m,
                    None => g,
                };
                let d = if self.weight_decay != 0.0 { g + &*p * self.weight_decay } else { g };
                let b = match buf.take() {
                    Some(mut b) if self.momentum != 0.0 => {
                        let _ = b.g_mul_scalar_(self.momentum).g_add_(&d);
                        b
                    }
                    _ => d,
                };
                let _ = p.g_sub_(&(&b * lr));
                if let Some(m) = mask {
                    let _ = p.g_mul_(m);
                }
                *buf = Some(b);
            }
        });
    }

    /// Momentum buffers by parameter name (for checkpoints).
    pub fn buffers(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .zip(&self.bufs)
            .filter_map(|((n, _), b)| b.as_ref().map(|b| (n.clone(), b.shallow_clone())))
            .collect()
    }

    /// Restores momentum buffers saved by [`Sgd::buffers`].
    pub fn load_buffers(&mut self, bufs: HashMap<String, Tensor>) {
        for ((n, p), b) in self.params.iter().zip(self.bufs.iter_mut()) {
            *b = bufs.get(n).map(|t| t.to_device(p.device()).to_kind(p.kind()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn param(v: &[f32]) -> Tensor {
        Tensor::from_slice(v).set_requires_grad(true)
    }

    #[test]
    fn matches_pytorch_sgd_by_hand() {
        // Loss = sum(p * c) with c = [1, 2]: gradient c every step.
        let p = param(&[1.0, -1.0]);
        let c = Tensor::from_slice(&[1.0f32, 2.0]);
        let mut opt = Sgd::new(vec![("w".into(), p.shallow_clone())], 0.9, 0.1);
        for _ in 0..2 {
            opt.zero_grad();
            (&p * &c).sum(Kind::Float).backward();
            opt.step(0.5);
        }
        // step 1: d = c + 0.1 p = [1.1, 1.9]; p = [0.45, -1.95]
        // step 2: d = [1.045, 1.805]; buf = 0.9*[1.1,1.9] + d = [2.035, 3.515]; p = [0.45 - 1.0175, -1.95 - 1.7575] = [-0.5675, -3.7075]
        let got: Vec<f32> = Vec::try_from(&p.detach()).unwrap();
        assert!((got[0] + 0.5675).abs() < 1e-6 && (got[1] + 3.7075).abs() < 1e-6, "{got:?}");
    }

    #[test]
    fn masked_entries_get_no_update_and_stay_zero() {
        let p = param(&[1.0, 2.0, 3.0]);
        let mut opt = Sgd::new(vec![("w".into(), p.shallow_clone())], 0.9, 5e-4);
        let mask = Tensor::from_slice(&[1.0f32, 0.0, 1.0]);
        tch::no_grad(|| {
            let _ = p.shallow_clone().g_mul_(&mask);
        });
        opt.set_masks(HashMap::from([("w".to_string(), mask)]));
        for _ in 0..3 {
            opt.zero_grad();
            (&p * &p).sum(Kind::Float).backward();
            opt.step(0.1);
        }
        assert_eq!(p.double_value(&[1]), 0.0);
        assert_eq!(opt.buffers()[0].1.double_value(&[1]), 0.0);
        assert!(p.double_value(&[0]) < 1.0);
        let _ = Device::Cpu;
    }
}
