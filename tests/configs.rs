//! Every experiment file in configs/ parses and validates (`quarantine run --check`), and the
//! built-in-data ones run end to end (train/IMP, prune, score, reverse, report) and resume.
use std::path::{Path, PathBuf};
use std::process::Command;

fn quarantine(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_quarantine")).args(["--threads", "2"]).args(args).output().unwrap()
}

fn configs() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_config_is_valid() {
    let all = configs();
    assert!(all.len() >= 8, "configs/ holds {} files", all.len());
    for c in &all {
        let o = quarantine(&["run", c.to_str().unwrap(), "--check", "--json"]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{}: {stderr}", c.display());
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["valid"], true, "{}", c.display());
        if v["data_present"] == false {
            assert!(v["data_hint"].as_str().unwrap().contains("Get "), "{}: {v}", c.display());
        }
    }
}

#[test]
fn missing_data_is_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let c = configs()
        .into_iter()
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with("cifar10-resnet20s-badnets-gray"))
        .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_quarantine"))
        .current_dir(d.path())
        .args(["run", c.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("data/cifar-10-batches-bin") && e.contains("cifar-10-binary.tar.gz"), "{e}");
}

fn run_builtin(name: &str) -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let c = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs").join(name);
    let out = d.path().join("run");
    let o = quarantine(&["run", c.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
    (d, out)
}

#[test]
fn builtin_omp_config_runs_and_resumes() {
    let (_d, out) = run_builtin("builtin-cnn-badnets-gray-omp.toml");
    for f in [
        "config.toml",
        "experiment.json",
        "report.html",
        "train/model.safetensors",
        "prune/winning-ticket.safetensors",
        "prune/dynamics.png",
        "reverse-dense/reverse.json",
        "reverse-ticket/reverse.json",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let train: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("train/result.json")).unwrap()).unwrap();
    assert!(train["attack_success_rate"].as_f64().unwrap() > 0.5, "{train}");
    // A finished run is not overwritten silently, and --resume skips every finished stage.
    let again = quarantine(&["run", "configs/builtin-cnn-badnets-gray-omp.toml", "--out", out.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2));
    let before = std::fs::read(out.join("train/model.safetensors")).unwrap();
    let o =
        quarantine(&["run", "configs/builtin-cnn-badnets-gray-omp.toml", "--out", out.to_str().unwrap(), "--resume"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{e}");
    assert_eq!(e.matches("skipped").count(), 5, "{e}");
    assert_eq!(before, std::fs::read(out.join("train/model.safetensors")).unwrap());
}

#[test]
fn builtin_imp_config_runs() {
    let (_d, out) = run_builtin("builtin-cnn-badnets-rgb-imp.toml");
    for f in [
        "experiment.json",
        "report.html",
        "prune/round-000/trained.safetensors",
        "prune/winning-ticket.safetensors",
        "prune/dynamics.csv",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
}
