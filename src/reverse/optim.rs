//! The batched optimisation core: stamping, the loss of docs/METHOD.md §6 for L labels at once, PyTorch's Adam
//! and the per-label cost schedule.
//!
//! Shapes: `L` labels, `B` seed images of `C x H x W`. Masks are `[L, 1, H, W]`, patterns
//! `[L, C, H, W]`; the stamped batch is `[L*B, C, H, W]` (label-major: rows `l*B .. (l+1)*B` carry
//! label `l`'s trigger on every seed image), followed by the `L` cropped triggers `m ⊙ p` of the R4
//! term, all in ONE forward pass. Each label's loss only depends on its own parameters, so summing the
//! per-label losses gives every label exactly the gradient it would get alone.
use tch::{Kind, Tensor};

use super::{LossKind, Space};
use crate::data::Normalization;
use crate::model::Model;

/// `(tanh a + 1) / 2`: the reference's `tanh_func`.
pub fn squash(a: &Tensor) -> Tensor {
    (a.tanh() + 1.0) * 0.5
}

/// Where seeds, patterns and stamping live, and how stamped images reach the model.
pub(crate) struct InputSpace {
    /// `[1, C, 1, 1]` mean and std when stamping in pixel space (normalize after stamping).
    normalize: Option<(Tensor, Tensor)>,
}

impl InputSpace {
    /// The input space for `space`; `norm` is kept (first `channels` entries) only for pixel space.
    pub fn new(space: Space, norm: &Normalization, channels: usize, device: tch::Device) -> Self {
        let normalize = match space {
            Space::Normalized => None,
            Space::Pixel => {
                let v =
                    |x: &[f32]| Tensor::from_slice(&x[..channels]).view([1, channels as i64, 1, 1]).to_device(device);
                Some((v(&norm.mean), v(&norm.std)))
            }
        };
        InputSpace { normalize }
    }

    /// Stamped images (in the stamping space) -> the model's normalized input.
    pub fn to_model(&self, x: &Tensor) -> Tensor {
        match &self.normalize {
            Some((m, s)) => (x - m) / s,
            None => x.shallow_clone(),
        }
    }
}

/// `x' = x + m ⊙ (p − x)` (= `(1−m)⊙x + m⊙p`, written as the reference does) for every label and seed:
/// x `[B,C,H,W]`, m `[L,1,H,W]`, p `[L,C,H,W]` -> `[L*B,C,H,W]`, label-major.
pub fn stamp(x: &Tensor, m: &Tensor, p: &Tensor) -> Tensor {
    let x5 = x.unsqueeze(0);
    let (m5, p5) = (m.unsqueeze(1), p.unsqueeze(1));
    (&x5 + m5 * (p5 - &x5)).flatten(0, 1)
}

/// Squared total variation per leading index: `t [L, C, H, W] -> [L]`, the sum over channels of the
/// squared horizontal and vertical neighbour differences (the reference's `smooth`, summed over
/// channels for the pattern term).
pub fn tv2(t: &Tensor) -> Tensor {
    let (h, w) = (t.size()[2], t.size()[3]);
    let dh = t.narrow(3, 1, w - 1) - t.narrow(3, 0, w - 1);
    let dv = t.narrow(2, 1, h - 1) - t.narrow(2, 0, h - 1);
    dh.square().sum_dim_intlist([1i64, 2, 3].as_slice(), false, Kind::Float)
        + dv.square().sum_dim_intlist([1i64, 2, 3].as_slice(), false, Kind::Float)
}

/// `‖t‖₁ + ‖t‖₂²` per leading index (sums over the whole mask or pattern, as the reference's
/// `norm(p=1)` and `norm(p=2)**2`): `[L, ...] -> [L]`.
pub fn l1_l2sq(t: &Tensor) -> Tensor {
    let dims: Vec<i64> = (1..t.dim() as i64).collect();
    t.abs().sum_dim_intlist(dims.as_slice(), false, Kind::Float)
        + t.square().sum_dim_intlist(dims.as_slice(), false, Kind::Float)
}

/// Classification loss of each label's rows, averaged over its rows: logits `[L, N, K]`, targets
/// `[L]` (int64) -> `[L]`. CE = cross-entropy; CW = `max(max_{j≠t} z_j − z_t, −κ)` with κ = 0.
pub fn class_loss(logits: &Tensor, targets: &Tensor, kind: LossKind) -> Tensor {
    let (l, n, k) = (logits.size()[0], logits.size()[1], logits.size()[2]);
    let idx = targets.view([l, 1, 1]).expand([l, n, 1], false);
    match kind {
        LossKind::Ce => logits.log_softmax(-1, Kind::Float).gather(2, &idx, false).neg().mean_dim(
            [1i64, 2].as_slice(),
            false,
            Kind::Float,
        ),
        LossKind::Cw => {
            let zt = logits.gather(2, &idx, false).squeeze_dim(2);
            let onehot = Tensor::zeros([l, n, k], (Kind::Bool, logits.device())).scatter_value(2, &idx, 1);
            let other = logits.masked_fill(&onehot, f64::NEG_INFINITY).amax([2i64].as_slice(), false);
            (other - zt).clamp_min(-CW_KAPPA).mean_dim([1i64].as_slice(), false, Kind::Float)
        }
    }
}

/// The C&W confidence margin κ.
pub const CW_KAPPA: f64 = 0.0;

/// One forward pass for all labels: per-label total loss `[L]` and correct counts `[L]` (int64).
pub(crate) struct Losses {
    /// Total loss per label, [L] float.
    pub total: Tensor,
    /// Stamped seeds classified as the label, per label, [L] int64.
    pub correct: Tensor,
}

/// The loss of docs/METHOD.md §6 for every label: `class(f(x'), t) + Σ_k c_k · R_k` with
/// `R = [‖m‖₁+‖m‖₂², ‖(1−m)⊙p‖₁+‖(1−m)⊙p‖₂², TV²(m), Σ_ch TV²((1−m)⊙p), class(f(m⊙p), t)]`.
/// `x` are the seeds in the stamping space, `cost` is `[L, 5]`, `targets` `[L]` int64.
#[allow(clippy::too_many_arguments)]
pub(crate) fn losses(
    model: &Model,
    space: &InputSpace,
    a_m: &Tensor,
    a_p: &Tensor,
    x: &Tensor,
    targets: &Tensor,
    cost: &Tensor,
    kind: LossKind,
) -> Losses {
    let (l, b) = (a_m.size()[0], x.size()[0]);
    let m = squash(a_m);
    let p = squash(a_p);
    let stamped = stamp(x, &m, &p);
    let crop = &m * &p;
    let input = space.to_model(&Tensor::cat(&[&stamped, &crop], 0));
    let logits = model.forward_frozen(&input);
    let k = logits.size()[1];
    let main = logits.narrow(0, 0, l * b).view([l, b, k]);
    let r4_logits = logits.narrow(0, l * b, l).view([l, 1, k]);
    let pattern = (1.0 - &m) * &p;
    let terms = Tensor::stack(
        &[l1_l2sq(&m), l1_l2sq(&pattern), tv2(&m), tv2(&pattern), class_loss(&r4_logits, targets, kind)],
        1,
    );
    let total =
        class_loss(&main, targets, kind) + (&terms * cost).sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
    let correct =
        main.argmax(-1, false).eq_tensor(&targets.view([l, 1])).sum_dim_intlist([1i64].as_slice(), false, Kind::Int64);
    Losses { total, correct }
}

/// `torch.optim.Adam` (no weight decay, no AMSGrad), elementwise, so one Adam over stacked per-label
/// tensors equals one Adam per label:
/// `m = β₁m + (1−β₁)g; v = β₂v + (1−β₂)g²; p −= (lr/(1−β₁ᵗ)) · m / (√v/√(1−β₂ᵗ) + ε)`.
pub(crate) struct Adam {
    /// Learning rate (may be changed between steps).
    pub lr: f64,
    /// (β1, β2).
    pub betas: (f64, f64),
    /// ε added to the denominator.
    pub eps: f64,
    step: i32,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl Adam {
    /// An Adam with zeroed moments shaped like `params`.
    pub fn new(params: &[&Tensor], lr: f64, betas: (f64, f64), eps: f64) -> Self {
        Adam {
            lr,
            betas,
            eps,
            step: 0,
            m: params.iter().map(|p| p.zeros_like()).collect(),
            v: params.iter().map(|p| p.zeros_like()).collect(),
        }
    }

    /// Keeps rows `idx` (dim 0) of every moment, for parameters cut down the same way.
    pub fn retain_rows(&mut self, idx: &Tensor) {
        for t in self.m.iter_mut().chain(self.v.iter_mut()) {
            *t = t.index_select(0, idx);
        }
    }

    /// One update of `params` in place from `grads` (same order as at construction).
    pub fn step(&mut self, params: &mut [&mut Tensor], grads: &[Tensor]) {
        self.step += 1;
        let (b1, b2) = self.betas;
        let bc1 = 1.0 - b1.powi(self.step);
        let bc2 = 1.0 - b2.powi(self.step);
        tch::no_grad(|| {
            for ((p, g), (m, v)) in params.iter_mut().zip(grads).zip(self.m.iter_mut().zip(self.v.iter_mut())) {
                let _ = m.lerp_(g, 1.0 - b1);
                let _ = v.g_mul_scalar_(b2).g_add_(&(g * g * (1.0 - b2)));
                let denom = v.sqrt() / bc2.sqrt() + self.eps;
                let _ = p.g_add_(&(&*m / denom * (-self.lr / bc1)));
            }
        });
    }
}

/// The reference's cost schedule for one label: an epoch at or above the success threshold counts
/// "up" (and clears the "down" run), below counts "down" (and clears "up"); `patience` in a row
/// multiplies every cost by `up` (or divides by `down`) and restarts that run.
#[derive(Debug, Clone, PartialEq)]
pub struct CostSchedule {
    /// Current costs `[c1..c5]`.
    pub cost: [f64; 5],
    /// Epochs in a row (at least 1) before the costs change.
    pub patience: usize,
    /// Multiplier after a run of successful epochs.
    pub up: f64,
    /// Divisor after a run of unsuccessful epochs.
    pub down: f64,
    ups: usize,
    downs: usize,
}

impl CostSchedule {
    /// A schedule starting at `init` with no epochs recorded; `patience` is raised to at least 1.
    pub fn new(init: [f64; 5], patience: usize, up: f64, down: f64) -> Self {
        CostSchedule { cost: init, patience: patience.max(1), up, down, ups: 0, downs: 0 }
    }

    /// Records one epoch. Returns the factor the costs were multiplied by, if they changed.
    pub fn update(&mut self, success: bool) -> Option<f64> {
        if success {
            self.ups += 1;
            self.downs = 0;
        } else {
            self.ups = 0;
            self.downs += 1;
        }
        let factor = if self.ups >= self.patience {
            self.ups = 0;
            self.up
        } else if self.downs >= self.patience {
            self.downs = 0;
            1.0 / self.down
        } else {
            return None;
        };
        for c in &mut self.cost {
            *c *= factor;
        }
        Some(factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn t(v: &[f32], shape: &[i64]) -> Tensor {
        Tensor::from_slice(v).view(shape)
    }

    #[test]
    fn tv2_of_a_hand_computed_3x3() {
        // [[1,2,4],[0,0,0],[3,3,3]]
        // horizontal diffs: (1,2),(0,0),(0,0) -> 1+4 = 5
        // vertical diffs: (-1,-2,-4),(3,3,3) -> 1+4+16 + 9+9+9 = 48; total 53.
        let m = t(&[1., 2., 4., 0., 0., 0., 3., 3., 3.], &[1, 1, 3, 3]);
        assert_eq!(tv2(&m).double_value(&[0]), 53.0);
        // Two channels sum; two labels stay separate.
        let two = Tensor::cat(&[&m, &(&m * 2.0)], 1); // [1, 2, 3, 3]: 53 + 4*53
        let labels = Tensor::cat(&[&two, &Tensor::zeros([1, 2, 3, 3], (Kind::Float, Device::Cpu))], 0);
        let v: Vec<f64> = Vec::try_from(tv2(&labels).to_kind(Kind::Double)).unwrap();
        assert_eq!(v, vec![265.0, 0.0]);
    }

    #[test]
    fn l1_l2_terms_are_sums() {
        // |0.5|+|-1|+|2| = 3.5; 0.25+1+4 = 5.25 -> 8.75; second label 0.
        let x = t(&[0.5, -1., 2., 0., 0., 0.], &[2, 1, 3]);
        let v: Vec<f64> = Vec::try_from(l1_l2sq(&x).to_kind(Kind::Double)).unwrap();
        assert_eq!(v, vec![8.75, 0.0]);
    }

    #[test]
    fn stamp_is_label_major_and_blends() {
        let x = t(&[0., 1.], &[2, 1, 1, 1]); // two 1x1 seed images: 0 and 1
        let m = t(&[0.5, 1.0], &[2, 1, 1, 1]);
        let p = t(&[0.2, 0.7], &[2, 1, 1, 1]);
        let s: Vec<f32> = Vec::try_from(stamp(&x, &m, &p).flatten(0, -1)).unwrap();
        // label 0: 0.5*0+0.5*0.2 = 0.1, 0.5*1+0.1 = 0.6; label 1: p = 0.7 on both.
        let want = [0.1f32, 0.6, 0.7, 0.7];
        assert!(s.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6), "{s:?}");
    }

    #[test]
    fn cw_margin_and_ce() {
        // One label, two rows, 3 classes, target 1.
        let z = t(&[1., 3., 2., 4., 0., 1.], &[1, 2, 3]);
        let tgt = Tensor::from_slice(&[1i64]);
        // margins: max(1,2)-3 = -1 -> clamp at -κ = 0; max(4,1)-0 = 4 -> mean 2.
        assert!((class_loss(&z, &tgt, LossKind::Cw).double_value(&[0]) - 2.0).abs() < 1e-6);
        let ce = class_loss(&z, &tgt, LossKind::Ce).double_value(&[0]);
        let want = z.view([2, 3]).cross_entropy_for_logits(&Tensor::from_slice(&[1i64, 1])).double_value(&[]);
        assert!((ce - want).abs() < 1e-6);
    }

    #[test]
    fn cost_schedule_up_down_and_reset() {
        let init = [1e-3, 1e-5, 2e-3, 1e-4, 1.0];
        let mut s = CostSchedule::new(init, 5, 1.5, 1.5f64.powf(1.5));
        for _ in 0..4 {
            assert_eq!(s.update(true), None);
        }
        assert_eq!(s.update(true), Some(1.5));
        assert!((s.cost[0] - 1.5e-3).abs() < 1e-15 && (s.cost[4] - 1.5).abs() < 1e-15);
        // The counter restarted: 4 more ups change nothing, and a down breaks the run.
        for _ in 0..4 {
            assert_eq!(s.update(true), None);
        }
        assert_eq!(s.update(false), None);
        for _ in 0..3 {
            assert_eq!(s.update(false), None);
        }
        let f = s.update(false).unwrap();
        assert!((f - 1.0 / 1.5f64.powf(1.5)).abs() < 1e-15);
        // 1.5 / 1.5^1.5 = 1.5^-0.5
        assert!((s.cost[4] - 1.5f64.powf(-0.5)).abs() < 1e-12);
        // Downs also restart: 4 downs then an up then 4 downs: no change.
        for _ in 0..4 {
            assert_eq!(s.update(false), None);
        }
        assert_eq!(s.update(true), None);
        for _ in 0..4 {
            assert_eq!(s.update(false), None);
        }
    }

    #[test]
    fn adam_matches_the_closed_form_first_step() {
        // First Adam step moves each entry by lr * g/(|g| + eps*sqrt(1-b2)/(1-b1)...) ~ lr*sign(g).
        let mut p = t(&[1.0, -2.0], &[2]);
        let g = t(&[0.5, -3.0], &[2]);
        let mut adam = Adam::new(&[&p], 0.1, (0.5, 0.9), 1e-8);
        adam.step(&mut [&mut p], &[g]);
        let v: Vec<f32> = Vec::try_from(&p).unwrap();
        assert!((v[0] - 0.9).abs() < 1e-6 && (v[1] + 1.9).abs() < 1e-6, "{v:?}");
    }
}
