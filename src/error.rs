//! The library's one error type.
//!
//! The kinds of the modules that return [`Result`] themselves (a training run, continual
//! learning, dreaming) are defined here and re-exported there, so that no module both uses
//! this one and is used by it.
//!
//! Every fallible entry point of the library returns [`Result`]. Each module describes its own
//! failures with a `thiserror` enum (a bad setting is a [`ConfigError`], a missing or malformed
//! data file a [`DataError`], ...); [`Error`] holds any of them, so callers `?` them all into
//! one type and can still match on the kind.

use crate::checkpoint::{FileError, ProgressError};
use crate::config::ConfigError;
use crate::data::{DataError, UnknownDataset};
use crate::device::DeviceError;
use crate::env::EnvError;
use crate::env::fixture::FixtureError;
use crate::modulator::GateError;
use crate::network::ShapeError;
use crate::picture::PictureError;
use crate::train::{Divergence, Stopped};
use std::path::PathBuf;

/// Anything that can go wrong in the library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A hyperparameter or option that cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Layer sizes that do not make a network.
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// A data set that cannot be found, downloaded or read.
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    UnknownDataset(#[from] UnknownDataset),
    /// A checkpoint or other saved file that cannot be read or written.
    #[error(transparent)]
    File(#[from] FileError),
    /// What the chosen engine (CPU or CUDA) cannot run.
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Env(#[from] EnvError),
    /// A surprise gate setting that cannot work.
    #[error(transparent)]
    Gate(#[from] GateError),
    /// Continual-learning options that cannot work together.
    #[error(transparent)]
    Continual(#[from] ContinualError),
    /// A dream request the network cannot serve.
    #[error(transparent)]
    Dream(#[from] DreamError),
    /// Training progress that no run can reach.
    #[error(transparent)]
    Progress(#[from] ProgressError),
    /// A Gymnasium fixture that cannot be replayed.
    #[error(transparent)]
    Fixture(#[from] FixtureError),
    /// A picture (PNG, GIF) that cannot be encoded or written.
    #[error(transparent)]
    Picture(#[from] PictureError),
    /// Training that stopped before its end (interrupted, or diverged).
    #[error(transparent)]
    Stopped(#[from] Stopped),
    /// Training whose numbers left the range a relaxing network can hold.
    #[error(transparent)]
    Diverged(#[from] Diverged),
    /// A resumed run that asked for settings its checkpoint was not trained with.
    #[error(transparent)]
    Resume(#[from] ResumeError),
    /// A fresh run asked to save where another run is saved (without leave to replace it).
    #[error("{} already holds a run: resume it, or replace it", .0.display())]
    RunExists(PathBuf),
    /// A file or folder that cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// An input that breaks a rule stated in the message (which names the input).
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// An I/O failure on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

#[cfg(feature = "cuda")]
impl From<crate::backend::cuda::CudaError> for Error {
    fn from(e: crate::backend::cuda::CudaError) -> Self {
        Error::Device(e.into())
    }
}

/// `std::result::Result` with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Training that diverged, and what is left of it.
#[derive(Debug, thiserror::Error)]
#[error("{divergence}; {}", kept_text(.kept))]
pub struct Diverged {
    pub divergence: Divergence,
    /// The checkpoint of the last completed epoch and that epoch, if one was written.
    pub kept: Option<(PathBuf, usize)>,
}

fn kept_text(kept: &Option<(PathBuf, usize)>) -> String {
    match kept {
        Some((path, epoch)) => format!(
            "the last good checkpoint, {} (after epoch {epoch}), is kept",
            path.display()
        ),
        None => "no checkpoint was written".to_string(),
    }
}

/// A resumed run asked for a setting its checkpoint was not trained with.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// A hyperparameter (a dotted path, e.g. `generative.beta`) differs; both values as JSON.
    #[error("{field} = {asked} was asked for, but {} was trained with {field} = {saved}", path.display())]
    Differs {
        path: PathBuf,
        field: String,
        saved: String,
        asked: String,
    },
    /// Fewer epochs than the checkpoint has already trained.
    #[error("{} has already trained {done} epochs, more than {asked}", path.display())]
    EpochsDone {
        path: PathBuf,
        done: usize,
        asked: usize,
    },
}

/// Continual options that cannot work together, or with the network.
#[derive(Debug, thiserror::Error)]
pub enum ContinualError {
    #[error("the number of tasks to learn must be in 1..={tasks}, got {stages}")]
    Stages { tasks: usize, stages: usize },
    #[error("the epochs per task must be at least 1")]
    NoEpochs,
    /// A replay (named as the options' `Debug` shows it) that replays nothing.
    #[error("{0} replay needs at least 1 replayed example per class")]
    NothingReplayed(String),
    #[error("the {scenario} scenario needs {needed} output units, the network has {outputs}")]
    TooFewOutputs {
        /// The scenario, as the options' `Debug` shows it.
        scenario: String,
        needed: usize,
        outputs: usize,
    },
    #[error(
        "dreams from the latent prior are kept dreams: each task's classes are dreamt right \
         after it is learned, while its codes are fresh"
    )]
    PriorNeedsKeptDreams,
    #[error("the share of noisy pixels must be in [0, 1], got {0}")]
    PixelNoise(f32),
    #[error("the dimming factor must be in (0, 1], got {0}")]
    Dimming(f32),
    /// More replayed examples than a batch may hold (the message names the CLI's flag).
    #[error("--replay-per-class {replay_per_class}: {source}")]
    TooManyReplayed {
        replay_per_class: usize,
        source: ConfigError,
    },
    #[error("a task has {examples} examples, fewer than one mini-batch of {batch_size}")]
    TooFewExamples { examples: usize, batch_size: usize },
}

/// A dream request that the network or the judge cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum DreamError {
    #[error("the input layer ({pixels} units) is not a square image")]
    NotSquare { pixels: usize },
    /// The judge at `path` reads images of another size than the dreams.
    #[error("{} reads {judge} pixels, the dreams have {dreams}", path.display())]
    JudgePixels {
        path: PathBuf,
        judge: usize,
        dreams: usize,
    },
}
