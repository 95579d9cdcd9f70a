//! Reports: the files a run leaves (reverse-engineering outputs, detection records), plots, images
//! and the self-contained HTML report.
mod detect;
pub mod html;
pub mod plot;
pub mod png;
pub mod records;
mod reverse;
pub mod scan;
mod score;

pub use detect::{dynamics_points, write_detection};
pub use reverse::{write_reverse, write_reverse_run, write_seed_grid};
pub use score::write_scored_path;
