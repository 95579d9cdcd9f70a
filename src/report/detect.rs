//! The files of a detection: `detect.json`, `dynamics.{json,csv?,png,svg}`, the winning ticket
//! (`winning-ticket.safetensors` with sidecar, `.pt`, `.mask.safetensors`), `reverse-dense/` and
//! `reverse-ticket/` (see [`super::write_reverse`]), `seeds.png` for synthesized seeds, and
//! `report.html`.
use std::path::{Path, PathBuf};

use super::plot::{self, DynPoint};
use super::{write_reverse, write_seed_grid};
use crate::detect::{DetectRecord, Detection};
use crate::error::Result;
use crate::score::path::{save_ticket, StepRow};
use crate::util::write_json;

/// The points of the dynamics plot (paper Fig. 2) of scored steps.
pub fn dynamics_points(rows: &[StepRow], with_attack: bool) -> Vec<DynPoint> {
    rows.iter()
        .map(|r| DynPoint {
            sparsity: r.sparsity,
            clean_accuracy: r.ticket.clean_accuracy.unwrap_or(f64::NAN),
            attack_success: if with_attack { r.ticket.attack_success_rate } else { None },
            score_error: r.score_error,
            score_loss: r.score_loss,
        })
        .collect()
}

/// Writes every file of `detection` (whose `detect.json` is `record`) into `out`; returns the
/// path of `report.html`.
pub fn write_detection(out: &Path, detection: &Detection, record: &DetectRecord) -> Result<PathBuf> {
    std::fs::create_dir_all(out).map_err(|e| crate::Error::io(out, e))?;
    if let Some((images, _)) = &detection.synthesized {
        write_seed_grid(out, images)?;
    }
    let w = &detection.winner;
    save_ticket(out, &w.model, &w.masks, &w.info, detection.winner_row().step)?;
    let title = format!("{} path, {} score data", record.config.method.title(), detection.score_data);
    let points = dynamics_points(&detection.dynamics, false);
    plot::write_svg_and_png(&out.join("dynamics.png"), &plot::dynamics(&title, &points, Some(w.index))?)?;
    write_json(&out.join("dynamics.json"), &detection.dynamics_record())?;
    write_reverse(&out.join("reverse-dense"), &detection.dense.results, &detection.dense.report)?;
    write_reverse(&out.join("reverse-ticket"), &detection.ticket.results, &detection.ticket.report)?;
    write_json(&out.join("detect.json"), record)?;
    super::html::write_report(out)
}
