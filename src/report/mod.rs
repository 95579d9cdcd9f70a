//! Reports: images, plots, the self-contained HTML report.
pub mod html;
pub mod plot;
pub mod png;
