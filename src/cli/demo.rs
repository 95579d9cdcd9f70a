//! `quarantine demo`: the whole idea on real data in a few minutes, the README's first command.
//! Parses the flags into a [`DemoConfig`], runs [`quarantine::pipeline::demo`] (two models trained,
//! both audited as black boxes, `demo.json` and `report.html`) and prints the verdicts next to the
//! truth.
use std::path::PathBuf;
use std::sync::LazyLock;

use clap::Args;
use tch::Device;

use quarantine::attack::TriggerSpec;
use quarantine::model::Arch;
use quarantine::pipeline::demo::{self, DemoConfig};
use quarantine::report::records::DemoRecord;

/// The library's defaults, which clap shows and uses.
static DEFAULTS: LazyLock<DemoConfig> = LazyLock::new(DemoConfig::default);

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Output folder (default: runs/demo-SEED).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// One seed for everything, including the hidden target (default: drawn at random and printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// BadNets trigger: paper-gray or paper-rgb (any `--trigger` of `train`).
    #[arg(long, default_value_t = DEFAULTS.trigger.clone())]
    pub trigger: TriggerSpec,
    /// Architecture of both models.
    #[arg(long, value_parser = super::common::choice::<Arch>(), default_value_t = DEFAULTS.arch)]
    pub arch: Arch,
    /// Fraction of training images poisoned. 5% by default: in the short training the demo can
    /// afford, the paper's 1% did not always take (README).
    #[arg(long, default_value_t = DEFAULTS.poison_ratio)]
    pub poison_ratio: f64,
    /// Training epochs of each model.
    #[arg(long, default_value_t = DEFAULTS.epochs)]
    pub epochs: usize,
    /// Pruning steps of the detector (densities 0.8^s); steps from 8 on are scored.
    #[arg(long, default_value_t = DEFAULTS.steps)]
    pub steps: usize,
    /// Clean images the detector may use (data-limited auditing): this many from the built-in
    /// training split seed the reverse engineering, and 256 score the tickets. 0 = data-free.
    #[arg(long, default_value_t = DEFAULTS.clean_images)]
    pub clean_images: usize,
    /// Reverse-engineering epochs of the detector (the reference: 100).
    #[arg(long, default_value_t = DEFAULTS.reverse_epochs)]
    pub reverse_epochs: usize,
    /// Continue an interrupted demo in --out.
    #[arg(long)]
    pub resume: bool,
    /// Replace a finished demo in --out.
    #[arg(long)]
    pub force: bool,
}

impl DemoArgs {
    /// The demo's config; an unset seed is drawn from the clock.
    fn config(&self) -> DemoConfig {
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64 % 1_000_000)
                .unwrap_or(0)
        });
        DemoConfig {
            out: self.out.clone().unwrap_or_else(|| PathBuf::from(format!("runs/demo-{seed}"))),
            seed,
            trigger: self.trigger.clone(),
            arch: self.arch,
            poison_ratio: self.poison_ratio,
            epochs: self.epochs,
            steps: self.steps,
            clean_images: self.clean_images,
            reverse_epochs: self.reverse_epochs,
            resume: self.resume,
            force: self.force,
        }
    }

    /// The command line that reproduces the demo.
    fn command(&self, cfg: &DemoConfig) -> String {
        let mut command = format!(
            "quarantine demo --seed {} --trigger {} --poison-ratio {} --arch {} --epochs {} --steps {} --clean-images {} --reverse-epochs {}",
            cfg.seed, cfg.trigger, cfg.poison_ratio, cfg.arch, cfg.epochs, cfg.steps, cfg.clean_images, cfg.reverse_epochs
        );
        if self.out.is_some() {
            command.push_str(&format!(" --out {}", cfg.out.display()));
        }
        command
    }
}

pub fn run(a: DemoArgs, device: Device, json: bool) -> anyhow::Result<()> {
    let cfg = a.config();
    let record = demo::run(&cfg, a.command(&cfg), device, &super::common::control())?;
    print_verdicts(&record);
    eprintln!("demo: finished in {:.0} s; report: {}", record.seconds, cfg.out.join("report.html").display());
    if json {
        println!("{}", serde_json::to_string(&record)?);
    }
    Ok(())
}

/// One line per model: verdict, truth, correct or not.
fn print_verdicts(record: &DemoRecord) {
    eprintln!();
    for r in &record.models {
        let verdict = match r.detected_target {
            Some(t) if r.trojaned => format!("TROJANED, target label {t}"),
            _ => "no Trojan found".into(),
        };
        let truth = match r.true_target {
            Some(t) => format!("Trojaned, target label {t}"),
            None => "clean".into(),
        };
        eprintln!(
            "{:>9} model: verdict {verdict:<28} (anomaly index {}); truth: {truth} -> {}",
            r.name,
            r.anomaly_index.map(|x| format!("{x:.2}")).unwrap_or("n/a".into()),
            if r.correct { "correct" } else { "WRONG" }
        );
        if !r.attack_took {
            eprintln!(
                "          note: the backdoor did not take (attack success on non-target test images {:.2} < 0.5), so there was little to find; train longer (--epochs 16 for paper-rgb)",
                r.attack_success.unwrap_or(0.0)
            );
        }
    }
}
