//! `eqprop._eqprop`: the native half of the `eqprop` Python package.
//!
//! Thin bindings: every computation is the `eqprop` crate's; this only converts numpy arrays
//! and Python values, releases the GIL while the engine works, and turns the library's errors
//! into Python exceptions with the messages the CLI prints. `eqprop/__init__.py` builds the
//! public API (`Network`, `load_dataset`, ...) on top.

mod data;
mod errors;
mod experiments;
mod model;
mod training;

use pyo3::prelude::*;

/// Starts the engine's worker threads, `threads` of them (`eqprop train --threads`); call it
/// before any work. Results never depend on the count.
#[pyfunction]
fn set_threads(threads: usize) -> PyResult<()> {
    if threads == 0 {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "threads: must be at least 1",
        ));
    }
    errors::lib(eqprop::init_threads(Some(threads)))
}

#[pymodule]
fn _eqprop(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<data::Dataset>()?;
    m.add_class::<model::Model>()?;
    m.add_function(wrap_pyfunction!(data::load_dataset, m)?)?;
    m.add_function(wrap_pyfunction!(model::preset_config, m)?)?;
    m.add_function(wrap_pyfunction!(model::preset_names, m)?)?;
    m.add_function(wrap_pyfunction!(experiments::continual, m)?)?;
    m.add_function(wrap_pyfunction!(experiments::agent, m)?)?;
    m.add_function(wrap_pyfunction!(experiments::life, m)?)?;
    m.add_function(wrap_pyfunction!(set_threads, m)?)?;
    Ok(())
}
