//! The consensus rule calibrated per architecture and label on known-clean reference models
//! (issue 16, "use the zoo to improve the default detector"; README "Populations").
//!
//! What the zoo showed: the built-in data has labels whose masks are small in *every* model of an
//! architecture, clean or not (a "natural backdoor": the cnn's label 8, the ResNet-20s' label 6).
//! Dense model and ticket then agree on that label in clean models, and consensus flags them; a
//! WaNet model whose own target is weak is pulled to the same label. A label's usual size is a
//! property of the data and the architecture, so it can be measured on models known to be clean:
//!
//! - A [`Reference`] is one clean model's detect result: per label, `ln l1 - median_labels ln l1`,
//!   for the dense model and for its winning ticket.
//! - A model's **calibrated** values are its own `ln l1` minus the mean of its architecture's
//!   references, per label; the consensus rule ([`super::Consensus`], log scale) then decides on
//!   the shifted masks `exp(ln l1 - offset)` unchanged (argmin over the labels that reached success,
//!   dense and ticket must agree, pooled anomaly index > threshold).
//! - A model is never its own reference (the same checkpoint path is left out), so a scan of the
//!   references' own population measures the rule leave-one-out.
//!
//! It needs reference models of the same architecture trained on the same data as the audited one
//! (e.g. the clean half of a zoo); an architecture without references is decided uncalibrated (the
//! plain consensus rule), and says so (`references: 0`). A reference counts only for detections
//! made the same way: the same kind of seeds ([`crate::reverse::SeedSpec::regime`]: data-free
//! synthesized seeds, noise, or images of one data spec) and the same input shape, because a
//! label's usual mask size under synthesized seeds says nothing about it under 40 clean images.
//! Where the architecture has references but none of the detection's kind, deciding is an error
//! that says so, not a silent fallback.
//!
//! The **size** rule ([`Calibration::size`]; pre-registered in docs/scans/heldout3-plan.md) uses the
//! same references in absolute terms: are this model's masks smaller than the *same labels'* masks
//! of clean models of its architecture, data and training recipe? Per label j, x_j = the mean of
//! the dense model's and the ticket's ln l1, s_j = x_j - mean over the references; m = min_j s_j.
//! The same m of every reference against the other references is its null distribution, and
//! z = (mean - m) / sd (sample sd); Trojaned when z > threshold. It names the argmin of the dense
//! model's own shift (the ticket, pruned to 1-7% density, has sink labels). On the two zoo halves it
//! was designed on (54 models, leave-one-out), data-free: ROC-AUC 0.990 against 0.782 for plain
//! consensus. Absolute sizes depend on how the models were trained: references from a 6-8 epoch zoo
//! flagged 7 of 13 clean models of a 7-9 epoch zoo, so references must be trained like the audited
//! model. It needs at least [`SIZE_MIN_REFERENCES`] references, and references that record their
//! absolute sizes (files written before them do not).
use std::collections::BTreeMap;
use std::path::Path;

use super::record::{Calibrated, DetectRecord, Size, VerdictSummary};
use super::{CalibratedRule, DecisionRule};
use crate::error::{Error, Result};
use crate::reverse::{verdict, warp_flags, AnomalyScale, LabelSummary, WARP_FLAG_ASR};

/// The format tag of a calibration file.
pub const FORMAT: &str = "quarantine-calibration/1";

/// The fewest references the size rule decides with (it estimates a standard deviation over them).
pub const SIZE_MIN_REFERENCES: usize = 3;

/// One known-clean model's per-label offsets.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Reference {
    /// Its checkpoint as the scan that measured it named it (a model is never its own reference).
    pub path: String,
    /// Its architecture (`cnn`, `resnet20s`, a TorchScript module's name...).
    pub arch: String,
    /// Dense model: per label (in label order) `ln l1 - median ln l1`.
    pub dense: Vec<f64>,
    /// Winning ticket: the same.
    pub ticket: Vec<f64>,
    /// The kind of seeds its detection used ([`crate::reverse::SeedSpec::regime`]; absent in files
    /// written before it was recorded: then it counts for any kind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seeds: Option<String>,
    /// Its input shape `[channels, height, width]` (absent in older files: any shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<[usize; 3]>,
    /// Dense model: per label `ln l1`, absolute (for the size rule; absent in older files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dense_ln_l1: Option<Vec<f64>>,
    /// Winning ticket: the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_ln_l1: Option<Vec<f64>>,
}

/// How a detection was made, as far as its references must match it (and what a reference records
/// of it).
#[derive(Debug)]
struct Regime {
    arch: String,
    labels: usize,
    seeds: String,
    input: [usize; 3],
}

impl Regime {
    fn of(record: &DetectRecord, labels: usize) -> Self {
        let m = &record.model.meta;
        Regime {
            arch: m.arch.to_string(),
            labels,
            seeds: record.config.seeds.regime(),
            input: [m.in_channels, m.height, m.width],
        }
    }
}

impl Reference {
    /// The reference a clean model's `detect.json` gives; `path` names the checkpoint.
    pub fn of(path: &str, record: &DetectRecord) -> std::result::Result<Self, String> {
        let (dense_ln, ticket_ln) = dense_and_ticket_log_l1(record)?;
        let g = Regime::of(record, dense_ln.len());
        Ok(Reference {
            path: path.to_string(),
            arch: g.arch,
            dense: centered(&dense_ln),
            ticket: centered(&ticket_ln),
            seeds: Some(g.seeds),
            input: Some(g.input),
            dense_ln_l1: Some(dense_ln),
            ticket_ln_l1: Some(ticket_ln),
        })
    }
}

/// `x - median x`.
fn centered(x: &[f64]) -> Vec<f64> {
    let med = crate::reverse::median_mad(x).0;
    x.iter().map(|a| a - med).collect()
}

/// Per label the mean of two `ln l1` vectors.
fn pooled(d: &[f64], t: &[f64]) -> Vec<f64> {
    d.iter().zip(t).map(|(a, b)| (a + b) / 2.0).collect()
}

/// Per label (column) mean over the rows.
fn column_means(rows: &[&Vec<f64>], n: usize) -> Vec<f64> {
    (0..n).map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / rows.len() as f64).collect()
}

/// `min_j (x_j - mu_j)` and its argmin.
fn min_shift(x: &[f64], mu: &[f64]) -> (f64, usize) {
    x.iter().zip(mu).map(|(a, b)| a - b).enumerate().fold(
        (f64::INFINITY, 0),
        |(m, i), (j, v)| {
            if v < m {
                (v, j)
            } else {
                (m, i)
            }
        },
    )
}

/// The dense model's and the ticket's per-label `ln l1`; an error when their label counts differ.
fn dense_and_ticket_log_l1(record: &DetectRecord) -> std::result::Result<(Vec<f64>, Vec<f64>), String> {
    let (d, t) = (log_l1(&record.dense)?, log_l1(&record.ticket)?);
    if d.len() != t.len() {
        return Err(format!("dense has {} labels, ticket {}", d.len(), t.len()));
    }
    Ok((d, t))
}

/// Per label (label order 0..n) `ln l1`.
fn log_l1(v: &VerdictSummary) -> std::result::Result<Vec<f64>, String> {
    let mut labels: Vec<_> = v.labels.iter().collect();
    labels.sort_by_key(|l| l.label);
    if labels.is_empty() || labels.iter().enumerate().any(|(i, l)| l.label as usize != i) {
        return Err("the labels are not 0..n".into());
    }
    labels
        .iter()
        .map(|l| {
            if l.l1 > 0.0 && l.l1.is_finite() {
                Ok(l.l1.ln())
            } else {
                Err(format!("label {} has mask l1 {}", l.label, l.l1))
            }
        })
        .collect()
}

/// Reference models' offsets (`calibration.json`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Calibration {
    /// [`FORMAT`].
    pub format: String,
    /// The reference models.
    pub references: Vec<Reference>,
}

impl Calibration {
    /// A calibration from reference models (at least one).
    pub fn new(references: Vec<Reference>) -> Result<Self> {
        if references.is_empty() {
            return Err(Error::invalid("calibration", "no clean reference model"));
        }
        Ok(Calibration { format: FORMAT.into(), references })
    }

    /// Reads and checks a calibration file.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let c: Calibration =
            serde_json::from_slice(&bytes).map_err(|e| Error::bad_file(path, format!("not a calibration: {e}")))?;
        if c.format != FORMAT {
            return Err(Error::bad_file(path, format!("format `{}`, expected `{FORMAT}`", c.format)));
        }
        let bad_abs = |v: &Option<Vec<f64>>, n: usize| {
            v.as_ref().is_some_and(|v| v.len() != n || v.iter().any(|x| !x.is_finite()))
        };
        if let Some(r) = c.references.iter().find(|r| {
            r.dense.len() != r.ticket.len()
                || r.dense.is_empty()
                || r.dense.iter().chain(&r.ticket).any(|x| !x.is_finite())
                || bad_abs(&r.dense_ln_l1, r.dense.len())
                || bad_abs(&r.ticket_ln_l1, r.dense.len())
        }) {
            return Err(Error::bad_file(
                path,
                format!("reference `{}`: offsets are not one finite value per label", r.path),
            ));
        }
        Ok(c)
    }

    /// Writes it (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::util::write_json(path, self)
    }

    /// Per architecture: reference models and labels.
    pub fn summary(&self) -> BTreeMap<String, (usize, usize)> {
        let mut s = BTreeMap::new();
        for r in &self.references {
            s.entry(r.arch.clone()).or_insert((0, r.dense.len())).0 += 1;
        }
        s
    }

    /// Whether reference `r` measures detections made like `g`.
    fn matches(r: &Reference, g: &Regime) -> bool {
        r.arch == g.arch
            && r.dense.len() == g.labels
            && r.seeds.as_ref().is_none_or(|s| *s == g.seeds)
            && r.input.is_none_or(|i| i == g.input)
    }

    /// The references of regime `g`, the one at `leave_out` excluded. An error when the
    /// architecture has references, but none made the same way (another kind of seeds, input shape
    /// or label count).
    fn matching(&self, g: &Regime, leave_out: &str) -> std::result::Result<Vec<&Reference>, String> {
        let same_arch: Vec<&Reference> =
            self.references.iter().filter(|r| r.arch == g.arch && r.path != leave_out).collect();
        let refs: Vec<&Reference> = same_arch.iter().copied().filter(|r| Self::matches(r, g)).collect();
        if refs.is_empty() && !same_arch.is_empty() {
            let r = same_arch[0];
            let input = |i: Option<[usize; 3]>| i.map_or("any".into(), |[c, h, w]| format!("{c}x{h}x{w}"));
            return Err(format!(
                "none of the calibration's {} {} reference(s) was detected like this model (references: {} seeds, \
                 input {}, {} labels; this model: {} seeds, input {}, {} labels): calibrate on clean models \
                 detected the same way",
                same_arch.len(),
                g.arch,
                r.seeds.as_deref().unwrap_or("any"),
                input(r.input),
                r.dense.len(),
                g.seeds,
                input(Some(g.input)),
                g.labels
            ));
        }
        Ok(refs)
    }

    /// Mean dense and ticket offsets over the references of regime `g`, the one at `leave_out`
    /// excluded, and how many there were ([`Self::matching`]'s errors).
    fn offsets(&self, g: &Regime, leave_out: &str) -> std::result::Result<(Vec<f64>, Vec<f64>, usize), String> {
        let refs = self.matching(g, leave_out)?;
        // No reference of the architecture: offsets 0 (plain consensus).
        let mean = |f: fn(&Reference) -> &Vec<f64>| -> Vec<f64> {
            if refs.is_empty() {
                vec![0.0; g.labels]
            } else {
                column_means(&refs.iter().map(|r| f(r)).collect::<Vec<_>>(), g.labels)
            }
        };
        Ok((mean(|r| &r.dense), mean(|r| &r.ticket), refs.len()))
    }

    /// The calibrated consensus decision on `record` (the model at `path`) at `threshold`.
    pub fn decide(&self, path: &str, record: &DetectRecord, threshold: f64) -> std::result::Result<Calibrated, String> {
        let (d, t) = dense_and_ticket_log_l1(record)?;
        let (od, ot, references) = self.offsets(&Regime::of(record, d.len()), path)?;
        // The shifted masks exp(ln l1 - offset), labels 0..n with their own `reached`.
        let shifted = |x: &[f64], o: &[f64], v: &VerdictSummary| -> Vec<LabelSummary> {
            let reached = |j: usize| v.labels.iter().any(|l| l.label as usize == j && l.reached);
            x.iter()
                .zip(o)
                .enumerate()
                .map(|(j, (x, o))| LabelSummary::bare(j as u32, (x - o).exp(), reached(j)))
                .collect()
        };
        let (ld, lt) = (shifted(&d, &od, &record.dense), shifted(&t, &ot, &record.ticket));
        let s = AnomalyScale::Log;
        let (vd, vt) = (verdict(&ld, threshold, s), verdict(&lt, threshold, s));
        let c = super::decide(DecisionRule::Consensus, s, threshold, (&vd, &ld), (&vt, &lt));
        Ok(Calibrated {
            trojaned: c.trojaned,
            label: if c.agree { c.dense_target } else { None },
            anomaly_index: c.pooled_anomaly_index.filter(|a| a.is_finite()),
            references,
        })
    }

    /// The size rule on `record` (the model at `path`, never its own reference) at `threshold`
    /// (module doc). With fewer than [`SIZE_MIN_REFERENCES`] references that record absolute sizes
    /// it decides nothing (`z` None) and says how many it had; the same errors as [`Self::decide`].
    pub fn size(&self, path: &str, record: &DetectRecord, threshold: f64) -> std::result::Result<Size, String> {
        let (d, t) = dense_and_ticket_log_l1(record)?;
        let n = d.len();
        // (dense, ticket) absolute sizes of the references that record them (older files do not).
        let sized: Vec<(&Vec<f64>, &Vec<f64>)> = self
            .matching(&Regime::of(record, n), path)?
            .into_iter()
            .filter_map(|r| Some((r.dense_ln_l1.as_ref()?, r.ticket_ln_l1.as_ref()?)))
            .collect();
        let undecided = Size { trojaned: false, label: None, z: None, references: sized.len() };
        if sized.len() < SIZE_MIN_REFERENCES {
            return Ok(undecided);
        }
        let pooled_refs: Vec<Vec<f64>> = sized.iter().map(|(d, t)| pooled(d, t)).collect();
        let all: Vec<&Vec<f64>> = pooled_refs.iter().collect();
        let (m, _) = min_shift(&pooled(&d, &t), &column_means(&all, n));
        // The null: each reference's m against the others.
        let null: Vec<f64> = (0..all.len())
            .map(|i| {
                let others: Vec<&Vec<f64>> = all.iter().enumerate().filter(|&(k, _)| k != i).map(|(_, r)| *r).collect();
                min_shift(all[i], &column_means(&others, n)).0
            })
            .collect();
        let k = null.len() as f64;
        let mean = null.iter().sum::<f64>() / k;
        let sd = (null.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (k - 1.0)).sqrt();
        let z = if sd > 0.0 {
            (mean - m) / sd
        } else if mean > m {
            f64::INFINITY
        } else {
            0.0
        };
        let dense_refs: Vec<&Vec<f64>> = sized.iter().map(|(d, _)| *d).collect();
        let (_, label) = min_shift(&d, &column_means(&dense_refs, n));
        Ok(Size { trojaned: z > threshold, label: Some(label as u32), z: Some(z), ..undecided })
    }
}

/// The size-or-warp rule on one model (pre-registered in docs/scans/heldout5-plan.md): the size
/// rule's verdict OR the warp inversion's ([`crate::reverse::warp`]: warped seeds reach a label at
/// least [`WARP_FLAG_ASR`] of the time); the target is the warp's label when the warp flags, else
/// the size rule's. A warping trigger (WaNet) is found by both but named only by the warp; a patch
/// trigger is named by the masks.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SizeWarp {
    /// Flagged by either.
    pub trojaned: bool,
    /// The named label.
    pub target: Option<u32>,
    /// `max(z / threshold, warp attack success / WARP_FLAG_ASR)`: above 1 exactly when one of them
    /// flags (the size rule flags at z > threshold, the warp at >=); -inf without either.
    pub statistic: f64,
}

/// [`SizeWarp`] from the size rule's `z` and label (at `threshold` > 0) and the warp inversion's
/// best attack success and label; a missing part does not flag.
pub fn size_warp(
    z: Option<f64>,
    size_label: Option<u32>,
    warp_asr: Option<f64>,
    warp_label: Option<u32>,
    threshold: f64,
) -> SizeWarp {
    let size_flag = z.is_some_and(|z| z > threshold);
    let warp_flag = warp_asr.is_some_and(warp_flags);
    let s = z.map_or(f64::NEG_INFINITY, |z| if threshold > 0.0 { z / threshold } else { z });
    let w = warp_asr.map_or(f64::NEG_INFINITY, |a| a / WARP_FLAG_ASR);
    SizeWarp {
        trojaned: size_flag || warp_flag,
        target: if warp_flag { warp_label } else { size_label },
        statistic: s.max(w),
    }
}

/// The warp inversion's line as `quarantine detect` prints it.
pub fn warp_line(w: &crate::reverse::WarpReport) -> String {
    let found = if warp_flags(w.best_attack_success) {
        format!("at least {WARP_FLAG_ASR}: a warping trigger (WaNet-like) to label {}?", w.best)
    } else {
        format!("below {WARP_FLAG_ASR}: no warping trigger found")
    };
    format!(
        "warp inversion: a smooth warp of mean offset <= {} moves {:.0}% of the seeds to label {} (next label {:.0}%), {found}",
        w.config.budget,
        w.best_attack_success * 100.0,
        w.best,
        w.runner_up_attack_success * 100.0
    )
}

impl DetectRecord {
    /// Decides with the calibrated consensus rule on `cal` (the audited model at `path` is never its
    /// own reference): the verdict becomes the calibrated one; `decision` keeps the uncalibrated rule's.
    /// Both calibrated rules are recorded; `rule` gives the verdict. The size rule with too few
    /// references that record absolute sizes is an error saying so.
    pub fn calibrate(
        &mut self,
        cal: &Calibration,
        path: &str,
        rule: CalibratedRule,
    ) -> std::result::Result<(), String> {
        let c = cal.decide(path, self, self.threshold)?;
        let size = cal.size(path, self, self.threshold)?;
        match rule {
            CalibratedRule::Consensus => {
                self.trojaned = c.trojaned;
                self.target = if c.trojaned { c.label } else { None };
                self.anomaly_index = c.anomaly_index;
            }
            CalibratedRule::Size | CalibratedRule::SizeWarp => {
                let Some(z) = size.z else {
                    return Err(format!(
                        "the size rule needs at least {SIZE_MIN_REFERENCES} clean {} references detected like this \
                         model that record absolute mask sizes, and the calibration has {} (files written before \
                         the size rule lack the sizes: calibrate again with `quarantine calibrate`)",
                        self.model.meta.arch, size.references
                    ));
                };
                self.trojaned = size.trojaned;
                self.target = if size.trojaned { size.label } else { None };
                self.anomaly_index = Some(z).filter(|z| z.is_finite());
                if rule == CalibratedRule::SizeWarp {
                    let Some(w) = &self.warp else {
                        return Err("the size-warp rule needs the warp inversion, which this detection did not run \
                                    (it ran with --no-warp)"
                            .into());
                    };
                    let d = size_warp(size.z, size.label, Some(w.best_attack_success), Some(w.best), self.threshold);
                    self.trojaned = d.trojaned;
                    self.target = if d.trojaned { d.target } else { None };
                }
            }
        }
        self.calibrated = Some(c);
        self.size = Some(size);
        self.calibrated_rule = Some(rule);
        Ok(())
    }

    /// The verdict line of a calibrated record (None when not calibrated).
    pub fn calibrated_verdict_line(&self) -> Option<String> {
        let c = self.calibrated.as_ref()?;
        let arch = &self.model.meta.arch;
        let plain = if self.decision.trojaned { "TROJANED" } else { "no Trojan" };
        if let (Some(rule @ (CalibratedRule::Size | CalibratedRule::SizeWarp)), Some(s)) =
            (self.calibrated_rule, &self.size)
        {
            let mut why = format!(
                "size rule: the smallest masks lie {:.2} null standard deviations below {} clean {arch} references, {} {}",
                s.z.unwrap_or(f64::NAN),
                s.references,
                if s.trojaned { ">" } else { "<=" },
                self.threshold
            );
            if let (CalibratedRule::SizeWarp, Some(w)) = (rule, &self.warp) {
                why += &format!(
                    "; warp inversion: {:.0}% of the seeds to label {}, {} {WARP_FLAG_ASR}",
                    w.best_attack_success * 100.0,
                    w.best,
                    if warp_flags(w.best_attack_success) { ">=" } else { "<" }
                );
            }
            return Some(match self.target {
                Some(t) if self.trojaned => {
                    format!("verdict: TROJANED, target label {t} ({why}; uncalibrated {}: {plain})", self.decision.rule)
                }
                _ => format!("verdict: no Trojan found ({why}; uncalibrated {}: {plain})", self.decision.rule),
            });
        }
        let why = match (c.label, c.anomaly_index) {
            (Some(l), Some(ai)) => format!(
                "after calibration dense model and ticket agree on label {l}, pooled anomaly index {ai:.2} {} {}",
                if c.trojaned { ">" } else { "<=" },
                self.threshold
            ),
            (Some(l), None) => {
                format!("after calibration dense model and ticket agree on label {l}, infinite anomaly index")
            }
            (None, _) => "after calibration dense model and ticket point at different labels: no consensus".into(),
        };
        let refs = match c.references {
            0 => format!("no clean {arch} reference in the calibration: plain consensus"),
            n => format!("calibrated on {n} clean {arch} references"),
        };
        Some(match self.target {
            Some(t) if self.trojaned => format!(
                "verdict: TROJANED, target label {t} ({why}; {refs}; uncalibrated {}: {plain})",
                self.decision.rule
            ),
            _ => format!("verdict: no Trojan found ({why}; {refs}; uncalibrated {}: {plain})", self.decision.rule),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(arch: &str, dense: &[f64], ticket: &[f64]) -> DetectRecord {
        let mut r: DetectRecord = serde_json::from_str(include_str!("testdata/detect-record.json")).unwrap();
        r.model.meta.arch = arch.parse().unwrap();
        let put = |v: &mut VerdictSummary, l1: &[f64]| {
            let proto = v.labels[0].clone();
            v.labels = l1
                .iter()
                .enumerate()
                .map(|(i, &x)| crate::detect::record::LabelLine { label: i as u32, l1: x, ..proto.clone() })
                .collect();
        };
        put(&mut r.dense, dense);
        put(&mut r.ticket, ticket);
        r
    }

    /// Either part flags; the warp names the target when it flags, else the masks do; the
    /// statistic crosses 1 exactly where the verdict turns.
    #[test]
    fn size_or_warp_flags_on_either_and_names_by_the_warp_when_it_flags() {
        let d = size_warp(Some(3.0), Some(8), Some(0.92), Some(0), 2.0);
        assert_eq!((d.trojaned, d.target), (true, Some(0)));
        assert!((d.statistic - 1.84).abs() < 1e-12);
        let d = size_warp(Some(3.0), Some(8), Some(0.2), Some(0), 2.0);
        assert_eq!((d.trojaned, d.target, d.statistic), (true, Some(8), 1.5));
        let d = size_warp(Some(1.0), Some(8), Some(0.6), Some(4), 2.0);
        assert_eq!((d.trojaned, d.target), (true, Some(4)));
        let d = size_warp(Some(1.0), Some(8), Some(0.3), Some(4), 2.0);
        assert_eq!((d.trojaned, d.target), (false, Some(8)));
        assert!(d.statistic < 1.0);
        let d = size_warp(None, None, None, None, 2.0);
        assert_eq!((d.trojaned, d.target, d.statistic), (false, None, f64::NEG_INFINITY));
        let at = size_warp(None, None, Some(WARP_FLAG_ASR), Some(2), 2.0);
        assert_eq!((at.trojaned, at.statistic), (true, 1.0));
    }

    #[test]
    fn a_label_small_in_every_clean_model_stops_being_an_outlier() {
        // Label 8 is small in every clean model of this architecture (a natural backdoor of the
        // data): consensus flags a clean model for it, the calibrated rule does not.
        let natural = |k: f64| {
            let mut v: Vec<f64> = (0..10).map(|i| 100.0 + 7.0 * ((i as f64 + k) % 5.0)).collect();
            v[8] = 25.0;
            v
        };
        let refs: Vec<Reference> = (0..4)
            .map(|k| {
                Reference::of(&format!("ref-{k}"), &record("cnn", &natural(k as f64), &natural(k as f64 + 1.0)))
                    .unwrap()
            })
            .collect();
        let cal = Calibration::new(refs).unwrap();
        assert_eq!(cal.summary()["cnn"], (4, 10));
        let clean = record("cnn", &natural(2.5), &natural(3.5));
        let plain = crate::detect::decide(
            crate::detect::DecisionRule::Consensus,
            crate::reverse::AnomalyScale::Log,
            2.0,
            (
                &crate::reverse::verdict(&labels(&clean.dense), 2.0, crate::reverse::AnomalyScale::Log),
                &labels(&clean.dense),
            ),
            (
                &crate::reverse::verdict(&labels(&clean.ticket), 2.0, crate::reverse::AnomalyScale::Log),
                &labels(&clean.ticket),
            ),
        );
        assert!(plain.trojaned && plain.target == Some(8), "uncalibrated consensus flags the natural label");
        let c = cal.decide("suspect", &clean, 2.0).unwrap();
        assert!(!c.trojaned && c.references == 4, "{c:?}");
        // A Trojan on another label (3) stands out after calibration, with the right label.
        let (mut d, mut t) = (natural(1.0), natural(2.0));
        d[3] = 12.0;
        t[3] = 10.0;
        let c = cal.decide("suspect", &record("cnn", &d, &t), 2.0).unwrap();
        assert!(c.trojaned && c.label == Some(3) && c.anomaly_index.unwrap() > 2.0, "{c:?}");
        // Another architecture has no reference: the plain consensus rule, said so.
        let c = cal.decide("suspect", &record("resnet20s", &natural(2.5), &natural(3.5)), 2.0).unwrap();
        assert!(c.trojaned && c.label == Some(8) && c.references == 0, "{c:?}");
        // A model is never its own reference.
        assert_eq!(cal.decide("ref-1", &clean, 2.0).unwrap().references, 3);
        // The file round-trips; a bad one is refused naming the file.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("calibration.json");
        cal.save(&p).unwrap();
        assert_eq!(Calibration::load(&p).unwrap(), cal);
        std::fs::write(&p, br#"{"format": "quarantine-calibration/1", "references": [{"path": "a", "arch": "cnn", "dense": [0.0], "ticket": []}]}"#).unwrap();
        let e = Calibration::load(&p).unwrap_err().to_string();
        assert!(e.contains("calibration.json") && e.contains("one finite value per label"), "{e}");
        assert!(Calibration::new(vec![]).is_err());
    }

    /// References count only for detections made the same way: the kind of seeds and the input
    /// shape recorded with each must match; a file without them (written before) counts for any.
    #[test]
    fn references_of_another_kind_of_seeds_are_refused_not_used() {
        let mut v: Vec<f64> = (0..10).map(|i| 100.0 + 5.0 * i as f64).collect();
        v[8] = 25.0;
        let reference = record("cnn", &v, &v);
        let synth = reference.config.seeds.regime();
        let r = Reference::of("ref", &reference).unwrap();
        assert_eq!((r.seeds.as_deref(), r.input), (Some(synth.as_str()), Some([1, 28, 28])));
        let cal = Calibration::new(vec![r.clone()]).unwrap();
        let mut suspect = record("cnn", &v, &v);
        assert_eq!(cal.decide("suspect", &suspect, 2.0).unwrap().references, 1);
        // The same architecture detected with 40 clean images: an error naming both kinds.
        suspect.config.seeds = "data:builtin:40".parse().unwrap();
        let e = cal.decide("suspect", &suspect, 2.0).unwrap_err();
        assert!(e.contains("data:builtin seeds") && e.contains(&format!("{synth} seeds")), "{e}");
        // Another input size likewise.
        let mut big = record("cnn", &v, &v);
        big.model.meta.height = 32;
        big.model.meta.width = 32;
        assert!(cal.decide("suspect", &big, 2.0).unwrap_err().contains("input 1x32x32"));
        // A reference without the fields (an older file) counts for any detection.
        let old = Reference { seeds: None, input: None, ..r };
        let json = serde_json::to_string(&old).unwrap();
        assert!(!json.contains("seeds") && !json.contains("input"), "{json}");
        let cal = Calibration::new(vec![old]).unwrap();
        assert_eq!(cal.decide("suspect", &suspect, 2.0).unwrap().references, 1);
    }

    /// The size rule by hand: three references with pooled ln l1 [1,2,3], [2,2,2], [3,2,1] (dense =
    /// ticket). Their mean is [2,2,2]; each against the other two has the smallest shift -1.5, 0,
    /// -1.5: null mean -1, sample sd sqrt(0.75).
    #[test]
    fn size_rule_by_hand() {
        let e = |v: &[f64]| v.iter().map(|x| x.exp()).collect::<Vec<_>>();
        let refs: Vec<Reference> = [[1.0, 2.0, 3.0], [2.0, 2.0, 2.0], [3.0, 2.0, 1.0]]
            .iter()
            .enumerate()
            .map(|(i, v)| Reference::of(&format!("r{i}"), &record("cnn", &e(v), &e(v))).unwrap())
            .collect();
        assert_eq!(refs[0].dense_ln_l1.as_ref().unwrap().len(), 3);
        let cal = Calibration::new(refs.clone()).unwrap();
        let sd = 0.75f64.sqrt();
        // Pooled [2,2,-1]: shifts [0,0,-3], z = (-1 - -3)/sd = 2.309 > 2, label 2.
        let s = cal.size("suspect", &record("cnn", &e(&[2.0, 2.0, -1.0]), &e(&[2.0, 2.0, -1.0])), 2.0).unwrap();
        assert!(
            (s.z.unwrap() - 2.0 / sd).abs() < 1e-9 && s.trojaned && s.label == Some(2) && s.references == 3,
            "{s:?}"
        );
        // Pooled [2,2,0] (z = 1/sd = 1.155, not flagged); the label is the dense model's: its shifts
        // [0,-1.5,-1] name 1 although the pooled shift is smallest at 2.
        let s = cal.size("suspect", &record("cnn", &e(&[2.0, 0.5, 1.0]), &e(&[2.0, 3.5, -1.0])), 2.0).unwrap();
        assert!((s.z.unwrap() - 1.0 / sd).abs() < 1e-9 && !s.trojaned && s.label == Some(1), "{s:?}");
        // A reference is never its own: two left, too few to decide.
        let s = cal.size("r0", &record("cnn", &e(&[1.0, 2.0, 3.0]), &e(&[1.0, 2.0, 3.0])), 2.0).unwrap();
        assert_eq!(s, Size { trojaned: false, label: None, z: None, references: 2 });
        // References from a file written before absolute sizes do not count for it (consensus still
        // uses them), and the size verdict then is an error that says why.
        let old: Vec<Reference> =
            refs.iter().map(|r| Reference { dense_ln_l1: None, ticket_ln_l1: None, ..r.clone() }).collect();
        let cal = Calibration::new(old).unwrap();
        let mut r = record("cnn", &e(&[2.0, 2.0, -1.0]), &e(&[2.0, 2.0, -1.0]));
        assert_eq!(cal.size("suspect", &r, 2.0).unwrap().references, 0);
        assert_eq!(cal.decide("suspect", &r, 2.0).unwrap().references, 3);
        let err = r.calibrate(&cal, "suspect", CalibratedRule::Size).unwrap_err();
        assert!(err.contains("at least 3") && err.contains("quarantine calibrate"), "{err}");
        // With the sizes, the size rule gives the verdict and both decisions are recorded.
        let cal = Calibration::new(refs).unwrap();
        r.calibrate(&cal, "suspect", CalibratedRule::Size).unwrap();
        assert!(r.trojaned && r.target == Some(2) && r.calibrated.is_some() && r.size.is_some());
        assert!(r.calibrated_verdict_line().unwrap().contains("size rule"), "{:?}", r.calibrated_verdict_line());
        // size-warp needs the warp inversion; with one that flags, its label is the target.
        let err = r.calibrate(&cal, "suspect", CalibratedRule::SizeWarp).unwrap_err();
        assert!(err.contains("--no-warp"), "{err}");
        let wl =
            |label, attack_success| crate::reverse::WarpLabel { label, attack_success, base_rate: 0.1, magnitude: 0.5 };
        r.warp = Some(crate::reverse::WarpReport {
            config: Default::default(),
            labels: vec![wl(0, 0.9), wl(1, 0.1), wl(2, 0.2)],
            best: 0,
            best_attack_success: 0.9,
            runner_up_attack_success: 0.2,
        });
        r.calibrate(&cal, "suspect", CalibratedRule::SizeWarp).unwrap();
        assert!(r.trojaned && r.target == Some(0), "{:?}", r.target);
        assert!(
            r.calibrated_verdict_line().unwrap().contains("warp inversion: 90%"),
            "{:?}",
            r.calibrated_verdict_line()
        );
        // A round trip keeps the absolute sizes; a wrong count is refused naming the file.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cal.json");
        cal.save(&p).unwrap();
        assert_eq!(Calibration::load(&p).unwrap(), cal);
        let mut bad = cal.clone();
        bad.references[1].ticket_ln_l1 = Some(vec![1.0]);
        bad.save(&p).unwrap();
        let e = Calibration::load(&p).unwrap_err().to_string();
        assert!(e.contains("cal.json") && e.contains("one finite value per label"), "{e}");
    }

    fn labels(v: &VerdictSummary) -> Vec<LabelSummary> {
        v.labels.iter().map(|l| LabelSummary::bare(l.label, l.l1, l.reached)).collect()
    }
}
