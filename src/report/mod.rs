//! Reports: images, plots, JSON.
pub mod plot;
pub mod png;
