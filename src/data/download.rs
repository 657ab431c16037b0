//! Downloading the data files: mirrors, official checksums, atomic verified writes.

use std::fs::{self, File, OpenOptions};
#[cfg(feature = "download")]
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(feature = "download")]
use std::time::Duration;

#[cfg(feature = "download")]
use indicatif::{ProgressBar, ProgressStyle};
#[cfg(feature = "download")]
use md5::{Digest, Md5};

use super::cifar::{CIFAR_ARCHIVE, CIFAR_ARCHIVE_MD5, CIFAR_MIRROR, ensure_cifar};
use super::{DataError, Dataset, DatasetName, FILE_NAMES, Split, existing_file, load};

/// The canonical MNIST mirror (base URL of the `.gz` files).
pub const MNIST_MIRROR: &str = "https://ossci-datasets.s3.amazonaws.com/mnist/";
/// The canonical Fashion-MNIST mirror (base URL of the `.gz` files).
pub const FASHION_MNIST_MIRROR: &str =
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/";

/// Official MD5 checksums of the MNIST `.gz` files, by file name without `.gz`.
const MNIST_MD5: [(&str, &str); 4] = [
    (
        "train-images-idx3-ubyte",
        "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    ),
    (
        "train-labels-idx1-ubyte",
        "d53e105ee54ea40749a09fcbcd1e9432",
    ),
    ("t10k-images-idx3-ubyte", "9fb629c4189551a2d022fa330f9573f3"),
    ("t10k-labels-idx1-ubyte", "ec29112dd5afa0611ce80d1b7f02629c"),
];

/// Official MD5 checksums of the Fashion-MNIST `.gz` files, by file name without `.gz`.
const FASHION_MNIST_MD5: [(&str, &str); 4] = [
    (
        "train-images-idx3-ubyte",
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    ),
    (
        "train-labels-idx1-ubyte",
        "25c81989df183df01b3e8a0aad5dffbe",
    ),
    ("t10k-images-idx3-ubyte", "bef4ecab320f06d8554ea6380940ec79"),
    ("t10k-labels-idx1-ubyte", "bb300cfdad3c16e7a12a480ee83cd310"),
];

/// The official MD5 (lowercase hex) of `file` (a name like `train-images-idx3-ubyte`,
/// with or without `.gz`, or CIFAR-10's `cifar-10-binary.tar.gz`) of the data set `name`;
/// `None` for an unknown file name.
pub fn official_md5(name: DatasetName, file: &str) -> Option<&'static str> {
    let table = match name {
        DatasetName::Mnist => &MNIST_MD5,
        DatasetName::FashionMnist => &FASHION_MNIST_MD5,
        DatasetName::Cifar10 => {
            return (file == CIFAR_ARCHIVE).then_some(CIFAR_ARCHIVE_MD5);
        }
    };
    let stem = file.strip_suffix(".gz").unwrap_or(file);
    table.iter().find(|(f, _)| *f == stem).map(|(_, md5)| *md5)
}

/// The base URL that `name`'s `.gz` files are downloaded from; it always ends with `/`.
///
/// A mirror given as `mirror` (`--mirror`), else in `$EQPROP_MIRROR` (ignored when empty),
/// serves every data set, each in the folder named after it, as in a data root:
/// `<mirror>/mnist/<file>.gz`, `<mirror>/fashion-mnist/<file>.gz` and
/// `<mirror>/cifar-10/cifar-10-binary.tar.gz`. Without one, each data set comes from its
/// canonical mirror, [`MNIST_MIRROR`], [`FASHION_MNIST_MIRROR`] or
/// [`CIFAR_MIRROR`](super::CIFAR_MIRROR).
pub fn mirror_base(name: DatasetName, mirror: Option<&str>) -> String {
    let env = std::env::var("EQPROP_MIRROR")
        .ok()
        .filter(|m| !m.is_empty());
    match mirror.map(str::to_string).or(env) {
        Some(base) => format!("{}/{}/", base.trim_end_matches('/'), name.as_str()),
        None => match name {
            DatasetName::Mnist => MNIST_MIRROR.to_string(),
            DatasetName::FashionMnist => FASHION_MNIST_MIRROR.to_string(),
            DatasetName::Cifar10 => CIFAR_MIRROR.to_string(),
        },
    }
}

/// Makes sure the four IDX files of `name` exist in `dir` (each as `.gz` or raw); for CIFAR-10,
/// its batch files ([`ensure_cifar`](super::ensure_cifar), which downloads and unpacks the archive).
///
/// Files already present are used as they are: they are never checked or downloaded again
/// (delete one to have it downloaded anew). Missing files are downloaded as `.gz` from
/// [`mirror_base`] (`mirror`, else `$EQPROP_MIRROR`, else the canonical mirror) and kept only
/// if their MD5 is the official one ([`official_md5`]); each is written atomically.
///
/// A file whose checksum does not match is not kept, and the other missing files are still
/// downloaded; any other failure (no network, an HTTP error) stops at that file. Then returns
/// [`DataError::Unavailable`], which lists the full path of every file still missing and the
/// URL to fetch it from, with the first failure as its source.
pub fn ensure_files(name: DatasetName, dir: &Path, mirror: Option<&str>) -> Result<(), DataError> {
    ensure_files_checked(name, dir, mirror, |file| {
        official_md5(name, file).map(str::to_string)
    })
}

/// [`ensure_files`] with the MD5 a downloaded file must have given by `expected_md5` (called
/// with a file name without `.gz`, it returns lowercase or uppercase hex; `None` downloads that
/// file unchecked) instead of the official checksums: for a mirror that serves other versions
/// of the files, such as the tests' sample. For CIFAR-10 it is asked about `cifar-10-binary.tar.gz`.
pub fn ensure_files_checked(
    name: DatasetName,
    dir: &Path,
    mirror: Option<&str>,
    expected_md5: impl Fn(&str) -> Option<String>,
) -> Result<(), DataError> {
    if name == DatasetName::Cifar10 {
        let md5 = expected_md5(CIFAR_ARCHIVE).unwrap_or_default();
        return ensure_cifar(dir, mirror, &md5);
    }
    let missing: Vec<&str> = FILE_NAMES
        .iter()
        .copied()
        .filter(|f| existing_file(dir, f).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let base = mirror_base(name, mirror);
    let plan: Vec<(PathBuf, String)> = missing
        .iter()
        .map(|f| (dir.join(format!("{f}.gz")), format!("{base}{f}.gz")))
        .collect();
    let mut still_missing = Vec::new();
    let mut first_error = None;
    for (i, (path, url)) in plan.iter().enumerate() {
        let md5 = expected_md5(missing[i]).unwrap_or_default();
        let Err(e) = download_verified(url, path, &md5) else {
            continue;
        };
        still_missing.push((path.clone(), url.clone()));
        let go_on = matches!(e, DataError::Checksum { .. });
        first_error.get_or_insert(e);
        if !go_on {
            still_missing.extend_from_slice(&plan[i + 1..]);
            break;
        }
    }
    match first_error {
        None => Ok(()),
        Some(source) => Err(DataError::Unavailable {
            missing: still_missing,
            source: Box::new(source),
        }),
    }
}

/// [`ensure_files`] for `name`, then [`load`] of `split` from `dir`.
pub fn load_or_download(
    name: DatasetName,
    split: Split,
    dir: &Path,
    mirror: Option<&str>,
) -> Result<Dataset, DataError> {
    ensure_files(name, dir, mirror)?;
    load(name, split, dir)
}

/// Removes the temporary file on drop unless it was renamed into place.
pub(super) struct TempFile {
    pub(super) path: PathBuf,
    pub(super) keep: bool,
}

impl TempFile {
    /// The temporary file `path`, to be removed unless kept.
    pub(super) fn new(path: PathBuf) -> Self {
        Self { path, keep: false }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A fresh temporary path next to `dest` (same folder, so the final rename is atomic).
pub(super) fn temp_path(dest: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = dest
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "download".to_string());
    dest.with_file_name(format!(".{name}.{}.{n}.part", std::process::id()))
}

/// Downloads `url` to `dest`, verifying that the bytes have MD5 `expected_md5` (hex).
///
/// The bytes go to a temporary file in `dest`'s folder, which is fsynced and renamed
/// to `dest` only when the checksum matches; on any error no file is left behind (a
/// mismatch is [`DataError::Checksum`], whose message says what to do). An empty
/// `expected_md5` skips the check. Shows a progress bar on a terminal.
pub fn download_verified(url: &str, dest: &Path, expected_md5: &str) -> Result<(), DataError> {
    let tmp_path = temp_path(dest);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp_path)
        .map_err(|e| DataError::io(&tmp_path, e))?;
    let mut tmp = TempFile::new(tmp_path);
    let actual = fetch_into(url, dest, file, &tmp.path)?;
    let expected = expected_md5.to_ascii_lowercase();
    if !expected.is_empty() && actual != expected {
        return Err(DataError::Checksum {
            url: url.to_string(),
            path: dest.to_path_buf(),
            expected,
            actual,
        });
    }
    fs::rename(&tmp.path, dest).map_err(|e| DataError::io(dest, e))?;
    tmp.keep = true;
    sync_parent(dest);
    Ok(())
}

/// Best-effort fsync of `path`'s folder, so the rename survives a crash.
fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent() {
        let _ = File::open(parent).and_then(|d| d.sync_all());
    }
}

#[cfg(feature = "download")]
/// The HTTP agent: bounded connect and read times, HTTP errors as errors.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .build()
        .new_agent()
}

#[cfg(feature = "download")]
/// Turns a ureq error into a [`DataError`] about downloading `url` to `dest`.
fn http_error(url: &str, dest: &Path, e: ureq::Error) -> DataError {
    match e {
        ureq::Error::StatusCode(status) => DataError::HttpStatus {
            url: url.to_string(),
            path: dest.to_path_buf(),
            status,
        },
        other => DataError::Http {
            url: url.to_string(),
            path: dest.to_path_buf(),
            source: Box::new(other),
        },
    }
}

#[cfg(feature = "download")]
/// Streams the body of `url` into `file` (synced at the end); returns its MD5 in hex.
fn fetch_into(url: &str, dest: &Path, mut file: File, tmp: &Path) -> Result<String, DataError> {
    let mut response = agent()
        .get(url)
        .call()
        .map_err(|e| http_error(url, dest, e))?;
    let bar = progress_bar(response.body().content_length(), dest);
    let mut reader = response.body_mut().as_reader();
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| http_error(url, dest, ureq::Error::Io(e)))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])
            .map_err(|e| DataError::io(tmp, e))?;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    file.sync_all().map_err(|e| DataError::io(tmp, e))?;
    Ok(hex(&hasher.finalize()))
}

#[cfg(feature = "download")]
/// A progress bar for a download of `len` bytes (a spinner when the length is unknown).
fn progress_bar(len: Option<u64>, dest: &Path) -> ProgressBar {
    let msg = dest
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (bar, template) = match len {
        Some(len) => (
            ProgressBar::new(len),
            "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        ),
        None => (
            ProgressBar::new_spinner(),
            "{spinner} {msg} {bytes} ({bytes_per_sec})",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.with_message(format!("downloading {msg}"))
}

/// Without the `download` feature nothing is fetched: the error names the file to put in place.
#[cfg(not(feature = "download"))]
fn fetch_into(url: &str, dest: &Path, _: File, _: &Path) -> Result<String, DataError> {
    Err(DataError::NotBuilt {
        url: url.to_string(),
        path: dest.to_path_buf(),
    })
}

/// Lowercase hex of `bytes`.
#[cfg(feature = "download")]
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
