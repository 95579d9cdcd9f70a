//! What a reverse-engineering run leaves in its folder: `reverse.json` (numbers and verdict),
//! `history.jsonl` (per label and epoch), `triggers.safetensors` (`mask.T` [1,H,W] and `pattern.T`
//! [C,H,W] of every label T), per-label pictures `labelT_{mask,pattern,trigger}.png` (x8) and the
//! bar chart of l1 per label `l1.png` + `l1.svg` (the paper's Figure 3; bars in the order of the
//! labels run).
use std::collections::BTreeMap;
use std::path::Path;

use torchfile::{DType, RawTensor};

use super::LabelResult;
use crate::error::Result;
use crate::model::Versions;
use crate::report::{plot, png};
use crate::util::{write_atomic, write_json};

/// The decision over all labels.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Verdict {
    /// argmin of l1 over the labels that reached success; `None` if none did.
    pub detected_target: Option<u32>,
    /// Anomaly index of the detected target on `scale` (`null` in JSON when infinite, i.e. MAD = 0).
    pub anomaly_index: Option<f64>,
    /// The same on the linear (Neural Cleanse) and log scales.
    pub anomaly_index_linear: Option<f64>,
    pub anomaly_index_log: Option<f64>,
    pub scale: super::AnomalyScale,
    pub flagged: bool,
    pub threshold: f64,
    /// Median of the labels' l1.
    pub median_l1: f64,
    /// MAD on `scale` (of l1 or of ln l1).
    pub mad_l1: f64,
}

/// One label's line of `reverse.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LabelSummary {
    pub label: u32,
    pub l1: f64,
    pub attack_success: f64,
    pub reached: bool,
    pub recovered_asr: Option<f64>,
    pub iou: Option<f64>,
    /// This label's own anomaly index (0 at or above the median).
    pub anomaly_index: f64,
    pub epoch: usize,
    pub epoch_attack_success: f64,
    pub final_cost: [f64; 5],
}

/// `reverse.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ReverseReport {
    pub labels: Vec<LabelSummary>,
    pub detected_target: Option<u32>,
    pub anomaly_index: Option<f64>,
    pub anomaly_index_linear: Option<f64>,
    pub anomaly_index_log: Option<f64>,
    pub anomaly_scale: super::AnomalyScale,
    pub flagged: bool,
    pub threshold: f64,
    pub median_l1: f64,
    pub mad_l1: f64,
    pub config: serde_json::Value,
    pub seed: u64,
    pub versions: Versions,
    pub model: serde_json::Value,
    pub seconds: f64,
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
                anomaly_index: super::anomaly_of(&verdict.scale.apply(&l1), i),
                epoch: r.epoch,
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

fn to_u8(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// CHW floats in [0,1] -> HWC bytes.
fn chw_to_hwc(v: &[f32], (c, h, w): (usize, usize, usize)) -> Vec<u8> {
    let mut out = vec![0u8; c * h * w];
    for ch in 0..c {
        for i in 0..h * w {
            out[i * c + ch] = to_u8(v[ch * h * w + i]);
        }
    }
    out
}

/// Writes every output file of a run into `dir` (which must exist); `reverse.json` last.
pub fn write_outputs(dir: &Path, results: &[LabelResult], report: &ReverseReport) -> Result<()> {
    let mut tensors = vec![];
    let mut hist = String::new();
    for r in results {
        let (c, h, w) = r.shape;
        let t = r.label;
        png::write_hwc(&dir.join(format!("label{t}_mask.png")), &r.mask.iter().map(|&v| to_u8(v)).collect::<Vec<_>>(), h, w, 1, 8)?;
        png::write_hwc(&dir.join(format!("label{t}_pattern.png")), &chw_to_hwc(&r.pattern_image, r.shape), h, w, c, 8)?;
        let fused: Vec<f32> = r.pattern_image.iter().enumerate().map(|(j, v)| v * r.mask[j % (h * w)]).collect();
        png::write_hwc(&dir.join(format!("label{t}_trigger.png")), &chw_to_hwc(&fused, r.shape), h, w, c, 8)?;
        tensors.push((format!("mask.{t}"), raw(&r.mask, vec![1, h, w])));
        tensors.push((format!("pattern.{t}"), raw(&r.pattern, vec![c, h, w])));
        for e in &r.history {
            let line = serde_json::json!({"label": t, "epoch": e.epoch, "loss": e.loss, "attack_success": e.attack_success, "l1": e.l1, "c1": e.c1});
            hist.push_str(&line.to_string());
            hist.push('\n');
        }
    }
    write_atomic(&dir.join("history.jsonl"), hist.as_bytes())?;
    let mut meta = BTreeMap::new();
    meta.insert("space".to_string(), report.config.get("space").and_then(|v| v.as_str()).unwrap_or("").to_string());
    torchfile::save_safetensors(&dir.join("triggers.safetensors"), &tensors, &meta)?;
    let l1: Vec<f64> = results.iter().map(|r| r.l1).collect();
    let highlight = report.detected_target.and_then(|t| results.iter().position(|r| r.label == t));
    let title = match report.detected_target {
        Some(t) => format!("soft-mask l1 per label (detected: {t})"),
        None => "soft-mask l1 per label (no label reached success)".to_string(),
    };
    plot::write_svg_and_png(&dir.join("l1.png"), &plot::bars(&title, "mask l1", &l1, highlight)?)?;
    write_json(&dir.join("reverse.json"), report)
}

fn raw(v: &[f32], shape: Vec<usize>) -> RawTensor {
    RawTensor { dtype: DType::F32, shape, data: v.iter().flat_map(|x| x.to_le_bytes()).collect() }
}
