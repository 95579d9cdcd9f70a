//! The file layer of `quarantine run CONFIG.toml`: a TOML experiment file turned into the flag
//! vectors of the commands it drives. No libtorch here, so the parser can be fuzzed on its own
//! (fuzz/fuzz_targets/config.rs); the main crate then checks every vector with the command's own
//! command-line parser.
//!
//! Format (see configs/ for complete files):
//!
//! ```toml
//! name = "builtin-cnn-badnets-gray"   # required: letters, digits, - _ . (names the output folder)
//! description = "..."                 # optional
//! seed = 1                            # optional, default 0: one seed for every stage
//! data = "builtin"                    # optional, default "builtin": the data spec of every stage
//! [attack]   # flags of `train --attack ...`
//! [train]    # flags of `quarantine train`
//! [prune]    # flags of `quarantine prune` (required)
//! [score]    # flags of `quarantine score`
//! [reverse]  # flags of `quarantine reverse`
//! ```
//!
//! In a section, `key = value` becomes one command-line token `--key=value` (`true` is a bare
//! `--key`, `false` nothing, an array its items joined by commas). One token per key means a value
//! can never be read as another flag: `x = "--out=/elsewhere"` gives `--x=--out=/elsewhere`, which
//! the command rejects, rather than a second `--out`. Keys are lower-case flag names
//! (`[a-z0-9][a-z0-9-]*`); the flags `quarantine run` sets itself (out, model, run, data, seed,
//! resume, force) are refused, as are non-finite numbers.
use std::path::{Path, PathBuf};

/// The top-level keys.
pub const TOP: [&str; 4] = ["name", "description", "seed", "data"];
/// The sections, in the order the stages run.
pub const SECTIONS: [&str; 5] = ["attack", "train", "prune", "score", "reverse"];
/// Flags `quarantine run` sets itself, refused in sections.
pub const RESERVED: [&str; 7] = ["out", "model", "run", "data", "seed", "resume", "force"];

/// What is wrong with an experiment file; the message names the file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {msg}", file.display())]
pub struct ConfigError {
    pub file: PathBuf,
    pub msg: String,
}

/// A parsed experiment file: each section's flags as command-line tokens (sorted by key; order does not matter to a command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExperimentFile {
    pub name: String,
    pub description: String,
    pub seed: u64,
    /// The data spec, unparsed (the main crate parses it).
    pub data: String,
    pub attack: Option<Vec<String>>,
    pub train: Option<Vec<String>>,
    pub prune: Vec<String>,
    pub score: Option<Vec<String>>,
    pub reverse: Option<Vec<String>>,
}

/// Whether `key` may name a flag: `[a-z0-9][a-z0-9-]*`.
pub fn valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Whether `name` may name an output folder: letters, digits, `-`, `_`, `.`, not only dots.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !name.chars().all(|c| c == '.')
}

struct Ctx<'a> {
    file: &'a Path,
}

impl Ctx<'_> {
    fn err(&self, msg: impl Into<String>) -> ConfigError {
        ConfigError { file: self.file.to_path_buf(), msg: msg.into() }
    }

    fn scalar(&self, section: &str, key: &str, v: &toml::Value) -> Result<String, ConfigError> {
        match v {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            toml::Value::Float(f) if f.is_finite() => Ok(f.to_string()),
            toml::Value::Float(f) => Err(self.err(format!("[{section}] {key} = {f}: numbers must be finite"))),
            _ => Err(self.err(format!("[{section}] {key}: arrays may hold strings and numbers only"))),
        }
    }

    /// One key of a section as at most one command-line token.
    fn token(&self, section: &str, key: &str, v: &toml::Value) -> Result<Option<String>, ConfigError> {
        Ok(match v {
            toml::Value::Boolean(true) => Some(format!("--{key}")),
            toml::Value::Boolean(false) => None,
            toml::Value::Array(a) => {
                let parts = a.iter().map(|x| self.scalar(section, key, x)).collect::<Result<Vec<_>, _>>()?;
                Some(format!("--{key}={}", parts.join(",")))
            }
            toml::Value::Table(_) | toml::Value::Datetime(_) => {
                return Err(self.err(format!("[{section}] {key}: expected a string, number, boolean or array")))
            }
            scalar => Some(format!("--{key}={}", self.scalar(section, key, scalar)?)),
        })
    }

    fn section(&self, table: &toml::Table, name: &str) -> Result<Option<Vec<String>>, ConfigError> {
        let Some(v) = table.get(name) else { return Ok(None) };
        let t = v.as_table().ok_or_else(|| self.err(format!("`{name}` must be a [{name}] section")))?;
        let mut argv = vec![];
        for (k, v) in t {
            if RESERVED.contains(&k.as_str()) {
                return Err(self
                    .err(format!("[{name}] {k}: set by `quarantine run` itself (data and seed are top-level keys)")));
            }
            if !valid_key(k) {
                return Err(self.err(format!(
                    "[{name}] `{k}`: not a flag name (lower-case letters, digits and -, as on the command line)"
                )));
            }
            argv.extend(self.token(name, k, v)?);
        }
        Ok(Some(argv))
    }

    fn string(&self, table: &toml::Table, key: &str) -> Result<Option<String>, ConfigError> {
        match table.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.err(format!("`{key}` must be a string"))),
        }
    }
}

/// Parses the text of an experiment file; `file` names it in errors.
pub fn parse(text: &str, file: &Path) -> Result<ExperimentFile, ConfigError> {
    let c = Ctx { file };
    let table: toml::Table =
        toml::from_str(text).map_err(|e| c.err(format!("not a valid TOML file: {}", e.message())))?;
    for k in table.keys() {
        if !TOP.contains(&k.as_str()) && !SECTIONS.contains(&k.as_str()) {
            return Err(c.err(format!(
                "unknown key `{k}` (expected {} or sections [{}])",
                TOP.join(", "),
                SECTIONS.join("], [")
            )));
        }
    }
    let name = c.string(&table, "name")?.ok_or_else(|| c.err("`name = \"...\"` is required"))?;
    if !valid_name(&name) {
        return Err(c.err(format!("name `{name}` must be letters, digits, - _ . (it names the output folder)")));
    }
    let seed = match table.get("seed") {
        None => 0,
        Some(v) => {
            v.as_integer().filter(|i| *i >= 0).ok_or_else(|| c.err("seed must be a non-negative integer"))? as u64
        }
    };
    Ok(ExperimentFile {
        name,
        description: c.string(&table, "description")?.unwrap_or_default(),
        seed,
        data: c.string(&table, "data")?.unwrap_or_else(|| "builtin".into()),
        attack: c.section(&table, "attack")?,
        train: c.section(&table, "train")?,
        prune: c
            .section(&table, "prune")?
            .ok_or_else(|| c.err("a [prune] section is required (method = \"imp\" | \"omp\" | \"random\")"))?,
        score: c.section(&table, "score")?,
        reverse: c.section(&table, "reverse")?,
    })
}

impl ExperimentFile {
    /// The file in canonical form: every flag written as a string (`--k=v` as `k = "v"`, `--k` as
    /// `k = true`). Parsing it gives `self` back, which the fuzz target checks.
    pub fn to_toml(&self) -> String {
        let mut t = toml::Table::new();
        t.insert("name".into(), self.name.clone().into());
        t.insert("description".into(), self.description.clone().into());
        t.insert("seed".into(), toml::Value::Integer(self.seed as i64));
        t.insert("data".into(), self.data.clone().into());
        for (name, argv) in
            SECTIONS.iter().zip([&self.attack, &self.train, &Some(self.prune.clone()), &self.score, &self.reverse])
        {
            let Some(argv) = argv else { continue };
            let mut s = toml::Table::new();
            for tok in argv {
                let flag = tok.strip_prefix("--").unwrap_or(tok);
                match flag.split_once('=') {
                    Some((k, v)) => s.insert(k.into(), v.into()),
                    None => s.insert(flag.into(), true.into()),
                };
            }
            t.insert((*name).into(), s.into());
        }
        toml::to_string(&t).expect("a table of strings, integers and booleans serialises")
    }
}

/// Reads and parses an experiment file.
pub fn load(file: &Path) -> Result<ExperimentFile, ConfigError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| ConfigError { file: file.to_path_buf(), msg: format!("cannot read: {e}") })?;
    parse(&text, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<ExperimentFile, ConfigError> {
        parse(text, Path::new("exp.toml"))
    }

    fn err(text: &str) -> String {
        p(text).unwrap_err().to_string()
    }

    #[test]
    fn sections_become_one_token_per_key() {
        let e = p(r#"
            name = "x"
            seed = 3
            [attack]
            kind = "badnets"
            poison-ratio = 0.01
            target = 0
            [prune]
            method = "omp"
            steps = [1, 2.5, "a"]
            json = true
            quiet = false
        "#)
        .unwrap();
        assert_eq!(e.seed, 3);
        assert_eq!(e.data, "builtin");
        assert_eq!(e.attack.unwrap(), ["--kind=badnets", "--poison-ratio=0.01", "--target=0"]);
        assert_eq!(e.prune, ["--json", "--method=omp", "--steps=1,2.5,a"]);
        assert_eq!(e.train, None);
    }

    #[test]
    fn canonical_form_parses_back_to_the_same_experiment() {
        let e = p("name = \"x\"\nseed = 9\ndata = \"mnist:/d\"\n[prune]\nmethod = \"omp\"\nsteps = [1, 2]\nrate = 0.2\njson = true\n[score]\n").unwrap();
        assert_eq!(p(&e.to_toml()).unwrap(), e);
        assert_eq!(e.score, Some(vec![]));
    }

    #[test]
    fn a_value_cannot_smuggle_a_second_flag() {
        let e = p("name = \"x\"\n[prune]\nmethod = \"--out=/elsewhere\"\n").unwrap();
        assert_eq!(e.prune, ["--method=--out=/elsewhere"]);
    }

    #[test]
    fn bad_files_name_the_file_and_the_problem() {
        assert!(err("name = \"x\"").starts_with("exp.toml: a [prune] section is required"));
        assert!(err("[prune]\nmethod = \"omp\"").contains("`name = \"...\"` is required"));
        assert!(err("name = \"../x\"\n[prune]").contains("name `../x`"));
        assert!(err("name = \"..\"\n[prune]").contains("name `..`"));
        assert!(err("name = \"x\"\nseed = -1\n[prune]").contains("seed must be a non-negative integer"));
        assert!(err("name = \"x\"\nsede = 1\n[prune]").contains("unknown key `sede`"));
        assert!(err("name = \"x\"\n[prune]\nout = \"/tmp\"").contains("[prune] out: set by `quarantine run` itself"));
        assert!(err("name = \"x\"\n[prune]\nlr = nan").contains("numbers must be finite"));
        assert!(err("name = \"x\"\n[prune]\nlr = [inf]").contains("numbers must be finite"));
        assert!(err("name = \"x\"\n[prune]\n\"a=b\" = 1").contains("not a flag name"));
        assert!(err("name = \"x\"\n[prune]\nA = 1").contains("not a flag name"));
        assert!(err("name = \"x\"\n[prune]\nk = [true]").contains("arrays may hold strings and numbers only"));
        assert!(err("name = \"x\"\n[prune]\nk = { a = 1 }").contains("expected a string, number, boolean or array"));
        assert!(err("name = \"x\"\nprune = 1").contains("`prune` must be a [prune] section"));
        assert!(err("name = 1\n[prune]").contains("`name` must be a string"));
        assert!(err("name = \"x\"\n[prune").starts_with("exp.toml: not a valid TOML file"));
    }

    #[test]
    fn flag_names_are_what_a_command_line_spells() {
        for ok in ["k", "poison-ratio", "k2", "2k"] {
            assert!(valid_key(ok), "{ok}");
        }
        for bad in ["", "-k", "K", "a b", "a=b", "a_b", "é"] {
            assert!(!valid_key(bad), "{bad}");
        }
    }

    #[test]
    fn a_missing_file_is_named() {
        let e = load(Path::new("/nonexistent/exp.toml")).unwrap_err().to_string();
        assert!(e.starts_with("/nonexistent/exp.toml: cannot read"), "{e}");
    }
}
