//! The SVG plots of `report.html`, drawn with plotters' SVG backend into strings that the page
//! inlines. Plotters escapes every text it draws, so cell names from configs go in as they are.
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// A plot that plotters could not draw.
#[derive(Debug, thiserror::Error)]
#[error("drawing the plot \"{plot}\": {message}")]
pub struct PlotError {
    /// The plot's title.
    pub plot: String,
    /// What plotters said.
    pub message: String,
}

/// One line of an interval plot.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Interval {
    /// Its name on the axis (the cell).
    pub label: String,
    /// The series it is coloured by (the variant).
    pub series: String,
    /// The point.
    pub value: f64,
    /// Its whisker.
    pub ci: Option<(f64, f64)>,
}

/// One category of a paired bar plot.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bars {
    /// Its name on the axis.
    pub label: String,
    /// The upper bar.
    pub first: f64,
    /// The lower bar.
    pub second: f64,
}

const WIDTH: u32 = 960;
const ROW: u32 = 22;
/// Room right of the plotting area for the legend.
const LEGEND: u32 = 170;
/// Colour-blind-safe (Okabe–Ito), in the order series appear.
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(240, 228, 66),
    RGBColor(0, 0, 0),
];

fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Room on the left for the longest label, at about 7 px a character of 12 px sans-serif.
fn label_width(labels: impl Iterator<Item = usize>) -> u32 {
    (labels.max().unwrap_or(0) as u32 * 7 + 16).clamp(80, 460)
}

/// `[lo, hi]` widened by 5% on each side, and by a little when it is a single point.
fn padded(lo: f64, hi: f64) -> (f64, f64) {
    let (lo, hi) = if lo.is_finite() && hi.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let span = if hi > lo { hi - lo } else { hi.abs().max(1e-3) };
    (lo - 0.05 * span, hi + 0.05 * span)
}

/// Draws `draw` on a fresh `height`-pixel SVG and returns the document.
fn svg(title: &str, height: u32, draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<(), Box<dyn std::error::Error>>) -> Result<String, PlotError> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, height)).into_drawing_area();
        let drawn = root.fill(&WHITE).map_err(|e| e.into()).and_then(|_| draw(&root)).and_then(|_| root.present().map_err(|e| e.into()));
        drawn.map_err(|e| PlotError { plot: title.to_string(), message: e.to_string() })?;
    }
    Ok(out)
}

/// A chart of `n` rows (top to bottom) over `x`, its mesh and x axis drawn: the frame of both
/// plot kinds. `area` is the left label column's width and the bottom axis area's height.
fn rows_chart<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    title: &str,
    area: (u32, u32),
    x: std::ops::Range<f64>,
    n: usize,
    axis: &str,
) -> Result<
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>>,
    Box<dyn std::error::Error>,
> {
    let (left, bottom) = area;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 20))
        .margin_right(LEGEND)
        .x_label_area_size(bottom - 20)
        .y_label_area_size(left)
        .build_cartesian_2d(x, n as f64..0.0)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .x_desc(axis)
        .x_label_formatter(&|v| format!("{v:.3}"))
        .draw()?;
    Ok(chart)
}

/// Writes `labels` right-aligned at pixel row `ys`, ending at pixel column `right`.
fn row_labels<'a, DB: DrawingBackend + 'a>(
    root: &DrawingArea<DB, Shift>,
    right: i32,
    rows: impl Iterator<Item = (&'a str, i32)>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let style = TextStyle::from(("sans-serif", 15).into_font()).color(&BLACK).pos(Pos::new(HPos::Right, VPos::Center));
    for (l, y) in rows {
        root.draw(&Text::new(l.to_string(), (right - 6, y), style.clone()))?;
    }
    Ok(())
}

/// The legend, in the margin right of the plotting area: a mark and a name per series.
fn legend<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, top: i32, series: &[&str], bars: bool) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let x = (WIDTH - LEGEND) as i32 + 12;
    let style = TextStyle::from(("sans-serif", 15).into_font()).color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center));
    for (s, name) in series.iter().enumerate() {
        let y = top + 10 + 20 * s as i32;
        if bars {
            root.draw(&Rectangle::new([(x, y - 6), (x + 16, y + 6)], colour(s).filled()))?;
        } else {
            root.draw(&Circle::new((x + 8, y), 5, colour(s).filled()))?;
        }
        root.draw(&Text::new(name.to_string(), (x + 24, y), style.clone()))?;
    }
    Ok(())
}

/// A dot-and-whisker plot: one line per interval, top to bottom, coloured by series.
pub(crate) fn intervals(title: &str, axis: &str, lines: &[Interval]) -> Result<String, PlotError> {
    let n = lines.len().max(1);
    let (top, bottom) = (40, 60);
    let height = top + bottom + ROW * n as u32;
    let left = label_width(lines.iter().map(|l| l.label.chars().count()));
    let (lo, hi) = lines
        .iter()
        .flat_map(|l| [l.value, l.ci.map_or(l.value, |c| c.0), l.ci.map_or(l.value, |c| c.1)])
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    let (lo, hi) = padded(lo, hi);
    let series = super::table::unique(lines.iter().map(|l| l.series.as_str()));
    svg(title, height, |root| {
        let mut chart = rows_chart(root, title, (left, bottom), lo..hi, n, axis)?;
        for (s, name) in series.iter().enumerate() {
            let c = colour(s);
            let mine = || lines.iter().enumerate().filter(move |(_, l)| l.series == *name);
            chart.draw_series(
                mine().filter_map(|(i, l)| l.ci.map(|(a, b)| PathElement::new(vec![(a, i as f64 + 0.5), (b, i as f64 + 0.5)], c.stroke_width(2)))),
            )?;
            chart.draw_series(mine().map(|(i, l)| Circle::new((l.value, i as f64 + 0.5), 4, c.filled())))?;
        }
        let (right, top) = chart.plotting_area().get_base_pixel();
        row_labels(root, right, lines.iter().enumerate().map(|(i, l)| (l.label.as_str(), chart.backend_coord(&(lo, i as f64 + 0.5)).1)))?;
        legend(root, top, &series, false)?;
        Ok(())
    })
}

/// Two bars per category (`names.0` above `names.1`), from zero.
pub(crate) fn paired_bars(title: &str, axis: &str, names: (&str, &str), bars: &[Bars]) -> Result<String, PlotError> {
    let n = bars.len().max(1);
    let (top, bottom) = (40, 60);
    let height = top + bottom + ROW * n as u32;
    let left = label_width(bars.iter().map(|b| b.label.chars().count()));
    let max = bars.iter().flat_map(|b| [b.first, b.second]).filter(|v| v.is_finite()).fold(0.0, f64::max);
    let hi = if max > 0.0 { max * 1.08 } else { 1.0 };
    svg(title, height, |root| {
        let mut chart = rows_chart(root, title, (left, bottom), 0.0..hi, n, axis)?;
        for (s, (pick, offset)) in [(true, 0.1), (false, 0.5)].into_iter().enumerate() {
            let c = colour(s);
            chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
                let v = if pick { b.first } else { b.second };
                let y = i as f64 + offset;
                Rectangle::new([(0.0, y), (v, y + 0.4)], c.filled())
            }))?;
        }
        let (right, top) = chart.plotting_area().get_base_pixel();
        row_labels(root, right, bars.iter().enumerate().map(|(i, b)| (b.label.as_str(), chart.backend_coord(&(0.0, i as f64 + 0.5)).1)))?;
        legend(root, top, &[names.0, names.1], true)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interval_plot_has_a_dot_and_a_whisker_per_line_and_escapes_its_labels() {
        let lines = vec![
            Interval { label: "a<b>&\"c\"".into(), series: "ID only".into(), value: 0.2, ci: Some((0.1, 0.3)) },
            Interval { label: "d".into(), series: "+A/L/M".into(), value: 0.25, ci: None },
        ];
        let svg = intervals("recall@10 <x>", "recall@10", &lines).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
        assert_eq!(svg.matches("<circle").count(), 2 + 2, "two dots and two legend marks");
        let bare: Vec<Interval> = lines.iter().map(|l| Interval { ci: None, ..l.clone() }).collect();
        let without = intervals("recall@10 <x>", "recall@10", &bare).unwrap();
        assert_eq!(svg.matches("<polyline").count(), without.matches("<polyline").count() + 1, "one whisker: the second line has no interval");
        assert!(svg.contains("a&lt;b&gt;&amp;&quot;c&quot;"), "{svg}");
        assert!(svg.contains("recall@10 &lt;x&gt;"), "{svg}");
        assert!(!svg.contains("<b>") && !svg.contains("<x>"));
    }

    #[test]
    fn a_bar_plot_has_two_bars_per_category() {
        let bars = vec![Bars { label: "x".into(), first: 0.1, second: 0.5 }, Bars { label: "y".into(), first: 0.2, second: 0.6 }];
        let svg = paired_bars("t", "recall@10", ("full", "1+199"), &bars).unwrap();
        // Four bars, two legend marks and the background.
        assert_eq!(svg.matches("<rect").count(), 7, "{svg}");
        assert!(svg.contains("\nfull\n") && svg.contains("\n1+199\n"), "{svg}");
    }

    #[test]
    fn degenerate_inputs_still_draw() {
        assert!(intervals("t", "m", &[]).is_ok());
        assert!(intervals("t", "m", &[Interval { label: "x".into(), series: "s".into(), value: f64::NAN, ci: None }]).is_ok());
        assert!(paired_bars("t", "m", ("a", "b"), &[Bars { label: "x".into(), first: 0.0, second: 0.0 }]).is_ok());
    }
}
