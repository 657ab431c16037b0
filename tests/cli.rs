//! The `eqprop` command line: bad input gives clear errors, Ctrl-C saves, --resume continues.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod common;
use common::{assert_clear_error, eqprop, stderr, temp_dir};

/// Runs `eqprop train --out dir` with the flags `extra` and then `args`.
fn train(dir: &Path, extra: &[&str], args: &[&str]) -> Output {
    let mut cmd = eqprop();
    cmd.args(["train", "--out"]).arg(dir).args(extra).args(args);
    cmd.output().unwrap()
}

const SMALL: [&str; 6] = [
    "--train-limit",
    "1000",
    "--layers",
    "784,30,10",
    "--epochs",
    "1",
];

#[test]
fn missing_data_offline_says_which_files_to_put_where() {
    let empty = temp_dir("nodata");
    let out = eqprop()
        .args(["train", "--data-dir"])
        .arg(&empty)
        .args(["--mirror", "http://127.0.0.1:9/", "--out"])
        .arg(empty.join("run"))
        .output()
        .unwrap();
    let wanted = empty.join("mnist").join("train-images-idx3-ubyte.gz");
    assert_clear_error(
        &out,
        &[wanted.to_str().unwrap(), "t10k-labels-idx1-ubyte.gz"],
    );
}

#[test]
fn bad_hyperparameters_are_named() {
    let dir = temp_dir("badhp");
    let out = train(&dir, &["--lr", "0.1"], &SMALL);
    assert_clear_error(&out, &["learning rates"]);
    let out = train(&dir, &["--eps", "2"], &SMALL);
    assert_clear_error(&out, &["eps"]);
    let out = train(&dir, &["--preset", "nope"], &[]);
    assert_clear_error(&out, &["unknown preset 'nope'"]);
}

#[test]
fn eval_of_a_missing_or_corrupt_checkpoint_names_it() {
    let dir = temp_dir("badckpt");
    let missing = dir.join("none.safetensors");
    let out = eqprop()
        .args(["eval", "--checkpoint"])
        .arg(&missing)
        .output()
        .unwrap();
    assert_clear_error(&out, &["none.safetensors"]);
    let corrupt = dir.join("corrupt.safetensors");
    std::fs::write(&corrupt, [0u8; 7]).unwrap();
    let out = eqprop()
        .args(["eval", "--checkpoint"])
        .arg(&corrupt)
        .output()
        .unwrap();
    assert_clear_error(&out, &["corrupt.safetensors"]);
}

#[test]
fn an_existing_run_is_not_overwritten_without_force() {
    let dir = temp_dir("existing");
    let out = train(&dir, &[], &SMALL);
    assert!(out.status.success(), "{}", stderr(&out));
    for file in ["checkpoint.safetensors", "metrics.jsonl", "curve.svg"] {
        assert!(dir.join(file).exists(), "{file} missing");
    }
    let out = train(&dir, &[], &SMALL);
    assert_clear_error(&out, &["--resume", "--force"]);
    let out = eqprop()
        .args(["eval", "--checkpoint"])
        .arg(dir.join("checkpoint.safetensors"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("test error"),
        "{text}{}",
        stderr(&out)
    );
}

fn wait_for(path: &Path, limit: Duration) {
    let start = Instant::now();
    while !path.exists() {
        assert!(start.elapsed() < limit, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Ctrl-C mid-epoch saves a checkpoint and exits 130; `--resume` finishes the run with exactly
/// the weights of an uninterrupted run. (The first 1,000 images, in the committed sample and
/// the full files alike; 12 epochs, so that the signal, sent once the first epoch is written,
/// lands well before the end.)
#[test]
fn ctrl_c_saves_and_resume_matches_an_uninterrupted_run() {
    let args = [
        "--train-limit",
        "1000",
        "--layers",
        "784,100,10",
        "--t-free",
        "80",
        "--epochs",
        "12",
    ];
    let straight = temp_dir("straight");
    let out = train(&straight, &[], &args);
    assert!(out.status.success(), "{}", stderr(&out));

    let broken = temp_dir("broken");
    let mut child = eqprop()
        .args(["train", "--out"])
        .arg(&broken)
        .args(args)
        .spawn()
        .unwrap();
    wait_for(&broken.join("metrics.jsonl"), Duration::from_secs(60));
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(130),
        "Ctrl-C must save and exit with 130"
    );
    let out = train(&broken, &["--resume"], &args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("resuming"));

    let a = eqprop::checkpoint::load(&straight.join("checkpoint.safetensors")).unwrap();
    let b = eqprop::checkpoint::load(&broken.join("checkpoint.safetensors")).unwrap();
    assert_eq!(
        a.network, b.network,
        "resumed run differs from the uninterrupted one"
    );
    assert_eq!(b.progress.epoch, 12);
}

/// `--device cuda` where it cannot run: a clear error, no panic, nothing trained.
#[test]
fn device_cuda_without_a_gpu_or_the_feature_is_a_clear_error() {
    let dir = temp_dir("cuda-missing");
    let out = train(&dir, &SMALL, &["--device", "cuda"]);
    let expected = if cfg!(feature = "cuda") {
        "no CUDA" // a build with the feature on a machine without the driver or a device
    } else {
        "built without CUDA support"
    };
    assert_clear_error(&out, &[expected]);
    assert!(!dir.join("checkpoint.safetensors").exists());
    let out = eqprop()
        .args(["env", "random", "--env", "cartpole-v1", "--device", "cuda"])
        .output()
        .unwrap();
    assert_clear_error(&out, &["runs on the CPU only"]);
}
