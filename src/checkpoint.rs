//! Checkpoints: the network in safetensors, with the architecture, hyperparameters and progress
//! of the run in its metadata, written atomically (temporary file, fsync, rename).

use crate::config::Hyperparams;
use crate::network::Network;
use crate::tensor::Matrix;
use crate::train::Progress;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

const FORMAT: &str = "eqprop-checkpoint-v1";

/// A safetensors file of this crate (a checkpoint, a judge) that cannot be written or read,
/// naming the file.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a safetensors file ({reason})")]
    Format { path: PathBuf, reason: String },
    /// A safetensors file, but not the `what` (e.g. `"checkpoint"`) it should be.
    #[error("{path}: not an eqprop {what}: {reason}")]
    Content {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
}

/// A checkpoint that cannot be written or read.
pub type CheckpointError = FileError;

/// Everything needed to evaluate a network or resume its training.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub hyperparams: Hyperparams,
    pub network: Network,
    pub progress: Progress,
    /// Persistent particles (one matrix per layer, training examples as rows), if the run has them.
    pub persistent: Option<Vec<Matrix>>,
    /// The persistent chains of generative training (one matrix per layer), if the run has them.
    pub dream_chains: Option<Vec<Matrix>>,
    /// Name of the data set it was trained on.
    pub dataset: String,
}

/// Borrowed parts of a checkpoint to write.
pub struct CheckpointRef<'a> {
    pub hyperparams: &'a Hyperparams,
    pub network: &'a Network,
    pub progress: &'a Progress,
    pub persistent: Option<&'a [Matrix]>,
    pub dream_chains: Option<&'a [Matrix]>,
    pub dataset: &'a str,
}

/// Writes a checkpoint atomically: readers see the old file or the new one, never a torn one.
pub fn save(path: &Path, ckpt: &CheckpointRef) -> Result<(), CheckpointError> {
    let mut tensors: Vec<(String, Vec<usize>, &[f32])> = Vec::new();
    for (k, w) in ckpt.network.weights().iter().enumerate() {
        tensors.push((
            format!("W{}", k + 1),
            vec![w.rows(), w.cols()],
            w.as_slice(),
        ));
    }
    for (k, b) in ckpt.network.biases().iter().enumerate() {
        tensors.push((format!("b{k}"), vec![b.len()], b));
    }
    for (k, m) in ckpt.persistent.unwrap_or(&[]).iter().enumerate().skip(1) {
        tensors.push((
            format!("persistent{k}"),
            vec![m.rows(), m.cols()],
            m.as_slice(),
        ));
    }
    for (k, m) in ckpt.dream_chains.unwrap_or(&[]).iter().enumerate() {
        tensors.push((
            format!("dream_chain{k}"),
            vec![m.rows(), m.cols()],
            m.as_slice(),
        ));
    }
    let json = |v: serde_json::Result<String>| v.expect("plain structs serialise");
    let metadata = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        (
            "layers".to_string(),
            json(serde_json::to_string(&ckpt.hyperparams.layers)),
        ),
        (
            "hyperparams".to_string(),
            json(serde_json::to_string(ckpt.hyperparams)),
        ),
        (
            "progress".to_string(),
            json(serde_json::to_string(ckpt.progress)),
        ),
        ("dataset".to_string(), ckpt.dataset.to_string()),
    ]);
    write_tensors(path, &tensors, metadata)
}

/// Writes f32 tensors `(name, shape, values)` (row-major, little-endian) and `metadata` as a
/// safetensors file, atomically (see [`write_atomically`]). Shared by every safetensors file of
/// this crate (checkpoints, judges).
pub(crate) fn write_tensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, &[f32])],
    metadata: HashMap<String, String>,
) -> Result<(), FileError> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, values)| values.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views = tensors.iter().zip(&bytes).map(|((name, shape, _), data)| {
        let view = TensorView::new(Dtype::F32, shape.clone(), data).expect("sized");
        (name.clone(), view)
    });
    let serialized =
        safetensors::serialize(views, Some(metadata)).map_err(|e| FileError::Format {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    write_atomically(path, &sorted_header(serialized)).map_err(|source| FileError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The same safetensors file with its header's keys in sorted order, so that a checkpoint's
/// bytes depend only on its contents: safetensors writes the metadata from a `HashMap`, whose
/// order changes from process to process. The data section and the offsets into it are kept;
/// the header is padded with spaces to a multiple of 8 bytes, as safetensors pads it.
fn sorted_header(bytes: Vec<u8>) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header: serde_json::Value =
        serde_json::from_slice(&bytes[8..8 + n]).expect("safetensors writes a JSON header");
    // serde_json's maps are ordered by key (its `preserve_order` feature is off).
    let mut text = serde_json::to_string(&header).expect("JSON values serialise");
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - 8 - n);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

/// The bytes of the file `path`; failing, a [`FileError::Io`] naming it.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, FileError> {
    std::fs::read(path).map_err(|source| FileError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// A safetensors file of this crate, parsed: its tensors and metadata, with its path and what
/// it should hold (`"checkpoint"`, `"judge"`) for the errors, which name both. Reading a tensor
/// checks it (see [`finite_f32`]).
pub(crate) struct TensorFile<'a> {
    path: &'a Path,
    what: &'static str,
    tensors: SafeTensors<'a>,
    metadata: HashMap<String, String>,
}

impl<'a> TensorFile<'a> {
    /// Parses the content `bytes` of `path`; bytes that are not safetensors are a
    /// [`FileError::Format`].
    pub(crate) fn parse(
        bytes: &'a [u8],
        path: &'a Path,
        what: &'static str,
    ) -> Result<Self, FileError> {
        let format = |e: safetensors::SafeTensorError| FileError::Format {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(format)?;
        let tensors = SafeTensors::deserialize(bytes).map_err(format)?;
        Ok(Self {
            path,
            what,
            tensors,
            metadata: meta.metadata().clone().unwrap_or_default(),
        })
    }

    /// A [`FileError::Content`] of this file: safetensors, but not what it should be.
    pub(crate) fn content(&self, reason: String) -> FileError {
        FileError::Content {
            path: self.path.to_path_buf(),
            what: self.what,
            reason,
        }
    }

    /// The metadata entry `key`, if there is one.
    pub(crate) fn metadata(&self, key: &str) -> Option<&String> {
        self.metadata.get(key)
    }

    /// The metadata entry `key`; its absence is a content error naming it.
    pub(crate) fn field(&self, key: &str) -> Result<&String, FileError> {
        self.metadata(key)
            .ok_or_else(|| self.content(format!("metadata has no '{key}'")))
    }

    /// Fails unless the metadata's `format` is `expected`.
    pub(crate) fn expect_format(&self, expected: &str) -> Result<(), FileError> {
        match self.field("format")? {
            f if f == expected => Ok(()),
            f => Err(self.content(format!("format is '{f}', expected '{expected}'"))),
        }
    }

    /// Whether some tensor's name starts with `prefix`.
    pub(crate) fn has_tensors(&self, prefix: &str) -> bool {
        self.tensors.names().iter().any(|n| n.starts_with(prefix))
    }

    /// Tensor `name` as a checked `rows x cols` matrix (`None`: any size).
    pub(crate) fn matrix(
        &self,
        name: &str,
        rows: Option<usize>,
        cols: Option<usize>,
    ) -> Result<Matrix, FileError> {
        let (shape, values) =
            finite_f32(&self.tensors, name, &[rows, cols]).map_err(|e| self.content(e))?;
        Matrix::from_vec(shape[0], shape[1], values)
            .ok_or_else(|| self.content(format!("tensor {name} has a bad size")))
    }

    /// Tensor `name` as a checked vector of exactly `len` values.
    pub(crate) fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>, FileError> {
        let (_, values) =
            finite_f32(&self.tensors, name, &[Some(len)]).map_err(|e| self.content(e))?;
        Ok(values)
    }
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, then renames it over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Reads and checks a checkpoint: see [`load_bytes`].
pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
    load_bytes(&read_file(path)?, path)
}

/// Parses and checks the content `bytes` of a checkpoint file; `path` only names it in errors.
///
/// Refused, naming the tensor or field: a tensor that is not F32, has another shape than the
/// layers call for (a coupling `W{k}` exactly `[layers[k-1], layers[k]]`, a bias `b{k}` exactly
/// `[layers[k]]`, persistent states `[examples, layers[k]]` with one example count for all
/// layers, dream chains `[batch_size, layers[k]]`) or holds a NaN or infinite value; progress
/// that no run can reach (see [`check_progress`]).
pub fn load_bytes(bytes: &[u8], path: &Path) -> Result<Checkpoint, CheckpointError> {
    let file = TensorFile::parse(bytes, path, "checkpoint")?;
    let content = |reason: String| file.content(reason);
    let field = |key: &str| file.field(key);
    file.expect_format(FORMAT)?;
    let hyperparams: Hyperparams = serde_json::from_str(field("hyperparams")?)
        .map_err(|e| content(format!("hyperparams: {e}")))?;
    hyperparams
        .validate()
        .map_err(|e| content(format!("hyperparams: {e}")))?;
    let progress: Progress =
        serde_json::from_str(field("progress")?).map_err(|e| content(format!("progress: {e}")))?;
    let layers = &hyperparams.layers;
    let matrix =
        |name: String, rows: Option<usize>, cols: usize| file.matrix(&name, rows, Some(cols));
    let weights = (1..layers.len())
        .map(|k| matrix(format!("W{k}"), Some(layers[k - 1]), layers[k]))
        .collect::<Result<Vec<_>, _>>()?;
    let biases = (0..layers.len())
        .map(|k| file.vector(&format!("b{k}"), layers[k]))
        .collect::<Result<_, _>>()?;
    let network =
        Network::from_parts(layers.clone(), weights, biases).map_err(|e| content(e.to_string()))?;
    let persistent = if file.has_tensors("persistent") {
        let mut mats = vec![Matrix::zeros(0, layers[0])];
        for (k, &units) in layers.iter().enumerate().skip(1) {
            // Every layer holds the states of the same examples: the first one sets the count.
            let rows = mats.get(1).map(Matrix::rows);
            mats.push(matrix(format!("persistent{k}"), rows, units)?);
        }
        Some(mats)
    } else {
        None
    };
    let dream_chains = if file.has_tensors("dream_chain") {
        Some(
            (0..layers.len())
                .map(|k| {
                    let rows = Some(hyperparams.batch_size);
                    matrix(format!("dream_chain{k}"), rows, layers[k])
                })
                .collect::<Result<Vec<_>, _>>()?,
        )
    } else {
        None
    };
    let examples = persistent.as_ref().map(|p| p[p.len() - 1].rows());
    check_progress(&progress, &hyperparams, examples)
        .map_err(|e| content(format!("progress: {e}")))?;
    let dataset = field("dataset")?.clone();
    Ok(Checkpoint {
        hyperparams,
        network,
        progress,
        persistent,
        dream_chains,
        dataset,
    })
}

/// Progress that no run of the checkpoint's hyperparameters can reach.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ProgressError {
    #[error("epoch {epoch} batch {batch} is beyond the run's {epochs} epochs")]
    BeyondRun {
        epoch: usize,
        batch: usize,
        epochs: usize,
    },
    #[error("batch {batch} is beyond the epoch ({examples} examples in batches of {batch_size})")]
    BeyondEpoch {
        batch: usize,
        examples: usize,
        batch_size: usize,
    },
    #[error("{seen} examples seen in {batch} batches of {batch_size}")]
    TooManySeen {
        seen: u64,
        batch: usize,
        batch_size: usize,
    },
    #[error("{correct} correct and {learned} learned of {seen} seen")]
    TooManyCounted {
        correct: u64,
        learned: u64,
        seen: u64,
    },
    #[error(
        "energy sum {energy_sum}, seconds {seconds} and threshold {threshold:?} must be finite \
         (seconds not negative)"
    )]
    NotFinite {
        energy_sum: f64,
        seconds: f64,
        threshold: Option<f32>,
    },
}

/// Checks that `progress` is one a run of `hp` can reach: at most `hp.epochs` epochs and no
/// batch after the last one, no more examples seen than the finished mini-batches hold (and, with
/// `examples` training examples, no more mini-batches than an epoch has), no more correct or
/// learned than seen, finite sums and times and threshold.
pub fn check_progress(
    progress: &Progress,
    hp: &Hyperparams,
    examples: Option<usize>,
) -> Result<(), ProgressError> {
    let p = progress;
    if p.epoch > hp.epochs || (p.epoch == hp.epochs && p.batch > 0) {
        return Err(ProgressError::BeyondRun {
            epoch: p.epoch,
            batch: p.batch,
            epochs: hp.epochs,
        });
    }
    let batched = (p.batch as u64).checked_mul(hp.batch_size as u64);
    if let Some(n) = examples.filter(|&n| batched.is_none_or(|b| b > n as u64)) {
        return Err(ProgressError::BeyondEpoch {
            batch: p.batch,
            examples: n,
            batch_size: hp.batch_size,
        });
    }
    if batched.is_none_or(|b| p.seen > b) {
        return Err(ProgressError::TooManySeen {
            seen: p.seen,
            batch: p.batch,
            batch_size: hp.batch_size,
        });
    }
    if p.correct > p.seen || p.learned > p.seen {
        return Err(ProgressError::TooManyCounted {
            correct: p.correct,
            learned: p.learned,
            seen: p.seen,
        });
    }
    let finite = p.energy_sum.is_finite()
        && p.seconds.is_finite()
        && p.seconds >= 0.0
        && p.threshold.is_none_or(f32::is_finite);
    if !finite {
        return Err(ProgressError::NotFinite {
            energy_sum: p.energy_sum,
            seconds: p.seconds,
            threshold: p.threshold,
        });
    }
    Ok(())
}

/// Tensor `name` of `tensors` as f32 values, checked: it must exist, be F32, have exactly the
/// shape `shape` (a `None` dimension may have any size) and hold only finite values. Returns its
/// shape and values; the error names the tensor and says what is wrong. Shared by every
/// safetensors file of this crate (checkpoints, judges).
fn finite_f32(
    tensors: &SafeTensors,
    name: &str,
    shape: &[Option<usize>],
) -> Result<(Vec<usize>, Vec<f32>), String> {
    let view = tensors.tensor(name).map_err(|e| match e {
        safetensors::SafeTensorError::TensorNotFound(_) => format!("tensor {name} is missing"),
        e => format!("tensor {name}: {e}"),
    })?;
    if view.dtype() != Dtype::F32 {
        return Err(format!("tensor {name} is {:?}, expected F32", view.dtype()));
    }
    let got = view.shape();
    let fits = got.len() == shape.len()
        && got
            .iter()
            .zip(shape)
            .all(|(&g, want)| want.is_none_or(|w| w == g));
    if !fits {
        let wanted: Vec<String> = shape
            .iter()
            .map(|d| d.map_or("any".to_string(), |d| d.to_string()))
            .collect();
        return Err(format!(
            "tensor {name} has shape {got:?}, expected [{}]",
            wanted.join(", ")
        ));
    }
    let values: Vec<f32> = view
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        let at = match got {
            [_, cols] => format!("[{}, {}]", i / cols, i % cols),
            _ => format!("[{i}]"),
        };
        return Err(format!(
            "tensor {name} holds a non-finite value ({}) at {at}",
            values[i]
        ));
    }
    Ok((got.to_vec(), values))
}
