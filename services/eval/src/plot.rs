//! Plots as SVG (plotters; no fonts or system libraries needed): panels of
//! lines and markers with 95 % interval bars.

use std::path::Path;

use plotters::prelude::*;

/// One point; `err` is the half-width of its 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub err: Option<f64>,
}

impl Point {
    pub fn new(x: f64, y: f64) -> Self {
        Self { x, y, err: None }
    }

    pub fn with_err(x: f64, y: f64, err: f64) -> Self {
        Self { x, y, err: Some(err) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Line,
    Markers,
    LineAndMarkers,
}

#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<Point>,
    pub mark: Mark,
}

impl Series {
    pub fn new(name: impl Into<String>, mark: Mark, points: Vec<Point>) -> Self {
        Self { name: name.into(), points, mark }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

/// A stable colour per policy name, so a policy has one colour in every plot;
/// other series take the palette in the order of their panel.
fn colour(name: &str, index: usize) -> RGBColor {
    const PALETTE: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    let known = ["all-edge", "all-cloud", "fixed", "frugalgpt", "routellm", "funcdyn", "policynet", "oracle", "best-fixed-hindsight", "refreshed"];
    let i = known.iter().position(|k| name.starts_with(k)).unwrap_or(index);
    PALETTE[i % PALETTE.len()]
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi > lo { (hi - lo) * 0.06 } else { lo.abs().max(1.0) * 0.05 };
    (lo - pad, hi + pad)
}

/// Writes `panels` to an SVG file at `path`, `columns` panels per row.
pub fn write_svg(path: &Path, title: &str, panels: &[Panel], columns: usize) -> anyhow::Result<()> {
    let columns = columns.clamp(1, panels.len().max(1));
    let rows = panels.len().div_ceil(columns).max(1);
    let size = (460 * columns as u32, 360 * rows as u32 + 40);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let root = root.titled(title, ("sans-serif", 20)).map_err(plot_error)?;
    for (area, panel) in root.split_evenly((rows, columns)).iter().zip(panels) {
        draw_panel(area, panel)?;
    }
    root.present().map_err(plot_error)?;
    Ok(())
}

fn plot_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("plot: {e:?}")
}

fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, plotters::coord::Shift>, panel: &Panel) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let all = || panel.series.iter().flat_map(|s| s.points.iter());
    let x = range(all().map(|p| p.x));
    let y = range(all().flat_map(|p| [p.y - p.err.unwrap_or(0.0), p.y + p.err.unwrap_or(0.0)]));
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 15))
        .margin(8)
        .x_label_area_size(34)
        .y_label_area_size(52)
        .build_cartesian_2d(x.0..x.1, y.0..y.1)
        .map_err(plot_error)?;
    chart.configure_mesh().x_desc(&panel.x_label).y_desc(&panel.y_label).x_labels(6).y_labels(6).label_style(("sans-serif", 11)).draw().map_err(plot_error)?;
    for (index, s) in panel.series.iter().enumerate() {
        let c = colour(&s.name, index);
        let style = ShapeStyle::from(&c).stroke_width(2);
        let mut pts: Vec<(f64, f64)> = s.points.iter().filter(|p| p.x.is_finite() && p.y.is_finite()).map(|p| (p.x, p.y)).collect();
        if s.mark != Mark::Markers {
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        let legend_style = style;
        let anno = match s.mark {
            Mark::Markers => chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled()))).map_err(plot_error)?,
            Mark::Line => chart.draw_series(LineSeries::new(pts.clone(), style)).map_err(plot_error)?,
            Mark::LineAndMarkers => {
                chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled()))).map_err(plot_error)?;
                chart.draw_series(LineSeries::new(pts.clone(), style)).map_err(plot_error)?
            }
        };
        anno.label(s.name.clone()).legend(move |(lx, ly)| PathElement::new(vec![(lx, ly), (lx + 16, ly)], legend_style));
        let bars = s.points.iter().filter_map(|p| p.err.filter(|e| *e > 0.0 && e.is_finite()).map(|e| (p.x, p.y, e)));
        chart.draw_series(bars.map(|(px, py, e)| PathElement::new(vec![(px, py - e), (px, py + e)], ShapeStyle::from(&c).stroke_width(1)))).map_err(plot_error)?;
    }
    chart.configure_series_labels().position(SeriesLabelPosition::LowerRight).label_font(("sans-serif", 10)).background_style(WHITE.mix(0.85)).border_style(BLACK.mix(0.3)).draw().map_err(plot_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_svg_with_every_series_named() {
        let path = std::env::temp_dir().join(format!("netgpt-plot-{}.svg", std::process::id()));
        let panel = Panel {
            title: "GOOD · flat".into(),
            x_label: "cost".into(),
            y_label: "success".into(),
            series: vec![
                Series::new("funcdyn", Mark::LineAndMarkers, vec![Point::with_err(0.1, 0.9, 0.01), Point::new(0.2, 0.95)]),
                Series::new("all-edge", Mark::Markers, vec![Point::new(0.0, 0.8)]),
            ],
        };
        write_svg(&path, "frontier", &[panel.clone(), panel], 2).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("funcdyn") && svg.contains("all-edge") && svg.contains("GOOD · flat"));
        std::fs::remove_file(&path).unwrap();
    }
}
