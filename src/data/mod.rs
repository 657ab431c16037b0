//! Data sets: IDX files (MNIST, Fashion-MNIST) and CIFAR-10's binary batches, their download
//! and verification.
//!
//! IDX files follow the canonical names `{train,t10k}-{images-idx3,labels-idx1}-ubyte`,
//! each either gzip-compressed (`.gz`) or raw; CIFAR-10 is read by [`cifar`]. A data set lives
//! in its own subfolder (`mnist/`, `fashion-mnist/` or `cifar-10/`) of a data root, see
//! [`dataset_dir`].

mod augment;
pub mod cifar;
mod download;
mod error;
mod idx;
mod pixels;
mod source;

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use augment::{Augmentation, Fill, augmented, shift_fits, shifted};
pub use cifar::{
    CIFAR_ARCHIVE, CIFAR_ARCHIVE_MD5, CIFAR_MIRROR, ensure_cifar, extract_cifar_archive,
    load_cifar, parse_cifar_batch, read_cifar_batch,
};
pub use download::{
    FASHION_MNIST_MIRROR, MNIST_MIRROR, download_verified, ensure_files, ensure_files_checked,
    load_or_download, mirror_base, official_md5,
};
pub use error::DataError;
pub use idx::{
    IMAGES_MAGIC, LABELS_MAGIC, MAX_IDX_BYTES, MAX_IMAGE_SIDE, parse_idx_images, parse_idx_labels,
    read_idx_images, read_idx_labels, read_maybe_gzip,
};
pub use pixels::{PixelBuffer, Pixels};
pub use source::DataSource;

/// The four file names of a data set, without the `.gz` suffix.
pub const FILE_NAMES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// A supported data set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DatasetName {
    #[default]
    /// Handwritten digits (LeCun et al.).
    Mnist,
    /// Zalando's clothing images, a drop-in replacement for MNIST.
    FashionMnist,
    /// Krizhevsky's 32 x 32 colour images of 10 classes (binary version, see [`cifar`]).
    Cifar10,
}

impl DatasetName {
    /// All data sets.
    pub const ALL: [DatasetName; 3] = [
        DatasetName::Mnist,
        DatasetName::FashionMnist,
        DatasetName::Cifar10,
    ];

    /// The name as written on the command line and used as the subfolder name.
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetName::Mnist => "mnist",
            DatasetName::FashionMnist => "fashion-mnist",
            DatasetName::Cifar10 => "cifar-10",
        }
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an unknown data set name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown data set `{0}` (expected `mnist`, `fashion-mnist` or `cifar10`)")]
pub struct UnknownDataset(pub String);

impl FromStr for DatasetName {
    type Err = UnknownDataset;

    /// Parses `mnist`, `fashion-mnist` or `cifar10` / `cifar-10` (case-insensitive; `_` is
    /// accepted for `-`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "mnist" => Ok(DatasetName::Mnist),
            "fashion-mnist" | "fashionmnist" => Ok(DatasetName::FashionMnist),
            "cifar10" | "cifar-10" => Ok(DatasetName::Cifar10),
            _ => Err(UnknownDataset(s.to_string())),
        }
    }
}

/// The training or the test part of a data set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// The training set (`train-*` files).
    Train,
    /// The test set (`t10k-*` files).
    Test,
}

impl Split {
    /// The file name prefix: `train` or `t10k`.
    pub fn file_prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }

    /// The (images, labels) file names of this split, without `.gz`.
    pub fn file_names(self) -> (&'static str, &'static str) {
        match self {
            Split::Train => (FILE_NAMES[0], FILE_NAMES[1]),
            Split::Test => (FILE_NAMES[2], FILE_NAMES[3]),
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Test => "test",
        })
    }
}

/// A labelled image set.
///
/// Images as f32 in \[0, 1\] (byte/255), n x (rows*cols*channels): each image row-major with
/// its channels last (HWC: the `channels` values of pixel (y, x) are consecutive, at
/// `(y * cols + x) * channels`), as the convolutional layers read NHWC; labels 0..=9.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// All pixel values, image after image, each image row-major and channels-last, in [0, 1].
    pub images: Pixels,
    /// One label in 0..=9 per image.
    pub labels: Vec<u8>,
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
    /// Values per pixel: 1 for grey levels (MNIST, Fashion-MNIST), 3 for red, green, blue
    /// (CIFAR-10).
    pub channels: usize,
    /// Output targets that replace the one-hot label of some examples (a teacher's outputs on
    /// replayed dreams, say): `targets[i]`, when present, is example `i`'s target row. Empty
    /// when every example is trained toward its label.
    pub targets: Vec<Option<Vec<f32>>>,
}

impl Dataset {
    /// The number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per image (`rows * cols * channels`): the input units a network needs.
    pub fn pixels(&self) -> usize {
        self.rows * self.cols * self.channels
    }

    /// The pixels of image `i`.
    ///
    /// # Panics
    /// If `i >= self.len()`, like slice indexing.
    pub fn image(&self, i: usize) -> &[f32] {
        let p = self.pixels();
        &self.images[i * p..(i + 1) * p]
    }

    /// No grey-level images (one channel), of the given size.
    pub fn empty(rows: usize, cols: usize) -> Self {
        Self {
            images: Pixels::default(),
            labels: Vec::new(),
            rows,
            cols,
            channels: 1,
            targets: Vec::new(),
        }
    }

    /// No images, of the same shape (rows, columns and channels) as this set's.
    pub fn empty_like(&self) -> Self {
        Self {
            channels: self.channels,
            ..Self::empty(self.rows, self.cols)
        }
    }

    /// The target row that replaces example `i`'s label, if it has one.
    pub fn target(&self, i: usize) -> Option<&[f32]> {
        self.targets.get(i)?.as_deref()
    }

    /// The images `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Self {
        Self {
            images: indices
                .iter()
                .flat_map(|&i| self.image(i).iter().copied())
                .collect(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            rows: self.rows,
            cols: self.cols,
            channels: self.channels,
            targets: match self.targets.is_empty() {
                true => Vec::new(),
                false => indices.iter().map(|&i| self.targets[i].clone()).collect(),
            },
        }
    }

    /// Appends the images of `other` (of the same size).
    pub fn extend(&mut self, other: &Dataset) {
        debug_assert_eq!(self.pixels(), other.pixels());
        let n = self.len();
        self.images.to_mut().extend_from_slice(&other.images);
        self.labels.extend_from_slice(&other.labels);
        if !(self.targets.is_empty() && other.targets.is_empty()) {
            self.targets.resize(n, None);
            self.targets.extend(other.targets.iter().cloned());
            self.targets.resize(self.len(), None);
        }
    }

    /// Keeps only the first `n` images (no-op if there are `n` or fewer).
    pub fn truncate(&mut self, n: usize) {
        self.labels.truncate(n);
        self.targets.truncate(n);
        self.images.truncate(n.saturating_mul(self.pixels()));
    }
}

/// The path of file `stem` in `dir`: `stem.gz` if it exists, else raw `stem` if it exists.
fn existing_file(dir: &Path, stem: &str) -> Option<PathBuf> {
    [dir.join(format!("{stem}.gz")), dir.join(stem)]
        .into_iter()
        .find(|p| p.is_file())
}

/// Like [`existing_file`], but a missing file is [`DataError::NotFound`] (naming the `.gz`).
fn find_file(dir: &Path, stem: &str) -> Result<PathBuf, DataError> {
    existing_file(dir, stem).ok_or_else(|| DataError::NotFound {
        path: dir.join(format!("{stem}.gz")),
    })
}

/// Converts pixel bytes to f32 in [0, 1].
fn to_unit_f32(bytes: &[u8]) -> Vec<f32> {
    let lut: [f32; 256] = std::array::from_fn(|b| b as f32 / 255.0);
    bytes.iter().map(|&b| lut[b as usize]).collect()
}

/// Checks that every label is in 0..=9.
fn check_labels(labels: &[u8], path: &Path) -> Result<(), DataError> {
    match labels.iter().position(|&l| l > 9) {
        Some(index) => Err(DataError::BadLabel {
            path: path.to_path_buf(),
            index,
            label: labels[index],
        }),
        None => Ok(()),
    }
}

/// Loads a split from `dir` (the data set's own folder, see [`dataset_dir`]).
///
/// CIFAR-10 is read by [`load_cifar`]. Each IDX file may be gzip-compressed (`.gz`, preferred
/// when both exist) or raw; gzip is detected by its magic bytes, not by name. The image count
/// comes from the IDX header; the image and label counts must agree and labels must be <= 9.
pub fn load(name: DatasetName, split: Split, dir: &Path) -> Result<Dataset, DataError> {
    if name == DatasetName::Cifar10 {
        return load_cifar(split, dir);
    }
    let (images_stem, labels_stem) = split.file_names();
    let images_path = find_file(dir, images_stem)?;
    let labels_path = find_file(dir, labels_stem)?;
    let (bytes, n, rows, cols) = read_idx_images(&images_path)?;
    let labels = read_idx_labels(&labels_path)?;
    if labels.len() != n {
        return Err(DataError::CountMismatch {
            images_path,
            labels_path,
            images: n,
            labels: labels.len(),
        });
    }
    check_labels(&labels, &labels_path)?;
    let images = to_unit_f32(&bytes);
    Ok(Dataset {
        images: images.into(),
        labels,
        rows,
        cols,
        channels: 1,
        targets: Vec::new(),
    })
}

/// The data dir for a dataset: `root` (`--data-dir`) if given, else `$EQPROP_DATA_DIR`,
/// else a per-user cache (`$XDG_CACHE_HOME` or `$HOME/.cache`)`/eqprop`; the data set's
/// subfolder (`mnist`, `fashion-mnist` or `cifar-10`) is appended.
pub fn dataset_dir(root: Option<&Path>, name: DatasetName) -> PathBuf {
    dataset_dir_with(root, name, |key| std::env::var_os(key))
}

/// [`dataset_dir`] with the environment given by `env` (for tests and embedding).
///
/// Empty variables count as unset. Without any of them, falls back to
/// `std::env::temp_dir()/eqprop`.
pub fn dataset_dir_with(
    root: Option<&Path>,
    name: DatasetName,
    env: impl Fn(&str) -> Option<OsString>,
) -> PathBuf {
    let var = |key: &str| env(key).filter(|v| !v.is_empty()).map(PathBuf::from);
    let base = match root {
        Some(r) => r.to_path_buf(),
        None => var("EQPROP_DATA_DIR")
            .or_else(|| var("XDG_CACHE_HOME").map(|c| c.join("eqprop")))
            .or_else(|| var("HOME").map(|h| h.join(".cache").join("eqprop")))
            .unwrap_or_else(|| std::env::temp_dir().join("eqprop")),
    };
    base.join(name.as_str())
}
