//! The SVG chart: throughput and p99 latency of `POST /orders` against concurrency, one
//! series per database. Text stays `<text>` in the SVG, so no font files are needed.

use std::path::Path;

use anyhow::{Context, anyhow};
use loadgen::Scenario;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::database::Kind;
use crate::suite::DatabaseRun;

/// Blue and orange: apart for most colour vision deficiencies; the markers differ too.
const SQLITE: RGBColor = RGBColor(31, 119, 180);
const POSTGRES: RGBColor = RGBColor(230, 110, 0);

/// One series: (concurrency, throughput in orders/s, p99 in ms).
type Series = Vec<(usize, f64, f64)>;

/// Writes the chart of the `POST /orders` points of `runs` to `path`.
pub fn render(path: &Path, runs: &[DatabaseRun], subtitle: &str) -> anyhow::Result<()> {
    let series: Vec<(Kind, Series)> = runs
        .iter()
        .map(|run| {
            let points = run
                .points
                .iter()
                .filter(|p| p.report.scenario == Scenario::Create)
                .map(|p| {
                    let r = &p.report;
                    (
                        r.concurrency,
                        r.throughput,
                        r.latency_us.p99 as f64 / 1000.0,
                    )
                })
                .collect();
            (run.kind, points)
        })
        .collect();
    draw(path, &series, subtitle).with_context(|| format!("drawing {}", path.display()))
}

fn draw(path: &Path, series: &[(Kind, Series)], subtitle: &str) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (1000, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let (header, body) = root.split_vertically(58);
    header
        .draw(&Text::new(
            "POST /orders: throughput and p99 latency against concurrency",
            (20, 10),
            ("sans-serif", 20).into_font().color(&BLACK),
        ))
        .map_err(plot_error)?;
    header
        .draw(&Text::new(
            subtitle.to_owned(),
            (20, 36),
            ("sans-serif", 13).into_font().color(&RGBColor(90, 90, 90)),
        ))
        .map_err(plot_error)?;
    let (left, right) = body.split_horizontally(500);

    let all = || series.iter().flat_map(|(_, points)| points.iter());
    let log2 = |c: usize| (c.max(1) as f64).log2();
    // Whether `y` is the highest value (as `value` reads a point) at position `x`.
    let highest = |x: f64, y: f64, value: fn(&(usize, f64, f64)) -> f64| {
        all()
            .filter(|p| (log2(p.0) - x).abs() < 1e-9)
            .all(|p| value(p) <= y)
    };
    let x_min = all().map(|p| log2(p.0)).fold(f64::INFINITY, f64::min);
    let x_max = all().map(|p| log2(p.0)).fold(f64::NEG_INFINITY, f64::max);
    let (x_min, x_max) = if x_min.is_finite() {
        (x_min.floor() - 0.4, x_max.ceil() + 0.4)
    } else {
        (-0.4, 8.4)
    };

    // Left: throughput, linear from zero.
    let top = all().map(|p| p.1).fold(0.0, f64::max).max(1.0) * 1.15;
    let mut chart = ChartBuilder::on(&left)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .caption(
            "Throughput (orders/s, higher is better)",
            ("sans-serif", 15),
        )
        .build_cartesian_2d(x_min..x_max, 0.0..top)
        .map_err(plot_error)?;
    configure(&mut chart, "orders/s", |y| format!("{y:.0}"))?;
    for (kind, points) in series {
        let points = points.iter().map(|p| (log2(p.0), p.1));
        let above = |x: f64, y: f64| highest(x, y, |p| p.1);
        draw_series(&mut chart, *kind, points, |y| format!("{y:.0}"), above)?;
    }
    legend(&mut chart)?;

    // Right: p99, logarithmic (it spans orders of magnitude as the queue grows).
    let lows = all().map(|p| p.2).filter(|v| *v > 0.0);
    let low = lows.clone().fold(f64::INFINITY, f64::min);
    let high = lows.fold(0.0, f64::max);
    let (low, high) = if low.is_finite() {
        (low / 2.0, high * 2.0)
    } else {
        (0.1, 1000.0)
    };
    let mut chart = ChartBuilder::on(&right)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .caption(
            "p99 latency (ms, log scale, lower is better)",
            ("sans-serif", 15),
        )
        .build_cartesian_2d(x_min..x_max, (low..high).log_scale())
        .map_err(plot_error)?;
    configure(&mut chart, "p99 (ms)", |y| milliseconds(*y))?;
    for (kind, points) in series {
        let points = points.iter().filter(|p| p.2 > 0.0);
        let points = points.map(|p| (log2(p.0), p.2));
        let above = |x: f64, y: f64| highest(x, y, |p| p.2);
        draw_series(&mut chart, *kind, points, milliseconds, above)?;
    }
    legend(&mut chart)?;

    root.present().map_err(plot_error)?;
    Ok(())
}

fn configure<'a, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
    y_desc: &str,
    y_format: impl Fn(&Y::ValueType) -> String,
) -> anyhow::Result<()>
where
    Y: Ranged + ValueFormatter<<Y as Ranged>::ValueType>,
{
    chart
        .configure_mesh()
        .x_desc("concurrency (connections, closed loop)")
        .y_desc(y_desc)
        .x_labels(12)
        // The x axis is log2(concurrency): label the whole powers of two only.
        .x_label_formatter(&|x| {
            if (x - x.round()).abs() < 1e-9 {
                format!("{}", 2f64.powf(x.round()))
            } else {
                String::new()
            }
        })
        .y_label_formatter(&y_format)
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(225, 225, 225))
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

fn draw_series<'a, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
    kind: Kind,
    points: impl Iterator<Item = (f64, f64)> + Clone,
    value_label: impl Fn(f64) -> String,
    above: impl Fn(f64, f64) -> bool,
) -> anyhow::Result<()>
where
    Y: Ranged<ValueType = f64>,
{
    let color = match kind {
        Kind::Sqlite => SQLITE,
        Kind::Postgres => POSTGRES,
    };
    chart
        .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
        .map_err(plot_error)?
        .label(kind.name())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    match kind {
        Kind::Sqlite => {
            chart
                .draw_series(points.clone().map(|p| Circle::new(p, 5, color.filled())))
                .map_err(plot_error)?;
        }
        Kind::Postgres => {
            chart
                .draw_series(
                    points
                        .clone()
                        .map(|p| TriangleMarker::new(p, 6, color.filled())),
                )
                .map_err(plot_error)?;
        }
    }
    // The value beside each point: above it for the highest series at that concurrency,
    // below it for the other, so that close values do not overwrite each other.
    let font = ("sans-serif", 12).into_font().color(&color);
    chart
        .draw_series(points.map(|p| {
            let offset = if above(p.0, p.1) { (6, -20) } else { (6, 8) };
            EmptyElement::at(p) + Text::new(value_label(p.1), offset, font.clone())
        }))
        .map_err(plot_error)?;
    Ok(())
}

fn legend<'a, Y: Ranged>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

/// `120`, `15`, `2.5` or `0.85`: enough digits to read, no more.
fn milliseconds(value: f64) -> String {
    if value >= 10.0 {
        format!("{value:.0}")
    } else if value >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

fn plot_error(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("{error}")
}
