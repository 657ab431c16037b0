//! CIFAR-10 in its binary version (<https://www.cs.toronto.edu/~kriz/cifar.html>).
//!
//! A batch file is a sequence of [`CIFAR_RECORD_BYTES`]-byte records: one label byte (0-9), then
//! 3072 pixel bytes, the 1024 red values of the 32 x 32 image row-major, then the 1024 green,
//! then the 1024 blue. The training split is `data_batch_1.bin` .. `data_batch_5.bin` in that
//! order (50,000 images), the test split `test_batch.bin` (10,000). They come in the archive
//! [`CIFAR_ARCHIVE`], under the folder [`CIFAR_ARCHIVE_FOLDER`].
//!
//! The data set's folder (`<data root>/cifar-10/`) holds the batch files, either directly or in
//! `cifar-10-batches-bin/` as `tar xzf cifar-10-binary.tar.gz` leaves them. With the `download`
//! feature, a missing set is fetched as the archive (MD5-checked) and unpacked into the folder.
//!
//! Images become channels-last f32 in \[0, 1\] (see [`Dataset`]): a byte `v` at plane `c`,
//! position `y * 32 + x` of the record lands at `(y * 32 + x) * 3 + c` of the image, as `v / 255`.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::{DataError, Dataset, DatasetName, Split, download_verified, mirror_base};

/// The side of a CIFAR-10 image, in pixels.
pub const CIFAR_SIDE: usize = 32;
/// The values per CIFAR-10 pixel: red, green, blue.
pub const CIFAR_CHANNELS: usize = 3;
/// The pixel bytes of one record: three planes of `32 * 32`.
const PIXEL_BYTES: usize = CIFAR_SIDE * CIFAR_SIDE * CIFAR_CHANNELS;
/// The bytes of one record: the label byte, then [`CIFAR_SIDE`]² bytes per channel.
pub const CIFAR_RECORD_BYTES: usize = 1 + PIXEL_BYTES;

/// The most bytes a batch file may hold: 64 MiB, about twice an official batch (10,000 records,
/// 30,730,000 bytes). A larger file is [`DataError::TooLarge`], refused before it is read, so
/// that reading a split allocates at most about 1.3 GB of f32 images.
pub const MAX_CIFAR_BATCH_BYTES: usize = 1 << 26;

/// The training batches, in the order they are concatenated.
pub const CIFAR_TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// The test batch.
pub const CIFAR_TEST_FILE: &str = "test_batch.bin";
/// The class names, one a line (unpacked with the batches; not needed to read them).
#[cfg(feature = "download")]
const CIFAR_META_FILE: &str = "batches.meta.txt";

/// The official archive of the binary version.
pub const CIFAR_ARCHIVE: &str = "cifar-10-binary.tar.gz";
/// The official MD5 of [`CIFAR_ARCHIVE`] (lowercase hex).
pub const CIFAR_ARCHIVE_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";
/// The folder inside the archive that holds the batch files.
pub const CIFAR_ARCHIVE_FOLDER: &str = "cifar-10-batches-bin";
/// The canonical place of [`CIFAR_ARCHIVE`] (base URL).
pub const CIFAR_MIRROR: &str = "https://www.cs.toronto.edu/~kriz/";

/// The batch files of `split`.
fn split_files(split: Split) -> &'static [&'static str] {
    match split {
        Split::Train => &CIFAR_TRAIN_FILES,
        Split::Test => std::slice::from_ref(&CIFAR_TEST_FILE),
    }
}

/// Every batch file, training then test.
fn all_files() -> impl Iterator<Item = &'static str> {
    CIFAR_TRAIN_FILES
        .into_iter()
        .chain(std::iter::once(CIFAR_TEST_FILE))
}

/// Checks that a batch of `len` bytes is a positive whole number of records.
fn check_len(len: u64, path: &Path) -> Result<(), DataError> {
    if len == 0 || !len.is_multiple_of(CIFAR_RECORD_BYTES as u64) {
        return Err(DataError::CifarLength {
            path: path.to_path_buf(),
            len,
            record: CIFAR_RECORD_BYTES,
        });
    }
    Ok(())
}

/// Parses one batch file's content `bytes`; `path` only names the file in errors.
///
/// The length must be a positive multiple of [`CIFAR_RECORD_BYTES`] ([`DataError::CifarLength`])
/// and every label at most 9 ([`DataError::BadLabel`], whose index is the record's). The images
/// are 32 x 32 x 3, channels-last, each byte `v` becoming `v / 255`.
pub fn parse_cifar_batch(bytes: &[u8], path: &Path) -> Result<Dataset, DataError> {
    check_len(bytes.len() as u64, path)?;
    let n = bytes.len() / CIFAR_RECORD_BYTES;
    let lut: [f32; 256] = std::array::from_fn(|b| b as f32 / 255.0);
    let mut images = Vec::with_capacity(n * PIXEL_BYTES);
    let mut labels = Vec::with_capacity(n);
    for (index, record) in bytes.chunks_exact(CIFAR_RECORD_BYTES).enumerate() {
        let (label, planes) = (record[0], &record[1..]);
        if label > 9 {
            return Err(DataError::BadLabel {
                path: path.to_path_buf(),
                index,
                label,
            });
        }
        labels.push(label);
        let plane = CIFAR_SIDE * CIFAR_SIDE;
        let (red, rest) = planes.split_at(plane);
        let (green, blue) = rest.split_at(plane);
        for ((&r, &g), &b) in red.iter().zip(green).zip(blue) {
            images.extend([lut[r as usize], lut[g as usize], lut[b as usize]]);
        }
    }
    Ok(Dataset {
        images: images.into(),
        labels,
        rows: CIFAR_SIDE,
        cols: CIFAR_SIDE,
        channels: CIFAR_CHANNELS,
        targets: Vec::new(),
    })
}

/// Reads one batch file (raw, as in the archive) with [`parse_cifar_batch`].
///
/// Its size is checked before it is read: more than [`MAX_CIFAR_BATCH_BYTES`] is
/// [`DataError::TooLarge`], a size that is not a whole number of records
/// [`DataError::CifarLength`].
pub fn read_cifar_batch(path: &Path) -> Result<Dataset, DataError> {
    let file = File::open(path).map_err(|e| DataError::reading(path, e))?;
    let len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
    let too_large = || DataError::TooLarge {
        path: path.to_path_buf(),
        limit: MAX_CIFAR_BATCH_BYTES,
    };
    if len > MAX_CIFAR_BATCH_BYTES as u64 {
        return Err(too_large());
    }
    check_len(len, path)?;
    let mut bytes = Vec::with_capacity(len as usize);
    let limit = MAX_CIFAR_BATCH_BYTES as u64 + 1;
    let read = file.take(limit).read_to_end(&mut bytes);
    read.map_err(|e| DataError::io(path, e))?;
    if bytes.len() > MAX_CIFAR_BATCH_BYTES {
        return Err(too_large());
    }
    parse_cifar_batch(&bytes, path)
}

/// Where batch `file` is in the data set's folder `dir`: `dir/file`, else
/// `dir/cifar-10-batches-bin/file`; `None` if in neither.
pub fn cifar_file(dir: &Path, file: &str) -> Option<PathBuf> {
    [dir.join(file), dir.join(CIFAR_ARCHIVE_FOLDER).join(file)]
        .into_iter()
        .find(|p| p.is_file())
}

/// The batch files of either split missing from `dir` (see [`cifar_file`]).
pub fn missing_cifar_files(dir: &Path) -> Vec<&'static str> {
    all_files()
        .filter(|f| cifar_file(dir, f).is_none())
        .collect()
}

/// The error for the batch files `missing` from `dir`, with the download failure if any.
fn missing_error(dir: &Path, missing: &[&str], source: Option<DataError>) -> DataError {
    DataError::CifarMissing {
        dir: dir.to_path_buf(),
        missing: missing.iter().map(|f| f.to_string()).collect(),
        source: source.map(Box::new),
    }
}

/// Reads `split` from the data set's folder `dir`: the five training batches concatenated in
/// order, or the test batch. Missing files are [`DataError::CifarMissing`], which names them and
/// says where to get the archive and where to unpack it; nothing is downloaded here.
pub fn load_cifar(split: Split, dir: &Path) -> Result<Dataset, DataError> {
    let files = split_files(split);
    let missing: Vec<&str> = files
        .iter()
        .copied()
        .filter(|f| cifar_file(dir, f).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(missing_error(dir, &missing, None));
    }
    let mut data = Dataset {
        channels: CIFAR_CHANNELS,
        ..Dataset::empty(CIFAR_SIDE, CIFAR_SIDE)
    };
    for file in files {
        let path = cifar_file(dir, file).ok_or_else(|| DataError::NotFound {
            path: dir.join(file),
        })?;
        data.extend(&read_cifar_batch(&path)?);
    }
    Ok(data)
}

/// Makes sure every batch file is in `dir` (see [`cifar_file`]).
///
/// Files in place are used as they are. Otherwise the archive `dir/cifar-10-binary.tar.gz` is
/// unpacked ([`extract_cifar_archive`]), after downloading it from [`mirror_base`] (`mirror`,
/// else `$EQPROP_MIRROR`, else [`CIFAR_MIRROR`]) if it is not there; the download is kept only
/// if its MD5 is `expected_md5` (empty: unchecked). Without the `download` feature nothing is
/// downloaded or unpacked: missing files are [`DataError::CifarMissing`], as is a failed
/// download (with the failure as its source).
pub fn ensure_cifar(dir: &Path, mirror: Option<&str>, expected_md5: &str) -> Result<(), DataError> {
    let missing = missing_cifar_files(dir);
    if missing.is_empty() {
        return Ok(());
    }
    if !cfg!(feature = "download") {
        return Err(missing_error(dir, &missing, None));
    }
    let archive = dir.join(CIFAR_ARCHIVE);
    if !archive.is_file() {
        fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        let url = format!(
            "{}{CIFAR_ARCHIVE}",
            mirror_base(DatasetName::Cifar10, mirror)
        );
        if let Err(e) = download_verified(&url, &archive, expected_md5) {
            return Err(missing_error(dir, &missing, Some(e)));
        }
    }
    extract_cifar_archive(&archive, dir)
}

/// Unpacks the batch files (and `batches.meta.txt`) of the archive `archive` (a gzip-compressed
/// tar, as [`CIFAR_ARCHIVE`]) straight into `dir`, each written to a temporary file and renamed
/// into place when whole. Only those names are taken, from the archive's top level or its
/// `cifar-10-batches-bin/` folder, so nothing is written outside `dir`; an entry larger than
/// [`MAX_CIFAR_BATCH_BYTES`] is [`DataError::TooLarge`]. An archive that lacks a batch file is
/// [`DataError::ArchiveIncomplete`]; one that cannot be read, [`DataError::Archive`].
#[cfg(feature = "download")]
pub fn extract_cifar_archive(archive: &Path, dir: &Path) -> Result<(), DataError> {
    use flate2::bufread::MultiGzDecoder;
    use std::io::BufReader;

    let file = File::open(archive).map_err(|e| DataError::reading(archive, e))?;
    let gz = MultiGzDecoder::new(BufReader::with_capacity(1 << 16, file));
    let mut tar = tar::Archive::new(gz);
    let bad = |source| DataError::Archive {
        path: archive.to_path_buf(),
        source,
    };
    fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    for entry in tar.entries().map_err(bad)? {
        let entry = entry.map_err(bad)?;
        let Some(name) = wanted(&entry.path().map_err(bad)?) else {
            continue;
        };
        if entry.size() > MAX_CIFAR_BATCH_BYTES as u64 {
            return Err(DataError::TooLarge {
                path: archive.join(name),
                limit: MAX_CIFAR_BATCH_BYTES,
            });
        }
        write_atomically(&dir.join(name), entry, archive)?;
    }
    let missing = missing_cifar_files(dir);
    if !missing.is_empty() {
        return Err(DataError::ArchiveIncomplete {
            path: archive.to_path_buf(),
            missing: missing.iter().map(|f| f.to_string()).collect(),
        });
    }
    Ok(())
}

/// The name to unpack an archive entry at `path` under, if it is one of the data set's files at
/// the archive's top level or in its `cifar-10-batches-bin/` folder (`./` prefixes allowed).
#[cfg(feature = "download")]
fn wanted(path: &Path) -> Option<&'static str> {
    use std::path::Component;
    let mut parts = Vec::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::Normal(p) => parts.push(p.to_str()?),
            _ => return None,
        }
    }
    let name = match parts[..] {
        [name] | [CIFAR_ARCHIVE_FOLDER, name] => name,
        _ => return None,
    };
    let mut known = all_files().chain(std::iter::once(CIFAR_META_FILE));
    known.find(|&f| f == name)
}

/// Copies the archive entry `entry` into `dest`: through a temporary file in the same folder,
/// fsynced and renamed into place once whole, so that `dest` never holds part of a file.
/// `archive` names the archive in read errors.
#[cfg(feature = "download")]
fn write_atomically(dest: &Path, mut entry: impl Read, archive: &Path) -> Result<(), DataError> {
    use super::download::{TempFile, temp_path};
    use std::io::Write;

    let mut tmp = TempFile::new(temp_path(dest));
    let mut file = File::create(&tmp.path).map_err(|e| DataError::io(&tmp.path, e))?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match entry.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(DataError::Archive {
                    path: archive.to_path_buf(),
                    source,
                });
            }
        };
        file.write_all(&buf[..n])
            .map_err(|e| DataError::io(&tmp.path, e))?;
    }
    file.sync_all().map_err(|e| DataError::io(&tmp.path, e))?;
    fs::rename(&tmp.path, dest).map_err(|e| DataError::io(dest, e))?;
    tmp.keep = true;
    Ok(())
}

/// Without the `download` feature there is no tar reader: the archive must be unpacked by hand.
#[cfg(not(feature = "download"))]
pub fn extract_cifar_archive(archive: &Path, dir: &Path) -> Result<(), DataError> {
    let _ = archive;
    Err(missing_error(dir, &missing_cifar_files(dir), None))
}
