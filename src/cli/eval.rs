//! `quarantine eval`: clean accuracy of a checkpoint on a data set's test split.
use anyhow::Context;
use clap::Args;
use tch::Device;

use super::attack_args::AttackArgs;
use super::ModelArgs;
use quarantine::attack::{attack_success, Attack};
use quarantine::data::DataSpec;
use quarantine::eval::evaluate;
use quarantine::model::load_checkpoint;

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long, default_value = "builtin")]
    pub data: DataSpec,
    /// Evaluate on the training split instead of the test split.
    #[arg(long)]
    pub train_split: bool,
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    /// Seed of the attack's randomness (random trigger locations, WaNet field): use the training seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub attack: AttackArgs,
}

pub fn run(a: EvalArgs, device: Device, json: bool) -> anyhow::Result<()> {
    let (model, info, _) = load_checkpoint(&a.model.model, &a.model.overrides(), device)?;
    let split = a.data.load().with_context(|| format!("loading {}", a.data))?;
    let set = if a.train_split { split.train } else { a.data.evaluation_set(split)? };
    let set = &set;
    let m = &model.meta;
    m.check_images((set.channels, set.height, set.width), &format!("{}: images", a.data))?;
    anyhow::ensure!(
        set.num_classes() <= m.num_classes,
        "{}: {} classes but the model has {} outputs",
        a.data,
        set.num_classes(),
        m.num_classes
    );
    let r = evaluate(&model, set, &info.normalization, a.batch_size.max(1));
    let mut out = serde_json::json!({"clean_accuracy": r.accuracy, "loss": r.loss, "n": r.n});
    if let Some(cfg) = a.attack.config(a.seed) {
        let attack = Attack::new(cfg, (set.height, set.width, set.channels), m.num_classes)?;
        let s = attack_success(&model, set, &attack, &info.normalization);
        out["attack_success_rate"] = s.attack_success_rate.into();
        out["attack_success_rate_nontarget"] = s.attack_success_rate_nontarget.into();
    }
    if json {
        println!("{out}");
    } else {
        print!("clean accuracy {:.4} ({} images), loss {:.4}", r.accuracy, r.n, r.loss);
        if let Some(s) = out.get("attack_success_rate") {
            print!(
                ", attack success {:.4} (non-target {:.4})",
                s.as_f64().unwrap_or(0.0),
                out["attack_success_rate_nontarget"].as_f64().unwrap_or(0.0)
            );
        }
        println!();
    }
    Ok(())
}
