//! An experiment of the paper (`quarantine run CONFIG.toml`): train, prune, score, reverse-engineer
//! the dense model and the winning Trojan ticket, write `experiment.json` and `report.html`. The
//! stages are the library's jobs; the command line turns the config file into an [`Experiment`].
//!
//! Output folder: `config.toml` (a copy of the file), `train/`, `prune/` (with the score's dynamics
//! and winning ticket), `reverse-dense/`, `reverse-ticket/`, `experiment.json`, `report.html`. With
//! `resume`, finished stages are skipped and the unfinished one resumes.
use std::path::{Path, PathBuf};
use std::time::Instant;

use tch::Device;

use crate::control::Control;
use crate::data::DataSpec;
use crate::error::{Error, Result};
use crate::model::{load_checkpoint, Versions};
use crate::prune::{self, PruneJob};
use crate::report::records::{ExperimentRecord, ExperimentStages};
use crate::report::{write_reverse_run, write_scored_path};
use crate::reverse::{self, ReverseJob, TestImages};
use crate::score::job::{self as score_job, ScoreJob};
use crate::train::{self, TrainJob};
use crate::util::{prepare_out_dir, write_atomic, write_json};

/// One experiment: its stages as library jobs. The output paths inside the jobs are set by
/// [`run`] from the experiment's output folder.
#[derive(Debug, Clone)]
pub struct Experiment {
    /// Its name (the default output folder is `runs/NAME`).
    pub name: String,
    /// A description for the report.
    pub description: String,
    /// One seed for every stage.
    pub seed: u64,
    /// The data of every stage.
    pub data: DataSpec,
    /// Training of the dense model (OMP and random paths).
    pub train: Option<TrainJob>,
    /// The pruning path.
    pub prune: PruneJob,
    /// Scoring of the path.
    pub score: Option<ScoreJob>,
    /// Reverse engineering of the dense model and the winning ticket, with optional test data.
    pub reverse: Option<(ReverseJob, Option<DataSpec>)>,
}

impl Experiment {
    /// Whether the path is IMP (which trains its own dense model).
    pub fn imp(&self) -> bool {
        self.prune.method == prune::Method::Imp
    }

    /// The dense model the path starts from, inside output folder `out`.
    pub fn dense_model(&self, out: &Path) -> PathBuf {
        if self.imp() {
            out.join("prune").join("round-000").join("trained.safetensors")
        } else {
            out.join("train").join("model.safetensors")
        }
    }
}

/// Whether stage `name` must run (not with `resume` when its `marker` exists); says so.
fn stage(out: &Path, name: &str, marker: &Path, resume: bool, ctl: &Control) -> bool {
    let done = resume && marker.exists();
    let note = if done {
        format!("run: {name}: finished earlier ({}), skipped", marker.strip_prefix(out).unwrap_or(marker).display())
    } else {
        format!("run: {name}")
    };
    ctl.progress().note(&note);
    !done
}

/// Runs experiment `e` (read from `config`, copied into the output folder) into `out`.
pub fn run(
    e: &Experiment,
    config: &Path,
    out: &Path,
    resume: bool,
    force: bool,
    device: Device,
    ctl: &Control,
) -> Result<ExperimentRecord> {
    prepare_out_dir(out, "experiment.json", resume, force)?;
    let start = Instant::now();
    let text = std::fs::read(config).map_err(|err| Error::io(config, err))?;
    write_atomic(&out.join("config.toml"), &text)?;
    if let Some(t) = &e.train {
        if stage(out, "train", &out.join("train").join("result.json"), resume, ctl) {
            let job = TrainJob { out: out.join("train"), resume, force, ..t.clone() };
            train::run(&job, device, ctl)?;
        }
    }
    if stage(out, "prune", &out.join("prune").join("prune.json"), resume, ctl) {
        let model = e.train.as_ref().map(|_| out.join("train").join("model.safetensors"));
        let job = PruneJob {
            out: out.join("prune"),
            model: model.or(e.prune.model.clone()),
            resume,
            force,
            ..e.prune.clone()
        };
        prune::run(&job, device, ctl)?;
    }
    let run_dir = out.join("prune");
    let ticket = run_dir.join("winning-ticket.safetensors");
    if let Some(job) = &e.score {
        if stage(out, "score", &ticket, resume, ctl) {
            score_job::prepare(&run_dir, resume, force)?;
            let scored = score_job::run(&run_dir, job, resume, device, ctl)?;
            write_scored_path(&run_dir, &scored, &scored.record(&run_dir, job))?;
        }
    }
    if let Some((job, test)) = &e.reverse {
        for (name, model) in [("reverse-dense", e.dense_model(out)), ("reverse-ticket", ticket.clone())] {
            let dir = out.join(name);
            if stage(out, name, &dir.join("reverse.json"), resume, ctl) {
                reverse_one(&model, &dir, job, test.as_ref(), resume || force, device, ctl)?;
            }
        }
    }
    let record = ExperimentRecord {
        name: e.name.clone(),
        description: e.description.clone(),
        config: config.to_path_buf(),
        seed: e.seed,
        data: e.data.to_string(),
        stages: ExperimentStages {
            train: e.train.is_some(),
            score: e.score.is_some(),
            reverse: e.reverse.is_some(),
            imp: e.imp(),
        },
        seconds: start.elapsed().as_secs_f64(),
        versions: Versions::default(),
        command: format!("quarantine run {} --out {}", config.display(), out.display()),
    };
    write_json(&out.join("experiment.json"), &record)?;
    crate::report::html::write_report(out)?;
    Ok(record)
}

/// Reverse engineering of one checkpoint of the experiment into `dir`.
fn reverse_one(
    model: &Path,
    dir: &Path,
    job: &ReverseJob,
    test: Option<&DataSpec>,
    force: bool,
    device: Device,
    ctl: &Control,
) -> Result<()> {
    let (net, info, _) = load_checkpoint(model, &Default::default(), device)?;
    let test = test.map(|spec| TestImages::load(spec, &net)).transpose()?;
    reverse::prepare_out(dir, force)?;
    let done = reverse::run(model, &net, &info, job, test.as_ref(), ctl)?;
    write_reverse_run(dir, &done)
}
