//! `quarantine export` (checkpoint -> PyTorch-loadable file) and `quarantine inspect`.
use quarantine::choice::Choice;
use std::path::PathBuf;

use clap::Args;
use tch::Device;

use super::ModelArgs;
use quarantine::model::{export, load_checkpoint};

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output: .pt/.pth (zip format, `torch.load(..., weights_only=True)`) or .safetensors.
    #[arg(long)]
    pub out: PathBuf,
    /// Overwrite an existing output file.
    #[arg(long)]
    pub force: bool,
}

pub fn run(a: ExportArgs, _device: Device, json: bool) -> anyhow::Result<()> {
    anyhow::ensure!(a.force || !a.out.exists(), "{} already exists (pass --force to overwrite)", a.out.display());
    let (model, info, masks) = load_checkpoint(&a.model.model, &a.model.overrides(), Device::Cpu)?;
    export(&a.out, &model, info.batches_tracked)?;
    if json {
        println!(
            "{}",
            serde_json::json!({"out": a.out, "arch": model.meta.arch, "tensors": model.named_tensors().len(), "masks": masks.len()})
        );
    } else {
        eprintln!("wrote {} ({} model)", a.out.display(), model.meta.arch.name());
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Any checkpoint file (.safetensors, .pt, .pth, zip or legacy format).
    pub path: PathBuf,
}

pub fn inspect(a: InspectArgs, json: bool) -> anyhow::Result<()> {
    let sd = torchfile::load(&a.path)?;
    let tensors: Vec<serde_json::Value> = sd
        .tensors
        .iter()
        .map(|(n, t)| serde_json::json!({"name": n, "dtype": t.dtype.name(), "shape": t.shape}))
        .collect();
    let masks: Vec<serde_json::Value> = sd
        .masks
        .iter()
        .map(|(n, m)| {
            let kept = m.data.iter().filter(|&&b| b != 0).count() as f64 / m.dtype.size() as f64;
            let numel: usize = m.shape.iter().product();
            serde_json::json!({"name": n, "shape": m.shape, "density": if numel > 0 { kept / numel as f64 } else { 0.0 }})
        })
        .collect();
    let v = serde_json::json!({"path": a.path, "format": format!("{:?}", sd.format), "tensors": tensors, "masks": masks, "ignored": sd.ignored});
    if json {
        println!("{v}");
    } else {
        println!(
            "{} ({:?}): {} tensors, {} pruning masks",
            a.path.display(),
            sd.format,
            sd.tensors.len(),
            sd.masks.len()
        );
        for (n, t) in &sd.tensors {
            println!("  {n:<40} {:<5} {:?}", t.dtype.name(), t.shape);
        }
        if !sd.ignored.is_empty() {
            println!("  ignored non-tensor entries: {}", sd.ignored.join(", "));
        }
    }
    Ok(())
}
