//! One reverse-engineering examination of a model, as `quarantine reverse` and `detect` run it:
//! every candidate label's trigger from the same seeds, the verdict over the labels, and, when
//! clean test images or the true trigger are known, each recovered trigger's attack success and
//! overlap with the truth (docs/METHOD.md §6-7). The result is a value; the files are written by
//! `crate::report::write_reverse`.
use std::time::Instant;

use super::{binarize_top_k, iou, recovered_asr, reverse_engineer_with, verdict, AnomalyScale, LabelResult, ReverseConfig, ReverseReport, SeedSpec, Seeds, TrueTrigger, Verdict};
use crate::control::Control;
use crate::data::{ImageSet, Normalization};
use crate::error::Result;
use crate::model::Model;

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
pub fn examine(model: &Model, norm: &Normalization, seeds: &Seeds, job: &ReverseJob, test: Option<&ImageSet>, ctl: &Control) -> Result<Examination> {
    let m = &model.meta;
    let true_mask = job.true_trigger.as_ref().map(|t| t.mask(m.height, m.width)).transpose()?;
    if let Some(t) = test {
        model.meta.check_images(t, "test images")?;
    }
    let t0 = Instant::now();
    let results = reverse_engineer_with(model, norm, seeds, &job.config, &job.labels, ctl)?;
    let seconds = t0.elapsed().as_secs_f64();
    let verdict = verdict(&results, job.threshold, job.anomaly_scale);
    let space = job.config.space;
    let recovered: Option<Vec<f64>> = test.map(|t| results.iter().map(|r| recovered_asr(model, norm, space, t, r.label, &r.mask, &r.pattern, job.patch_area)).collect());
    let ious: Option<Vec<f64>> = true_mask.as_ref().map(|tm| results.iter().map(|r| iou(&binarize_top_k(&r.mask, job.patch_area), tm)).collect());
    let mut report = ReverseReport::new(&results, &verdict, recovered.as_deref(), ious.as_deref());
    report.seed = job.config.seed;
    report.seconds = seconds;
    Ok(Examination { results, verdict, report })
}
