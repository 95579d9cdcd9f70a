//! `quarantine zoo` and `quarantine scan` end to end on a tiny zoo (4 cnns, 2 epochs): ground truth,
//! resumability, sharding (N processes then --merge give the unsharded scan.csv), error rows for
//! a truncated checkpoint and a hostile pickle, and metrics that agree with a hand computation.
use std::path::Path;
use std::process::Command;

fn quarantine(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_quarantine")).args(["--threads", "2"]).args(args).output().unwrap()
}

fn ok(o: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{stderr}");
    stderr
}

/// Tiny detect settings for every scan here.
const FAST: [&str; 10] =
    ["--steps", "3", "--score-from", "2", "--reverse-epochs", "3", "--seeds", "synth:10:5", "--bootstrap", "50"];

fn scan(dirs: &[&Path], out: &Path, extra: &[&str]) -> String {
    let mut args: Vec<String> = vec!["scan".into()];
    args.extend(dirs.iter().map(|d| d.display().to_string()));
    args.extend(["--out".to_string(), out.display().to_string()]);
    args.extend(FAST.iter().map(|s| s.to_string()));
    args.extend(extra.iter().map(|s| s.to_string()));
    ok(&quarantine(&args.iter().map(String::as_str).collect::<Vec<_>>()))
}

/// scan.csv without the columns that measure the run (seconds, peak memory), and with the paths
/// of per-shard outputs normalised.
fn comparable(csv: &str) -> Vec<String> {
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let drop: Vec<usize> =
        header.iter().enumerate().filter(|(_, c)| ["seconds", "peak_rss_mb"].contains(c)).map(|(i, _)| i).collect();
    csv.lines()
        .map(|l| {
            l.split(',').enumerate().filter(|(i, _)| !drop.contains(i)).map(|(_, c)| c).collect::<Vec<_>>().join(",")
        })
        .collect()
}

#[test]
fn a_tiny_zoo_is_scanned_sharded_merged_resumed_and_measured() {
    let d = tempfile::tempdir().unwrap();
    let spec = d.path().join("zoo.toml");
    std::fs::write(
        &spec,
        r#"name = "tiny"
seed = 5
models = 4
trojaned_fraction = 0.5
data = "builtin"
archs = ["cnn"]
epochs = [2, 2]
attacks = ["badnets"]
triggers = ["paper-gray"]
trigger_sizes = [5, 5]
locations = ["fixed"]
poison_ratios = [0.1, 0.1]
"#,
    )
    .unwrap();
    let zoo = d.path().join("zoo");
    ok(&quarantine(&["zoo", "--spec", spec.to_str().unwrap(), "--out", zoo.to_str().unwrap()]));
    let mut poisoned = 0;
    for i in 0..4 {
        let cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(zoo.join(format!("id-{i:04}/config.json"))).unwrap()).unwrap();
        assert!(zoo.join(format!("id-{i:04}/model.safetensors")).exists());
        if cfg["poisoned"] == true {
            poisoned += 1;
            assert!(cfg["target"].as_u64().unwrap() < 10 && cfg["backdoor_took"].is_boolean(), "{cfg}");
            assert!(cfg["attack_success_rate_nontarget"].as_f64().is_some());
        } else {
            assert!(cfg["target"].is_null() && cfg["backdoor_took"].is_null());
        }
        assert!(cfg["clean_accuracy"].as_f64().unwrap() > 0.3, "{cfg}");
    }
    assert_eq!(poisoned, 2);
    // A second run trains nothing.
    let again = ok(&quarantine(&["zoo", "--spec", spec.to_str().unwrap(), "--out", zoo.to_str().unwrap()]));
    assert!(again.contains("0 trained now, 4 already done"), "{again}");

    // Unsharded.
    let whole = d.path().join("whole");
    scan(&[&zoo], &whole, &[]);
    let csv = std::fs::read_to_string(whole.join("scan.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    for f in ["metrics.json", "report.html"] {
        assert!(whole.join(f).exists(), "{f}");
    }
    let report = std::fs::read_to_string(whole.join("report.html")).unwrap();
    assert!(report.contains("consensus (default)") && report.contains("id-0003"));

    // The metrics agree with the rows: AUC of the dense log-scale index over the measured models,
    // computed here by counting pairs.
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(whole.join("metrics.json")).unwrap()).unwrap();
    let rows: Vec<serde_json::Value> = (0..4)
        .map(|i| serde_json::from_slice(&std::fs::read(whole.join(format!("rows/id-{i:04}.json"))).unwrap()).unwrap())
        .collect();
    let measured: Vec<(f64, bool)> = rows
        .iter()
        .filter(|r| r["status"] == "ok" && r["truth_backdoor_took"] != false)
        .map(|r| (r["dense_ai"].as_f64().unwrap_or(-1.0), r["truth_poisoned"] == true))
        .collect();
    let pos: Vec<&(f64, bool)> = measured.iter().filter(|x| x.1).collect();
    let neg: Vec<&(f64, bool)> = measured.iter().filter(|x| !x.1).collect();
    let dense = &m["rules"].as_array().unwrap().iter().find(|r| r["rule"] == "dense-log").unwrap()["auc"];
    if pos.is_empty() || neg.is_empty() {
        assert!(dense.is_null());
    } else {
        let mut wins = 0.0;
        for p in &pos {
            for n in &neg {
                wins += if p.0 > n.0 {
                    1.0
                } else if p.0 == n.0 {
                    0.5
                } else {
                    0.0
                };
            }
        }
        let want = wins / (pos.len() * neg.len()) as f64;
        assert!((dense["value"].as_f64().unwrap() - want).abs() < 1e-12, "{dense} vs {want}");
        assert!(whole.join("roc.png").exists());
    }
    // Every ok row carries the warp inversion (detect runs it by default), and the metrics the
    // warp rule read off those columns.
    for r in rows.iter().filter(|r| r["status"] == "ok") {
        let (a, next) = (r["warp_asr"].as_f64().unwrap(), r["warp_runner_up"].as_f64().unwrap());
        assert!((0.0..=1.0).contains(&a) && next <= a, "{r}");
        assert!(r["warp_target"].as_u64().unwrap() < 10, "{r}");
    }
    assert!(m["rules"].as_array().unwrap().iter().any(|r| r["rule"] == "warp"), "{m}");

    // Two shards as separate processes into separate folders, then merged: the same scan.csv.
    let (s0, s1, merged) = (d.path().join("s0"), d.path().join("s1"), d.path().join("merged"));
    scan(&[&zoo], &s0, &["--shard", "0/2"]);
    scan(&[&zoo], &s1, &["--shard", "1/2"]);
    assert_eq!(std::fs::read_dir(s0.join("rows")).unwrap().count(), 2);
    ok(&quarantine(&[
        "scan",
        s0.to_str().unwrap(),
        s1.to_str().unwrap(),
        "--merge",
        "--out",
        merged.to_str().unwrap(),
        "--bootstrap",
        "50",
    ]));
    let merged_csv = std::fs::read_to_string(merged.join("scan.csv")).unwrap();
    assert_eq!(comparable(&merged_csv), comparable(&csv));

    // Calibrated on the clean models of the finished scan, then added to the merged one: every
    // model is decided on the other clean models (a clean model is not its own reference).
    let cal = d.path().join("calibration.json");
    let said = ok(&quarantine(&["calibrate", whole.to_str().unwrap(), "--out", cal.to_str().unwrap()]));
    assert!(said.contains("cnn: 2 clean reference models, 10 labels"), "{said}");
    let again = quarantine(&["calibrate", whole.to_str().unwrap(), "--out", cal.to_str().unwrap()]);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("--force"));
    let all = ok(&quarantine(&[
        "calibrate",
        whole.to_str().unwrap(),
        "--out",
        cal.to_str().unwrap(),
        "--force",
        "--assume-clean",
    ]));
    assert!(all.contains("cnn: 4 clean reference models"), "{all}");
    ok(&quarantine(&["calibrate", whole.to_str().unwrap(), "--out", cal.to_str().unwrap(), "--force"]));
    let args = ["scan", s0.to_str().unwrap(), s1.to_str().unwrap(), "--merge", "--out", merged.to_str().unwrap()];
    ok(&quarantine(&[&args[..], &["--bootstrap", "50", "--calibration", cal.to_str().unwrap()]].concat()));
    let with = std::fs::read_to_string(merged.join("scan.csv")).unwrap();
    let header: Vec<&str> = with.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|c| *c == name).unwrap();
    for line in with.lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        let want = if cells[col("truth_poisoned")] == "true" { "2" } else { "1" };
        assert_eq!(cells[col("calibrated_references")], want, "{line}");
        assert!(cells[col("calibrated_ai")].parse::<f64>().is_ok(), "{line}");
    }
    // The size rule uses the same references but needs 3 of them: here 1-2, so it decides nothing.
    for line in with.lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells[col("size_references")], cells[col("calibrated_references")], "{line}");
        assert_eq!(cells[col("size_z")], "", "{line}");
    }
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(merged.join("metrics.json")).unwrap()).unwrap();
    let rules: Vec<&str> = m["rules"].as_array().unwrap().iter().map(|r| r["rule"].as_str().unwrap()).collect();
    assert!(rules.contains(&"calibrated") && !rules.contains(&"size"), "{m}");
    assert!(merged.join("calibration.json").exists());
    // All four as references (3 for each model, itself left out): the size rule decides every row.
    let cal4 = d.path().join("calibration4.json");
    ok(&quarantine(&["calibrate", whole.to_str().unwrap(), "--out", cal4.to_str().unwrap(), "--assume-clean"]));
    ok(&quarantine(&[&args[..], &["--bootstrap", "50", "--calibration", cal4.to_str().unwrap()]].concat()));
    let with4 = std::fs::read_to_string(merged.join("scan.csv")).unwrap();
    for line in with4.lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells[col("size_references")], "3", "{line}");
        assert!(
            cells[col("size_z")].parse::<f64>().is_ok() && cells[col("size_target")].parse::<u32>().is_ok(),
            "{line}"
        );
    }
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(merged.join("metrics.json")).unwrap()).unwrap();
    assert!(m["rules"].as_array().unwrap().iter().any(|r| r["rule"] == "size"), "{m}");
    // `detect --calibration` on one member gives the scan's calibrated decisions (same settings and
    // seed), and says so; `--calibrated-rule size` makes the size rule's the verdict.
    let model = zoo.join("id-0000/model.safetensors");
    let det = d.path().join("det");
    let fast_detect: Vec<&str> = FAST[..8].to_vec();
    let detect_args =
        [&["detect", "--model", model.to_str().unwrap(), "--out", det.to_str().unwrap()][..], &fast_detect].concat();
    let alone = quarantine(&[&detect_args[..], &["--calibrated-rule", "size"]].concat());
    assert!(!alone.status.success() && String::from_utf8_lossy(&alone.stderr).contains("--calibration"));
    let o = quarantine(
        &[&detect_args[..], &["--calibration", cal4.to_str().unwrap(), "--calibrated-rule", "size"]].concat(),
    );
    let said = ok(&o);
    assert!(
        said.contains("size rule")
            && said.contains("3 clean cnn references")
            && said.contains("uncalibrated consensus"),
        "{said}"
    );
    let rec: serde_json::Value = serde_json::from_slice(&std::fs::read(det.join("detect.json")).unwrap()).unwrap();
    let line0 = with4.lines().nth(1).unwrap().split(',').map(str::to_string).collect::<Vec<_>>();
    assert!(line0[col("id")] == "id-0000");
    let scan_ai: f64 = line0[col("calibrated_ai")].parse().unwrap();
    let det_ai = rec["calibrated"]["anomaly_index"].as_f64().unwrap_or(-1.0);
    assert!((scan_ai - det_ai).abs() < 1e-5, "scan {scan_ai} vs detect {det_ai}");
    assert_eq!(rec["calibrated"]["references"].to_string(), line0[col("calibrated_references")]);
    let (scan_z, det_z): (f64, f64) = (line0[col("size_z")].parse().unwrap(), rec["size"]["z"].as_f64().unwrap());
    assert!((scan_z - det_z).abs() < 1e-5, "scan {scan_z} vs detect {det_z}");
    assert_eq!(rec["size"]["label"].to_string(), line0[col("size_target")]);
    assert_eq!(rec["trojaned"], rec["size"]["trojaned"]);
    assert!(rec["command"]
        .as_str()
        .unwrap()
        .ends_with(&format!("--calibration {} --calibrated-rule size", cal4.display())));

    // Without it again: the plain table, and no stale calibration beside it.
    ok(&quarantine(&[&args[..], &["--bootstrap", "50"]].concat()));
    assert_eq!(std::fs::read_to_string(merged.join("scan.csv")).unwrap(), merged_csv);
    assert!(!merged.join("calibration.json").exists());

    // Killed mid-scan (one row missing): a rerun redoes only that model.
    std::fs::remove_file(whole.join("rows/id-0002.json")).unwrap();
    let stderr = scan(&[&zoo], &whole, &[]);
    assert!(stderr.contains("1 scanned now, 3 already done"), "{stderr}");
    assert_eq!(comparable(&std::fs::read_to_string(whole.join("scan.csv")).unwrap()), comparable(&csv));
}

#[test]
fn a_truncated_checkpoint_and_a_hostile_pickle_become_error_rows() {
    let d = tempfile::tempdir().unwrap();
    let flat = d.path().join("flat");
    std::fs::create_dir(&flat).unwrap();
    // A good model: a tiny cnn trained one epoch.
    let good = d.path().join("good");
    ok(&quarantine(&["train", "--epochs", "1", "--out", good.to_str().unwrap()]));
    std::fs::copy(good.join("model.safetensors"), flat.join("a-good.safetensors")).unwrap();
    std::fs::copy(good.join("model.json"), flat.join("a-good.json")).unwrap();
    let bytes = std::fs::read(good.join("model.safetensors")).unwrap();
    std::fs::write(flat.join("b-truncated.safetensors"), &bytes[..bytes.len() / 3]).unwrap();
    let hostile = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/torchfile/tests/fixtures/malicious_zip.pt");
    std::fs::copy(hostile, flat.join("c-hostile.pt")).unwrap();
    let out = d.path().join("scan");
    let stderr = scan(&[&flat], &out, &[]);
    assert!(stderr.contains("3 models in this shard, 3 scanned now, 0 already done, 2 error rows"), "{stderr}");
    let csv = std::fs::read_to_string(out.join("scan.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(lines[1].starts_with("a-good.safetensors,") && lines[1].contains(",ok,"), "{}", lines[1]);
    assert!(lines[2].contains(",error,") && lines[2].contains("b-truncated.safetensors"), "{}", lines[2]);
    assert!(lines[3].contains(",error,") && lines[3].contains("refusing to load"), "{}", lines[3]);
    // Nothing to measure without ground truth, and the report still says what happened.
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!((m["errors"].as_u64(), m["unlabelled"].as_u64()), (Some(2), Some(1)));
    assert!(std::fs::read_to_string(out.join("report.html")).unwrap().contains("c-hostile.pt"));
}

#[test]
fn the_committed_zoo_specs_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/zoos");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        quarantine::pipeline::zoo::ZooSpec::load(&e.unwrap().path()).unwrap();
        n += 1;
    }
    assert!(n >= 2, "a tuning half and a held-back half");
    // The issue's split: a tuning half and a held-back half of at least 30 models and 2
    // architectures each (the smaller zoos beside them answer single questions, e.g. the WaNet
    // tuning zoo and the fifth held-back zoo of the warp inversion).
    for half in ["builtin-tune.toml", "builtin-heldout.toml"] {
        let spec = quarantine::pipeline::zoo::ZooSpec::load(&dir.join(half)).unwrap();
        assert!(spec.models >= 30 && spec.archs.len() >= 2, "{spec:?}");
    }
}
