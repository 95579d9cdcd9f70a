//! Golden check against PyTorch (tools/golden_reverse.py), batched = label-by-label, verdict logic,
//! and an end-to-end detection of a BadNets target.
use std::collections::HashMap;
use std::path::Path;

use tch::{Device, Tensor};

use super::optim::InputSpace;
use super::*;
use crate::data::{Augment, ImageSet, Normalization};
use crate::model::{from_raw, Arch, ModelMeta};

fn golden() -> (HashMap<String, Tensor>, Model) {
    let p = Path::new("tests/golden/reverse.safetensors");
    let sd = torchfile::load(p).unwrap();
    let mut g = HashMap::new();
    let mut model_sd = vec![];
    for (k, raw) in sd.tensors {
        match k.strip_prefix("model.") {
            Some(n) => model_sd.push((n.to_string(), raw)),
            None => {
                g.insert(k.clone(), from_raw(&raw, p, &k).unwrap());
            }
        }
    }
    let model = Model::new(
        ModelMeta { arch: Arch::Cnn, in_channels: 3, height: 8, width: 8, num_classes: 4, script: None },
        Device::Cpu,
    )
    .unwrap();
    model.load_state_dict(&model_sd, p).unwrap();
    (g, model)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn two_batched_steps_match_pytorch_per_label_loop() {
    let (g, model) = golden();
    let norm = Normalization::cifar10();
    for (name, space, kind) in
        [("pixel_ce", Space::Pixel, LossKind::Ce), ("normalized_cw", Space::Normalized, LossKind::Cw)]
    {
        let cfg = ReverseConfig { space, loss: kind, ..Default::default() };
        let mut vars = TriggerVars::new(&g["am0"], &g["ap0"], &[1, 3], &cfg, Device::Cpu);
        vars.schedules[1].cost = INIT_COST.map(|c| c * 1.5);
        let input = InputSpace::new(space, &norm, 3, Device::Cpu);
        for s in 1..=2 {
            let (loss, _) = vars.step(&model, &input, &g[&format!("{name}.x{s}")], kind);
            let want: Vec<f32> = Vec::try_from(&g[&format!("{name}.loss{s}")]).unwrap();
            for (a, b) in loss.iter().zip(&want) {
                assert!((a - *b as f64).abs() < 1e-5, "{name} step {s}: loss {loss:?} vs {want:?}");
            }
            let (dm, dp) =
                (max_diff(&vars.a_m, &g[&format!("{name}.am{s}")]), max_diff(&vars.a_p, &g[&format!("{name}.ap{s}")]));
            assert!(dm < 1e-5 && dp < 1e-5, "{name} step {s}: a_m off by {dm:e}, a_p by {dp:e}");
        }
    }
}

fn tiny_model(seed: i64) -> Model {
    tch::manual_seed(seed);
    Model::new(
        ModelMeta { arch: Arch::Cnn, in_channels: 1, height: 8, width: 8, num_classes: 4, script: None },
        Device::Cpu,
    )
    .unwrap()
}

#[test]
fn batched_equals_label_by_label() {
    let model = tiny_model(3);
    let norm = Normalization::mnist();
    let seeds = Seeds::Noise { n: 6 };
    let base = ReverseConfig { epochs: 3, batch_size: Some(3), seed: 11, ..Default::default() };
    let together = reverse_engineer(&model, &norm, &seeds, &base, &[]).unwrap();
    assert_eq!(together.iter().map(|r| r.label).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    for chunk in [1, 3] {
        let cfg = ReverseConfig { label_chunk: Some(chunk), ..base.clone() };
        let apart = reverse_engineer(&model, &norm, &seeds, &cfg, &[]).unwrap();
        for (a, b) in together.iter().zip(&apart) {
            assert_eq!((a.label, a.reached, a.epoch), (b.label, b.reached, b.epoch));
            let d = a
                .mask
                .iter()
                .zip(&b.mask)
                .chain(a.pattern.iter().zip(&b.pattern))
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(d < 1e-4, "chunk {chunk}, label {}: differs by {d}", a.label);
            assert!((a.l1 - b.l1).abs() < 1e-3);
        }
    }
    // A subset of labels gets the same triggers as in the full run (per-label init and seeds).
    let sub = reverse_engineer(&model, &norm, &seeds, &base, &[2]).unwrap();
    assert!((sub[0].l1 - together[2].l1).abs() < 1e-3);
    assert_eq!(together[0].history.len(), 3);
    // Errors name the problem.
    assert!(reverse_engineer(&model, &norm, &seeds, &base, &[4]).unwrap_err().to_string().contains("label 4"));
    assert!(reverse_engineer(&model, &norm, &seeds, &base, &[1, 1]).unwrap_err().to_string().contains("twice"));
}

/// Labels that stop early leave the batch without disturbing the others: every label's result
/// equals a full run of as many epochs as it ran (its Adam moments and schedule travel with it),
/// the run is deterministic, and the far cut stops every label but the smallest at once.
#[test]
fn early_stopped_labels_match_a_full_run_of_their_epochs() {
    let model = tiny_model(3);
    let norm = Normalization::mnist();
    let seeds = Seeds::Noise { n: 6 };
    let stop = EarlyStop { patience: 2, min_delta: 0.5, far: Some(1.0001) };
    let cfg = ReverseConfig { epochs: 8, batch_size: Some(3), seed: 11, success_threshold: 0.0, ..Default::default() };
    let early = ReverseConfig { early_stop: Some(stop), ..cfg.clone() };
    let r = reverse_engineer(&model, &norm, &seeds, &early, &[]).unwrap();
    let again = reverse_engineer(&model, &norm, &seeds, &early, &[]).unwrap();
    assert!(r.iter().zip(&again).all(|(a, b)| a.mask == b.mask && a.epochs_run == b.epochs_run));
    let smallest = r.iter().min_by(|a, b| a.l1.partial_cmp(&b.l1).unwrap()).unwrap().label;
    for x in &r {
        // Every label succeeds at epoch 1; all but the smallest are cut there.
        let want = if x.label == smallest { 3 } else { 1 };
        assert_eq!((x.epochs_run, x.epoch, x.history.len()), (want, want, want), "label {}", x.label);
        let full = ReverseConfig { epochs: x.epochs_run, early_stop: None, ..cfg.clone() };
        let f = &reverse_engineer(&model, &norm, &seeds, &full, &[x.label]).unwrap()[0];
        let d = x.mask.iter().zip(&f.mask).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(d < 1e-5 && (x.l1 - f.l1).abs() < 1e-3, "label {}: differs by {d}", x.label);
        assert_eq!(x.final_cost, f.final_cost);
    }
    // Without the far cut the labels stop on their own patience; with it off, all epochs run.
    let own = ReverseConfig { early_stop: Some(EarlyStop { far: None, ..stop }), ..cfg.clone() };
    assert!(reverse_engineer(&model, &norm, &seeds, &own, &[]).unwrap().iter().all(|x| x.epochs_run < 8));
    let off = ReverseConfig { early_stop: None, ..cfg.clone() };
    assert!(reverse_engineer(&model, &norm, &seeds, &off, &[]).unwrap().iter().all(|x| x.epochs_run == 8));
    let bad = ReverseConfig { early_stop: Some(EarlyStop { patience: 0, ..stop }), ..cfg };
    assert!(bad.validate().unwrap_err().to_string().contains("patience"));
}

#[test]
fn unreached_labels_are_never_the_verdict() {
    let model = tiny_model(4);
    let norm = Normalization::mnist();
    let seeds = Seeds::Noise { n: 4 };
    let cfg = ReverseConfig { epochs: 2, success_threshold: 1.01, ..Default::default() };
    let r = reverse_engineer(&model, &norm, &seeds, &cfg, &[0, 1, 2]).unwrap();
    assert!(r.iter().all(|x| !x.reached && x.epoch == 2));
    let v = verdict(&r, 2.0, AnomalyScale::Log);
    assert_eq!((v.detected_target, v.anomaly_index, v.flagged), (None, None, false));
    // Every epoch succeeds: the kept trigger is the last epoch's, and the smallest l1 wins.
    let cfg = ReverseConfig { epochs: 2, success_threshold: 0.0, ..Default::default() };
    let mut r = reverse_engineer(&model, &norm, &seeds, &cfg, &[0, 1, 2]).unwrap();
    assert!(r.iter().all(|x| x.reached && x.epoch == 2));
    r[1].l1 = 0.5;
    r[0].reached = false;
    r[0].l1 = 0.1;
    assert_eq!(verdict(&r, 2.0, AnomalyScale::Log).detected_target, Some(1));
}

#[test]
fn outputs_are_written() {
    let model = tiny_model(5);
    let norm = Normalization::mnist();
    let cfg = ReverseConfig { epochs: 1, space: Space::Normalized, ..Default::default() };
    let r = reverse_engineer(&model, &norm, &Seeds::Noise { n: 2 }, &cfg, &[0, 2]).unwrap();
    let v = verdict(&r, 2.0, AnomalyScale::Log);
    let d = tempfile::tempdir().unwrap();
    crate::report::write_reverse(d.path(), &r, &ReverseReport::new(&r, &v, None, None)).unwrap();
    for f in [
        "reverse.json",
        "l1.png",
        "l1.svg",
        "triggers.safetensors",
        "history.jsonl",
        "label2_mask.png",
        "label2_pattern.png",
        "label0_trigger.png",
    ] {
        assert!(d.path().join(f).exists(), "{f}");
    }
    let sd = torchfile::load(&d.path().join("triggers.safetensors")).unwrap();
    let (_, m) = sd.tensors.iter().find(|(k, _)| k == "mask.2").unwrap();
    assert_eq!(m.shape, vec![1, 8, 8]);
    assert_eq!(std::fs::read_to_string(d.path().join("history.jsonl")).unwrap().lines().count(), 2);
}

/// A cnn trained 2 epochs on half the builtin data (no augmentation) with 10% BadNets poisoning
/// (paper-gray trigger, reference location, target 3) must be named by reverse engineering from
/// 20 noise seeds (100 epochs; at 30 epochs label 2 still has the smallest mask, at 60 the target
/// wins). The recovered trigger must carry the attack. The anomaly index is printed, not asserted:
/// on this dense model it stays below 2 because the other labels' norms spread widely (docs/METHOD.md §7: dense
/// models are the hard case).
#[test]
#[ignore = "end-to-end: trains a model and reverses 100 epochs (about 2 minutes on 2 cores); run with --ignored"]
fn detects_the_badnets_target_from_noise() {
    use crate::attack::{attack_success, Attack, AttackConfig, TriggerSpec};
    use crate::train::{fit, FitOptions, TrainConfig, TrainData};
    let t0 = std::time::Instant::now();
    let split = crate::data::builtin().unwrap();
    let test = split.test.as_ref().unwrap();
    let mut cfg = AttackConfig::badnets(TriggerSpec::PaperGray, 3, 0);
    cfg.poison_ratio = 0.1;
    let attack = Attack::new(cfg, (28, 28, 1), 10).unwrap();
    let half = split.train.subset(&(0..split.train.n).step_by(2).collect::<Vec<_>>());
    let (train, _) = attack.poison_training_set(&half, None).unwrap();
    let norm = Normalization::mnist();
    tch::manual_seed(0);
    let model = Model::new(
        ModelMeta { arch: Arch::Cnn, in_channels: 1, height: 28, width: 28, num_classes: 10, script: None },
        Device::Cpu,
    )
    .unwrap();
    let mut tc = TrainConfig::reference(2, 0, Augment::NONE);
    tc.milestones = vec![];
    fit(&model, &TrainData { train: &train, test: None, norm: &norm }, &tc, FitOptions::default(), |_, _| Ok(()))
        .unwrap();
    let asr = attack_success(&model, test, &attack, &norm);
    let trained = t0.elapsed().as_secs_f64();
    assert!(asr.attack_success_rate_nontarget > 0.9, "the backdoor was not learned: {asr:?}");

    retain_freed_memory();
    let rc = ReverseConfig { epochs: 100, ..Default::default() };
    let r = reverse_engineer(&model, &norm, &Seeds::Noise { n: 20 }, &rc, &[]).unwrap();
    let v = verdict(&r, 2.0, AnomalyScale::Log);
    let truth = "reference-upper-right:5".parse::<TrueTrigger>().unwrap().mask(28, 28).unwrap();
    let t = &r[3];
    let rasr = recovered_asr(&model, &norm, rc.space, test, 3, &t.mask, &t.pattern, 25);
    let overlap = iou(&binarize_top_k(&t.mask, 25), &truth);
    eprintln!(
        "trained in {trained:.1}s (ASR {:.3}), reversed in {:.1}s: l1 {:?}, reached {:?}, verdict {v:?}, target recovered ASR {rasr:.3}, IoU {overlap:.2}",
        asr.attack_success_rate_nontarget,
        t0.elapsed().as_secs_f64() - trained,
        r.iter().map(|x| (x.l1 * 10.0).round() / 10.0).collect::<Vec<_>>(),
        r.iter().map(|x| x.reached).collect::<Vec<_>>(),
    );
    assert_eq!(v.detected_target, Some(3));
    assert!(rasr > 0.9, "recovered trigger ASR {rasr}");
}

/// `sample`: each epoch is one step on a random draw of the seeds, its accuracy measured on them.
/// Drawing every seed is the reference run exactly (noise and image seeds); a smaller draw is
/// deterministic under the seed, changes with it, and counts accuracy over the draw only.
#[test]
fn a_sample_per_epoch_is_one_step_on_a_random_draw() {
    let model = tiny_model(3);
    let norm = Normalization::mnist();
    let pixels: Vec<u8> = (0..6 * 64).map(|i| (i * 37 % 251) as u8).collect();
    let images = ImageSet {
        images: pixels,
        labels: vec![0; 6],
        n: 6,
        height: 8,
        width: 8,
        channels: 1,
        classes: (0..4).map(|i| i.to_string()).collect(),
    };
    let data = Seeds::Images { images, augment: Augment { crop_pad: 1, flip: true } };
    let base = ReverseConfig { epochs: 4, seed: 11, success_threshold: 0.5, ..Default::default() };
    let masks = |r: &[LabelResult]| r.iter().map(|x| x.mask.clone()).collect::<Vec<_>>();
    for seeds in [Seeds::Noise { n: 6 }, data] {
        let all = reverse_engineer(&model, &norm, &seeds, &base, &[]).unwrap();
        let drawn = ReverseConfig { sample: Some(6), ..base.clone() };
        assert_eq!(masks(&all), masks(&reverse_engineer(&model, &norm, &seeds, &drawn, &[]).unwrap()));
        let half = ReverseConfig { sample: Some(3), ..base.clone() };
        let a = reverse_engineer(&model, &norm, &seeds, &half, &[]).unwrap();
        assert_eq!(masks(&a), masks(&reverse_engineer(&model, &norm, &seeds, &half, &[]).unwrap()));
        assert_ne!(masks(&a), masks(&all));
        let other = ReverseConfig { seed: 12, ..half.clone() };
        assert_ne!(masks(&a), masks(&reverse_engineer(&model, &norm, &seeds, &other, &[]).unwrap()));
        for s in a.iter().flat_map(|x| &x.history) {
            let thirds = s.attack_success * 3.0;
            assert!((thirds - thirds.round()).abs() < 1e-9, "accuracy over 3 drawn seeds: {}", s.attack_success);
        }
    }
    assert!(ReverseConfig { sample: Some(0), ..base.clone() }.validate().is_err());
    let both = ReverseConfig { sample: Some(3), batch_size: Some(3), ..base };
    assert!(both.validate().unwrap_err().to_string().contains("not both"));
}
