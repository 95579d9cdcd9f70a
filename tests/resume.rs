//! Interrupted runs: `train` and `prune --method imp` killed with SIGKILL at random points and
//! continued with `--resume` end bit-for-bit equal to an uninterrupted run (CPU, one thread, same
//! seed), and no final file is ever half-written; Ctrl-C (SIGINT) stops `train` cleanly with exit code
//! 130 and a resumable state. Also: the same command twice gives identical JSON (determinism).
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rand::{Rng, SeedableRng};

fn folder(dir: &Path) {
    for split in ["train", "test"] {
        for (c, v) in [("a", 200u8), ("b", 40u8), ("c", 120u8)] {
            let d = dir.join(split).join(c);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..40u32 {
                let img = image::GrayImage::from_fn(16, 16, |x, y| {
                    image::Luma([v.wrapping_add(((x * 13 + y * 7 + i * 5) % 50) as u8)])
                });
                img.save(d.join(format!("{i:03}.png"))).unwrap();
            }
        }
    }
}

fn train(data: &str, out: &Path, resume: bool) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_quarantine"));
    c.args([
        "--threads",
        "1",
        "train",
        "--data",
        data,
        "--arch",
        "cnn",
        "--epochs",
        "30",
        "--batch-size",
        "16",
        "--seed",
        "7",
        "--attack",
        "badnets",
        "--poison-ratio",
        "0.1",
        "--trigger-size",
        "3",
        "--out",
    ])
    .arg(out);
    if resume {
        c.arg("--resume");
    }
    c.stdout(Stdio::null()).stderr(Stdio::null());
    c
}

/// Every file with a final name parses (a half-written one would not), in sub-folders too.
fn check_final_files(out: &Path) {
    for e in std::fs::read_dir(out).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            check_final_files(&p);
            continue;
        }
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".json") {
            serde_json::from_slice::<serde_json::Value>(&std::fs::read(&p).unwrap())
                .unwrap_or_else(|e| panic!("{name} is not whole JSON: {e}"));
        } else if name.ends_with(".safetensors") {
            torchfile::load(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
        } else if name == "metrics.jsonl" {
            for line in std::fs::read_to_string(&p).unwrap().lines() {
                serde_json::from_str::<serde_json::Value>(line).unwrap();
            }
        }
    }
}

/// Starts the command (`--resume` after the first try), SIGKILLs it after a random delay drawn from
/// `delay_ms`, checks that no half-written file is left, and repeats until a run finishes; then runs
/// it once more with `--resume`. Returns the number of kills.
fn kill_until_done(cmd: impl Fn(bool) -> Command, out: &Path, delay_ms: std::ops::Range<u64>, seed: u64) -> usize {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut kills = 0;
    for attempt in 0..40 {
        let mut child = cmd(attempt > 0).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(rng.gen_range(delay_ms.clone())));
        match child.try_wait().unwrap() {
            Some(status) => {
                assert!(status.success(), "attempt {attempt} failed");
                break;
            }
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                if out.exists() {
                    check_final_files(out);
                }
            }
        }
    }
    // Finish whatever is left.
    assert!(cmd(true).status().unwrap().success());
    kills
}

#[test]
fn sigkill_then_resume_is_bit_identical_to_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    folder(tmp.path());
    let data = format!("folder:{}", tmp.path().display());
    let whole = tmp.path().join("whole");
    let t0 = std::time::Instant::now();
    assert!(train(&data, &whole, false).status().unwrap().success());
    // Kill points are drawn relative to how long a whole run takes on this machine.
    let whole_ms = t0.elapsed().as_millis() as u64;

    let cut = tmp.path().join("cut");
    let kills = kill_until_done(|resume| train(&data, &cut, resume), &cut, whole_ms / 10..whole_ms / 2 + 2, 42);
    assert!(kills >= 2, "the run finished before it could be interrupted twice ({kills})");
    check_final_files(&cut);
    for f in ["model.safetensors", "train-state.safetensors", "plan.json"] {
        assert!(
            std::fs::read(whole.join(f)).unwrap() == std::fs::read(cut.join(f)).unwrap(),
            "{f} differs after {kills} kills"
        );
    }
    let metrics = |p: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(p.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v.as_object_mut().unwrap().retain(|k, _| k != "seconds" && k != "images_per_second");
                v
            })
            .collect()
    };
    let (a, b) = (metrics(&whole), metrics(&cut));
    assert_eq!(a.len(), 30);
    assert_eq!(a, b);
}

#[test]
fn same_command_same_seed_gives_identical_json() {
    let tmp = tempfile::tempdir().unwrap();
    folder(tmp.path());
    let data = format!("folder:{}", tmp.path().display());
    let run = |name: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_quarantine"))
            .args([
                "--threads",
                "1",
                "--json",
                "train",
                "--data",
                &data,
                "--arch",
                "cnn",
                "--epochs",
                "2",
                "--batch-size",
                "16",
                "--seed",
                "3",
                "--out",
            ])
            .arg(tmp.path().join(name))
            .output()
            .unwrap();
        assert!(out.status.success());
        let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_object_mut().unwrap().remove("model");
        v
    };
    assert_eq!(run("a"), run("b"));
    assert!(
        std::fs::read(tmp.path().join("a/model.safetensors")).unwrap()
            == std::fs::read(tmp.path().join("b/model.safetensors")).unwrap(),
        "model weights differ"
    );
}

fn imp(data: &str, out: &Path, resume: bool) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_quarantine"));
    c.args([
        "--threads",
        "1",
        "prune",
        "--method",
        "imp",
        "--data",
        data,
        "--arch",
        "cnn",
        "--epochs",
        "6",
        "--rewind-epoch",
        "1",
        "--steps",
        "4",
        "--batch-size",
        "16",
        "--seed",
        "5",
    ])
    .args(["--attack", "badnets", "--poison-ratio", "0.1", "--trigger-size", "3", "--out"])
    .arg(out);
    if resume {
        c.arg("--resume");
    }
    c.stdout(Stdio::null()).stderr(Stdio::null());
    c
}

#[test]
fn imp_sigkill_then_resume_is_bit_identical() {
    let tmp = tempfile::tempdir().unwrap();
    folder(tmp.path());
    let data = format!("folder:{}", tmp.path().display());
    let whole = tmp.path().join("whole");
    let t0 = std::time::Instant::now();
    assert!(imp(&data, &whole, false).status().unwrap().success());
    let whole_ms = t0.elapsed().as_millis() as u64;
    let cut = tmp.path().join("cut");
    let kills = kill_until_done(|resume| imp(&data, &cut, resume), &cut, whole_ms / 10..whole_ms / 3 + 2, 7);
    assert!(kills >= 2, "IMP finished before it could be interrupted twice ({kills})");
    check_final_files(&cut);
    let mut compared = 0;
    for step in 1..=4 {
        for f in [format!("tickets/step-{step:03}.safetensors"), format!("tickets/step-{step:03}.mask.safetensors")] {
            assert!(
                std::fs::read(whole.join(&f)).unwrap() == std::fs::read(cut.join(&f)).unwrap(),
                "{f} differs after {kills} kills"
            );
            compared += 1;
        }
    }
    for round in 0..4 {
        let f = format!("round-{round:03}/trained.safetensors");
        assert!(
            std::fs::read(whole.join(&f)).unwrap() == std::fs::read(cut.join(&f)).unwrap(),
            "{f} differs after {kills} kills"
        );
        compared += 1;
    }
    assert_eq!(compared, 12);
}

/// Runs a `train` command, sends it SIGINT once its first epoch's state is on disk (the tensors
/// are written last) and returns its output.
#[cfg(unix)]
fn ctrl_c_after_first_state(mut cmd: Command, out: &Path) -> std::process::Output {
    cmd.stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let t0 = std::time::Instant::now();
    while !out.join("train-state.safetensors").exists() {
        assert!(t0.elapsed() < Duration::from_secs(120), "no state written");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    child.wait_with_output().unwrap()
}

/// Writes the test data set under `dir` and trains on it uninterrupted into `dir/whole`; returns
/// the data spec and that folder, the reference the interrupted runs are compared with.
fn uninterrupted_run(dir: &Path) -> (String, PathBuf) {
    folder(dir);
    let data = format!("folder:{}", dir.display());
    let whole = dir.join("whole");
    assert!(train(&data, &whole, false).status().unwrap().success());
    (data, whole)
}

#[cfg(unix)]
#[test]
fn ctrl_c_saves_state_exits_130_and_resumes_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, whole) = uninterrupted_run(tmp.path());
    let cut = tmp.path().join("cut");
    let out = ctrl_c_after_first_state(train(&data, &cut, false), &cut);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("--resume") && err.contains("train-state.json"), "{err}");
    assert!(!cut.join("model.safetensors").exists(), "an interrupted run must not look finished");
    check_final_files(&cut);
    assert!(train(&data, &cut, true).status().unwrap().success());
    assert!(
        std::fs::read(whole.join("model.safetensors")).unwrap()
            == std::fs::read(cut.join("model.safetensors")).unwrap()
    );
}

/// A kill between the two writes of a training state leaves `train-state.json` one epoch ahead of
/// `train-state.safetensors`; `--resume` must go on from the tensors' epoch, not train it twice.
#[cfg(unix)]
#[test]
fn resume_trusts_the_tensors_epoch_when_the_json_is_ahead() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, whole) = uninterrupted_run(tmp.path());
    // The tensors of an early epoch: stop a run with Ctrl-C once its first state exists.
    let early = tmp.path().join("early");
    ctrl_c_after_first_state(train(&data, &early, false), &early);
    // A finished run whose tensors are rolled back to that epoch, its JSON left at the end.
    let cut = tmp.path().join("cut");
    assert!(train(&data, &cut, false).status().unwrap().success());
    std::fs::copy(early.join("train-state.safetensors"), cut.join("train-state.safetensors")).unwrap();
    std::fs::remove_file(cut.join("model.safetensors")).unwrap();
    assert!(train(&data, &cut, true).status().unwrap().success());
    assert!(
        std::fs::read(whole.join("model.safetensors")).unwrap()
            == std::fs::read(cut.join("model.safetensors")).unwrap(),
        "resumed model differs"
    );
}
