//! `quarantine bench`: training and inference throughput through the same code paths as `train` and
//! `eval` (batching with augmentation, forward, backward, our SGD), on synthetic CIFAR-sized data.
//! tools/bench_torch.py does the same work in PyTorch; BENCHMARKS.md has both.
//!
//! `--score-steps N` also times N scored pruning steps (docs/METHOD.md §5), the unit of work of `score` and
//! `detect`: a ticket at density 0.8^10 (global magnitude mask), BN recalibration on the 1,024 score
//! samples, k = 10 masked finetuning steps (batch 128, crop + flip) and the 11 interpolation points
//! evaluated on the score samples. tools/bench_score_torch.py does the same in PyTorch.
use quarantine::choice::Choice;
use std::time::Instant;

use clap::Args;
use quarantine::control::Control;
use rand::{Rng, SeedableRng};
use tch::Device;

use quarantine::data::{Augment, Batches, ImageSet, Normalization};
use quarantine::model::{Arch, Model, ModelMeta};
use quarantine::prune::{Criterion, Masks, Scope};
use quarantine::reverse::median;
use quarantine::score::{finetune, recalibrate_bn, score_samples, trojan_score, ScoreConfig};
use quarantine::train::{train_epoch, Sgd};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[arg(long, value_parser = super::common::choice::<Arch>(), default_value = "resnet20s")]
    pub arch: Arch,
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Timed batches (after 3 warm-up batches).
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
    #[arg(long, default_value_t = 32)]
    pub image_size: usize,
    #[arg(long, default_value_t = 3)]
    pub channels: usize,
    /// Also time this many scored pruning steps (after one warm-up step); 0 skips it.
    #[arg(long, default_value_t = 0)]
    pub score_steps: usize,
}

fn synthetic(n: usize, c: usize, hw: usize) -> ImageSet {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    ImageSet {
        images: (0..n * c * hw * hw).map(|_| rng.gen()).collect(),
        labels: (0..n).map(|i| (i % 10) as u32).collect(),
        n,
        height: hw,
        width: hw,
        channels: c,
        classes: (0..10).map(|i| i.to_string()).collect(),
    }
}

pub fn run(a: BenchArgs, device: Device, json: bool) -> anyhow::Result<()> {
    anyhow::ensure!(a.iters > 0 && a.batch_size > 0, "--iters and --batch-size must be positive");
    let bs = a.batch_size;
    let set = synthetic(bs * (a.iters + 3), a.channels, a.image_size);
    let norm =
        if a.channels == 3 { Normalization::cifar10() } else { Normalization::mnist().for_channels(a.channels)? };
    tch::manual_seed(0);
    let meta = ModelMeta {
        arch: a.arch,
        in_channels: a.channels,
        height: a.image_size,
        width: a.image_size,
        num_classes: 10,
        script: None,
    };
    let model = Model::new(meta, device)?;
    let aug = Augment { crop_pad: 4, flip: true };
    let mut opt = Sgd::new(model.named_parameters(), 0.9, 5e-4);
    let hidden = Control::quiet();

    // Batching alone.
    let t = Instant::now();
    let nb = Batches::new(&set, bs, &norm, aug, Some(1), device).count();
    let batch_ms = t.elapsed().as_secs_f64() * 1e3 / nb as f64;

    // Training: warm up on 3 batches, then time `iters` batches.
    let warm = quarantine::data::ImageSet {
        images: set.images[..3 * bs * set.image(0).len()].to_vec(),
        labels: set.labels[..3 * bs].to_vec(),
        n: 3 * bs,
        ..set.clone()
    };
    train_epoch(&model, &mut opt, Batches::new(&warm, bs, &norm, aug, Some(2), device), 0.01, 0, &hidden)?;
    let timed = set.subset(&(3 * bs..set.n).collect::<Vec<_>>());
    let t = Instant::now();
    train_epoch(&model, &mut opt, Batches::new(&timed, bs, &norm, aug, Some(3), device), 0.01, 0, &hidden)?;
    let train_ips = timed.n as f64 / t.elapsed().as_secs_f64();

    // Inference (eval mode, no gradients).
    let batches: Vec<_> = Batches::new(&timed, bs, &norm, Augment::NONE, None, device).collect();
    tch::no_grad(|| {
        for b in batches.iter().take(3) {
            let _ = model.forward_t(&b.images, false);
        }
    });
    let t = Instant::now();
    tch::no_grad(|| {
        for b in &batches {
            let _ = model.forward_t(&b.images, false).sum(tch::Kind::Float).double_value(&[]);
        }
    });
    let infer_ips = timed.n as f64 / t.elapsed().as_secs_f64();

    let score = if a.score_steps > 0 { Some(bench_score(&model, &norm, a.score_steps, device)?) } else { None };

    let mut v = serde_json::json!({
        "arch": a.arch, "batch_size": bs, "iters": a.iters, "threads": tch::get_num_threads(), "device": format!("{device:?}"),
        "train_images_per_second": train_ips, "inference_images_per_second": infer_ips, "batching_ms_per_batch": batch_ms,
    });
    if let Some(s) = &score {
        v["score_step"] = serde_json::to_value(s)?;
    }
    if json {
        println!("{v}");
    } else {
        println!("{} batch {bs}, {} threads: train {train_ips:.1} img/s, inference {infer_ips:.1} img/s, batching {batch_ms:.2} ms/batch", a.arch.name(), tch::get_num_threads());
        if let Some(s) = &score {
            println!("scored pruning step (k = 10, 11 α points, 1,024 samples): {:.2} s median of {:?} (last step: recalibration {:.2} s, finetuning {:.2} s, interpolation points {:.2} s)", s.median_seconds, s.seconds.iter().map(|x| (x * 100.0).round() / 100.0).collect::<Vec<_>>(), s.recalibrate_seconds, s.finetune_seconds, s.interpolate_seconds);
        }
    }
    Ok(())
}

/// Timings of scored pruning steps.
#[derive(Debug, serde::Serialize)]
struct ScoreBench {
    seconds: Vec<f64>,
    median_seconds: f64,
    recalibrate_seconds: f64,
    finetune_seconds: f64,
    interpolate_seconds: f64,
    density: f64,
}

/// Times `steps` scored pruning steps (after one warm-up) of `model` pruned to density 0.8^10.
fn bench_score(model: &Model, norm: &Normalization, steps: usize, device: Device) -> anyhow::Result<ScoreBench> {
    let m = &model.meta;
    let train = synthetic(2048, m.in_channels, m.height);
    let masks = Masks::dense(model).prune(model, 1.0 - 0.8f64.powi(10), Scope::Global, Criterion::Magnitude);
    masks.apply(model);
    let cfg = ScoreConfig::paper(Augment { crop_pad: 4, flip: true }, 0);
    let (data, _) = score_samples(&train, 1024, norm, 0, device);
    let phi = Model::new(m.clone(), device)?;
    let mut out = ScoreBench {
        seconds: vec![],
        median_seconds: 0.0,
        recalibrate_seconds: 0.0,
        finetune_seconds: 0.0,
        interpolate_seconds: 0.0,
        density: masks.density().total,
    };
    for i in 0..=steps {
        phi.copy_from(model)?;
        let t = Instant::now();
        recalibrate_bn(&phi, &data.x)?;
        let t_recal = t.elapsed().as_secs_f64();
        let (r, _) = trojan_score(&phi, &masks, &train, norm, &data, &cfg)?;
        let total = t.elapsed().as_secs_f64();
        anyhow::ensure!(r.score_loss.is_finite(), "non-finite score");
        if i > 0 {
            out.seconds.push(total);
            out.recalibrate_seconds = t_recal;
        }
    }
    // Breakdown: the finetuning alone, once more; the interpolation points take the rest.
    let t = Instant::now();
    finetune(&phi, &masks, &train, norm, &cfg)?;
    out.finetune_seconds = t.elapsed().as_secs_f64();
    out.interpolate_seconds =
        (out.seconds[out.seconds.len() - 1] - out.recalibrate_seconds - out.finetune_seconds).max(0.0);
    out.median_seconds = median(&out.seconds);
    Ok(out)
}
