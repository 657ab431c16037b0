//! Reading IDX files (the MNIST file format), gzip-compressed or raw.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use flate2::bufread::MultiGzDecoder;

use super::DataError;

/// The magic number of an IDX file of unsigned bytes with 3 dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// The magic number of an IDX file of unsigned bytes with 1 dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// The first two bytes of a gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Reads a whole file, decompressing it if it starts with the gzip magic bytes.
///
/// Whether the file is compressed is decided by its content, never by its name.
pub fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>, DataError> {
    let file = File::open(path).map_err(|e| DataError::reading(path, e))?;
    let size_hint = file.metadata().map(|m| m.len() as usize).unwrap_or(0);
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let is_gzip = peek(&mut reader, path)?.starts_with(&GZIP_MAGIC);
    if !is_gzip {
        let mut bytes = Vec::with_capacity(size_hint);
        reader
            .read_to_end(&mut bytes)
            .map_err(|e| DataError::io(path, e))?;
        return Ok(bytes);
    }
    // MNIST-like data compresses about 2-8x; start big to avoid most reallocations.
    let mut bytes = Vec::with_capacity(size_hint.saturating_mul(4));
    MultiGzDecoder::new(reader)
        .read_to_end(&mut bytes)
        .map_err(|source| DataError::Gzip {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(bytes)
}

/// Fills the reader's buffer and returns its start (at least 2 bytes unless the file is shorter).
fn peek<'a>(reader: &'a mut BufReader<File>, path: &Path) -> Result<&'a [u8], DataError> {
    reader.fill_buf().map_err(|e| DataError::io(path, e))
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

/// Checks that exactly the announced number of data bytes follows the header.
fn check_data_len(
    bytes: &[u8],
    path: &Path,
    header_len: usize,
    dims: &[u32],
) -> Result<(), DataError> {
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d as usize))
        .ok_or_else(|| DataError::BadDimensions {
            path: path.to_path_buf(),
            dims: dims.to_vec(),
        })?;
    let actual = bytes.len() - header_len;
    if actual < expected {
        return Err(DataError::TruncatedData {
            path: path.to_path_buf(),
            expected,
            actual,
        });
    }
    if actual > expected {
        return Err(DataError::TrailingBytes {
            path: path.to_path_buf(),
            expected,
            extra: actual - expected,
        });
    }
    Ok(())
}

/// Reads and validates an IDX file of `ndims` dimensions; returns (data bytes, dims).
fn read_idx(path: &Path, magic: u32, ndims: usize) -> Result<(Vec<u8>, Vec<u32>), DataError> {
    let mut bytes = read_maybe_gzip(path)?;
    let dims = parse_header(&bytes, path, magic, ndims)?;
    let header_len = 4 * (1 + ndims);
    check_data_len(&bytes, path, header_len, &dims)?;
    bytes.drain(..header_len);
    Ok((bytes, dims))
}

/// Reads an IDX images file (magic `0x00000803`), gzip-compressed or raw.
///
/// Returns `(bytes, n, rows, cols)`: the `n * rows * cols` pixel bytes, row-major,
/// image after image. The count comes from the header; the data must match it exactly.
pub fn read_idx_images(path: &Path) -> Result<(Vec<u8>, usize, usize, usize), DataError> {
    let (bytes, dims) = read_idx(path, IMAGES_MAGIC, 3)?;
    Ok((bytes, dims[0] as usize, dims[1] as usize, dims[2] as usize))
}

/// Reads an IDX labels file (magic `0x00000801`), gzip-compressed or raw.
///
/// Returns one byte per label; the count comes from the header and must match the data.
/// The label values are not checked here (see [`super::load`]).
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    let (bytes, _dims) = read_idx(path, LABELS_MAGIC, 1)?;
    Ok(bytes)
}
