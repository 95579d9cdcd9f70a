//! `quarantine poison`: writes the poisoned training set in the same format as its input (so other
//! tools can train on it), the clean test split beside it, the plan, the trigger and a sample grid.
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use tch::Device;

use super::attack_args::AttackArgs;
use quarantine::attack::{load_surrogate, poison_and_record};
use quarantine::data::{DataSpec, ImageSet};
use quarantine::util::prepare_out_dir;

/// `quarantine poison` flags.
#[derive(Debug, Args)]
pub struct PoisonArgs {
    #[arg(long)]
    pub data: DataSpec,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Overwrite an earlier poisoned set in --out.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub attack: AttackArgs,
}

/// Runs `quarantine poison`.
pub fn run(a: PoisonArgs, device: Device, json: bool) -> anyhow::Result<()> {
    let cfg = a.attack.config(a.seed).context("poison needs --attack (badnets, blended, wanet, clean-label)")?;
    let split = a.data.load().with_context(|| format!("loading {}", a.data))?;
    prepare_out_dir(&a.out, "plan.json", false, a.force)?;
    let surrogate = load_surrogate(&cfg, a.attack.surrogate.as_deref(), device)?;
    let p = poison_and_record(cfg, &split.train, surrogate.as_ref(), &a.out)?;
    let (poisoned, plan) = (p.set, p.plan);
    let written = write_like(&a.data, &a.out, &poisoned, split.test.as_ref())?;
    let v = serde_json::json!({"out": a.out, "format": written, "poisoned": plan.indices.len(), "cross": plan.cross_indices.len(), "n": poisoned.n});
    if json {
        println!("{v}");
    } else {
        eprintln!(
            "wrote {} poisoned of {} training images to {} ({written})",
            plan.indices.len(),
            poisoned.n,
            a.out.display()
        );
    }
    Ok(())
}

/// Writes train (and test) in the format of `spec`; returns the data spec that reads them back.
fn write_like(
    spec: &DataSpec,
    out: &std::path::Path,
    train: &ImageSet,
    test: Option<&ImageSet>,
) -> anyhow::Result<String> {
    Ok(match spec {
        DataSpec::Cifar10(_) => {
            imagesets::write_cifar10_bin(out, train)?;
            if let Some(t) = test {
                imagesets::write_cifar10_test(out, t)?;
            }
            format!("cifar10:{}", out.display())
        }
        DataSpec::Cifar100(_) => {
            imagesets::write_cifar100_bin(out.join("train.bin"), train, None)?;
            if let Some(t) = test {
                imagesets::write_cifar100_bin(out.join("test.bin"), t, None)?;
            }
            format!("cifar100:{}", out.display())
        }
        DataSpec::Mnist(_) | DataSpec::FashionMnist(_) | DataSpec::Builtin => {
            imagesets::write_idx_pair(
                out.join("train-images-idx3-ubyte.gz"),
                out.join("train-labels-idx1-ubyte.gz"),
                train,
                true,
            )?;
            if let Some(t) = test {
                imagesets::write_idx_pair(
                    out.join("t10k-images-idx3-ubyte.gz"),
                    out.join("t10k-labels-idx1-ubyte.gz"),
                    t,
                    true,
                )?;
            }
            let kind = if matches!(spec, DataSpec::Mnist(_)) { "mnist" } else { "fashion-mnist" };
            format!("{kind}:{}", out.display())
        }
        DataSpec::Folder(_) => {
            imagesets::write_folder(out.join("train"), train)?;
            if let Some(t) = test {
                imagesets::write_folder(out.join("test"), t)?;
            }
            format!("folder:{}", out.display())
        }
    })
}
