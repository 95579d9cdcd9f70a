//! One reverse-engineering examination of a model, as `quarantine reverse` and `detect` run it:
//! every candidate label's trigger from the same seeds, the verdict over the labels, and, when
//! clean test images or the true trigger are known, each recovered trigger's attack success and
//! overlap with the truth (docs/METHOD.md §6-7). The result is a value; the files are written by
//! `crate::report::write_reverse`.
use std::path::Path;
use std::time::Instant;

use super::{
    binarize_top_k, iou, recovered_asr, reverse_engineer_with, verdict, AnomalyScale, LabelResult, ReverseConfig,
    ReverseReport, SeedSpec, Seeds, TrueTrigger, Verdict,
};
use super::{load_seeds, SynthSummary};
use crate::control::Control;
use crate::data::{DataSpec, ImageSet, Normalization};
use crate::error::Result;
use crate::model::{CheckpointInfo, Model, Versions};

/// What to reverse-engineer and how to judge it. `Default` is `quarantine reverse`'s defaults.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReverseJob {
    /// The optimisation.
    pub config: ReverseConfig,
    /// Seed images the triggers are optimised on.
    pub seeds: SeedSpec,
    /// Candidate target labels (empty: all).
    pub labels: Vec<u32>,
    /// Anomaly index above which the model is flagged.
    pub threshold: f64,
    /// Scale of the anomaly index.
    pub anomaly_scale: AnomalyScale,
    /// Pixels kept when binarising a mask (recovered-trigger attack success, IoU): the paper's 5x5.
    pub patch_area: usize,
    /// The true trigger, for the IoU of each binarised mask (experimenters only).
    pub true_trigger: Option<TrueTrigger>,
}

impl Default for ReverseJob {
    fn default() -> Self {
        ReverseJob {
            config: ReverseConfig::default(),
            seeds: SeedSpec::Noise(100),
            labels: vec![],
            threshold: 2.0,
            anomaly_scale: AnomalyScale::Log,
            patch_area: 25,
            true_trigger: None,
        }
    }
}

/// The outcome of one examination.
#[derive(Debug, Clone)]
pub struct Examination {
    /// Every candidate label's trigger, in the order of the labels run.
    pub results: Vec<LabelResult>,
    /// The verdict over the labels.
    pub verdict: Verdict,
    /// The `reverse.json` record (config, model and versions left for the caller to fill in).
    pub report: ReverseReport,
}

/// Reverse-engineers `model` (inputs normalized with `norm`) from `seeds` as `job` says; with a
/// clean `test` set, every label's recovered trigger (binarised to `job.patch_area` pixels) is
/// stamped on it for the recovered-trigger attack success.
pub fn examine(
    model: &Model,
    norm: &Normalization,
    seeds: &Seeds,
    job: &ReverseJob,
    test: Option<&ImageSet>,
    ctl: &Control,
) -> Result<Examination> {
    let m = &model.meta;
    let true_mask = job.true_trigger.as_ref().map(|t| t.mask(m.height, m.width)).transpose()?;
    if let Some(t) = test {
        model.meta.check_images((t.channels, t.height, t.width), "test images")?;
    }
    let t0 = Instant::now();
    let results = reverse_engineer_with(model, norm, seeds, &job.config, &job.labels, ctl)?;
    let seconds = t0.elapsed().as_secs_f64();
    let verdict = verdict(&results, job.threshold, job.anomaly_scale);
    let space = job.config.space;
    let recovered: Option<Vec<f64>> = test.map(|t| {
        results
            .iter()
            .map(|r| recovered_asr(model, norm, space, t, r.label, &r.mask, &r.pattern, job.patch_area))
            .collect()
    });
    let ious: Option<Vec<f64>> = true_mask
        .as_ref()
        .map(|tm| results.iter().map(|r| iou(&binarize_top_k(&r.mask, job.patch_area), tm)).collect());
    let mut report = ReverseReport::new(&results, &verdict, recovered.as_deref(), ious.as_deref());
    report.seed = job.config.seed;
    report.seconds = seconds;
    Ok(Examination { results, verdict, report })
}

/// Clean test images the recovered triggers are measured on, and where they came from.
#[derive(Debug, Clone)]
pub struct TestImages {
    /// The data spec.
    pub spec: DataSpec,
    /// Its test split.
    pub images: ImageSet,
}

impl TestImages {
    /// Loads the test split of `spec` (a plain image folder: all of it), checked against `model`'s input.
    pub fn load(spec: &DataSpec, model: &Model) -> Result<Self> {
        let images = spec.evaluation_set(spec.load()?)?;
        model.meta.check_images((images.channels, images.height, images.width), "test images")?;
        Ok(TestImages { spec: spec.clone(), images })
    }
}

/// A whole reverse-engineering run on one checkpoint, with its record filled in.
#[derive(Debug, Clone)]
pub struct ReverseRun {
    /// The examination (its report is the run's `reverse.json`).
    pub exam: Examination,
    /// Synthesized seed images and how their inversion went (synthesized seeds only).
    pub synthesized: Option<(ImageSet, SynthSummary)>,
}

/// Reverse-engineers the checkpoint `path` (loaded as `model` with sidecar `info`) as `job` says:
/// loads the seeds, examines, and fills the record's config, model and versions.
pub fn run(
    path: &Path,
    model: &Model,
    info: &CheckpointInfo,
    job: &ReverseJob,
    test: Option<&TestImages>,
    ctl: &Control,
) -> Result<ReverseRun> {
    let norm = &info.normalization;
    let m = &model.meta;
    if let Some(t) = &job.true_trigger {
        t.mask(m.height, m.width)?;
    }
    // `reverse` keeps no state to resume from, so its seed synthesis is not stopped halfway.
    let (seeds, synth) = load_seeds(&job.seeds, model, norm, job.config.seed, &ctl.uncancellable(), path)?;
    let synthesized = match (&seeds, &synth) {
        (Seeds::Images { images, .. }, Some(s)) => Some((images.clone(), s.clone())),
        _ => None,
    };
    let mut exam = examine(model, norm, &seeds, job, test.map(|t| &t.images), ctl)?;
    exam.report.config = serde_json::json!({
        "command": "reverse",
        "reverse": job.config,
        "seeds": job.seeds,
        "synthesized_seeds": synth,
        "labels": exam.results.iter().map(|r| r.label).collect::<Vec<_>>(),
        "test_data": test.map(|t| &t.spec),
        "patch_area": job.patch_area,
        "true_trigger": job.true_trigger.as_ref().map(|t| t.to_string()),
        "space": job.config.space,
        "normalization": norm,
        "device": format!("{:?}", model.device()),
        "threads": tch::get_num_threads(),
    });
    exam.report.versions = Versions::default();
    exam.report.model = serde_json::json!({"path": path, "meta": info.meta, "imported_from": info.imported_from});
    Ok(ReverseRun { exam, synthesized })
}

/// Makes `out` ready for a reverse-engineering run: refuses to replace a finished run
/// (`reverse.json`) unless `force`.
pub fn prepare_out(out: &Path, force: bool) -> Result<()> {
    crate::util::prepare_out_dir(out, "reverse.json", false, force)
}
