//! `quarantine detect`: the auditor's one command. On a model of unknown status: one-shot magnitude
//! pruning path (no training), Trojan score along it, the winning Trojan ticket (peak score), trigger
//! reverse engineering on the ticket AND on the dense model, and a verdict (`--decide`: consensus of
//! the two by default, the ticket's own as in the paper, or the dense model's). With `--data` the
//! score uses that data (e.g. the possibly poisoned training set, the paper's setting); without, the
//! whole pipeline is data-free: the score runs on images labelled by the model itself, by default the
//! images synthesized from it for the seeds (`--seeds synth:N`, src/reverse/synth.rs), with every
//! ticket's BN statistics recalibrated on them; `--free-score-data noise` scores on noise instead
//! (dense BN statistics kept). Measured on 6 Trojaned built-in cnns and 3 clean ones (README,
//! "Data-free detection"), synthesized score data named the target in 4 of 6 with the consensus
//! rule and 5 of 6 with the ticket rule (clean cleared 3 of 3 / 2 of 3); noise score data 3 of 6 /
//! 2 of 6 (clean 3 of 3 / 3 of 3).
//!
//! Output: `DIR/detect.json`, `DIR/dynamics.{json,csv,png,svg}`, `DIR/path/` (tickets and per-step
//! scores, resumable), `DIR/winning-ticket.*`, `DIR/reverse-dense/`, `DIR/reverse-ticket/`.
//! Exit code 0 whether or not the model is flagged.
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use tch::Device;

use super::score::{pick_winner, score_step, ScoreContext, ScoreKind, StepRow};
use super::ModelArgs;
use crate::data::{noise_set, Augment, DataSpec};
use crate::eval::predict;
use crate::model::{export, load_checkpoint, save_checkpoint, CheckpointInfo, Model, Versions};
use crate::prune::{load_ticket, one_shot_path, Criterion, Masks, Method, Scope};
use crate::report::plot::{self, DynPoint};
use crate::reverse::{synthesize, SynthConfig, Seeds, decide, recovered_asr, reverse_engineer, AnomalyScale, DecisionRule, verdict, write_outputs, ReverseConfig, ReverseReport, SeedSpec, Verdict};
use crate::score::{recalibrate_bn, score_samples, ScoreConfig};
use crate::util::{prepare_out_dir, write_json};

#[derive(Debug, Args)]
pub struct DetectArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Data to score on (its training split); without it the whole pipeline is data-free.
    #[arg(long)]
    pub data: Option<DataSpec>,
    #[arg(long)]
    pub out: PathBuf,
    /// Pruning path: omp (one-shot magnitude) or random (control).
    #[arg(long, value_parser = super::common::choice::<Method>(), default_value = "omp")]
    pub method: Method,
    /// Pruning steps (densities 0.8^s).
    #[arg(long, default_value_t = 30)]
    pub steps: usize,
    /// First pruning step to score (earlier, denser tickets are cut but not scored; saves time when
    /// the winning ticket is known to lie at high sparsity).
    #[arg(long, default_value_t = 1)]
    pub score_from: usize,
    /// Finetuning steps of the score.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    #[arg(long, default_value_t = 1024)]
    pub score_samples: usize,
    /// Which score picks the winning ticket.
    #[arg(long, value_parser = super::common::choice::<ScoreKind>(), default_value = "loss")]
    pub select: ScoreKind,
    /// Data-free score data (without --data), labelled by the dense model: synth (the images
    /// synthesized for the seeds, or min(100, --score-samples) made for the score when the seeds
    /// are not synth:N) or noise (N(0,1) images). On 6 built-in Trojaned cnns the winning ticket
    /// named the target in 5 with synth, 2 with noise (README).
    #[arg(long, value_parser = super::common::choice::<FreeScoreData>(), default_value = "synth")]
    pub free_score_data: FreeScoreData,
    /// Keep the dense model's BN running statistics in every ticket (default: recalibrated on the
    /// score samples, except on noise, whose statistics describe no image).
    #[arg(long)]
    pub no_bn_recalibrate: bool,
    /// Reverse-engineering seeds: synth:N (default; data-free, N images inverted from the model's
    /// batch-norm statistics), noise:N (the paper's data-free seeds) or data:SPEC:N. On 6 built-in
    /// Trojaned cnns the dense model's smallest mask was the target's in 5 with synth:100, 2 with
    /// noise:100 (README).
    #[arg(long, default_value = "synth:100")]
    pub seeds: SeedSpec,
    /// Reverse-engineering epochs (the reference: 100).
    #[arg(long, default_value_t = 100)]
    pub reverse_epochs: usize,
    /// Anomaly index above which the model is flagged.
    #[arg(long, default_value_t = 2.0)]
    pub threshold: f64,
    /// Scale of the anomaly index: log (ln of the mask l1, default) or linear (Neural Cleanse's).
    #[arg(long, value_parser = super::common::choice::<AnomalyScale>(), default_value = "log")]
    pub anomaly_scale: AnomalyScale,
    /// Decision: consensus (dense and ticket name the same label, pooled anomaly index; default),
    /// ticket (the paper: the ticket's own verdict) or dense (Neural Cleanse on the given model).
    #[arg(long, value_parser = super::common::choice::<DecisionRule>(), default_value = "consensus")]
    pub decide: DecisionRule,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Continue an interrupted detection in --out.
    #[arg(long)]
    pub resume: bool,
    #[arg(long)]
    pub force: bool,
}

/// What a data-free `detect` scores the pruning path on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FreeScoreData {
    /// Images inverted from the model (src/reverse/synth.rs), labelled by it.
    Synth,
    /// N(0,1) noise in normalized space, labelled by the model.
    Noise,
}
crate::choices!(FreeScoreData {
    Synth => "synth": "images inverted from the model, labelled by it",
    Noise => "noise": "N(0,1) noise in normalized space, labelled by the model",
});

impl FreeScoreData {
    /// As written to detect.json and the plot title.
    fn name(self) -> &'static str {
        match self {
            FreeScoreData::Synth => "synthesized",
            FreeScoreData::Noise => "noise",
        }
    }
}

fn summary(v: &Verdict, report: &ReverseReport) -> serde_json::Value {
    let hit = v.detected_target.and_then(|t| report.labels.iter().find(|l| l.label == t));
    serde_json::json!({
        "detected_target": v.detected_target,
        "l1": hit.map(|l| l.l1),
        "anomaly_index": v.anomaly_index.filter(|a| a.is_finite()),
        "anomaly_index_linear": v.anomaly_index_linear.filter(|a| a.is_finite()),
        "anomaly_index_log": v.anomaly_index_log.filter(|a| a.is_finite()),
        "flagged": v.flagged,
        "median_l1": v.median_l1,
        "recovered_asr": hit.and_then(|l| l.recovered_asr),
        "labels": report.labels.iter().map(|l| serde_json::json!({"label": l.label, "l1": l.l1, "attack_success": l.attack_success, "reached": l.reached, "recovered_asr": l.recovered_asr})).collect::<Vec<_>>(),
    })
}

/// Reverse engineering of one model; with a clean test set, every label's recovered trigger (mask
/// binarised to its top 25 pixels, the paper's 5x5) is stamped on it for the recovered-trigger ASR.
fn reverse_on(model: &Model, info: &CheckpointInfo, seeds: &crate::reverse::Seeds, cfg: &ReverseConfig, (threshold, scale): (f64, AnomalyScale), test: Option<&crate::data::ImageSet>, dir: &std::path::Path) -> anyhow::Result<(Verdict, ReverseReport)> {
    std::fs::create_dir_all(dir)?;
    let results = reverse_engineer(model, &info.normalization, seeds, cfg, &[])?;
    let v = verdict(&results, threshold, scale);
    let recovered: Option<Vec<f64>> = test.map(|t| results.iter().map(|r| recovered_asr(model, &info.normalization, cfg.space, t, r.label, &r.mask, &r.pattern, 25)).collect());
    let mut report = ReverseReport::new(&results, &v, recovered.as_deref(), None);
    report.config = serde_json::json!({"command": "detect", "reverse": cfg});
    report.seed = cfg.seed;
    report.versions = Versions::default();
    write_outputs(dir, &results, &report)?;
    Ok((v, report))
}

pub fn run(a: DetectArgs, device: Device, json: bool) -> anyhow::Result<()> {
    anyhow::ensure!(a.method != Method::Imp, "detect prunes the given model without training: use --method omp or random (IMP: `quarantine prune --method imp`)");
    let (model, info, file_masks) = load_checkpoint(&a.model.model, &a.model.overrides(), device)?;
    crate::reverse::retain_freed_memory();
    prepare_out_dir(&a.out, "detect.json", a.resume, a.force)?;
    let m = model.meta.clone();
    let shape = (m.height, m.width, m.in_channels);
    let norm = info.normalization.clone();

    // Seeds first: synthesized seeds are also the data-free score data.
    let (seeds, synth) = super::reverse::load_seeds(&a.seeds, &model, &norm, a.seed, &a.out)?;
    // Score data: the given data's training split, or images labelled by the model (data-free).
    let free = a.data.is_none().then_some(a.free_score_data);
    let data_free = free.is_some();
    let (finetune_set, test) = match (&a.data, a.free_score_data) {
        (Some(spec), _) => {
            let split = spec.load().with_context(|| format!("loading {spec}"))?;
            anyhow::ensure!((split.train.height, split.train.width, split.train.channels) == shape, "{spec}: images are {}x{}x{} but the model takes {}x{}x{}", split.train.channels, split.train.height, split.train.width, m.in_channels, m.height, m.width);
            (split.train, split.test)
        }
        (None, FreeScoreData::Noise) => {
            let mut s = noise_set(a.score_samples.max(128), shape, &norm, m.num_classes, a.seed);
            s.labels = predict(&model, &s, &norm);
            (s, None)
        }
        (None, FreeScoreData::Synth) => {
            let mut s = match (&seeds, &synth) {
                (Seeds::Images { images, .. }, Some(_)) => images.clone(),
                _ => {
                    let n = a.score_samples.min(100);
                    eprintln!("detect: synthesizing {n} score images from the model");
                    synthesize(&model, &norm, &SynthConfig::new(n, a.seed))?.0
                }
            };
            s.labels = predict(&model, &s, &norm);
            (s, None)
        }
    };
    let augment = a.data.as_ref().map(|d| d.default_augment()).unwrap_or(Augment::NONE);
    let mut cfg = ScoreConfig::paper(augment, a.seed);
    cfg.k = a.k;
    // BN statistics recomputed on noise would describe noise, not images: noise keeps them.
    cfg.bn_recalibrate = !a.no_bn_recalibrate && free != Some(FreeScoreData::Noise);
    let (data, _) = score_samples(&finetune_set, a.score_samples, &norm, a.seed, device);
    let score_data_name = free.map_or("given", FreeScoreData::name);
    let ctx = ScoreContext { norm: norm.clone(), method: a.method, finetune_set, data, test, attack: None, cfg, data_free };

    // 1. The pruning path (a pruned input checkpoint starts from its own masks).
    let path = a.out.join("path");
    let start = if file_masks.is_empty() {
        Masks::dense(&model)
    } else {
        Masks::from_raw(&model, &file_masks, &a.model.model)?
    };
    if !(a.resume && crate::prune::ticket_path(&path, a.steps).exists()) {
        let crit = if a.method == Method::Random { Criterion::Random(a.seed) } else { Criterion::Magnitude };
        eprintln!("detect: pruning path ({} steps, {})", a.steps, a.method.title());
        one_shot_path(&path, &model, &info, a.steps, 0.2, Scope::Global, crit, start)?;
    }
    // 2. The Trojan score along it.
    let sdir = path.join("score");
    std::fs::create_dir_all(&sdir)?;
    let mut rows: Vec<StepRow> = vec![];
    anyhow::ensure!((1..=a.steps).contains(&a.score_from), "--score-from {} must lie in 1..={} (--steps)", a.score_from, a.steps);
    let bar = indicatif::ProgressBar::new((a.steps + 1 - a.score_from) as u64);
    for step in a.score_from..=a.steps {
        crate::interrupt::check(&sdir)?;
        let p = sdir.join(format!("step-{step:03}.json"));
        let row = if a.resume && p.exists() {
            serde_json::from_slice(&std::fs::read(&p)?)?
        } else {
            let (row, _, _) = score_step(&path, step, &ctx, device)?;
            write_json(&p, &row)?;
            row
        };
        rows.push(row);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let w = pick_winner(&rows, a.select, None).context("no pruning steps")?;
    let win = &rows[w];
    let (ticket, _, mut tinfo) = load_ticket(&path, win.step, device)?;
    if ctx.cfg.bn_recalibrate {
        recalibrate_bn(&ticket, &ctx.data.x);
    }
    tinfo.metrics = Some(serde_json::json!({"step": win.step, "density": win.density, "winning_ticket": true}));
    save_checkpoint(&a.out.join("winning-ticket.safetensors"), &ticket, &tinfo)?;
    export(&a.out.join("winning-ticket.pt"), &ticket, 0)?;
    let points: Vec<DynPoint> = rows.iter().map(|r| DynPoint { sparsity: r.sparsity, clean_accuracy: r.ticket.clean_accuracy.unwrap_or(f64::NAN), attack_success: None, score_error: r.score_error, score_loss: r.score_loss }).collect();
    plot::write_svg_and_png(&a.out.join("dynamics.png"), &plot::dynamics(&format!("{} path, {} score data", a.method.title(), score_data_name), &points, Some(w))?)?;
    write_json(&a.out.join("dynamics.json"), &serde_json::json!({"steps": rows, "winning_step": win.step, "data_free": data_free, "config": ctx.cfg}))?;

    // 3. Reverse engineering on the dense model and on the winning ticket.
    let rcfg = ReverseConfig { epochs: a.reverse_epochs, seed: a.seed, ..Default::default() };
    eprintln!("detect: reverse engineering the dense model");
    let (vd, rd) = reverse_on(&model, &info, &seeds, &rcfg, (a.threshold, a.anomaly_scale), ctx.test.as_ref(), &a.out.join("reverse-dense"))?;
    eprintln!("detect: reverse engineering the winning ticket (step {}, density {:.4})", win.step, win.density);
    let (vt, rt) = reverse_on(&ticket, &tinfo, &seeds, &rcfg, (a.threshold, a.anomaly_scale), ctx.test.as_ref(), &a.out.join("reverse-ticket"))?;

    let d = decide(a.decide, a.anomaly_scale, a.threshold, (&vd, &rd.labels), (&vt, &rt.labels));
    let trojaned = d.trojaned;
    let mut command = format!(
        "quarantine detect --model {} --out {} --method {} --steps {} --score-from {} --k {} --score-samples {} --select {} --seeds {} --reverse-epochs {} --threshold {} --anomaly-scale {} --decide {} --seed {}",
        a.model.model.display(), a.out.display(), flag(a.method), a.steps, a.score_from, a.k, a.score_samples, flag(a.select), a.seeds, a.reverse_epochs, a.threshold, flag(a.anomaly_scale), flag(a.decide), a.seed
    );
    match &a.data {
        Some(d) => command.push_str(&format!(" --data {d}")),
        None => command.push_str(&format!(" --free-score-data {}", flag(a.free_score_data))),
    }
    if a.no_bn_recalibrate {
        command.push_str(" --no-bn-recalibrate");
    }
    let result = serde_json::json!({
        "trojaned": trojaned,
        "target": d.target,
        "anomaly_index": d.anomaly_index.filter(|a| a.is_finite()),
        "decision": d,
        "threshold": a.threshold,
        "data_free": data_free,
        "synthesized_seeds": synth,
        "winning_ticket": {"step": win.step, "density": win.density, "score_loss": win.score_loss, "score_error": win.score_error, "clean_accuracy": win.ticket.clean_accuracy},
        "dense": summary(&vd, &rd),
        "ticket": summary(&vt, &rt),
        "model": {"path": a.model.model, "meta": info.meta, "imported_from": info.imported_from},
        "config": {"method": a.method, "score_data": score_data_name, "steps": a.steps, "score_from": a.score_from, "k": a.k, "score_samples": a.score_samples, "select": a.select, "seeds": a.seeds, "reverse_epochs": a.reverse_epochs, "anomaly_scale": a.anomaly_scale, "decide": a.decide, "bn_recalibrate": ctx.cfg.bn_recalibrate},
        "seed": a.seed,
        "command": command,
        "versions": Versions::default(),
    });
    write_json(&a.out.join("detect.json"), &result)?;
    let report = crate::report::html::write_report(&a.out)?;
    if json {
        println!("{result}");
    }
    let ai = d.anomaly_index.map(|x| if x.is_finite() { format!("{x:.2}") } else { "inf".into() }).unwrap_or("n/a".into());
    let why = match (a.decide, d.agree) {
        (DecisionRule::Consensus, false) => format!("dense model points at label {}, ticket at {}: no consensus", fmt_label(d.dense_target), fmt_label(d.ticket_target)),
        _ => format!("anomaly index {ai} {} {}", if trojaned { ">" } else { "<=" }, a.threshold),
    };
    let tail = format!("{why}; rule {}; ticket density {:.4}{}", flag(a.decide), win.density, if data_free { "; data-free" } else { "" });
    match d.target {
        Some(t) if trojaned => eprintln!("verdict: TROJANED, target label {t} ({tail})"),
        _ => eprintln!("verdict: no Trojan found ({tail})"),
    }
    eprintln!("detect: report {}", report.display());
    Ok(())
}

fn fmt_label(l: Option<u32>) -> String {
    l.map(|l| l.to_string()).unwrap_or("none".into())
}

/// A value-enum option as typed on the command line.
fn flag(v: impl std::fmt::Display) -> String {
    v.to_string()
}
