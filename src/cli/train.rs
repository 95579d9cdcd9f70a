//! `quarantine train`: train a model and write `DIR/model.safetensors` + sidecar, `DIR/metrics.jsonl`,
//! `DIR/config.json`; per-epoch atomic training state for `--resume`.
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use tch::Device;

use super::attack_args::{poison_and_record, AttackArgs};
use crate::attack::attack_success;
use crate::data::{data_hash, Augment, DataSpec, Normalization};
use crate::model::{save_checkpoint, Arch, CheckpointInfo, Model, ModelMeta, Versions};
use crate::train::{fit, FitOptions, RunFiles, TrainConfig, TrainData};
use crate::util::{prepare_out_dir, write_json};

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Data set: builtin, cifar10:DIR, cifar100:DIR, mnist:DIR, fashion-mnist:DIR, folder:DIR.
    #[arg(long, default_value = "builtin")]
    pub data: DataSpec,
    #[arg(long, value_parser = super::common::choice::<Arch>(), default_value = "cnn")]
    pub arch: Arch,
    #[arg(long, default_value_t = 15)]
    pub epochs: usize,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0.1)]
    pub lr: f64,
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    #[arg(long, default_value_t = 5e-4)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Epochs where the learning rate drops by --gamma, comma-separated (default: 50% and 75%).
    #[arg(long, value_delimiter = ',')]
    pub milestones: Option<Vec<usize>>,
    #[arg(long, default_value_t = 0.1)]
    pub gamma: f64,
    /// One seed for everything: weights, shuffling, augmentation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Input normalization (default: the data set's constants).
    #[arg(long)]
    pub normalize: Option<String>,
    /// Random-crop padding, 0 = off (default: 4 for CIFAR and folders, 0 for 28x28 gray sets).
    #[arg(long)]
    pub crop_pad: Option<usize>,
    /// Random horizontal flips on (default: on for CIFAR and folders, off for 28x28 gray sets).
    #[arg(long, conflicts_with = "no_flip")]
    pub flip: bool,
    /// Random horizontal flips off.
    #[arg(long)]
    pub no_flip: bool,
    /// Continue an interrupted run in --out.
    #[arg(long)]
    pub resume: bool,
    /// Overwrite a finished run in --out.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub attack: AttackArgs,
}

pub fn run(a: TrainArgs, device: Device, json: bool) -> anyhow::Result<()> {
    let split = a.data.load().with_context(|| format!("loading {}", a.data))?;
    let test = split.test.as_ref();
    prepare_out_dir(&a.out, "model.safetensors", a.resume, a.force)?;
    let attack_cfg = a.attack.config(a.seed);
    let surrogate = a.attack.surrogate(device)?;
    let poisoned = match &attack_cfg {
        Some(cfg) => Some(poison_and_record(cfg.clone(), &split.train, surrogate.as_ref(), &a.out)?),
        None => None,
    };
    let train = poisoned.as_ref().map(|p| &p.0).unwrap_or(&split.train);
    let norm = match &a.normalize {
        Some(n) => Normalization::parse(n, train.channels)?,
        None => a.data.default_normalization(train.channels).for_channels(train.channels)?,
    };
    norm.validate()?;
    let augment = augment_of(&a.data, a.crop_pad, a.flip, a.no_flip);
    let cfg = TrainConfig {
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        momentum: a.momentum,
        weight_decay: a.weight_decay,
        milestones: a.milestones.clone().unwrap_or_else(|| vec![a.epochs / 2, a.epochs * 3 / 4]),
        gamma: a.gamma,
        seed: a.seed,
        augment,
    };
    cfg.validate()?;
    let run = RunFiles { dir: a.out.clone() };
    if !a.resume {
        for p in [run.metrics(), run.state(), run.state_json()] {
            let _ = std::fs::remove_file(p);
        }
    }
    let meta = ModelMeta { arch: a.arch, in_channels: train.channels, height: train.height, width: train.width, num_classes: train.num_classes() };
    tch::manual_seed(a.seed as i64);
    let model = Model::new(meta.clone(), device)?;
    let data_info = serde_json::json!({
        "spec": a.data.to_string(),
        "train": {"n": split.train.n, "sha256": data_hash(&split.train), "poisoned_sha256": poisoned.as_ref().map(|p| data_hash(&p.0))},
        "test": test.map(|t| serde_json::json!({"n": t.n, "sha256": data_hash(t)})),
    });
    let config = serde_json::json!({ "command": "train", "arch": a.arch, "train": cfg, "attack": attack_cfg, "normalization": norm, "device": format!("{device:?}"), "threads": tch::get_num_threads() });
    write_json(&a.out.join("config.json"), &serde_json::json!({"config": config, "data": data_info, "seed": a.seed, "versions": Versions::default()}))?;
    let history = fit(&model, &TrainData { train, test, norm: &norm }, &cfg, FitOptions { run: Some(&run), resume: a.resume, ..Default::default() }, |_, _| Ok(()))?;
    let last = history.last().cloned();
    let asr = match (&poisoned, test) {
        (Some((_, attack, _)), Some(t)) => Some(attack_success(&model, t, attack, &norm)),
        _ => None,
    };
    let steps = (cfg.epochs * train.n.div_ceil(cfg.batch_size)) as i64;
    let info = CheckpointInfo {
        meta,
        classes: train.classes.clone(),
        normalization: norm,
        seed: Some(a.seed),
        versions: Versions::default(),
        data: Some(data_info),
        config: Some(config),
        metrics: last.as_ref().map(|m| serde_json::json!({"clean_accuracy": m.test_accuracy, "train_accuracy": m.train_accuracy, "epochs": m.epoch, "attack": asr})),
        batches_tracked: steps,
        imported_from: None,
    };
    let path = a.out.join("model.safetensors");
    save_checkpoint(&path, &model, &info)?;
    let mut result = serde_json::json!({"model": path, "clean_accuracy": last.as_ref().and_then(|m| m.test_accuracy), "epochs": cfg.epochs});
    if let Some(s) = &asr {
        result["attack_success_rate"] = s.attack_success_rate.into();
        result["attack_success_rate_nontarget"] = s.attack_success_rate_nontarget.into();
    }
    write_json(&a.out.join("result.json"), &result)?;
    if json {
        println!("{result}");
    } else {
        let acc = last.and_then(|m| m.test_accuracy).map(|a| format!("{a:.4}")).unwrap_or("n/a".into());
        let asr = asr.map(|s| format!(", attack success {:.4} (non-target {:.4})", s.attack_success_rate, s.attack_success_rate_nontarget)).unwrap_or_default();
        eprintln!("saved {} (test accuracy {acc}{asr})", path.display());
    }
    Ok(())
}

/// The augmentation from `--crop-pad/--flip/--no-flip` over the data set's default.
pub fn augment_of(data: &DataSpec, crop_pad: Option<usize>, flip: bool, no_flip: bool) -> Augment {
    let d = data.default_augment();
    Augment { crop_pad: crop_pad.unwrap_or(d.crop_pad), flip: if flip { data.flip_ok() } else if no_flip { false } else { d.flip } }
}
