//! TorchScript models (README "Any architecture"): the fixtures of tools/make_script_fixtures.py
//! (four architectures that are not built in, one also traced) give PyTorch's logits; hostile and
//! malformed archives are refused with the file named and nothing run; pruning, the Trojan score
//! and the winning ticket work on them, the ticket saved as TorchScript.
use std::path::{Path, PathBuf};
use std::process::Command;

use quarantine::model::{load_checkpoint, Arch, InputOverrides};
use quarantine::score::{recalibrate_bn, recalibrate_bn_script};
use tch::{Device, Kind, Tensor};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/script").join(name)
}

fn golden(name: &str) -> Tensor {
    let all = Tensor::read_safetensors(fixture("golden.safetensors")).unwrap();
    all.into_iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no {name}")).1
}

fn quarantine(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_quarantine")).args(["--threads", "2"]).args(args).output().unwrap()
}

/// `quarantine detect` on a fixture with a short path (`steps` steps scored from step 2), few epochs
/// and few synthesized seeds, into `out`, with `--json`.
fn quick_detect(model: &Path, out: &Path, steps: &str, epochs: &str, seeds: &str) -> std::process::Output {
    quarantine(&[
        "detect",
        "--model",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--steps",
        steps,
        "--score-from",
        "2",
        "--reverse-epochs",
        epochs,
        "--seeds",
        seeds,
        "--json",
    ])
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn four_foreign_architectures_give_pytorchs_logits() {
    let x = golden("input");
    for (file, name) in [
        ("wrn16_1.script.pt", "wrn16_1"),
        ("vgg_elu.script.pt", "vgg_elu"),
        ("vgg_elu.trace.pt", "vgg_elu"),
        ("mobilenet.script.pt", "mobilenet"),
        ("functional.script.pt", "functional"),
    ] {
        let (model, info, _) = load_checkpoint(&fixture(file), &InputOverrides::default(), Device::Cpu).unwrap();
        assert_eq!(model.meta.arch, Arch::Torchscript);
        assert_eq!(model.meta.input_shape(), (1, 28, 28), "{file}: shape inferred");
        assert_eq!(model.meta.num_classes, 10, "{file}: classes from one forward pass");
        assert!(info.imported_from.unwrap().contains("TorchScript"));
        let want = golden(&format!("{name}.logits"));
        let eval = tch::no_grad(|| model.forward_t(&x, false));
        let frozen = tch::no_grad(|| model.forward_frozen(&x));
        assert!(max_diff(&eval, &want) < 1e-4, "{file}: eval logits differ by {}", max_diff(&eval, &want));
        assert!(max_diff(&frozen, &want) < 1e-4, "{file}: frozen logits differ by {}", max_diff(&frozen, &want));
        // Masks cover every 4-D parameter, whatever its name (the functional model's `w1`, `w2`).
        let convs = model.conv_weight_names();
        assert!(!convs.is_empty() && convs.iter().all(|n| model.vs.variables()[n].dim() == 4), "{file}: {convs:?}");
        if name == "functional" {
            assert_eq!(convs, ["w1", "w2"]);
        }
        // Buffers are in the store too (BN statistics), shared with the module.
        let names: Vec<String> = model.named_tensors().into_iter().map(|(n, _)| n).collect();
        if name == "wrn16_1" {
            assert!(names.contains(&"blocks.0.bn1.running_var".to_string()), "{names:?}");
            let v = model.vs.variables()["fc.bias"].shallow_clone();
            let _ = tch::no_grad(|| v.shallow_clone().g_add_scalar_(1.0));
            let shifted = tch::no_grad(|| model.forward_t(&x, false));
            assert!((max_diff(&shifted, &(&want + 1.0))) < 1e-4, "writes to the store reach the module");
        }
    }
}

#[test]
fn hostile_and_malformed_archives_are_refused_with_the_file_named() {
    let ov = InputOverrides::default();
    let err = |p: &Path, ov: &InputOverrides| load_checkpoint(p, ov, Device::Cpu).unwrap_err().to_string();
    let e = err(&fixture("reads_file.script.pt"), &ov);
    assert!(e.contains("reads_file.script.pt") && e.contains("aten::from_file"), "{e}");
    // A denied op stays denied when the user allows it.
    let allow = InputOverrides { allow_ops: vec!["aten::from_file".into()], ..Default::default() };
    assert!(err(&fixture("reads_file.script.pt"), &allow).contains("aten::from_file"));
    let e = err(&fixture("custom_op.script.pt"), &ov);
    assert!(e.contains("custom_op.script.pt") && e.contains("evil::run") && e.contains("--allow-op"), "{e}");
    let e = err(&fixture("bad_output.script.pt"), &InputOverrides { channels: Some(1), ..Default::default() });
    assert!(e.contains("bad_output.script.pt") && e.contains("[N, classes]"), "{e}");
    let e = err(
        &fixture("flat28.script.pt"),
        &InputOverrides { channels: Some(1), image_size: Some(32), ..Default::default() },
    );
    assert!(e.contains("flat28.script.pt") && e.contains("1x32x32") && e.contains("784"), "{e}");
    let e = err(&fixture("wrn16_1.script.pt"), &InputOverrides { classes: Some(7), ..Default::default() });
    assert!(e.contains("7 classes") && e.contains("outputs 10"), "{e}");

    // Truncated and corrupted archives: an error naming the file, never a panic.
    let d = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("vgg_elu.script.pt")).unwrap();
    for (i, cut) in [bytes.len() / 2, bytes.len() - 30, 200].into_iter().enumerate() {
        let p = d.path().join(format!("cut{i}.pt"));
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let e = err(&p, &ov);
        assert!(e.contains(&format!("cut{i}.pt")), "{e}");
    }
    let mut flipped = bytes.clone();
    let code = flipped.windows(6).position(|w| w == b"torch.").unwrap();
    flipped[code..code + 6].copy_from_slice(b"os.sys");
    let p = d.path().join("flipped.pt");
    std::fs::write(&p, &flipped).unwrap();
    let e = err(&p, &ov);
    assert!(e.contains("flipped.pt"), "{e}");
}

#[test]
fn bn_recalibration_of_a_scripted_module_gives_the_batch_statistics() {
    let x = golden("input").repeat([8, 1, 1, 1]) + Tensor::randn([32, 1, 28, 28], (Kind::Float, Device::Cpu)) * 0.1;
    let (model, _, _) =
        load_checkpoint(&fixture("wrn16_1.script.pt"), &InputOverrides::default(), Device::Cpu).unwrap();
    recalibrate_bn(&model, &x).unwrap();
    // With running statistics equal to the batch statistics, eval mode computes what train mode
    // does on the same batch (up to the unbiased variance's N/(N-1), N >= 32·7·7).
    let eval = tch::no_grad(|| model.forward_t(&x, false));
    let train = tch::no_grad(|| model.try_forward_t(&x, true)).unwrap();
    assert!(max_diff(&eval, &train) < 2e-3, "{}", max_diff(&eval, &train));
    // A BN layer behind a fully pruned convolution sees only zeros: its statistics are zero, the
    // others' are recalibrated as before (found on a WRN-16-1 pruned to 2% density).
    let w = model.vs.variables()["blocks.5.conv1.weight"].shallow_clone();
    let _ = tch::no_grad(|| w.shallow_clone().zero_());
    recalibrate_bn(&model, &x).unwrap();
    assert_eq!(model.vs.variables()["blocks.5.bn2.running_var"].abs().sum(Kind::Double).double_value(&[]), 0.0);
    let eval = tch::no_grad(|| model.forward_t(&x, false));
    let train = tch::no_grad(|| model.try_forward_t(&x, true)).unwrap();
    assert!(max_diff(&eval, &train) < 2e-3, "{}", max_diff(&eval, &train));
    // A traced module's BN layers stay in their traced mode: a clear error, nothing changed silently.
    let (traced, _, _) =
        load_checkpoint(&fixture("vgg_elu.trace.pt"), &InputOverrides::default(), Device::Cpu).unwrap();
    let e = recalibrate_bn_script(&traced, &x).unwrap_err().to_string();
    assert!(e.contains("traced") && e.contains("--no-bn-recalibrate"), "{e}");
}

#[test]
fn detect_on_a_torchscript_model_saves_a_torchscript_ticket_with_the_same_logits() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("det");
    let model = fixture("functional.script.pt");
    let o = quick_detect(&model, &out, "4", "3", "synth:20:10");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ticket = out.join("winning-ticket.safetensors");
    let ts = out.join("winning-ticket.ts.pt");
    assert!(ts.exists() && out.join("winning-ticket.ts.json").exists());
    let ov = InputOverrides::default();
    let (a, _, _) = load_checkpoint(&ticket, &ov, Device::Cpu).unwrap();
    let (b, info, _) = load_checkpoint(&ts, &ov, Device::Cpu).unwrap();
    assert_eq!(info.meta.arch, Arch::Torchscript);
    let x = golden("input");
    let (la, lb) = tch::no_grad(|| (a.forward_t(&x, false), b.forward_t(&x, false)));
    assert_eq!(max_diff(&la, &lb), 0.0, "the TorchScript ticket is the ticket");
    // It is pruned: the masked entries of every 4-D parameter are zero in the saved module.
    let zeros: i64 =
        b.conv_weight_names().iter().map(|n| b.vs.variables()[n].eq(0.0).sum(Kind::Int64).int64_value(&[])).sum();
    assert!(zeros > 0, "the ticket's module holds the pruned weights");
    // The dense model is unchanged on disk (the ticket is a copy).
    let (dense, _, _) = load_checkpoint(&model, &ov, Device::Cpu).unwrap();
    let want = golden("functional.logits");
    assert!(max_diff(&tch::no_grad(|| dense.forward_t(&x, false)), &want) < 1e-4);
}

#[test]
fn eval_reads_a_torchscript_model_from_the_command_line() {
    let o = quarantine(&["eval", "--model", fixture("mobilenet.script.pt").to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["n"], 1000);
    assert!((0.0..=1.0).contains(&v["clean_accuracy"].as_f64().unwrap()));
    let o = quarantine(&["eval", "--model", fixture("custom_op.script.pt").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("evil::run"));
}

#[test]
fn eval_takes_a_plain_image_folder_whose_class_folders_are_label_numbers() {
    use quarantine::data::DataSpec;
    // Six clean images each of labels 3 and 7, as an auditor would hold them: no train/test split,
    // folders named by label, the other labels absent.
    let test = DataSpec::Builtin.load().unwrap().test.unwrap();
    let d = tempfile::tempdir().unwrap();
    let mut idx = vec![];
    for label in [3u32, 7] {
        std::fs::create_dir(d.path().join(label.to_string())).unwrap();
        for (k, i) in (0..test.n).filter(|&i| test.labels[i] == label).take(6).enumerate() {
            let px = test.images[i * 784..(i + 1) * 784].to_vec();
            image::GrayImage::from_raw(28, 28, px).unwrap().save(d.path().join(format!("{label}/{k}.png"))).unwrap();
            idx.push(i);
        }
    }
    let model = fixture("mobilenet.script.pt");
    let o = quarantine(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        &format!("folder:{}", d.path().display()),
        "--normalize",
        "mnist",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["n"], 12);
    // The same images with their true labels, evaluated in the library: the same loss (with the
    // folders' sorted positions 0 and 1 as labels it would differ).
    let (m, info, _) = load_checkpoint(&model, &InputOverrides::default(), Device::Cpu).unwrap();
    let r = quarantine::eval::evaluate(&m, &test.subset(&idx), &info.normalization, 100);
    assert!((v["loss"].as_f64().unwrap() - r.loss).abs() < 1e-5, "{v} vs {}", r.loss);
    assert_eq!(v["clean_accuracy"].as_f64().unwrap(), r.accuracy);
}

#[test]
fn imp_trains_a_torchscript_network_and_inspect_lists_it_without_running_it() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("imp");
    let init = fixture("functional.script.pt");
    let o = quarantine(&[
        "prune",
        "--method",
        "imp",
        "--model-init",
        init.to_str().unwrap(),
        "--epochs",
        "2",
        "--rewind-epoch",
        "1",
        "--epochs-per-round",
        "1",
        "--steps",
        "1",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = quarantine(&["score", "--run", run.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ticket = run.join("winning-ticket.ts.pt");
    assert!(ticket.exists());
    // The trained ticket differs from the initial archive, and reads back as TorchScript.
    let (t, _, _) = load_checkpoint(&ticket, &InputOverrides::default(), Device::Cpu).unwrap();
    let (i, _, _) = load_checkpoint(&init, &InputOverrides::default(), Device::Cpu).unwrap();
    let x = golden("input");
    assert!(max_diff(&tch::no_grad(|| t.forward_t(&x, false)), &tch::no_grad(|| i.forward_t(&x, false))) > 1e-3);
    // export writes the trained ticket (safetensors + sidecar naming the archive) as TorchScript.
    let exported = d.path().join("ticket.ts.pt");
    let o = quarantine(&[
        "export",
        "--model",
        run.join("winning-ticket.safetensors").to_str().unwrap(),
        "--out",
        exported.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (e, _, _) = load_checkpoint(&exported, &InputOverrides::default(), Device::Cpu).unwrap();
    assert_eq!(max_diff(&tch::no_grad(|| e.forward_t(&x, false)), &tch::no_grad(|| t.forward_t(&x, false))), 0.0);
    let o = quarantine(&["inspect", ticket.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["format"], "TorchScript");
    assert_eq!(v["traced"], false);
    assert!(v["ops"].as_array().unwrap().iter().any(|o| o == "aten::conv2d"));
    assert_eq!(v["tensors"].as_array().unwrap().len(), 9, "7 parameters and 2 buffers");
    let o = quarantine(&["inspect", fixture("reads_file.script.pt").to_str().unwrap()]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("aten::from_file"));
}

#[test]
fn detect_on_a_traced_module_scores_without_bn_recalibration_and_says_so() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("det");
    let model = fixture("vgg_elu.trace.pt");
    let o = quick_detect(&model, &out, "3", "2", "synth:10:5");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("traced?): scoring without BN recalibration"), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v.to_string().contains("\"bn_recalibrate\":false"), "{v}");
}
