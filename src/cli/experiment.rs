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
//! Each section's flags are parsed by its command's own argument parser (so a config is validated
//! exactly as the command line), then turned into the library's job for that stage; the run itself
//! is [`quarantine::pipeline::experiment::run`]. Output folder (`--out`, default `runs/NAME`): see
//! there. `--resume` skips finished stages and resumes the unfinished one.
use std::path::{Path, PathBuf};

use anyhow::bail;
use clap::{Args, Parser};
use tch::Device;

use super::{prune, reverse, score, train};
use quarantine::data::DataSpec;
use quarantine::pipeline::experiment::{self, Experiment};
use quarantine::prune::PruneJob;
use quarantine::reverse::ReverseJob;
use quarantine::score::job::ScoreJob;
use quarantine::train::TrainJob;

/// Parses one section's flags with its command's parser, as the command line would.
pub(super) fn parse<T: Args>(argv: &[String]) -> anyhow::Result<T> {
    #[derive(Parser)]
    struct Wrap<T: Args> {
        #[command(flatten)]
        inner: T,
    }
    Ok(Wrap::<T>::try_parse_from(std::iter::once("quarantine".to_string()).chain(argv.iter().cloned()))?.inner)
}

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

/// The flags of each section of a config file, as `expconfig` read them.
struct Sections {
    seed: u64,
    data: DataSpec,
    attack: Vec<String>,
    train: Option<Vec<String>>,
    prune: Vec<String>,
    score: Option<Vec<String>>,
    reverse: Option<Vec<String>>,
}

impl Sections {
    fn common(&self) -> Vec<String> {
        vec!["--data".into(), self.data.to_string(), "--seed".into(), self.seed.to_string()]
    }

    /// Paths that link the stages are placeholders here: the pipeline sets them from `--out`.
    fn train_flags(&self) -> Vec<String> {
        [
            self.common(),
            self.train.clone().unwrap_or_default(),
            self.attack.clone(),
            vec!["--out".into(), "OUT/train".into()],
        ]
        .concat()
    }

    fn prune_flags(&self) -> Vec<String> {
        let mut v = [self.common(), self.prune.clone(), vec!["--out".into(), "OUT/prune".into()]].concat();
        if self.train.is_some() {
            v.extend(["--model".into(), "OUT/train/model.safetensors".into()]);
        }
        // The attack flags tell IMP how to poison its training data, and every path how to measure ASR.
        v.extend(self.attack.clone());
        v
    }

    fn score_flags(&self) -> Vec<String> {
        [self.score.clone().unwrap_or_default(), vec!["--run".into(), "OUT/prune".into()]].concat()
    }

    fn reverse_flags(&self) -> Vec<String> {
        [
            self.reverse.clone().unwrap_or_default(),
            vec!["--model".into(), "M".into(), "--out".into(), "OUT".into(), "--seed".into(), self.seed.to_string()],
        ]
        .concat()
    }
}

/// Parses and validates a config file into an experiment: every section's flags go through the
/// command's own parser and become that stage's library job.
pub fn load(file: &Path) -> anyhow::Result<Experiment> {
    let f = expconfig::load(file)?;
    let data: DataSpec =
        f.data.parse().map_err(|e| anyhow::anyhow!("{}: data = \"{}\": {e}", file.display(), f.data))?;
    let expconfig::ExperimentFile { name, description, seed, attack, train, prune, score, reverse, .. } = f;
    let sec = Sections { seed, data: data.clone(), attack: attack.unwrap_or_default(), train, prune, score, reverse };
    let at = |what: &str, err: anyhow::Error| anyhow::anyhow!("{}: {what}: {err}", file.display());
    let p: prune::PruneArgs = parse(&sec.prune_flags()).map_err(|e| at("[prune]/[attack]", e))?;
    let (method, imp) = (p.method, p.method == quarantine::prune::Method::Imp);
    match (&sec.train, imp) {
        (Some(_), true) => bail!(
            "{}: IMP trains its own dense model: remove [train] and put arch, epochs, lr in [prune]",
            file.display()
        ),
        (None, false) => {
            bail!("{}: a {} path prunes a trained model: add a [train] section", file.display(), method.title())
        }
        _ => {}
    }
    let prune_job = PruneJob::try_from(p).map_err(|e| at("[prune]/[attack]", e.into()))?;
    let train_job = match &sec.train {
        Some(_) => {
            let t: train::TrainArgs = parse(&sec.train_flags()).map_err(|e| at("[train]/[attack]", e))?;
            Some(TrainJob::try_from(t).map_err(|e| at("[train]/[attack]", e.into()))?)
        }
        None => None,
    };
    let score_job = match &sec.score {
        Some(_) => Some(ScoreJob::from(&parse::<score::ScoreArgs>(&sec.score_flags()).map_err(|e| at("[score]", e))?)),
        None => None,
    };
    let reverse_job = match &sec.reverse {
        Some(_) => {
            anyhow::ensure!(
                sec.score.is_some(),
                "{}: [reverse] runs on the winning Trojan ticket, which needs a [score] section",
                file.display()
            );
            let r: reverse::ReverseArgs = parse(&sec.reverse_flags()).map_err(|e| at("[reverse]", e))?;
            Some((ReverseJob::try_from(&r).map_err(|e| at("[reverse]", e))?, r.test_data))
        }
        None => None,
    };
    Ok(Experiment {
        name,
        description,
        seed,
        data,
        train: train_job,
        prune: prune_job,
        score: score_job,
        reverse: reverse_job,
    })
}

/// An error saying where to get the data when its folder is missing.
pub fn check_data(e: &Experiment, file: &Path) -> anyhow::Result<()> {
    let dir = match &e.data {
        DataSpec::Builtin => return Ok(()),
        DataSpec::Cifar10(d)
        | DataSpec::Cifar100(d)
        | DataSpec::Mnist(d)
        | DataSpec::FashionMnist(d)
        | DataSpec::Folder(d) => d,
    };
    anyhow::ensure!(
        dir.is_dir(),
        "{}: data folder {} does not exist. Get {}",
        file.display(),
        dir.display(),
        where_to_get(&e.data)
    );
    Ok(())
}

pub fn run(a: RunArgs, device: Device, json: bool) -> anyhow::Result<()> {
    let e = load(&a.config)?;
    if a.check {
        let data = check_data(&e, &a.config);
        eprintln!(
            "{}: valid ({}{}){}",
            a.config.display(),
            e.name,
            if e.imp() { ", IMP" } else { "" },
            data.as_ref().err().map(|m| format!("; but {m}")).unwrap_or_default()
        );
        if json {
            println!(
                "{}",
                serde_json::json!({"config": a.config, "name": e.name, "valid": true, "data_present": data.is_ok(), "data_hint": data.err().map(|m| m.to_string())})
            );
        }
        return Ok(());
    }
    check_data(&e, &a.config)?;
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(&e.name));
    quarantine::reverse::retain_freed_memory();
    let record = experiment::run(&e, &a.config, &out, a.resume, a.force, device, &super::common::control())?;
    eprintln!("run: {} finished in {:.0} s; report {}", e.name, record.seconds, out.join("report.html").display());
    if json {
        println!("{}", serde_json::to_string(&record)?);
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
        let e = load(&write(d.path(), ok)).unwrap();
        assert!(!e.imp());
        let train = e.train.as_ref().unwrap();
        assert_eq!(train.milestones, Some(vec![1]));
        assert_eq!((train.seed, e.prune.seed, e.reverse.as_ref().unwrap().0.config.seed), (3, 3, 3));
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
            let err = format!("{:#}", load(&write(d.path(), &bad)).unwrap_err());
            assert!(err.contains(needle) && err.contains("x.toml"), "{needle}: {err}");
        }
    }

    #[test]
    fn missing_data_says_where_to_get_it() {
        let d = tempfile::tempdir().unwrap();
        let text = "name = \"t\"\ndata = \"cifar10:/nonexistent/cifar\"\n[prune]\nmethod = \"imp\"\narch = \"cnn\"\n";
        let p = write(d.path(), text);
        let e = load(&p).unwrap();
        let err = check_data(&e, &p).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/cifar") && err.contains("cifar-10-binary.tar.gz"), "{err}");
    }
}
