//! The library's training run: the README's Rust example against `eqprop train`, interruption
//! and resumption through the library, the device seam's refusals, and reproducible files.

mod common;

use common::{data_root, eqprop, example, mnist, temp_dir};
use eqprop::checkpoint::{self, CheckpointRef};
use eqprop::config::Hyperparams;
use eqprop::data::{DatasetName, Split};
use eqprop::device::{Device, DeviceError, Engine, Work};
use eqprop::metrics::{self, EpochRecord};
use eqprop::run::{Observer, Run, RunFiles};
use eqprop::train::{Progress, Trainer};
use std::sync::atomic::{AtomicBool, Ordering};

/// A small `best` run: the preset's dynamics and rates on few examples.
fn small_best(epochs: usize) -> Hyperparams {
    Hyperparams {
        epochs,
        ..Hyperparams::preset("best").unwrap()
    }
}

/// examples/train.rs (the README's example) prints, bit for bit, the test errors that
/// `eqprop train` records for the same settings.
#[test]
fn the_rust_example_reproduces_the_train_command() {
    let dir = temp_dir("example-vs-cli");
    let out = eqprop()
        .args([
            "train",
            "--epochs",
            "2",
            "--train-limit",
            "600",
            "--data-dir",
        ])
        .arg(data_root())
        .arg("--out")
        .arg(dir.join("run"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    let cli: Vec<f64> = metrics::read_jsonl(&dir.join("run/metrics.jsonl"))
        .unwrap()
        .iter()
        .map(|r| r.test_error)
        .collect();
    let out = std::process::Command::new(example("train"))
        .args(["2", "600"])
        .env("EQPROP_DATA_DIR", data_root())
        .output()
        .expect("examples/train (`cargo test --release` builds it; a run filtered to one test does not: `cargo build --release --examples`)");
    assert!(out.status.success(), "{}", common::stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let example: Vec<f64> = text
        .lines()
        .map(|l| {
            let error = l.split("test error ").nth(1).unwrap();
            error.trim_end_matches('%').parse().unwrap()
        })
        .collect();
    assert_eq!(cli.len(), 2);
    assert_eq!(example, cli, "the example: {text}");
}

/// Stops the run (through the flag it was given) after `after` mini-batches of the first epoch.
struct StopAfter<'a> {
    stop: &'a AtomicBool,
    after: usize,
    ended: Vec<EpochRecord>,
}

impl Observer for StopAfter<'_> {
    fn batch(&mut self, p: &Progress) {
        if p.epoch == 0 && p.batch == self.after {
            self.stop.store(true, Ordering::SeqCst);
        }
    }

    fn epoch_ended(&mut self, record: &EpochRecord, _: &Run) -> eqprop::Result<()> {
        self.ended.push(record.clone());
        Ok(())
    }
}

/// A run stopped by its flag mid-epoch saves where it stood; resumed from that checkpoint it
/// ends with the very network of a run never stopped.
#[test]
fn a_stopped_run_resumes_to_the_same_network() {
    let (mut trainset, testset) = (mnist(Split::Train), mnist(Split::Test));
    trainset.truncate(400);
    let hp = small_best(2);
    let dir = temp_dir("run-resume");
    let files = RunFiles::in_dir(&dir);
    let whole = {
        let mut run = Run::new(hp.clone(), DatasetName::Mnist, Device::Cpu).unwrap();
        let report = run
            .train(&trainset, &testset, &AtomicBool::new(false), &mut ())
            .unwrap();
        assert_eq!(report.epochs.len(), 2);
        assert!(!report.interrupted);
        run.trainer().network().clone()
    };
    let stop = AtomicBool::new(false);
    let mut observer = StopAfter {
        stop: &stop,
        after: 7,
        ended: Vec::new(),
    };
    let mut run = Run::new(hp.clone(), DatasetName::Mnist, Device::Cpu)
        .unwrap()
        .save_in(files.clone(), false)
        .unwrap();
    let report = run
        .train(&trainset, &testset, &stop, &mut observer)
        .unwrap();
    assert!(report.interrupted && report.epochs.is_empty());
    let saved = checkpoint::load(&files.checkpoint).unwrap();
    assert_eq!((saved.progress.epoch, saved.progress.batch), (0, 7));
    let fresh = Run::new(hp.clone(), DatasetName::Mnist, Device::Cpu).unwrap();
    let err = fresh
        .save_in(files.clone(), false)
        .err()
        .expect("a run is saved there");
    assert!(matches!(err, eqprop::Error::RunExists(_)), "{err}");
    let mut resumed = Run::resume(saved, &files.checkpoint, hp, Device::Cpu)
        .unwrap()
        .save_in(files.clone(), false)
        .unwrap();
    let report = resumed
        .train(&trainset, &testset, &AtomicBool::new(false), &mut observer)
        .unwrap();
    assert_eq!(report.epochs.len(), 2);
    assert_eq!(observer.ended, report.epochs);
    assert_eq!(resumed.trainer().network(), &whole);
    assert_eq!(metrics::read_jsonl(&files.metrics).unwrap(), report.epochs);
}

/// Resuming with settings the checkpoint was not trained with is refused, naming the setting.
#[test]
fn resuming_with_other_settings_names_the_difference() {
    let (mut trainset, testset) = (mnist(Split::Train), mnist(Split::Test));
    trainset.truncate(100);
    let dir = temp_dir("run-resume-differs");
    let files = RunFiles::in_dir(&dir);
    let mut run = Run::new(small_best(1), DatasetName::Mnist, Device::Cpu)
        .unwrap()
        .save_in(files.clone(), false)
        .unwrap();
    run.train(&trainset, &testset, &AtomicBool::new(false), &mut ())
        .unwrap();
    let saved = checkpoint::load(&files.checkpoint).unwrap();
    let asked = Hyperparams {
        beta: 0.5,
        ..saved.hyperparams.clone()
    };
    let err = Run::resume(saved.clone(), &files.checkpoint, asked, Device::Cpu)
        .err()
        .expect("beta differs");
    assert!(err.to_string().contains("beta = 0.5"), "{err}");
    let fewer = Hyperparams {
        epochs: 0,
        ..saved.hyperparams.clone()
    };
    let err = Run::resume(saved, &files.checkpoint, fewer, Device::Cpu)
        .err()
        .expect("fewer epochs than trained");
    assert!(
        err.to_string().contains("already trained 1 epochs"),
        "{err}"
    );
}

/// What the CUDA engine cannot run is refused by `Device::require`, naming the work; the CPU
/// runs everything.
#[test]
fn the_device_seam_names_what_an_engine_cannot_run() {
    let gated = Hyperparams {
        modulator: Some(Default::default()),
        ..small_best(1)
    };
    assert!(matches!(
        Device::Cuda.require(Work::Train(&gated)),
        Err(DeviceError::CpuOnlySetting("the surprise gate"))
    ));
    assert!(matches!(
        Device::Cuda.require(Work::Continual),
        Err(DeviceError::CpuOnly("continual"))
    ));
    for work in [
        Work::Train(&gated),
        Work::Continual,
        Work::Agent,
        Work::Dream,
    ] {
        Device::Cpu.require(work).unwrap();
    }
    Device::Cuda.require(Work::Train(&small_best(1))).unwrap();
    let trainer = Trainer::new(small_best(1)).unwrap();
    if !cfg!(feature = "cuda") {
        assert!(matches!(
            Engine::for_trainer(Device::Cuda, &trainer),
            Err(DeviceError::NotBuilt)
        ));
    }
    assert_eq!(
        Engine::for_trainer(Device::Cpu, &trainer).unwrap().name(),
        "cpu"
    );
}

/// The same checkpoint saved twice is the same bytes (the header's order does not depend on
/// the process or the map).
#[test]
fn a_checkpoint_is_the_same_bytes_every_time() {
    let trainer = Trainer::new(small_best(1)).unwrap();
    let dir = temp_dir("checkpoint-bytes");
    let ckpt = CheckpointRef {
        hyperparams: trainer.hyperparams(),
        network: trainer.network(),
        progress: trainer.progress(),
        persistent: None,
        dream_chains: None,
        dataset: "mnist",
    };
    let bytes: Vec<Vec<u8>> = (0..4)
        .map(|i| {
            let path = dir.join(format!("c{i}.safetensors"));
            checkpoint::save(&path, &ckpt).unwrap();
            std::fs::read(path).unwrap()
        })
        .collect();
    assert!(bytes.windows(2).all(|w| w[0] == w[1]));
    let back = checkpoint::load(&dir.join("c0.safetensors")).unwrap();
    assert_eq!(&back.network, trainer.network());
}

/// The README's Rust example is examples/train.rs, word for word (so the code the README shows
/// is the code CI compiles and runs).
#[test]
fn the_readme_shows_the_example_ci_runs() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let example = std::fs::read_to_string(format!("{root}/examples/train.rs")).unwrap();
    let marker = "<!-- example: examples/train.rs -->\n```rust\n";
    let start = readme
        .find(marker)
        .expect("the example's marker in README.md")
        + marker.len();
    let block = &readme[start..];
    let block = &block[..block.find("```").expect("the end of the block")];
    assert_eq!(block, example);
}

/// The engines present: the CPU, and the GPU where the build and the machine have one (with
/// `EQPROP_REQUIRE_GPU=1` a missing GPU fails the tests instead of skipping it).
fn engines() -> Vec<Device> {
    let probe = Trainer::new(small_best(1)).unwrap();
    let gpu = Engine::for_trainer(Device::Cuda, &probe);
    let mut devices = vec![Device::Cpu];
    if common::hardware_or_skip(gpu, "EQPROP_REQUIRE_GPU").is_some() {
        devices.push(Device::Cuda);
    }
    devices
}

/// The engine suite, written once and run on every engine present: a run trains through the
/// seam, records what it measured, evaluates to the recorded figure, and learns; the engines
/// agree.
#[test]
fn every_engine_trains_and_evaluates_through_the_seam() {
    let (mut trainset, testset) = (mnist(Split::Train), mnist(Split::Test));
    trainset.truncate(1000);
    let hp = small_best(2);
    let mut errors = Vec::new();
    for device in engines() {
        let mut run = Run::new(hp.clone(), DatasetName::Mnist, device).unwrap();
        let report = run
            .train(&trainset, &testset, &AtomicBool::new(false), &mut ())
            .unwrap();
        assert_eq!(report.epochs.len(), 2, "{device:?}");
        assert!(run.trainer().finished());
        let error = report.test_error().unwrap();
        assert_eq!(run.evaluate(&testset).unwrap().error, error, "{device:?}");
        // Measured on the CPU: 23.5% on the committed sample's test images, 20.48% on the
        // full test set (chance is 90%).
        assert!(error < 30.0, "{device:?}: test error {error}%");
        errors.push(error);
    }
    let spread = errors
        .iter()
        .fold(0.0f64, |m, e| m.max((e - errors[0]).abs()));
    assert!(spread < 2.0, "the engines disagree: {errors:?}");
}
