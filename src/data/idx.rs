//! Reading IDX files (the MNIST file format), gzip-compressed or raw.
//!
//! The header is read first; then at most the data it announces plus one byte (to detect
//! trailing bytes) is read, and nothing is allocated beyond that. The header itself is bounded:
//! at most [`MAX_IDX_BYTES`] of data and images of at most [`MAX_IMAGE_SIDE`] pixels a side. A
//! raw (uncompressed) file is compared with its size before its data is read, so that a wrong
//! size fails without reading it; a gzip file is decompressed only as far as needed.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use flate2::bufread::MultiGzDecoder;

use super::DataError;

/// The magic number of an IDX file of unsigned bytes with 3 dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// The magic number of an IDX file of unsigned bytes with 1 dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// The most data bytes (after the header) an IDX file may announce: 1 GiB, about 20 times the
/// MNIST training images (47 MB). A header announcing more is [`DataError::BadDimensions`].
pub const MAX_IDX_BYTES: usize = 1 << 30;

/// The largest number of rows, and of columns, an IDX image may have (MNIST's are 28 x 28).
/// A header announcing larger (or empty) images is [`DataError::BadImageSize`].
pub const MAX_IMAGE_SIDE: usize = 1024;

/// How many trailing bytes are counted for [`DataError::TrailingBytes`] before reading stops.
const TRAILING_COUNT_LIMIT: usize = 1 << 16;

/// How much more than its compressed size a gzip file's data is assumed to be when its first
/// buffer is allocated (MNIST's images: about 5; the buffer grows if needed, up to the header's
/// announced size).
const GZIP_RATIO_HINT: u64 = 8;

/// The first two bytes of a gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Reads a whole file of at most [`MAX_IDX_BYTES`] plus a 16-byte header (decompressed),
/// decompressing it if it starts with the gzip magic bytes; a longer one is
/// [`DataError::TooLarge`], found without reading further.
///
/// Whether the file is compressed is decided by its content, never by its name.
pub fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>, DataError> {
    let limit = MAX_IDX_BYTES + 16;
    let (reader, len) = open(path)?;
    let too_large = || DataError::TooLarge {
        path: path.to_path_buf(),
        limit,
    };
    let mut source = Source::new(reader, Some(len), path)?;
    if source.raw_len.is_some_and(|l| l > limit as u64) {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(source.capacity_hint(limit));
    let read = source
        .stream()
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes);
    read.map_err(|e| source.error(e))?;
    if bytes.len() > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Opens `path` buffered, with its size.
fn open(path: &Path) -> Result<(BufReader<File>, u64), DataError> {
    let file = File::open(path).map_err(|e| DataError::reading(path, e))?;
    let len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
    Ok((BufReader::with_capacity(1 << 16, file), len))
}

/// An IDX file's bytes, decompressed if they start with the gzip magic bytes.
struct Source<'p, R: BufRead> {
    /// The raw stream or the gzip decoder over it.
    reader: Decoded<R>,
    /// The exact number of bytes the (raw) stream holds, if known; `None` for gzip.
    raw_len: Option<u64>,
    /// The compressed size of a gzip stream, if known.
    compressed_len: Option<u64>,
    path: &'p Path,
}

enum Decoded<R: BufRead> {
    Raw(R),
    Gzip(MultiGzDecoder<R>),
}

impl<'p, R: BufRead> Source<'p, R> {
    /// Looks at the first bytes of `reader` (holding `len` bytes, if known) to tell gzip from raw.
    fn new(mut reader: R, len: Option<u64>, path: &'p Path) -> Result<Self, DataError> {
        let is_gzip = reader
            .fill_buf()
            .map_err(|e| DataError::io(path, e))?
            .starts_with(&GZIP_MAGIC);
        Ok(if is_gzip {
            Source {
                reader: Decoded::Gzip(MultiGzDecoder::new(reader)),
                raw_len: None,
                compressed_len: len,
                path,
            }
        } else {
            Source {
                reader: Decoded::Raw(reader),
                raw_len: len,
                compressed_len: None,
                path,
            }
        })
    }

    /// The (decompressed) bytes.
    fn stream(&mut self) -> &mut dyn Read {
        match &mut self.reader {
            Decoded::Raw(r) => r,
            Decoded::Gzip(d) => d,
        }
    }

    /// A read error as the error of this file: corrupt gzip data, or plain I/O.
    fn error(&self, source: std::io::Error) -> DataError {
        match self.reader {
            Decoded::Raw(_) => DataError::io(self.path, source),
            Decoded::Gzip(_) => DataError::Gzip {
                path: self.path.to_path_buf(),
                source,
            },
        }
    }

    /// A first buffer size for `wanted` bytes: never more than the stream can plausibly hold.
    fn capacity_hint(&self, wanted: usize) -> usize {
        let plausible = match (self.raw_len, self.compressed_len) {
            (Some(len), _) => len,
            (None, Some(len)) => len.saturating_mul(GZIP_RATIO_HINT),
            (None, None) => 1 << 20,
        };
        wanted.min(usize::try_from(plausible).unwrap_or(usize::MAX))
    }

    /// Reads into `buf` until it is full or the stream ends; returns the bytes read.
    fn read_full(&mut self, buf: &mut [u8]) -> Result<usize, DataError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.stream().read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.error(e)),
            }
        }
        Ok(filled)
    }

    /// Counts the bytes left, up to about [`TRAILING_COUNT_LIMIT`]; returns the count and whether
    /// counting stopped before the end.
    fn count_rest(&mut self) -> Result<(usize, bool), DataError> {
        let mut buf = [0u8; 8192];
        let mut count = 0;
        loop {
            let n = self.read_full(&mut buf)?;
            count += n;
            if n < buf.len() {
                return Ok((count, false));
            }
            if count >= TRAILING_COUNT_LIMIT {
                return Ok((count, true));
            }
        }
    }
}

/// Reads a big-endian `u32` at `offset` (the caller has checked the length).
fn be_u32(bytes: &[u8], offset: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_be_bytes(word)
}

/// Checks the magic number and header length; returns the header's dimensions.
fn parse_header(
    bytes: &[u8],
    path: &Path,
    magic: u32,
    ndims: usize,
) -> Result<Vec<u32>, DataError> {
    let header_len = 4 * (1 + ndims);
    if bytes.len() >= 4 && be_u32(bytes, 0) != magic {
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            expected: magic,
            found: be_u32(bytes, 0),
        });
    }
    if bytes.len() < header_len {
        return Err(DataError::TruncatedHeader {
            path: path.to_path_buf(),
            len: bytes.len(),
            needed: header_len,
        });
    }
    Ok((0..ndims).map(|d| be_u32(bytes, 4 * (1 + d))).collect())
}

/// The number of data bytes `dims` announce, checked against [`MAX_IDX_BYTES`] and (for images)
/// [`MAX_IMAGE_SIDE`].
fn data_len(path: &Path, dims: &[u32]) -> Result<usize, DataError> {
    let total = dims
        .iter()
        .map(|&d| u64::from(d))
        .try_fold(1u64, u64::checked_mul);
    let Some(expected) = total.filter(|&t| t <= MAX_IDX_BYTES as u64) else {
        return Err(DataError::BadDimensions {
            path: path.to_path_buf(),
            dims: dims.to_vec(),
        });
    };
    if let [_, rows, cols] = *dims {
        let side_ok = |s: u32| (1..=MAX_IMAGE_SIDE).contains(&(s as usize));
        if !(side_ok(rows) && side_ok(cols)) {
            return Err(DataError::BadImageSize {
                path: path.to_path_buf(),
                rows: rows as usize,
                cols: cols as usize,
            });
        }
    }
    Ok(expected as usize)
}

/// Reads and validates an IDX stream of `ndims` dimensions; returns (data bytes, dims).
///
/// `len` is the number of bytes `reader` holds, when known (a file's size): a raw stream of
/// the wrong size is refused before its data is read.
fn read_idx<R: BufRead>(
    reader: R,
    len: Option<u64>,
    path: &Path,
    magic: u32,
    ndims: usize,
) -> Result<(Vec<u8>, Vec<u32>), DataError> {
    let mut source = Source::new(reader, len, path)?;
    let header_len = 4 * (1 + ndims);
    let mut header = [0u8; 16];
    let got = source.read_full(&mut header[..header_len])?;
    let dims = parse_header(&header[..got], path, magic, ndims)?;
    let expected = data_len(path, &dims)?;
    if let Some(raw_len) = source.raw_len {
        let actual = raw_len.saturating_sub(header_len as u64);
        check_len(path, expected, actual, false)?;
    }
    let mut data = Vec::with_capacity(source.capacity_hint(expected));
    let read = source.stream().take(expected as u64).read_to_end(&mut data);
    read.map_err(|e| source.error(e))?;
    check_len(path, expected, data.len() as u64, false)?;
    let (extra, at_least) = source.count_rest()?;
    check_len(path, expected, (expected + extra) as u64, at_least)?;
    Ok((data, dims))
}

/// Checks that `actual` data bytes are the `expected` ones (`at_least`: more may follow).
fn check_len(path: &Path, expected: usize, actual: u64, at_least: bool) -> Result<(), DataError> {
    let path = path.to_path_buf();
    match actual.cmp(&(expected as u64)) {
        std::cmp::Ordering::Less => Err(DataError::TruncatedData {
            path,
            expected,
            actual: actual as usize,
        }),
        std::cmp::Ordering::Greater => Err(DataError::TrailingBytes {
            path,
            expected,
            extra: usize::try_from(actual - expected as u64).unwrap_or(usize::MAX),
            at_least,
        }),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

/// Images from IDX data: `(bytes, n, rows, cols)`.
type Images = (Vec<u8>, usize, usize, usize);

fn images((bytes, dims): (Vec<u8>, Vec<u32>)) -> Images {
    (bytes, dims[0] as usize, dims[1] as usize, dims[2] as usize)
}

/// Reads an IDX images file (magic `0x00000803`), gzip-compressed or raw.
///
/// Returns `(bytes, n, rows, cols)`: the `n * rows * cols` pixel bytes, row-major,
/// image after image. The count comes from the header; the data must match it exactly, hold at
/// most [`MAX_IDX_BYTES`] and images of at most [`MAX_IMAGE_SIDE`] pixels a side.
pub fn read_idx_images(path: &Path) -> Result<Images, DataError> {
    let (reader, len) = open(path)?;
    read_idx(reader, Some(len), path, IMAGES_MAGIC, 3).map(images)
}

/// Reads an IDX labels file (magic `0x00000801`), gzip-compressed or raw.
///
/// Returns one byte per label; the count comes from the header and must match the data.
/// The label values are not checked here (see [`super::load`]).
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    let (reader, len) = open(path)?;
    Ok(read_idx(reader, Some(len), path, LABELS_MAGIC, 1)?.0)
}

/// [`read_idx_images`] of the file content `bytes` (gzip-compressed or raw); `path` only names
/// the file in errors.
pub fn parse_idx_images(bytes: &[u8], path: &Path) -> Result<Images, DataError> {
    read_idx(bytes, Some(bytes.len() as u64), path, IMAGES_MAGIC, 3).map(images)
}

/// [`read_idx_labels`] of the file content `bytes` (gzip-compressed or raw); `path` only names
/// the file in errors.
pub fn parse_idx_labels(bytes: &[u8], path: &Path) -> Result<Vec<u8>, DataError> {
    Ok(read_idx(bytes, Some(bytes.len() as u64), path, LABELS_MAGIC, 1)?.0)
}
