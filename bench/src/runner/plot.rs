//! SVG plots of a run: fan-out throughput against group size, and the latency distribution of
//! each server at the largest group measured. Every Nerve build gets its own warm colour.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use super::report::{LoadRow, Results};
use super::targets::{Kind, MQTT_SUFFIX};

/// Colours of the Nerve builds, in the order they were named; more builds reuse them.
const NERVE_COLOURS: [RGBColor; 4] = [
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];
const SOCKETIO_COLOUR: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const RAW_COLOUR: RGBColor = RGBColor(0x55, 0x55, 0x55);
const MQTT_COLOUR: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);

/// Every server a plot may show, by the name its rows carry, with its colour.
fn series(results: &Results) -> Vec<(String, RGBColor)> {
    let mut out: Vec<(String, RGBColor)> = results
        .nerve_names()
        .into_iter()
        .zip(NERVE_COLOURS.iter().cycle())
        .map(|(n, &c)| (n.to_string(), c))
        .collect();
    if let Some(last) = results.nerve_names().last() {
        out.push((format!("{last}{MQTT_SUFFIX}"), MQTT_COLOUR));
    }
    out.push((Kind::SocketIo.to_string(), SOCKETIO_COLOUR));
    out.push((Kind::Raw.to_string(), RAW_COLOUR));
    out
}

/// Writes every plot the results allow into `dir`; returns the files written.
pub fn render(results: &Results, dir: &Path) -> Result<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let series = series(results);
    if !results.fanout.is_empty() {
        let file = dir.join("fanout-throughput.svg");
        throughput(&results.fanout, &series, &file)?;
        written.push(file.display().to_string());
        let file = dir.join("fanout-latency-cdf.svg");
        latency_cdf(&results.fanout, &series, &file)?;
        written.push(file.display().to_string());
    }
    Ok(written)
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plot: {e:?}")
}

fn throughput(rows: &[LoadRow], series: &[(String, RGBColor)], file: &Path) -> Result<()> {
    let max_n = rows.iter().map(|r| r.size).max().unwrap_or(1).max(2) as f64;
    let min_n = rows.iter().map(|r| r.size).min().unwrap_or(1).max(1) as f64;
    let max_y = rows
        .iter()
        .map(|r| r.saturation.deliveries_per_s)
        .fold(1.0, f64::max)
        * 1.15;
    let root = SVGBackend::new(file, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Fan-out: deliveries per second at saturation",
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d((min_n / 1.5..max_n * 1.5).log_scale(), 0.0..max_y)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("subscribers in the group")
        .y_desc("deliveries / s")
        .y_label_formatter(&|v| format!("{:.0}k", v / 1000.0))
        .draw()
        .map_err(err)?;
    for (name, color) in series {
        let color = *color;
        let mut points: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r.target == *name)
            .map(|r| (r.size as f64, r.saturation.deliveries_per_s))
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        if points.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 4, color.filled())),
            )
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

fn latency_cdf(rows: &[LoadRow], series: &[(String, RGBColor)], file: &Path) -> Result<()> {
    let n = rows.iter().map(|r| r.size).max().unwrap_or(0);
    let at_n: Vec<&LoadRow> = rows.iter().filter(|r| r.size == n).collect();
    let max_ms = at_n
        .iter()
        .filter_map(|r| r.half.as_ref())
        .flat_map(|m| m.latency.cdf.iter().map(|p| p.0 as f64 / 1000.0))
        .fold(1.0, f64::max)
        * 1.5;
    let root = SVGBackend::new(file, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Fan-out to {n}: latency distribution at half saturation"),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((0.01..max_ms).log_scale(), 0.0..1.0)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("publish → receive latency (ms)")
        .y_desc("fraction of deliveries")
        .draw()
        .map_err(err)?;
    for (name, color) in series {
        let color = *color;
        let Some(half) = at_n
            .iter()
            .find(|r| r.target == *name)
            .and_then(|r| r.half.as_ref())
        else {
            continue;
        };
        let points: Vec<(f64, f64)> = half
            .latency
            .cdf
            .iter()
            .map(|&(us, q)| ((us as f64 / 1000.0).max(0.01), q))
            .collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
