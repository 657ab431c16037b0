//! Training records: one JSON line per epoch, and a training-curve picture.

use plotters::prelude::*;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// Everything reported about one epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_error: f64,
    pub test_error: f64,
    /// Mean energy at the free fixed points of the training examples.
    pub mean_free_energy: f64,
    pub seconds: f64,
    pub samples_per_second: f64,
    pub learning_rates: Vec<f32>,
}

/// Appends one record as a JSON line.
pub fn append_jsonl(path: &Path, record: &EpochRecord) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(
        file,
        "{}",
        serde_json::to_string(record).map_err(std::io::Error::other)?
    )
}

/// Reads every record of a JSONL file (lines that do not parse are reported as errors).
pub fn read_jsonl(path: &Path) -> std::io::Result<Vec<EpochRecord>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| {
                std::io::Error::other(format!("{}: line {}: {e}", path.display(), i + 1))
            })
        })
        .collect()
}

/// Draws train and test error (%) against epochs as an SVG.
pub fn plot_curve(
    path: &Path,
    records: &[EpochRecord],
    title: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (720, 440)).into_drawing_area();
    root.fill(&WHITE)?;
    let last = records.iter().map(|r| r.epoch).max().unwrap_or(1).max(1);
    // Scaled to the test error (the train error of the first epochs may run off the top), so the
    // last points, where runs differ, stay readable.
    let top = records.iter().map(|r| r.test_error).fold(1.0, f64::max) * 1.3;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0usize..last, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("error (%)")
        .draw()?;
    let series = [
        (
            "train",
            RED,
            records
                .iter()
                .map(|r| (r.epoch, r.train_error))
                .collect::<Vec<_>>(),
        ),
        (
            "test",
            BLUE,
            records.iter().map(|r| (r.epoch, r.test_error)).collect(),
        ),
    ];
    for (name, color, points) in series {
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
