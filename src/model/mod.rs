//! Architectures (docs/METHOD.md §3) over one `VarStore` whose variable names are PyTorch's
//! state-dict names, and conversion between the store and flat state dicts (import/export in
//! `checkpoint`). Each architecture's facts live in its own file behind `arch::ArchSpec`; the
//! registry below lists them.
#![warn(missing_docs)]
mod arch;
mod checkpoint;
mod cnn;
mod layers;
mod resnet;
mod resnet18;
mod resnet20s;
mod script;
mod vgg;

pub use checkpoint::{
    export, load_checkpoint, save_checkpoint, sidecar_path as checkpoint_sidecar, CheckpointInfo, ForeignDescription,
    InputOverrides, InputRange, Versions,
};
pub use layers::{with_bn_probe, BnStat, Mode};
pub use script::{describe as describe_script, summarize as summarize_script, ScriptSource, ScriptSummary};

use tch::nn;
use tch::{Device, Kind, Tensor};
use torchfile::{DType, RawTensor};

use crate::choice::Choice;
use crate::error::{Error, Result};

// The registry: `Variant => file::Spec, "name": "help";` (the name and help are the command line's
// and JSON's, see `crate::choice`).
arch::architectures! {
    Resnet20s => resnet20s::ResNet20sSpec, "resnet20s": "ResNet-20s with option-A shortcuts (the paper's main model)";
    Resnet18 => resnet18::ResNet18Spec, "resnet18": "ResNet-18, CIFAR variant (3x3 stem, no max-pool)";
    Vgg16bn => vgg::Vgg16BnSpec, "vgg16bn": "VGG-16 with batch norm, one linear layer";
    Cnn => cnn::SmallCnnSpec, "cnn": "small 4-conv CNN for 28x28 inputs";
    Torchscript => script::ScriptSpec, "torchscript": "any network saved with torch.jit.save, given as a file (--model, --model-init)";
}

impl Arch {
    /// Images per forward pass of trigger reverse engineering at `height x width`: the
    /// architecture's budget at 32x32 scaled by input area, within 1..=4096. The budgets keep the
    /// activations held for the backward pass within a fixed memory budget; measured peak memory of
    /// `detect` with them: BENCHMARKS.md.
    pub fn reverse_images_per_pass(&self, height: usize, width: usize) -> usize {
        (self.spec().reverse_images_at_32x32() * 1024 / (height * width).max(1)).clamp(1, 4096)
    }
    /// Name of the classification head's weight.
    pub fn head(&self) -> &'static str {
        self.spec().head()
    }
    /// Name of the first conv weight (its shape gives the input channels).
    pub fn stem(&self) -> &'static str {
        self.spec().stem()
    }
}

/// What a network needs to be built: architecture and input/output shape.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelMeta {
    /// The architecture.
    pub arch: Arch,
    /// Input channels (1 or 3 for image data; 1-4 accepted).
    pub in_channels: usize,
    /// Input height in pixels.
    pub height: usize,
    /// Input width in pixels.
    pub width: usize,
    /// Number of outputs (classes).
    pub num_classes: usize,
    /// For [`Arch::Torchscript`]: the archive whose code and initial weights are the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<ScriptSource>,
}

impl ModelMeta {
    /// The input shape `(channels, height, width)`.
    pub fn input_shape(&self) -> (usize, usize, usize) {
        (self.in_channels, self.height, self.width)
    }

    /// Checks that images of shape `(channels, height, width)` fit the model's input; the error
    /// reads "{what} are CxHxW but the model takes CxHxW" (`what` e.g. "seed images",
    /// "builtin: test images").
    pub fn check_images(&self, images: (usize, usize, usize), what: &str) -> Result<()> {
        if images == self.input_shape() {
            return Ok(());
        }
        Err(Error::ImageShape { what: what.to_string(), images, model: self.input_shape() })
    }
}

/// A network with its state: the variables (PyTorch names) in one `VarStore` and the forward pass.
pub struct Model {
    /// Architecture and shapes.
    pub meta: ModelMeta,
    /// Every parameter and BN buffer, by PyTorch state-dict name.
    pub vs: nn::VarStore,
    net: Box<dyn Net>,
}

/// A network's forward pass in each [`Mode`].
pub(crate) trait Net: std::fmt::Debug + Send {
    fn forward(&self, x: &Tensor, mode: Mode) -> Tensor;
    /// The TorchScript module behind a foreign network.
    fn as_script(&self) -> Option<&script::ScriptNet> {
        None
    }
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Model({:?})", self.meta)
    }
}

impl Model {
    /// Builds a freshly initialised network; call `tch::manual_seed` first for reproducible weights.
    pub fn new(meta: ModelMeta, device: Device) -> Result<Self> {
        let (c, h, w, k) = (meta.in_channels as i64, meta.height as i64, meta.width as i64, meta.num_classes as i64);
        if !(1..=4).contains(&c) || h < 4 || w < 4 || k < 2 || h > 4096 || w > 4096 || k > 100_000 {
            return Err(Error::invalid(
                "model shape",
                format!("{meta:?}: need 1-4 channels, images of at least 4x4, 2+ classes"),
            ));
        }
        let vs = nn::VarStore::new(device);
        let net = meta.arch.spec().build(&vs.root(), &meta)?;
        Ok(Model { meta, vs, net })
    }

    /// [N, C, H, W] normalized images -> [N, classes] logits. `train` selects BN batch statistics.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.net.forward(x, Mode::from_train(train))
    }

    /// The eval-mode forward pass of a frozen model, every batch norm folded into its convolution
    /// ([`Mode::Frozen`]): the same logits as `forward_t(x, false)` to float rounding, cheaper, with
    /// gradients to `x` only (never to the weights). For reverse engineering and evaluation.
    pub fn forward_frozen(&self, x: &Tensor) -> Tensor {
        self.net.forward(x, Mode::Frozen)
    }

    /// The device the model's variables are on.
    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Every state tensor (parameters and BN buffers) by PyTorch name, sorted by name.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Trainable parameters by name, sorted (the optimizer's variable list).
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.named_tensors().into_iter().filter(|(_, t)| t.requires_grad()).collect()
    }

    /// Names of the conv weights (4-D parameters): what pruning masks cover (docs/METHOD.md §4). For a
    /// TorchScript model, every 4-D parameter, whatever its name.
    pub fn conv_weight_names(&self) -> Vec<String> {
        let script = self.is_script();
        self.named_tensors()
            .into_iter()
            .filter(|(n, t)| t.dim() == 4 && if script { t.requires_grad() } else { n.ends_with(".weight") })
            .map(|(n, _)| n)
            .collect()
    }

    /// True for a TorchScript network ([`Arch::Torchscript`]).
    pub fn is_script(&self) -> bool {
        self.net.as_script().is_some()
    }

    /// Saves a TorchScript network with its current weights as a TorchScript archive (atomically);
    /// an error for the built-in architectures (export a state dict instead).
    pub fn save_torchscript(&self, path: &std::path::Path) -> Result<()> {
        match self.net.as_script() {
            Some(net) => net.save(path),
            None => {
                Err(Error::bad_file(path, "only a TorchScript model saves as TorchScript; export a state dict instead"))
            }
        }
    }

    /// The forward pass with the module's own errors as a result (TorchScript models, whose forward
    /// is foreign code; the built-in architectures cannot fail on well-shaped input).
    pub fn try_forward_t(&self, x: &Tensor, train: bool) -> std::result::Result<Tensor, String> {
        match self.net.as_script() {
            Some(net) => net.try_forward(x, train),
            None => Ok(self.forward_t(x, train)),
        }
    }

    /// The model's state as a flat state dict (float32 on CPU), plus `num_batches_tracked` for every
    /// BN layer so that PyTorch's strict `load_state_dict` accepts it.
    pub fn state_dict(&self, batches_tracked: i64) -> Vec<(String, RawTensor)> {
        let mut out = vec![];
        let script = self.is_script();
        for (name, t) in self.named_tensors() {
            // A TorchScript module has its own `num_batches_tracked` buffers.
            if let Some(prefix) = name.strip_suffix(".running_mean").filter(|_| !script) {
                out.push((
                    format!("{prefix}.num_batches_tracked"),
                    RawTensor { dtype: DType::I64, shape: vec![], data: batches_tracked.to_le_bytes().to_vec() },
                ));
            }
            out.push((name, to_raw(&t)));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Loads a state dict strictly: every model tensor must be present with its shape; extra keys
    /// other than `num_batches_tracked` are an error. Names other code bases give the
    /// architecture's tensors are accepted (e.g. the ResNets' head as `linear` for `fc`).
    pub fn load_state_dict(&self, tensors: &[(String, RawTensor)], source: &std::path::Path) -> Result<()> {
        let mut vars = self.vs.variables();
        let mut seen = std::collections::BTreeSet::new();
        let aliases = self.meta.arch.spec().import_aliases();
        for (key, raw) in tensors {
            if key.ends_with("num_batches_tracked") {
                continue;
            }
            let name = canonical_name(key, &vars, aliases);
            let Some(var) = vars.get_mut(&name) else {
                return Err(Error::bad_file(
                    source,
                    format!(
                        "unexpected tensor `{key}` for a {} model (is the architecture right?)",
                        self.meta.arch.name()
                    ),
                ));
            };
            let src = from_raw(raw, source, key)?;
            if src.size() != var.size() {
                return Err(Error::bad_file(
                    source,
                    format!(
                        "tensor `{key}` has shape {:?}, a {} model needs {:?}",
                        src.size(),
                        self.meta.arch.name(),
                        var.size()
                    ),
                ));
            }
            tch::no_grad(|| var.copy_(&src.to_kind(var.kind())));
            seen.insert(name);
        }
        let missing: Vec<&String> =
            vars.keys().filter(|k| !seen.contains(*k) && !k.ends_with("num_batches_tracked")).collect();
        if !missing.is_empty() {
            let mut m: Vec<&String> = missing;
            m.sort();
            return Err(Error::bad_file(
                source,
                format!(
                    "missing {} tensor(s) for a {} model, e.g. {:?}",
                    m.len(),
                    self.meta.arch.name(),
                    &m[..m.len().min(3)]
                ),
            ));
        }
        Ok(())
    }

    /// Copies all state (weights and BN buffers) from another model of the same shape.
    pub fn copy_from(&self, other: &Model) -> Result<()> {
        let src = other.vs.variables();
        tch::no_grad(|| {
            for (n, t) in self.vs.variables() {
                match src.get(&n) {
                    Some(s) => {
                        t.shallow_clone().copy_(s);
                        Ok(())
                    }
                    None => Err(Error::invalid("model copy", format!("source has no tensor `{n}`"))),
                }?;
            }
            Ok(())
        })
    }
}

/// The model's name for a state-dict key: the key itself, or its alias (`(theirs, ours)` prefixes)
/// where the model has no variable of that name.
pub(crate) fn canonical_name(
    key: &str,
    vars: &std::collections::HashMap<String, Tensor>,
    aliases: &[(&str, &str)],
) -> String {
    if !vars.contains_key(key) {
        if let Some(name) =
            aliases.iter().find_map(|(theirs, ours)| key.strip_prefix(theirs).map(|rest| format!("{ours}{rest}")))
        {
            return name;
        }
    }
    key.to_string()
}

/// The libtorch kind of a checkpoint dtype.
pub fn kind_of(d: DType) -> Kind {
    match d {
        DType::F64 => Kind::Double,
        DType::F32 => Kind::Float,
        DType::F16 => Kind::Half,
        DType::BF16 => Kind::BFloat16,
        DType::I64 => Kind::Int64,
        DType::I32 => Kind::Int,
        DType::I16 => Kind::Int16,
        DType::I8 => Kind::Int8,
        DType::U8 => Kind::Uint8,
        DType::Bool => Kind::Bool,
    }
}

/// A raw state-dict tensor as a CPU tensor of its own dtype.
pub fn from_raw(raw: &RawTensor, source: &std::path::Path, key: &str) -> Result<Tensor> {
    let numel: usize = raw.shape.iter().product();
    if raw.data.len() != numel * raw.dtype.size() {
        return Err(Error::bad_file(
            source,
            format!("tensor `{key}`: {} bytes for shape {:?}", raw.data.len(), raw.shape),
        ));
    }
    let shape: Vec<i64> = raw.shape.iter().map(|&d| d as i64).collect();
    Ok(Tensor::from_data_size(&raw.data, &shape, kind_of(raw.dtype)))
}

/// A tensor as a float32 (or, for integer/bool tensors, its own dtype) raw CPU tensor.
pub fn to_raw(t: &Tensor) -> RawTensor {
    let (kind, dtype) = match t.kind() {
        Kind::Int64 => (Kind::Int64, DType::I64),
        Kind::Bool => (Kind::Bool, DType::Bool),
        Kind::Uint8 => (Kind::Uint8, DType::U8),
        _ => (Kind::Float, DType::F32),
    };
    let t = t.detach().to_device(Device::Cpu).to_kind(kind).contiguous();
    let numel = t.numel();
    let mut data = vec![0u8; numel * dtype.size()];
    t.copy_data_u8(&mut data, numel);
    RawTensor { dtype, shape: t.size().iter().map(|&d| d as usize).collect(), data }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(arch: Arch, c: usize, hw: usize) -> ModelMeta {
        ModelMeta { arch, in_channels: c, height: hw, width: hw, num_classes: 10, script: None }
    }

    #[test]
    fn resnet20s_has_the_reference_names_and_conv_count() {
        let m = Model::new(meta(Arch::Resnet20s, 3, 32), Device::Cpu).unwrap();
        let names: Vec<String> = m.named_tensors().into_iter().map(|(n, _)| n).collect();
        for n in ["conv1.weight", "bn1.running_var", "layer3.2.bn2.bias", "fc.weight", "fc.bias"] {
            assert!(names.contains(&n.to_string()), "{n}");
        }
        let convs: i64 = m.conv_weight_names().iter().map(|n| m.vs.variables()[n].numel() as i64).sum();
        assert_eq!(convs, 267_696);
        let y = m.forward_t(&Tensor::zeros([2, 3, 32, 32], (Kind::Float, Device::Cpu)), false);
        assert_eq!(y.size(), vec![2, 10]);
    }

    #[test]
    fn every_arch_runs_on_small_and_cifar_inputs() {
        for arch in [Arch::Resnet20s, Arch::Resnet18, Arch::Vgg16bn, Arch::Cnn] {
            for (c, hw) in [(1, 28), (3, 32)] {
                let m = Model::new(meta(arch, c, hw), Device::Cpu).unwrap();
                let y =
                    m.forward_t(&Tensor::randn([2, c as i64, hw as i64, hw as i64], (Kind::Float, Device::Cpu)), true);
                assert_eq!(y.size(), vec![2, 10], "{arch:?} {c}x{hw}");
            }
        }
    }

    /// A model of `arch` (3x32x32) in double precision whose BN statistics and affine parameters
    /// are far from the identity, as in a trained model; parameters frozen.
    fn trained_like(arch: Arch) -> Model {
        let m = Model::new(meta(arch, 3, 32), Device::Cpu).unwrap();
        tch::no_grad(|| {
            for (name, t) in m.named_tensors() {
                let mut t = t;
                let _ = match name.rsplit('.').next() {
                    Some("running_mean") => t.normal_(0.0, 0.5),
                    Some("running_var") => t.uniform_(0.2, 3.0),
                    Some("weight") if t.dim() == 1 => t.uniform_(0.3, 2.0),
                    Some("bias") => t.normal_(0.0, 0.3),
                    _ => t.shallow_clone(),
                };
            }
        });
        for (_, p) in m.named_parameters() {
            let _ = p.shallow_clone().set_requires_grad(false);
        }
        let mut m = m;
        m.vs.double();
        m
    }

    #[test]
    fn frozen_mode_folds_batch_norm_without_changing_logits_or_input_gradients() {
        tch::manual_seed(5);
        for arch in [Arch::Resnet20s, Arch::Resnet18, Arch::Vgg16bn, Arch::Cnn] {
            // In double precision the fold is exact to rounding; in float32 a deep network with
            // these statistics amplifies rounding to ~0.5% of the input gradient (ResNet-18).
            let m = trained_like(arch);
            let x = Tensor::randn([4, 3, 32, 32], (Kind::Double, Device::Cpu)).set_requires_grad(true);
            let eval = m.forward_t(&x, false);
            let frozen = m.forward_frozen(&x);
            let scale = eval.abs().max().double_value(&[]).max(1.0);
            let diff = (&eval - &frozen).abs().max().double_value(&[]);
            assert!(diff < 1e-10 * scale, "{arch:?}: logits differ by {diff} (scale {scale})");
            let g_eval = Tensor::run_backward(&[eval.square().sum(Kind::Double)], &[&x], false, false).remove(0);
            let g_frozen = Tensor::run_backward(&[frozen.square().sum(Kind::Double)], &[&x], false, false).remove(0);
            let gs = g_eval.norm().double_value(&[]);
            let gd = (&g_eval - &g_frozen).norm().double_value(&[]);
            assert!(gd < 1e-10 * gs, "{arch:?}: input gradients differ by {gd} (l2; the gradient's l2 is {gs})");
        }
    }

    /// A frozen (BN-folded) pass records the batch statistics an eval pass records, with the same
    /// input gradient of the inversion's BN distance; a layer whose BN scale is zero (its input is
    /// not recoverable from the folded output) is probed through its unfolded convolution.
    #[test]
    fn the_bn_probe_of_a_frozen_pass_matches_the_eval_pass() {
        tch::manual_seed(6);
        for arch in [Arch::Resnet20s, Arch::Cnn] {
            let m = trained_like(arch);
            if arch == Arch::Cnn {
                // Zero the scale of the first BN layer.
                let gamma =
                    m.named_tensors().into_iter().find(|(n, t)| n.ends_with(".weight") && t.dim() == 1).unwrap();
                let _ = tch::no_grad(|| gamma.1.shallow_clone().zero_());
            }
            let x = Tensor::randn([6, 3, 32, 32], (Kind::Double, Device::Cpu)).set_requires_grad(true);
            let distance = |stats: &[BnStat]| {
                stats.iter().fold(Tensor::zeros([], (Kind::Double, Device::Cpu)), |acc, s| {
                    acc + (&s.mean - &s.running_mean).norm() + (&s.var - &s.running_var).norm()
                })
            };
            let (_, eval) = with_bn_probe(|| m.forward_t(&x, false));
            let (_, frozen) = with_bn_probe(|| m.forward_frozen(&x));
            assert!(
                !eval.is_empty() && eval.len() == frozen.len(),
                "{arch:?}: {} vs {} layers",
                eval.len(),
                frozen.len()
            );
            for (i, (e, f)) in eval.iter().zip(&frozen).enumerate() {
                for (a, b, what) in [(&e.mean, &f.mean, "mean"), (&e.var, &f.var, "variance")] {
                    let d = (a - b).abs().max().double_value(&[]);
                    assert!(
                        d < 1e-9 * a.abs().max().double_value(&[]).max(1.0),
                        "{arch:?} layer {i}: {what} off by {d}"
                    );
                }
            }
            let (de, df) = (distance(&eval), distance(&frozen));
            let ge = Tensor::run_backward(&[de], &[&x], false, false).remove(0);
            let gf = Tensor::run_backward(&[df], &[&x], false, false).remove(0);
            let gd = (&ge - &gf).norm().double_value(&[]);
            assert!(gd < 1e-9 * ge.norm().double_value(&[]), "{arch:?}: input gradients differ by {gd}");
        }
    }

    #[test]
    fn registry_names_match_serde_and_image_shapes_are_checked() {
        for &arch in Arch::ALL {
            assert_eq!(serde_json::to_value(arch).unwrap(), arch.name());
            assert_eq!(serde_json::from_value::<Arch>(arch.name().into()).unwrap(), arch);
            assert!(arch.reverse_images_per_pass(32, 32) >= 1);
        }
        assert_eq!(
            Arch::ALL.iter().map(|a| a.name()).collect::<Vec<_>>(),
            ["resnet20s", "resnet18", "vgg16bn", "cnn", "torchscript"]
        );
        assert_eq!((Arch::Resnet18.head(), Arch::Vgg16bn.stem()), ("fc.weight", "features.0.weight"));
        assert_eq!(
            (Arch::Cnn.reverse_images_per_pass(28, 28), Arch::Resnet20s.reverse_images_per_pass(64, 64)),
            (1337, 64)
        );
        let m = meta(Arch::Cnn, 1, 28);
        m.check_images((1, 28, 28), "test images").unwrap();
        let e = m.check_images((3, 32, 32), "builtin: test images").unwrap_err().to_string();
        assert_eq!(e, "builtin: test images are 3x32x32 but the model takes 1x28x28");
    }

    #[test]
    fn state_dict_round_trip_and_strictness() {
        let a = Model::new(meta(Arch::Cnn, 1, 28), Device::Cpu).unwrap();
        let b = Model::new(meta(Arch::Cnn, 1, 28), Device::Cpu).unwrap();
        let sd = a.state_dict(7);
        assert!(sd.iter().any(|(n, _)| n == "bn1.num_batches_tracked"));
        b.load_state_dict(&sd, std::path::Path::new("x.pt")).unwrap();
        let x = Tensor::randn([3, 1, 28, 28], (Kind::Float, Device::Cpu));
        assert!(a.forward_t(&x, false).equal(&b.forward_t(&x, false)));
        let mut missing = sd.clone();
        missing.retain(|(n, _)| n != "fc1.bias");
        let e = b.load_state_dict(&missing, std::path::Path::new("x.pt")).unwrap_err().to_string();
        assert!(e.contains("x.pt") && e.contains("missing 1") && e.contains("fc1.bias"), "{e}");
        let mut extra = sd.clone();
        extra.push(("bogus.weight".into(), sd[0].1.clone()));
        assert!(b
            .load_state_dict(&extra, std::path::Path::new("x.pt"))
            .unwrap_err()
            .to_string()
            .contains("unexpected tensor `bogus.weight`"));
        let mut wrong = sd;
        let i = wrong.iter().position(|(n, _)| n == "fc2.bias").unwrap();
        wrong[i].1 = RawTensor { dtype: DType::F32, shape: vec![3], data: vec![0; 12] };
        assert!(b.load_state_dict(&wrong, std::path::Path::new("x.pt")).unwrap_err().to_string().contains("shape [3]"));
    }
}
