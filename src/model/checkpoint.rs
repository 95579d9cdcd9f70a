//! Checkpoints. Native: `NAME.safetensors` (PyTorch state-dict names) + sidecar `NAME.json`
//! ([`CheckpointInfo`]: architecture, input shape, classes, normalization, seed, versions, data hashes,
//! training config). Foreign: PyTorch `.pt`/`.pth` (zip or legacy format, read by `torchfile`, which
//! never executes pickle code) or `.safetensors` without a sidecar, described by `--arch` and
//! [`InputOverrides`]. Export writes a zip-format `.pt` (loads with `torch.load(weights_only=True)`)
//! or `.safetensors`.
use crate::choice::Choice;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tch::Device;
use torchfile::RawTensor;

use super::{Arch, Model, ModelMeta};
use crate::data::Normalization;
use crate::error::{Error, Result};
use crate::util::write_atomic;

/// A loaded checkpoint: the model, its sidecar, and its raw tensors by name (as stored).
type Loaded = (Model, CheckpointInfo, Vec<(String, RawTensor)>);

/// The versions a checkpoint was written with.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Versions {
    /// This crate's version.
    pub quarantine: String,
    /// The `tch` crate's version.
    pub tch: String,
    /// The libtorch (PyTorch) version.
    pub torch: String,
}

impl Default for Versions {
    fn default() -> Self {
        Versions { quarantine: env!("CARGO_PKG_VERSION").into(), tch: "0.26.0".into(), torch: "2.13.0".into() }
    }
}

/// The sidecar of a native checkpoint.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CheckpointInfo {
    /// Architecture and shapes (flattened into the sidecar's top level).
    #[serde(flatten)]
    pub meta: ModelMeta,
    /// Class names, by label.
    pub classes: Vec<String>,
    /// The input normalization the model was trained with.
    pub normalization: Normalization,
    /// The training seed, when known.
    pub seed: Option<u64>,
    /// Versions it was written with.
    pub versions: Versions,
    /// Data spec and SHA-256 of the training/test sets, when known.
    pub data: Option<serde_json::Value>,
    /// Training (and attack) configuration, free-form.
    pub config: Option<serde_json::Value>,
    /// Metrics at save time (e.g. clean accuracy).
    pub metrics: Option<serde_json::Value>,
    /// BN steps taken, exported as `num_batches_tracked`.
    #[serde(default)]
    pub batches_tracked: i64,
    /// Where it came from when imported (a foreign checkpoint's path and format).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported_from: Option<String>,
}

impl CheckpointInfo {
    /// The sidecar of a fresh model: classes named by their index, nothing else known.
    pub fn new(meta: ModelMeta, normalization: Normalization) -> Self {
        let classes = (0..meta.num_classes).map(|i| i.to_string()).collect();
        CheckpointInfo {
            meta,
            classes,
            normalization,
            seed: None,
            versions: Versions::default(),
            data: None,
            config: None,
            metrics: None,
            batches_tracked: 0,
            imported_from: None,
        }
    }
}

/// How to read a foreign checkpoint (no sidecar), and overrides for a native one.
#[derive(Debug, Clone, Default)]
pub struct InputOverrides {
    /// The architecture (needed for a foreign checkpoint; checked against a sidecar).
    pub arch: Option<Arch>,
    /// Input side (height = width) of a foreign checkpoint.
    pub image_size: Option<usize>,
    /// Input channels of a foreign checkpoint.
    pub channels: Option<usize>,
    /// Number of classes of a foreign checkpoint.
    pub classes: Option<usize>,
    /// Normalization spec (see `Normalization::parse`), replacing the stored or default one.
    pub normalize: Option<String>,
    /// The pixel range a foreign model takes before its normalization (TorchScript models).
    pub input_range: Option<InputRange>,
    /// Ops a TorchScript model may use on top of the allow-list (`torchfile::script::SCRIPT_OPS`).
    pub allow_ops: Vec<String>,
}

/// The pixel range a foreign model expects: images are fed as `(x·scale − mean) / std`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum InputRange {
    /// Pixels in [0, 1] (torchvision's `ToTensor`).
    #[serde(rename = "0-1")]
    Unit,
    /// Pixels in [0, 255]; `--normalize` numbers are then in the same units.
    #[serde(rename = "0-255")]
    Byte,
}
crate::choices!(InputRange {
    Unit => "0-1": "pixels in [0, 1] before normalization (torchvision's ToTensor)",
    Byte => "0-255": "pixels in [0, 255] before normalization (mean and std in the same units)",
});

impl InputRange {
    /// A normalization given in this range's units as one on [0, 1] pixels.
    pub fn to_unit(self, n: Normalization) -> Normalization {
        match self {
            InputRange::Unit => n,
            InputRange::Byte => Normalization {
                mean: n.mean.iter().map(|m| m / 255.0).collect(),
                std: n.std.iter().map(|s| s / 255.0).collect(),
            },
        }
    }
}

/// A TorchScript model's description beside it (`NAME.json` for `NAME.pt`), every field optional;
/// command-line flags override it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForeignDescription {
    /// Input side (height = width).
    pub image_size: Option<usize>,
    /// Input channels.
    pub channels: Option<usize>,
    /// Number of classes (checked against the module's output).
    pub classes: Option<usize>,
    /// Normalization spec (`Normalization::parse`).
    pub normalize: Option<String>,
    /// Pixel range before normalization.
    pub input_range: Option<InputRange>,
    /// Class names by label.
    pub class_names: Option<Vec<String>>,
    /// Ops allowed on top of the allow-list.
    #[serde(default)]
    pub allow_ops: Vec<String>,
}

/// The sidecar of the checkpoint `path`: the same name with extension `.json`.
pub fn sidecar_path(path: &Path) -> PathBuf {
    path.with_extension("json")
}

/// Saves `model` as `path` (.safetensors) + sidecar, both atomically.
pub fn save_checkpoint(path: &Path, model: &Model, info: &CheckpointInfo) -> Result<()> {
    let mut metadata = BTreeMap::new();
    metadata.insert("arch".to_string(), model.meta.arch.name().to_string());
    metadata.insert("format".to_string(), "pt".to_string());
    torchfile::save_safetensors(path, &model.state_dict(info.batches_tracked), &metadata)?;
    let json = serde_json::to_vec_pretty(info).expect("sidecar serializes");
    write_atomic(&sidecar_path(path), &json)
}

/// Exports for PyTorch: `.pt`/`.pth` (zip format) or `.safetensors` by extension.
pub fn export(path: &Path, model: &Model, batches_tracked: i64) -> Result<()> {
    let sd = model.state_dict(batches_tracked);
    match path.extension().and_then(|e| e.to_str()) {
        Some("pt") | Some("pth") => Ok(torchfile::save_pt(path, &sd)?),
        Some("safetensors") => Ok(torchfile::save_safetensors(path, &sd, &BTreeMap::new())?),
        _ => Err(Error::bad_file(path, "export needs a .pt, .pth or .safetensors file name")),
    }
}

/// Loads a native or foreign checkpoint. Returns the model (on `device`), its description and any
/// pruning masks the file carried (torch.nn.utils.prune's `weight_mask`).
pub fn load_checkpoint(path: &Path, ov: &InputOverrides, device: Device) -> Result<Loaded> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if torchfile::script::is_torchscript(&bytes) {
        return load_script(path, ov, device);
    }
    let sd = torchfile::load_bytes(&bytes, path)?;
    let side = sidecar_path(path);
    let info = if side != path && side.exists() {
        let bytes = std::fs::read(&side).map_err(|e| Error::io(&side, e))?;
        let mut info: CheckpointInfo = serde_json::from_slice(&bytes)
            .map_err(|e| Error::bad_file(&side, format!("not a quarantine checkpoint sidecar: {e}")))?;
        if let Some(a) = ov.arch {
            if a != info.meta.arch {
                return Err(Error::bad_file(
                    &side,
                    format!("checkpoint is a {}, but architecture {} was given", info.meta.arch.name(), a.name()),
                ));
            }
        }
        if let Some(n) = &ov.normalize {
            info.normalization = Normalization::parse(n, info.meta.in_channels)?;
        }
        info
    } else {
        foreign_info(path, &sd.tensors, ov, &format!("{:?}", sd.format))?
    };
    info.normalization.validate()?;
    let mut model = Model::new(info.meta.clone(), Device::Cpu)?;
    model.load_state_dict(&sd.tensors, path)?;
    if device != Device::Cpu {
        model.vs.set_device(device);
    }
    Ok((model, info, sd.masks))
}

/// Loads a TorchScript archive as a model: described by a quarantine sidecar (a model this crate
/// saved), else by a [`ForeignDescription`] beside it and the flags, the rest found by running it
/// (`describe_script`). The weights are the archive's.
fn load_script(path: &Path, ov: &InputOverrides, device: Device) -> Result<Loaded> {
    if ov.arch.is_some_and(|a| a != Arch::Torchscript) {
        return Err(Error::bad_file(
            path,
            format!("this is a TorchScript model, but architecture {} was given", ov.arch.map_or("", |a| a.name())),
        ));
    }
    let side = sidecar_path(path);
    let side_bytes = match std::fs::read(&side) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(&side, e)),
    };
    let native: Option<CheckpointInfo> = side_bytes.as_ref().and_then(|b| serde_json::from_slice(b).ok());
    let info = match native {
        Some(mut info) if info.meta.arch == Arch::Torchscript => {
            let allow = info.meta.script.as_ref().map(|s| s.allow_ops.clone()).unwrap_or_default();
            info.meta.script = Some(super::ScriptSource::new(path, &[allow, ov.allow_ops.clone()].concat())?);
            if let Some(n) = &ov.normalize {
                info.normalization = Normalization::parse(n, info.meta.in_channels)?;
            }
            info
        }
        _ => {
            let desc: ForeignDescription = match &side_bytes {
                Some(b) => serde_json::from_slice(b).map_err(|e| {
                    Error::bad_file(&side, format!("not a description of the TorchScript model beside it: {e}"))
                })?,
                None => ForeignDescription::default(),
            };
            let allow = [desc.allow_ops.clone(), ov.allow_ops.clone()].concat();
            let (channels, side_px, classes) =
                super::describe_script(path, &allow, ov.channels.or(desc.channels), ov.image_size.or(desc.image_size))?;
            if let Some(k) = ov.classes.or(desc.classes).filter(|&k| k != classes) {
                return Err(Error::bad_file(path, format!("{k} classes were given, but the module outputs {classes}")));
            }
            let range = ov.input_range.or(desc.input_range).unwrap_or(InputRange::Unit);
            let normalization = match ov.normalize.as_ref().or(desc.normalize.as_ref()) {
                Some(n) => range.to_unit(Normalization::parse(n, channels)?),
                None if range == InputRange::Byte => range.to_unit(Normalization::none(channels)),
                None if channels == 1 => Normalization::mnist(),
                None => Normalization::cifar10().for_channels(channels)?,
            };
            let meta = ModelMeta {
                arch: Arch::Torchscript,
                in_channels: channels,
                height: side_px,
                width: side_px,
                num_classes: classes,
                script: Some(super::ScriptSource::new(path, &allow)?),
            };
            let mut info = CheckpointInfo {
                imported_from: Some(format!("{} (TorchScript)", path.display())),
                ..CheckpointInfo::new(meta, normalization)
            };
            if let Some(names) = desc.class_names {
                if names.len() != classes {
                    return Err(Error::bad_file(&side, format!("{} class names for {classes} classes", names.len())));
                }
                info.classes = names;
            }
            info
        }
    };
    info.normalization.validate()?;
    let mut model = Model::new(info.meta.clone(), Device::Cpu)?;
    if device != Device::Cpu {
        model.vs.set_device(device);
    }
    Ok((model, info, vec![]))
}

/// The built-in architecture whose tensor names and shapes a state dict without sidecar matches
/// exactly (aliases and `num_batches_tracked` allowed, as when loading); otherwise an error listing
/// the closest candidates (share of the file's tensors each one has, with their shapes).
fn infer_arch(path: &Path, tensors: &[(String, RawTensor)], ov: &InputOverrides, format: &str) -> Result<Arch> {
    let mut fits = vec![];
    let mut near: Vec<(f64, Arch)> = vec![];
    for &arch in Arch::ALL.iter().filter(|a| **a != Arch::Torchscript) {
        let guess = InputOverrides { arch: Some(arch), ..ov.clone() };
        let model = foreign_info(path, tensors, &guess, format).and_then(|info| Model::new(info.meta, Device::Cpu));
        let Ok(model) = model else {
            near.push((0.0, arch));
            continue;
        };
        if model.load_state_dict(tensors, path).is_ok() {
            fits.push(arch);
            continue;
        }
        let vars = model.vs.variables();
        let aliases = arch.spec().import_aliases();
        let counted: Vec<&(String, RawTensor)> =
            tensors.iter().filter(|(k, _)| !k.ends_with("num_batches_tracked")).collect();
        let same = counted
            .iter()
            .filter(|(k, t)| {
                let name = super::canonical_name(k, &vars, aliases);
                vars.get(&name).is_some_and(|v| v.size().iter().map(|&d| d as usize).eq(t.shape.iter().copied()))
            })
            .count();
        near.push((same as f64 / counted.len().max(vars.len()).max(1) as f64, arch));
    }
    match fits.as_slice() {
        [one] => Ok(*one),
        [] => {
            near.sort_by(|a, b| b.0.total_cmp(&a.0));
            let list: Vec<String> = near
                .iter()
                .take(3)
                .map(|(f, a)| format!("{} ({:.0}% of the tensors match)", a.name(), f * 100.0))
                .collect();
            Err(Error::bad_file(
                path,
                format!(
                    "no quarantine sidecar (.json) beside it, and its tensors match no built-in architecture; closest: {}. \
                     Give --arch, or export the model as TorchScript (README \"Any architecture\")",
                    list.join(", ")
                ),
            ))
        }
        many => Err(Error::bad_file(
            path,
            format!(
                "no sidecar, and its tensors fit several architectures ({}): give --arch",
                many.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

/// The shape of the tensor `arch` names `name`, found under that name or any of its import aliases.
fn shape_of<'a>(tensors: &'a [(String, RawTensor)], arch: Arch, name: &str) -> Option<&'a [usize]> {
    let aliases = arch
        .spec()
        .import_aliases()
        .iter()
        .filter_map(|(theirs, ours)| name.strip_prefix(ours).map(|rest| format!("{theirs}{rest}")));
    std::iter::once(name.to_string())
        .chain(aliases)
        .find_map(|n| tensors.iter().find(|(k, _)| *k == n).map(|(_, t)| t.shape.as_slice()))
}

/// Describes a checkpoint without sidecar from `--arch` and its tensor shapes: channels from the first
/// conv, classes from the head, image size from `--image-size`, else from the tensors where the
/// architecture's shapes depend on it (the cnn's `fc1`), else 32 for 3 channels and 28 for 1.
fn foreign_info(
    path: &Path,
    tensors: &[(String, RawTensor)],
    ov: &InputOverrides,
    format: &str,
) -> Result<CheckpointInfo> {
    let arch = match ov.arch {
        Some(a) => a,
        None => infer_arch(path, tensors, ov, format)?,
    };
    let stem = shape_of(tensors, arch, arch.stem()).ok_or_else(|| {
        Error::bad_file(path, format!("no `{}` tensor: not a {} checkpoint", arch.stem(), arch.name()))
    })?;
    let head = shape_of(tensors, arch, arch.head()).ok_or_else(|| {
        Error::bad_file(path, format!("no `{}` tensor: not a {} checkpoint", arch.head(), arch.name()))
    })?;
    if stem.len() != 4 || head.len() != 2 {
        return Err(Error::bad_file(
            path,
            format!(
                "`{}` has shape {stem:?} and `{}` {head:?}; expected a 4-D conv and a 2-D linear weight",
                arch.stem(),
                arch.head()
            ),
        ));
    }
    let channels = ov.channels.unwrap_or(stem[1]);
    let num_classes = ov.classes.unwrap_or(head[0]);
    let size = ov.image_size.or_else(|| arch.spec().image_size(tensors)).unwrap_or(if channels == 1 { 28 } else { 32 });
    let normalization = match &ov.normalize {
        Some(n) => Normalization::parse(n, channels)?,
        None if channels == 1 => Normalization::mnist(),
        None => Normalization::cifar10().for_channels(channels)?,
    };
    let meta = ModelMeta { arch, in_channels: channels, height: size, width: size, num_classes, script: None };
    Ok(CheckpointInfo {
        imported_from: Some(format!("{} ({format})", path.display())),
        ..CheckpointInfo::new(meta, normalization)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exported(dir: &Path, meta: ModelMeta, rename: impl Fn(&str) -> String) -> PathBuf {
        let model = Model::new(meta, Device::Cpu).unwrap();
        let sd: Vec<(String, RawTensor)> = model.state_dict(0).into_iter().map(|(n, t)| (rename(&n), t)).collect();
        let path = dir.join("foreign.pt");
        torchfile::save_pt(&path, &sd).unwrap();
        path
    }

    #[test]
    fn foreign_cnn_image_size_is_read_off_fc1() {
        let d = tempfile::tempdir().unwrap();
        for (c, side) in [(1, 28), (3, 32), (3, 20)] {
            let meta =
                ModelMeta { arch: Arch::Cnn, in_channels: c, height: side, width: side, num_classes: 10, script: None };
            let path = exported(d.path(), meta.clone(), str::to_string);
            let ov = InputOverrides { arch: Some(Arch::Cnn), ..Default::default() };
            let (_, info, _) = load_checkpoint(&path, &ov, Device::Cpu).unwrap();
            assert_eq!(info.meta, meta);
        }
    }

    #[test]
    fn foreign_resnet_head_named_linear_is_accepted() {
        let d = tempfile::tempdir().unwrap();
        let meta =
            ModelMeta { arch: Arch::Resnet20s, in_channels: 3, height: 32, width: 32, num_classes: 7, script: None };
        let path = exported(d.path(), meta.clone(), |n| n.replace("fc.", "linear."));
        let ov = InputOverrides { arch: Some(Arch::Resnet20s), ..Default::default() };
        let (model, info, _) = load_checkpoint(&path, &ov, Device::Cpu).unwrap();
        assert_eq!(info.meta, meta);
        assert!(model.named_tensors().iter().any(|(n, _)| n == "fc.weight"));
        // the alias is the ResNets': a cnn has no `fc`, so `linear.*` stays an unexpected name
        let meta = ModelMeta { arch: Arch::Cnn, in_channels: 1, height: 28, width: 28, num_classes: 10, script: None };
        let path = exported(d.path(), meta, |n| n.replace("fc1.", "linear."));
        let ov = InputOverrides { arch: Some(Arch::Cnn), image_size: Some(28), ..Default::default() };
        let e = load_checkpoint(&path, &ov, Device::Cpu).unwrap_err().to_string();
        assert!(e.contains("unexpected tensor `linear."), "{e}");
    }

    #[test]
    fn a_state_dict_without_arch_is_matched_to_the_architecture_whose_tensors_fit() {
        let d = tempfile::tempdir().unwrap();
        for (arch, c, side) in [(Arch::Resnet20s, 3, 32), (Arch::Cnn, 1, 28), (Arch::Vgg16bn, 3, 32)] {
            let meta = ModelMeta { arch, in_channels: c, height: side, width: side, num_classes: 10, script: None };
            let path = exported(d.path(), meta.clone(), |n| n.replace("fc.", "linear."));
            let (_, info, _) = load_checkpoint(&path, &InputOverrides::default(), Device::Cpu).unwrap();
            assert_eq!(info.meta, meta, "{}", arch.name());
        }
        // A ResNet-20s with one block too many: no fit; the closest candidate is named first.
        let meta =
            ModelMeta { arch: Arch::Resnet20s, in_channels: 3, height: 32, width: 32, num_classes: 10, script: None };
        let path = exported(d.path(), meta, |n| n.replace("layer3.2.", "layer3.3."));
        let e = load_checkpoint(&path, &InputOverrides::default(), Device::Cpu).unwrap_err().to_string();
        assert!(e.contains("foreign.pt") && e.contains("closest: resnet20s ("), "{e}");
        assert!(e.contains("TorchScript"), "{e}");
    }
}
