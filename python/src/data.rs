//! Labelled images between numpy and the engine: a float32 array is read in place (its pixels
//! are never copied), labels are checked and kept as bytes.

use crate::errors::lib;
use eqprop::data::{DataSource, DatasetName, PixelBuffer, Pixels, Split};
use numpy::{
    PyArray1, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use std::path::PathBuf;
use std::sync::Arc;

/// The values of a C-contiguous float32 numpy array, read in place. Holding the array keeps
/// its memory alive; the Python side documents that it must not be written while the engine
/// reads it (the contract of `torch.from_numpy`).
struct NumpyPixels {
    _array: Py<PyAny>,
    data: *const f32,
    len: usize,
}

// SAFETY: the pointer is into the buffer of `_array`, which this struct keeps alive; the
// values are only read, from any thread, and numpy never moves the buffer of an array that
// something still references.
unsafe impl Send for NumpyPixels {}
// SAFETY: as for `Send`: shared references only read.
unsafe impl Sync for NumpyPixels {}

impl PixelBuffer for NumpyPixels {
    fn values(&self) -> &[f32] {
        // SAFETY: `data` points at `len` initialised f32 of a C-contiguous array kept alive by
        // `_array` (see the `Send` impl).
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }
}

/// Labelled images, as the engine reads them: `images` is a float32 array of shape
/// `(n, pixels)`, `(n, rows, cols)` or `(n, rows, cols, channels)` with values in [0, 1],
/// `labels` an integer array of `n` classes in 0..=9.
#[pyclass(module = "eqprop._eqprop", frozen)]
pub struct Dataset {
    pub inner: eqprop::data::Dataset,
    images: Py<PyAny>,
    labels: Py<PyAny>,
}

#[pymethods]
impl Dataset {
    #[new]
    fn new(images: &Bound<'_, PyAny>, labels: &Bound<'_, PyAny>) -> PyResult<Self> {
        let array = float32_images(images)?;
        let shape = array.shape().to_vec();
        let (rows, cols, channels) = image_shape(&shape)?;
        let labels = label_bytes(labels, shape[0])?;
        check_unit_interval(array.readonly().as_slice()?)?;
        let py = images.py();
        let labels_array = PyArray1::from_vec(py, labels.clone()).into_any().unbind();
        Ok(Self::from_parts(
            array,
            labels,
            labels_array,
            rows,
            cols,
            channels,
        ))
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// The images: the array this set was made from (not a copy).
    #[getter]
    fn images(&self, py: Python<'_>) -> Py<PyAny> {
        self.images.clone_ref(py)
    }

    /// The labels, as uint8.
    #[getter]
    fn labels(&self, py: Python<'_>) -> Py<PyAny> {
        self.labels.clone_ref(py)
    }

    /// `(rows, cols, channels)` of one image.
    #[getter]
    fn image_shape(&self) -> (usize, usize, usize) {
        (self.inner.rows, self.inner.cols, self.inner.channels)
    }

    /// The address of the first pixel the engine reads: equal to the numpy array's own
    /// (`images.ctypes.data`) when the pixels were not copied.
    #[getter]
    fn pixel_address(&self) -> usize {
        self.inner.images.as_ptr() as usize
    }

    fn __repr__(&self) -> String {
        let d = &self.inner;
        format!(
            "Dataset({} images of {}x{}x{})",
            d.len(),
            d.rows,
            d.cols,
            d.channels
        )
    }
}

impl Dataset {
    fn from_parts(
        array: Bound<'_, PyArrayDyn<f32>>,
        labels: Vec<u8>,
        labels_array: Py<PyAny>,
        rows: usize,
        cols: usize,
        channels: usize,
    ) -> Self {
        let buffer = NumpyPixels {
            data: array.data() as *const f32,
            len: array.len(),
            _array: array.clone().into_any().unbind(),
        };
        let inner = eqprop::data::Dataset {
            images: Pixels::shared(Arc::new(buffer)),
            labels,
            rows,
            cols,
            channels,
            targets: Vec::new(),
        };
        Self {
            inner,
            images: array.into_any().unbind(),
            labels: labels_array,
        }
    }

    /// A set the engine made (loaded or dreamed): its pixels move into a numpy array, uncopied.
    pub fn from_engine(py: Python<'_>, data: eqprop::data::Dataset) -> PyResult<Self> {
        let (n, rows, cols, channels) = (data.len(), data.rows, data.cols, data.channels);
        let mut shape = vec![n, rows, cols];
        if channels > 1 {
            shape.push(channels);
        }
        let flat = PyArray1::from_vec(py, data.images.into_vec());
        let array = flat.reshape(shape)?;
        let labels_array = PyArray1::from_vec(py, data.labels.clone())
            .into_any()
            .unbind();
        Ok(Self::from_parts(
            array,
            data.labels,
            labels_array,
            rows,
            cols,
            channels,
        ))
    }
}

/// A C-contiguous float32 array of two to four dimensions, or the reason it is not one.
fn float32_images<'py>(images: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let untyped = images.cast::<PyUntypedArray>().map_err(|_| {
        PyTypeError::new_err(format!(
            "images: expected a numpy array, got {}",
            images
                .get_type()
                .name()
                .map_or("?".into(), |n| n.to_string())
        ))
    })?;
    let array = images.cast::<PyArrayDyn<f32>>().map_err(|_| {
        PyTypeError::new_err(format!(
            "images: expected dtype float32 (pixel values in [0, 1]), got {}",
            untyped.dtype()
        ))
    })?;
    if !array.is_c_contiguous() {
        return Err(PyValueError::new_err(
            "images: the array is not C-contiguous (np.ascontiguousarray makes a copy that is)",
        ));
    }
    Ok(array.clone())
}

/// `(rows, cols, channels)` from an images array's shape.
fn image_shape(shape: &[usize]) -> PyResult<(usize, usize, usize)> {
    let bad = |why: &str| PyValueError::new_err(format!("images: shape {shape:?}: {why}"));
    let dims = match shape {
        [n, ..] if *n == 0 => return Err(bad("no images")),
        [_, pixels] => (1, *pixels, 1),
        [_, rows, cols] => (*rows, *cols, 1),
        [_, rows, cols, channels] => (*rows, *cols, *channels),
        _ => {
            return Err(bad(
                "expected (n, pixels), (n, rows, cols) or (n, rows, cols, channels)",
            ));
        }
    };
    match dims.0 * dims.1 * dims.2 {
        0 => Err(bad("an image has no pixels")),
        _ => Ok(dims),
    }
}

/// Labels as bytes: an integer array of `n` values in 0..=9.
fn label_bytes(labels: &Bound<'_, PyAny>, n: usize) -> PyResult<Vec<u8>> {
    let untyped = labels
        .cast::<PyUntypedArray>()
        .map_err(|_| PyTypeError::new_err("labels: expected a numpy integer array"))?;
    let dtype = untyped.dtype();
    if !matches!(dtype.kind(), b'i' | b'u') {
        return Err(PyTypeError::new_err(format!(
            "labels: expected an integer dtype, got {dtype}"
        )));
    }
    if untyped.shape() != [n] {
        return Err(PyValueError::new_err(format!(
            "labels: shape {:?}, expected ({n},): one label per image",
            untyped.shape()
        )));
    }
    let values: Vec<i64> = labels
        .call_method1("astype", ("int64",))?
        .extract::<Vec<i64>>()?;
    values
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            u8::try_from(l).ok().filter(|&l| l <= 9).ok_or_else(|| {
                PyValueError::new_err(format!("labels: label {l} of image {i} is not in 0..=9"))
            })
        })
        .collect()
}

/// Fails on the first pixel value outside [0, 1] (NaN included), naming it.
fn check_unit_interval(values: &[f32]) -> PyResult<()> {
    match values.iter().position(|v| !(0.0..=1.0).contains(v)) {
        None => Ok(()),
        Some(i) => Err(PyValueError::new_err(format!(
            "images: value {} at flat index {i} is not in [0, 1] (pixels are byte/255)",
            values[i]
        ))),
    }
}

/// Loads a split of MNIST, Fashion-MNIST or CIFAR-10 as the CLI does: from `data_dir` (else
/// `$EQPROP_DATA_DIR`, else the user cache), downloading missing files with their checksums
/// verified; `train_limit` keeps the first N training images.
#[pyfunction]
#[pyo3(signature = (name, split, train_limit=None, data_dir=None))]
pub fn load_dataset(
    py: Python<'_>,
    name: &str,
    split: &str,
    train_limit: Option<usize>,
    data_dir: Option<PathBuf>,
) -> PyResult<Dataset> {
    let split = match split {
        "train" => Split::Train,
        "test" => Split::Test,
        other => {
            return Err(PyValueError::new_err(format!(
                "split: unknown split {other:?} (train, test)"
            )));
        }
    };
    let source = DataSource {
        root: data_dir,
        train_limit,
        ..DataSource::new(lib(name.parse::<DatasetName>())?)
    };
    let data = py.detach(|| source.load(split));
    Dataset::from_engine(py, lib(data)?)
}
