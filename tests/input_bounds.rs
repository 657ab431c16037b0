//! What an IDX file can make the reader allocate and read: bounded by its header, which is
//! itself bounded. Decompression bombs and over-long raw files fail fast, in little memory
//! (peak memory measured on the `eqprop` binary, a child process).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use eqprop::data::{
    DataError, DatasetName, MAX_IDX_BYTES, MAX_IMAGE_SIDE, Split, dataset_dir, load,
    parse_idx_images, parse_idx_labels, read_idx_images, read_idx_labels, read_maybe_gzip,
};

mod common;

const MIB: u64 = 1 << 20;

fn header(magic: u32, dims: &[u32]) -> Vec<u8> {
    std::iter::once(magic)
        .chain(dims.iter().copied())
        .flat_map(u32::to_be_bytes)
        .collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// A multi-member gzip file: a member holding `head`, then members of zeros adding up to
/// `zeros` bytes (whole MiB). One MiB of zeros compresses to about 1 KB, so 2 GiB take 2 MB.
fn gzip_bomb(path: &Path, head: &[u8], zeros: u64) {
    let member = gzip(&vec![0u8; MIB as usize]);
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    file.write_all(&gzip(head)).unwrap();
    for _ in 0..zeros / MIB {
        file.write_all(&member).unwrap();
    }
    file.flush().unwrap();
}

/// A raw file of `head` followed by `zeros` zero bytes, sparse (nothing written for them).
fn sparse_raw(path: &Path, head: &[u8], zeros: u64) {
    let file = std::fs::File::create(path).unwrap();
    (&file).write_all(head).unwrap();
    file.set_len(head.len() as u64 + zeros).unwrap();
}

/// A data root with the MNIST test split in `mnist/`: tiny valid labels (3) and, as images,
/// whatever `images` writes at the path it is given (the test split a hard link to it: a copy
/// of a sparse file can write gigabytes of real zeros).
fn data_root(images: impl FnOnce(&Path)) -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let dir = dataset_dir(Some(root.path()), DatasetName::Mnist);
    std::fs::create_dir_all(&dir).unwrap();
    let mut labels = header(0x801, &[3]);
    labels.extend_from_slice(&[1, 2, 3]);
    for split in ["train", "t10k"] {
        std::fs::write(
            dir.join(format!("{split}-labels-idx1-ubyte.gz")),
            gzip(&labels),
        )
        .unwrap();
    }
    let path = dir.join("train-images-idx3-ubyte.gz");
    images(&path);
    std::fs::hard_link(&path, dir.join("t10k-images-idx3-ubyte.gz")).unwrap();
    (root, path)
}

/// Runs `cmd` to its end; returns its output, its peak resident memory (bytes, the child's own
/// `ru_maxrss` from `wait4`) and its wall-clock time.
fn run_measured(cmd: &mut Command) -> (Output, u64, Duration) {
    use std::io::Read;
    let start = Instant::now();
    // Reaped by `wait4` below, which also gives its resource usage.
    #[allow(clippy::zombie_processes)]
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (mut stdout, mut stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        stdout.read_to_end(&mut v).unwrap();
        v
    });
    let mut err = Vec::new();
    stderr.read_to_end(&mut err).unwrap();
    let out = out_reader.join().unwrap();
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value; wait4 reaps our own child, whose Child handle is
    // not waited on afterwards.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as libc::pid_t, "wait4 failed");
    let elapsed = start.elapsed();
    let status = std::os::unix::process::ExitStatusExt::from_raw(status);
    let output = Output {
        status,
        stdout: out,
        stderr: err,
    };
    // Linux reports ru_maxrss in KiB.
    (output, usage.ru_maxrss as u64 * 1024, elapsed)
}

/// `eqprop train` on `root`: it loads the data before anything else.
fn train_on(root: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eqprop"));
    cmd.args(["train", "--epochs", "1", "--data-dir"])
        .arg(root)
        .arg("--out")
        .arg(root.join("run"))
        .env_remove("EQPROP_MIRROR");
    cmd
}

/// `eqprop train` on the bad images file made by `images`: a clear error naming the file and
/// containing `needle`, in under 100 MB and 20 s.
fn assert_fails_small_and_fast(what: &str, images: impl FnOnce(&Path), needle: &str) {
    let (root, path) = data_root(images);
    let (out, peak, elapsed) = run_measured(&mut train_on(root.path()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "{what}: peak memory {:.1} MB, {:.2} s: {}",
        peak as f64 / 1e6,
        elapsed.as_secs_f64(),
        stderr.trim()
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert!(stderr.contains(needle), "expected '{needle}' in {stderr}");
    assert!(peak < 100_000_000, "{what}: peak memory {peak} bytes");
    assert!(
        elapsed < Duration::from_secs(20),
        "{what}: took {elapsed:?}"
    );
}

/// The measured bomb: a 2 MB `.gz` file, a valid header for 10,000 28x28 images, then 2 GiB of
/// zeros. The old reader decompressed all of it (2.1 GB of memory) before finding the trailing
/// bytes.
#[test]
fn a_gzip_bomb_fails_fast_in_little_memory() {
    let head = header(0x803, &[10_000, 28, 28]);
    assert_fails_small_and_fast(
        "gzip bomb (2 GiB of zeros after the data)",
        |p| gzip_bomb(p, &head, 2048 * MIB),
        "unexpected trailing bytes",
    );
}

/// A gzip file whose header announces almost 1 GiB (the limit) but that holds 16 MiB: the
/// reader allocates as the data comes, not what the header says.
#[test]
fn a_lying_header_allocates_only_what_arrives() {
    let n = (MAX_IDX_BYTES / 784) as u32;
    let head = header(0x803, &[n, 28, 28]);
    assert_fails_small_and_fast(
        "gzip header announcing 1 GiB, 16 MiB of data",
        |p| gzip_bomb(p, &head, 16 * MIB),
        "truncated IDX data",
    );
}

/// A raw file is compared with its size before its data is read: 2 GiB (sparse) after a valid
/// header fail at once.
#[test]
fn a_raw_file_of_the_wrong_size_fails_before_reading() {
    let head = header(0x803, &[10_000, 28, 28]);
    let (root, path) = data_root(|p| sparse_raw(p, &head, 2048 * MIB + 7_840_000));
    let start = Instant::now();
    let err = read_idx_images(&path).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(
        matches!(
            err,
            DataError::TrailingBytes {
                expected: 7_840_000,
                extra,
                at_least: false,
                ..
            } if extra as u64 == 2048 * MIB
        ),
        "{err:?}"
    );
    assert_fails_small_and_fast(
        "raw file, 2 GiB after the data",
        |p| sparse_raw(p, &head, 2048 * MIB + 7_840_000),
        "2147483648 unexpected trailing bytes",
    );
    drop(root);
}

#[test]
fn trailing_bytes_are_counted_up_to_a_limit() {
    let mut bytes = header(0x801, &[3]);
    bytes.extend_from_slice(&[1, 2, 3]);
    bytes.extend_from_slice(&vec![0u8; 1 << 20]);
    let path = Path::new("labels.gz");
    let err = parse_idx_labels(&gzip(&bytes), path).unwrap_err();
    let DataError::TrailingBytes {
        expected: 3,
        extra,
        at_least: true,
        ..
    } = err
    else {
        panic!("{err:?}")
    };
    assert!((1 << 16..1 << 20).contains(&extra), "{extra}");
    assert!(err.to_string().contains("labels.gz: at least"), "{err}");
    // Raw bytes: the exact count, from the length.
    let err = parse_idx_labels(&bytes, path).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::TrailingBytes {
                extra: 1_048_576,
                at_least: false,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn dimensions_are_bounded() {
    let path = Path::new("images");
    let too_many = header(0x803, &[(MAX_IDX_BYTES / 784) as u32 + 1, 28, 28]);
    let err = parse_idx_images(&too_many, path).unwrap_err();
    assert!(matches!(err, DataError::BadDimensions { .. }), "{err:?}");
    assert!(err.to_string().contains("too large"), "{err}");
    let labels = header(0x801, &[MAX_IDX_BYTES as u32 + 1]);
    let err = parse_idx_labels(&labels, path).unwrap_err();
    assert!(matches!(err, DataError::BadDimensions { .. }), "{err:?}");
    let side = MAX_IMAGE_SIDE as u32;
    for (rows, cols) in [(0, 28), (28, 0), (side + 1, 1), (1, side + 1)] {
        let err = parse_idx_images(&header(0x803, &[1, rows, cols]), path).unwrap_err();
        assert!(
            matches!(err, DataError::BadImageSize { rows: r, cols: c, .. }
                if (r, c) == (rows as usize, cols as usize)),
            "{rows}x{cols}: {err:?}"
        );
        assert!(
            err.to_string().contains("each side must be 1 to 1024"),
            "{err}"
        );
    }
    // The largest accepted image.
    let mut one = header(0x803, &[1, side, side]);
    one.resize(one.len() + MAX_IMAGE_SIDE * MAX_IMAGE_SIDE, 7);
    let (bytes, n, rows, cols) = parse_idx_images(&gzip(&one), path).unwrap();
    assert_eq!(
        (bytes.len(), n, rows, cols),
        (side as usize * side as usize, 1, 1024, 1024)
    );
}

/// The in-memory parsers give what the file readers give, on the real files.
#[test]
fn parsing_bytes_matches_reading_files() {
    let dir = dataset_dir(Some(&common::data_root()), DatasetName::Mnist);
    let images = dir.join("t10k-images-idx3-ubyte.gz");
    let labels = dir.join("t10k-labels-idx1-ubyte.gz");
    let from_file = read_idx_images(&images).unwrap();
    assert_eq!(
        parse_idx_images(&std::fs::read(&images).unwrap(), &images).unwrap(),
        from_file
    );
    assert_eq!(
        parse_idx_labels(&std::fs::read(&labels).unwrap(), &labels).unwrap(),
        read_idx_labels(&labels).unwrap()
    );
    let ds = load(DatasetName::Mnist, Split::Test, &dir).unwrap();
    assert_eq!((ds.len(), ds.rows, ds.cols), (from_file.1, 28, 28));
}

/// `read_maybe_gzip` reads at most the largest IDX file; a bigger raw file fails on its size.
#[test]
fn read_maybe_gzip_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big");
    sparse_raw(&path, b"", MAX_IDX_BYTES as u64 + 17);
    let start = Instant::now();
    let err = read_maybe_gzip(&path).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(matches!(err, DataError::TooLarge { .. }), "{err:?}");
    assert!(err.to_string().contains("big"), "{err}");
    let small = dir.path().join("small");
    std::fs::write(&small, gzip(b"hello")).unwrap();
    assert_eq!(read_maybe_gzip(&small).unwrap(), b"hello");
}
