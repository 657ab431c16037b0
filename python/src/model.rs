//! A network in training, dense or with convolutions: the library's `Run` or `ConvRun`, with
//! the calls the Python `Network` makes.

use crate::data::Dataset;
use crate::errors::{lib, to_py};
use crate::training::{Callbacks, Forward, run_interruptibly};
use eqprop::config::{ConfigError, Hyperparams, PRESETS};
use eqprop::conv::{ConvConfig, ConvDream, checkpoint::is_conv_checkpoint};
use eqprop::data::DatasetName;
use eqprop::device::Device;
use eqprop::dream::{DreamOptions, DreamStart};
use eqprop::learning_rule::Generative;
use eqprop::run::{ConvRun, Report, Run, RunFiles};
use eqprop::tensor::Matrix;
use eqprop::train::Settled;
use numpy::{PyArray1, PyArray2, PyArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// The run under a `Model`: dense layers, or an architecture with convolutions.
enum Net {
    Dense(Run),
    Conv(ConvRun),
}

/// A network, its settings and its training progress (`eqprop.Network` wraps it).
#[pyclass(module = "eqprop._eqprop")]
pub struct Model {
    net: Net,
}

/// The settings of a named preset as JSON: dense presets (`best`, `paper`, ...) are
/// `Hyperparams`, the `conv-*` ones `ConvConfig`, with the architecture `arch` when given
/// (conv presets only; `ConvConfig::set_arch`).
#[pyfunction]
#[pyo3(signature = (name, arch=None))]
pub fn preset_config(name: &str, arch: Option<&str>) -> PyResult<String> {
    let json = match name.starts_with("conv-") {
        true => {
            let mut cfg = lib(ConvConfig::preset(name))?;
            if let Some(spec) = arch {
                let arch = spec.parse().map_err(|e| invalid(format!("arch: {e}")))?;
                cfg.set_arch(arch);
            }
            serde_json::to_string(&cfg)
        }
        false if arch.is_some() => {
            return Err(invalid(format!(
                "arch: preset {name:?} is dense; use layers=..."
            )));
        }
        false => serde_json::to_string(&lib(Hyperparams::preset(name))?),
    };
    Ok(json.expect("settings serialise"))
}

/// Every preset's name, dense then convolutional.
#[pyfunction]
pub fn preset_names() -> Vec<&'static str> {
    PRESETS
        .iter()
        .chain(eqprop::config::CONV_PRESETS.iter())
        .copied()
        .collect()
}

fn invalid(text: String) -> PyErr {
    PyValueError::new_err(text)
}

impl Model {
    fn net(&self) -> &Net {
        &self.net
    }

    fn net_mut(&mut self) -> &mut Net {
        &mut self.net
    }

    /// Fails unless `data` fits the network (input size, labels within the outputs).
    fn check(&self, data: &Dataset) -> PyResult<()> {
        let data = &data.inner;
        let checked = match self.net() {
            Net::Dense(run) => run.hyperparams().check_data(data),
            Net::Conv(run) => run.config().check_data(data),
        };
        checked.map_err(|e| to_py(e.into()))
    }

    fn outputs(&self) -> usize {
        match self.net() {
            Net::Dense(run) => *run.hyperparams().layers.last().expect("layers"),
            Net::Conv(run) => *run.config().arch.sizes().last().expect("layers"),
        }
    }
}

/// `generative=True` trains for dreaming with the library's settings (those of `eqprop train
/// --generative`), and a dict changes only the settings it names; `False` or `None` is none.
fn fill_generative(settings: &mut serde_json::Value) -> PyResult<()> {
    use serde_json::Value;
    let Some(given) = settings.get_mut("generative") else {
        return Ok(());
    };
    let mut full = serde_json::to_value(Generative::default()).expect("settings serialise");
    match given {
        Value::Null | Value::Bool(false) => {
            *given = Value::Null;
            return Ok(());
        }
        Value::Bool(true) => {}
        Value::Object(keys) => {
            for (key, v) in keys.iter() {
                match full.get_mut(key) {
                    Some(slot) => *slot = v.clone(),
                    None => {
                        let known: Vec<&String> =
                            full.as_object().expect("a struct").keys().collect();
                        return Err(invalid(format!(
                            "generative: unknown setting {key:?}; the settings are {known:?}"
                        )));
                    }
                }
            }
        }
        other => {
            return Err(invalid(format!(
                "generative: expected True, False, None or a dict of settings, got {other}"
            )));
        }
    }
    *given = full;
    Ok(())
}

#[pymethods]
impl Model {
    /// A fresh network from settings as JSON (`Hyperparams`, or `ConvConfig` when they hold an
    /// `arch`), to train on `dataset` (the name its checkpoint records).
    #[new]
    #[pyo3(signature = (config, dataset="mnist"))]
    fn new(config: &str, dataset: &str) -> PyResult<Self> {
        let dataset: DatasetName = lib(dataset.parse())?;
        let mut value: serde_json::Value =
            serde_json::from_str(config).map_err(|e| invalid(format!("settings: {e}")))?;
        fill_generative(&mut value)?;
        let net = match value.get("arch") {
            Some(_) => {
                let cfg: ConvConfig =
                    serde_json::from_value(value).map_err(|e| invalid(format!("settings: {e}")))?;
                Net::Conv(lib(ConvRun::new(cfg, dataset))?)
            }
            None => {
                let hp: Hyperparams =
                    serde_json::from_value(value).map_err(|e| invalid(format!("settings: {e}")))?;
                Net::Dense(lib(Run::new(hp, dataset, Device::Cpu))?)
            }
        };
        Ok(Self { net })
    }

    /// The network saved in the checkpoint `path` (by `eqprop train` or `save`), to continue
    /// up to `epochs` in all (its own count when `None`).
    #[staticmethod]
    #[pyo3(signature = (path, epochs=None))]
    fn load(py: Python<'_>, path: PathBuf, epochs: Option<usize>) -> PyResult<Self> {
        let net = py.detach(|| open_checkpoint(&path, epochs));
        Ok(Self { net: lib(net)? })
    }

    /// The settings as JSON.
    #[getter]
    fn config(&self) -> String {
        let json = match self.net() {
            Net::Dense(run) => serde_json::to_string(run.hyperparams()),
            Net::Conv(run) => serde_json::to_string(run.config()),
        };
        json.expect("settings serialise")
    }

    /// `dense` or `conv`.
    #[getter]
    fn kind(&self) -> &'static str {
        match self.net() {
            Net::Dense(_) => "dense",
            Net::Conv(_) => "conv",
        }
    }

    /// The data set name the checkpoint records.
    #[getter]
    fn dataset(&self) -> &'static str {
        match self.net() {
            Net::Dense(run) => run.dataset().as_str(),
            Net::Conv(run) => run.dataset().as_str(),
        }
    }

    /// Epochs completed.
    #[getter]
    fn epochs_done(&self) -> usize {
        match self.net() {
            Net::Dense(run) => run.trainer().progress().epoch,
            Net::Conv(run) => run.trainer().epoch(),
        }
    }

    /// Trains the remaining epochs on `train`, each evaluated on `test`; with `run_dir`, the
    /// checkpoint and `metrics.jsonl` are written there after every epoch (and at a stop), as
    /// `eqprop train --out` does. Returns the epoch records (JSON) and whether it stopped early.
    /// Ctrl-C stops after the running mini-batch, saves, and raises `KeyboardInterrupt`.
    #[pyo3(signature = (train, test, run_dir=None, replace=false, on_batch=None, on_epoch=None))]
    #[allow(clippy::too_many_arguments)]
    fn fit(
        &mut self,
        py: Python<'_>,
        train: &Dataset,
        test: &Dataset,
        run_dir: Option<PathBuf>,
        replace: bool,
        on_batch: Option<Py<PyAny>>,
        on_epoch: Option<Py<PyAny>>,
    ) -> PyResult<(Vec<String>, bool)> {
        if let Some(dir) = run_dir {
            self.save_in(&dir, replace)?;
        }
        let callbacks = Callbacks::new(on_batch, on_epoch);
        let stop = AtomicBool::new(false);
        let (train, test) = (&train.inner, &test.inner);
        let net = self.net_mut();
        let (report, signal) = run_interruptibly(py, &stop, || {
            let mut forward = Forward::new(&callbacks, &stop);
            match net {
                Net::Dense(run) => run.train(train, test, &stop, &mut forward),
                Net::Conv(run) => run.train(train, test, &stop, &mut forward),
            }
        })?;
        let report: Report = lib(report)?;
        if let Some(e) = signal.or_else(|| callbacks.error.lock().expect("not poisoned").take()) {
            return Err(e);
        }
        let records = report.epochs.iter().map(serde_json::to_string);
        let records = records
            .collect::<Result<_, _>>()
            .expect("records serialise");
        Ok((records, report.interrupted))
    }

    /// Trains up to `epochs` in all from now on (a cosine schedule decays over the new count).
    fn set_epochs(&mut self, epochs: usize) -> PyResult<()> {
        lib(match self.net_mut() {
            Net::Dense(run) => run.set_epochs(epochs),
            Net::Conv(run) => run.set_epochs(epochs),
        })
    }

    /// Test error (%) and mean free energy on `data`.
    fn evaluate(&mut self, py: Python<'_>, data: &Dataset) -> PyResult<(f64, f64)> {
        self.check(data)?;
        let data = &data.inner;
        let net = self.net_mut();
        let eval = py.detach(|| match net {
            Net::Dense(run) => run.evaluate(data),
            Net::Conv(run) => Ok(eqprop::conv::evaluate(
                run.trainer().network(),
                run.config(),
                data,
            )),
        });
        let eval = lib(eval)?;
        Ok((eval.error, eval.mean_energy))
    }

    /// The output layer at the free fixed point of every image, `(n, classes)`.
    fn predict<'py>(&self, py: Python<'py>, data: &Dataset) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let (inputs, data) = (self.inputs(), &data.inner);
        if data.pixels() != inputs {
            let pixels = data.pixels();
            return Err(to_py(ConfigError::InputSize { inputs, pixels }.into()));
        }
        let outputs = py.detach(|| match self.net() {
            Net::Dense(run) => {
                eqprop::train::free_outputs(run.trainer().network(), run.hyperparams(), data)
            }
            Net::Conv(run) => {
                eqprop::conv::train::free_outputs(run.trainer().network(), run.config(), data)
            }
        });
        matrix_to_numpy(py, outputs)
    }

    /// Relaxes every image as training does: the free phase, then with `beta != 0` the phase
    /// nudged toward its label. Each layer's state `(n, units)` and the energy of each image.
    #[allow(clippy::type_complexity)]
    fn settle<'py>(
        &self,
        py: Python<'py>,
        data: &Dataset,
        beta: f32,
    ) -> PyResult<(Vec<Bound<'py, PyArray2<f32>>>, Bound<'py, PyArray1<f32>>)> {
        self.check(data)?;
        if !beta.is_finite() {
            return Err(invalid(format!("beta: {beta} is not a finite number")));
        }
        let data = &data.inner;
        let Settled { layers, energy } = py.detach(|| match self.net() {
            Net::Dense(run) => {
                eqprop::train::settle(run.trainer().network(), run.hyperparams(), data, beta)
            }
            Net::Conv(run) => {
                eqprop::conv::train::settle(run.trainer().network(), run.config(), data, beta)
            }
        });
        let layers = layers.into_iter().map(|m| matrix_to_numpy(py, m));
        Ok((
            layers.collect::<PyResult<_>>()?,
            PyArray1::from_vec(py, energy),
        ))
    }

    /// Dreams: each label clamped on the output, the input relaxed freely (`eqprop dream`,
    /// with its defaults for what is not given). A network with convolutions refuses a
    /// temperature, as the CLI refuses the flag.
    #[pyo3(signature = (labels, steps=None, temperature=None, silenced=None, seed=None, start=None))]
    #[allow(clippy::too_many_arguments)]
    fn dream<'py>(
        &self,
        py: Python<'py>,
        labels: Vec<usize>,
        steps: Option<usize>,
        temperature: Option<f32>,
        silenced: Option<f32>,
        seed: Option<u64>,
        start: Option<&str>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let outputs = self.outputs();
        if let Some(&l) = labels.iter().find(|&&l| l >= outputs) {
            return Err(invalid(format!(
                "labels: {l} is not an output of this network (0..{outputs})"
            )));
        }
        let steps = steps.unwrap_or(eqprop::dream::DREAM_STEPS);
        // Whether the dreams start from noise (true) or zero; none: the network's default.
        let noise = match start {
            None => None,
            Some("noise") => Some(true),
            Some("zeros") => Some(false),
            Some(other) => return Err(invalid(format!("start: {other:?} (noise, zeros)"))),
        };
        let images = match self.net() {
            Net::Dense(run) => {
                let defaults = DreamOptions::dreaming(run.hyperparams());
                let options = DreamOptions {
                    steps,
                    temperature: temperature.unwrap_or(defaults.temperature),
                    silenced: silenced.unwrap_or(defaults.silenced),
                    seed: seed.unwrap_or(defaults.seed),
                    start: match noise {
                        None => defaults.start.clone(),
                        Some(true) => DreamStart::Noise,
                        Some(false) => DreamStart::Zeros,
                    },
                    ..defaults
                };
                lib(options.validate())?;
                let net = run.trainer().network();
                py.detach(|| eqprop::dream::dream(net, &labels, &options).images)
            }
            Net::Conv(run) => {
                if temperature.is_some() {
                    return Err(invalid(
                        "temperature is not supported yet for networks with convolutions \
                         (their dreams take exact alternating sweeps)"
                            .into(),
                    ));
                }
                let (net, cfg) = (run.trainer().network(), run.config());
                let defaults = ConvDream::for_config(cfg);
                let options = ConvDream {
                    steps,
                    noise: noise.unwrap_or(defaults.noise),
                    seed: seed.unwrap_or(defaults.seed),
                    silenced: silenced.unwrap_or(defaults.silenced),
                    ..defaults
                };
                lib(options.validate())?;
                py.detach(|| cfg.input_pixels(eqprop::conv::dream(net, &labels, &options)))
            }
        };
        matrix_to_numpy(py, images)
    }

    /// Writes the checkpoint (atomically) to `path`, in the CLI's format.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let saved = py.detach(|| match self.net() {
            Net::Dense(run) => run.save_checkpoint(&path),
            Net::Conv(run) => run.save_checkpoint(&path),
        });
        lib(saved)
    }

    /// Each coupling's weights and biases, copied: `[(W_1, b_1), ...]`.
    #[allow(clippy::type_complexity)]
    fn parameters<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Vec<(Bound<'py, PyArray2<f32>>, Bound<'py, PyArray1<f32>>)>> {
        // `biases()[k]` is layer k's (the input's first): coupling k pairs `W_k` with `b_k`.
        let (weights, biases) = match self.net() {
            Net::Dense(run) => {
                let net = run.trainer().network();
                (net.weights(), &net.biases()[1..])
            }
            Net::Conv(run) => {
                let net = run.trainer().network();
                (net.weights(), &net.biases()[1..])
            }
        };
        weights
            .iter()
            .zip(biases)
            .map(|(w, b)| Ok((matrix_to_numpy(py, w.clone())?, PyArray1::from_slice(py, b))))
            .collect()
    }
}

impl Model {
    fn inputs(&self) -> usize {
        match self.net() {
            Net::Dense(run) => run.hyperparams().layers[0],
            Net::Conv(run) => run.config().arch.sizes()[0],
        }
    }

    /// Gives the run the folder `dir` (see `Run::save_in`).
    fn save_in(&mut self, dir: &Path, replace: bool) -> PyResult<()> {
        let files = RunFiles::in_dir(dir);
        lib(match self.net_mut() {
            Net::Dense(run) => run.set_files(files, replace),
            Net::Conv(run) => run.set_files(files, replace),
        })
    }
}

/// A dense or convolutional run from its checkpoint.
fn open_checkpoint(path: &Path, epochs: Option<usize>) -> eqprop::Result<Net> {
    if is_conv_checkpoint(path) {
        return Ok(Net::Conv(ConvRun::resume(path, epochs)?));
    }
    let checkpoint = eqprop::checkpoint::load(path)?;
    let hp = Hyperparams {
        epochs: epochs.unwrap_or(checkpoint.hyperparams.epochs),
        ..checkpoint.hyperparams.clone()
    };
    Ok(Net::Dense(Run::resume(checkpoint, path, hp, Device::Cpu)?))
}

fn matrix_to_numpy(py: Python<'_>, m: Matrix) -> PyResult<Bound<'_, PyArray2<f32>>> {
    let (rows, cols) = (m.rows(), m.cols());
    PyArray1::from_vec(py, m.into_vec()).reshape([rows, cols])
}
