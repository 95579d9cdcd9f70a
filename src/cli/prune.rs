//! `quarantine prune`: a pruning path (IMP, OMP or random) saved as tickets for `quarantine score`.
//! Writes `DIR/prune.json` (everything `score` needs: data, attack, normalization, method, seed).
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use tch::Device;

pub use crate::prune::PruneRecord;

use super::attack_args::AttackArgs;
use super::common::ModelArgs;
use crate::data::{data_hash, DataSpec, Normalization};
use crate::model::{load_checkpoint, Arch, CheckpointInfo, Model, ModelMeta, Versions};
use crate::prune::{one_shot_path, run_imp, Criterion, ImpConfig, Masks, Method, Rewind, Scope};
use crate::train::{TrainConfig, TrainData};
use crate::util::{prepare_out_dir, write_json};

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Trained model to prune (OMP/random). IMP trains its own dense model from --arch.
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[arg(long, value_parser = super::common::choice::<Arch>())]
    pub arch: Option<Arch>,
    #[arg(long)]
    pub image_size: Option<usize>,
    #[arg(long)]
    pub normalize: Option<String>,
    /// The (possibly poisoned) training data: IMP trains on it, `score` finetunes and scores on it.
    #[arg(long, default_value = "builtin")]
    pub data: DataSpec,
    /// Output run folder.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_parser = super::common::choice::<Method>(), default_value = "omp")]
    pub method: Method,
    /// Fraction of the alive weights removed per step.
    #[arg(long, default_value_t = 0.2)]
    pub rate: f64,
    /// Number of pruning steps / tickets (density 0.8^s, s = 1..steps).
    #[arg(long, alias = "rounds", default_value_t = 15)]
    pub steps: usize,
    #[arg(long, value_parser = super::common::choice::<Scope>(), default_value = "global")]
    pub scope: Scope,
    /// IMP: rewind to the state after this many dense epochs (the reference: 3).
    #[arg(long, default_value_t = 3)]
    pub rewind_epoch: usize,
    /// IMP: rewind to `epoch` (--rewind-epoch), `init`, or `none` (finetune).
    #[arg(long, default_value = "epoch", value_parser = ["epoch", "init", "none"])]
    pub rewind: String,
    /// IMP: epochs of the dense run.
    #[arg(long, default_value_t = 12)]
    pub epochs: usize,
    /// IMP: epochs per pruned round (default: from the rewind epoch to the end).
    #[arg(long)]
    pub epochs_per_round: Option<usize>,
    #[arg(long, default_value_t = 0.1)]
    pub lr: f64,
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub resume: bool,
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub attack: AttackArgs,
}

pub fn run(a: PruneArgs, device: Device, json: bool) -> anyhow::Result<()> {
    let split = a.data.load().with_context(|| format!("loading {}", a.data))?;
    prepare_out_dir(&a.out, "prune.json", a.resume, a.force)?;
    if a.force && !a.resume {
        clear_run(&a.out)?;
    }
    let attack_cfg = a.attack.config(a.seed);
    let surrogate = a.attack.surrogate(device)?;
    let train = match &attack_cfg {
        Some(cfg) => super::attack_args::poison_and_record(cfg.clone(), &split.train, surrogate.as_ref(), &a.out.clone())?.0,
        None => split.train.clone(),
    };
    let augment = super::train::augment_of(&a.data, None, false, false);
    let (model, info) = match (a.method, &a.model) {
        (Method::Imp, Some(_)) => anyhow::bail!("--method imp trains its own dense model (it needs the rewind point): drop --model and give --arch"),
        (Method::Imp, None) => {
            let arch = a.arch.context("--method imp needs --arch")?;
            let norm = match &a.normalize {
                Some(n) => Normalization::parse(n, train.channels)?,
                None => a.data.default_normalization(train.channels).for_channels(train.channels)?,
            };
            let meta = ModelMeta { arch, in_channels: train.channels, height: train.height, width: train.width, num_classes: train.num_classes() };
            tch::manual_seed(a.seed as i64);
            let info = CheckpointInfo {
                meta: meta.clone(),
                classes: train.classes.clone(),
                normalization: norm,
                seed: Some(a.seed),
                versions: Versions::default(),
                data: Some(serde_json::json!({"spec": a.data.to_string(), "train_sha256": data_hash(&train)})),
                config: Some(serde_json::json!({"command": "prune", "attack": attack_cfg})),
                metrics: None,
                batches_tracked: 0,
                imported_from: None,
            };
            (Model::new(meta, device)?, info)
        }
        (_, None) => anyhow::bail!("--method {:?} prunes a trained model: give --model CKPT", a.method),
        (_, Some(p)) => {
            let ma = ModelArgs { model: p.clone(), arch: a.arch, image_size: a.image_size, channels: None, classes: None, normalize: a.normalize.clone() };
            let (m, info, _) = load_checkpoint(p, &ma.overrides(), device)?;
            (m, info)
        }
    };
    let dir = a.out.clone();
    let mut imp_cfg = None;
    let densities = match a.method {
        Method::Imp => {
            let mut train_cfg = TrainConfig::reference(a.epochs, a.seed, augment);
            train_cfg.lr = a.lr;
            train_cfg.batch_size = a.batch_size;
            let rewind = match a.rewind.as_str() {
                "init" => Rewind::Init,
                "none" => Rewind::None,
                _ => Rewind::Epoch(a.rewind_epoch),
            };
            let cfg = ImpConfig { train: train_cfg, steps: a.steps, rate: a.rate, scope: a.scope, rewind, epochs_per_round: a.epochs_per_round, random: false };
            imp_cfg = Some(cfg.clone());
            let data = TrainData { train: &train, test: split.test.as_ref(), norm: &info.normalization };
            run_imp(&dir, &model, &data, &cfg, &info, a.resume)?
        }
        Method::Omp | Method::Random => {
            let crit = if a.method == Method::Random { Criterion::Random(a.seed) } else { Criterion::Magnitude };
            one_shot_path(&dir, &model, &info, a.steps, a.rate, a.scope, crit, Masks::dense(&model))?
        }
    };
    let record = PruneRecord {
        method: a.method,
        steps: a.steps,
        rate: a.rate,
        scope: a.scope,
        data: a.data.clone(),
        normalization: info.normalization.clone(),
        augment,
        attack: attack_cfg,
        seed: a.seed,
        source_model: a.model.clone(),
        imp: imp_cfg,
        densities: densities.iter().map(|d| d.total).collect(),
        versions: Versions::default(),
        data_sha256: data_hash(&train),
    };
    write_json(&dir.join("prune.json"), &record)?;
    if json {
        println!("{}", serde_json::to_string(&record)?);
    } else {
        eprintln!("{} tickets in {} (densities {:.4} .. {:.4}); next: quarantine score --run {}", densities.len(), dir.join("tickets").display(), record.densities.first().unwrap_or(&1.0), record.densities.last().unwrap_or(&1.0), dir.display());
    }
    Ok(())
}

/// `--force`: removes what an earlier pruning run left (tickets, rounds, scores), nothing else.
fn clear_run(dir: &std::path::Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = entry?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let ours = name == "tickets" || name == "score" || name.starts_with("round-") || name == "rewind.safetensors" || name.starts_with("winning-ticket") || name.starts_with("dynamics.");
        if ours {
            if p.is_dir() {
                std::fs::remove_dir_all(&p)?;
            } else {
                std::fs::remove_file(&p)?;
            }
        }
    }
    Ok(())
}
