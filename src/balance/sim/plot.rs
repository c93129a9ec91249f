//! The SVG: request and storage peak/mean per measured round, one line per
//! strategy, with the targets and the event rounds marked.
//!
//! Only built with the `plot` cargo feature (on by default), so that a
//! library user who only needs the numbers does not pull in `plotters`.

use super::{RoundStats, SimReport, TARGET_REQ_PEAK_MEAN, TARGET_STO_PEAK_MEAN};
use plotters::prelude::*;
use std::path::Path;

/// Two stacked line charts over the measured rounds: request and storage
/// peak/mean per strategy (clipped at 3), with the target lines.
pub(super) fn plot(report: &SimReport, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (900, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let halves = root.split_evenly((2, 1));
    let colors = [RED, BLACK, BLUE, GREEN, MAGENTA];
    let n = report.config.rounds as i64;
    let e = report.config.events;
    type Panel<'a> = (&'a str, f64, fn(&RoundStats) -> f64);
    let panels: [Panel; 2] = [
        (
            "request peak/mean (utilisation)",
            TARGET_REQ_PEAK_MEAN,
            |r| r.req_peak_mean,
        ),
        ("storage peak/mean", TARGET_STO_PEAK_MEAN, |r| {
            r.sto_peak_mean
        }),
    ];
    for (area, (title, target, get)) in halves.iter().zip(panels) {
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!(
                    "{} - {} nodes, Zipf {:.1}, clipped at 3 (events: flash {}, join {}, fail {}, failover {})",
                    title,
                    report.config.nodes,
                    report.config.zipf,
                    e.flash,
                    e.join,
                    e.fail,
                    e.failover
                ),
                ("sans-serif", 14),
            )
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(40)
            .build_cartesian_2d(0i64..n, 0.8f64..3.0f64)?;
        chart.configure_mesh().x_desc("measured round").draw()?;
        chart.draw_series(LineSeries::new(
            [(0, target), (n, target)],
            ShapeStyle::from(&BLACK.mix(0.4)).stroke_width(1),
        ))?;
        for ev in [e.flash, e.join, e.fail, e.failover] {
            chart.draw_series(LineSeries::new(
                [(ev as i64, 0.8), (ev as i64, 3.0)],
                ShapeStyle::from(&BLACK.mix(0.15)).stroke_width(1),
            ))?;
        }
        for (i, run) in report.runs.iter().enumerate() {
            let color = colors[i % colors.len()];
            chart
                .draw_series(LineSeries::new(
                    run.rounds
                        .iter()
                        .filter(|r| r.round >= 0)
                        .map(|r| (r.round, get(r).clamp(0.8, 3.0))),
                    ShapeStyle::from(&color).stroke_width(2),
                ))?
                .label(run.strategy.name())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
