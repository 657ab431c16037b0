//! The library's errors as Python exceptions: bad input (a setting, a shape, a label, a file's
//! contents) is a `ValueError`; a missing file `FileNotFoundError`; an unreadable file or a
//! failed download an `OSError`; each with the message the
//! CLI prints for the same error.

use eqprop::checkpoint::FileError;
use eqprop::data::DataError;
use pyo3::PyErr;
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyRuntimeError, PyValueError};

/// A library error as the exception a Python user expects.
pub fn to_py(error: eqprop::Error) -> PyErr {
    let text = error.to_string();
    use eqprop::Error::{Data, Diverged, File, Io};
    match error {
        Data(DataError::NotFound { .. }) => PyFileNotFoundError::new_err(text),
        Io { .. }
        | File(FileError::Io { .. })
        | Data(
            DataError::Io { .. }
            | DataError::HttpStatus { .. }
            | DataError::Http { .. }
            | DataError::Unavailable { .. },
        ) => PyOSError::new_err(text),
        Diverged(_) => PyRuntimeError::new_err(text),
        _ => PyValueError::new_err(text),
    }
}

/// `to_py` for anything that converts into the library's error.
pub fn lib<T, E: Into<eqprop::Error>>(result: Result<T, E>) -> pyo3::PyResult<T> {
    result.map_err(|e| to_py(e.into()))
}
