//! Checkpoints and judge files with non-finite values, wrong tensor shapes or impossible progress
//! are refused, naming the file and the tensor (or field).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use eqprop::checkpoint::{self, CheckpointRef};
use eqprop::config::Hyperparams;
use eqprop::data::Dataset;
use eqprop::judge::{Judge, JudgeOptions};
use eqprop::network::Network;
use eqprop::tensor::Matrix;
use eqprop::train::Progress;
use rand::SeedableRng;
use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};

const LAYERS: [usize; 3] = [784, 5, 10];
/// Training examples the persistent states are saved for.
const EXAMPLES: usize = 60;

fn hyperparams() -> Hyperparams {
    Hyperparams {
        layers: LAYERS.to_vec(),
        epochs: 3,
        persistent: true,
        ..Hyperparams::preset("paper").unwrap()
    }
}

fn filled(rows: usize, cols: usize, value: f32) -> Matrix {
    Matrix::from_vec(rows, cols, vec![value; rows * cols]).unwrap()
}

/// Writes a valid checkpoint (persistent states and dream chains included) to `dir`.
fn valid_checkpoint(dir: &Path) -> PathBuf {
    let hp = hyperparams();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let network = Network::glorot(&LAYERS, &mut rng).unwrap();
    let progress = Progress {
        epoch: 1,
        batch: 2,
        correct: 30,
        seen: 40,
        learned: 40,
        energy_sum: 12.5,
        seconds: 0.5,
        threshold: None,
    };
    let persistent: Vec<Matrix> = LAYERS
        .iter()
        .enumerate()
        .map(|(k, &n)| filled(if k == 0 { 0 } else { EXAMPLES }, n, 0.25))
        .collect();
    let chains: Vec<Matrix> = LAYERS
        .iter()
        .map(|&n| filled(hp.batch_size, n, 0.5))
        .collect();
    let path = dir.join("checkpoint.safetensors");
    checkpoint::save(
        &path,
        &CheckpointRef {
            hyperparams: &hp,
            network: &network,
            progress: &progress,
            persistent: Some(&persistent),
            dream_chains: Some(&chains),
            dataset: "mnist",
        },
    )
    .unwrap();
    let loaded = checkpoint::load(&path).unwrap();
    assert_eq!(loaded.network, network);
    assert_eq!(loaded.progress, progress);
    path
}

/// A tensor to write: shape and f32 values.
type Tensor = (Vec<usize>, Vec<f32>);

/// Reads the safetensors file `path`: its tensors and metadata.
fn read_file(path: &Path) -> (HashMap<String, Tensor>, HashMap<String, String>) {
    let bytes = std::fs::read(path).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let map = tensors
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (name, (view.shape().to_vec(), values))
        })
        .collect();
    (map, meta.metadata().clone().unwrap_or_default())
}

fn write_file(path: &Path, tensors: &HashMap<String, Tensor>, meta: &HashMap<String, String>) {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, (shape, values))| {
            let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name.clone(), shape.clone(), data)
        })
        .collect();
    let views = bytes.iter().map(|(name, shape, data)| {
        let view = TensorView::new(Dtype::F32, shape.clone(), data).unwrap();
        (name.clone(), view)
    });
    std::fs::write(
        path,
        safetensors::serialize(views, Some(meta.clone())).unwrap(),
    )
    .unwrap();
}

/// A copy of the file `src` named `name` beside it, changed by `edit`; returns its path.
fn edited(
    src: &Path,
    name: &str,
    edit: impl FnOnce(&mut HashMap<String, Tensor>, &mut HashMap<String, String>),
) -> PathBuf {
    let (mut tensors, mut meta) = read_file(src);
    edit(&mut tensors, &mut meta);
    let path = src.with_file_name(name);
    write_file(&path, &tensors, &meta);
    path
}

/// Loading `path` fails with an error naming the file and containing every one of `needles`.
fn assert_refused(path: &Path, needles: &[&str]) {
    let err = checkpoint::load(path).expect_err("refused").to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    for needle in needles {
        assert!(err.contains(needle), "expected '{needle}' in: {err}");
    }
}

#[test]
fn non_finite_values_are_refused_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let good = valid_checkpoint(dir.path());
    let cases: [(&str, usize, f32, &str); 5] = [
        (
            "W1",
            5 * 3 + 2,
            f32::NAN,
            "tensor W1 holds a non-finite value (NaN) at [3, 2]",
        ),
        (
            "W2",
            0,
            f32::INFINITY,
            "tensor W2 holds a non-finite value (inf) at [0, 0]",
        ),
        (
            "b1",
            4,
            f32::NEG_INFINITY,
            "tensor b1 holds a non-finite value (-inf) at [4]",
        ),
        (
            "persistent2",
            7,
            f32::NAN,
            "tensor persistent2 holds a non-finite value",
        ),
        (
            "dream_chain0",
            1,
            f32::NAN,
            "tensor dream_chain0 holds a non-finite value",
        ),
    ];
    for (tensor, index, value, message) in cases {
        let path = edited(&good, &format!("{tensor}.safetensors"), |t, _| {
            t.get_mut(tensor).unwrap().1[index] = value;
        });
        assert_refused(&path, &[message]);
    }
}

#[test]
fn wrong_shapes_are_refused_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let good = valid_checkpoint(dir.path());
    let reshape = |tensor: &'static str, shape: Vec<usize>, message: &'static str| {
        let path = edited(&good, &format!("{tensor}-{shape:?}.safetensors"), |t, _| {
            let entry = t.get_mut(tensor).unwrap();
            entry.1.resize(shape.iter().product(), 0.0);
            entry.0 = shape;
        });
        assert_refused(&path, &[message]);
    };
    reshape("b1", vec![1, 5], "tensor b1 has shape [1, 5], expected [5]");
    reshape("b1", vec![5, 1], "tensor b1 has shape [5, 1], expected [5]");
    reshape("b2", vec![9], "tensor b2 has shape [9], expected [10]");
    reshape(
        "W1",
        vec![5, 784],
        "tensor W1 has shape [5, 784], expected [784, 5]",
    );
    reshape("W2", vec![50], "tensor W2 has shape [50], expected [5, 10]");
    reshape(
        "W2",
        vec![5, 10, 1],
        "tensor W2 has shape [5, 10, 1], expected [5, 10]",
    );
    reshape(
        "persistent2",
        vec![EXAMPLES - 1, 10],
        "tensor persistent2 has shape [59, 10], expected [60, 10]",
    );
    reshape(
        "persistent1",
        vec![EXAMPLES, 6],
        "tensor persistent1 has shape [60, 6], expected [any, 5]",
    );
    reshape(
        "dream_chain1",
        vec![21, 5],
        "tensor dream_chain1 has shape [21, 5], expected [20, 5]",
    );
    let missing = edited(&good, "missing.safetensors", |t, _| {
        t.remove("b0");
    });
    assert_refused(&missing, &["tensor b0 is missing"]);
}

#[test]
fn impossible_progress_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let good = valid_checkpoint(dir.path());
    let cases = [
        (
            r#""epoch":4,"batch":0"#,
            "epoch 4 batch 0 is beyond the run's 3 epochs",
        ),
        (
            r#""epoch":3,"batch":1"#,
            "epoch 3 batch 1 is beyond the run's 3 epochs",
        ),
        (
            r#""epoch":1,"batch":4"#,
            "batch 4 is beyond the epoch (60 examples in batches of 20)",
        ),
        (
            r#""epoch":1,"batch":1"#,
            "40 examples seen in 1 batches of 20",
        ),
        (
            r#""epoch":1,"batch":18446744073709551615"#,
            "is beyond the epoch",
        ),
    ];
    for (i, (fields, message)) in cases.iter().enumerate() {
        let path = edited(&good, &format!("progress{i}.safetensors"), |_, meta| {
            let progress = meta.get_mut("progress").unwrap();
            *progress = progress.replace(r#""epoch":1,"batch":2"#, fields);
        });
        assert_refused(&path, &["progress: ", message]);
    }
    let counts = edited(&good, "counts.safetensors", |_, meta| {
        let progress = meta.get_mut("progress").unwrap();
        *progress = progress.replace(r#""correct":30"#, r#""correct":41"#);
    });
    assert_refused(&counts, &["41 correct and 40 learned of 40 seen"]);
    let seconds = edited(&good, "seconds.safetensors", |_, meta| {
        let progress = meta.get_mut("progress").unwrap();
        *progress = progress.replace(r#""seconds":0.5"#, r#""seconds":-1.0"#);
    });
    assert_refused(&seconds, &["must be finite (seconds not negative)"]);
}

/// `eqprop eval` of a checkpoint with a NaN weight: exit 1 and the tensor named, not a
/// `mean free energy NaN`.
#[test]
fn eval_refuses_a_nan_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let good = valid_checkpoint(dir.path());
    let bad = edited(&good, "nan.safetensors", |t, _| {
        t.get_mut("W2").unwrap().1[3] = f32::NAN;
    });
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_eqprop"))
        .args(["eval", "--checkpoint"])
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error:") && !stderr.contains("panicked"),
        "{stderr}"
    );
    assert!(stderr.contains("nan.safetensors"), "{stderr}");
    assert!(
        stderr.contains("tensor W2 holds a non-finite value (NaN)"),
        "{stderr}"
    );
}

/// A tiny perceptron judge, trained on 20 random 28x28 images (its file's tensors are the ones
/// the cases below edit).
fn tiny_judge() -> Judge {
    let data = Dataset {
        images: (0..20 * 784).map(|i| (i % 7) as f32 / 7.0).collect(),
        labels: (0..20).map(|i| (i % 10) as u8).collect(),
        rows: 28,
        cols: 28,
        channels: 1,
        targets: Vec::new(),
    };
    let options = JudgeOptions {
        hidden: 4,
        epochs: 1,
        ..JudgeOptions::mlp()
    };
    Judge::train(&data, &options, |_, _| {})
}

/// A change to a tensor.
type Edit = Box<dyn Fn(&mut Tensor)>;

#[test]
fn judge_files_get_the_same_checks() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("judge.safetensors");
    let judge = tiny_judge();
    judge.save(&good).unwrap();
    assert_eq!(Judge::load(&good).unwrap(), judge);
    let bytes = std::fs::read(&good).unwrap();
    assert_eq!(Judge::load_bytes(&bytes, &good).unwrap(), judge);
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "W1",
            Box::new(|t| t.1[9] = f32::NAN),
            "tensor W1 holds a non-finite value (NaN) at [2, 1]",
        ),
        (
            "b2",
            Box::new(|t| t.1[0] = f32::INFINITY),
            "tensor b2 holds a non-finite value (inf) at [0]",
        ),
        (
            "b1",
            Box::new(|t| t.0 = vec![1, 4]),
            "tensor b1 has shape [1, 4], expected [4]",
        ),
        (
            "b1",
            Box::new(|t| t.0 = vec![4, 1]),
            "tensor b1 has shape [4, 1], expected [4]",
        ),
        (
            "W1",
            Box::new(|t| t.0 = vec![784 * 4]),
            "tensor W1 has shape [3136], expected [any, any]",
        ),
        (
            "W1",
            Box::new(|t| {
                t.0 = vec![0, 4];
                t.1.clear();
            }),
            "tensor W1 has shape [0, 4], an empty layer",
        ),
    ];
    for (i, (tensor, edit, message)) in cases.iter().enumerate() {
        let path = edited(&good, &format!("judge{i}.safetensors"), |t, _| {
            edit(t.get_mut(*tensor).unwrap())
        });
        let err = Judge::load(&path).expect_err("refused").to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains(message), "expected '{message}' in: {err}");
    }
}
