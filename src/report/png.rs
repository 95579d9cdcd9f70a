//! PNG output of uint8 images: the plain writers live in [`crate::data::png`] (training and attacks
//! write trigger previews below this layer); re-exported here for the report's callers.
pub use crate::data::png::{write_grid, write_hwc};
