//! Layer constructors with the reference's initialization (docs/METHOD.md §3): Kaiming-normal (fan-in,
//! ReLU gain) for conv and linear weights, PyTorch's default uniform(±1/sqrt(fan_in)) for biases, BN weight 1 and
//! bias 0, eps 1e-5, momentum 0.1. Names follow PyTorch (`weight`, `bias`, `running_mean`, ...).
use tch::nn::{self, init::DEFAULT_KAIMING_NORMAL, Init};
use tch::Tensor;

/// A conv layer (`weight` `[cout, cin, k, k]`, optional `bias`) under `p`.
pub fn conv(p: nn::Path, cin: i64, cout: i64, k: i64, stride: i64, padding: i64, bias: bool) -> nn::Conv2D {
    let bound = 1.0 / ((cin * k * k) as f64).sqrt();
    nn::conv2d(
        p,
        cin,
        cout,
        k,
        nn::ConvConfig {
            stride,
            padding,
            bias,
            ws_init: DEFAULT_KAIMING_NORMAL,
            bs_init: Init::Uniform { lo: -bound, up: bound },
            ..Default::default()
        },
    )
}

/// A 2-D batch norm over `c` channels under `p`.
pub fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(p, c, Default::default())
}

/// A linear layer (`weight` `[cout, cin]`, `bias`) under `p`.
pub fn linear(p: nn::Path, cin: i64, cout: i64) -> nn::Linear {
    let bound = 1.0 / (cin as f64).sqrt();
    nn::linear(
        p,
        cin,
        cout,
        nn::LinearConfig {
            ws_init: DEFAULT_KAIMING_NORMAL,
            bs_init: Some(Init::Uniform { lo: -bound, up: bound }),
            bias: true,
        },
    )
}

/// How a network runs. `Train` and `Eval` are PyTorch's `model.train()` / `model.eval()`.
/// `Frozen` computes what `Eval` computes with every batch norm folded into the convolution before
/// it: `w' = w·s`, `b' = β + (b − μ)·s`, `s = γ / sqrt(σ² + ε)` per output channel (the folded
/// weights are recomputed from the current state at each call, outside autograd), so each conv+BN
/// pair is one convolution. Gradients still flow to the input but never to the weights: it is
/// for frozen models (trigger reverse engineering, scoring). Logits agree with `Eval` to float
/// rounding (unit test in `model`). Its speed against `Eval`: BENCHMARKS.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Batch statistics, running statistics updated.
    Train,
    /// Running statistics.
    Eval,
    /// Running statistics folded into the convolutions; no gradients to the weights.
    Frozen,
}

impl Mode {
    /// `Train` or `Eval`.
    pub fn from_train(train: bool) -> Mode {
        if train {
            Mode::Train
        } else {
            Mode::Eval
        }
    }
}

/// A convolution followed by batch norm (PyTorch names `{conv}.weight`, `{bn}.running_mean`, ...).
#[derive(Debug)]
pub struct ConvBn {
    /// The convolution.
    pub conv: nn::Conv2D,
    /// The batch norm after it.
    pub bn: nn::BatchNorm,
    stride: i64,
    padding: i64,
}

/// The batch statistics of one BN layer's input next to the layer's running statistics.
#[derive(Debug)]
pub struct BnStat {
    /// Per-channel mean of the batch.
    pub mean: Tensor,
    /// Per-channel (biased) variance of the batch.
    pub var: Tensor,
    /// The layer's running mean.
    pub running_mean: Tensor,
    /// The layer's running variance.
    pub running_var: Tensor,
}

thread_local! {
    static BN_PROBE: std::cell::RefCell<Option<Vec<BnStat>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` (an eval-mode forward pass) and returns its result with the batch statistics of every
/// BN layer's input, in forward order, differentiable with respect to the input (model inversion
/// matches them to the running statistics). `Mode::Eval` and `Mode::Frozen` passes record (the same statistics).
pub fn with_bn_probe<T>(f: impl FnOnce() -> T) -> (T, Vec<BnStat>) {
    BN_PROBE.with(|p| *p.borrow_mut() = Some(vec![]));
    let out = f();
    let stats = BN_PROBE.with(|p| p.borrow_mut().take()).unwrap_or_default();
    (out, stats)
}

/// The same values with NHWC strides (channels last), which libtorch's CPU convolutions run faster.
fn channels_last(x: &Tensor) -> Tensor {
    if x.stride()[1] == 1 {
        return x.shallow_clone();
    }
    // [N, C, H, W] -> [N, H, W, C] contiguous -> viewed back as [N, C, H, W]
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// Whether a [`with_bn_probe`] pass is recording.
fn probing() -> bool {
    BN_PROBE.with(|p| p.borrow().is_some())
}

/// Per-channel batch mean and (biased) variance: `[N, C, H, W]` -> `[C]`, `[C]`.
fn channel_stats(t: &Tensor) -> (Tensor, Tensor) {
    (t.mean_dim([0i64, 2, 3].as_slice(), false, t.kind()), t.var_dim([0i64, 2, 3].as_slice(), false, false))
}

/// Below this BN scale `|γ| / sqrt(σ̂² + ε)` a frozen probe does not divide by it ([`ConvBn`]).
const MIN_PROBE_SCALE: f64 = 1e-4;

/// The BN epsilon of every layer here (`BatchNormConfig::default()`, as PyTorch).
const BN_EPS: f64 = 1e-5;

impl ConvBn {
    /// `conv(cp, ...)` then `bn(bp, cout)`.
    #[allow(clippy::too_many_arguments)] // the conv's own arguments, as `nn::conv2d`
    pub fn new(cp: nn::Path, bp: nn::Path, cin: i64, cout: i64, k: i64, stride: i64, padding: i64, bias: bool) -> Self {
        ConvBn { conv: conv(cp, cin, cout, k, stride, padding, bias), bn: bn(bp, cout), stride, padding }
    }

    /// `[N, Cin, H, W]` -> `[N, Cout, H', W']` in `mode`.
    pub fn forward(&self, x: &Tensor, mode: Mode) -> Tensor {
        match mode {
            Mode::Eval if probing() => {
                let y = x.apply(&self.conv);
                self.record(channel_stats(&y));
                y.apply_t(&self.bn, false)
            }
            Mode::Train | Mode::Eval => x.apply(&self.conv).apply_t(&self.bn, mode == Mode::Train),
            Mode::Frozen => {
                let (w, b, s) = tch::no_grad(|| self.folded());
                let z = channels_last(x).conv2d(&channels_last(&w), Some(&b), [self.stride], [self.padding], [1], 1);
                if probing() {
                    self.probe_folded(x, &z, &s);
                }
                z
            }
        }
    }

    /// Records the batch statistics of the BN input `y` from the folded output `z = s·(y − μ̂) + β`:
    /// `mean(y) = μ̂ + (mean(z) − β)/s`, `var(y) = var(z)/s²` per channel, so a frozen pass feeds
    /// the model inversion the statistics an `Eval` pass records, without running conv and BN
    /// apart. A layer with a (near-)zero scale (γ ≈ 0: `y` is not recoverable from `z`) records its
    /// input through the unfolded convolution instead.
    fn probe_folded(&self, x: &Tensor, z: &Tensor, s: &Tensor) {
        let bn = &self.bn;
        let recoverable = tch::no_grad(|| s.abs().min().double_value(&[]) > MIN_PROBE_SCALE);
        let stats = if recoverable {
            let beta = bn.bs.as_ref().map_or_else(|| s.zeros_like(), |b| b.detach());
            let (mz, vz) = channel_stats(z);
            (&bn.running_mean + (mz - beta) / s, vz / s.square())
        } else {
            channel_stats(&x.apply(&self.conv))
        };
        self.record(stats);
    }

    /// Adds the batch `(mean, variance)` of this layer's BN input, next to its running
    /// statistics, to the probe of [`with_bn_probe`].
    fn record(&self, (mean, var): (Tensor, Tensor)) {
        BN_PROBE.with(|p| {
            if let Some(v) = p.borrow_mut().as_mut() {
                v.push(BnStat {
                    mean,
                    var,
                    running_mean: self.bn.running_mean.shallow_clone(),
                    running_var: self.bn.running_var.shallow_clone(),
                });
            }
        });
    }

    /// The folded weight `[Cout, Cin, k, k]`, bias `[Cout]` and the BN scale `s` `[Cout]`.
    fn folded(&self) -> (Tensor, Tensor, Tensor) {
        let bn = &self.bn;
        let gamma = bn.ws.as_ref().map_or_else(|| bn.running_var.ones_like(), |g| g.shallow_clone());
        let beta = bn.bs.as_ref().map_or_else(|| bn.running_var.zeros_like(), |b| b.shallow_clone());
        let s = gamma / (&bn.running_var + BN_EPS).sqrt();
        let mean = match &self.conv.bs {
            Some(b) => &bn.running_mean - b,
            None => bn.running_mean.shallow_clone(),
        };
        let w = &self.conv.ws * s.view([-1, 1, 1, 1]);
        let b = beta - mean * &s;
        (w, b, s)
    }
}
