//! The files of a reverse-engineering run: `reverse.json` (numbers and verdict), `history.jsonl`
//! (per label and epoch), `triggers.safetensors` (`mask.T` [1,H,W] and `pattern.T` [C,H,W] of every
//! label T), per-label pictures `labelT_{mask,pattern,trigger}.png` (x8) and the bar chart of l1 per
//! label `l1.png` + `l1.svg` (the paper's Figure 3; bars in the order of the labels run); and the
//! grid of synthesized seed images `seeds.png`.
use std::collections::BTreeMap;
use std::path::Path;

use torchfile::{DType, RawTensor};

use super::{plot, png};
use crate::data::ImageSet;
use crate::error::{Error, Result};
use crate::reverse::{LabelResult, ReverseReport, ReverseRun};
use crate::util::{write_atomic, write_json};

fn to_u8(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// Writes every file of a reverse-engineering run into `dir` (created if needed); `reverse.json` last.
pub fn write_reverse(dir: &Path, results: &[LabelResult], report: &ReverseReport) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut tensors = vec![];
    let mut hist = String::new();
    for r in results {
        let (c, h, w) = r.shape;
        let t = r.label;
        png::write_hwc(
            &dir.join(format!("label{t}_mask.png")),
            &r.mask.iter().map(|&v| to_u8(v)).collect::<Vec<_>>(),
            h,
            w,
            1,
            8,
        )?;
        png::write_hwc(
            &dir.join(format!("label{t}_pattern.png")),
            &imagesets::chw_to_hwc(&r.pattern_image, c, to_u8),
            h,
            w,
            c,
            8,
        )?;
        let fused: Vec<f32> = r.pattern_image.iter().enumerate().map(|(j, v)| v * r.mask[j % (h * w)]).collect();
        png::write_hwc(
            &dir.join(format!("label{t}_trigger.png")),
            &imagesets::chw_to_hwc(&fused, c, to_u8),
            h,
            w,
            c,
            8,
        )?;
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

/// Writes the first 100 synthesized seed images as a 10-column grid, `dir/seeds.png`.
pub fn write_seed_grid(dir: &Path, images: &ImageSet) -> Result<()> {
    let n = images.n.min(100);
    let cols = n.min(10);
    png::write_grid(&dir.join("seeds.png"), &images.subset(&(0..n).collect::<Vec<_>>()), n.div_ceil(cols), cols)
}

/// Writes a whole reverse-engineering run into `dir`: `seeds.png` for synthesized seeds, then
/// [`write_reverse`].
pub fn write_reverse_run(dir: &Path, run: &ReverseRun) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    if let Some((images, _)) = &run.synthesized {
        write_seed_grid(dir, images)?;
    }
    write_reverse(dir, &run.exam.results, &run.exam.report)
}
