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

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Versions {
    pub quarantine: String,
    pub tch: String,
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
    #[serde(flatten)]
    pub meta: ModelMeta,
    pub classes: Vec<String>,
    pub normalization: Normalization,
    pub seed: Option<u64>,
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
        CheckpointInfo { meta, classes, normalization, seed: None, versions: Versions::default(), data: None, config: None, metrics: None, batches_tracked: 0, imported_from: None }
    }
}

/// How to read a foreign checkpoint (no sidecar), and overrides for a native one.
#[derive(Debug, Clone, Default)]
pub struct InputOverrides {
    pub arch: Option<Arch>,
    pub image_size: Option<usize>,
    pub channels: Option<usize>,
    pub classes: Option<usize>,
    pub normalize: Option<String>,
}

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
pub fn load_checkpoint(path: &Path, ov: &InputOverrides, device: Device) -> Result<(Model, CheckpointInfo, Vec<(String, RawTensor)>)> {
    let sd = torchfile::load(path)?;
    let side = sidecar_path(path);
    let info = if side != path && side.exists() {
        let bytes = std::fs::read(&side).map_err(|e| Error::io(&side, e))?;
        let mut info: CheckpointInfo = serde_json::from_slice(&bytes).map_err(|e| Error::bad_file(&side, format!("not a quarantine checkpoint sidecar: {e}")))?;
        if let Some(a) = ov.arch {
            if a != info.meta.arch {
                return Err(Error::bad_file(&side, format!("checkpoint is a {}, but --arch {} was given", info.meta.arch.name(), a.name())));
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

fn shape_of<'a>(tensors: &'a [(String, RawTensor)], names: &[&str]) -> Option<&'a [usize]> {
    names.iter().find_map(|n| tensors.iter().find(|(k, _)| k == n).map(|(_, t)| t.shape.as_slice()))
}

/// Describes a checkpoint without sidecar from `--arch` and its tensor shapes: channels from the first
/// conv, classes from the head, image size from `--image-size` (the cnn's is read off `fc1`), else
/// 32 for 3 channels and 28 for 1.
fn foreign_info(path: &Path, tensors: &[(String, RawTensor)], ov: &InputOverrides, format: &str) -> Result<CheckpointInfo> {
    let arch = ov.arch.ok_or_else(|| Error::bad_file(path, "no quarantine sidecar (.json) beside it: pass --arch to say what network it holds"))?;
    let stem = shape_of(tensors, &[arch.stem()]).ok_or_else(|| Error::bad_file(path, format!("no `{}` tensor: not a {} checkpoint", arch.stem(), arch.name())))?;
    let head_alias = arch.head().replace("fc.", "linear.");
    let head = shape_of(tensors, &[arch.head(), &head_alias]).ok_or_else(|| Error::bad_file(path, format!("no `{}` tensor: not a {} checkpoint", arch.head(), arch.name())))?;
    if stem.len() != 4 || head.len() != 2 {
        return Err(Error::bad_file(path, format!("`{}` has shape {stem:?} and `{}` {head:?}; expected a 4-D conv and a 2-D linear weight", arch.stem(), arch.head())));
    }
    let channels = ov.channels.unwrap_or(stem[1]);
    let num_classes = ov.classes.unwrap_or(head[0]);
    let size = match (ov.image_size, arch) {
        (Some(s), _) => s,
        (None, Arch::Cnn) => {
            let flat = shape_of(tensors, &["fc1.weight"]).map(|s| s.get(1).copied().unwrap_or(0)).unwrap_or(0);
            4 * ((flat / 32) as f64).sqrt().round() as usize
        }
        (None, _) => if channels == 1 { 28 } else { 32 },
    };
    let normalization = match &ov.normalize {
        Some(n) => Normalization::parse(n, channels)?,
        None if channels == 1 => Normalization::mnist(),
        None => Normalization::cifar10().for_channels(channels)?,
    };
    Ok(CheckpointInfo {
        meta: ModelMeta { arch, in_channels: channels, height: size, width: size, num_classes },
        classes: (0..num_classes).map(|i| i.to_string()).collect(),
        normalization,
        seed: None,
        versions: Versions::default(),
        data: None,
        config: None,
        metrics: None,
        batches_tracked: 0,
        imported_from: Some(format!("{} ({format})", path.display())),
    })
}
