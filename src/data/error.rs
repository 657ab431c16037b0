//! The error type of the data module: every variant names the file it is about.

use std::path::{Path, PathBuf};

/// Everything that can go wrong while locating, downloading, or reading a data set.
///
/// Every variant names the file (or files) it is about, so that its `Display`
/// tells the user which file to fix.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A data file does not exist.
    #[error(
        "data file not found: {} (download the data set, or point --data-dir / $EQPROP_DATA_DIR \
         at a folder holding `mnist/` and `fashion-mnist/` with the IDX files)",
        .path.display()
    )]
    NotFound {
        /// The path that was looked for.
        path: PathBuf,
    },

    /// An I/O error while reading, writing, or creating a file or folder.
    #[error("I/O error on {}: {source}", .path.display())]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A file starts with the gzip magic bytes but does not decompress.
    #[error("corrupt gzip data in {}: {source}", .path.display())]
    Gzip {
        /// The file concerned.
        path: PathBuf,
        /// The decompression error.
        #[source]
        source: std::io::Error,
    },

    /// The IDX magic number is not the expected one.
    #[error(
        "{}: bad IDX magic number {found:#010x} (expected {expected:#010x})",
        .path.display()
    )]
    BadMagic {
        /// The file concerned.
        path: PathBuf,
        /// The magic number this kind of file must have.
        expected: u32,
        /// The magic number found.
        found: u32,
    },

    /// The file is shorter than its IDX header.
    #[error(
        "{}: truncated IDX header ({len} bytes, the header needs {needed})",
        .path.display()
    )]
    TruncatedHeader {
        /// The file concerned.
        path: PathBuf,
        /// The (decompressed) length of the file.
        len: usize,
        /// The length of the header.
        needed: usize,
    },

    /// The header's dimensions describe more data than [`MAX_IDX_BYTES`](super::MAX_IDX_BYTES)
    /// (or than can be addressed).
    #[error(
        "{}: IDX dimensions {dims:?} are too large (at most {} data bytes are read)",
        .path.display(),
        super::MAX_IDX_BYTES
    )]
    BadDimensions {
        /// The file concerned.
        path: PathBuf,
        /// The dimensions from the header.
        dims: Vec<u32>,
    },

    /// The header announces images with no pixels or with more than
    /// [`MAX_IMAGE_SIDE`](super::MAX_IMAGE_SIDE) rows or columns.
    #[error(
        "{}: IDX images of {rows}x{cols} pixels (each side must be 1 to {})",
        .path.display(),
        super::MAX_IMAGE_SIDE
    )]
    BadImageSize {
        /// The file concerned.
        path: PathBuf,
        /// The rows per image from the header.
        rows: usize,
        /// The columns per image from the header.
        cols: usize,
    },

    /// A file holds more bytes (decompressed) than the reader accepts.
    #[error("{}: more than {limit} bytes (decompressed), too large to read", .path.display())]
    TooLarge {
        /// The file concerned.
        path: PathBuf,
        /// The most bytes accepted.
        limit: usize,
    },

    /// The data after the header is shorter than the header says.
    #[error(
        "{}: truncated IDX data ({actual} bytes after the header, expected {expected})",
        .path.display()
    )]
    TruncatedData {
        /// The file concerned.
        path: PathBuf,
        /// The number of data bytes the header announces.
        expected: usize,
        /// The number of data bytes present.
        actual: usize,
    },

    /// The data after the header is longer than the header says.
    #[error(
        "{}: {}{extra} unexpected trailing bytes after the IDX data ({expected} bytes expected)",
        .path.display(),
        if *.at_least { "at least " } else { "" }
    )]
    TrailingBytes {
        /// The file concerned.
        path: PathBuf,
        /// The number of data bytes the header announces.
        expected: usize,
        /// The number of bytes beyond that (counted up to a limit: see `at_least`).
        extra: usize,
        /// Whether reading stopped after `extra` trailing bytes, with more possibly following.
        at_least: bool,
    },

    /// The images file and the labels file hold different numbers of items.
    #[error(
        "{} holds {images} images but {} holds {labels} labels",
        .images_path.display(),
        .labels_path.display()
    )]
    CountMismatch {
        /// The images file.
        images_path: PathBuf,
        /// The labels file.
        labels_path: PathBuf,
        /// The image count.
        images: usize,
        /// The label count.
        labels: usize,
    },

    /// A label is outside 0..=9.
    #[error("{}: label {label} at index {index} is out of range 0..=9", .path.display())]
    BadLabel {
        /// The labels file.
        path: PathBuf,
        /// The position of the bad label.
        index: usize,
        /// The bad label.
        label: u8,
    },

    /// A CIFAR-10 batch file whose length is not a positive whole number of records.
    #[error(
        "{}: {len} bytes is not a positive whole number of CIFAR-10 records of {record} bytes \
         (1 label byte, then 3072 pixel bytes)",
        .path.display()
    )]
    CifarLength {
        /// The batch file.
        path: PathBuf,
        /// Its length in bytes.
        len: u64,
        /// The bytes of one record.
        record: usize,
    },

    /// CIFAR-10 batch files are missing (and, if `source` is set, could not be downloaded).
    #[error("{}", cifar_missing(.dir, .missing, .source.as_deref()))]
    CifarMissing {
        /// The data set's folder.
        dir: PathBuf,
        /// The names of the missing batch files.
        missing: Vec<String>,
        /// Why the download failed, if one was tried.
        #[source]
        source: Option<Box<DataError>>,
    },

    /// A tar archive (of CIFAR-10) that cannot be read: corrupt gzip data or tar headers.
    #[error("reading the archive {}: {source}", .path.display())]
    Archive {
        /// The archive.
        path: PathBuf,
        /// The read error.
        #[source]
        source: std::io::Error,
    },

    /// The CIFAR-10 archive lacks some batch files.
    #[error(
        "{} does not hold the CIFAR-10 files {} (in cifar-10-batches-bin/): is it the official \
         cifar-10-binary.tar.gz (MD5 {})?",
        .path.display(),
        .missing.join(", "),
        super::CIFAR_ARCHIVE_MD5
    )]
    ArchiveIncomplete {
        /// The archive.
        path: PathBuf,
        /// The batch files it lacks.
        missing: Vec<String>,
    },

    /// The server answered a download with an HTTP error status.
    #[error("downloading {url} to {}: HTTP status {status}", .path.display())]
    HttpStatus {
        /// The URL requested.
        url: String,
        /// The destination file.
        path: PathBuf,
        /// The HTTP status code.
        status: u16,
    },

    /// The download failed in transport (no network, refused connection, timeout, ...).
    #[error("downloading {url} to {}: {source}", .path.display())]
    Http {
        /// The URL requested.
        url: String,
        /// The destination file.
        path: PathBuf,
        /// The transport error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// This build cannot download (it lacks the `download` feature).
    #[error(
        "{} is missing, and this eqprop was built without the `download` feature: download {url} \
         and put it there, or build with `--features download`",
        .path.display()
    )]
    NotBuilt {
        /// The URL the file comes from.
        url: String,
        /// Where it belongs.
        path: PathBuf,
    },

    /// A downloaded file does not have the expected MD5 checksum (it was not kept).
    #[error(
        "downloaded {url} for {}: MD5 mismatch (got {actual}, expected {expected}), so the file \
         was not kept. Check that the mirror (--mirror / $EQPROP_MIRROR) serves the official \
         files, or put the official file at {} yourself: files already in place are used as \
         they are, never checked",
        .path.display(),
        .path.display()
    )]
    Checksum {
        /// The URL downloaded.
        url: String,
        /// The destination file (not written).
        path: PathBuf,
        /// The expected MD5, lowercase hex.
        expected: String,
        /// The MD5 of the downloaded bytes, lowercase hex.
        actual: String,
    },

    /// Some data files are missing and could not be downloaded.
    #[error(
        "could not download the missing data files: {source}\n\
         Put these files in place by hand (or fix the network / --mirror / $EQPROP_MIRROR):\n{}",
        manual_list(.missing)
    )]
    Unavailable {
        /// Each missing file with the URL it can be fetched from.
        missing: Vec<(PathBuf, String)>,
        /// The first download failure.
        #[source]
        source: Box<DataError>,
    },
}

/// Formats the `(path, url)` list of [`DataError::Unavailable`], one per line.
fn manual_list(missing: &[(PathBuf, String)]) -> String {
    let lines: Vec<String> = missing
        .iter()
        .map(|(path, url)| format!("  {}  <-  {url}", path.display()))
        .collect();
    lines.join("\n")
}

/// The message of [`DataError::CifarMissing`]: what is missing, why, and how to put it in place.
/// The archive is named at its official place, whatever mirror a failed download tried.
fn cifar_missing(dir: &Path, missing: &[String], source: Option<&DataError>) -> String {
    let why = match source {
        Some(e) => format!(", and downloading them failed: {e}"),
        None => String::new(),
    };
    let unpack = match cfg!(feature = "download") {
        true => {
            "put the archive in that folder (it is unpacked on the next run) or unpack it there"
        }
        false => "unpack it there (this eqprop, built without the `download` feature, cannot)",
    };
    format!(
        "CIFAR-10 files missing from {dir}: {files}{why}.\n\
         Download {mirror}{archive} (MD5 {md5}) and {unpack}: `tar xzf {archive} -C {dir}` \
         leaves the batch files in {dir}/{folder}/, where they are read.",
        dir = dir.display(),
        mirror = super::CIFAR_MIRROR,
        files = missing.join(", "),
        md5 = super::CIFAR_ARCHIVE_MD5,
        archive = super::CIFAR_ARCHIVE,
        folder = super::cifar::CIFAR_ARCHIVE_FOLDER,
    )
}

impl DataError {
    /// A [`DataError::Io`] about `path`.
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Like [`DataError::io`], but a missing file becomes [`DataError::NotFound`].
    pub(crate) fn reading(path: &Path, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            return DataError::NotFound {
                path: path.to_path_buf(),
            };
        }
        DataError::io(path, source)
    }
}
