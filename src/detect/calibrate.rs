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
use std::collections::BTreeMap;
use std::path::Path;

use super::record::{Calibrated, DetectRecord, VerdictSummary};
use super::DecisionRule;
use crate::error::{Error, Result};
use crate::reverse::{verdict, AnomalyScale, LabelSummary};

/// The format tag of a calibration file.
pub const FORMAT: &str = "quarantine-calibration/1";

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
        let (dense, ticket) = (centered_log(&record.dense)?, centered_log(&record.ticket)?);
        if dense.len() != ticket.len() {
            return Err(format!("dense has {} labels, ticket {}", dense.len(), ticket.len()));
        }
        let g = Regime::of(record, dense.len());
        Ok(Reference {
            path: path.to_string(),
            arch: g.arch,
            dense,
            ticket,
            seeds: Some(g.seeds),
            input: Some(g.input),
        })
    }
}

/// Per label (label order 0..n) `ln l1 - median ln l1`; an error when labels are missing or an l1 is
/// not positive and finite.
fn centered_log(v: &VerdictSummary) -> std::result::Result<Vec<f64>, String> {
    let x = log_l1(v)?;
    let med = crate::reverse::median_mad(&x).0;
    Ok(x.iter().map(|a| a - med).collect())
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
        if let Some(r) = c.references.iter().find(|r| {
            r.dense.len() != r.ticket.len()
                || r.dense.is_empty()
                || r.dense.iter().chain(&r.ticket).any(|x| !x.is_finite())
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

    /// Mean dense and ticket offsets over the references of regime `g`, the one at `leave_out`
    /// excluded, and how many there were. An error when the architecture has references, but none
    /// made the same way (another kind of seeds, input shape or label count).
    fn offsets(&self, g: &Regime, leave_out: &str) -> std::result::Result<(Vec<f64>, Vec<f64>, usize), String> {
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
        let n = g.labels;
        let mean =
            |f: fn(&Reference) -> &Vec<f64>| -> Vec<f64> {
                (0..n)
                    .map(|j| {
                        if refs.is_empty() {
                            0.0
                        } else {
                            refs.iter().map(|r| f(r)[j]).sum::<f64>() / refs.len() as f64
                        }
                    })
                    .collect()
            };
        Ok((mean(|r| &r.dense), mean(|r| &r.ticket), refs.len()))
    }

    /// The calibrated consensus decision on `record` (the model at `path`) at `threshold`.
    pub fn decide(&self, path: &str, record: &DetectRecord, threshold: f64) -> std::result::Result<Calibrated, String> {
        let (d, t) = (log_l1(&record.dense)?, log_l1(&record.ticket)?);
        if d.len() != t.len() {
            return Err(format!("dense has {} labels, ticket {}", d.len(), t.len()));
        }
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
}

impl DetectRecord {
    /// Decides with the calibrated consensus rule on `cal` (the audited model at `path` is never its
    /// own reference): the verdict becomes the calibrated one; `decision` keeps the uncalibrated rule's.
    pub fn calibrate(&mut self, cal: &Calibration, path: &str) -> std::result::Result<(), String> {
        let c = cal.decide(path, self, self.threshold)?;
        self.trojaned = c.trojaned;
        self.target = if c.trojaned { c.label } else { None };
        self.anomaly_index = c.anomaly_index;
        self.calibrated = Some(c);
        Ok(())
    }

    /// The verdict line of a calibrated record (None when not calibrated).
    pub fn calibrated_verdict_line(&self) -> Option<String> {
        let c = self.calibrated.as_ref()?;
        let arch = &self.model.meta.arch;
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
        let plain = if self.decision.trojaned { "TROJANED" } else { "no Trojan" };
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

    fn labels(v: &VerdictSummary) -> Vec<LabelSummary> {
        v.labels.iter().map(|l| LabelSummary::bare(l.label, l.l1, l.reached)).collect()
    }
}
