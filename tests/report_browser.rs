//! The HTML report renders in a real browser: a `detect` run's report.html is opened in headless
//! Chromium (scripts/setup-chromium.sh installs it), every inlined image must have loaded, and a
//! screenshot is taken.
use std::path::Path;
use std::process::Command;

use quarantine::data::Normalization;
use quarantine::model::{save_checkpoint, Arch, CheckpointInfo, Model, ModelMeta, Versions};
use tch::Device;

fn chromium() -> String {
    let c = std::env::var("QUARANTINE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&c).exists(),
        "{c} not found: run `bash scripts/setup-chromium.sh` (the README's test command does)"
    );
    c
}

fn headless(args: &[&str], profile: &Path) -> std::process::Output {
    Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn detect_report_renders_with_every_image() {
    let d = tempfile::tempdir().unwrap();
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
    let ckpt = d.path().join("model.safetensors");
    save_checkpoint(&ckpt, &model, &info).unwrap();
    let out = d.path().join("det");
    let o = Command::new(env!("CARGO_BIN_EXE_quarantine"))
        .args(["--threads", "2", "detect", "--model", ckpt.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .args([
            "--steps",
            "3",
            "--k",
            "2",
            "--score-samples",
            "128",
            "--seeds",
            "noise:16",
            "--free-score-data",
            "noise",
            "--reverse-epochs",
            "2",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();

    // A copy with a probe that records, after load, how many images there are and which failed.
    let probe = html.replace(
        "</body>",
        "<script>window.addEventListener('load',()=>{const i=[...document.images];const bad=i.filter(x=>!(x.complete&&x.naturalWidth>0)).map(x=>x.alt);\
         document.body.setAttribute('data-total',i.length);document.body.setAttribute('data-broken',bad.length+':'+bad.join('|'));});</script></body>",
    );
    let probe_path = d.path().join("probe.html");
    std::fs::write(&probe_path, probe).unwrap();
    let dom = headless(
        &["--virtual-time-budget=10000", "--dump-dom", &format!("file://{}", probe_path.display())],
        &d.path().join("p1"),
    );
    let dom = String::from_utf8_lossy(&dom.stdout).to_string();
    let attr =
        |name: &str| dom.split(&format!("{name}=\"")).nth(1).and_then(|s| s.split('"').next()).map(str::to_string);
    // dynamics + l1 (dense, ticket) + 10 recovered triggers each for dense and ticket
    assert_eq!(attr("data-total").as_deref(), Some("23"), "DOM: {}", &dom[..dom.len().min(2000)]);
    assert_eq!(attr("data-broken").as_deref(), Some("0:"), "broken images");

    let shot = d.path().join("report.png");
    let o = headless(
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1100,1400",
            &format!("file://{}", out.join("report.html").display()),
        ],
        &d.path().join("p2"),
    );
    assert!(shot.exists(), "no screenshot: {}", String::from_utf8_lossy(&o.stderr));
    let img = image::open(&shot).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (1100, 1400));
    let first = img.get_pixel(0, 0);
    let differing = img.pixels().filter(|p| *p != first).count();
    assert!(differing > 20_000, "screenshot nearly blank ({differing} pixels differ)");
}
