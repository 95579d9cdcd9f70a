//! `quarantine bench`: training and inference throughput through the same code paths as `train` and
//! `eval` (batching with augmentation, forward, backward, our SGD), on synthetic CIFAR-sized data.
//! tools/bench_torch.py does the same work in PyTorch; BENCHMARKS.md has both.
use std::time::Instant;

use clap::Args;
use indicatif::ProgressBar;
use rand::{Rng, SeedableRng};
use tch::Device;

use crate::data::{Augment, Batches, ImageSet, Normalization};
use crate::model::{Arch, Model, ModelMeta};
use crate::train::{train_epoch, Sgd};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value = "resnet20s")]
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
    let norm = if a.channels == 3 { Normalization::cifar10() } else { Normalization::mnist().for_channels(a.channels)? };
    tch::manual_seed(0);
    let meta = ModelMeta { arch: a.arch, in_channels: a.channels, height: a.image_size, width: a.image_size, num_classes: 10 };
    let model = Model::new(meta, device)?;
    let aug = Augment { crop_pad: 4, flip: true };
    let mut opt = Sgd::new(model.named_parameters(), 0.9, 5e-4);
    let hidden = ProgressBar::hidden();

    // Batching alone.
    let t = Instant::now();
    let nb = Batches::new(&set, bs, &norm, aug, Some(1), device).count();
    let batch_ms = t.elapsed().as_secs_f64() * 1e3 / nb as f64;

    // Training: warm up on 3 batches, then time `iters` batches.
    let warm = crate::data::ImageSet { images: set.images[..3 * bs * set.image(0).len()].to_vec(), labels: set.labels[..3 * bs].to_vec(), n: 3 * bs, ..set.clone() };
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

    let v = serde_json::json!({
        "arch": a.arch, "batch_size": bs, "iters": a.iters, "threads": tch::get_num_threads(), "device": format!("{device:?}"),
        "train_images_per_second": train_ips, "inference_images_per_second": infer_ips, "batching_ms_per_batch": batch_ms,
    });
    if json {
        println!("{v}");
    } else {
        println!("{} batch {bs}, {} threads: train {train_ips:.1} img/s, inference {infer_ips:.1} img/s, batching {batch_ms:.2} ms/batch", a.arch.name(), tch::get_num_threads());
    }
    Ok(())
}
