//! Tests of the downloader against a minimal local HTTP server on 127.0.0.1.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use eqprop::data::{
    DataError, DatasetName, Split, dataset_dir, download_verified, ensure_files, load,
    load_or_download, mirror_base, official_md5,
};

/// MD5 of the shared 10k-subset MNIST train images (see shared/data/README.md).
const SUBSET_TRAIN_IMAGES_MD5: &str = "fc8c80e2facbc48dfb7430fc80f306f5";

fn shared_root() -> PathBuf {
    match std::env::var_os("EQPROP_DATA_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data")),
    }
}

fn shared_mnist(file: &str) -> Vec<u8> {
    std::fs::read(dataset_dir(Some(&shared_root()), DatasetName::Mnist).join(file)).unwrap()
}

/// A unique temporary folder, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "eqprop-dl-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
    fn path(&self) -> &Path {
        &self.0
    }
    /// The sorted file names in the folder (temp files included).
    fn listing(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A minimal HTTP/1.1 file server: one request per connection, `Connection: close`.
/// It stops after `max_conns` connections or when dropped.
struct Server {
    base: String,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(files: HashMap<String, Vec<u8>>, max_conns: usize) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}/", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (req, st) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || serve(listener, files, max_conns, req, st));
        Server {
            base,
            requests,
            stop,
            thread: Some(thread),
        }
    }
    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    listener: TcpListener,
    files: HashMap<String, Vec<u8>>,
    max_conns: usize,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) {
    let mut served = 0;
    while served < max_conns && !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                served += 1;
                handle(stream, &files, &requests);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(_) => break,
        }
    }
}

/// Serves one request; returns the requested path.
/// Serves one request; logs its path before answering, so a client that has its answer always
/// finds the request in the log.
fn handle(
    stream: TcpStream,
    files: &HashMap<String, Vec<u8>>,
    log: &Mutex<Vec<String>>,
) -> Option<()> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let path = request_line.split_whitespace().nth(1)?.to_string();
    log.lock().unwrap().push(path.clone());
    let mut stream = stream;
    let (status, body): (&str, &[u8]) = match files.get(&path) {
        Some(body) => ("200 OK", body),
        None => ("404 Not Found", b"not found"),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let _ = stream.flush();
    Some(())
}

/// A base URL on which nothing listens.
fn unreachable_base() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/")
}

fn files(pairs: &[(&str, Vec<u8>)]) -> HashMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| (format!("/{k}"), v.clone()))
        .collect()
}

#[test]
fn download_verified_good() {
    let body = shared_mnist("train-images-idx3-ubyte.gz");
    let server = Server::start(files(&[("train-images-idx3-ubyte.gz", body.clone())]), 4);
    let tmp = TempDir::new("good");
    let dest = tmp.path().join("train-images-idx3-ubyte.gz");
    let url = format!("{}train-images-idx3-ubyte.gz", server.base);
    download_verified(&url, &dest, SUBSET_TRAIN_IMAGES_MD5).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(tmp.listing(), vec!["train-images-idx3-ubyte.gz"]);
    // Uppercase hex is accepted too, and an existing file is replaced.
    download_verified(&url, &dest, &SUBSET_TRAIN_IMAGES_MD5.to_uppercase()).unwrap();
    assert_eq!(tmp.listing(), vec!["train-images-idx3-ubyte.gz"]);
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn download_verified_checksum_mismatch() {
    let body = shared_mnist("train-images-idx3-ubyte.gz");
    let server = Server::start(files(&[("train-images-idx3-ubyte.gz", body)]), 4);
    let tmp = TempDir::new("mismatch");
    let dest = tmp.path().join("train-images-idx3-ubyte.gz");
    let url = format!("{}train-images-idx3-ubyte.gz", server.base);
    let official = official_md5(DatasetName::Mnist, "train-images-idx3-ubyte.gz").unwrap();
    let err = download_verified(&url, &dest, official).unwrap_err();
    match &err {
        DataError::Checksum {
            expected,
            actual,
            path,
            ..
        } => {
            assert_eq!(expected, official);
            assert_eq!(actual, SUBSET_TRAIN_IMAGES_MD5);
            assert_eq!(path, &dest);
        }
        other => panic!("expected Checksum, got {other:?}"),
    }
    assert!(err.to_string().contains(&dest.display().to_string()));
    assert!(tmp.listing().is_empty(), "left behind: {:?}", tmp.listing());
    assert!(!dest.exists());
}

#[test]
fn download_verified_404() {
    let server = Server::start(HashMap::new(), 4);
    let tmp = TempDir::new("404");
    let dest = tmp.path().join("t10k-labels-idx1-ubyte.gz");
    let url = format!("{}t10k-labels-idx1-ubyte.gz", server.base);
    let err = download_verified(&url, &dest, "ec29112dd5afa0611ce80d1b7f02629c").unwrap_err();
    assert!(
        matches!(err, DataError::HttpStatus { status: 404, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("404") && msg.contains(&url), "{msg}");
    assert!(msg.contains(&dest.display().to_string()), "{msg}");
    assert!(tmp.listing().is_empty(), "left behind: {:?}", tmp.listing());
    assert_eq!(server.requests(), vec!["/t10k-labels-idx1-ubyte.gz"]);
}

#[test]
fn download_verified_unreachable() {
    let tmp = TempDir::new("unreach");
    let dest = tmp.path().join("t10k-labels-idx1-ubyte.gz");
    let url = format!("{}t10k-labels-idx1-ubyte.gz", unreachable_base());
    let err = download_verified(&url, &dest, "").unwrap_err();
    assert!(matches!(err, DataError::Http { .. }), "{err:?}");
    assert!(tmp.listing().is_empty(), "left behind: {:?}", tmp.listing());
}

/// Copies the shared MNIST train files into `dir` (their MD5 is not the official one).
fn place_mnist_train(dir: &Path) {
    for f in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"] {
        std::fs::write(dir.join(f), shared_mnist(f)).unwrap();
    }
}

#[test]
fn ensure_files_end_to_end() {
    let test_files = files(&[
        (
            "t10k-images-idx3-ubyte.gz",
            shared_mnist("t10k-images-idx3-ubyte.gz"),
        ),
        (
            "t10k-labels-idx1-ubyte.gz",
            shared_mnist("t10k-labels-idx1-ubyte.gz"),
        ),
    ]);
    let server = Server::start(test_files, 8);
    let tmp = TempDir::new("e2e");
    let dir = dataset_dir(Some(tmp.path()), DatasetName::Mnist);
    std::fs::create_dir_all(&dir).unwrap();
    place_mnist_train(&dir);
    ensure_files(DatasetName::Mnist, &dir, Some(&server.base)).unwrap();
    let mut got = server.requests();
    got.sort();
    assert_eq!(
        got,
        vec!["/t10k-images-idx3-ubyte.gz", "/t10k-labels-idx1-ubyte.gz"]
    );
    let mut listing: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    listing.sort();
    assert_eq!(
        listing,
        vec![
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
            "train-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte.gz"
        ]
    );
    let shared_dir = dataset_dir(Some(&shared_root()), DatasetName::Mnist);
    let downloaded = load(DatasetName::Mnist, Split::Test, &dir).unwrap();
    assert_eq!(
        downloaded,
        load(DatasetName::Mnist, Split::Test, &shared_dir).unwrap()
    );
    // Everything present: no network needed, no checksum of present files.
    let offline = unreachable_base();
    ensure_files(DatasetName::Mnist, &dir, Some(&offline)).unwrap();
    let train = load_or_download(DatasetName::Mnist, Split::Train, &dir, Some(&offline)).unwrap();
    assert_eq!(train.len(), 10_000);
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn ensure_files_accepts_present_raw_files() {
    // Raw (non-.gz) files count as present.
    let tmp = TempDir::new("raw-present");
    let dir = tmp.path().join("nested").join("mnist");
    std::fs::create_dir_all(&dir).unwrap();
    for f in eqprop::data::FILE_NAMES {
        std::fs::write(dir.join(f), b"anything").unwrap();
    }
    ensure_files(DatasetName::Mnist, &dir, Some(&unreachable_base())).unwrap();
}

#[test]
fn ensure_files_checksum_mismatch_leaves_nothing() {
    // MNIST test files served under Fashion-MNIST's mirror: wrong checksum.
    let server = Server::start(
        files(&[
            (
                "t10k-images-idx3-ubyte.gz",
                shared_mnist("t10k-images-idx3-ubyte.gz"),
            ),
            (
                "t10k-labels-idx1-ubyte.gz",
                shared_mnist("t10k-labels-idx1-ubyte.gz"),
            ),
        ]),
        8,
    );
    let tmp = TempDir::new("e2e-mismatch");
    place_mnist_train(tmp.path());
    let before = tmp.listing();
    let err = ensure_files(DatasetName::FashionMnist, tmp.path(), Some(&server.base)).unwrap_err();
    match &err {
        DataError::Unavailable { missing, source } => {
            assert_eq!(missing.len(), 2);
            assert!(matches!(**source, DataError::Checksum { .. }), "{source:?}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(tmp.listing(), before, "a file was left behind");
}

#[test]
fn ensure_files_offline_lists_files() {
    let tmp = TempDir::new("offline");
    let dir = tmp.path().join("fashion-mnist");
    let base = unreachable_base();
    let err = ensure_files(DatasetName::FashionMnist, &dir, Some(&base)).unwrap_err();
    let DataError::Unavailable { missing, source } = &err else {
        panic!("expected Unavailable, got {err:?}");
    };
    assert!(matches!(**source, DataError::Http { .. }), "{source:?}");
    assert_eq!(missing.len(), 4);
    let msg = err.to_string();
    eprintln!("{msg}");
    for f in eqprop::data::FILE_NAMES {
        let path = dir.join(format!("{f}.gz"));
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains(&format!("{base}{f}.gz")), "{msg}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The canonical mirrors are named when no mirror is given (and none in the env).
    if std::env::var_os("EQPROP_MIRROR").is_none() {
        assert_eq!(
            mirror_base(DatasetName::FashionMnist, None),
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
        );
        assert_eq!(
            mirror_base(DatasetName::Mnist, None),
            "https://ossci-datasets.s3.amazonaws.com/mnist/"
        );
    }
}

#[test]
fn mirrors_and_checksums() {
    assert_eq!(
        mirror_base(DatasetName::Mnist, Some("http://h/x")),
        "http://h/x/"
    );
    assert_eq!(
        mirror_base(DatasetName::Mnist, Some("http://h/x//")),
        "http://h/x/"
    );
    assert_eq!(
        official_md5(DatasetName::FashionMnist, "t10k-labels-idx1-ubyte"),
        Some("bb300cfdad3c16e7a12a480ee83cd310")
    );
    assert_eq!(
        official_md5(DatasetName::Mnist, "t10k-images-idx3-ubyte.gz"),
        Some("9fb629c4189551a2d022fa330f9573f3")
    );
    assert_eq!(official_md5(DatasetName::Mnist, "other"), None);
}
