//! The SVG chart of heartbeat results: acknowledged beats per second and p99 ack latency
//! against the number of agents, one line per target.

use std::collections::BTreeMap;

use plotters::prelude::*;

/// One point: (agents, beats/s, p99 ms).
type Point = (f64, f64, f64);

/// Reads heartbeat results (JSON lines, as the generator prints them) and groups them by
/// target, sorted by agents.
pub fn series(jsonl: &str) -> BTreeMap<String, Vec<Point>> {
    let mut out: BTreeMap<String, Vec<Point>> = BTreeMap::new();
    for line in jsonl.lines().filter(|l| l.trim_start().starts_with('{')) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["scenario"] != "heartbeat" {
            continue;
        }
        let (Some(agents), Some(rate), Some(p99)) = (
            v["agents"].as_f64(),
            v["achieved_per_s"].as_f64(),
            v["ack"]["p99_ms"].as_f64(),
        ) else {
            continue;
        };
        let label = v["label"].as_str().or(v["target"].as_str()).unwrap_or("?");
        out.entry(label.to_string())
            .or_default()
            .push((agents, rate, p99));
    }
    for points in out.values_mut() {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Draws the two panels into `path`.
pub fn draw(
    path: &std::path::Path,
    data: &BTreeMap<String, Vec<Point>>,
) -> Result<(), Box<dyn std::error::Error>> {
    let all: Vec<&Point> = data.values().flatten().collect();
    if all.is_empty() {
        return Err("no heartbeat results to chart".into());
    }
    let x_min = all.iter().map(|p| p.0).fold(f64::MAX, f64::min) * 0.7;
    let x_max = all.iter().map(|p| p.0).fold(0.0, f64::max) * 1.4;
    let rate_max = all.iter().map(|p| p.1).fold(0.0, f64::max) * 1.15;
    let p99_max = all.iter().map(|p| p.2).fold(0.0, f64::max) * 1.15;

    let root = SVGBackend::new(path, (900, 760)).into_drawing_area();
    root.fill(&WHITE)?;
    let (upper, lower) = root.split_vertically(380);
    let panels = [
        (
            &upper,
            "heartbeats acknowledged per second",
            rate_max,
            false,
        ),
        (&lower, "p99 ack latency (ms)", p99_max, true),
    ];
    for (area, title, y_max, latency) in panels {
        let pick = |p: &Point| if latency { p.2 } else { p.1 };
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d((x_min..x_max).log_scale(), 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc("agents (log scale)")
            .x_label_formatter(&|x| format!("{}k", (x / 1000.0).round()))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()?;
        for (n, (label, points)) in data.iter().enumerate() {
            let colour = COLOURS[n % COLOURS.len()];
            let xy: Vec<(f64, f64)> = points.iter().map(|p| (p.0, pick(p))).collect();
            chart
                .draw_series(LineSeries::new(xy.clone(), colour.stroke_width(2)))?
                .label(label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                });
            chart.draw_series(xy.into_iter().map(|p| Circle::new(p, 4, colour.filled())))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
