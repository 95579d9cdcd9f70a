//! `quarantine reverse`: Neural-Cleanse/TABOR trigger reverse engineering for every candidate label
//! (docs/METHOD.md §6, [`quarantine::reverse`]), batched over labels. Parses the flags into a
//! [`ReverseJob`], loads the model and test data, runs `reverse::run`, writes DIR/reverse.json,
//! per-label pictures, DIR/triggers.safetensors, DIR/history.jsonl and the l1 bar chart
//! (`quarantine::report::write_reverse`), and prints a one-line verdict.
use std::path::PathBuf;
use std::sync::LazyLock;

use anyhow::Context;
use clap::Args;
use tch::Device;

use super::ModelArgs;
use quarantine::data::DataSpec;
use quarantine::model::load_checkpoint;
use quarantine::report::write_reverse_run;
use quarantine::reverse::{
    self, AnomalyScale, LossKind, ReverseConfig, ReverseJob, SeedSpec, Space, TestImages, TrueTrigger,
};

/// The library's defaults, which clap shows and uses.
static REVERSE: LazyLock<ReverseJob> = LazyLock::new(ReverseJob::default);

#[derive(Debug, Args)]
pub struct ReverseArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Seed images: noise:N (data-free, N(0,1) noise redrawn every step) or data:SPEC:N (the first N
    /// training images of SPEC, augmented), e.g. data:builtin:100.
    #[arg(long, default_value_t = REVERSE.seeds.clone())]
    pub seeds: SeedSpec,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Candidate target labels, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    pub labels: Option<Vec<u32>>,
    /// Epochs over the seed set (the reference: 100).
    #[arg(long, default_value_t = REVERSE.config.epochs)]
    pub epochs: usize,
    /// Seeds per optimisation step (default: all seeds in one batch, as the reference).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Each epoch is one optimisation step on this many seeds drawn at random (default: every
    /// seed, as the reference).
    #[arg(long, conflicts_with = "batch_size")]
    pub sample: Option<usize>,
    /// Adam learning rate.
    #[arg(long, default_value_t = REVERSE.config.lr)]
    pub lr: f64,
    /// Successful (or failed) epochs in a row before the costs rise (or fall); the reference: 5.
    #[arg(long, default_value_t = REVERSE.config.patience)]
    pub cost_patience: usize,
    /// Classification term: ce (the reference code) or cw (C&W margin, the paper's formula).
    #[arg(long, value_parser = super::common::choice::<LossKind>(), default_value_t = REVERSE.config.loss)]
    pub loss: LossKind,
    /// Stamp in pixel space then normalize (pixel), or in normalized space (normalized, the reference).
    #[arg(long, value_parser = super::common::choice::<Space>(), default_value_t = REVERSE.config.space)]
    pub space: Space,
    /// Measure each recovered trigger's attack success on this data set's test split.
    #[arg(long)]
    pub test_data: Option<DataSpec>,
    /// Pixels kept when binarising a mask (recovered ASR, IoU): the paper's 5x5 = 25.
    #[arg(long, default_value_t = REVERSE.patch_area)]
    pub patch_area: usize,
    /// The true trigger, for the IoU of each binarised mask: X,Y,SIZE (column, row, side) or
    /// LOCATION:SIZE, e.g. reference-upper-right:5.
    #[arg(long)]
    pub true_trigger: Option<TrueTrigger>,
    /// Anomaly index above which the model is flagged as Trojaned.
    #[arg(long, default_value_t = REVERSE.threshold)]
    pub threshold: f64,
    /// Scale of the anomaly index: log (ln of the mask l1, default) or linear (Neural Cleanse's).
    #[arg(long, value_parser = super::common::choice::<AnomalyScale>(), default_value_t = REVERSE.anomaly_scale)]
    pub anomaly_scale: AnomalyScale,
    /// Seed of the trigger initialisation, the noise and the data shuffling.
    #[arg(long, default_value_t = REVERSE.config.seed)]
    pub seed: u64,
    /// Labels optimised together per batched computation (default: the architecture's image budget per forward pass).
    #[arg(long)]
    pub label_chunk: Option<usize>,
    #[command(flatten)]
    pub early_stop: super::common::EarlyStopArgs,
    /// Optimise the labels one at a time (the reference's loop; for benchmarks).
    #[arg(long, hide = true)]
    pub bench_sequential: bool,
    /// Overwrite an existing DIR/reverse.json.
    #[arg(long)]
    pub force: bool,
}

impl TryFrom<&ReverseArgs> for ReverseJob {
    type Error = anyhow::Error;
    fn try_from(a: &ReverseArgs) -> anyhow::Result<Self> {
        let config = ReverseConfig {
            epochs: a.epochs,
            batch_size: a.batch_size,
            sample: a.sample,
            lr: a.lr,
            patience: a.cost_patience,
            loss: a.loss,
            space: a.space,
            seed: a.seed,
            label_chunk: if a.bench_sequential { Some(1) } else { a.label_chunk },
            early_stop: a.early_stop.early_stop(),
            ..Default::default()
        };
        config.validate()?;
        Ok(ReverseJob {
            config,
            seeds: a.seeds.clone(),
            labels: a.labels.clone().unwrap_or_default(),
            threshold: a.threshold,
            anomaly_scale: a.anomaly_scale,
            patch_area: a.patch_area,
            true_trigger: a.true_trigger.clone(),
        })
    }
}

pub fn run(a: ReverseArgs, device: Device, json: bool) -> anyhow::Result<()> {
    let job = ReverseJob::try_from(&a)?;
    let (model, info, _) = load_checkpoint(&a.model.model, &a.model.overrides(), device)?;
    let test = match &a.test_data {
        Some(spec) => Some(TestImages::load(spec, &model).with_context(|| format!("loading {spec}"))?),
        None => None,
    };
    let marker = a.out.join("reverse.json");
    anyhow::ensure!(a.force || !marker.exists(), "{} already exists; pass --force to overwrite it", marker.display());
    reverse::prepare_out(&a.out, a.force)?;
    quarantine::reverse::retain_freed_memory();
    let done = reverse::run(&a.model.model, &model, &info, &job, test.as_ref(), &super::common::control())?;
    write_reverse_run(&a.out, &done)?;
    if json {
        println!("{}", serde_json::to_string(&done.exam.report)?);
    }
    let (v, report) = (&done.exam.verdict, &done.exam.report);
    let line = match (v.detected_target, v.anomaly_index) {
        (None, _) => format!(
            "no label reached {:.0}% attack success on the seeds: no trigger found",
            job.config.success_threshold * 100.0
        ),
        (Some(t), ai) => {
            let l = report.labels.iter().find(|l| l.label == t).expect("detected label is in the results");
            let ai = ai.map(|x| if x.is_finite() { format!("{x:.2}") } else { "inf".into() }).unwrap_or_default();
            let asr = l.recovered_asr.map(|r| format!(", recovered-trigger ASR {r:.3}")).unwrap_or_default();
            let verdict = if v.flagged { "FLAGGED as Trojaned" } else { "not flagged" };
            format!(
                "detected target {t} (mask l1 {:.1}{asr}), anomaly index {ai} vs threshold {}: {verdict}",
                l.l1, job.threshold
            )
        }
    };
    eprintln!("{line} [{:.1}s; {}]", report.seconds, a.out.join("reverse.json").display());
    Ok(())
}
