//! CLI tests on tiny fixtures: the binary's files, JSON, exit codes and error messages.
use std::path::Path;
use std::process::Command;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_quarantine"));
    c.args(["--threads", "1"]);
    c
}

/// A tiny image folder: 2 classes (bright / dark 12x12 RGB images), `n` images each, train and test.
fn folder(dir: &Path, n: usize) {
    for split in ["train", "test"] {
        for (c, v) in [("a_bright", 220u8), ("b_dark", 30u8)] {
            let d = dir.join(split).join(c);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..n {
                let img = image::RgbImage::from_fn(12, 12, |x, y| {
                    image::Rgb([v.wrapping_add(((x * 7 + y * 3 + i as u32) % 20) as u8), v, v])
                });
                img.save(d.join(format!("{i:03}.png"))).unwrap();
            }
        }
    }
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn train_eval_export_inspect_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    folder(tmp.path(), 16);
    let data = format!("folder:{}", tmp.path().display());
    let out = tmp.path().join("run");
    let (code, stdout, stderr) = run(bin()
        .args([
            "train",
            "--data",
            &data,
            "--arch",
            "cnn",
            "--epochs",
            "3",
            "--batch-size",
            "8",
            "--lr",
            "0.05",
            "--json",
            "--out",
        ])
        .arg(&out));
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(v["clean_accuracy"].as_f64().unwrap() >= 0.9, "{v}");
    for f in ["model.safetensors", "model.json", "metrics.jsonl", "config.json", "train-state.json", "result.json"] {
        assert!(out.join(f).exists(), "{f}");
    }
    assert_eq!(std::fs::read_to_string(out.join("metrics.jsonl")).unwrap().lines().count(), 3);
    let sidecar: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("model.json")).unwrap()).unwrap();
    assert_eq!(sidecar["arch"], "cnn");
    assert_eq!(sidecar["num_classes"], 2);
    assert_eq!(sidecar["classes"][0], "a_bright");
    assert!(sidecar["data"]["train"]["sha256"].as_str().unwrap().len() == 64);

    // Results are never silently overwritten.
    let (code, _, stderr) =
        run(bin().args(["train", "--data", &data, "--arch", "cnn", "--epochs", "1", "--out"]).arg(&out));
    assert_eq!(code, 2);
    assert!(stderr.contains("--resume") && stderr.contains("model.safetensors"), "{stderr}");

    let model = out.join("model.safetensors");
    let (code, stdout, stderr) = run(bin().args(["eval", "--data", &data, "--json", "--model"]).arg(&model));
    assert_eq!(code, 0, "{stderr}");
    let e: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(e["clean_accuracy"], v["clean_accuracy"]);

    let pt = tmp.path().join("m.pt");
    let (code, _, stderr) = run(bin().args(["export", "--model"]).arg(&model).arg("--out").arg(&pt));
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, _) = run(bin().args(["inspect", "--json"]).arg(&pt));
    assert_eq!(code, 0);
    let i: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(i["format"], "Zip");
    assert!(i["tensors"].as_array().unwrap().iter().any(|t| t["name"] == "bn1.num_batches_tracked"));
    // The exported file, read back as a foreign checkpoint, evaluates the same.
    let (code, stdout, stderr) = run(bin()
        .args([
            "eval",
            "--data",
            &data,
            "--json",
            "--arch",
            "cnn",
            "--image-size",
            "12",
            "--normalize",
            "none",
            "--model",
        ])
        .arg(&pt));
    assert_eq!(code, 0, "{stderr}");
    let e2: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(e2["clean_accuracy"], v["clean_accuracy"]);
}

#[test]
fn bad_inputs_give_exit_code_2_and_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope.pt");
    let (code, _, stderr) = run(bin().args(["eval", "--arch", "resnet20s", "--model"]).arg(&missing));
    assert_eq!(code, 2);
    assert!(stderr.contains("nope.pt"), "{stderr}");

    let (code, _, stderr) =
        run(bin().args(["train", "--data", "cifar10:/no/such/dir", "--out"]).arg(tmp.path().join("x")));
    assert_eq!(code, 2);
    assert!(stderr.contains("/no/such/dir"), "{stderr}");

    // A pickle that calls os.system is refused, naming the callable, and nothing runs.
    let evil = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/torchfile/tests/fixtures/malicious_zip.pt");
    let (code, _, stderr) = run(bin().args(["inspect"]).arg(&evil));
    assert_eq!(code, 2);
    assert!(stderr.contains("malicious_zip.pt") && stderr.contains("system"), "{stderr}");

    let junk = tmp.path().join("junk.pth");
    std::fs::write(&junk, b"this is not a checkpoint").unwrap();
    let (code, _, stderr) = run(bin().args(["eval", "--arch", "resnet20s", "--model"]).arg(&junk));
    assert_eq!(code, 2);
    assert!(stderr.contains("junk.pth"), "{stderr}");

    let (code, _, stderr) =
        run(bin().args(["train", "--data", "builtin", "--normalize", "1,2,3", "--out"]).arg(tmp.path().join("y")));
    assert_eq!(code, 2);
    assert!(stderr.contains("--normalize"), "{stderr}");
}

#[test]
fn poison_writes_the_set_in_its_input_format_with_plan_and_pictures() {
    let tmp = tempfile::tempdir().unwrap();
    folder(tmp.path(), 10);
    let data = format!("folder:{}", tmp.path().display());
    let out = tmp.path().join("poisoned");
    let (code, stdout, stderr) = run(bin()
        .args([
            "poison",
            "--data",
            &data,
            "--attack",
            "badnets",
            "--trigger",
            "solid:255,0,0",
            "--trigger-size",
            "3",
            "--target",
            "1",
            "--poison-ratio",
            "0.25",
            "--poison-select",
            "random",
            "--seed",
            "5",
            "--json",
            "--out",
        ])
        .arg(&out));
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["poisoned"], 5);
    for f in ["plan.json", "trigger.png", "trigger.json", "poisoned-samples.png"] {
        assert!(out.join(f).exists(), "{f}");
    }
    let plan: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("plan.json")).unwrap()).unwrap();
    assert_eq!(plan["indices"].as_array().unwrap().len(), 5);
    // The written folder reads back: same size, the poisoned images relabelled to class 1 and
    // carrying the red patch at the reference location (rows/cols 12-3-3 = 6..9 of 12).
    let back = imagesets::folder(&out).unwrap();
    assert_eq!(back.train.n, 20);
    assert_eq!(back.test.as_ref().unwrap().n, 20);
    let reds = (0..back.train.n)
        .filter(|&i| {
            let p = &back.train.image(i)[(6 * 12 + 6) * 3..(6 * 12 + 6) * 3 + 3];
            p == [255, 0, 0]
        })
        .count();
    assert_eq!(reds, 5);
    assert!((0..back.train.n)
        .filter(|&i| back.train.image(i)[(6 * 12 + 6) * 3..(6 * 12 + 6) * 3 + 3] == [255, 0, 0])
        .all(|i| back.train.labels[i] == 1));
    // Not silently overwritten.
    let (code, _, stderr) = run(bin().args(["poison", "--data", &data, "--attack", "badnets", "--out"]).arg(&out));
    assert_eq!(code, 2, "{stderr}");
}
