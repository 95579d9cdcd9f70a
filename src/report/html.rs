//! One self-contained `report.html` per run: every image is inlined as a `data:` URI, there are no
//! scripts, fonts or style sheets from the network, so the file can be mailed or archived alone.
//!
//! What a report shows depends on what the run folder holds (see [`write_report`]):
//! - a `demo` run (`demo.json`): the verdicts for the Trojaned model and the clean control, the hidden
//!   target revealed, then one detection section per model;
//! - a `detect` run (`detect.json`): verdict, the pruning dynamics (paper Fig. 2), soft-mask l1 per
//!   label for the dense model and the winning ticket (Fig. 3), the recovered triggers of every label
//!   for both (Fig. 4), next to the true trigger when the experimenter knows it;
//! - a `reverse` run (`reverse.json`): the l1 bars and recovered triggers;
//! - a scored pruning run (`dynamics.json`): the dynamics plot and the per-step table.
//!
//! Every section ends with the numbers as tables and the config, seed and versions they came from.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::records::{read_record, DemoRecord, ExperimentRecord};
use crate::detect::{DetectRecord, VerdictSummary};
use crate::error::{Error, Result};
use crate::reverse::ReverseReport;
use crate::score::job::ScoreDynamics;
use crate::util::write_atomic;
use base64::Engine as _;

/// The true attack of a model, when the experimenter knows it (demo, research runs).
#[derive(Debug, Clone)]
pub struct Truth {
    /// The true target (None: a clean model).
    pub target: Option<u32>,
    /// PNG of the true trigger (as written by `train --attack`).
    pub trigger_png: Option<PathBuf>,
}

/// HTML-escapes text.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// An `<img>` with the PNG file inlined; a missing file is an error naming it (a report with a
/// silently missing plot is worse than none).
fn img(path: &Path, alt: &str, class: &str) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    Ok(format!(r#"<img class="{class}" alt="{}" src="data:image/png;base64,{b64}">"#, esc(alt)))
}

/// A number with `digits` decimals; "–" when unknown, "inf" when infinite.
fn num(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.digits$}"),
        Some(_) => "inf".into(),
        None => "–".into(),
    }
}

/// A label, "–" when none.
fn label(v: Option<u32>) -> String {
    v.map_or("–".into(), |l| l.to_string())
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = String::from("<table><tr>");
    for h in head {
        let _ = write!(s, "<th>{}</th>", esc(h));
    }
    s.push_str("</tr>");
    for r in rows {
        s.push_str("<tr>");
        for c in r {
            let _ = write!(s, "<td>{c}</td>");
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    s
}

fn details(summary: &str, v: &impl serde::Serialize) -> String {
    let pretty = serde_json::to_string_pretty(v).unwrap_or_default();
    format!("<details><summary>{}</summary><pre>{}</pre></details>", esc(summary), esc(&pretty))
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}\
h1{margin-bottom:.2em}.verdict{font-size:1.4em;padding:.6em 1em;border-radius:6px;margin:1em 0}\
.bad{background:#fde2e1;border:1px solid #e06666}.good{background:#e2f5e3;border:1px solid #6aa84f}\
table{border-collapse:collapse;margin:.8em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\
th{background:#f2f2f2}img.plot{max-width:100%;border:1px solid #ddd}\
.trig{display:inline-block;text-align:center;margin:3px;font-size:.8em}.trig img{width:84px;height:84px;image-rendering:pixelated;border:2px solid #ddd}\
.trig.hit img{border-color:#d00}pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.8em}code{background:#f2f2f2;padding:1px 4px}";

/// A whole page around body sections.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}</style></head>\n<body><h1>{t}</h1>\n{body}\n<footer><p>Written by quarantine {v}. Self-contained: images are inlined.</p></footer></body></html>\n",
        t = esc(title),
        v = env!("CARGO_PKG_VERSION")
    )
}

/// The one-line verdict box of a `detect.json`.
pub fn verdict_box(det: &DetectRecord, name: &str) -> String {
    let ai = num(det.anomaly_index, 2);
    let thr = num(Some(det.threshold), 1);
    let text = if det.trojaned {
        format!(
            "{}: <b>TROJANED</b>, target label <b>{}</b> (anomaly index {ai} &gt; {thr})",
            esc(name),
            label(det.target)
        )
    } else {
        format!("{}: <b>no Trojan found</b> (anomaly index {ai} &le; {thr})", esc(name))
    };
    format!("<div class=\"verdict {}\">{text}</div>", if det.trojaned { "bad" } else { "good" })
}

/// The recovered trigger of every label of one reverse-engineering folder, as a row of images.
fn trigger_row(dir: &Path, rev: &ReverseReport, caption: &str) -> Result<String> {
    let mut s = format!("<p><b>{}</b><br>", esc(caption));
    for l in &rev.labels {
        let t = l.label;
        let hit = rev.detected_target == Some(t);
        let _ = write!(
            s,
            "<span class=\"trig{}\">{}<br>label {t}<br>l1 {}</span>",
            if hit { " hit" } else { "" },
            img(&dir.join(format!("label{t}_trigger.png")), &format!("{caption} label {t}"), "")?,
            num(Some(l.l1), 1)
        );
    }
    s.push_str("</p>");
    Ok(s)
}

fn reverse_table(rev: &ReverseReport) -> String {
    let rows: Vec<Vec<String>> = rev
        .labels
        .iter()
        .map(|l| {
            vec![
                l.label.to_string(),
                num(Some(l.l1), 2),
                num(Some(l.attack_success), 3),
                yes_no(l.reached),
                num(Some(l.anomaly_index), 2),
                num(l.recovered_asr, 3),
                num(l.iou, 3),
            ]
        })
        .collect();
    table(
        &["label", "mask l1", "attack success (seeds)", "reached", "anomaly index", "recovered-trigger ASR", "IoU"],
        &rows,
    )
}

/// Body of a `reverse` folder: l1 bars, recovered triggers, the per-label table.
pub fn reverse_section(dir: &Path, heading: &str) -> Result<String> {
    let rev: ReverseReport = read_record(&dir.join("reverse.json"))?;
    let mut s = format!("<h2>{}</h2>", esc(heading));
    let _ = write!(
        s,
        "<p>Detected target (argmin l1): <b>{}</b>, anomaly index {} (flagged: {}).</p>",
        label(rev.detected_target),
        num(rev.anomaly_index, 2),
        yes_no(rev.flagged)
    );
    s.push_str(&img(&dir.join("l1.png"), "mask l1 per label", "plot")?);
    s.push_str(&trigger_row(dir, &rev, "recovered triggers (mask ⊙ pattern)")?);
    s.push_str(&reverse_table(&rev));
    Ok(s)
}

/// Body of a `detect` folder; `truth` adds the true target and trigger when known.
pub fn detect_section(dir: &Path, heading: &str, truth: Option<&Truth>) -> Result<String> {
    let det: DetectRecord = read_record(&dir.join("detect.json"))?;
    let dense: ReverseReport = read_record(&dir.join("reverse-dense").join("reverse.json"))?;
    let ticket: ReverseReport = read_record(&dir.join("reverse-ticket").join("reverse.json"))?;
    let mut s = format!("<h2>{}</h2>", esc(heading));
    s.push_str(&verdict_box(&det, "verdict"));
    let dec = &det.decision;
    let _ = write!(
        s,
        "<p>Decision rule <b>{}</b>: argmin-l1 label {} on the dense model, {} on the winning ticket ({}); pooled anomaly index {}.</p>",
        esc(&dec.rule.to_string()),
        label(dec.dense_target),
        label(dec.ticket_target),
        if dec.agree { "they agree" } else { "they disagree" },
        num(dec.pooled_anomaly_index, 2)
    );
    if let Some(t) = truth {
        let _ = write!(
            s,
            "<p>Ground truth (known to the experimenter, not to the detector): {}.</p>",
            match t.target {
                Some(x) => format!("Trojaned, target label <b>{x}</b>"),
                None => "clean model".into(),
            }
        );
    }
    let w = &det.winning_ticket;
    let _ = write!(
        s,
        "<h3>Pruning dynamics and the winning Trojan ticket (paper Fig. 2)</h3><p>One-shot magnitude pruning path scored with {} data; winning ticket at step {}, density {} (clean accuracy {}).</p>",
        if det.data_free { "noise (data-free)" } else { "the given" },
        w.step,
        num(Some(w.density), 4),
        num(w.clean_accuracy, 3)
    );
    s.push_str(&img(&dir.join("dynamics.png"), "pruning dynamics", "plot")?);
    s.push_str("<h3>Soft-mask l1 per label (paper Fig. 3)</h3><table><tr><th>dense model</th><th>winning ticket</th></tr><tr><td>");
    s.push_str(&img(&dir.join("reverse-dense").join("l1.png"), "l1 per label, dense", "plot")?);
    s.push_str("</td><td>");
    s.push_str(&img(&dir.join("reverse-ticket").join("l1.png"), "l1 per label, winning ticket", "plot")?);
    s.push_str("</td></tr></table>");
    s.push_str("<h3>Recovered triggers (paper Fig. 4)</h3>");
    if let Some(p) = truth.and_then(|t| t.trigger_png.as_ref()) {
        s.push_str("<p><b>true trigger</b><br><span class=\"trig\">");
        s.push_str(&img(p, "true trigger", "")?);
        s.push_str("</span></p>");
    }
    s.push_str(&trigger_row(&dir.join("reverse-dense"), &dense, "dense model")?);
    s.push_str(&trigger_row(&dir.join("reverse-ticket"), &ticket, "winning Trojan ticket")?);
    if let Some(w) = &det.warp {
        let _ = write!(
            s,
            "<h3>Warp inversion (non-patch triggers such as WaNet)</h3><p>{}</p>",
            esc(&crate::detect::warp_line(w))
        );
        let rows: Vec<Vec<String>> = w
            .labels
            .iter()
            .map(|l| {
                vec![
                    l.label.to_string(),
                    num(Some(l.attack_success), 2),
                    num(Some(l.base_rate), 2),
                    num(Some(l.magnitude), 3),
                ]
            })
            .collect();
        s.push_str(&table(&["label", "warped seeds classified as it", "unwarped", "mean control offset"], &rows));
    }
    s.push_str(&detect_numbers(&det, &dense, &ticket));
    Ok(s)
}

/// The numbers of a detection: both verdicts, both per-label tables, how to reproduce it.
fn detect_numbers(det: &DetectRecord, dense: &ReverseReport, ticket: &ReverseReport) -> String {
    let mut s = String::from("<h3>Numbers</h3>");
    let row = |name: &str, v: &VerdictSummary| {
        vec![
            esc(name),
            label(v.detected_target),
            num(v.l1, 2),
            num(Some(v.median_l1), 2),
            num(v.anomaly_index, 2),
            yes_no(v.flagged),
        ]
    };
    s.push_str(&table(
        &["model", "argmin-l1 label", "its l1", "median l1", "anomaly index", "flagged"],
        &[row("dense", &det.dense), row("winning ticket", &det.ticket)],
    ));
    s.push_str("<p>Winning ticket, per label:</p>");
    s.push_str(&reverse_table(ticket));
    s.push_str("<p>Dense model, per label:</p>");
    s.push_str(&reverse_table(dense));
    let _ = write!(s, "<p>Reproduce: <code>{}</code></p>", esc(&det.command));
    s.push_str(&details(
        "config, seed, versions",
        &serde_json::json!({"config": det.config, "seed": det.seed, "versions": det.versions, "model": det.model}),
    ));
    s
}

/// Body of a scored pruning run: the dynamics plot and a row per step.
pub fn score_section(dir: &Path) -> Result<String> {
    let d: ScoreDynamics = read_record(&dir.join("dynamics.json"))?;
    let mut s = String::from("<h2>Pruning dynamics and Trojan score (paper Fig. 2)</h2>");
    if let Some(w) = &d.winning_ticket {
        let _ = write!(s, "<p>Winning Trojan ticket: step {}, density {}.</p>", w.step, num(Some(w.density), 4));
    }
    s.push_str(&img(&dir.join("dynamics.png"), "pruning dynamics", "plot")?);
    let rows: Vec<Vec<String>> = d
        .steps
        .iter()
        .map(|r| {
            vec![
                r.step.to_string(),
                num(Some(r.density), 4),
                num(r.ticket.clean_accuracy, 3),
                num(r.ticket.attack_success_rate, 3),
                num(Some(r.score_error), 3),
                num(Some(r.score_loss), 3),
            ]
        })
        .collect();
    s.push_str(&table(&["step", "density", "clean acc.", "attack success", "score (error)", "score (loss)"], &rows));
    s.push_str(&details("config", &d.config));
    Ok(s)
}

/// The verdict table of a demo run.
fn demo_body(dir: &Path, demo: &DemoRecord) -> Result<String> {
    let mut s = String::new();
    let mut rows = vec![];
    for m in &demo.models {
        let det: DetectRecord = read_record(&dir.join(&m.detect_dir).join("detect.json"))?;
        s.push_str(&verdict_box(&det, &m.name));
        rows.push(vec![
            esc(&m.name),
            m.true_target.map_or("clean".into(), |t| format!("target {t}")),
            num(m.clean_accuracy, 3),
            num(m.attack_success, 3),
            if det.trojaned { format!("Trojaned, target {}", label(det.target)) } else { "clean".into() },
            num(det.anomaly_index, 2),
            yes_no(m.correct),
        ]);
    }
    s.push_str(&table(
        &["model", "truth", "clean acc.", "attack success (non-target)", "verdict", "anomaly index", "correct"],
        &rows,
    ));
    let _ = write!(
        s,
        "<p>Reproduce: <code>{}</code> ({} s on {} threads).</p>",
        esc(&demo.command),
        num(Some(demo.seconds), 0),
        demo.threads
    );
    for m in &demo.models {
        let trigger = dir.join(&m.train_dir).join("trigger.png");
        let truth = Truth { target: m.true_target, trigger_png: trigger.exists().then_some(trigger) };
        s.push_str(&detect_section(&dir.join(&m.detect_dir), &format!("{}: detection", m.name), Some(&truth))?);
    }
    s.push_str(&details("demo config, seed, versions", demo));
    Ok(s)
}

/// An experiment (`quarantine run`): the score's dynamics, then reverse engineering on the dense
/// model and the winning ticket, whichever stages the config had.
fn experiment_body(dir: &Path, e: &ExperimentRecord) -> Result<String> {
    let mut s = format!("<p>{}</p>", esc(&e.description));
    if e.stages.score {
        s.push_str(&score_section(&dir.join("prune"))?);
    }
    if e.stages.reverse {
        s.push_str(&reverse_section(&dir.join("reverse-dense"), "Reverse engineering: dense model")?);
        s.push_str(&reverse_section(&dir.join("reverse-ticket"), "Reverse engineering: winning Trojan ticket")?);
    }
    let _ = write!(s, "<p>Reproduce: <code>{}</code></p>", esc(&e.command));
    s.push_str(&details("experiment", e));
    Ok(s)
}

/// Writes `DIR/report.html` for whatever run `dir` holds; returns its path.
pub fn write_report(dir: &Path) -> Result<PathBuf> {
    let (title, body) = if dir.join("experiment.json").exists() {
        ("quarantine run", experiment_body(dir, &read_record(&dir.join("experiment.json"))?)?)
    } else if dir.join("demo.json").exists() {
        ("quarantine demo", demo_body(dir, &read_record(&dir.join("demo.json"))?)?)
    } else if dir.join("detect.json").exists() {
        ("quarantine detect", detect_section(dir, "Detection", None)?)
    } else if dir.join("reverse.json").exists() {
        ("quarantine reverse", reverse_section(dir, "Trigger reverse engineering")?)
    } else if dir.join("dynamics.json").exists() {
        ("quarantine score", score_section(dir)?)
    } else {
        return Err(Error::bad_file(
            dir,
            "no demo.json, detect.json, reverse.json or dynamics.json: not a quarantine run folder",
        ));
    };
    let out = dir.join("report.html");
    write_atomic(&out, page(title, &body).as_bytes())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(esc("<a href=\"x\">&</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;");
    }

    #[test]
    fn numbers_render_nulls_and_infinities() {
        assert_eq!(num(Some(0.12345), 2), "0.12");
        assert_eq!(num(None, 2), "–");
        assert_eq!(num(Some(f64::INFINITY), 2), "inf");
        assert_eq!(yes_no(true), "yes");
    }

    #[test]
    fn missing_run_folder_is_an_error_naming_it() {
        let d = tempfile::tempdir().unwrap();
        let e = write_report(d.path()).unwrap_err().to_string();
        assert!(e.contains(&d.path().display().to_string()), "{e}");
    }

    #[test]
    fn reverse_report_inlines_every_image() {
        let d = tempfile::tempdir().unwrap();
        let png = crate::report::plot::svg_to_png(&crate::report::plot::bars("t", "l1", &[1.0, 2.0], Some(0)).unwrap())
            .unwrap();
        std::fs::write(d.path().join("l1.png"), &png).unwrap();
        for t in 0..2 {
            std::fs::write(d.path().join(format!("label{t}_trigger.png")), &png).unwrap();
        }
        let line = |label: u32, l1: f64| crate::reverse::LabelSummary {
            label,
            l1,
            attack_success: 1.0,
            reached: true,
            recovered_asr: None,
            iou: None,
            anomaly_index: 0.0,
            epoch: 1,
            epoch_attack_success: 1.0,
            epochs_run: 1,
            final_cost: [0.0; 5],
        };
        let labels = vec![line(0, 1.0), line(1, 2.0)];
        let mut v = crate::reverse::verdict(&labels, 2.0, crate::reverse::AnomalyScale::Log);
        v.anomaly_index = Some(3.5);
        let mut rev = ReverseReport::new(&[], &v, None, None);
        rev.labels = labels;
        std::fs::write(d.path().join("reverse.json"), serde_json::to_string(&rev).unwrap()).unwrap();
        let html = std::fs::read_to_string(write_report(d.path()).unwrap()).unwrap();
        assert_eq!(html.matches("src=\"data:image/png;base64,").count(), 3);
        assert!(!html.contains("http://") && !html.contains("https://"), "no network references");
        assert!(html.contains("3.50"));
        std::fs::remove_file(d.path().join("label1_trigger.png")).unwrap();
        let e = write_report(d.path()).unwrap_err().to_string();
        assert!(e.contains("label1_trigger.png"), "{e}");
    }
}
