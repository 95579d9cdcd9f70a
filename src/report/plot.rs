//! Plots drawn with plotters into SVG, rasterised to PNG by resvg with an embedded font
//! (assets/DejaVuSans.ttf, Bitstream Vera licence, see assets/DejaVuSans.LICENSE), so no system
//! fonts are needed. Every plot exists as SVG (inlined in the HTML report) and PNG.
//!
//! - [`dynamics`]: the paper's Figure 2: clean accuracy (dashed) and attack success (solid) of the
//!   tickets against sparsity, with the Trojan scores on a second axis and the winning ticket marked.
//! - [`bars`]: the paper's Figure 3: soft-mask l1 norm per label, the detected label highlighted.
use std::path::Path;

use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::util::write_atomic;

const FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
const W: u32 = 720;
const H: u32 = 440;

fn plot_err(e: impl std::fmt::Display) -> Error {
    Error::invalid("plot", e.to_string())
}

/// Rasterises an SVG document to PNG bytes.
pub fn svg_to_png(svg: &str) -> Result<Vec<u8>> {
    let mut opt = resvg::usvg::Options::default();
    opt.fontdb_mut().load_font_data(FONT.to_vec());
    opt.fontdb_mut().set_sans_serif_family("DejaVu Sans");
    let tree = resvg::usvg::Tree::from_str(svg, &opt).map_err(plot_err)?;
    let size = tree.size().to_int_size();
    let mut pm = resvg::tiny_skia::Pixmap::new(size.width(), size.height()).ok_or_else(|| plot_err("empty image"))?;
    pm.fill(resvg::tiny_skia::Color::WHITE);
    resvg::render(&tree, resvg::tiny_skia::Transform::default(), &mut pm.as_mut());
    pm.encode_png().map_err(plot_err)
}

/// Writes `NAME.svg` and `NAME.png` for an SVG document (`path` without extension or with `.png`).
pub fn write_svg_and_png(path: &Path, svg: &str) -> Result<()> {
    write_atomic(&path.with_extension("svg"), svg.as_bytes())?;
    write_atomic(&path.with_extension("png"), &svg_to_png(svg)?)
}

/// One point of the pruning dynamics.
#[derive(Debug, Clone)]
pub struct DynPoint {
    /// Percentage of conv weights removed.
    pub sparsity: f64,
    /// Clean accuracy in [0, 1]; a non-finite value is not drawn.
    pub clean_accuracy: f64,
    /// Attack success rate in [0, 1], if the attack is known.
    pub attack_success: Option<f64>,
    /// Trojan score from the 0-1 error barrier (docs/METHOD.md §5).
    pub score_error: f64,
    /// Trojan score from the cross-entropy barrier (docs/METHOD.md §5).
    pub score_loss: f64,
}

/// Figure 2: accuracy/ASR against sparsity, scores on the right axis; `winner` is marked.
pub fn dynamics(title: &str, points: &[DynPoint], winner: Option<usize>) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        // x = -ln(density): geometric pruning steps are evenly spaced; ticks are labelled in sparsity.
        let xs = |p: &DynPoint| -(1.0 - p.sparsity / 100.0).max(1e-9).ln();
        let xmin = points.iter().map(xs).fold(f64::INFINITY, f64::min).min(0.0);
        let xmax = points.iter().map(xs).fold(f64::NEG_INFINITY, f64::max).max(xmin + 0.1);
        let smax = points.iter().flat_map(|p| [p.score_error, p.score_loss]).fold(0.0f64, f64::max).max(1e-3) * 1.1;
        let smin = points.iter().flat_map(|p| [p.score_error, p.score_loss]).fold(0.0f64, f64::min) * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .right_y_label_area_size(55)
            .build_cartesian_2d(xmin..xmax, 0f64..100f64)
            .map_err(plot_err)?
            .set_secondary_coord(xmin..xmax, smin..smax);
        chart
            .configure_mesh()
            .x_desc("sparsity (%), log-density axis")
            .y_desc("accuracy / attack success (%)")
            .x_label_formatter(&|x| format!("{:.2}", 100.0 * (1.0 - (-x).exp())))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(plot_err)?;
        chart.configure_secondary_axes().y_desc("Trojan score").draw().map_err(plot_err)?;
        let blue = RGBColor(31, 119, 180);
        let red = RGBColor(214, 39, 40);
        let green = RGBColor(44, 160, 44);
        let purple = RGBColor(148, 103, 189);
        let acc: Vec<(f64, f64)> =
            points.iter().filter(|p| p.clean_accuracy.is_finite()).map(|p| (xs(p), 100.0 * p.clean_accuracy)).collect();
        chart
            .draw_series(DashedLineSeries::new(acc.clone(), 6, 4, blue.stroke_width(2)))
            .map_err(plot_err)?
            .label("clean accuracy")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], blue.stroke_width(2)));
        chart.draw_series(acc.iter().map(|&p| Circle::new(p, 3, blue.filled()))).map_err(plot_err)?;
        let asr: Vec<(f64, f64)> = points.iter().filter_map(|p| p.attack_success.map(|a| (xs(p), 100.0 * a))).collect();
        if !asr.is_empty() {
            chart
                .draw_series(LineSeries::new(asr.clone(), red.stroke_width(2)))
                .map_err(plot_err)?
                .label("attack success")
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], red.stroke_width(2)));
            chart.draw_series(asr.iter().map(|&p| Circle::new(p, 3, red.filled()))).map_err(plot_err)?;
        }
        for (vals, color, name) in [
            (points.iter().map(|p| (xs(p), p.score_loss)).collect::<Vec<_>>(), green, "score (loss)"),
            (points.iter().map(|p| (xs(p), p.score_error)).collect::<Vec<_>>(), purple, "score (error)"),
        ] {
            chart
                .draw_secondary_series(LineSeries::new(vals, color.stroke_width(2)))
                .map_err(plot_err)?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        if let Some(w) = winner.and_then(|i| points.get(i)) {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(xs(w), 0.0), (xs(w), 100.0)],
                    BLACK.mix(0.5).stroke_width(1),
                )))
                .map_err(plot_err)?
                .label("winning ticket")
                .legend(|(x, y)| PathElement::new(vec![(x + 10, y - 6), (x + 10, y + 6)], BLACK.mix(0.5)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// Figure 3: one bar per label, `highlight` drawn in red.
pub fn bars(title: &str, y_desc: &str, values: &[f64], highlight: Option<usize>) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let ymax = values.iter().cloned().fold(0.0f64, f64::max).max(1e-6) * 1.15;
        let n = values.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d((0..n).into_segmented(), 0f64..ymax)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc("label")
            .y_desc(y_desc)
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => i.to_string(),
                _ => String::new(),
            })
            .draw()
            .map_err(plot_err)?;
        let gray = RGBColor(120, 144, 156);
        let red = RGBColor(214, 39, 40);
        chart
            .draw_series(values.iter().enumerate().map(|(i, &v)| {
                let c = if Some(i) == highlight { red } else { gray };
                Rectangle::new([(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), v)], c.filled())
            }))
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// ROC curves, one per named series of (FPR, TPR) points, with the chance diagonal.
pub fn roc(title: &str, curves: &[(String, Vec<(f64, f64)>)]) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("false-positive rate")
            .y_desc("true-positive rate")
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(plot_err)?;
        chart
            .draw_series(DashedLineSeries::new(vec![(0.0, 0.0), (1.0, 1.0)], 4, 4, BLACK.mix(0.4).stroke_width(1)))
            .map_err(plot_err)?;
        // Six rules with references (the tab10 palette's first eight): no two curves share a colour.
        let colors = [
            RGBColor(214, 39, 40),
            RGBColor(31, 119, 180),
            RGBColor(44, 160, 44),
            RGBColor(148, 103, 189),
            RGBColor(255, 127, 14),
            RGBColor(23, 190, 207),
            RGBColor(140, 86, 75),
            RGBColor(227, 119, 194),
        ];
        for (k, (name, pts)) in curves.iter().enumerate() {
            let c = colors[k % colors.len()];
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(plot_err)?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_both_plots_to_png() {
        let pts: Vec<DynPoint> = (1..6)
            .map(|i| DynPoint {
                sparsity: 100.0 * (1.0 - 0.8f64.powi(i)),
                clean_accuracy: 0.9 - 0.1 * i as f64,
                attack_success: Some(0.95),
                score_error: 0.01 * i as f64,
                score_loss: 0.02 * i as f64,
            })
            .collect();
        let svg = dynamics("test", &pts, Some(4)).unwrap();
        assert!(svg.contains("clean accuracy") && svg.contains("<svg"));
        let png = svg_to_png(&svg).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let img = image::load_from_memory(&png).unwrap();
        assert_eq!((img.width(), img.height()), (W, H));
        let svg = bars("l1", "mask l1", &[10.0, 3.0, 12.0], Some(1)).unwrap();
        assert!(svg_to_png(&svg).unwrap().len() > 1000);
    }
}
