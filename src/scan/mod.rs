//! `quarantine scan`: `detect` over every model in one or more folders, and how good each decision
//! rule is over that population where ground truth is known (issue 16; README "Populations").
//!
//! - **Layouts** ([`discover`]): our zoo (`id-*/model.safetensors` with `config.json`), TrojAI-style
//!   (`id-*/model.pt`, ground truth in `config.json` `poisoned`/`trigger_target_class` or
//!   `ground_truth.csv`), and flat folders of checkpoints (`.safetensors`, `.pt`, `.pth`).
//! - **Resumable**: each model's row is written atomically to `OUT/rows/<id>.json` when its detect
//!   finishes (or fails); a row that exists is not redone, and an interrupted detect resumes from its
//!   own checkpointed path (`OUT/models/<id>/`).
//! - **One bad model does not stop the scan**: an error (or a panic inside libtorch or a foreign
//!   module) becomes an error row naming the reason.
//! - **One set of settings per output folder** ([`ScanSettings`], `OUT/settings.json`): a rerun or a
//!   shard with other detect settings or data is refused, so rows made with different settings are
//!   never mixed in one table (nor joined by [`merge`]).
//! - **Sharded** with `--shard I/N` (models in sorted order, every N-th from I): array jobs share
//!   nothing but the output folders; [`merge`] joins the rows of any number of output folders.
//! - **Measured** ([`metrics`]): ROC-AUC, TPR at 5% FPR, accuracy at the rule's threshold and target
//!   accuracy on flagged Trojaned models, each with a bootstrap 95% interval, for the consensus rule
//!   (our default), the paper's ticket rule, the dense model on the log scale and Neural Cleanse
//!   (dense, linear scale). Poisoned models whose backdoor did not take are left out (and counted).
pub mod roc;

use std::path::{Path, PathBuf};

use tch::Device;

use crate::control::Control;
use crate::data::DataSpec;
use crate::detect::{self, AuditData, DetectConfig, DetectRecord, ModelRef, Suspect};
use crate::error::{Error, Result};
use crate::report::write_detection;
use crate::reverse::warp_flags;
use crate::util::{write_atomic, write_json};

/// Which models of the sorted list this process scans: every `count`-th from `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    /// 0-based shard index (a Slurm `$SLURM_ARRAY_TASK_ID` counted from 0).
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::invalid("shard", format!("`{s}`: expected I/N with 0 <= I < N (e.g. 0/4)"));
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// What is known about a model before it is scanned.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Truth {
    /// Poisoned during training.
    pub poisoned: bool,
    /// The attack's target label.
    pub target: Option<u32>,
    /// The attack kind.
    pub attack: Option<String>,
    /// `false` for a poisoned model whose backdoor did not take (non-target attack success < 0.5).
    pub backdoor_took: Option<bool>,
    /// The architecture.
    pub arch: Option<String>,
    /// The attack as trained (our zoo's `config.json`), for measuring the winning ticket with it.
    pub attack_config: Option<crate::attack::AttackConfig>,
    /// The data set it was trained on (our zoo's `config.json`).
    pub data: Option<String>,
}

/// A model found by [`discover`].
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Unique id within the scan: the model's folder (zoo, TrojAI) or file name (flat).
    pub id: String,
    /// The checkpoint.
    pub path: PathBuf,
    /// Ground truth, where the layout records it.
    pub truth: Option<Truth>,
}

/// Every model in `dirs`, sorted by id (ids made unique with the folder's position when two folders
/// hold the same name).
pub fn discover(dirs: &[PathBuf]) -> Result<Vec<Candidate>> {
    let mut out = vec![];
    for (k, dir) in dirs.iter().enumerate() {
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        // Our zoo (it has `zoo.json`): only finished members, `id-*` folders with `config.json`; not
        // the clean-label surrogate, not a member still training (a scan may run beside `zoo`).
        let zoo = dir.join("zoo.json").is_file();
        for p in paths {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if name.starts_with('.') || (zoo && !(name.starts_with("id-") && p.join("config.json").is_file())) {
                continue;
            }
            let found = if p.is_dir() {
                ["model.safetensors", "model.pt", "model.ts.pt", "model.pth"]
                    .iter()
                    .map(|f| p.join(f))
                    .find(|f| f.is_file())
                    .map(|model| Candidate { id: name.clone(), truth: read_truth(&p), path: model })
            } else {
                let is_model = [".safetensors", ".pt", ".pth"].iter().any(|x| name.ends_with(x));
                is_model.then(|| Candidate { id: name.clone(), path: p.clone(), truth: None })
            };
            if let Some(mut c) = found {
                if dirs.len() > 1 {
                    c.id = format!("{k}-{}", c.id);
                }
                out.push(c);
            }
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Ground truth from a model folder: our zoo's `config.json`, TrojAI's `config.json` keys or
/// `ground_truth.csv` (`1` poisoned, `0` clean).
fn read_truth(dir: &Path) -> Option<Truth> {
    let cfg: Option<serde_json::Value> =
        std::fs::read(dir.join("config.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let from_csv = std::fs::read_to_string(dir.join("ground_truth.csv")).ok().and_then(|s| match s.trim() {
        "1" => Some(true),
        "0" => Some(false),
        _ => None,
    });
    let poisoned = cfg
        .as_ref()
        .and_then(|c| c.get("poisoned").or_else(|| c.get("POISONED")).and_then(|v| v.as_bool()))
        .or(from_csv)?;
    let get = |k: &str| cfg.as_ref().and_then(|c| c.get(k)).cloned();
    let target = get("target").or_else(|| get("trigger_target_class")).and_then(|v| v.as_u64()).map(|t| t as u32);
    Some(Truth {
        poisoned,
        target: if poisoned { target } else { None },
        attack: get("attack_kind").and_then(|v| v.as_str().map(str::to_string)),
        backdoor_took: get("backdoor_took").and_then(|v| v.as_bool()),
        arch: get("arch").and_then(|v| v.as_str().map(str::to_string)),
        attack_config: get("attack").and_then(|v| serde_json::from_value(v).ok()),
        data: get("data").and_then(|v| v.as_str().map(str::to_string)),
    })
}

/// One model's line of `scan.csv`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScanRow {
    /// The candidate's id.
    pub id: String,
    /// The checkpoint.
    pub path: String,
    /// `ok` or `error`.
    pub status: String,
    /// Why it failed (error rows).
    pub error: Option<String>,
    /// The default (configured) rule's verdict.
    pub trojaned: Option<bool>,
    /// Its target.
    pub target: Option<u32>,
    /// The configured rule's statistic (consensus: the pooled anomaly index where dense and ticket
    /// agree, else -1).
    pub score_rule: Option<f64>,
    /// Dense model: argmin label, anomaly index on the log and linear scales.
    pub dense_target: Option<u32>,
    /// Dense anomaly index (log scale, the default).
    pub dense_ai: Option<f64>,
    /// Dense anomaly index (linear scale: Neural Cleanse).
    pub dense_ai_linear: Option<f64>,
    /// Winning ticket: argmin label.
    pub ticket_target: Option<u32>,
    /// Ticket anomaly index.
    pub ticket_ai: Option<f64>,
    /// Pooled anomaly index (consensus).
    pub pooled_ai: Option<f64>,
    /// Dense and ticket name the same label.
    pub agree: Option<bool>,
    /// The rule's threshold.
    pub threshold: Option<f64>,
    /// Winning ticket density.
    pub ticket_density: Option<f64>,
    /// Seconds of this model's detect.
    pub seconds: f64,
    /// Peak resident memory during this model's detect, MB (Linux `VmHWM` after resetting it with
    /// `clear_refs`; where the kernel ignores the reset, the process's peak so far; `None` off Linux).
    pub peak_rss_mb: Option<f64>,
    /// Ground truth: poisoned.
    pub truth_poisoned: Option<bool>,
    /// Ground truth: target.
    pub truth_target: Option<u32>,
    /// Ground truth: attack kind.
    pub truth_attack: Option<String>,
    /// Ground truth: the backdoor took.
    pub truth_backdoor_took: Option<bool>,
    /// Ground truth: architecture.
    pub truth_arch: Option<String>,
    /// The winning ticket's clean accuracy on the model's test data (zoo models, known trigger).
    pub ticket_clean_accuracy: Option<f64>,
    /// The winning ticket's attack success (non-target) with the known trigger.
    pub ticket_asr: Option<f64>,
    /// The paper's phenomenon on the winning ticket: attack success >= 0.8 at clean accuracy <= 0.3.
    pub ticket_phenomenon: Option<bool>,
    /// Consensus calibrated on clean reference models (`--calibration`; not stored in `rows/`): the
    /// label dense and ticket agree on after calibration.
    #[serde(default)]
    pub calibrated_target: Option<u32>,
    /// Its pooled anomaly index (-1 where they disagree).
    #[serde(default)]
    pub calibrated_ai: Option<f64>,
    /// Reference models of this architecture it was calibrated on (0: none, plain consensus).
    #[serde(default)]
    pub calibrated_references: Option<usize>,
    /// The size rule on the same calibration (`--calibration`; not stored in `rows/`): the label
    /// whose dense mask is smallest against the references.
    #[serde(default)]
    pub size_target: Option<u32>,
    /// Its statistic z (empty with fewer than 3 references that record absolute sizes).
    #[serde(default)]
    pub size_z: Option<f64>,
    /// References it used.
    #[serde(default)]
    pub size_references: Option<usize>,
    /// The warp inversion of the dense model ([`crate::reverse::warp`]): the label warped seeds
    /// reach most often.
    #[serde(default)]
    pub warp_target: Option<u32>,
    /// Its attack success on the seeds.
    #[serde(default)]
    pub warp_asr: Option<f64>,
    /// The second highest label's.
    #[serde(default)]
    pub warp_runner_up: Option<f64>,
}

impl ScanRow {
    fn new(c: &Candidate) -> Self {
        let t = c.truth.as_ref();
        ScanRow {
            id: c.id.clone(),
            path: c.path.display().to_string(),
            status: "ok".into(),
            error: None,
            trojaned: None,
            target: None,
            score_rule: None,
            dense_target: None,
            dense_ai: None,
            dense_ai_linear: None,
            ticket_target: None,
            ticket_ai: None,
            pooled_ai: None,
            agree: None,
            threshold: None,
            ticket_density: None,
            seconds: 0.0,
            peak_rss_mb: None,
            truth_poisoned: t.map(|t| t.poisoned),
            truth_target: t.and_then(|t| t.target),
            truth_attack: t.and_then(|t| t.attack.clone()),
            truth_backdoor_took: t.and_then(|t| t.backdoor_took),
            truth_arch: t.and_then(|t| t.arch.clone()),
            ticket_clean_accuracy: None,
            ticket_asr: None,
            ticket_phenomenon: None,
            calibrated_target: None,
            calibrated_ai: None,
            calibrated_references: None,
            size_target: None,
            size_z: None,
            size_references: None,
            warp_target: None,
            warp_asr: None,
            warp_runner_up: None,
        }
    }

    fn fill(&mut self, r: &DetectRecord) {
        let d = &r.decision;
        self.trojaned = Some(r.trojaned);
        self.target = r.target;
        self.dense_target = r.dense.detected_target;
        self.dense_ai = r.dense.anomaly_index;
        self.dense_ai_linear = r.dense.anomaly_index_linear;
        self.ticket_target = r.ticket.detected_target;
        self.ticket_ai = r.ticket.anomaly_index;
        self.pooled_ai = d.pooled_anomaly_index;
        self.agree = Some(d.agree);
        self.threshold = Some(r.threshold);
        self.ticket_density = Some(r.winning_ticket.density);
        if let Some(w) = &r.warp {
            self.warp_target = Some(w.best);
            self.warp_asr = Some(w.best_attack_success);
            self.warp_runner_up = Some(w.runner_up_attack_success);
        }
        self.score_rule = match d.rule {
            detect::DecisionRule::Consensus => {
                Some(if d.agree { d.pooled_anomaly_index.unwrap_or(-1.0) } else { -1.0 })
            }
            _ => d.anomaly_index,
        };
    }

    /// The row counts in the metrics: it has a verdict and ground truth, and a poisoned model's
    /// backdoor took (or is not known not to have).
    fn measurable(&self) -> Option<bool> {
        if self.status != "ok" || self.truth_backdoor_took == Some(false) {
            return None;
        }
        self.truth_poisoned
    }
}

/// The columns of `scan.csv`, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "id",
    "path",
    "status",
    "error",
    "trojaned",
    "target",
    "score_rule",
    "dense_target",
    "dense_ai",
    "dense_ai_linear",
    "ticket_target",
    "ticket_ai",
    "pooled_ai",
    "agree",
    "threshold",
    "ticket_density",
    "seconds",
    "peak_rss_mb",
    "truth_poisoned",
    "truth_target",
    "truth_attack",
    "truth_backdoor_took",
    "truth_arch",
    "ticket_clean_accuracy",
    "ticket_asr",
    "ticket_phenomenon",
    "calibrated_target",
    "calibrated_ai",
    "calibrated_references",
    "size_target",
    "size_z",
    "size_references",
    "warp_target",
    "warp_asr",
    "warp_runner_up",
];

/// `rows` as CSV (RFC 4180 quoting), one line per row in the given order.
pub fn csv(rows: &[ScanRow]) -> String {
    let mut s = CSV_COLUMNS.join(",") + "\n";
    for r in rows {
        let v = serde_json::to_value(r).expect("rows serialize");
        let cells: Vec<String> = CSV_COLUMNS
            .iter()
            .map(|c| match &v[*c] {
                serde_json::Value::Null => String::new(),
                serde_json::Value::String(x) => quote(x),
                serde_json::Value::Number(n) if n.is_f64() => n.as_f64().map_or(n.to_string(), |f| format!("{f:.6}")),
                serde_json::Value::Number(n) => n.to_string(),
                other => other.to_string(),
            })
            .collect();
        s += &(cells.join(",") + "\n");
    }
    s
}

fn quote(x: &str) -> String {
    if x.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", x.replace('"', "\"\""))
    } else {
        x.to_string()
    }
}

/// A scan: folders in, one folder out.
#[derive(Debug, Clone)]
pub struct ScanJob {
    /// Folders holding the models.
    pub dirs: Vec<PathBuf>,
    /// Output folder (rows, per-model detect folders, csv, metrics, report).
    pub out: PathBuf,
    /// This process's share.
    pub shard: Option<Shard>,
    /// How each model is examined.
    pub detect: DetectConfig,
    /// Clean data for every model (`None`: data-free).
    pub data: Option<DataSpec>,
    /// Bootstrap resamples for the intervals.
    pub bootstrap: usize,
    /// Clean reference models for the calibrated consensus rule (a decision over finished detects:
    /// not one of the [`ScanSettings`], it can be added or changed on a finished scan).
    pub calibration: Option<detect::Calibration>,
}

/// What every row of one output folder was made with (`OUT/settings.json`, written by the first
/// scan into it). Rows are only comparable under one set of settings, so a scan into a folder whose
/// settings differ, and a merge of folders whose settings differ, are refused.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScanSettings {
    /// How each model is examined.
    pub detect: DetectConfig,
    /// Clean data for every model (`None`: data-free), as given.
    pub data: Option<String>,
}

impl ScanSettings {
    /// The settings of `job`.
    pub fn of(job: &ScanJob) -> Self {
        ScanSettings { detect: job.detect.clone(), data: job.data.as_ref().map(|d| d.to_string()) }
    }

    fn path(out: &Path) -> PathBuf {
        out.join("settings.json")
    }

    /// The settings recorded in `out` (`None` for a folder no scan has recorded them in, e.g. one
    /// made before they were recorded).
    pub fn read(out: &Path) -> Result<Option<Self>> {
        let p = Self::path(out);
        match std::fs::read(&p) {
            Ok(b) => {
                serde_json::from_slice(&b).map(Some).map_err(|e| Error::bad_file(&p, format!("not scan settings: {e}")))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&p, e)),
        }
    }

    /// Records these settings in `out`, or errs naming the first setting that differs from the ones
    /// recorded there.
    pub fn record_or_check(&self, out: &Path) -> Result<()> {
        match Self::read(out)? {
            None => write_json(&Self::path(out), self),
            Some(prev) => self.check_same(&prev, &Self::path(out)),
        }
    }

    fn check_same(&self, prev: &ScanSettings, path: &Path) -> Result<()> {
        if self == prev {
            return Ok(());
        }
        let (a, b) = (serde_json::to_value(prev).expect("settings"), serde_json::to_value(self).expect("settings"));
        Err(Error::bad_file(
            path,
            format!(
                "its rows were made with other settings ({}); scan into another --out, or rerun with the recorded ones",
                first_difference("", &a, &b)
            ),
        ))
    }
}

/// The first key path where two JSON values differ, with both values.
fn first_difference(at: &str, a: &serde_json::Value, b: &serde_json::Value) -> String {
    use serde_json::Value;
    if let (Value::Object(x), Value::Object(y)) = (a, b) {
        let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            let (u, v) = (x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null));
            if u != v {
                let here = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                return first_difference(&here, u, v);
            }
        }
    }
    format!("`{at}`: recorded {a}, now {b}")
}

/// What a scan did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScanSummary {
    /// Models in this shard.
    pub models: usize,
    /// Scanned now.
    pub scanned: usize,
    /// Already had a row.
    pub skipped: usize,
    /// Error rows (now and before).
    pub errors: usize,
}

/// Scans this shard's models into `job.out/rows/`, then writes the folder's `scan.csv`, metrics and
/// report over every row present there ([`merge`] of `job.out` alone).
pub fn run(job: &ScanJob, device: Device, ctl: &Control) -> Result<ScanSummary> {
    let all = discover(&job.dirs)?;
    let mine: Vec<&Candidate> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| job.shard.is_none_or(|s| i % s.count == s.index))
        .map(|(_, c)| c)
        .collect();
    let rows_dir = job.out.join("rows");
    std::fs::create_dir_all(&rows_dir).map_err(|e| Error::io(&rows_dir, e))?;
    ScanSettings::of(job).record_or_check(&job.out)?;
    let data = match &job.data {
        Some(spec) => Some(AuditData::load(spec)?),
        None => None,
    };
    let (mut scanned, mut skipped) = (0, 0);
    let mut test_sets = TestSets::default();
    for (k, c) in mine.iter().enumerate() {
        let row_path = rows_dir.join(format!("{}.json", c.id));
        if row_path.exists() {
            skipped += 1;
            continue;
        }
        ctl.check(&job.out)?;
        ctl.progress().note(&format!("scan: {} ({}/{})", c.id, k + 1, mine.len()));
        let row = scan_one(job, c, data.as_ref(), &mut test_sets, device, ctl)?;
        write_atomic(&row_path, &serde_json::to_vec_pretty(&row).expect("rows serialize"))?;
        scanned += 1;
    }
    let outs = std::slice::from_ref(&job.out);
    let rows = read_rows(outs)?;
    let errors = rows.iter().filter(|r| r.status != "ok").count();
    write_outputs(&job.out, outs, rows, job.bootstrap, job.detect.seed, job.calibration.as_ref())?;
    Ok(ScanSummary { models: mine.len(), scanned, skipped, errors })
}

/// One model's detect, as a row; an error (or a panic) becomes an error row. Only an interrupt
/// (Ctrl-C) stops the scan.
fn scan_one(
    job: &ScanJob,
    c: &Candidate,
    data: Option<&AuditData>,
    test_sets: &mut TestSets,
    device: Device,
    ctl: &Control,
) -> Result<ScanRow> {
    let mut row = ScanRow::new(c);
    let dir = job.out.join("models").join(&c.id);
    let t0 = std::time::Instant::now();
    reset_peak_rss();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<DetectRecord> {
        let resume = dir.join("path").exists();
        crate::util::prepare_out_dir(&dir, "detect.json", resume, !resume)?;
        let suspect = Suspect::load(&c.path, &Default::default(), device)?;
        let found = detect::run(&suspect, data, &job.detect, &dir, resume, ctl)?;
        let model = ModelRef {
            path: c.path.clone(),
            meta: suspect.info.meta.clone(),
            imported_from: suspect.info.imported_from.clone(),
        };
        let record = found.record(&job.detect, model, job.detect.command_line(&c.path, &dir, job.data.as_ref()));
        write_detection(&dir, &found, &record)?;
        Ok(record)
    }));
    row.seconds = t0.elapsed().as_secs_f64();
    row.peak_rss_mb = peak_rss_mb();
    match result {
        Ok(Ok(record)) => {
            row.fill(&record);
            if let Some(truth) = &c.truth {
                // The experimenter's column; a failure here is noted, the verdict stands.
                match ticket_with_known_trigger(&dir, truth, test_sets, device) {
                    Ok(Some((acc, asr))) => {
                        row.ticket_clean_accuracy = Some(acc);
                        row.ticket_asr = Some(asr);
                        row.ticket_phenomenon = Some(asr >= 0.8 && acc <= 0.3);
                    }
                    Ok(None) => {}
                    Err(e) => row.error = Some(format!("ticket not measured with the known trigger: {e}")),
                }
            }
        }
        Ok(Err(e @ Error::Interrupted(_))) => return Err(e),
        Ok(Err(e)) => {
            row.status = "error".into();
            row.error = Some(e.to_string());
        }
        Err(panic) => {
            row.status = "error".into();
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            row.error = Some(format!("crashed: {why}"));
        }
    }
    Ok(row)
}

/// Test sets by data spec, loaded once per scan (every member of a zoo shares one).
type TestSets = std::collections::HashMap<String, Option<crate::data::ImageSet>>;

/// The winning ticket's clean accuracy and non-target attack success with the model's known trigger
/// (models whose `config.json` records the attack and the data); `None` otherwise.
fn ticket_with_known_trigger(
    dir: &Path,
    truth: &Truth,
    test_sets: &mut TestSets,
    device: Device,
) -> Result<Option<(f64, f64)>> {
    let (Some(cfg), Some(data)) = (&truth.attack_config, &truth.data) else { return Ok(None) };
    if !test_sets.contains_key(data) {
        let spec: DataSpec = data.parse()?;
        test_sets.insert(data.clone(), spec.load()?.test);
    }
    let Some(test) = &test_sets[data] else { return Ok(None) };
    let (ticket, info, _) =
        crate::model::load_checkpoint(&dir.join("winning-ticket.safetensors"), &Default::default(), device)?;
    let attack = crate::attack::Attack::new(cfg.clone(), (test.height, test.width, test.channels), test.num_classes())?;
    let acc = crate::eval::evaluate(&ticket, test, &info.normalization, 500).accuracy;
    let asr = crate::attack::attack_success(&ticket, test, &attack, &info.normalization).attack_success_rate_nontarget;
    Ok(Some((acc, asr)))
}

/// Resets the kernel's peak-RSS mark for this process (Linux `clear_refs` 5); no-op elsewhere.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak RSS since the last reset, MB (Linux `VmHWM`).
fn peak_rss_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Every row under `outs` (`OUT/rows/*.json`), sorted by id; an id found twice is an error (two
/// scans of different models under one name).
pub fn read_rows(outs: &[PathBuf]) -> Result<Vec<ScanRow>> {
    let mut rows: Vec<ScanRow> = vec![];
    for out in outs {
        let dir = out.join("rows");
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
            let row: ScanRow =
                serde_json::from_slice(&bytes).map_err(|e| Error::bad_file(&p, format!("not a scan row: {e}")))?;
            if let Some(prev) = rows.iter().find(|r| r.id == row.id) {
                if prev != &row {
                    return Err(Error::bad_file(
                        &p,
                        format!("model `{}` has another row in an earlier folder", row.id),
                    ));
                }
                continue;
            }
            rows.push(row);
        }
    }
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(rows)
}

/// Joins the rows of several scan outputs (e.g. the shards of an array job) into `out`: `scan.csv`,
/// `metrics.json`, `roc.png`/`.svg`, `report.html`.
pub fn merge(
    outs: &[PathBuf],
    out: &Path,
    bootstrap: usize,
    seed: u64,
    calibration: Option<&detect::Calibration>,
) -> Result<Vec<ScanRow>> {
    let mut settings: Option<ScanSettings> = None;
    for o in outs {
        if let Some(s) = ScanSettings::read(o)? {
            match &settings {
                None => settings = Some(s),
                Some(first) => s.check_same(first, &ScanSettings::path(o))?,
            }
        }
    }
    let rows = read_rows(outs)?;
    if rows.is_empty() {
        return Err(Error::invalid("scan merge", "no rows (OUT/rows/*.json) in the given folders"));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    if let Some(s) = settings {
        s.record_or_check(out)?;
    }
    write_outputs(out, outs, rows, bootstrap, seed, calibration)
}

/// Writes `scan.csv`, `metrics.json`, the ROC plot and the report of `rows` into `out`; with a
/// calibration, first decides every row with it (from its `models/<id>/detect.json` in `outs`) and
/// copies it to `out/calibration.json`. Returns the rows as written.
fn write_outputs(
    out: &Path,
    outs: &[PathBuf],
    mut rows: Vec<ScanRow>,
    bootstrap: usize,
    seed: u64,
    calibration: Option<&detect::Calibration>,
) -> Result<Vec<ScanRow>> {
    let cal_file = out.join("calibration.json");
    match calibration {
        Some(cal) => {
            for r in rows.iter_mut().filter(|r| r.status == "ok") {
                calibrate_row(r, outs, cal)?;
            }
            cal.save(&cal_file)?;
        }
        None if cal_file.exists() => std::fs::remove_file(&cal_file).map_err(|e| Error::io(&cal_file, e))?,
        None => {}
    }
    write_atomic(&out.join("scan.csv"), csv(&rows).as_bytes())?;
    let m = metrics(&rows, bootstrap, seed);
    write_json(&out.join("metrics.json"), &m)?;
    crate::report::scan::write_scan_report(out, &rows, &m)?;
    Ok(rows)
}

/// The detect record of row `id` (the first of `outs` that holds it).
fn detect_record(outs: &[PathBuf], id: &str) -> Result<DetectRecord> {
    let found = outs.iter().map(|o| o.join("models").join(id).join("detect.json")).find(|p| p.is_file());
    let p = found
        .ok_or_else(|| Error::invalid("scan", format!("model `{id}` has a row but no models/{id}/detect.json")))?;
    let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::bad_file(&p, format!("not a detect record: {e}")))
}

/// Fills the calibrated consensus and size columns of an ok row.
fn calibrate_row(r: &mut ScanRow, outs: &[PathBuf], cal: &detect::Calibration) -> Result<()> {
    let record = detect_record(outs, &r.id)?;
    let refused =
        |e: String| Error::invalid("scan", format!("model `{}`: its detect record cannot be calibrated: {e}", r.id));
    let c = cal.decide(&r.path, &record, record.threshold).map_err(refused)?;
    let s = cal.size(&r.path, &record, record.threshold).map_err(refused)?;
    r.calibrated_target = c.label;
    r.calibrated_ai = Some(c.anomaly_index.unwrap_or(-1.0));
    r.calibrated_references = Some(c.references);
    r.size_target = s.label;
    r.size_z = s.z;
    r.size_references = Some(s.references);
    Ok(())
}

/// A calibration from the clean models of finished scans: rows whose ground truth says clean (or,
/// with `assume_clean`, every ok row: a folder of models the user knows to be clean), each from its
/// `models/<id>/detect.json`.
pub fn fit_calibration(outs: &[PathBuf], assume_clean: bool) -> Result<detect::Calibration> {
    let mut refs: Vec<detect::Reference> = vec![];
    // Folder by folder: two scans of different zoos both have an `id-0000`; the checkpoint path
    // tells their references apart.
    for o in outs {
        let one = std::slice::from_ref(o);
        for r in
            read_rows(one)?.iter().filter(|r| r.status == "ok" && (assume_clean || r.truth_poisoned == Some(false)))
        {
            let record = detect_record(one, &r.id)?;
            let reference = detect::Reference::of(&r.path, &record)
                .map_err(|e| Error::invalid("calibrate", format!("model `{}` of {}: {e}", r.id, o.display())))?;
            if refs.iter().any(|q| q.path == reference.path) {
                return Err(Error::invalid(
                    "calibrate",
                    format!("checkpoint `{}` is in two of the scan folders: give each scan once", reference.path),
                ));
            }
            refs.push(reference);
        }
    }
    if refs.is_empty() {
        let why = if assume_clean {
            "no finished model"
        } else {
            "no model known to be clean (use --assume-clean for a folder of clean models)"
        };
        return Err(Error::invalid("calibrate", format!("{why} in the given scan folders")));
    }
    detect::Calibration::new(refs)
}

/// A decision rule's statistic and verdict on one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleName {
    /// Dense model and ticket agree; pooled anomaly index (our default).
    Consensus,
    /// The winning ticket's own verdict (the paper).
    Ticket,
    /// The dense model, log-scale anomaly index.
    DenseLog,
    /// Neural Cleanse: the dense model, linear-scale anomaly index.
    NeuralCleanse,
    /// Consensus calibrated per architecture and label on clean reference models
    /// ([`detect::Calibration`]; only with `--calibration`).
    Calibrated,
    /// Absolute mask sizes against clean reference models ([`detect::Calibration::size`]; only
    /// with `--calibration`).
    Size,
    /// The warp inversion alone: flagged when warped seeds reach a label at least
    /// [`crate::reverse::WARP_FLAG_ASR`] of the time (only where detections ran it).
    Warp,
    /// The size rule or the warp inversion ([`detect::size_warp`]; only with `--calibration` and
    /// the warp inversion).
    SizeWarp,
}

impl RuleName {
    /// All rules in the table's order.
    pub const ALL: [RuleName; 4] = [RuleName::Consensus, RuleName::Ticket, RuleName::DenseLog, RuleName::NeuralCleanse];

    /// The table's name.
    pub fn title(self) -> &'static str {
        match self {
            RuleName::Consensus => "consensus (default)",
            RuleName::Ticket => "ticket (the paper)",
            RuleName::DenseLog => "dense, log scale",
            RuleName::NeuralCleanse => "Neural Cleanse (dense, linear)",
            RuleName::Calibrated => "consensus, calibrated on clean references",
            RuleName::Size => "size, against clean references",
            RuleName::Warp => "warp inversion",
            RuleName::SizeWarp => "size or warp, target by warp",
        }
    }

    /// (statistic, flagged at the threshold, named target) on a row with a verdict.
    fn read(self, r: &ScanRow) -> (f64, bool, Option<u32>) {
        let th = r.threshold.unwrap_or(2.0);
        let flag = |ai: Option<f64>| ai.is_some_and(|a| a > th);
        match self {
            RuleName::Consensus => {
                let s = if r.agree == Some(true) { r.pooled_ai.unwrap_or(-1.0) } else { -1.0 };
                (
                    s,
                    r.agree == Some(true) && flag(r.pooled_ai),
                    if r.agree == Some(true) { r.dense_target } else { None },
                )
            }
            RuleName::Ticket => (r.ticket_ai.unwrap_or(-1.0), flag(r.ticket_ai), r.ticket_target),
            RuleName::DenseLog => (r.dense_ai.unwrap_or(-1.0), flag(r.dense_ai), r.dense_target),
            RuleName::NeuralCleanse => (r.dense_ai_linear.unwrap_or(-1.0), flag(r.dense_ai_linear), r.dense_target),
            RuleName::Calibrated => (r.calibrated_ai.unwrap_or(-1.0), flag(r.calibrated_ai), r.calibrated_target),
            // z may be any real number: a row without it (too few references) ranks below every row.
            RuleName::Size => (r.size_z.unwrap_or(f64::NEG_INFINITY), flag(r.size_z), r.size_target),
            RuleName::Warp => {
                let a = r.warp_asr.unwrap_or(f64::NEG_INFINITY);
                (a, warp_flags(a), r.warp_target)
            }
            RuleName::SizeWarp => {
                let d = detect::size_warp(r.size_z, r.size_target, r.warp_asr, r.warp_target, th);
                (d.statistic, d.trojaned, d.target)
            }
        }
    }
}

/// One rule's numbers over the measurable rows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuleMetrics {
    /// The rule.
    pub rule: RuleName,
    /// ROC-AUC of its statistic.
    pub auc: Option<roc::Estimate>,
    /// TPR at FPR <= 5%.
    pub tpr_at_5_fpr: Option<roc::Estimate>,
    /// Accuracy of its verdict at the threshold.
    pub accuracy: Option<roc::Estimate>,
    /// FPR of its verdict at the threshold.
    pub fpr: Option<roc::Estimate>,
    /// Among Trojaned models it flags, the share whose target it names right.
    pub target_accuracy: Option<roc::Estimate>,
    /// The ROC curve (all rows).
    pub roc: Vec<roc::RocPoint>,
    /// The verdicts at the threshold per group of models: Trojaned models per attack kind, clean
    /// models per architecture (where the misses are).
    pub groups: Vec<GroupCount>,
}

/// How one rule fared on one group of measured models, at its threshold.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GroupCount {
    /// `Trojaned: KIND` or `clean: ARCH`.
    pub group: String,
    /// Models in the group.
    pub models: usize,
    /// Flagged Trojaned.
    pub flagged: usize,
    /// Flagged with the right target (Trojaned groups).
    pub right_target: usize,
}

/// Counts per group (sorted: Trojaned kinds, then clean architectures) of `(row, poisoned, flagged,
/// named target)`.
fn group_counts(read: &[(&ScanRow, bool, bool, Option<u32>)]) -> Vec<GroupCount> {
    let mut groups: std::collections::BTreeMap<(bool, String), GroupCount> = Default::default();
    for (r, poisoned, flagged, target) in read {
        let key = if *poisoned {
            (false, format!("Trojaned: {}", r.truth_attack.as_deref().unwrap_or("?")))
        } else {
            (true, format!("clean: {}", r.truth_arch.as_deref().unwrap_or("?")))
        };
        let g =
            groups.entry(key.clone()).or_insert(GroupCount { group: key.1, models: 0, flagged: 0, right_target: 0 });
        g.models += 1;
        g.flagged += *flagged as usize;
        g.right_target += (*poisoned && *flagged && *target == r.truth_target) as usize;
    }
    groups.into_values().collect()
}

/// What `metrics.json` holds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScanMetrics {
    /// Rows in all.
    pub models: usize,
    /// Error rows.
    pub errors: usize,
    /// Rows without ground truth.
    pub unlabelled: usize,
    /// Poisoned models whose backdoor did not take (left out).
    pub backdoor_not_taken: usize,
    /// Trojaned models measured.
    pub trojaned: usize,
    /// Clean models measured.
    pub clean: usize,
    /// Bootstrap resamples behind the intervals.
    pub bootstrap: usize,
    /// Trojaned models whose winning ticket was measured with the known trigger, and how many of
    /// those show the paper's phenomenon (attack success >= 0.8 at clean accuracy <= 0.3).
    pub phenomenon: (usize, usize),
    /// Per rule.
    pub rules: Vec<RuleMetrics>,
}

/// One measured model as one rule reads it.
struct Read {
    /// The rule's decision statistic.
    statistic: f64,
    /// Flagged at the threshold.
    flagged: bool,
    /// The label the rule names.
    target: Option<u32>,
    /// Ground truth: Trojaned (the backdoor took).
    poisoned: bool,
    /// Ground truth: the target label.
    truth: Option<u32>,
}

/// The metrics of every rule over `rows` with a verdict and known ground truth, poisoned models
/// whose backdoor did not take left out.
pub fn metrics(rows: &[ScanRow], bootstrap: usize, seed: u64) -> ScanMetrics {
    let measured: Vec<(&ScanRow, bool)> = rows.iter().filter_map(|r| r.measurable().map(|p| (r, p))).collect();
    let n = measured.len();
    let calibrated = rows.iter().any(|r| r.calibrated_references.is_some());
    let sized = rows.iter().any(|r| r.size_z.is_some());
    let warped = rows.iter().any(|r| r.warp_asr.is_some());
    let rules = RuleName::ALL
        .iter()
        .chain(calibrated.then_some(&RuleName::Calibrated))
        .chain(sized.then_some(&RuleName::Size))
        .chain(warped.then_some(&RuleName::Warp))
        .chain((sized && warped).then_some(&RuleName::SizeWarp))
        .map(|&rule| {
            let read: Vec<Read> = measured
                .iter()
                .map(|(r, p)| {
                    let (statistic, flagged, target) = rule.read(r);
                    Read { statistic, flagged, target, poisoned: *p, truth: r.truth_target }
                })
                .collect();
            let pick = |idx: &[usize]| -> (Vec<f64>, Vec<bool>) {
                idx.iter().map(|&i| (read[i].statistic, read[i].poisoned)).unzip()
            };
            let auc = roc::bootstrap(n, bootstrap, seed, |idx| {
                let (s, y) = pick(idx);
                roc::auc(&s, &y)
            });
            let tpr5 = roc::bootstrap(n, bootstrap, seed, |idx| {
                let (s, y) = pick(idx);
                roc::tpr_at_fpr(&s, &y, 0.05)
            });
            let accuracy = roc::bootstrap(n, bootstrap, seed, |idx| {
                (!idx.is_empty()).then(|| {
                    idx.iter().filter(|&&i| read[i].flagged == read[i].poisoned).count() as f64 / idx.len() as f64
                })
            });
            let fpr = roc::bootstrap(n, bootstrap, seed, |idx| {
                let neg: Vec<usize> = idx.iter().copied().filter(|&i| !read[i].poisoned).collect();
                (!neg.is_empty()).then(|| neg.iter().filter(|&&i| read[i].flagged).count() as f64 / neg.len() as f64)
            });
            let target_accuracy = roc::bootstrap(n, bootstrap, seed, |idx| {
                let tp: Vec<usize> = idx.iter().copied().filter(|&i| read[i].poisoned && read[i].flagged).collect();
                (!tp.is_empty())
                    .then(|| tp.iter().filter(|&&i| read[i].target == read[i].truth).count() as f64 / tp.len() as f64)
            });
            let (s, y) = pick(&(0..n).collect::<Vec<_>>());
            let groups = group_counts(
                &measured.iter().zip(&read).map(|((r, p), x)| (*r, *p, x.flagged, x.target)).collect::<Vec<_>>(),
            );
            RuleMetrics {
                rule,
                auc,
                tpr_at_5_fpr: tpr5,
                accuracy,
                fpr,
                target_accuracy,
                roc: roc::roc_curve(&s, &y),
                groups,
            }
        })
        .collect();
    ScanMetrics {
        models: rows.len(),
        errors: rows.iter().filter(|r| r.status != "ok").count(),
        unlabelled: rows.iter().filter(|r| r.status == "ok" && r.truth_poisoned.is_none()).count(),
        backdoor_not_taken: rows.iter().filter(|r| r.status == "ok" && r.truth_backdoor_took == Some(false)).count(),
        trojaned: measured.iter().filter(|(_, p)| *p).count(),
        clean: measured.iter().filter(|(_, p)| !*p).count(),
        bootstrap,
        phenomenon: (
            measured.iter().filter(|(r, p)| *p && r.ticket_phenomenon.is_some()).count(),
            measured.iter().filter(|(r, p)| *p && r.ticket_phenomenon == Some(true)).count(),
        ),
        rules,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_keeps_one_set_of_settings_and_a_merge_refuses_two() {
        let tmp = std::env::temp_dir().join(format!("q-scan-settings-{}", std::process::id()));
        let (a, b, joined) = (tmp.join("a"), tmp.join("b"), tmp.join("joined"));
        for d in [&a, &b] {
            std::fs::create_dir_all(d.join("rows")).unwrap();
        }
        let first = ScanSettings { detect: DetectConfig::default(), data: None };
        assert_eq!(ScanSettings::read(&a).unwrap(), None);
        first.record_or_check(&a).unwrap();
        assert_eq!(ScanSettings::read(&a).unwrap().as_ref(), Some(&first), "recorded");
        first.record_or_check(&a).unwrap();
        let other =
            ScanSettings { detect: DetectConfig { reverse_epochs: 80, ..DetectConfig::default() }, ..first.clone() };
        let e = other.record_or_check(&a).unwrap_err().to_string();
        assert!(e.contains("settings.json") && e.contains("`detect.reverse_epochs`: recorded 100, now 80"), "{e}");
        let with_data = ScanSettings { data: Some("builtin".into()), ..first.clone() };
        assert!(with_data.record_or_check(&a).unwrap_err().to_string().contains("`data`"));
        // A merge of folders made with different settings is refused before anything is written.
        other.record_or_check(&b).unwrap();
        let e = merge(&[a.clone(), b.clone()], &joined, 10, 0, None).unwrap_err().to_string();
        assert!(e.contains("reverse_epochs") && !joined.exists(), "{e}");
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn shards_parse_and_partition() {
        assert_eq!("1/4".parse::<Shard>().unwrap(), Shard { index: 1, count: 4 });
        for bad in ["4/4", "1", "a/2", "0/0"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn layouts_are_discovered_with_their_ground_truth() {
        let d = tempfile::tempdir().unwrap();
        let put = |p: &str, b: &[u8]| {
            let p = d.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b).unwrap();
        };
        // TrojAI-style: id-*/model.pt with config.json or ground_truth.csv.
        put("trojai/id-00000001/model.pt", b"x");
        put("trojai/id-00000001/config.json", br#"{"poisoned": true, "trigger_target_class": 4}"#);
        put("trojai/id-00000000/model.pt", b"x");
        put("trojai/id-00000000/ground_truth.csv", b"0\n");
        put("trojai/id-00000002/model.pt", b"x"); // no ground truth
        put("trojai/notes.txt", b"x");
        // Flat: checkpoints, sidecars and other files side by side.
        put("flat/b.safetensors", b"x");
        put("flat/b.json", b"{}");
        put("flat/a.pt", b"x");
        put("flat/.hidden.pt", b"x");
        let c = discover(&[d.path().join("trojai")]).unwrap();
        let ids: Vec<&str> = c.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["id-00000000", "id-00000001", "id-00000002"]);
        assert_eq!(c[0].truth.as_ref().map(|t| (t.poisoned, t.target)), Some((false, None)));
        assert_eq!(c[1].truth.as_ref().map(|t| (t.poisoned, t.target)), Some((true, Some(4))));
        assert!(c[2].truth.is_none());
        // Our zoo: finished members only, not the surrogate, not a member still training.
        put("zoo/zoo.json", b"{}");
        put("zoo/surrogate/model.safetensors", b"x");
        put("zoo/id-0000/model.safetensors", b"x");
        put("zoo/id-0000/config.json", br#"{"poisoned": false}"#);
        put("zoo/id-0001/model.safetensors", b"x");
        let c = discover(&[d.path().join("zoo")]).unwrap();
        assert_eq!(c.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["id-0000"]);
        let c = discover(&[d.path().join("flat"), d.path().join("trojai")]).unwrap();
        let ids: Vec<&str> = c.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["0-a.pt", "0-b.safetensors", "1-id-00000000", "1-id-00000001", "1-id-00000002"]);
    }

    #[test]
    fn groups_count_flags_and_targets_per_attack_kind_and_clean_arch() {
        let row = |attack: Option<&str>, arch: &str, target: Option<u32>| ScanRow {
            truth_attack: attack.map(str::to_string),
            truth_arch: Some(arch.into()),
            truth_target: target,
            ..ScanRow::new(&Candidate { id: "x".into(), path: "x".into(), truth: None })
        };
        let rows = [
            row(Some("wanet"), "cnn", Some(3)),
            row(Some("wanet"), "resnet20s", Some(1)),
            row(Some("badnets"), "cnn", Some(2)),
            row(None, "cnn", None),
            row(None, "resnet20s", None),
            row(None, "cnn", None),
        ];
        let read = [
            (&rows[0], true, true, Some(3)),  // right
            (&rows[1], true, true, Some(8)),  // flagged, wrong target
            (&rows[2], true, false, None),    // missed
            (&rows[3], false, true, Some(8)), // false alarm
            (&rows[4], false, false, None),
            (&rows[5], false, false, None),
        ];
        let g = group_counts(&read);
        let c = |name: &str| g.iter().find(|x| x.group == name).map(|x| (x.models, x.flagged, x.right_target));
        assert_eq!(
            g.iter().map(|x| x.group.as_str()).collect::<Vec<_>>(),
            ["Trojaned: badnets", "Trojaned: wanet", "clean: cnn", "clean: resnet20s"]
        );
        assert_eq!(c("Trojaned: wanet"), Some((2, 2, 1)));
        assert_eq!(c("Trojaned: badnets"), Some((1, 0, 0)));
        assert_eq!(c("clean: cnn"), Some((2, 1, 0)));
        assert_eq!(c("clean: resnet20s"), Some((1, 0, 0)));
    }

    #[test]
    fn csv_quotes_and_keeps_column_order() {
        let c = Candidate { id: "a".into(), path: "x,y.pt".into(), truth: None };
        let mut r = ScanRow::new(&c);
        r.status = "error".into();
        r.error = Some("bad \"pickle\"".into());
        let s = csv(&[r]);
        let line = s.lines().nth(1).unwrap();
        assert!(line.starts_with("a,\"x,y.pt\",error,\"bad \"\"pickle\"\"\","), "{line}");
        assert_eq!(s.lines().next().unwrap().split(',').count(), CSV_COLUMNS.len());
    }
}
