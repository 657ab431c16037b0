//! The CIFAR-10 reader: small batch files in the official binary format, written here, read back
//! (labels, the planes-to-channels-last conversion, the training split's order), every refusal,
//! the archive's unpacking and its download from a local server (nothing reaches the network).

use std::path::Path;

use eqprop::data::cifar::{
    CIFAR_ARCHIVE_FOLDER, CIFAR_RECORD_BYTES, CIFAR_TEST_FILE, CIFAR_TRAIN_FILES,
    MAX_CIFAR_BATCH_BYTES,
};
use eqprop::data::{
    self, CIFAR_ARCHIVE, CIFAR_ARCHIVE_MD5, CIFAR_MIRROR, DataError, DatasetName, Split,
    dataset_dir, parse_cifar_batch,
};

mod common;
use common::{TempDir, assert_clear_error, eqprop, temp_dir};

/// The pixel byte of record `seed` at plane (channel) `c`, position `p = y * 32 + x`.
fn byte(seed: usize, c: usize, p: usize) -> u8 {
    ((seed * 31 + c * 101 + p * 7) % 256) as u8
}

/// One record: the label, then the red, green and blue planes of [`byte`].
fn record(label: u8, seed: usize) -> Vec<u8> {
    let mut r = vec![label];
    for c in 0..3 {
        r.extend((0..1024).map(|p| byte(seed, c, p)));
    }
    assert_eq!(r.len(), CIFAR_RECORD_BYTES);
    r
}

/// A batch of records `(label, seed)`.
fn batch(records: &[(u8, usize)]) -> Vec<u8> {
    records.iter().flat_map(|&(l, s)| record(l, s)).collect()
}

/// Writes the six batch files into `dir`: training batch `b` (0-based) holds records with
/// seeds `10 b`, `10 b + 1` and labels `b`, `b + 5`; the test batch seeds 100, 101, 102.
fn write_all(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (b, file) in CIFAR_TRAIN_FILES.iter().enumerate() {
        let bytes = batch(&[(b as u8, 10 * b), (b as u8 + 5, 10 * b + 1)]);
        std::fs::write(dir.join(file), bytes).unwrap();
    }
    let test = batch(&[(9, 100), (0, 101), (4, 102)]);
    std::fs::write(dir.join(CIFAR_TEST_FILE), test).unwrap();
}

/// Checks that image `i` of `data` is record `seed`, channels-last, as `byte / 255`.
fn assert_image(data: &data::Dataset, i: usize, seed: usize) {
    let image = data.image(i);
    for p in 0..1024 {
        for c in 0..3 {
            let want = byte(seed, c, p) as f32 / 255.0;
            assert_eq!(image[p * 3 + c], want, "image {i}, pixel {p}, channel {c}");
        }
    }
}

#[test]
fn a_batch_parses_to_channels_last_images_in_unit_range() {
    let bytes = batch(&[(3, 0), (0, 1), (9, 2)]);
    let data = parse_cifar_batch(&bytes, Path::new("b.bin")).unwrap();
    assert_eq!(data.labels, [3, 0, 9]);
    assert_eq!((data.rows, data.cols, data.channels), (32, 32, 3));
    assert_eq!((data.len(), data.pixels()), (3, 3072));
    assert_eq!(data.images.len(), 3 * 3072);
    assert!(data.targets.is_empty());
    for i in 0..3 {
        assert_image(&data, i, i);
    }
    // One pixel by hand: (y, x) = (2, 5) of record 1, its red, green and blue values.
    let (y, x) = (2, 5);
    let p = y * 32 + x;
    let rgb = &data.image(1)[(y * 32 + x) * 3..][..3];
    let raw = &bytes[CIFAR_RECORD_BYTES + 1..];
    assert_eq!(rgb, [0, 1, 2].map(|c| raw[c * 1024 + p] as f32 / 255.0));
    // The extremes: 0 -> 0, 255 -> 1.
    let mut extremes = vec![0u8; CIFAR_RECORD_BYTES];
    extremes[1] = 255;
    let data = parse_cifar_batch(&extremes, Path::new("e.bin")).unwrap();
    assert_eq!(
        (data.images[0], data.images[1], data.images[3]),
        (1.0, 0.0, 0.0)
    );
}

#[test]
fn the_training_split_is_the_five_batches_in_order() {
    let tmp = TempDir::new("cifar-order");
    let dir = dataset_dir(Some(tmp.path()), DatasetName::Cifar10);
    assert!(dir.ends_with("cifar-10"), "{}", dir.display());
    write_all(&dir);
    let train = data::load(DatasetName::Cifar10, Split::Train, &dir).unwrap();
    assert_eq!(train.labels, [0, 5, 1, 6, 2, 7, 3, 8, 4, 9]);
    assert_eq!((train.channels, train.pixels()), (3, 3072));
    for b in 0..5 {
        assert_image(&train, 2 * b, 10 * b);
        assert_image(&train, 2 * b + 1, 10 * b + 1);
    }
    let test = data::load(DatasetName::Cifar10, Split::Test, &dir).unwrap();
    assert_eq!(test.labels, [9, 0, 4]);
    assert_image(&test, 2, 102);
    // The subset and concatenation of a set keep its channels.
    let picked = train.select(&[3, 0]);
    assert_eq!((picked.channels, picked.labels.clone()), (3, vec![6, 0]));
    assert_image(&picked, 0, 11);
    let mut both = train.empty_like();
    both.extend(&test);
    assert_eq!((both.channels, both.len()), (3, 3));
}

#[test]
fn the_batches_may_sit_in_the_archive_folder() {
    let tmp = TempDir::new("cifar-nested");
    let dir = tmp.path().join("cifar-10");
    write_all(&dir.join(CIFAR_ARCHIVE_FOLDER));
    let test = data::load(DatasetName::Cifar10, Split::Test, &dir).unwrap();
    assert_eq!(test.labels, [9, 0, 4]);
    // The DataSource of a run reads them too, cut to its training limit.
    let source = data::DataSource {
        root: Some(tmp.path().to_path_buf()),
        train_limit: Some(3),
        ..data::DataSource::new(DatasetName::Cifar10)
    };
    let train = source.load(Split::Train).unwrap();
    assert_eq!(
        (train.labels.clone(), train.images.len()),
        (vec![0, 5, 1], 3 * 3072)
    );
}

#[test]
fn a_length_that_is_not_whole_records_is_refused_with_both_lengths() {
    let len = 2 * CIFAR_RECORD_BYTES + 5;
    let err = parse_cifar_batch(&vec![0; len], Path::new("odd.bin")).unwrap_err();
    assert!(matches!(err, DataError::CifarLength { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("odd.bin") && msg.contains(&len.to_string()) && msg.contains("3073"),
        "{msg}"
    );
    let err = parse_cifar_batch(&[], Path::new("empty.bin")).unwrap_err();
    assert!(err.to_string().contains("0 bytes"), "{err}");
    // From a file: refused from its size.
    let tmp = TempDir::new("cifar-len");
    write_all(tmp.path());
    let path = tmp.path().join(CIFAR_TRAIN_FILES[3]);
    std::fs::write(&path, vec![1u8; CIFAR_RECORD_BYTES - 1]).unwrap();
    let err = data::load(DatasetName::Cifar10, Split::Train, tmp.path()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("data_batch_4.bin") && msg.contains("3072 bytes"),
        "{msg}"
    );
}

#[test]
fn a_label_above_9_is_refused_with_its_record() {
    let bytes = batch(&[(1, 0), (2, 1), (10, 2)]);
    let err = parse_cifar_batch(&bytes, Path::new("labels.bin")).unwrap_err();
    match &err {
        DataError::BadLabel { index, label, .. } => assert_eq!((*index, *label), (2, 10)),
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("labels.bin") && msg.contains("label 10 at index 2"),
        "{msg}"
    );
}

#[test]
fn a_file_too_large_is_refused_before_it_is_read() {
    let tmp = TempDir::new("cifar-large");
    let path = tmp.path().join("huge.bin");
    // A sparse file of whole records just over the limit: nothing is written or read.
    let records = MAX_CIFAR_BATCH_BYTES / CIFAR_RECORD_BYTES + 1;
    let file = std::fs::File::create(&path).unwrap();
    file.set_len((records * CIFAR_RECORD_BYTES) as u64).unwrap();
    let err = data::read_cifar_batch(&path).unwrap_err();
    assert!(matches!(err, DataError::TooLarge { .. }), "{err:?}");
    assert!(err.to_string().contains("huge.bin"), "{err}");
}

#[test]
fn missing_files_are_named_with_where_to_get_them() {
    let tmp = TempDir::new("cifar-missing");
    write_all(tmp.path());
    std::fs::remove_file(tmp.path().join("data_batch_3.bin")).unwrap();
    let err = data::load(DatasetName::Cifar10, Split::Train, tmp.path()).unwrap_err();
    assert!(matches!(err, DataError::CifarMissing { .. }), "{err:?}");
    let msg = err.to_string();
    let url = format!("{CIFAR_MIRROR}{CIFAR_ARCHIVE}");
    for needle in [
        "data_batch_3.bin",
        tmp.path().to_str().unwrap(),
        &url,
        CIFAR_ARCHIVE_MD5,
        "tar xzf",
    ] {
        assert!(msg.contains(needle), "{needle} in {msg}");
    }
    // The test split does not need the training files.
    assert!(data::load(DatasetName::Cifar10, Split::Test, tmp.path()).is_ok());
    let none = tmp.path().join("none");
    let err = data::load(DatasetName::Cifar10, Split::Test, &none).unwrap_err();
    assert!(err.to_string().contains(CIFAR_TEST_FILE), "{err}");
}

#[test]
fn names_checksum_and_mirror() {
    for s in ["cifar10", "cifar-10", "CIFAR-10", "Cifar_10"] {
        assert_eq!(s.parse::<DatasetName>(), Ok(DatasetName::Cifar10), "{s}");
    }
    assert_eq!(DatasetName::Cifar10.to_string(), "cifar-10");
    assert!("cifar".parse::<DatasetName>().is_err());
    assert_eq!(
        data::official_md5(DatasetName::Cifar10, CIFAR_ARCHIVE),
        Some("c32a1d4ab5d03f1284b67883e8d87530")
    );
    assert_eq!(
        data::mirror_base(DatasetName::Cifar10, Some("http://h/m/")),
        "http://h/m/cifar-10/"
    );
}

/// MNIST keeps one channel and its pixels: each value is its IDX byte / 255.
#[test]
fn mnist_still_has_one_channel_and_the_same_pixels() {
    let dir = dataset_dir(Some(&common::sample_root()), DatasetName::Mnist);
    let test = data::load(DatasetName::Mnist, Split::Test, &dir).unwrap();
    assert_eq!(
        (test.rows, test.cols, test.channels, test.pixels()),
        (28, 28, 1, 784)
    );
    let (bytes, n, _, _) = data::read_idx_images(&dir.join("t10k-images-idx3-ubyte.gz")).unwrap();
    assert_eq!((test.len(), test.images.len()), (n, bytes.len()));
    assert!(
        bytes
            .iter()
            .zip(&test.images)
            .all(|(&b, &v)| v == b as f32 / 255.0)
    );
    assert_eq!(data::Dataset::empty(28, 28).channels, 1);
}

/// A gzip-compressed tar of `entries` (path, bytes), as the official archive is made.
#[cfg(feature = "download")]
fn archive(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (path, bytes) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, path, &bytes[..]).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

/// The archive of the batches [`write_all`] writes, plus the class names and a stray file.
#[cfg(feature = "download")]
fn official_like_archive() -> Vec<u8> {
    let tmp = TempDir::new("cifar-src");
    write_all(tmp.path());
    let mut entries: Vec<(String, Vec<u8>)> = CIFAR_TRAIN_FILES
        .iter()
        .chain([&CIFAR_TEST_FILE])
        .map(|f| {
            let bytes = std::fs::read(tmp.path().join(f)).unwrap();
            (format!("{CIFAR_ARCHIVE_FOLDER}/{f}"), bytes)
        })
        .collect();
    entries.push((
        format!("{CIFAR_ARCHIVE_FOLDER}/batches.meta.txt"),
        b"airplane\n".to_vec(),
    ));
    entries.push(("elsewhere/test_batch.bin".into(), vec![7; 3]));
    entries.push(("readme.html".into(), b"<html>".to_vec()));
    archive(&entries)
}

#[cfg(feature = "download")]
#[test]
fn an_archive_in_place_is_unpacked_without_the_network() {
    let tmp = TempDir::new("cifar-unpack");
    let dir = tmp.path().join("cifar-10");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(CIFAR_ARCHIVE), official_like_archive()).unwrap();
    let test = data::load_or_download(
        DatasetName::Cifar10,
        Split::Test,
        &dir,
        Some(common::NO_MIRROR),
    )
    .unwrap();
    assert_eq!(test.labels, [9, 0, 4]);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut want: Vec<String> = CIFAR_TRAIN_FILES.iter().map(|f| f.to_string()).collect();
    want.extend([CIFAR_ARCHIVE, "batches.meta.txt", CIFAR_TEST_FILE].map(String::from));
    want.sort();
    assert_eq!(
        names, want,
        "only the data set's files, flat, no temporary file"
    );
    let train = data::load(DatasetName::Cifar10, Split::Train, &dir).unwrap();
    assert_image(&train, 9, 41);
}

#[cfg(feature = "download")]
#[test]
fn an_archive_without_the_batches_or_not_an_archive_is_refused() {
    let tmp = TempDir::new("cifar-bad-archive");
    let path = tmp.path().join(CIFAR_ARCHIVE);
    let only_test = archive(&[(CIFAR_TEST_FILE.to_string(), batch(&[(1, 1)]))]);
    std::fs::write(&path, only_test).unwrap();
    let err = data::extract_cifar_archive(&path, tmp.path()).unwrap_err();
    assert!(
        matches!(err, DataError::ArchiveIncomplete { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("data_batch_1.bin") && msg.contains(CIFAR_ARCHIVE_MD5),
        "{msg}"
    );
    std::fs::write(&path, b"not a gzip tar at all").unwrap();
    let err = data::extract_cifar_archive(&path, tmp.path()).unwrap_err();
    assert!(matches!(err, DataError::Archive { .. }), "{err:?}");
    assert!(err.to_string().contains(CIFAR_ARCHIVE), "{err}");
}

/// Serves `body` at `path` on 127.0.0.1 for up to `conns` connections (404 elsewhere); returns
/// the base URL.
#[cfg(feature = "download")]
fn serve(path: &'static str, body: Vec<u8>, conns: usize) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(conns) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let asked = line.split_whitespace().nth(1).unwrap_or("").to_string();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let (status, body) = match asked == path {
                true => ("200 OK", &body[..]),
                false => ("404 Not Found", &b"no"[..]),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body);
        }
    });
    base
}

#[cfg(feature = "download")]
#[test]
fn the_archive_is_downloaded_checked_and_unpacked() {
    use md5::{Digest, Md5};
    let bytes = official_like_archive();
    let md5: String = Md5::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let base = serve("/cifar-10/cifar-10-binary.tar.gz", bytes, 2);
    // A wrong checksum keeps nothing and says what failed.
    let tmp = TempDir::new("cifar-download");
    let dir = tmp.path().join("cifar-10");
    let wrong = |_: &str| Some("0".repeat(32));
    let err =
        data::ensure_files_checked(DatasetName::Cifar10, &dir, Some(&base), wrong).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("MD5 mismatch") && msg.contains("data_batch_1.bin"),
        "{msg}"
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "nothing kept");
    // The right one: downloaded, kept, unpacked, loaded.
    let right = |file: &str| (file == CIFAR_ARCHIVE).then(|| md5.clone());
    data::ensure_files_checked(DatasetName::Cifar10, &dir, Some(&base), right).unwrap();
    assert!(dir.join(CIFAR_ARCHIVE).is_file());
    let train = data::load(DatasetName::Cifar10, Split::Train, &dir).unwrap();
    assert_eq!(train.len(), 10);
}

#[test]
fn the_cli_without_cifar_data_says_where_to_get_it() {
    let empty = temp_dir("cifar-cli-none");
    let out = eqprop()
        .args(["train", "--dataset", "cifar10", "--layers", "3072,20,10"])
        .args(["--data-dir"])
        .arg(empty.path())
        .args(["--out"])
        .arg(empty.path().join("run"))
        .output()
        .unwrap();
    let dir = empty.path().join("cifar-10");
    assert_clear_error(
        &out,
        &[
            dir.to_str().unwrap(),
            CIFAR_ARCHIVE,
            CIFAR_ARCHIVE_MD5,
            "data_batch_1.bin",
        ],
    );
}

/// A smoke run on a tiny synthetic folder: 3072 inputs train and save; the network must be told
/// its size (no preset has 3072 inputs).
#[test]
fn the_cli_trains_on_a_tiny_cifar_folder() {
    let root = temp_dir("cifar-cli");
    write_all(&root.path().join("cifar-10"));
    let train = |layers: &str| {
        eqprop()
            .args(["train", "--dataset", "cifar-10", "--layers", layers])
            .args([
                "--epochs",
                "1",
                "--batch-size",
                "5",
                "--threads",
                "1",
                "--force",
            ])
            .args(["--data-dir"])
            .arg(root.path())
            .args(["--out"])
            .arg(root.path().join("run"))
            .output()
            .unwrap()
    };
    let out = train("3072,20,10");
    let err = common::stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        root.path()
            .join("run")
            .join("checkpoint.safetensors")
            .is_file()
    );
    let out = train("784,20,10");
    assert_clear_error(&out, &["784 inputs", "3072"]);
}

/// Laborieux et al.'s CIFAR-10 pipeline (edge-padded crops, mirror images, standardised
/// inputs, weight decay) on a tiny folder: the run keeps its standardisation in the checkpoint, so that
/// `eqprop eval` sees the test images as training did; a standardisation that does not fit the
/// input's channels is refused by name.
#[test]
fn the_cifar_preset_pipeline_trains_and_its_checkpoint_evaluates_alike() {
    let root = temp_dir("cifar-conv");
    write_all(&root.path().join("cifar-10"));
    let run = root.path().join("run");
    let train = |extra: &[&str]| {
        eqprop()
            .args(["train", "--dataset", "cifar-10", "--preset", "conv-cifar10"])
            .args(["--arch", "3x32x32,conv4k3p1+pool,10", "--lr", "0.1,0.05"])
            .args(["--t-free", "3", "--t-nudge", "2", "--epochs", "1"])
            .args(["--batch-size", "5", "--threads", "1", "--force"])
            .args(extra)
            .arg("--data-dir")
            .arg(root.path())
            .arg("--out")
            .arg(&run)
            .output()
            .unwrap()
    };
    let out = train(&[]);
    let err = common::stderr(&out);
    assert!(out.status.success(), "{err}");
    for setting in [
        r#""shift":4"#,
        r#""shift_fill":"edge""#,
        r#""flip":true"#,
        r#""normalize":{"#,
        r#""weight_decay":0.003"#,
    ] {
        assert!(err.contains(setting), "{setting} in {err}");
    }
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let trained: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    let eval = eqprop()
        .args(["eval", "--threads", "1", "--data-dir"])
        .arg(root.path())
        .arg("--checkpoint")
        .arg(run.join("checkpoint.safetensors"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&eval.stdout);
    assert!(eval.status.success(), "{}", common::stderr(&eval));
    // The mean free energy moves with every input value: unstandardised test images would
    // not give training's.
    let error = format!("test error {:.2}%", trained["test_error"].as_f64().unwrap());
    let energy = format!(
        "mean free energy {:.4}",
        trained["mean_free_energy"].as_f64().unwrap()
    );
    assert!(
        said.contains(&error) && said.contains(&energy),
        "{error}, {energy} in {said}"
    );
    let out = train(&["--normalize", "0.5/0.25"]);
    assert_clear_error(
        &out,
        &["normalize mean", "one finite value per input channel"],
    );
}
