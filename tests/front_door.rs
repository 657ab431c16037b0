//! What a user meets first: `--resume` that means it, divergence that stops the run, and checks
//! of inputs and outputs before any long work.

mod common;

use common::{assert_clear_error, assert_error_after_progress, eqprop, stderr};
use eqprop::checkpoint::{self, CheckpointRef};
use std::path::Path;
use std::process::Output;

/// A small, quick run: 200 examples, 784-16-10.
const SMALL: [&str; 6] = [
    "--train-limit",
    "200",
    "--layers",
    "784,16,10",
    "--t-free",
    "8",
];

/// `eqprop train --out dir` with the [`SMALL`] settings, less those `args` give anew.
fn train(dir: &Path, args: &[&str]) -> Output {
    let given: Vec<&str> = args
        .iter()
        .filter(|a| a.starts_with("--"))
        .copied()
        .collect();
    let small = SMALL
        .chunks(2)
        .filter(|pair| !given.contains(&pair[0]))
        .flatten();
    eqprop()
        .args(["train", "--out"])
        .arg(dir)
        .args(small)
        .args(args)
        .output()
        .unwrap()
}

/// `eqprop train --resume --out dir` with `args`.
fn resume(dir: &Path, args: &[&str]) -> Output {
    eqprop()
        .args(["train", "--resume", "--out"])
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

fn metrics_lines(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .count()
}

#[test]
fn resume_with_more_epochs_extends_a_finished_run_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let (straight, extended) = (tmp.path().join("straight"), tmp.path().join("extended"));
    let out = train(&straight, &["--epochs", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = train(&extended, &["--epochs", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Resuming a finished run without --epochs trains nothing more.
    let out = resume(&extended, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(metrics_lines(&extended), 1);
    let out = resume(&extended, &["--epochs", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(metrics_lines(&extended), 3, "one metrics line per epoch");
    let a = checkpoint::load(&straight.join("checkpoint.safetensors")).unwrap();
    let b = checkpoint::load(&extended.join("checkpoint.safetensors")).unwrap();
    assert_eq!(b.progress.epoch, 3);
    assert_eq!(b.hyperparams, a.hyperparams);
    assert_eq!(
        a.network, b.network,
        "extended run differs from a 3-epoch run"
    );
}

#[test]
fn resume_refuses_flags_that_contradict_the_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let out = train(&dir, &["--epochs", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let resume = |args: &[&str]| resume(&dir, args);
    let out = resume(&["--lr", "0.1,0.05"]);
    assert_clear_error(&out, &["--lr", "[0.1,0.05]", "[0.4,0.2]", "--force"]);
    let out = resume(&["--batch-size", "20"]);
    assert_clear_error(&out, &["--batch-size", "= 20", "= 10"]);
    let out = resume(&["--layers", "784,32,10"]);
    assert_clear_error(&out, &["--layers", "[784,32,10]", "[784,16,10]"]);
    let out = resume(&["--train-limit", "100"]);
    assert_clear_error(&out, &["--train-limit", "= 100", "= 200"]);
    let out = resume(&["--preset", "paper"]);
    assert_clear_error(&out, &["--preset paper"]);
    let out = resume(&["--epochs", "1"]);
    assert_clear_error(&out, &["--epochs 1", "already trained 2 epochs"]);
    let out = resume(&["--dataset", "fashion-mnist"]);
    assert_clear_error(&out, &["trained on mnist, not fashion-mnist"]);
    // The flags it holds itself are welcome.
    let out = resume(&SMALL);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(metrics_lines(&dir), 2);
}

#[test]
fn a_diverging_run_stops_naming_epoch_and_mini_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let out = train(
        &dir,
        &["--layers", "784,500,10", "--lr", "100,100", "--epochs", "2"],
    );
    assert_error_after_progress(
        &out,
        &[
            "training diverged in epoch 1, mini-batch",
            "free energy",
            "no checkpoint was written",
        ],
    );
    assert!(!dir.join("checkpoint.safetensors").exists());
    assert!(!dir.join("metrics.jsonl").exists());
}

/// A network that collapsed (every unit at a bound, one answer for every input) is finite and
/// calm, so it trains on; the run says so. A healthy run says nothing of the kind.
#[test]
fn a_collapsed_network_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let args = [
        "--preset",
        "paper",
        "--layers",
        "784,500,10",
        "--epochs",
        "2",
    ];
    let out = train(
        &tmp.path().join("a"),
        &[&args[..], &["--lr", "4,2"]].concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("warning: epoch 2 predicted no better than chance"));
    let out = train(&tmp.path().join("b"), &args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("chance"), "{}", stderr(&out));
}

#[test]
fn divergence_keeps_the_last_good_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let out = train(&dir, &["--epochs", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Blow the couplings up, as a learning rate far too large would, and save that as the
    // run's state after epoch 1.
    let path = dir.join("checkpoint.safetensors");
    let mut ckpt = checkpoint::load(&path).unwrap();
    let mut weights = ckpt.network.weights().to_vec();
    for w in &mut weights {
        w.as_mut_slice().iter_mut().for_each(|v| *v *= 1e4);
    }
    let layers = ckpt.hyperparams.layers.clone();
    let biases = ckpt.network.biases().to_vec();
    ckpt.network = eqprop::network::Network::from_parts(layers, weights, biases).unwrap();
    let saved = CheckpointRef {
        hyperparams: &ckpt.hyperparams,
        network: &ckpt.network,
        progress: &ckpt.progress,
        persistent: ckpt.persistent.as_deref(),
        dream_chains: ckpt.dream_chains.as_deref(),
        dataset: &ckpt.dataset,
    };
    checkpoint::save(&path, &saved).unwrap();
    let before = std::fs::read(&path).unwrap();
    let out = resume(&dir, &["--epochs", "2"]);
    assert_error_after_progress(
        &out,
        &[
            "training diverged in epoch 2, mini-batch 1",
            "the last good checkpoint",
            "after epoch 1",
        ],
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "checkpoint kept as it was"
    );
    assert_eq!(metrics_lines(&dir), 1);
}

/// An output that cannot be written fails at once: nothing is loaded, downloaded or trained
/// (the data folder here is empty and the mirror a closed port, so reaching the data would
/// give another error).
#[test]
fn outputs_and_inputs_are_checked_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let blocked = file.join("out");
    let empty = tmp.path().join("no-data");
    std::fs::create_dir(&empty).unwrap();
    let offline = |args: &[&str]| {
        let mut cmd = eqprop();
        cmd.args(args)
            .arg("--data-dir")
            .arg(&empty)
            .args(["--mirror", "http://127.0.0.1:9/"]);
        cmd
    };
    let blocked_str = blocked.to_str().unwrap();
    let png = blocked.join("x.png");
    for args in [
        vec!["train", "--out", blocked_str],
        vec!["continual", "--out", blocked_str],
        vec!["judge", "--out", png.to_str().unwrap()],
    ] {
        let out = offline(&args).output().unwrap();
        assert_clear_error(&out, &["cannot", "a-file"]);
        assert!(!stderr(&out).contains("IDX"), "{}", stderr(&out));
    }
    let out = eqprop()
        .args(["agent", "--env", "cartpole-v1", "--out", blocked_str])
        .output()
        .unwrap();
    assert_clear_error(&out, &["cannot create the output folder"]);
    let out = eqprop()
        .args([
            "render",
            "--env",
            "cartpole-v1",
            "--out",
            png.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_clear_error(&out, &["cannot", "x.png"]);

    // Dreams: the judge is read, and the picture's folder checked, before dreaming.
    let run = tmp.path().join("run");
    assert!(train(&run, &["--epochs", "1"]).status.success());
    let ckpt = run.join("checkpoint.safetensors");
    let dreams = tmp.path().join("dreams.png");
    let out = eqprop()
        .args(["dream", "--checkpoint"])
        .arg(&ckpt)
        .arg("--out")
        .arg(&dreams)
        .args(["--judge", "missing-judge.safetensors"])
        .output()
        .unwrap();
    assert_clear_error(&out, &["missing-judge.safetensors"]);
    assert!(!dreams.exists(), "dreamt before checking the judge");
    let out = eqprop()
        .args(["dream", "--checkpoint"])
        .arg(&ckpt)
        .arg("--out")
        .arg(&png)
        .output()
        .unwrap();
    assert_clear_error(&out, &["cannot", "x.png"]);
}

#[test]
fn eval_refuses_another_data_sets_checkpoint_unless_told() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    assert!(train(&run, &["--epochs", "1"]).status.success());
    let eval = |args: &[&str]| {
        eqprop()
            .args(["eval", "--checkpoint"])
            .arg(run.join("checkpoint.safetensors"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = eval(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("mnist test images"));
    let out = eval(&["--dataset", "fashion-mnist"]);
    assert_clear_error(
        &out,
        &["trained on mnist, not fashion-mnist", "--other-dataset"],
    );
    let out = eval(&["--dataset", "fashion-mnist", "--other-dataset"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("fashion-mnist test images"));
}

#[test]
fn a_network_that_does_not_fit_the_data_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let out = train(&tmp.path().join("a"), &["--layers", "784,50,5"]);
    assert_clear_error(&out, &["output layer has 5 units", "labels up to 9"]);
    let out = train(&tmp.path().join("b"), &["--layers", "100,50,10"]);
    assert_clear_error(&out, &["takes 100 inputs", "784 pixels"]);
    let out = train(&tmp.path().join("c"), &["--train-limit", "5"]);
    assert_clear_error(
        &out,
        &["the data set has 5 examples, fewer than one mini-batch of 10"],
    );
    let out = eqprop()
        .args(["continual", "--tasks", "0", "--out"])
        .arg(tmp.path().join("d"))
        .output()
        .unwrap();
    assert_clear_error(&out, &["tasks to learn must be in 1..=5, got 0"]);
}

#[test]
fn bench_checks_for_pytorch_before_its_first_round() {
    let started = std::time::Instant::now();
    let out = eqprop()
        .args(["bench", "--python", "/nonexistent/python3"])
        .args(["--torch-script", file!()])
        .output()
        .unwrap();
    assert_clear_error(
        &out,
        &["pip install -r bench/requirements.txt", "--no-torch"],
    );
    assert!(!stderr(&out).contains("round 1"), "{}", stderr(&out));
    assert!(started.elapsed().as_secs() < 10);
}
