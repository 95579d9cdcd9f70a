//! `quarantine detect`: the auditor's one command (the pipeline is [`quarantine::detect`]). Parses
//! the flags into a [`DetectConfig`], loads the model (and data), runs the detection, writes its
//! files (`quarantine::report::write_detection`) and prints the verdict.
//!
//! Output: `DIR/detect.json`, `DIR/dynamics.{json,png,svg}`, `DIR/path/` (tickets and per-step
//! scores, resumable), `DIR/winning-ticket.*`, `DIR/reverse-dense/`, `DIR/reverse-ticket/`,
//! `DIR/report.html`. Exit code 0 whether or not the model is flagged.
use std::path::PathBuf;
use std::sync::LazyLock;

use anyhow::Context;
use clap::Args;
use tch::Device;

use super::ModelArgs;
use quarantine::data::DataSpec;
use quarantine::detect::{AuditData, CalibratedRule, DecisionRule, DetectConfig, FreeScoreData, ModelRef, Suspect};
use quarantine::prune::Method;
use quarantine::report::write_detection;
use quarantine::reverse::{AnomalyScale, SeedSpec};
use quarantine::score::path::PathSearch;
use quarantine::score::ScoreKind;
use quarantine::util::prepare_out_dir;

/// The library's defaults, which clap shows and uses.
static DEFAULTS: LazyLock<DetectConfig> = LazyLock::new(DetectConfig::default);

#[derive(Debug, Args)]
pub struct DetectArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Data to score on (its training split); without it the whole pipeline is data-free.
    #[arg(long)]
    pub data: Option<DataSpec>,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub settings: DetectSettingsArgs,
    /// Continue an interrupted detection in --out.
    #[arg(long)]
    pub resume: bool,
    /// Replace a finished detection in --out.
    #[arg(long)]
    pub force: bool,
    /// Decide on clean reference models of the same architecture and data (a file from `quarantine
    /// calibrate`, e.g. configs/calibrations/builtin-tune.json); the verdict is then the calibrated
    /// rule's (--calibrated-rule), and detect.json keeps the uncalibrated decision beside it.
    #[arg(long)]
    pub calibration: Option<PathBuf>,
    /// Which calibrated rule gives the verdict with --calibration (both are recorded). Default: size
    /// (third held-back zoo, data-free: ROC-AUC 0.964, FPR 0/13; calibrated consensus 0.646, README).
    #[arg(long, value_parser = super::common::choice::<CalibratedRule>(), default_value = "size", requires = "calibration")]
    pub calibrated_rule: CalibratedRule,
}

/// How a model is examined (every `detect` flag but the model, data and output; `scan` takes them too).
#[derive(Debug, Args)]
pub struct DetectSettingsArgs {
    /// Pruning path: omp (one-shot magnitude) or random (control).
    #[arg(long, value_parser = super::common::choice::<Method>(), default_value_t = DEFAULTS.method)]
    pub method: Method,
    /// Pruning steps (densities 0.8^s).
    #[arg(long, default_value_t = DEFAULTS.steps)]
    pub steps: usize,
    /// First pruning step to score (earlier, denser tickets are cut but not scored; saves time when
    /// the winning ticket is known to lie at high sparsity).
    #[arg(long, default_value_t = DEFAULTS.score_from)]
    pub score_from: usize,
    /// Finetuning steps of the score.
    #[arg(long, default_value_t = DEFAULTS.k)]
    pub k: usize,
    /// Number of score samples (fixed, seeded).
    #[arg(long, default_value_t = DEFAULTS.score_samples)]
    pub score_samples: usize,
    /// Which score picks the winning ticket.
    #[arg(long, value_parser = super::common::choice::<ScoreKind>(), default_value_t = DEFAULTS.select)]
    pub select: ScoreKind,
    /// Data-free score data (without --data), labelled by the dense model: synth (the images
    /// synthesized for the seeds, or min(100, --score-samples) made for the score when the seeds
    /// are not synth:N) or noise (N(0,1) images). README compares the two.
    #[arg(long, value_parser = super::common::choice::<FreeScoreData>(), default_value_t = DEFAULTS.free_score_data)]
    pub free_score_data: FreeScoreData,
    /// Keep the dense model's BN running statistics in every ticket (default: recalibrated on the
    /// score samples, except on noise, whose statistics describe no image).
    #[arg(long)]
    pub no_bn_recalibrate: bool,
    /// Reverse-engineering seeds: synth:N (default; data-free, N images inverted from the model's
    /// batch-norm statistics), noise:N (the paper's data-free seeds) or data:SPEC:N. README
    /// compares them.
    /// [default: synth:100, synth:100:200 with --quick or --fast]
    #[arg(long)]
    pub seeds: Option<SeedSpec>,
    /// Reverse-engineering epochs (the reference: 100) [default: 100, 40 with --quick]
    #[arg(long)]
    pub reverse_epochs: Option<usize>,
    /// Reverse engineering: epochs in a row before the costs change (the reference: 5) [default:
    /// 5, 3 with --quick]
    #[arg(long)]
    pub cost_patience: Option<usize>,
    /// Reverse engineering: Adam learning rate on the trigger variables (the reference: 0.1)
    /// [default: 0.1, 0.3 with --quick]
    #[arg(long)]
    pub reverse_lr: Option<f64>,
    /// Reverse engineering: seeds per Adam step, so an epoch over the seeds takes several steps
    /// (the reference: all seeds in one step) [default: all]
    #[arg(long)]
    pub reverse_batch: Option<usize>,
    /// Reverse engineering: each epoch is one Adam step on this many seeds drawn at random, or on
    /// `all` of them (the reference) [default: 20; all with --exhaustive or --quick]
    #[arg(long, conflicts_with = "reverse_batch")]
    pub reverse_sample: Option<SeedSample>,
    #[command(flatten)]
    pub early_stop: super::common::EarlyStopArgs,
    /// Which pruning steps are scored: coarse (a grid of every STRIDE-th step, then every step
    /// around its peak) or sweep (every step: the full dynamics plot).
    #[arg(long, value_parser = super::common::choice::<PathSearch>(), default_value_t = DEFAULTS.search)]
    pub search: PathSearch,
    /// Grid stride of the coarse path search.
    #[arg(long, default_value_t = DEFAULTS.stride)]
    pub stride: usize,
    /// The previous defaults: every pruning step scored (--search sweep), every seed at every
    /// reverse-engineering step (--reverse-sample all), no early stop.
    #[arg(long, conflicts_with = "fast")]
    pub exhaustive: bool,
    /// About 2x faster, verdicts not guaranteed the same: --early-stop and seeds synthesized in
    /// 200 steps (synth:N:200). It changed 2 of 11 verdicts on the README's models, one a false alarm.
    #[arg(long, conflicts_with = "exhaustive")]
    pub fast: bool,
    /// Reverse engineering 40 epochs at lr 0.3, cost patience 3, every seed at every step (the
    /// reference: 100, 0.1, 5) and seeds synthesized in 200 steps: 1.75x faster than the
    /// reference schedule with one new false alarm in nine zoo models, where the default's sampled
    /// steps are as fast with none (README "Faster detect").
    #[arg(long, conflicts_with_all = ["exhaustive", "fast"])]
    pub quick: bool,
    /// Skip the warp inversion of the dense model (which label a sub-pixel smooth warp of the
    /// seeds reaches: the target of a warping trigger such as WaNet's; README "Populations").
    #[arg(long)]
    pub no_warp: bool,
    /// Warp inversion: the largest mean control offset, in WaNet's strength units [default: 0.5]
    #[arg(long)]
    pub warp_budget: Option<f64>,
    /// Warp inversion: Adam steps [default: 100]
    #[arg(long)]
    pub warp_steps: Option<usize>,
    /// Anomaly index above which the model is flagged.
    #[arg(long, default_value_t = DEFAULTS.threshold)]
    pub threshold: f64,
    /// Scale of the anomaly index: log (ln of the mask l1, default) or linear (Neural Cleanse's).
    #[arg(long, value_parser = super::common::choice::<AnomalyScale>(), default_value_t = DEFAULTS.anomaly_scale)]
    pub anomaly_scale: AnomalyScale,
    /// Decision: consensus (dense and ticket name the same label, pooled anomaly index; default),
    /// ticket (the paper: the ticket's own verdict) or dense (Neural Cleanse on the given model).
    #[arg(long, value_parser = super::common::choice::<DecisionRule>(), default_value_t = DEFAULTS.decide)]
    pub decide: DecisionRule,
    /// One seed for everything random.
    #[arg(long, default_value_t = DEFAULTS.seed)]
    pub seed: u64,
}

/// `--reverse-sample`: a number of seeds, or `all` (`None`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeedSample(pub Option<usize>);

impl std::str::FromStr for SeedSample {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(SeedSample(None)),
            n => match n.parse::<usize>() {
                Ok(n) if n > 0 => Ok(SeedSample(Some(n))),
                _ => Err(format!("expected a number of seeds (1 or more) or `all`, got `{s}`")),
            },
        }
    }
}

impl TryFrom<&DetectSettingsArgs> for DetectConfig {
    type Error = anyhow::Error;
    fn try_from(a: &DetectSettingsArgs) -> anyhow::Result<Self> {
        let cfg = DetectConfig {
            method: a.method,
            steps: a.steps,
            score_from: a.score_from,
            k: a.k,
            score_samples: a.score_samples,
            select: a.select,
            free_score_data: a.free_score_data,
            bn_recalibrate: !a.no_bn_recalibrate,
            early_stop: a.early_stop.early_stop(),
            search: a.search,
            stride: a.stride,
            threshold: a.threshold,
            anomaly_scale: a.anomaly_scale,
            decide: a.decide,
            seed: a.seed,
            ..DetectConfig::default()
        };
        // The profile first, then what was given explicitly.
        let mut cfg = match (a.exhaustive, a.fast, a.quick) {
            (true, _, _) => cfg.exhaustive(),
            (_, true, _) => cfg.fast(),
            (_, _, true) => cfg.quick(),
            _ => cfg,
        };
        if let Some(seeds) = &a.seeds {
            cfg.seeds = seeds.clone();
        }
        if let Some(epochs) = a.reverse_epochs {
            cfg.reverse_epochs = epochs;
        }
        if let Some(lr) = a.reverse_lr {
            cfg.reverse_lr = lr;
        }
        if let Some(patience) = a.cost_patience {
            cfg.cost_patience = patience;
        }
        if a.reverse_batch.is_some() {
            (cfg.reverse_batch, cfg.reverse_sample) = (a.reverse_batch, None);
        }
        if let Some(sample) = a.reverse_sample {
            (cfg.reverse_sample, cfg.reverse_batch) = (sample.0, None);
        }
        if let Some(w) = cfg.warp.as_mut() {
            w.budget = a.warp_budget.unwrap_or(w.budget);
            w.steps = a.warp_steps.unwrap_or(w.steps);
        }
        if a.no_warp {
            cfg.warp = None;
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

pub fn run(a: DetectArgs, device: Device, json: bool) -> anyhow::Result<()> {
    let cfg = DetectConfig::try_from(&a.settings)?;
    let calibration = a.calibration.as_deref().map(quarantine::detect::Calibration::load).transpose()?;
    let suspect = Suspect::load(&a.model.model, &a.model.overrides(), device)?;
    quarantine::reverse::retain_freed_memory();
    prepare_out_dir(&a.out, "detect.json", a.resume, a.force)?;
    let data = match &a.data {
        Some(spec) => Some(AuditData::load(spec).with_context(|| format!("loading {spec}"))?),
        None => None,
    };
    let found = quarantine::detect::run(&suspect, data.as_ref(), &cfg, &a.out, a.resume, &super::common::control())?;
    let model = ModelRef {
        path: a.model.model.clone(),
        meta: suspect.info.meta.clone(),
        imported_from: suspect.info.imported_from.clone(),
    };
    let mut record = found.record(&cfg, model, cfg.command_line(&a.model.model, &a.out, a.data.as_ref()));
    if let (Some(cal), Some(path)) = (&calibration, &a.calibration) {
        record
            .calibrate(cal, &a.model.model.display().to_string(), a.calibrated_rule)
            .map_err(|e| anyhow::anyhow!("calibrating with {}: {e}", path.display()))?;
        record.command += &format!(" --calibration {} --calibrated-rule {}", path.display(), a.calibrated_rule);
    }
    let report = write_detection(&a.out, &found, &record)?;
    if json {
        println!("{}", serde_json::to_string(&record)?);
    }
    eprintln!("{}", record.calibrated_verdict_line().unwrap_or_else(|| found.verdict_line(&cfg)));
    if let Some(w) = &record.warp {
        eprintln!("{}", quarantine::detect::warp_line(w));
    }
    eprintln!("detect: report {}", report.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(argv: &[&str]) -> anyhow::Result<DetectConfig> {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        DetectConfig::try_from(&super::super::experiment::parse::<DetectSettingsArgs>(&argv)?)
    }

    /// No flag gives the library's defaults; a profile sets its schedule and explicit flags win
    /// over it; profiles exclude each other.
    #[test]
    fn profiles_then_explicit_flags() {
        assert_eq!(config(&[]).unwrap(), DetectConfig::default());
        assert_eq!(config(&["--quick"]).unwrap(), DetectConfig::default().quick());
        let c = config(&["--quick", "--reverse-epochs", "60", "--seeds", "synth:50"]).unwrap();
        assert_eq!((c.reverse_epochs, c.reverse_lr, c.cost_patience), (60, 0.3, 3));
        assert_eq!(c.seeds, SeedSpec::Synth(50, quarantine::reverse::SYNTH_STEPS));
        let c = config(&["--exhaustive", "--reverse-lr", "0.2", "--cost-patience", "4"]).unwrap();
        assert_eq!((c.search, c.reverse_lr, c.cost_patience), (PathSearch::Sweep, 0.2, 4));
        let c = config(&["--reverse-batch", "20", "--reverse-epochs", "20", "--cost-patience", "1"]).unwrap();
        assert_eq!((c.reverse_batch, c.reverse_epochs, c.cost_patience), (Some(20), 20, 1));
        assert!(config(&["--reverse-batch", "0"]).is_err());
        // Sampling is the default; an explicit batch or `all` turns it off, --exhaustive too.
        assert_eq!(config(&[]).unwrap().reverse_sample, Some(20));
        assert_eq!((c.reverse_sample, config(&["--reverse-sample", "all"]).unwrap().reverse_sample), (None, None));
        assert_eq!(config(&["--exhaustive"]).unwrap().reverse_sample, None);
        assert_eq!(config(&["--exhaustive", "--reverse-sample", "30"]).unwrap().reverse_sample, Some(30));
        assert!(config(&["--reverse-sample", "0"]).is_err() && config(&["--reverse-sample", "some"]).is_err());
        assert!(config(&["--reverse-sample", "20", "--reverse-batch", "20"]).is_err());
        assert!(config(&["--quick", "--fast"]).is_err());
        assert!(config(&["--quick", "--exhaustive"]).is_err());
        assert!(config(&["--cost-patience", "0"]).is_err());
        // The warp inversion runs by default; its flags set it, --no-warp drops it.
        let w = config(&["--warp-budget", "0.75", "--warp-steps", "40"]).unwrap().warp.unwrap();
        assert_eq!((w.budget, w.steps, w.k), (0.75, 40, 4));
        assert_eq!(config(&["--no-warp"]).unwrap().warp, None);
        assert!(config(&["--warp-budget", "0"]).is_err());
    }
}
