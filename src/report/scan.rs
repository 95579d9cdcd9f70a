//! The files of a scan besides its rows: `roc.svg`/`roc.png` (every rule's ROC curve) and
//! `report.html` (the metrics with their intervals, the ROC plot, one line per model).
use std::path::Path;

use super::html::{esc, page};
use super::plot::{roc, write_svg_and_png};
use crate::error::Result;
use crate::scan::{ScanMetrics, ScanRow};
use crate::util::write_atomic;

fn est(e: &Option<crate::scan::roc::Estimate>) -> String {
    e.map_or("-".to_string(), |e| format!("{:.3} [{:.3}, {:.3}]", e.value, e.low, e.high))
}

/// Writes the ROC plot and `report.html` into `out`.
pub fn write_scan_report(out: &Path, rows: &[ScanRow], m: &ScanMetrics) -> Result<()> {
    let curves: Vec<(String, Vec<(f64, f64)>)> = m
        .rules
        .iter()
        .filter(|r| !r.roc.is_empty())
        .map(|r| (r.rule.title().to_string(), r.roc.iter().map(|p| (p.fpr, p.tpr)).collect()))
        .collect();
    let mut body = format!(
        "<p>{} models: {} Trojaned and {} clean measured, {} errors, {} without ground truth, {} poisoned \
         models whose backdoor did not take (left out). Intervals: bootstrap 95% over models ({} resamples).</p>",
        m.models, m.trojaned, m.clean, m.errors, m.unlabelled, m.backdoor_not_taken, m.bootstrap
    );
    body += &format!(
        "<p>The paper's phenomenon (winning ticket: attack success >= 0.8 with the known trigger at clean \
         accuracy <= 0.3): {} of {} measured Trojaned models.</p>",
        m.phenomenon.1, m.phenomenon.0
    );
    body += "<table><tr><th>rule</th><th>ROC-AUC</th><th>TPR at 5% FPR</th><th>accuracy at threshold</th>\
             <th>FPR at threshold</th><th>target accuracy (flagged Trojaned)</th></tr>";
    for r in &m.rules {
        body += &format!(
            "<tr><td style=\"text-align:left\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(r.rule.title()),
            est(&r.auc),
            est(&r.tpr_at_5_fpr),
            est(&r.accuracy),
            est(&r.fpr),
            est(&r.target_accuracy)
        );
    }
    body += "</table>";
    if let Some(first) = m.rules.first().filter(|r| !r.groups.is_empty()) {
        // Groups: flagged (right target) of models, one column per rule.
        body += "<h2>Per group, at the threshold</h2><p>flagged (with the right target) of models</p><table><tr><th>group</th>";
        for r in &m.rules {
            body += &format!("<th>{}</th>", esc(r.rule.title()));
        }
        body += "</tr>";
        for (k, g) in first.groups.iter().enumerate() {
            body += &format!("<tr><td style=\"text-align:left\">{}</td>", esc(&g.group));
            for r in &m.rules {
                let x = &r.groups[k];
                body += &if x.group.starts_with("clean") {
                    format!("<td>{} of {}</td>", x.flagged, x.models)
                } else {
                    format!("<td>{} ({}) of {}</td>", x.flagged, x.right_target, x.models)
                };
            }
            body += "</tr>";
        }
        body += "</table>";
    }
    if !curves.is_empty() {
        let svg = roc("ROC over the scanned models", &curves)?;
        write_svg_and_png(&out.join("roc.png"), &svg)?;
        body += &format!("<h2>ROC</h2>{svg}");
    }
    body += "<h2>Models</h2><table><tr><th>id</th><th>truth</th><th>verdict</th><th>dense: label (AI)</th>\
             <th>ticket: label (AI)</th><th>seconds</th><th>error</th></tr>";
    let opt = |v: Option<u32>| v.map_or("-".to_string(), |v| v.to_string());
    let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    for r in rows {
        let truth = match (r.truth_poisoned, r.truth_backdoor_took) {
            (Some(true), Some(false)) => format!("poisoned to {}, did not take", opt(r.truth_target)),
            (Some(true), _) => {
                format!("Trojaned, {} ({})", opt(r.truth_target), r.truth_attack.as_deref().unwrap_or("?"))
            }
            (Some(false), _) => "clean".into(),
            (None, _) => "?".into(),
        };
        let verdict = match r.trojaned {
            Some(true) => format!("Trojaned, {}", opt(r.target)),
            Some(false) => "clean".into(),
            None => "-".into(),
        };
        body += &format!(
            "<tr><td style=\"text-align:left\">{}</td><td>{}</td><td>{}</td><td>{} ({})</td><td>{} ({})</td><td>{:.0}</td><td style=\"text-align:left\">{}</td></tr>",
            esc(&r.id),
            esc(&truth),
            esc(&verdict),
            opt(r.dense_target),
            f(r.dense_ai),
            opt(r.ticket_target),
            f(r.ticket_ai),
            r.seconds,
            esc(r.error.as_deref().unwrap_or(""))
        );
    }
    body += "</table>";
    write_atomic(&out.join("report.html"), page("quarantine scan", &body).as_bytes())
}
