//! The files of a scored pruning run: `winning-ticket.*` (see `score::path::save_ticket`),
//! `dynamics.png` + `.svg` (paper Fig. 2), `dynamics.csv` and `dynamics.json`.
use std::path::Path;

use super::plot;
use crate::error::Result;
use crate::score::job::{ScoreDynamics, ScoredPath};
use crate::score::path::{dynamics_csv, save_ticket};
use crate::util::{write_atomic, write_json};

/// Writes the files of `scored` (whose `dynamics.json` is `record`) into run folder `dir`.
pub fn write_scored_path(dir: &Path, scored: &ScoredPath, record: &ScoreDynamics) -> Result<()> {
    if let Some((w, phi, masks, info)) = &scored.winner {
        save_ticket(dir, phi, masks, info, scored.rows[*w].step)?;
    }
    let points = super::dynamics_points(&scored.rows, true);
    let title = format!(
        "{} path, {} score data",
        scored.record.method.title(),
        if scored.data_free { "noise" } else { "training" }
    );
    plot::write_svg_and_png(
        &dir.join("dynamics.png"),
        &plot::dynamics(&title, &points, scored.winner.as_ref().map(|w| w.0))?,
    )?;
    write_atomic(&dir.join("dynamics.csv"), dynamics_csv(&scored.rows).as_bytes())?;
    write_json(&dir.join("dynamics.json"), record)
}
