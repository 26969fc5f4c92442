//! `docs/bench.svg`: events/s (left) and p99 latency (right) against
//! requests in flight, one line per scenario, baseline included. Drawn with
//! plotters' SVG backend only.

use std::path::Path;

use plotters::coord::combinators::IntoLogRange;
use plotters::prelude::*;

use crate::load::Scenario;
use crate::run::Run;

const COLORS: [RGBColor; 5] = [
    RGBColor(90, 90, 90),
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

/// Writes the plot of `run` to `path`.
pub fn write(run: &Run, path: &Path) -> Result<(), String> {
    draw(run, path).map_err(|err| format!("cannot draw {}: {err}", path.display()))
}

fn draw(run: &Run, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let scenarios: Vec<Scenario> = std::iter::once(Scenario::Baseline)
        .chain(Scenario::SINK)
        .collect();
    let series =
        |value: &dyn Fn(&crate::run::Cell) -> f64, scenario: Scenario| -> Vec<(f64, f64)> {
            run.cells
                .iter()
                .filter(|c| c.scenario == scenario)
                .map(|c| (c.concurrency as f64, value(c)))
                .collect()
        };
    let max_level = run.levels.iter().copied().max().unwrap_or(128) as f64;
    let x_range = (0.8..max_level * 1.25).log_scale();

    let root = SVGBackend::new(path, (1100, 460)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(550);

    let throughput = |c: &crate::run::Cell| c.measured.events_per_sec();
    let top = run.cells.iter().map(throughput).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&left)
        .caption("Throughput", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range.clone(), 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("requests in flight")
        .y_desc("events / s")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    for (scenario, color) in scenarios.iter().zip(COLORS) {
        chart.draw_series(
            LineSeries::new(series(&throughput, *scenario), color.stroke_width(2)).point_size(4),
        )?;
    }

    let p99 = |c: &crate::run::Cell| c.measured.percentile(0.99).as_secs_f64() * 1000.0;
    let highest = run.cells.iter().map(p99).fold(0.01, f64::max) * 1.5;
    let lowest = run.cells.iter().map(p99).fold(highest, f64::min).max(0.01) / 1.5;
    let mut chart = ChartBuilder::on(&right)
        .caption("p99 latency per request (log scale)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range, (lowest..highest).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("requests in flight")
        .y_desc("ms")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y}"))
        .draw()?;
    // The legend goes here: latency rises to the right, the lower right is free.
    for (scenario, color) in scenarios.iter().zip(COLORS) {
        chart
            .draw_series(
                LineSeries::new(series(&p99, *scenario), color.stroke_width(2)).point_size(4),
            )?
            .label(scenario.name())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
