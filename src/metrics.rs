//! Training records: one JSON line per epoch (the command line draws them as a curve).

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
    /// With a surprise gate: the share of examples that learned, and the shares of relaxation
    /// steps and FLOPs the skipped ones saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateRecord>,
}

/// What the surprise gate did in an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateRecord {
    pub learned_share: f64,
    pub steps_saved: f64,
    pub flops_saved: f64,
    /// The threshold at the end of the epoch.
    pub threshold: f32,
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
