//! The detector's decision from two reverse engineerings of one model: on the dense model and on
//! its winning Trojan ticket (docs/METHOD.md §5-6).
//!
//! - `ticket` (the paper): the ticket's own verdict: argmin l1 and its anomaly index.
//! - `dense`: Neural Cleanse on the given model, the ticket ignored.
//! - `consensus` (default): a Trojan is the one shortcut a network keeps at every sparsity, so the
//!   same label must have the smallest mask in the dense model AND in the ticket; the evidence of
//!   both is then pooled: per label the mean of the two values on the anomaly scale (ln l1 on the
//!   log scale, i.e. the geometric mean of the two masks' l1), and the anomaly index of the target
//!   over that pooled vector must exceed the threshold.
//!
//! Why consensus is the default: a heavily pruned ticket often has a "sink" label that tiny masks
//! reach, so the ticket alone flags clean models; requiring the dense model to point at the same
//! label removes most of those (README, "Detection", has the measured numbers).
//!
//! Each rule is a [`Rule`]; [`DecisionRule`] names the built-in ones. A new rule is a new type
//! implementing [`Rule`] plus a variant of [`DecisionRule`] (and its line in `choices!`).
use crate::reverse::{anomaly_of, AnomalyScale, LabelSummary, Verdict};

/// The built-in decision rules, as named on the command line and in `detect.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DecisionRule {
    /// Dense model and ticket must name the same label; pooled anomaly index.
    #[default]
    Consensus,
    /// The winning ticket's own verdict (the paper).
    Ticket,
    /// Neural Cleanse on the given model.
    Dense,
}
crate::choices!(DecisionRule {
    Consensus => "consensus": "dense model and ticket name the same label; pooled anomaly index",
    Ticket => "ticket": "the winning ticket's own verdict (the paper)",
    Dense => "dense": "Neural Cleanse on the given model",
});

/// Which calibrated rule gives the verdict of a detection made with a calibration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CalibratedRule {
    /// Consensus on the shifted masks ([`super::Calibration::decide`]).
    Consensus,
    /// Absolute mask sizes against the references ([`super::Calibration::size`]): the default, it
    /// ranked best on the third held-back zoo (README).
    #[default]
    Size,
    /// The size rule or the warp inversion, the target by the warp where it flags
    /// ([`super::size_warp`]; needs the warp inversion).
    SizeWarp,
}
crate::choices!(CalibratedRule {
    Consensus => "consensus": "consensus on masks shifted by the references' per-label offsets",
    Size => "size": "the masks' absolute size against the same labels of the references",
    SizeWarp => "size-warp": "the size rule or the warp inversion, the target by the warp where it flags",
});

impl DecisionRule {
    /// The rule itself.
    pub fn rule(self) -> &'static dyn Rule {
        match self {
            DecisionRule::Consensus => &Consensus,
            DecisionRule::Ticket => &TicketOnly,
            DecisionRule::Dense => &DenseOnly,
        }
    }
}

/// The decision a rule reached.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Decision {
    /// The rule that decided.
    pub rule: DecisionRule,
    /// Whether the model is judged Trojaned.
    pub trojaned: bool,
    /// The named target when `trojaned`.
    pub target: Option<u32>,
    /// The anomaly index the rule compared with the threshold; for `consensus` without agreement
    /// (nothing compared) the smaller of the dense and ticket indexes, for display.
    pub anomaly_index: Option<f64>,
    /// Argmin-l1 label of the dense model.
    pub dense_target: Option<u32>,
    /// Argmin-l1 label of the winning ticket.
    pub ticket_target: Option<u32>,
    /// Dense and ticket argmins are the same label.
    pub agree: bool,
    /// Anomaly index of the agreed label over the pooled values (None when they disagree).
    pub pooled_anomaly_index: Option<f64>,
}

/// What every rule decides from: the verdicts and per-label results of the two reverse
/// engineerings (labels in the same order, as `reverse` writes them).
#[derive(Debug, Clone, Copy)]
pub struct Evidence<'a> {
    /// The dense model's verdict and labels.
    pub dense: (&'a Verdict, &'a [LabelSummary]),
    /// The winning ticket's verdict and labels.
    pub ticket: (&'a Verdict, &'a [LabelSummary]),
    /// Scale of the anomaly index.
    pub scale: AnomalyScale,
    /// Anomaly index above which a model is Trojaned.
    pub threshold: f64,
}

impl Evidence<'_> {
    /// Whether dense and ticket name the same label.
    pub fn agree(&self) -> bool {
        let (vd, vt) = (self.dense.0, self.ticket.0);
        vd.detected_target.is_some() && vd.detected_target == vt.detected_target
    }

    /// The anomaly index of the agreed label over the per-label mean of the two (on the anomaly
    /// scale); None when they disagree or their labels differ.
    pub fn pooled_anomaly_index(&self) -> Option<f64> {
        let ((vd, ld), (_, lt)) = (self.dense, self.ticket);
        if !(self.agree() && ld.len() == lt.len() && ld.iter().zip(lt).all(|(a, b)| a.label == b.label)) {
            return None;
        }
        let on_scale = |l: &[LabelSummary]| self.scale.apply(&l.iter().map(|l| l.l1).collect::<Vec<_>>());
        let x: Vec<f64> = on_scale(ld).iter().zip(&on_scale(lt)).map(|(a, b)| (a + b) / 2.0).collect();
        ld.iter().position(|l| Some(l.label) == vd.detected_target).map(|i| anomaly_of(&x, i))
    }

    /// The decision for a candidate `target` whose evidence is anomaly index `ai`: Trojaned when
    /// both exist and `ai` exceeds the threshold. `shown` is the index displayed when `ai` is None.
    pub fn conclude(&self, rule: DecisionRule, target: Option<u32>, ai: Option<f64>, shown: Option<f64>) -> Decision {
        let trojaned = target.is_some() && ai.is_some_and(|a| a > self.threshold);
        Decision {
            rule,
            trojaned,
            target: if trojaned { target } else { None },
            anomaly_index: ai.or(shown),
            dense_target: self.dense.0.detected_target,
            ticket_target: self.ticket.0.detected_target,
            agree: self.agree(),
            pooled_anomaly_index: self.pooled_anomaly_index(),
        }
    }
}

/// A detection statistic and decision rule over the dense and ticket evidence.
pub trait Rule: Sync {
    /// Decides.
    fn decide(&self, ev: &Evidence) -> Decision;
}

/// Dense and ticket must name the same label; the evidence of both is pooled.
#[derive(Debug, Clone, Copy)]
pub struct Consensus;
impl Rule for Consensus {
    fn decide(&self, ev: &Evidence) -> Decision {
        let (vd, vt) = (ev.dense.0, ev.ticket.0);
        let target = if ev.agree() { vd.detected_target } else { None };
        let shown = vt.anomaly_index.zip(vd.anomaly_index).map(|(a, b)| a.min(b));
        ev.conclude(DecisionRule::Consensus, target, ev.pooled_anomaly_index(), shown)
    }
}

/// The winning ticket's own verdict (the paper).
#[derive(Debug, Clone, Copy)]
pub struct TicketOnly;
impl Rule for TicketOnly {
    fn decide(&self, ev: &Evidence) -> Decision {
        let vt = ev.ticket.0;
        ev.conclude(DecisionRule::Ticket, vt.detected_target, vt.anomaly_index, None)
    }
}

/// Neural Cleanse on the given (dense) model; the ticket ignored.
#[derive(Debug, Clone, Copy)]
pub struct DenseOnly;
impl Rule for DenseOnly {
    fn decide(&self, ev: &Evidence) -> Decision {
        let vd = ev.dense.0;
        ev.conclude(DecisionRule::Dense, vd.detected_target, vd.anomaly_index, None)
    }
}

/// Decides with the built-in `rule` (see [`Rule`] for others).
pub fn decide(
    rule: DecisionRule,
    scale: AnomalyScale,
    threshold: f64,
    dense: (&Verdict, &[LabelSummary]),
    ticket: (&Verdict, &[LabelSummary]),
) -> Decision {
    rule.rule().decide(&Evidence { dense, ticket, scale, threshold })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reverse::verdict;

    fn labels(l1: &[f64]) -> Vec<LabelSummary> {
        l1.iter().enumerate().map(|(i, &v)| LabelSummary::bare(i as u32, v, true)).collect()
    }

    #[test]
    fn consensus_needs_the_same_label_in_both() {
        let s = AnomalyScale::Log;
        // Trojaned: label 1 smallest in both (values from a measured run, rounded).
        let d = labels(&[92.0, 29.0, 85.0, 88.0, 86.0, 87.0, 81.0, 130.0, 72.0, 113.0]);
        let t = labels(&[61.0, 28.0, 69.0, 78.0, 73.0, 38.0, 48.0, 106.0, 47.0, 83.0]);
        let (vd, vt) = (verdict(&d, 2.0, s), verdict(&t, 2.0, s));
        let c = decide(DecisionRule::Consensus, s, 2.0, (&vd, &d), (&vt, &t));
        assert!(c.agree && c.trojaned && c.target == Some(1), "{c:?}");
        // pooled: mean of the logs; its index lies between the two single indexes here
        let p = c.pooled_anomaly_index.unwrap();
        assert!(p > vt.anomaly_index.unwrap() && p < vd.anomaly_index.unwrap(), "{p}");
        // Clean: a sink label in the ticket (5) that the dense model does not share (2).
        let d = labels(&[120.0, 94.0, 72.0, 109.0, 99.0, 98.0, 91.0, 161.0, 83.0, 102.0]);
        let t = labels(&[81.0, 76.0, 60.0, 78.0, 40.0, 28.0, 86.0, 81.0, 43.0, 68.0]);
        let (vd, vt) = (verdict(&d, 2.0, s), verdict(&t, 2.0, s));
        assert!(vt.flagged, "the ticket alone flags this clean model");
        let c = decide(DecisionRule::Consensus, s, 2.0, (&vd, &d), (&vt, &t));
        assert!(!c.agree && !c.trojaned && c.target.is_none() && c.pooled_anomaly_index.is_none(), "{c:?}");
        let tk = decide(DecisionRule::Ticket, s, 2.0, (&vd, &d), (&vt, &t));
        assert!(tk.trojaned && tk.target == Some(5));
    }
}
