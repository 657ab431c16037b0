//! Helpers shared by the integration tests (each test crate uses a subset of them).
#![allow(dead_code)]

use eqprop::data::{self, Dataset, DatasetName, Split};
use std::path::PathBuf;

/// The shared data: `EQPROP_DATA_DIR`, else `../shared/data` beside the repository.
pub fn data_root() -> PathBuf {
    std::env::var_os("EQPROP_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data")))
}

/// A split of the shared MNIST files.
pub fn mnist(split: Split) -> Dataset {
    let dir = data::dataset_dir(Some(&data_root()), DatasetName::Mnist);
    data::load(DatasetName::Mnist, split, &dir).expect("the shared MNIST files")
}

/// A fresh, empty temporary folder for one test of one process.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("eqprop-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The `eqprop` binary with the shared data.
pub fn eqprop() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_eqprop"));
    cmd.env("EQPROP_DATA_DIR", data_root());
    cmd
}
