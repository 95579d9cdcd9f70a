//! The verdict over all candidate labels and the record of a reverse-engineering run
//! (`reverse.json`, [`ReverseReport`]); the files are written by `crate::report::write_reverse`.
//!
//! Verdict (docs/METHOD.md §6): detected target = argmin of the soft-mask l1 over labels that
//! reached success; anomaly index `(median − l1) / (1.4826·MAD)` on the chosen [`AnomalyScale`];
//! flagged above the threshold.
use super::{anomaly_of, median_mad, AnomalyScale, LabelResult};
use crate::model::Versions;

/// The decision over all labels.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Verdict {
    /// argmin of l1 over the labels that reached success; `None` if none did.
    pub detected_target: Option<u32>,
    /// Anomaly index of the detected target on `scale` (`null` in JSON when infinite, i.e. MAD = 0).
    pub anomaly_index: Option<f64>,
    /// The same on the linear (Neural Cleanse) scale.
    pub anomaly_index_linear: Option<f64>,
    /// The same on the log scale (over ln l1).
    pub anomaly_index_log: Option<f64>,
    /// Scale the verdict's anomaly index and MAD are computed on.
    pub scale: AnomalyScale,
    /// Whether the detected target's anomaly index exceeds `threshold`.
    pub flagged: bool,
    /// Anomaly index above which the model is flagged.
    pub threshold: f64,
    /// Median of the labels' l1.
    pub median_l1: f64,
    /// MAD on `scale` (of l1 or of ln l1).
    pub mad_l1: f64,
}

/// One label's line of `reverse.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LabelSummary {
    /// The candidate target label.
    pub label: u32,
    /// Soft-mask l1 of its trigger.
    pub l1: f64,
    /// Attack success of the kept trigger on a fresh pass over the seeds.
    pub attack_success: f64,
    /// Whether some epoch reached the success threshold (otherwise it is no trigger).
    pub reached: bool,
    /// Attack success of the binarised trigger on clean test images, when given.
    pub recovered_asr: Option<f64>,
    /// IoU of the binarised mask with the true trigger's, when known.
    pub iou: Option<f64>,
    /// This label's own anomaly index (0 at or above the median).
    pub anomaly_index: f64,
    /// 1-based epoch the kept trigger comes from.
    pub epoch: usize,
    /// Epochs the label ran before it stopped (0 in records written before the early stop).
    #[serde(default)]
    pub epochs_run: usize,
    /// Attack accuracy of the kept epoch (over its batches).
    pub epoch_attack_success: f64,
    /// Costs `[c1..c5]` after the last epoch.
    pub final_cost: [f64; 5],
}

/// `reverse.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ReverseReport {
    /// One line per candidate label, in the order they were run.
    pub labels: Vec<LabelSummary>,
    /// See [`Verdict::detected_target`].
    pub detected_target: Option<u32>,
    /// See [`Verdict::anomaly_index`].
    pub anomaly_index: Option<f64>,
    /// See [`Verdict::anomaly_index_linear`].
    pub anomaly_index_linear: Option<f64>,
    /// See [`Verdict::anomaly_index_log`].
    pub anomaly_index_log: Option<f64>,
    /// See [`Verdict::scale`].
    pub anomaly_scale: AnomalyScale,
    /// See [`Verdict::flagged`].
    pub flagged: bool,
    /// See [`Verdict::threshold`].
    pub threshold: f64,
    /// See [`Verdict::median_l1`].
    pub median_l1: f64,
    /// See [`Verdict::mad_l1`].
    pub mad_l1: f64,
    /// The command's settings (free-form JSON; `null` until the caller fills it in).
    pub config: serde_json::Value,
    /// The run's random seed.
    pub seed: u64,
    /// Versions of quarantine, tch and libtorch that produced the report.
    pub versions: Versions,
    /// The examined model: path and metadata (free-form JSON; `null` until filled in).
    pub model: serde_json::Value,
    /// Wall-clock time of the reverse engineering, in seconds.
    pub seconds: f64,
}

impl LabelSummary {
    /// A line known only by its label, mask l1 and whether it reached success (what `detect.json`
    /// keeps of each label), the other fields neutral: enough for [`verdict`] and the decision rules.
    pub fn bare(label: u32, l1: f64, reached: bool) -> Self {
        let success = if reached { 1.0 } else { 0.0 };
        LabelSummary {
            label,
            l1,
            attack_success: success,
            reached,
            recovered_asr: None,
            iou: None,
            anomaly_index: 0.0,
            epoch: 1,
            epochs_run: 0,
            epoch_attack_success: success,
            final_cost: [0.0; 5],
        }
    }
}

impl ReverseReport {
    /// Per-label lines from results (and, when computed, recovered ASR and IoU, in the same order).
    pub fn new(results: &[LabelResult], verdict: &Verdict, recovered: Option<&[f64]>, ious: Option<&[f64]>) -> Self {
        let l1: Vec<f64> = results.iter().map(|r| r.l1).collect();
        let labels = results
            .iter()
            .enumerate()
            .map(|(i, r)| LabelSummary {
                label: r.label,
                l1: r.l1,
                attack_success: r.attack_success,
                reached: r.reached,
                recovered_asr: recovered.map(|v| v[i]),
                iou: ious.map(|v| v[i]),
                anomaly_index: anomaly_of(&verdict.scale.apply(&l1), i),
                epoch: r.epoch,
                epochs_run: r.epochs_run,
                epoch_attack_success: r.epoch_attack_success,
                final_cost: r.final_cost,
            })
            .collect();
        ReverseReport {
            labels,
            detected_target: verdict.detected_target,
            anomaly_index: verdict.anomaly_index,
            anomaly_index_linear: verdict.anomaly_index_linear,
            anomaly_index_log: verdict.anomaly_index_log,
            anomaly_scale: verdict.scale,
            flagged: verdict.flagged,
            threshold: verdict.threshold,
            median_l1: verdict.median_l1,
            mad_l1: verdict.mad_l1,
            config: serde_json::Value::Null,
            seed: 0,
            versions: Versions::default(),
            model: serde_json::Value::Null,
            seconds: 0.0,
        }
    }
}

/// What the verdict needs of one label's result: [`LabelResult`] after a run, [`LabelSummary`] when
/// read back from `reverse.json`.
pub trait LabelL1 {
    /// The candidate target label.
    fn label(&self) -> u32;
    /// Soft-mask l1 of its trigger.
    fn l1(&self) -> f64;
    /// Whether the trigger reached the success threshold (otherwise it is no trigger).
    fn reached(&self) -> bool;
}

impl LabelL1 for LabelResult {
    fn label(&self) -> u32 {
        self.label
    }
    fn l1(&self) -> f64 {
        self.l1
    }
    fn reached(&self) -> bool {
        self.reached
    }
}

impl LabelL1 for LabelSummary {
    fn label(&self) -> u32 {
        self.label
    }
    fn l1(&self) -> f64 {
        self.l1
    }
    fn reached(&self) -> bool {
        self.reached
    }
}

/// Detected target, anomaly index (on `scale`; both scales are recorded) and flag from per-label
/// results (see the module docs).
pub fn verdict<L: LabelL1>(labels: &[L], threshold: f64, scale: AnomalyScale) -> Verdict {
    let l1: Vec<f64> = labels.iter().map(|l| l.l1()).collect();
    let (median, _) = if l1.is_empty() { (f64::NAN, f64::NAN) } else { median_mad(&l1) };
    let x = scale.apply(&l1);
    let mad = if l1.is_empty() { f64::NAN } else { median_mad(&x).1 };
    let best = (0..l1.len()).filter(|&i| labels[i].reached()).min_by(|&a, &b| l1[a].total_cmp(&l1[b]));
    let anomaly = best.map(|i| anomaly_of(&x, i));
    Verdict {
        detected_target: best.map(|i| labels[i].label()),
        anomaly_index: anomaly,
        anomaly_index_linear: best.map(|i| anomaly_of(&AnomalyScale::Linear.apply(&l1), i)),
        anomaly_index_log: best.map(|i| anomaly_of(&AnomalyScale::Log.apply(&l1), i)),
        scale,
        flagged: anomaly.is_some_and(|a| a > threshold),
        threshold,
        median_l1: median,
        mad_l1: mad,
    }
}
