//! The library's one error type.
//!
//! Every fallible entry point of the library returns [`Result`]. Each module describes its own
//! failures with a `thiserror` enum (a bad setting is a [`ConfigError`], a missing or malformed
//! data file a [`DataError`], ...); [`Error`] holds any of them, so callers `?` them all into
//! one type and can still match on the kind.

use crate::checkpoint::{FileError, ProgressError};
use crate::config::ConfigError;
use crate::continual::ContinualError;
use crate::data::{DataError, UnknownDataset};
use crate::device::DeviceError;
use crate::dream::DreamError;
use crate::env::EnvError;
use crate::env::fixture::FixtureError;
use crate::modulator::GateError;
use crate::network::ShapeError;
use crate::picture::PictureError;
use crate::train::Stopped;
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
    Diverged(#[from] crate::run::Diverged),
    /// A resumed run that asked for settings its checkpoint was not trained with.
    #[error(transparent)]
    Resume(#[from] crate::run::ResumeError),
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
