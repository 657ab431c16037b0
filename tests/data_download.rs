//! Tests of the downloader against a minimal local HTTP server on 127.0.0.1 (nothing here
//! reaches the network), serving the committed sample's files.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use eqprop::data::{
    DataError, DatasetName, Split, dataset_dir, download_verified, ensure_files,
    ensure_files_checked, load, load_or_download, mirror_base, official_md5,
};
use md5::{Digest, Md5};

mod common;
use common::TempDir;

/// The committed sample's folder of `name`. The downloader tests serve the sample whatever
/// `EQPROP_DATA_DIR` says: its files are never the official ones, which these tests rely on.
fn sample_dir(name: DatasetName) -> PathBuf {
    dataset_dir(Some(&common::sample_root()), name)
}

/// The bytes of `file` in the sample's folder of `name`.
fn sample(name: DatasetName, file: &str) -> Vec<u8> {
    std::fs::read(sample_dir(name).join(file)).unwrap()
}

fn sample_mnist(file: &str) -> Vec<u8> {
    sample(DatasetName::Mnist, file)
}

/// The MD5 of `bytes` in lowercase hex, computed here.
fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The sorted file names in `dir` (temp files included).
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
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
    let body = sample_mnist("train-images-idx3-ubyte.gz");
    let md5 = md5_hex(&body);
    let server = Server::start(files(&[("train-images-idx3-ubyte.gz", body.clone())]), 4);
    let tmp = TempDir::new("good");
    let dest = tmp.path().join("train-images-idx3-ubyte.gz");
    let url = format!("{}train-images-idx3-ubyte.gz", server.base);
    download_verified(&url, &dest, &md5).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(listing(&tmp), vec!["train-images-idx3-ubyte.gz"]);
    // Uppercase hex is accepted too, and an existing file is replaced.
    download_verified(&url, &dest, &md5.to_uppercase()).unwrap();
    assert_eq!(listing(&tmp), vec!["train-images-idx3-ubyte.gz"]);
    assert_eq!(server.requests().len(), 2);
}

/// A file that is not the official one is not kept, and the error says what to do: check the
/// mirror or put the official file at the path, which is then used as it is.
#[test]
fn download_verified_checksum_mismatch() {
    let body = sample_mnist("train-images-idx3-ubyte.gz");
    let server = Server::start(files(&[("train-images-idx3-ubyte.gz", body.clone())]), 4);
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
            url: got_url,
        } => {
            assert_eq!(expected, official);
            assert_eq!(actual, &md5_hex(&body));
            assert_eq!(path, &dest);
            assert_eq!(got_url, &url);
        }
        other => panic!("expected Checksum, got {other:?}"),
    }
    let msg = err.to_string();
    eprintln!("{msg}");
    for needle in [
        &dest.display().to_string(),
        &url,
        official,
        "not kept",
        "--mirror",
        "$EQPROP_MIRROR",
        "put the official file at",
        "used as they are, never checked",
    ] {
        assert!(msg.contains(needle), "`{needle}` not in: {msg}");
    }
    assert!(listing(&tmp).is_empty(), "left behind: {:?}", listing(&tmp));
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
    assert!(listing(&tmp).is_empty(), "left behind: {:?}", listing(&tmp));
    assert_eq!(server.requests(), vec!["/t10k-labels-idx1-ubyte.gz"]);
}

#[test]
fn download_verified_unreachable() {
    let tmp = TempDir::new("unreach");
    let dest = tmp.path().join("t10k-labels-idx1-ubyte.gz");
    let url = format!("{}t10k-labels-idx1-ubyte.gz", unreachable_base());
    let err = download_verified(&url, &dest, "").unwrap_err();
    assert!(matches!(err, DataError::Http { .. }), "{err:?}");
    assert!(listing(&tmp).is_empty(), "left behind: {:?}", listing(&tmp));
}

/// Copies the sample's MNIST train files into `dir` (their MD5 is not the official one).
fn place_mnist_train(dir: &Path) {
    for f in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"] {
        std::fs::write(dir.join(f), sample_mnist(f)).unwrap();
    }
}

/// Every file of the sample served under `/<data set>/<file>`: one mirror for both data sets.
fn mirror_of_the_sample() -> HashMap<String, Vec<u8>> {
    let mut served = HashMap::new();
    for name in [DatasetName::Mnist, DatasetName::FashionMnist] {
        for f in eqprop::data::FILE_NAMES {
            let file = format!("{f}.gz");
            served.insert(format!("/{name}/{file}"), sample(name, &file));
        }
    }
    served
}

/// The MD5 of the sample's `file` of `name` (for [`ensure_files_checked`]).
fn sample_md5(name: DatasetName) -> impl Fn(&str) -> Option<String> {
    move |file| Some(md5_hex(&sample(name, &format!("{file}.gz"))))
}

/// One mirror serves both data sets from `<base>/mnist/` and `<base>/fashion-mnist/`; only the
/// missing files are fetched; files in place are not checked; the downloaded files load like
/// the served ones.
#[test]
fn ensure_files_end_to_end() {
    let server = Server::start(mirror_of_the_sample(), 16);
    let tmp = TempDir::new("e2e");
    let dir = dataset_dir(Some(tmp.path()), DatasetName::Mnist);
    std::fs::create_dir_all(&dir).unwrap();
    place_mnist_train(&dir);
    ensure_files_checked(
        DatasetName::Mnist,
        &dir,
        Some(&server.base),
        sample_md5(DatasetName::Mnist),
    )
    .unwrap();
    let mut got = server.requests();
    got.sort();
    assert_eq!(
        got,
        vec![
            "/mnist/t10k-images-idx3-ubyte.gz",
            "/mnist/t10k-labels-idx1-ubyte.gz"
        ]
    );
    assert_eq!(
        listing(&dir),
        vec![
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
            "train-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte.gz"
        ]
    );
    let downloaded = load(DatasetName::Mnist, Split::Test, &dir).unwrap();
    let served = load(
        DatasetName::Mnist,
        Split::Test,
        &sample_dir(DatasetName::Mnist),
    )
    .unwrap();
    assert_eq!(downloaded, served);

    // The same mirror serves Fashion-MNIST from its own folder.
    let fashion = dataset_dir(Some(tmp.path()), DatasetName::FashionMnist);
    ensure_files_checked(
        DatasetName::FashionMnist,
        &fashion,
        Some(&server.base),
        sample_md5(DatasetName::FashionMnist),
    )
    .unwrap();
    let fashion_requests: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("/fashion-mnist/"))
        .collect();
    assert_eq!(fashion_requests.len(), 4, "{fashion_requests:?}");
    let fashion_sample = sample_dir(DatasetName::FashionMnist);
    for split in [Split::Train, Split::Test] {
        assert_eq!(
            load(DatasetName::FashionMnist, split, &fashion).unwrap(),
            load(DatasetName::FashionMnist, split, &fashion_sample).unwrap()
        );
    }

    // Everything present: no network needed, no checksum of present files (official or not).
    let offline = unreachable_base();
    ensure_files(DatasetName::Mnist, &dir, Some(&offline)).unwrap();
    let train = load_or_download(DatasetName::Mnist, Split::Train, &dir, Some(&offline)).unwrap();
    let expected = load(
        DatasetName::Mnist,
        Split::Train,
        &sample_dir(DatasetName::Mnist),
    );
    assert_eq!(train, expected.unwrap());
    assert_eq!(server.requests().len(), 6);
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

/// Files that are not the official ones (the sample) are not kept; a mismatch does not stop
/// the other downloads; the error lists every file still missing with its URL under the
/// mirror's folder of the data set, and says what to do.
#[test]
fn ensure_files_checksum_mismatch_leaves_nothing() {
    let server = Server::start(mirror_of_the_sample(), 16);
    let tmp = TempDir::new("e2e-mismatch");
    place_mnist_train(tmp.path());
    let before = listing(&tmp);
    let err = ensure_files(DatasetName::Mnist, tmp.path(), Some(&server.base)).unwrap_err();
    let mut got = server.requests();
    got.sort();
    assert_eq!(
        got,
        vec![
            "/mnist/t10k-images-idx3-ubyte.gz",
            "/mnist/t10k-labels-idx1-ubyte.gz"
        ],
        "both missing files tried"
    );
    match &err {
        DataError::Unavailable { missing, source } => {
            let expected: Vec<(PathBuf, String)> =
                ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
                    .iter()
                    .map(|f| {
                        (
                            tmp.path().join(format!("{f}.gz")),
                            format!("{}mnist/{f}.gz", server.base),
                        )
                    })
                    .collect();
            assert_eq!(missing, &expected);
            assert!(matches!(**source, DataError::Checksum { .. }), "{source:?}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(msg.contains("used as they are, never checked"), "{msg}");
    assert_eq!(listing(&tmp), before, "a file was left behind");
}

/// A mismatch on one file does not keep the good ones from landing.
#[test]
fn ensure_files_keeps_the_good_files_after_a_mismatch() {
    let mut served = mirror_of_the_sample();
    // A corrupted copy of the test images: its checksum cannot match.
    served
        .get_mut("/fashion-mnist/t10k-images-idx3-ubyte.gz")
        .unwrap()
        .push(0);
    let server = Server::start(served, 16);
    let tmp = TempDir::new("partial");
    let dir = tmp.path().join("fashion-mnist");
    let err = ensure_files_checked(
        DatasetName::FashionMnist,
        &dir,
        Some(&server.base),
        sample_md5(DatasetName::FashionMnist),
    )
    .unwrap_err();
    let DataError::Unavailable { missing, source } = &err else {
        panic!("expected Unavailable, got {err:?}");
    };
    assert!(matches!(**source, DataError::Checksum { .. }), "{source:?}");
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert_eq!(missing[0].0, dir.join("t10k-images-idx3-ubyte.gz"));
    assert_eq!(server.requests().len(), 4);
    assert_eq!(
        listing(&dir),
        vec![
            "t10k-labels-idx1-ubyte.gz",
            "train-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte.gz"
        ]
    );
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
        assert!(
            msg.contains(&format!("{base}fashion-mnist/{f}.gz")),
            "{msg}"
        );
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
    // A given mirror holds one folder per data set.
    assert_eq!(
        mirror_base(DatasetName::Mnist, Some("http://h/x")),
        "http://h/x/mnist/"
    );
    assert_eq!(
        mirror_base(DatasetName::Mnist, Some("http://h/x//")),
        "http://h/x/mnist/"
    );
    assert_eq!(
        mirror_base(DatasetName::FashionMnist, Some("http://h/x/")),
        "http://h/x/fashion-mnist/"
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
