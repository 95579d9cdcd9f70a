//! Reports: images, plots, JSON.
pub mod png;
