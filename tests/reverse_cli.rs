//! `quarantine reverse` end to end on a tiny (untrained) checkpoint: JSON shape, files, refusal to
//! overwrite, and the exit code and message for a missing model.
use std::path::Path;
use std::process::Command;

use quarantine::data::Normalization;
use quarantine::model::{save_checkpoint, Arch, CheckpointInfo, Model, ModelMeta, Versions};
use tch::Device;

fn tiny_checkpoint(dir: &Path) -> std::path::PathBuf {
    tch::manual_seed(0);
    let meta = ModelMeta { arch: Arch::Cnn, in_channels: 1, height: 28, width: 28, num_classes: 10, script: None };
    let model = Model::new(meta.clone(), Device::Cpu).unwrap();
    let info = CheckpointInfo {
        meta,
        classes: (0..10).map(|i| i.to_string()).collect(),
        normalization: Normalization::mnist(),
        seed: Some(0),
        versions: Versions::default(),
        data: None,
        config: None,
        metrics: None,
        batches_tracked: 0,
        imported_from: None,
    };
    let path = dir.join("model.safetensors");
    save_checkpoint(&path, &model, &info).unwrap();
    path
}

fn quarantine(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_quarantine")).args(["--threads", "2"]).args(args).output().unwrap()
}

#[test]
fn reverse_writes_json_and_files() {
    let d = tempfile::tempdir().unwrap();
    let model = tiny_checkpoint(d.path());
    let out = d.path().join("rev");
    let args = [
        "reverse",
        "--model",
        model.to_str().unwrap(),
        "--seeds",
        "noise:8",
        "--epochs",
        "2",
        "--labels",
        "0,1",
        "--json",
        "--out",
        out.to_str().unwrap(),
        "--test-data",
        "builtin",
        "--true-trigger",
        "reference-upper-right:5",
    ];
    let o = quarantine(&args);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("detected target") || stderr.contains("no trigger found"), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let labels = v["labels"].as_array().unwrap();
    assert_eq!(labels.len(), 2);
    for (i, l) in labels.iter().enumerate() {
        assert_eq!(l["label"], i as u64);
        assert!(l["l1"].as_f64().unwrap() > 0.0);
        assert!((0.0..=1.0).contains(&l["attack_success"].as_f64().unwrap()));
        assert!(l["reached"].is_boolean());
        assert!((0.0..=1.0).contains(&l["recovered_asr"].as_f64().unwrap()));
        assert!((0.0..=1.0).contains(&l["iou"].as_f64().unwrap()));
    }
    assert!(v["detected_target"].is_null() || v["detected_target"].is_u64());
    assert!(v["flagged"].is_boolean());
    assert!(v.get("anomaly_index").is_some());
    assert_eq!(v["seed"], 0);
    assert_eq!(v["config"]["reverse"]["epochs"], 2);
    assert_eq!(v["config"]["seeds"], "noise:8");
    assert_eq!(v["model"]["meta"]["arch"], "cnn");
    assert!(v["versions"]["quarantine"].is_string());
    let on_disk: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("reverse.json")).unwrap()).unwrap();
    assert_eq!(on_disk["labels"], v["labels"]);
    for f in [
        "l1.png",
        "triggers.safetensors",
        "history.jsonl",
        "label0_mask.png",
        "label1_pattern.png",
        "label1_trigger.png",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
    // A second run into the same folder is refused without --force.
    let again = quarantine(&args);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
}

#[test]
fn synthesized_seeds_are_written_and_summarised() {
    let d = tempfile::tempdir().unwrap();
    let model = tiny_checkpoint(d.path());
    let out = d.path().join("rev");
    let o = quarantine(&[
        "reverse",
        "--model",
        model.to_str().unwrap(),
        "--seeds",
        "synth:20",
        "--epochs",
        "2",
        "--labels",
        "3",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("synthesizing synth:20"), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["config"]["seeds"], "synth:20:400", "the config names the synthesis steps it used");
    let s = &v["config"]["synthesized_seeds"];
    assert!(
        (0.0..=1.0).contains(&s["accuracy"].as_f64().unwrap()) && s["bn_distance"].as_f64().unwrap().is_finite(),
        "{s}"
    );
    let png = image::open(out.join("seeds.png")).unwrap();
    // 20 images of 28x28 in 2 rows of 10, scaled x2 with 2-pixel gaps.
    assert!(png.width() > 10 * 28 && png.height() > 2 * 28, "{}x{}", png.width(), png.height());
}

#[test]
fn data_free_detect_scores_on_the_synthesized_seeds_or_on_noise() {
    let d = tempfile::tempdir().unwrap();
    let model = tiny_checkpoint(d.path());
    let detect = |out: &str, extra: &[&str]| {
        let out = d.path().join(out);
        let mut args = vec![
            "detect",
            "--model",
            model.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--steps",
            "3",
            "--k",
            "2",
            "--reverse-epochs",
            "1",
            "--json",
        ];
        args.extend_from_slice(extra);
        let o = quarantine(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let dynamics: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("dynamics.json")).unwrap()).unwrap();
        (v, dynamics, String::from_utf8_lossy(&o.stderr).into_owned())
    };
    // Default: the synthesized seeds are the score data, BN statistics recalibrated on them.
    let (v, dynamics, stderr) = detect("synth", &["--seeds", "synth:12", "--score-samples", "64"]);
    assert_eq!(v["config"]["score_data"], "synthesized");
    assert_eq!(v["config"]["bn_recalibrate"], true);
    assert_eq!(dynamics["config"]["bn_recalibrate"], true);
    assert!(v["command"].as_str().unwrap().contains("--free-score-data synth"), "{}", v["command"]);
    assert_eq!(stderr.matches("synthesizing").count(), 1, "the seeds are synthesized once: {stderr}");
    assert_eq!(dynamics["steps"].as_array().unwrap().len(), 3);
    // The winning ticket is saved with its mask, as `score` saves it.
    for f in ["winning-ticket.safetensors", "winning-ticket.pt", "winning-ticket.mask.safetensors"] {
        assert!(d.path().join("synth").join(f).exists(), "{f}");
    }
    // Noise (the paper's): labelled by the model, the dense BN statistics kept.
    let (v, dynamics, stderr) =
        detect("noise", &["--seeds", "noise:8", "--free-score-data", "noise", "--score-samples", "64"]);
    assert_eq!(v["config"]["score_data"], "noise");
    assert_eq!(v["config"]["bn_recalibrate"], false);
    assert_eq!(dynamics["config"]["bn_recalibrate"], false);
    assert!(!stderr.contains("synthesizing"), "{stderr}");
    // Synthesized score data with noise seeds: synthesized for the score alone.
    let (v, _, stderr) = detect("mixed", &["--seeds", "noise:8", "--no-bn-recalibrate", "--score-samples", "8"]);
    assert_eq!(v["config"]["score_data"], "synthesized");
    assert_eq!(v["config"]["bn_recalibrate"], false);
    assert!(stderr.contains("synthesizing 8 score images"), "{stderr}");
}

#[test]
fn reverse_missing_model_exits_2_and_names_the_file() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("nope.safetensors");
    let o = quarantine(&[
        "reverse",
        "--model",
        missing.to_str().unwrap(),
        "--out",
        d.path().join("r").to_str().unwrap(),
        "--epochs",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("nope.safetensors"), "{e}");
    assert!(!d.path().join("r").exists(), "no output folder for a failed load");
}
