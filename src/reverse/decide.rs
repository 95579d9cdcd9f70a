//! The detector's decision from two reverse engineerings of one model: on the dense model and on
//! its winning Trojan ticket (SPEC §5-6).
//!
//! - `ticket` (the paper): the ticket's own verdict: argmin l1 and its anomaly index.
//! - `dense`: Neural Cleanse on the given model, the ticket ignored.
//! - `consensus` (default): a Trojan is the one shortcut a network keeps at every sparsity, so the
//!   same label must have the smallest mask in the dense model AND in the ticket; the evidence of
//!   both is then pooled: per label the mean of the two values on the anomaly scale (ln l1 on the
//!   log scale, i.e. the geometric mean of the two masks' l1), and the anomaly index of the target
//!   over that pooled vector must exceed the threshold.
//!
//! Why consensus by default, measured on the built-in cnn (README, detection table): a heavily
//! pruned ticket (clean accuracy ~0.5) often has a "sink" label that tiny masks reach. Over 8 detect
//! runs on clean models the ticket rule flagged 4 (indexes 2.69-4.26) and the dense rule 1 (2.44);
//! dense and ticket disagreed on the argmin in 5 of the 8, and consensus flagged 1 (2.16). Over 9
//! Trojaned models whose backdoor took, dense and ticket both pointed at the target in 7.
use super::{anomaly_of, AnomalyScale, LabelSummary, Verdict};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DecisionRule {
    #[default]
    Consensus,
    Ticket,
    Dense,
}
crate::choices!(DecisionRule {
    Consensus => "consensus": "dense model and ticket name the same label; pooled anomaly index",
    Ticket => "ticket": "the winning ticket's own verdict (the paper)",
    Dense => "dense": "Neural Cleanse on the given model",
});

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Decision {
    pub rule: DecisionRule,
    pub trojaned: bool,
    /// The named target when `trojaned`.
    pub target: Option<u32>,
    /// The anomaly index the rule compared with the threshold; for `consensus` without agreement
    /// (nothing compared) the smaller of the dense and ticket indexes, for display.
    pub anomaly_index: Option<f64>,
    pub dense_target: Option<u32>,
    pub ticket_target: Option<u32>,
    /// Dense and ticket argmins are the same label.
    pub agree: bool,
    /// Anomaly index of the agreed label over the pooled values (None when they disagree).
    pub pooled_anomaly_index: Option<f64>,
}

/// Decides from the dense and ticket results (labels in the same order, as `reverse` writes them).
pub fn decide(rule: DecisionRule, scale: AnomalyScale, threshold: f64, dense: (&Verdict, &[LabelSummary]), ticket: (&Verdict, &[LabelSummary])) -> Decision {
    let (vd, ld) = dense;
    let (vt, lt) = ticket;
    let agree = vd.detected_target.is_some() && vd.detected_target == vt.detected_target;
    let pooled = if agree && ld.len() == lt.len() && ld.iter().zip(lt).all(|(a, b)| a.label == b.label) {
        let (xd, xt) = (scale.apply(&ld.iter().map(|l| l.l1).collect::<Vec<_>>()), scale.apply(&lt.iter().map(|l| l.l1).collect::<Vec<_>>()));
        let x: Vec<f64> = xd.iter().zip(&xt).map(|(a, b)| (a + b) / 2.0).collect();
        ld.iter().position(|l| Some(l.label) == vd.detected_target).map(|i| anomaly_of(&x, i))
    } else {
        None
    };
    let (target, ai) = match rule {
        DecisionRule::Consensus => (if agree { vd.detected_target } else { None }, pooled),
        DecisionRule::Ticket => (vt.detected_target, vt.anomaly_index),
        DecisionRule::Dense => (vd.detected_target, vd.anomaly_index),
    };
    let trojaned = target.is_some() && ai.is_some_and(|a| a > threshold);
    Decision {
        rule,
        trojaned,
        target: if trojaned { target } else { None },
        anomaly_index: ai.or(if rule == DecisionRule::Consensus { vt.anomaly_index.zip(vd.anomaly_index).map(|(a, b)| a.min(b)) } else { None }),
        dense_target: vd.detected_target,
        ticket_target: vt.detected_target,
        agree,
        pooled_anomaly_index: pooled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reverse::verdict_of_l1;

    fn labels(l1: &[f64]) -> Vec<LabelSummary> {
        l1.iter().enumerate().map(|(i, &v)| LabelSummary { label: i as u32, l1: v, attack_success: 1.0, reached: true, recovered_asr: None, iou: None, anomaly_index: 0.0, epoch: 1, epoch_attack_success: 1.0, final_cost: [0.0; 5] }).collect()
    }

    #[test]
    fn consensus_needs_the_same_label_in_both() {
        let s = AnomalyScale::Log;
        // Trojaned: label 1 smallest in both (values from a measured run, rounded).
        let d = labels(&[92.0, 29.0, 85.0, 88.0, 86.0, 87.0, 81.0, 130.0, 72.0, 113.0]);
        let t = labels(&[61.0, 28.0, 69.0, 78.0, 73.0, 38.0, 48.0, 106.0, 47.0, 83.0]);
        let (vd, vt) = (verdict_of_l1(&d, 2.0, s), verdict_of_l1(&t, 2.0, s));
        let c = decide(DecisionRule::Consensus, s, 2.0, (&vd, &d), (&vt, &t));
        assert!(c.agree && c.trojaned && c.target == Some(1), "{c:?}");
        // pooled: mean of the logs; its index lies between the two single indexes here
        let p = c.pooled_anomaly_index.unwrap();
        assert!(p > vt.anomaly_index.unwrap() && p < vd.anomaly_index.unwrap(), "{p}");
        // Clean: a sink label in the ticket (5) that the dense model does not share (2).
        let d = labels(&[120.0, 94.0, 72.0, 109.0, 99.0, 98.0, 91.0, 161.0, 83.0, 102.0]);
        let t = labels(&[81.0, 76.0, 60.0, 78.0, 40.0, 28.0, 86.0, 81.0, 43.0, 68.0]);
        let (vd, vt) = (verdict_of_l1(&d, 2.0, s), verdict_of_l1(&t, 2.0, s));
        assert!(vt.flagged, "the ticket alone flags this clean model");
        let c = decide(DecisionRule::Consensus, s, 2.0, (&vd, &d), (&vt, &t));
        assert!(!c.agree && !c.trojaned && c.target.is_none() && c.pooled_anomaly_index.is_none(), "{c:?}");
        let tk = decide(DecisionRule::Ticket, s, 2.0, (&vd, &d), (&vt, &t));
        assert!(tk.trojaned && tk.target == Some(5));
    }
}
