//! `quarantine reverse`: Neural-Cleanse/TABOR trigger reverse engineering for every candidate label
//! (SPEC §6, `crate::reverse`), batched over labels; writes DIR/reverse.json, per-label pictures,
//! DIR/triggers.safetensors, DIR/history.jsonl and the l1 bar chart, and prints a one-line verdict.
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use tch::Device;

use super::ModelArgs;
use crate::data::DataSpec;
use crate::model::{load_checkpoint, Versions};
use crate::reverse::{AnomalyScale, binarize_top_k, iou, recovered_asr, reverse_engineer, verdict, write_outputs, LossKind, ReverseConfig, ReverseReport, SeedSpec, Space, TrueTrigger};
use crate::util::prepare_out_dir;

#[derive(Debug, Args)]
pub struct ReverseArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Seed images: noise:N (data-free, N(0,1) noise redrawn every step) or data:SPEC:N (the first N
    /// training images of SPEC, augmented), e.g. data:builtin:100.
    #[arg(long, default_value = "noise:100")]
    pub seeds: SeedSpec,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Candidate target labels, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    pub labels: Option<Vec<u32>>,
    /// Epochs over the seed set (the reference: 100).
    #[arg(long, default_value_t = 100)]
    pub epochs: usize,
    /// Seeds per optimisation step (default: all seeds in one batch, as the reference).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Adam learning rate.
    #[arg(long, default_value_t = 0.1)]
    pub lr: f64,
    /// Classification term: ce (the reference code) or cw (C&W margin, the paper's formula).
    #[arg(long, value_parser = super::common::choice::<LossKind>(), default_value = "ce")]
    pub loss: LossKind,
    /// Stamp in pixel space then normalize (pixel), or in normalized space (normalized, the reference).
    #[arg(long, value_parser = super::common::choice::<Space>(), default_value = "pixel")]
    pub space: Space,
    /// Measure each recovered trigger's attack success on this data set's test split.
    #[arg(long)]
    pub test_data: Option<DataSpec>,
    /// Pixels kept when binarising a mask (recovered ASR, IoU): the paper's 5x5 = 25.
    #[arg(long, default_value_t = 25)]
    pub patch_area: usize,
    /// The true trigger, for the IoU of each binarised mask: X,Y,SIZE (column, row, side) or
    /// LOCATION:SIZE, e.g. reference-upper-right:5.
    #[arg(long)]
    pub true_trigger: Option<TrueTrigger>,
    /// Anomaly index above which the model is flagged as Trojaned.
    #[arg(long, default_value_t = 2.0)]
    pub threshold: f64,
    /// Scale of the anomaly index: log (ln of the mask l1, default) or linear (Neural Cleanse's).
    #[arg(long, value_parser = super::common::choice::<AnomalyScale>(), default_value = "log")]
    pub anomaly_scale: AnomalyScale,
    /// Seed of the trigger initialisation, the noise and the data shuffling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Labels optimised together per batched computation (default: a per-architecture image budget per forward pass, e.g. 256 images of 32x32 for resnet20s).
    #[arg(long)]
    pub label_chunk: Option<usize>,
    /// Optimise the labels one at a time (the reference's loop; for benchmarks).
    #[arg(long, hide = true)]
    pub bench_sequential: bool,
    /// Overwrite an existing DIR/reverse.json.
    #[arg(long)]
    pub force: bool,
}

/// Loads the seeds; synthesized seeds are also written to `OUT/seeds.png` (first 100) and their
/// inversion summary is returned for the report.
pub fn load_seeds(spec: &SeedSpec, model: &crate::model::Model, norm: &crate::data::Normalization, seed: u64, out: &std::path::Path) -> anyhow::Result<(crate::reverse::Seeds, Option<crate::reverse::SynthSummary>)> {
    if matches!(spec, SeedSpec::Synth(_)) {
        eprintln!("seeds: synthesizing {spec} from the model (model inversion)");
    }
    let (seeds, summary) = spec.load(model, norm, seed).with_context(|| format!("loading seeds {spec}"))?;
    if let (crate::reverse::Seeds::Images { images, .. }, Some(s)) = (&seeds, &summary) {
        let n = images.n.min(100);
        let cols = n.min(10);
        crate::report::png::write_grid(&out.join("seeds.png"), &images.subset(&(0..n).collect::<Vec<_>>()), n.div_ceil(cols), cols)?;
        eprintln!("seeds: {} images in {:.1} s, {:.0}% classified as their intended label", images.n, s.seconds, s.accuracy * 100.0);
    }
    Ok((seeds, summary))
}

pub fn run(a: ReverseArgs, device: Device, json: bool) -> anyhow::Result<()> {
    let (model, info, _) = load_checkpoint(&a.model.model, &a.model.overrides(), device)?;
    let m = &model.meta;
    let cfg = ReverseConfig {
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        loss: a.loss,
        space: a.space,
        seed: a.seed,
        label_chunk: if a.bench_sequential { Some(1) } else { a.label_chunk },
        ..Default::default()
    };
    cfg.validate()?;
    let true_mask = a.true_trigger.as_ref().map(|t| t.mask(m.height, m.width)).transpose()?;
    let test = match &a.test_data {
        Some(spec) => {
            let split = spec.load().with_context(|| format!("loading {spec}"))?;
            let t = split.test.with_context(|| format!("{spec} has no test split"))?;
            anyhow::ensure!(
                (t.channels, t.height, t.width) == (m.in_channels, m.height, m.width),
                "{spec}: test images are {}x{}x{} but the model takes {}x{}x{}",
                t.channels, t.height, t.width, m.in_channels, m.height, m.width
            );
            Some(t)
        }
        None => None,
    };
    let marker = a.out.join("reverse.json");
    anyhow::ensure!(a.force || !marker.exists(), "{} already exists; pass --force to overwrite it", marker.display());
    prepare_out_dir(&a.out, "reverse.json", false, true)?;
    let (seeds, synth) = load_seeds(&a.seeds, &model, &info.normalization, a.seed, &a.out)?;
    let labels = a.labels.clone().unwrap_or_default();

    crate::reverse::retain_freed_memory();
    let t0 = Instant::now();
    let results = reverse_engineer(&model, &info.normalization, &seeds, &cfg, &labels)?;
    let seconds = t0.elapsed().as_secs_f64();
    let v = verdict(&results, a.threshold, a.anomaly_scale);
    let recovered: Option<Vec<f64>> = test.as_ref().map(|t| results.iter().map(|r| recovered_asr(&model, &info.normalization, cfg.space, t, r.label, &r.mask, &r.pattern, a.patch_area)).collect());
    let ious: Option<Vec<f64>> = true_mask.as_ref().map(|tm| results.iter().map(|r| iou(&binarize_top_k(&r.mask, a.patch_area), tm)).collect());

    let mut report = ReverseReport::new(&results, &v, recovered.as_deref(), ious.as_deref());
    report.config = serde_json::json!({
        "command": "reverse",
        "reverse": cfg,
        "seeds": a.seeds,
        "synthesized_seeds": synth,
        "labels": results.iter().map(|r| r.label).collect::<Vec<_>>(),
        "test_data": a.test_data,
        "patch_area": a.patch_area,
        "true_trigger": a.true_trigger.as_ref().map(|t| t.to_string()),
        "space": cfg.space,
        "normalization": info.normalization,
        "device": format!("{device:?}"),
        "threads": tch::get_num_threads(),
    });
    report.seed = a.seed;
    report.versions = Versions::default();
    report.model = serde_json::json!({"path": a.model.model, "meta": info.meta, "imported_from": info.imported_from});
    report.seconds = seconds;
    write_outputs(&a.out, &results, &report)?;

    if json {
        println!("{}", serde_json::to_string(&report)?);
    }
    let line = match (v.detected_target, v.anomaly_index) {
        (None, _) => format!("no label reached {:.0}% attack success on the seeds: no trigger found", cfg.success_threshold * 100.0),
        (Some(t), ai) => {
            let r = results.iter().find(|r| r.label == t).expect("detected label is in the results");
            let ai = ai.map(|x| if x.is_finite() { format!("{x:.2}") } else { "inf".into() }).unwrap_or_default();
            let asr = recovered.as_ref().and_then(|v| results.iter().position(|r| r.label == t).map(|i| format!(", recovered-trigger ASR {:.3}", v[i]))).unwrap_or_default();
            let verdict = if v.flagged { "FLAGGED as Trojaned" } else { "not flagged" };
            format!("detected target {t} (mask l1 {:.1}{asr}), anomaly index {ai} vs threshold {}: {verdict}", r.l1, a.threshold)
        }
    };
    eprintln!("{line} [{:.1}s; {}]", seconds, a.out.join("reverse.json").display());
    Ok(())
}
