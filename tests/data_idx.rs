//! Tests of the IDX loader: real data from the tests' data root (the committed sample, or
//! `EQPROP_DATA_DIR`), malformed fixtures, raw vs gzip files, data dir resolution.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use eqprop::data::{
    DataError, Dataset, DatasetName, Split, dataset_dir, dataset_dir_with, load, read_idx_images,
    read_idx_labels,
};

mod common;
use common::TempDir;

fn shared(name: DatasetName) -> PathBuf {
    dataset_dir(Some(&common::data_root()), name)
}

/// The item count in the header of the gzip IDX file `stem.gz` in `dir`, read without the loader.
fn header_count(dir: &Path, stem: &str) -> usize {
    let bytes = gunzip(&std::fs::read(dir.join(format!("{stem}.gz"))).unwrap());
    u32::from_be_bytes(bytes[4..8].try_into().unwrap()) as usize
}

fn idx_images(magic: u32, n: u32, rows: u32, cols: u32, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for w in [magic, n, rows, cols] {
        v.extend_from_slice(&w.to_be_bytes());
    }
    v.extend_from_slice(data);
    v
}

fn idx_labels(magic: u32, n: u32, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&magic.to_be_bytes());
    v.extend_from_slice(&n.to_be_bytes());
    v.extend_from_slice(data);
    v
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Writes a test split (`t10k-*`) into `dir`, gzip-compressed.
fn write_split(dir: &Path, images: &[u8], labels: &[u8]) -> (PathBuf, PathBuf) {
    let ip = dir.join("t10k-images-idx3-ubyte.gz");
    let lp = dir.join("t10k-labels-idx1-ubyte.gz");
    std::fs::write(&ip, gzip(images)).unwrap();
    std::fs::write(&lp, gzip(labels)).unwrap();
    (ip, lp)
}

/// A valid 3-image 2x2 data set: pixel bytes and labels.
fn tiny() -> (Vec<u8>, Vec<u8>) {
    let pixels: Vec<u8> = (0..12).map(|i| (i * 20) as u8).collect();
    (
        idx_images(0x803, 3, 2, 2, &pixels),
        idx_labels(0x801, 3, &[1, 9, 0]),
    )
}

/// The error matches the pattern and its message names the file.
macro_rules! assert_error {
    ($err:expr, $pattern:pat $(if $guard:expr)?, $path:expr) => {{
        let err = &$err;
        assert!(matches!(err, $pattern $(if $guard)?), "{err:?}");
        assert_names(err, $path);
    }};
}

fn assert_names(err: &DataError, path: &Path) {
    let msg = err.to_string();
    let shown = path.display().to_string();
    assert!(msg.contains(&shown), "error `{msg}` does not name {shown}");
}

fn histogram(labels: &[u8]) -> [usize; 10] {
    let mut h = [0usize; 10];
    for &l in labels {
        h[l as usize] += 1;
    }
    h
}

fn assert_unit_pixels(ds: &Dataset) {
    assert!(ds.images.iter().all(|&p| (0.0..=1.0).contains(&p)));
    let max = ds.images.iter().cloned().fold(f32::MIN, f32::max);
    let min = ds.images.iter().cloned().fold(f32::MAX, f32::min);
    assert_eq!(max, 1.0);
    assert_eq!(min, 0.0);
}

/// Every label holds between `low` and `high` percent of the images.
fn assert_balanced(labels: &[u8], low: f64, high: f64) {
    let h = histogram(labels);
    let n = labels.len() as f64;
    assert!(
        h.iter()
            .all(|&c| (low..=high).contains(&(100.0 * c as f64 / n))),
        "{h:?} of {n}"
    );
}

/// The first 1,000 labels of a split, counted per label: the same in the committed sample
/// (which is those 1,000 images) and in the full files.
fn first_thousand(labels: &[u8]) -> [usize; 10] {
    histogram(&labels[..1000.min(labels.len())])
}

#[test]
fn mnist_train_real() {
    let dir = shared(DatasetName::Mnist);
    let ds = load(DatasetName::Mnist, Split::Train, &dir).unwrap();
    let n = header_count(&dir, "train-images-idx3-ubyte");
    assert_eq!(ds.len(), n);
    assert_eq!(n, header_count(&dir, "train-labels-idx1-ubyte"));
    assert!(n >= 1000, "{n} images");
    assert_eq!((ds.rows, ds.cols, ds.pixels()), (28, 28, 784));
    assert_eq!(ds.images.len(), n * 784);
    assert_eq!(ds.labels[0], 5);
    assert_eq!(&ds.labels[..8], &[5, 0, 4, 1, 9, 2, 1, 3]);
    assert_eq!(
        first_thousand(&ds.labels),
        [97, 116, 99, 93, 105, 92, 94, 117, 87, 100]
    );
    assert_balanced(&ds.labels, 8.0, 13.0);
    assert_unit_pixels(&ds);
    // Image 0 (a 5) has ink in the middle and a blank border.
    let img = ds.image(0);
    assert_eq!(img.len(), 784);
    assert_eq!(img[0], 0.0);
    assert!(img.iter().filter(|&&p| p > 0.5).count() > 50);
}

#[test]
fn mnist_test_real() {
    let dir = shared(DatasetName::Mnist);
    let ds = load(DatasetName::Mnist, Split::Test, &dir).unwrap();
    assert_eq!(ds.len(), header_count(&dir, "t10k-labels-idx1-ubyte"));
    assert_eq!((ds.rows, ds.cols), (28, 28));
    assert_eq!(&ds.labels[..5], &[7, 2, 1, 0, 4]);
    assert_eq!(
        first_thousand(&ds.labels),
        [85, 126, 116, 107, 110, 87, 87, 99, 89, 94]
    );
    assert_balanced(&ds.labels, 8.0, 13.0);
    assert_unit_pixels(&ds);
}

#[test]
fn fashion_mnist_real() {
    let dir = shared(DatasetName::FashionMnist);
    let start = std::time::Instant::now();
    let train = load(DatasetName::FashionMnist, Split::Train, &dir).unwrap();
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "fashion-mnist train ({} images) loaded in {secs:.3} s",
        train.len()
    );
    if !cfg!(debug_assertions) {
        assert!(secs < 3.0, "loading took {secs} s");
    }
    let n = header_count(&dir, "train-images-idx3-ubyte");
    assert_eq!(train.len(), n);
    assert_eq!(train.images.len(), n * 784);
    assert_eq!(
        first_thousand(&train.labels),
        [107, 104, 86, 92, 95, 100, 100, 115, 102, 99]
    );
    assert_balanced(&train.labels, 8.0, 12.0);
    assert_unit_pixels(&train);
    let test = load(DatasetName::FashionMnist, Split::Test, &dir).unwrap();
    assert_eq!(test.len(), header_count(&dir, "t10k-images-idx3-ubyte"));
    assert_eq!(
        first_thousand(&test.labels),
        [107, 105, 111, 93, 115, 87, 97, 95, 95, 95]
    );
    assert_balanced(&test.labels, 8.0, 12.0);
}

#[test]
fn read_idx_direct() {
    let dir = shared(DatasetName::Mnist);
    let (bytes, n, rows, cols) = read_idx_images(&dir.join("t10k-images-idx3-ubyte.gz")).unwrap();
    assert_eq!(n, header_count(&dir, "t10k-images-idx3-ubyte"));
    assert_eq!((rows, cols), (28, 28));
    assert_eq!(bytes.len(), n * rows * cols);
    let labels = read_idx_labels(&dir.join("t10k-labels-idx1-ubyte.gz")).unwrap();
    assert_eq!(labels.len(), n);
}

#[test]
fn raw_files_load_like_gzip() {
    let src = shared(DatasetName::Mnist);
    let tmp = TempDir::new("raw");
    for stem in ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"] {
        let gz = std::fs::read(src.join(format!("{stem}.gz"))).unwrap();
        std::fs::write(tmp.path().join(stem), gunzip(&gz)).unwrap();
    }
    let raw = load(DatasetName::Mnist, Split::Test, tmp.path()).unwrap();
    let gz = load(DatasetName::Mnist, Split::Test, &src).unwrap();
    assert_eq!(raw, gz);
}

#[test]
fn gzip_detected_by_content_not_name() {
    let (images, labels) = tiny();
    let tmp = TempDir::new("content");
    // Raw bytes under a `.gz` name, gzip bytes under a raw name.
    std::fs::write(tmp.path().join("t10k-images-idx3-ubyte.gz"), &images).unwrap();
    std::fs::write(tmp.path().join("t10k-labels-idx1-ubyte"), gzip(&labels)).unwrap();
    let ds = load(DatasetName::Mnist, Split::Test, tmp.path()).unwrap();
    assert_eq!(ds.len(), 3);
    assert_eq!((ds.rows, ds.cols), (2, 2));
    assert_eq!(ds.labels, vec![1, 9, 0]);
    assert_eq!(
        ds.image(1),
        &[80.0 / 255.0, 100.0 / 255.0, 120.0 / 255.0, 140.0 / 255.0]
    );
}

#[test]
fn dataset_methods() {
    let (images, labels) = tiny();
    let tmp = TempDir::new("methods");
    write_split(tmp.path(), &images, &labels);
    let mut ds = load(DatasetName::Mnist, Split::Test, tmp.path()).unwrap();
    assert!(!ds.is_empty());
    assert_eq!(ds.pixels(), 4);
    assert_eq!(ds.image(2)[3], 220.0 / 255.0);
    ds.truncate(10);
    assert_eq!(ds.len(), 3);
    ds.truncate(2);
    assert_eq!((ds.len(), ds.images.len()), (2, 8));
    ds.truncate(0);
    assert!(ds.is_empty());
    assert!(ds.images.is_empty());
}

#[test]
fn bad_magic() {
    let (images, labels) = tiny();
    let tmp = TempDir::new("magic");
    let mut bad = images.clone();
    bad[3] = 0x01;
    let (ip, _) = write_split(tmp.path(), &bad, &labels);
    let err = load(DatasetName::Mnist, Split::Test, tmp.path()).unwrap_err();
    assert_error!(err, DataError::BadMagic { expected: 0x803, found: 0x801, path } if *path == ip, &ip);
    // A labels reader given a (valid) images file.
    std::fs::write(&ip, gzip(&images)).unwrap();
    let err = read_idx_labels(&ip).unwrap_err();
    assert_error!(
        err,
        DataError::BadMagic {
            expected: 0x801,
            found: 0x803,
            ..
        },
        &ip
    );
}

#[test]
fn bad_magic_labels() {
    let (images, mut labels) = tiny();
    labels[3] = 0x03;
    let tmp = TempDir::new("magic-labels");
    let (_, lp) = write_split(tmp.path(), &images, &labels);
    let err = load(DatasetName::Mnist, Split::Test, tmp.path()).unwrap_err();
    assert_error!(
        err,
        DataError::BadMagic {
            expected: 0x801,
            found: 0x803,
            ..
        },
        &lp
    );
}

#[test]
fn truncated_header() {
    let (images, labels) = tiny();
    let tmp = TempDir::new("header");
    for len in [0usize, 2, 10, 15] {
        let (ip, _) = write_split(tmp.path(), &images[..len], &labels);
        let err = load(DatasetName::Mnist, Split::Test, tmp.path()).unwrap_err();
        assert!(
            matches!(err, DataError::TruncatedHeader { len: l, needed: 16, .. } if l == len),
            "{len}: {err:?}"
        );
        assert_names(&err, &ip);
    }
    let (_, lp) = write_split(tmp.path(), &images, &labels[..7]);
    let err = load(DatasetName::Mnist, Split::Test, tmp.path()).unwrap_err();
    assert_error!(
        err,
        DataError::TruncatedHeader {
            len: 7,
            needed: 8,
            ..
        },
        &lp
    );
}

#[test]
fn truncated_data() {
    let (images, labels) = tiny();
    let tmp = TempDir::new("data");
    let (ip, _) = write_split(tmp.path(), &images[..images.len() - 1], &labels);
    let err = load(DatasetName::Mnist, Split::Test, tmp.path()).unwrap_err();
    assert_error!(
        err,
        DataError::TruncatedData {
            expected: 12,
            actual: 11,
            ..
        },
        &ip
    );
    let (_, lp) = write_split(tmp.path(), &images, &labels[..labels.len() - 1]);
    let err = load(DatasetName::Mnist, Split::Test, tmp.path()).unwrap_err();
    assert_error!(
        err,
        DataError::TruncatedData {
            expected: 3,
            actual: 2,
            ..
        },
        &lp
    );
}

#[test]
fn trailing_bytes() {
    let (mut images, mut labels) = tiny();
    images.push(7);
    let tmp = TempDir::new("trailing");
    let (ip, _) = write_split(tmp.path(), &images, &labels);
    let err = load(DatasetName::Mnist, Split::Test, tmp.path()).unwrap_err();
    assert_error!(
        err,
        DataError::TrailingBytes {
            expected: 12,
            extra: 1,
            ..
        },
        &ip
    );
    images.pop();
    labels.extend_from_slice(&[1, 2]);
    let (_, lp) = write_split(tmp.path(), &images, &labels);
    let err = load(DatasetName::Mnist, Split::Test, tmp.path()).unwrap_err();
    assert_error!(
        err,
        DataError::TrailingBytes {
            expected: 3,
            extra: 2,
            ..
        },
        &lp
    );
}

#[test]
fn huge_dimensions() {
    let tmp = TempDir::new("huge");
    let path = tmp.path().join("x");
    std::fs::write(
        &path,
        idx_images(0x803, u32::MAX, u32::MAX, u32::MAX, &[0; 4]),
    )
    .unwrap();
    let err = read_idx_images(&path).unwrap_err();
    assert_error!(
        err,
        DataError::BadDimensions { .. } | DataError::TruncatedData { .. },
        &path
    );
}

#[test]
fn count_mismatch() {
    let (images, _) = tiny();
    let labels = idx_labels(0x801, 4, &[1, 2, 3, 4]);
    let tmp = TempDir::new("count");
    let (ip, lp) = write_split(tmp.path(), &images, &labels);
    let err = load(DatasetName::Mnist, Split::Test, tmp.path()).unwrap_err();
    assert_error!(
        err,
        DataError::CountMismatch {
            images: 3,
            labels: 4,
            ..
        },
        &ip
    );
    assert_names(&err, &lp);
}

#[test]
fn corrupt_gzip() {
    let (images, labels) = tiny();
    let tmp = TempDir::new("gzip");
    let (ip, _) = write_split(tmp.path(), &images, &labels);
    // Truncated gzip stream.
    let gz = gzip(&images);
    std::fs::write(&ip, &gz[..gz.len() / 2]).unwrap();
    let err = load(DatasetName::Mnist, Split::Test, tmp.path()).unwrap_err();
    assert_error!(err, DataError::Gzip { .. }, &ip);
    // Garbage after a valid gzip header.
    let mut garbage = gz[..10].to_vec();
    garbage.extend_from_slice(&[0xff; 40]);
    std::fs::write(&ip, &garbage).unwrap();
    let err = load(DatasetName::Mnist, Split::Test, tmp.path()).unwrap_err();
    assert_error!(err, DataError::Gzip { .. }, &ip);
    // A flipped CRC.
    let mut crc = gz.clone();
    let n = crc.len();
    crc[n - 8] ^= 0xff;
    std::fs::write(&ip, &crc).unwrap();
    let err = load(DatasetName::Mnist, Split::Test, tmp.path()).unwrap_err();
    assert!(matches!(err, DataError::Gzip { .. }), "{err:?}");
}

#[test]
fn label_out_of_range() {
    let (images, _) = tiny();
    let labels = idx_labels(0x801, 3, &[1, 10, 0]);
    let tmp = TempDir::new("label");
    let (_, lp) = write_split(tmp.path(), &images, &labels);
    let err = load(DatasetName::Mnist, Split::Test, tmp.path()).unwrap_err();
    assert_error!(
        err,
        DataError::BadLabel {
            index: 1,
            label: 10,
            ..
        },
        &lp
    );
}

#[test]
fn missing_file() {
    let tmp = TempDir::new("missing");
    let err = load(DatasetName::Mnist, Split::Train, tmp.path()).unwrap_err();
    let expected = tmp.path().join("train-images-idx3-ubyte.gz");
    assert_error!(err, DataError::NotFound { path } if *path == expected, &expected);
    assert!(err.to_string().contains("--data-dir"));
    // Images present, labels missing.
    let (images, labels) = tiny();
    write_split(tmp.path(), &images, &labels);
    std::fs::remove_file(tmp.path().join("t10k-labels-idx1-ubyte.gz")).unwrap();
    let err = load(DatasetName::Mnist, Split::Test, tmp.path()).unwrap_err();
    let expected = tmp.path().join("t10k-labels-idx1-ubyte.gz");
    assert!(
        matches!(err, DataError::NotFound { ref path } if *path == expected),
        "{err:?}"
    );
    let err = read_idx_images(&tmp.path().join("nope")).unwrap_err();
    assert!(matches!(err, DataError::NotFound { .. }), "{err:?}");
}

#[test]
fn data_dir_resolution() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| OsString::from(*v))
        }
    };
    let all: &[(&str, &str)] = &[
        ("EQPROP_DATA_DIR", "../shared/data"),
        ("XDG_CACHE_HOME", "/xdg"),
        ("HOME", "/home/u"),
    ];
    let root = Path::new("/given");
    assert_eq!(
        dataset_dir_with(Some(root), DatasetName::Mnist, env(all)),
        PathBuf::from("/given/mnist")
    );
    assert_eq!(
        dataset_dir_with(None, DatasetName::FashionMnist, env(all)),
        PathBuf::from("../shared/data/fashion-mnist")
    );
    let xdg: &[(&str, &str)] = &[
        ("EQPROP_DATA_DIR", ""),
        ("XDG_CACHE_HOME", "/xdg"),
        ("HOME", "/h"),
    ];
    assert_eq!(
        dataset_dir_with(None, DatasetName::Mnist, env(xdg)),
        PathBuf::from("/xdg/eqprop/mnist")
    );
    let home: &[(&str, &str)] = &[("HOME", "/home/u")];
    assert_eq!(
        dataset_dir_with(None, DatasetName::Mnist, env(home)),
        PathBuf::from("/home/u/.cache/eqprop/mnist")
    );
    let none = dataset_dir_with(None, DatasetName::Mnist, env(&[]));
    assert!(none.ends_with("eqprop/mnist"), "{none:?}");
    assert_eq!(
        dataset_dir(Some(root), DatasetName::FashionMnist),
        PathBuf::from("/given/fashion-mnist")
    );
}

#[test]
fn dataset_names() {
    for name in DatasetName::ALL {
        assert_eq!(name.to_string().parse::<DatasetName>(), Ok(name));
    }
    assert_eq!("mnist".parse(), Ok(DatasetName::Mnist));
    assert_eq!("fashion-mnist".parse(), Ok(DatasetName::FashionMnist));
    assert_eq!(DatasetName::FashionMnist.to_string(), "fashion-mnist");
    let err = "cifar".parse::<DatasetName>().unwrap_err();
    assert!(err.to_string().contains("cifar"));
    assert_eq!(Split::Train.to_string(), "train");
    assert_eq!(Split::Test.file_prefix(), "t10k");
}
