//! Helpers shared by the integration tests (each test crate uses a subset of them).
#![allow(dead_code)]

use eqprop::data::{self, Dataset, DatasetName, Split};
use std::ffi::OsStr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The committed sample (`tests/data`): the first 1,000 training and test images of MNIST and
/// Fashion-MNIST (see `tests/data/README.md`).
pub fn sample_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data"))
}

/// The data the tests read: `EQPROP_DATA_DIR` if set and not empty (CI points it at the full
/// files), else the committed sample.
pub fn data_root() -> PathBuf {
    std::env::var_os("EQPROP_DATA_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(sample_root)
}

/// A split of a data set from [`data_root`].
pub fn dataset(name: DatasetName, split: Split) -> Dataset {
    let dir = data::dataset_dir(Some(&data_root()), name);
    data::load(name, split, &dir)
        .unwrap_or_else(|e| panic!("the {name} {split} files in {}: {e}", dir.display()))
}

/// The most training images a test learns from: the full files' MNIST training set in CI is
/// the canonical set's first 10,000 images, and the official 60,000 would make the learning
/// tests six times slower without testing anything more.
pub const MAX_TRAIN: usize = 10_000;

/// A split of MNIST from [`data_root`]; at most the first [`MAX_TRAIN`] training images.
pub fn mnist(split: Split) -> Dataset {
    let mut data = dataset(DatasetName::Mnist, split);
    if split == Split::Train {
        data.truncate(MAX_TRAIN);
    }
    data
}

/// Whether the tests learn from a small training set, the committed sample's 1,000 MNIST
/// images (from the header of the labels file), rather than the full files' 10,000.
pub fn small_data() -> bool {
    static SMALL: OnceLock<bool> = OnceLock::new();
    *SMALL.get_or_init(|| {
        let dir = data::dataset_dir(Some(&data_root()), DatasetName::Mnist);
        let labels = data::read_idx_labels(&dir.join("train-labels-idx1-ubyte.gz"))
            .or_else(|_| data::read_idx_labels(&dir.join("train-labels-idx1-ubyte")))
            .expect("the MNIST training labels");
        labels.len() < MAX_TRAIN / 2
    })
}

/// `sample` when the tests learn from the committed sample ([`small_data`]), else `full`: for
/// an amount of training or a bound measured on each (the test says what was measured).
pub fn by_data<T>(sample: T, full: T) -> T {
    if small_data() { sample } else { full }
}

/// A fresh, empty temporary folder, removed with everything in it when the guard is dropped:
/// keep the guard alive while the folder is used (`let dir = temp_dir("x");`, not
/// `temp_dir("x").join("y")`, which removes the folder at the end of the statement).
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    /// A fresh, empty temporary folder named after `name`.
    pub fn new(name: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("eqprop-test-{name}-"))
            .tempdir()
            .expect("a temporary folder");
        TempDir(dir)
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<OsStr> for TempDir {
    fn as_ref(&self) -> &OsStr {
        self.0.path().as_os_str()
    }
}

/// A fresh, empty temporary folder named after `name` (see [`TempDir`]).
pub fn temp_dir(name: &str) -> TempDir {
    TempDir::new(name)
}

/// A mirror URL on which nothing listens (the discard port of this machine): a download the
/// tests did not mean to make fails at once, and nothing leaves the machine.
pub const NO_MIRROR: &str = "http://127.0.0.1:9/";

/// The `eqprop` binary with the tests' data ([`data_root`]) and no way to the network.
pub fn eqprop() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_eqprop"));
    cmd.env("EQPROP_DATA_DIR", data_root());
    cmd.env("EQPROP_MIRROR", NO_MIRROR);
    cmd
}

/// The example binary `cargo test` built beside `eqprop`.
pub fn example(name: &str) -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_eqprop"));
    bin.parent().unwrap().join("examples").join(name)
}

/// A command that succeeded; failing, its standard error is the message.
pub fn assert_success(out: &std::process::Output) {
    assert!(out.status.success(), "{}", stderr(out));
}

/// The standard error of a finished command, as text.
pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A cleanly refused run: exit code 1, nothing printed before the `error:` message, no panic,
/// and every needle in the message.
pub fn assert_clear_error(out: &std::process::Output, needles: &[&str]) {
    assert_error(out, needles, true);
}

/// A run that failed part-way, cleanly: exit code 1, progress lines and then an `error:`
/// message as the last line, no panic, and every needle in the message.
pub fn assert_error_after_progress(out: &std::process::Output, needles: &[&str]) {
    assert_error(out, needles, false);
}

fn assert_error(out: &std::process::Output, needles: &[&str], error_first: bool) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let message = match error_first {
        true => err.as_str(),
        false => err.trim_end().lines().last().unwrap_or(""),
    };
    assert!(message.starts_with("error:"), "{err}");
    for needle in needles {
        assert!(message.contains(needle), "expected '{needle}' in: {err}");
    }
}

/// The hardware a test needs (`found`), or `None` after saying why the test skipped: unless the
/// environment variable `require` is `1` (set on machines known to have the hardware, so that a
/// test cannot pass by skipping there), which makes the test fail instead.
pub fn hardware_or_skip<T, E: std::fmt::Display>(found: Result<T, E>, require: &str) -> Option<T> {
    match found {
        Ok(hardware) => Some(hardware),
        Err(why) => {
            let required = std::env::var(require).is_ok_and(|v| v == "1");
            assert!(!required, "{require}=1, but: {why}");
            eprintln!("skipped: {why} (set {require}=1 to fail instead)");
            None
        }
    }
}
