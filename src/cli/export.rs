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
    /// Output: .pt/.pth (zip format, `torch.load(..., weights_only=True)`) or .safetensors; for a
    /// TorchScript model also .ts.pt (TorchScript with the checkpoint's weights, `torch.jit.load`).
    #[arg(long)]
    pub out: PathBuf,
    /// Overwrite an existing output file.
    #[arg(long)]
    pub force: bool,
}

pub fn run(a: ExportArgs, _device: Device, json: bool) -> anyhow::Result<()> {
    anyhow::ensure!(a.force || !a.out.exists(), "{} already exists (pass --force to overwrite)", a.out.display());
    let (model, info, masks) = load_checkpoint(&a.model.model, &a.model.overrides(), Device::Cpu)?;
    if a.out.to_string_lossy().ends_with(".ts.pt") {
        model.save_torchscript(&a.out)?;
    } else {
        export(&a.out, &model, info.batches_tracked)?;
    }
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
    /// Any checkpoint file (.safetensors, .pt, .pth, zip or legacy format) or TorchScript archive.
    pub path: PathBuf,
    /// An op a TorchScript archive may use although it is not on the allow-list; repeatable.
    #[arg(long = "allow-op", value_name = "OP")]
    pub allow_ops: Vec<String>,
}

pub fn inspect(a: InspectArgs, json: bool) -> anyhow::Result<()> {
    let bytes = std::fs::read(&a.path).map_err(|e| quarantine::Error::io(&a.path, e))?;
    if torchfile::script::is_torchscript(&bytes) {
        return inspect_script(&a, json);
    }
    let sd = torchfile::load_bytes(&bytes, &a.path)?;
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

/// `inspect` of a TorchScript archive: vetted and loaded, not run.
fn inspect_script(a: &InspectArgs, json: bool) -> anyhow::Result<()> {
    let s = quarantine::model::summarize_script(&a.path, &a.allow_ops)?;
    if json {
        let tensors: Vec<serde_json::Value> = s
            .tensors
            .iter()
            .map(|(n, shape, p)| serde_json::json!({"name": n, "shape": shape, "kind": if *p { "parameter" } else { "buffer" }}))
            .collect();
        let v = serde_json::json!({"path": a.path, "format": "TorchScript", "traced": s.traced, "ops": s.ops,
                                   "code_files": s.code_files, "tensors": tensors});
        println!("{v}");
    } else {
        let params = s.tensors.iter().filter(|t| t.2).count();
        println!(
            "{} (TorchScript, {}): {params} parameters, {} buffers; {} ops, all on the allow-list",
            a.path.display(),
            if s.traced { "traced" } else { "scripted" },
            s.tensors.len() - params,
            s.ops.len()
        );
        for (n, shape, p) in &s.tensors {
            println!("  {n:<40} {:<9} {shape:?}", if *p { "parameter" } else { "buffer" });
        }
        println!("  ops: {}", s.ops.join(" "));
    }
    Ok(())
}
