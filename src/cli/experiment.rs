//! `quarantine run CONFIG.toml`: one file describes a whole experiment of the paper (data, model,
//! attack, training, pruning, score, reverse engineering) and one command runs it, resumably.
//!
//! The file's sections hold the flags of the commands they drive, spelled as on the command line
//! (`poison-ratio = 0.01` is `--poison-ratio=0.01`, `true` is a bare flag, arrays are joined with
//! commas), so a config means exactly what the commands mean and is validated by the same parser.
//! The file layer (TOML to flags, without libtorch, fuzzed) is the `expconfig` crate:
//!
//! ```toml
//! name = "builtin-cnn-badnets-gray"   # required
//! description = "..."                 # optional
//! seed = 1                            # one seed for every stage
//! data = "builtin"                    # data spec of every stage
//! [attack]   # flags of `train --attack ...` (kind, trigger, target, ...); omit for a clean model
//! [train]    # flags of `quarantine train`; required for OMP/random paths, absent for IMP
//! [prune]    # flags of `quarantine prune` (method imp|omp|random, steps, rewind-epoch, ...)
//! [score]    # flags of `quarantine score` (k, score-data, ...)
//! [reverse]  # flags of `quarantine reverse` (seeds, epochs, ...): run on the dense model and the
//!            # winning Trojan ticket
//! ```
//!
//! Output folder (`--out`, default `runs/NAME`): `config.toml` (a copy), `train/`, `prune/` (with
//! the score's dynamics and winning ticket), `reverse-dense/`, `reverse-ticket/`, `experiment.json`,
//! `report.html`. `--resume` skips finished stages and resumes the unfinished one.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use tch::Device;

use super::demo::parse;
use super::{prune, reverse, score, train};
use crate::data::DataSpec;
use crate::model::Versions;
use crate::util::{prepare_out_dir, write_atomic, write_json};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Experiment file (see configs/).
    pub config: PathBuf,
    /// Output folder (default: runs/NAME).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Only parse and validate the config; says whether its data is present (exit code 0 if valid).
    #[arg(long)]
    pub check: bool,
    #[arg(long)]
    pub resume: bool,
    #[arg(long)]
    pub force: bool,
}

/// A parsed experiment: its name and the argument vectors of each stage (without `--out` and the
/// paths that link the stages, which depend on the output folder).
#[derive(Debug, Clone)]
pub struct Experiment {
    pub name: String,
    pub description: String,
    pub seed: u64,
    pub data: DataSpec,
    pub attack: Vec<String>,
    pub train: Option<Vec<String>>,
    pub prune: Vec<String>,
    pub score: Option<Vec<String>>,
    pub reverse: Option<Vec<String>>,
    pub imp: bool,
}

/// Where to get each kind of data set, for the error when it is missing.
pub fn where_to_get(spec: &DataSpec) -> &'static str {
    match spec {
        DataSpec::Cifar10(_) => "CIFAR-10 binary version: https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz (extract; the folder holds data_batch_1.bin .. data_batch_5.bin and test_batch.bin)",
        DataSpec::Cifar100(_) => "CIFAR-100 binary version: https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz (extract; the folder holds train.bin and test.bin)",
        DataSpec::Mnist(_) => "MNIST IDX files (train-images-idx3-ubyte[.gz] etc.): https://ossci-datasets.s3.amazonaws.com/mnist/ or the Debian package `mnist`",
        DataSpec::FashionMnist(_) => "Fashion-MNIST IDX files: https://github.com/zalandoresearch/fashion-mnist (data/fashion) or the Debian package `dataset-fashion-mnist`",
        DataSpec::Folder(_) => "an image folder: one sub-folder of PNG/JPEG images per class",
        DataSpec::Builtin => "built into the binary",
    }
}

impl Experiment {
    /// Parses and validates a config: every stage's flags go through the command's own parser.
    pub fn load(file: &Path) -> anyhow::Result<Self> {
        let f = expconfig::load(file)?;
        let data: DataSpec = f.data.parse().map_err(|e| anyhow::anyhow!("{}: data = \"{}\": {e}", file.display(), f.data))?;
        let expconfig::ExperimentFile { name, description, seed, attack, train, prune, score, reverse, .. } = f;
        let attack = attack.unwrap_or_default();
        let mut e = Experiment { name, description, seed, data, attack, train, prune, score, reverse, imp: false };
        let p: prune::PruneArgs = parse(&e.prune_argv(Path::new("OUT"))).map_err(|err| anyhow::anyhow!("{}: [prune]/[attack]: {err}", file.display()))?;
        e.imp = p.method == crate::prune::Method::Imp;
        match (&e.train, e.imp) {
            (Some(_), true) => bail!("{}: IMP trains its own dense model: remove [train] and put arch, epochs, lr in [prune]", file.display()),
            (None, false) => bail!("{}: a {} path prunes a trained model: add a [train] section", file.display(), p.method.title()),
            _ => {}
        }
        if e.train.is_some() {
            let _: train::TrainArgs = parse(&e.train_argv(Path::new("OUT"))).map_err(|err| anyhow::anyhow!("{}: [train]/[attack]: {err}", file.display()))?;
        }
        if e.score.is_some() {
            let _: score::ScoreArgs = parse(&e.score_argv(Path::new("OUT"))).map_err(|err| anyhow::anyhow!("{}: [score]: {err}", file.display()))?;
        }
        if e.reverse.is_some() {
            anyhow::ensure!(e.score.is_some(), "{}: [reverse] runs on the winning Trojan ticket, which needs a [score] section", file.display());
            let _: reverse::ReverseArgs = parse(&e.reverse_argv(Path::new("M"), Path::new("OUT"))).map_err(|err| anyhow::anyhow!("{}: [reverse]: {err}", file.display()))?;
        }
        Ok(e)
    }

    fn common(&self) -> Vec<String> {
        vec!["--data".into(), self.data.to_string(), "--seed".into(), self.seed.to_string()]
    }

    fn train_argv(&self, out: &Path) -> Vec<String> {
        [self.common(), self.train.clone().unwrap_or_default(), self.attack.clone(), vec!["--out".into(), out.join("train").display().to_string()]].concat()
    }

    fn prune_argv(&self, out: &Path) -> Vec<String> {
        let mut v = [self.common(), self.prune.clone(), vec!["--out".into(), out.join("prune").display().to_string()]].concat();
        if self.train.is_some() {
            v.extend(["--model".into(), out.join("train").join("model.safetensors").display().to_string()]);
        }
        // The attack flags tell IMP how to poison its training data, and every path how to measure ASR.
        v.extend(self.attack.clone());
        v
    }

    fn score_argv(&self, out: &Path) -> Vec<String> {
        [self.score.clone().unwrap_or_default(), vec!["--run".into(), out.join("prune").display().to_string()]].concat()
    }

    fn reverse_argv(&self, model: &Path, out: &Path) -> Vec<String> {
        [self.reverse.clone().unwrap_or_default(), vec!["--model".into(), model.display().to_string(), "--out".into(), out.display().to_string(), "--seed".into(), self.seed.to_string()]].concat()
    }

    /// The dense model the path starts from.
    fn dense_model(&self, out: &Path) -> PathBuf {
        if self.imp {
            out.join("prune").join("round-000").join("trained.safetensors")
        } else {
            out.join("train").join("model.safetensors")
        }
    }

    /// An error saying where to get the data when its folder is missing.
    pub fn check_data(&self, file: &Path) -> anyhow::Result<()> {
        let dir = match &self.data {
            DataSpec::Builtin => return Ok(()),
            DataSpec::Cifar10(d) | DataSpec::Cifar100(d) | DataSpec::Mnist(d) | DataSpec::FashionMnist(d) | DataSpec::Folder(d) => d,
        };
        anyhow::ensure!(dir.is_dir(), "{}: data folder {} does not exist. Get {}", file.display(), dir.display(), where_to_get(&self.data));
        Ok(())
    }
}

fn stage(out: &Path, name: &str, marker: &Path, resume: bool) -> bool {
    let done = resume && marker.exists();
    if done {
        eprintln!("run: {name}: finished earlier ({}), skipped", marker.strip_prefix(out).unwrap_or(marker).display());
    } else {
        eprintln!("run: {name}");
    }
    !done
}

pub fn run(a: RunArgs, device: Device, json: bool) -> anyhow::Result<()> {
    let e = Experiment::load(&a.config)?;
    if a.check {
        let data = e.check_data(&a.config);
        eprintln!("{}: valid ({}{}){}", a.config.display(), e.name, if e.imp { ", IMP" } else { "" }, data.as_ref().err().map(|m| format!("; but {m}")).unwrap_or_default());
        if json {
            println!("{}", serde_json::json!({"config": a.config, "name": e.name, "valid": true, "data_present": data.is_ok(), "data_hint": data.err().map(|m| m.to_string())}));
        }
        return Ok(());
    }
    e.check_data(&a.config)?;
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(&e.name));
    prepare_out_dir(&out, "experiment.json", a.resume, a.force)?;
    let again: Vec<String> = [(a.resume, "--resume"), (a.force, "--force")].iter().filter(|(b, _)| *b).map(|(_, f)| f.to_string()).collect();
    let start = std::time::Instant::now();
    write_atomic(&out.join("config.toml"), &std::fs::read(&a.config).with_context(|| format!("reading {}", a.config.display()))?)?;

    if e.train.is_some() && stage(&out, "train", &out.join("train").join("result.json"), a.resume) {
        train::run(parse(&[e.train_argv(&out), again.clone()].concat())?, device, false)?;
    }
    if stage(&out, "prune", &out.join("prune").join("prune.json"), a.resume) {
        prune::run(parse(&[e.prune_argv(&out), again.clone()].concat())?, device, false)?;
    }
    let ticket = out.join("prune").join("winning-ticket.safetensors");
    if e.score.is_some() && stage(&out, "score", &ticket, a.resume) {
        score::run(parse(&[e.score_argv(&out), again.clone()].concat())?, device, false)?;
    }
    let mut reversed = BTreeMap::new();
    if e.reverse.is_some() {
        for (name, model) in [("reverse-dense", e.dense_model(&out)), ("reverse-ticket", ticket.clone())] {
            let dir = out.join(name);
            if stage(&out, name, &dir.join("reverse.json"), a.resume) {
                let force = if a.resume || a.force { vec!["--force".to_string()] } else { vec![] };
                reverse::run(parse(&[e.reverse_argv(&model, &dir), force].concat())?, device, false)?;
            }
            reversed.insert(name, dir);
        }
    }
    let result = serde_json::json!({
        "name": e.name, "description": e.description, "config": a.config, "seed": e.seed, "data": e.data.to_string(),
        "stages": {"train": e.train.is_some(), "score": e.score.is_some(), "reverse": e.reverse.is_some(), "imp": e.imp},
        "seconds": start.elapsed().as_secs_f64(), "versions": Versions::default(),
        "command": format!("quarantine run {} --out {}", a.config.display(), out.display()),
    });
    write_json(&out.join("experiment.json"), &result)?;
    let report = crate::report::html::write_report(&out)?;
    eprintln!("run: {} finished in {:.0} s; report {}", e.name, start.elapsed().as_secs_f64(), report.display());
    if json {
        println!("{result}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("x.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn flags_are_validated_by_the_commands_parsers() {
        let d = tempfile::tempdir().unwrap();
        let ok = "name = \"t\"\nseed = 3\n[attack]\nattack = \"badnets\"\ntarget = 2\n[train]\narch = \"cnn\"\nepochs = 2\nmilestones = [1]\n[prune]\nmethod = \"omp\"\nsteps = 3\n[score]\nk = 2\n[reverse]\nepochs = 2\nseeds = \"noise:8\"\n";
        let e = Experiment::load(&write(d.path(), ok)).unwrap();
        assert!(!e.imp);
        let argv = e.train_argv(Path::new("O"));
        assert!(argv.contains(&"--milestones=1".to_string()), "{argv:?}");
        assert!(argv.windows(2).any(|w| w == ["--seed", "3"]), "{argv:?}");
        for (bad, needle) in [
            (ok.replace("epochs = 2\nmilestones", "epoch = 2\nmilestones"), "--epoch"),
            (ok.replace("method = \"omp\"", "method = \"imp\""), "IMP trains its own"),
            (ok.replace("name = \"t\"", "name = \"a b\""), "name"),
            (ok.replace("[score]\nk = 2\n", ""), "[score]"),
            (format!("{ok}\nfoo = 1\n"), "reverse"),
            (ok.replace("attack = \"badnets\"", "attack = \"badnet\""), "badnet"),
            ("name = \"t\"\n[prune\n".to_string(), "TOML"),
            // A value that spells a flag stays the value of its key, and the command refuses it.
            (ok.replace("k = 2", "k = \"--run=/elsewhere\""), "--run=/elsewhere"),
        ] {
            let err = format!("{:#}", Experiment::load(&write(d.path(), &bad)).unwrap_err());
            assert!(err.contains(needle) && err.contains("x.toml"), "{needle}: {err}");
        }
    }

    #[test]
    fn missing_data_says_where_to_get_it() {
        let d = tempfile::tempdir().unwrap();
        let text = "name = \"t\"\ndata = \"cifar10:/nonexistent/cifar\"\n[prune]\nmethod = \"imp\"\n";
        let p = write(d.path(), text);
        let e = Experiment::load(&p).unwrap();
        let err = e.check_data(&p).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/cifar") && err.contains("cifar-10-binary.tar.gz"), "{err}");
    }
}
