//! Detect a Trojan in a checkpoint with the library: load, run the auditor's pipeline, print the
//! verdict, write the files (detect.json, dynamics, recovered triggers, report.html).
//!
//!     cargo run --release --example detect -- MODEL [OUT]
//!
//! MODEL is any checkpoint `quarantine` loads (native .safetensors, PyTorch .pt/.pth). Without
//! arguments the example makes its own tiny fixture (an untrained built-in cnn) and runs a
//! deliberately small detection on it, which is how CI runs it.
use std::path::PathBuf;

use quarantine::control::Control;
use quarantine::detect::{self, DetectConfig, FreeScoreData, ModelRef, Suspect};
use quarantine::model::{save_checkpoint, Arch, CheckpointInfo, InputOverrides, Model, ModelMeta};
use quarantine::reverse::SeedSpec;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scratch = tempfile_dir()?;
    let (model_path, cfg) = match args.first() {
        Some(m) => (PathBuf::from(m), DetectConfig::default()),
        None => (fixture(&scratch)?, tiny_config()),
    };
    let out = args.get(1).map(PathBuf::from).unwrap_or_else(|| scratch.join("detect"));

    let suspect = Suspect::load(&model_path, &InputOverrides::default(), tch::Device::Cpu)?;
    let found = detect::run(&suspect, None, &cfg, &out, false, &Control::quiet())?;
    let d = &found.decision;
    match d.target {
        Some(t) if d.trojaned => {
            println!("TROJANED, target label {t} (anomaly index {:.2})", d.anomaly_index.unwrap_or(f64::NAN))
        }
        _ => println!("no Trojan found (dense argmin {:?}, ticket argmin {:?})", d.dense_target, d.ticket_target),
    }

    let model = ModelRef {
        path: model_path,
        meta: suspect.info.meta.clone(),
        imported_from: suspect.info.imported_from.clone(),
    };
    let record = found.record(&cfg, model, "examples/detect.rs".into());
    let report = quarantine::report::write_detection(&out, &found, &record)?;
    println!("report: {}", report.display());
    Ok(())
}

/// A small detection: 3 pruning steps, 2 finetuning steps, scored on noise, 8 noise seeds, 2
/// reverse epochs.
fn tiny_config() -> DetectConfig {
    DetectConfig {
        steps: 3,
        k: 2,
        score_samples: 32,
        seeds: SeedSpec::Noise(8),
        free_score_data: FreeScoreData::Noise,
        reverse_epochs: 2,
        ..DetectConfig::default()
    }
}

/// An untrained built-in cnn for 28x28 gray images, saved with its sidecar.
fn fixture(dir: &std::path::Path) -> Result<PathBuf, Box<dyn std::error::Error>> {
    tch::manual_seed(0);
    let meta = ModelMeta { arch: Arch::Cnn, in_channels: 1, height: 28, width: 28, num_classes: 10, script: None };
    let model = Model::new(meta.clone(), tch::Device::Cpu)?;
    let path = dir.join("fixture.safetensors");
    save_checkpoint(&path, &model, &CheckpointInfo::new(meta, quarantine::data::Normalization::mnist()))?;
    Ok(path)
}

/// A fresh scratch folder under the system's temporary directory.
fn tempfile_dir() -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("quarantine-example-detect-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
