//! `quarantine report RUN_DIR`: (re)writes the self-contained `RUN_DIR/report.html` of a demo,
//! detect, reverse or scored pruning run from the files the run left.
use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A run folder (holds demo.json, detect.json, reverse.json or dynamics.json).
    pub dir: PathBuf,
}

pub fn run(a: ReportArgs, json: bool) -> anyhow::Result<()> {
    let path = quarantine::report::html::write_report(&a.dir)?;
    if json {
        println!("{}", serde_json::json!({ "report": path }));
    }
    eprintln!("report: {}", path.display());
    Ok(())
}
