//! Checkpoints of networks of any architecture: safetensors with the weights `W1..WL`, the
//! biases `b0..bL`, with momentum the update's velocity (`momentum.W1..`, `momentum.b0..`),
//! with Adam its moments (`adam.m.W1..`, `adam.v.W1..`, ...; its step count `adam_steps` in the
//! metadata),
//! with persistent particles every training example's free state (`persistent.s1..sL`, one row
//! per example), with generative training's persistent chains their states (`dreaming.s0..sL`,
//! one row per sample of a mini-batch), and in the metadata the format, the architecture spec, the run's config (JSON), the epochs
//! completed, the data set and, with a surprise gate, its threshold (`gate_threshold`).

use super::architecture::Architecture;
use super::net::{ConvNet, Gradient};
use super::optimizer::Adam;
use super::train::{ConvConfig, ConvTrainer};
use crate::checkpoint::{FileError, TensorFile, read_file, write_tensors};
use crate::tensor::Matrix;
use std::collections::HashMap;
use std::path::Path;

/// The `format` metadata value of these checkpoints.
pub const FORMAT: &str = "eqprop-arch-v1";

/// What a checkpoint holds.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvCheckpoint {
    pub config: ConvConfig,
    pub network: ConvNet,
    /// Epochs completed.
    pub epoch: usize,
    pub dataset: String,
    /// The momentum's velocity at the end of the last epoch (none without momentum, or in a
    /// checkpoint written before it was saved: the run then restarts it from zero).
    pub velocity: Option<Gradient>,
    /// Adam's moments at the end of the last epoch (none with SGD).
    pub adam: Option<Adam>,
    /// The persistent particles, `particles[k - 1]` for layer `k` (none without persistence or
    /// before the first epoch).
    pub particles: Option<Vec<Matrix>>,
    /// The surprise gate's threshold at the end of the last epoch (none without a gate).
    pub threshold: Option<f32>,
    /// Generative training's persistent chains, `chains[k]` for layer `k` (none without them).
    pub chains: Option<Vec<Matrix>>,
}

/// Writes the trainer's checkpoint atomically.
pub fn save(path: &Path, trainer: &ConvTrainer, dataset: &str) -> Result<(), FileError> {
    let (config, net) = (trainer.config(), trainer.network());
    let (velocity, particles) = (trainer.velocity(), trainer.particles());
    let mut tensors: Vec<(String, Vec<usize>, &[f32])> = Vec::new();
    push_params(&mut tensors, "", net.weights(), net.biases());
    if let Some(v) = velocity {
        push_params(&mut tensors, "momentum.", &v.weights, &v.biases);
    }
    if let Some(a) = trainer.adam() {
        push_params(&mut tensors, "adam.m.", &a.first.weights, &a.first.biases);
        push_params(&mut tensors, "adam.v.", &a.second.weights, &a.second.biases);
    }
    push_states(
        &mut tensors,
        "persistent.s",
        1,
        particles.unwrap_or_default(),
    );
    push_states(
        &mut tensors,
        "dreaming.s",
        0,
        trainer.chains().unwrap_or_default(),
    );
    let mut metadata = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("architecture".to_string(), net.architecture().to_string()),
        (
            "config".to_string(),
            serde_json::to_string(config).expect("plain structs serialise"),
        ),
        ("epoch".to_string(), trainer.epoch().to_string()),
        ("dataset".to_string(), dataset.to_string()),
    ]);
    if let Some(a) = trainer.adam() {
        metadata.insert("adam_steps".to_string(), a.steps.to_string());
    }
    if let Some(theta) = trainer.threshold() {
        // Rust's shortest round-trip form: the value reads back bit for bit.
        metadata.insert("gate_threshold".to_string(), theta.to_string());
    }
    write_tensors(path, &tensors, metadata)
}

/// Appends `{prefix}W1..` and `{prefix}b0..` to the tensors to write.
fn push_params<'a>(
    tensors: &mut Vec<(String, Vec<usize>, &'a [f32])>,
    prefix: &str,
    weights: &'a [Matrix],
    biases: &'a [Vec<f32>],
) {
    for (k, w) in (1..).zip(weights) {
        let shape = vec![w.rows(), w.cols()];
        tensors.push((format!("{prefix}W{k}"), shape, w.as_slice()));
    }
    for (k, b) in biases.iter().enumerate() {
        tensors.push((format!("{prefix}b{k}"), vec![b.len()], b));
    }
}

/// Whether the file at `path` is a checkpoint of this format (false when it cannot be read).
pub fn is_conv_checkpoint(path: &Path) -> bool {
    read_file(path).is_ok_and(|bytes| {
        TensorFile::parse(&bytes, path, "checkpoint")
            .is_ok_and(|f| f.metadata("format").is_some_and(|v| v == FORMAT))
    })
}

/// Reads and checks a checkpoint: the config must validate, every tensor must have the shape
/// the architecture calls for and hold only finite values.
pub fn load(path: &Path) -> Result<ConvCheckpoint, FileError> {
    let bytes = read_file(path)?;
    let file = TensorFile::parse(&bytes, path, "checkpoint")?;
    let content = |reason: String| file.content(reason);
    let field = |key: &str| file.field(key);
    file.expect_format(FORMAT)?;
    let config: ConvConfig =
        serde_json::from_str(field("config")?).map_err(|e| content(format!("config: {e}")))?;
    config
        .validate()
        .map_err(|e| content(format!("config: {e}")))?;
    let arch = config.arch.clone();
    let read = |prefix: &str| -> Result<Gradient, FileError> {
        let weights = (1..arch.num_layers())
            .map(|k| {
                let (r, c) = arch.weight_shape(k);
                file.matrix(&format!("{prefix}W{k}"), Some(r), Some(c))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let biases = (0..arch.num_layers())
            .map(|k| file.vector(&format!("{prefix}b{k}"), arch.bias_len(k)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Gradient { weights, biases })
    };
    let params = read("")?;
    let velocity = match file.has_tensors("momentum.") {
        true => Some(read("momentum.")?),
        false => None,
    };
    let adam = match file.has_tensors("adam.") {
        true => Some(Adam {
            first: read("adam.m.")?,
            second: read("adam.v.")?,
            steps: field("adam_steps")?
                .parse()
                .map_err(|e| content(format!("adam_steps: {e}")))?,
        }),
        false => None,
    };
    let particles = match file.has_tensors("persistent.") {
        true => Some(read_particles(&file, &arch)?),
        false => None,
    };
    let chains = match file.has_tensors("dreaming.") {
        true => Some(read_chains(&file, &arch, config.batch_size)?),
        false => None,
    };
    let network = ConvNet::from_parts(arch.clone(), params.weights, params.biases)
        .map_err(|e| content(e.to_string()))?;
    let epoch = field("epoch")?
        .parse()
        .map_err(|e| content(format!("epoch: {e}")))?;
    let threshold = match (&config.modulator, file.metadata("gate_threshold")) {
        (Some(_), Some(text)) => Some(gate_threshold(text).map_err(content)?),
        _ => None,
    };
    Ok(ConvCheckpoint {
        config,
        network,
        epoch,
        dataset: field("dataset")?.clone(),
        velocity,
        adam,
        particles,
        threshold,
        chains,
    })
}

/// A saved gate threshold: a finite number >= 0.
fn gate_threshold(text: &str) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(t) if t.is_finite() && t >= 0.0 => Ok(t),
        _ => Err(format!(
            "gate_threshold: expected a finite number >= 0, got '{text}'"
        )),
    }
}

/// Layer states as tensors `{prefix}{first}`, `{prefix}{first + 1}`, ...
fn push_states<'a>(
    tensors: &mut Vec<(String, Vec<usize>, &'a [f32])>,
    prefix: &str,
    first: usize,
    layers: &'a [Matrix],
) {
    for (k, s) in (first..).zip(layers) {
        let shape = vec![s.rows(), s.cols()];
        tensors.push((format!("{prefix}{k}"), shape, s.as_slice()));
    }
}

/// The chains `dreaming.s0..sL`: one row per sample of a mini-batch in every layer.
fn read_chains(
    file: &TensorFile,
    arch: &Architecture,
    batch: usize,
) -> Result<Vec<Matrix>, FileError> {
    let sizes = arch.sizes();
    (0..sizes.len())
        .map(|k| file.matrix(&format!("dreaming.s{k}"), Some(batch), Some(sizes[k])))
        .collect()
}

/// The particles `persistent.s1..sL`: one row per example, as many rows in every layer.
fn read_particles(file: &TensorFile, arch: &Architecture) -> Result<Vec<Matrix>, FileError> {
    let sizes = arch.sizes();
    let layers = (1..sizes.len())
        .map(|k| file.matrix(&format!("persistent.s{k}"), None, Some(sizes[k])))
        .collect::<Result<Vec<_>, _>>()?;
    match layers.iter().all(|m| m.rows() == layers[0].rows()) {
        true => Ok(layers),
        false => Err(file.content("persistent states of different example counts".into())),
    }
}
