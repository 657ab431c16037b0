//! Networks with convolutions through the library's run and the `eqprop` command line:
//! training learns, checkpoints round-trip, a stopped run resumes, bad specs are refused.

mod common;

use common::{assert_clear_error, assert_success, eqprop, example, mnist, temp_dir};
use eqprop::conv::{ConvConfig, checkpoint};
use eqprop::data::{DatasetName, Split};
use eqprop::run::ConvRun;
use eqprop::run::RunFiles;
use std::sync::atomic::AtomicBool;

/// A small, quick config: one pooled convolution and a dense output.
fn small() -> ConvConfig {
    ConvConfig {
        arch: "1x28x28,conv8k5+pool,10".parse().unwrap(),
        batch_size: 20,
        t_free: 8,
        t_nudge: 3,
        epochs: 2,
        lr: vec![0.05, 0.02],
        shift: 0,
        ..ConvConfig::preset("conv-mnist").unwrap()
    }
}

#[test]
fn a_small_conv_net_learns_and_its_checkpoint_round_trips() {
    let (train, test) = (mnist(Split::Train), mnist(Split::Test));
    let train = train.select(&(0..600.min(train.len())).collect::<Vec<_>>());
    let dir = temp_dir("conv-learns");
    let files = RunFiles::in_dir(dir.path());
    let mut run = ConvRun::new(small(), DatasetName::Mnist)
        .unwrap()
        .save_in(files.clone(), false)
        .unwrap();
    let before = eqprop::conv::evaluate(run.trainer().network(), run.config(), &test).error;
    let report = run
        .train(&train, &test, &AtomicBool::new(false), &mut ())
        .unwrap();
    let after = report.epochs.last().unwrap().test_error;
    assert!(
        after < before - 20.0 && after < 50.0,
        "test error {before}% -> {after}%"
    );
    let saved = checkpoint::load(&files.checkpoint).unwrap();
    assert_eq!(&saved.network, run.trainer().network());
    assert_eq!(&saved.config, run.config());
    assert_eq!(saved.epoch, 2);
    // A fresh run refuses to replace it unless told.
    let again = ConvRun::new(small(), DatasetName::Mnist).unwrap();
    assert!(again.save_in(files, false).is_err());
}

#[test]
fn the_command_line_trains_evaluates_and_resumes_a_conv_net() {
    let dir = temp_dir("conv-cli");
    let out_dir = dir.path().join("run");
    let train = |extra: &[&str]| {
        eqprop()
            .args([
                "train",
                "--arch",
                "1x28x28,conv4k5+pool,10",
                "--lr",
                "0.05,0.02",
            ])
            .args([
                "--batch-size",
                "20",
                "--t-free",
                "6",
                "--t-nudge",
                "2",
                "--train-limit",
                "200",
            ])
            .arg("--out")
            .arg(&out_dir)
            .args(extra)
            .output()
            .unwrap()
    };
    let first = train(&["--epochs", "1"]);
    assert_success(&first);
    let text = String::from_utf8_lossy(&first.stdout);
    assert!(text.contains("epoch   1"), "{text}");
    let refused = train(&["--epochs", "1"]);
    assert_clear_error(&refused, &["already holds a run"]);
    let resumed = train(&["--epochs", "2", "--resume"]);
    assert_success(&resumed);
    let text = String::from_utf8_lossy(&resumed.stdout);
    assert!(
        text.contains("epoch   2") && !text.contains("epoch   1"),
        "{text}"
    );
    let eval = eqprop()
        .args(["eval", "--checkpoint"])
        .arg(out_dir.join("checkpoint.safetensors"))
        .output()
        .unwrap();
    assert_success(&eval);
    assert!(String::from_utf8_lossy(&eval.stdout).contains("test error"));
    let png = dir.path().join("dreams.png");
    let dream = eqprop()
        .args([
            "dream",
            "--labels",
            "0-2",
            "--dream-steps",
            "5",
            "--checkpoint",
        ])
        .arg(out_dir.join("checkpoint.safetensors"))
        .arg("--out")
        .arg(&png)
        .output()
        .unwrap();
    assert_success(&dream);
    assert!(std::fs::metadata(&png).unwrap().len() > 0);
}

#[test]
fn bad_architectures_and_settings_are_refused_before_any_work() {
    let dir = temp_dir("conv-bad");
    let run = |args: &[&str]| {
        eqprop()
            .arg("train")
            .args(args)
            .arg("--out")
            .arg(dir.path().join("run"))
            .output()
            .unwrap()
    };
    assert_clear_error(
        &run(&["--arch", "1x28x28,conv8k40,10"]),
        &["--arch", "larger than"],
    );
    assert_clear_error(
        &run(&["--arch", "3x32x32,conv8k5+pool,10", "--lr", "0.1,0.1"]),
        &["3072 inputs", "784 pixels"],
    );
    assert_clear_error(
        &run(&["--arch", "1x28x28,conv8k5+pool,10"]),
        &["learning rates", "--lr"],
    );
    assert_clear_error(
        &run(&["--preset", "conv-mnist", "--gate"]),
        &["--gate", "not supported"],
    );
    assert_clear_error(
        &run(&["--sweep", "synchronous"]),
        &["--sweep", "convolutions"],
    );
    assert_clear_error(
        &run(&["--preset", "conv-mnist", "--device", "cuda"]),
        &["convolutional"],
    );
}

/// examples/conv.rs prints, bit for bit, the test errors `eqprop train --preset conv-mnist`
/// records for the same epochs and images.
#[test]
fn the_conv_example_reproduces_the_train_command() {
    let dir = temp_dir("conv-example-vs-cli");
    let out = eqprop()
        .args([
            "train",
            "--preset",
            "conv-mnist",
            "--epochs",
            "1",
            "--train-limit",
            "200",
        ])
        .arg("--out")
        .arg(dir.path().join("run"))
        .output()
        .unwrap();
    assert_success(&out);
    let cli: Vec<f64> = eqprop::metrics::read_jsonl(&dir.path().join("run/metrics.jsonl"))
        .unwrap()
        .iter()
        .map(|r| r.test_error)
        .collect();
    let out = std::process::Command::new(example("conv"))
        .args(["1", "200"])
        .env("EQPROP_DATA_DIR", common::data_root())
        .output()
        .expect(
            "examples/conv (`cargo test --release` builds it; `cargo build --release --examples`)",
        );
    assert_success(&out);
    let text = String::from_utf8(out.stdout).unwrap();
    let printed: Vec<f64> = text
        .lines()
        .map(|l| {
            l.split("test error ")
                .nth(1)
                .unwrap()
                .trim_end_matches('%')
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(cli.len(), 1);
    assert_eq!(printed, cli, "the example: {text}");
}

/// Stops the run after its first epoch.
struct StopAfterFirst<'a>(&'a AtomicBool);

impl eqprop::run::ConvObserver for StopAfterFirst<'_> {
    fn epoch_ended(
        &mut self,
        _record: &eqprop::metrics::EpochRecord,
        _run: &ConvRun,
    ) -> eqprop::Result<()> {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

/// 200 training and 100 test images of the sample.
fn small_sets() -> (eqprop::data::Dataset, eqprop::data::Dataset) {
    let (train, test) = (mnist(Split::Train), mnist(Split::Test));
    let first = |d: eqprop::data::Dataset, n: usize| d.select(&(0..n).collect::<Vec<_>>());
    (first(train, 200), first(test, 100))
}

/// Trains `cfg` in one go, and again stopped after its first epoch (saved in `dir`) and
/// resumed from the checkpoint: returns both runs and the checkpoint of the stop.
fn whole_and_resumed(
    cfg: ConvConfig,
    dir: &std::path::Path,
) -> (ConvRun, ConvRun, checkpoint::ConvCheckpoint) {
    let (train, test) = small_sets();
    let mut whole = ConvRun::new(cfg.clone(), DatasetName::Mnist).unwrap();
    whole
        .train(&train, &test, &AtomicBool::new(false), &mut ())
        .unwrap();
    let files = RunFiles::in_dir(dir);
    let mut first = ConvRun::new(cfg, DatasetName::Mnist)
        .unwrap()
        .save_in(files.clone(), false)
        .unwrap();
    let stop = AtomicBool::new(false);
    let report = first
        .train(&train, &test, &stop, &mut StopAfterFirst(&stop))
        .unwrap();
    assert!(report.interrupted && report.epochs.len() == 1);
    let saved = checkpoint::load(&files.checkpoint).unwrap();
    let mut resumed = ConvRun::resume(&files.checkpoint, None).unwrap();
    resumed
        .train(&train, &test, &AtomicBool::new(false), &mut ())
        .unwrap();
    (whole, resumed, saved)
}

/// With momentum, the checkpoint keeps the update's velocity: a run stopped after an epoch and
/// resumed from its checkpoint ends with the network of a run never stopped (and restarting
/// the velocity from zero would not).
#[test]
fn a_resumed_run_with_momentum_continues_its_velocity() {
    let cfg = ConvConfig {
        momentum: 0.5,
        ..small()
    };
    let dir = temp_dir("conv-momentum-resume");
    let (whole, resumed, saved) = whole_and_resumed(cfg, dir.path());
    assert!(saved.velocity.is_some(), "the velocity is saved");
    assert_eq!(resumed.trainer().network(), whole.trainer().network());
    // Without the saved velocity the second epoch goes elsewhere.
    let mut restarted = eqprop::conv::ConvTrainer::with_network(saved.config, saved.network, 1);
    restarted.run_epoch(&small_sets().0, |_, _| true).unwrap();
    assert_ne!(restarted.network(), whole.trainer().network());
}

/// Persistent particles: every example keeps its free state from epoch to epoch, the
/// checkpoint keeps them (a run stopped after an epoch and resumed ends with the network of a
/// run never stopped), and a resumed run on other examples is refused.
#[test]
fn persistent_particles_are_kept_and_resume_exactly() {
    let cfg = ConvConfig {
        persistent: true,
        ..small()
    };
    let dir = temp_dir("conv-persistent-resume");
    let (whole, resumed, saved) = whole_and_resumed(cfg.clone(), dir.path());
    let particles = whole
        .trainer()
        .particles()
        .expect("made on the first epoch");
    let sizes = cfg.arch.sizes();
    assert_eq!(particles.len(), sizes.len() - 1);
    for (p, &size) in particles.iter().zip(&sizes[1..]) {
        assert_eq!((p.rows(), p.cols()), (200, size));
        assert!(p.as_slice().iter().any(|&v| v != 0.0), "states were kept");
        assert!(p.as_slice().iter().all(|v| (0.0..=1.0).contains(v)));
    }
    assert!(
        saved
            .particles
            .is_some_and(|p| p.len() == 2 && p[0].rows() == 200)
    );
    assert!(resumed.trainer().network() == whole.trainer().network());
    assert!(resumed.trainer().particles() == whole.trainer().particles());
    let (train, test) = small_sets();
    let mut fresh = ConvRun::new(small(), DatasetName::Mnist).unwrap();
    fresh
        .train(&train, &test, &AtomicBool::new(false), &mut ())
        .unwrap();
    assert!(fresh.trainer().network() != whole.trainer().network());
    let path = dir.path().join("checkpoint.safetensors");
    let mut other = ConvRun::resume(&path, Some(3)).unwrap();
    let fewer = train.select(&(0..100).collect::<Vec<_>>());
    let err = other
        .train(&fewer, &test, &AtomicBool::new(false), &mut ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("persistent states are for 200"), "{err}");
}
