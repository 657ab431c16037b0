//! Networks with convolutions through the library's run and the `eqprop` command line:
//! training learns, checkpoints round-trip, a stopped run resumes, bad specs are refused.

mod common;

use common::{assert_clear_error, assert_success, eqprop, example, mnist, temp_dir};
use eqprop::conv::train::free_outputs;
use eqprop::conv::{ConvConfig, ConvNet, ConvTrainer, Optimizer, checkpoint};
use eqprop::data::{Dataset, DatasetName, Split};
use eqprop::modulator::{Modulator, Threshold, row_surprise};
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
    learns_and_round_trips(small(), "conv-learns");
}

#[test]
fn a_small_conv_net_learns_with_adam() {
    let cfg = ConvConfig {
        optimizer: Optimizer::Adam,
        lr: vec![2e-3, 2e-3],
        ..small()
    };
    learns_and_round_trips(cfg, "conv-adam");
}

#[test]
fn a_conv_net_with_a_wider_output_interval_learns_and_round_trips() {
    let cfg = ConvConfig {
        arch: "1x28x28,conv8k5+pool,10:-1..2".parse().unwrap(),
        ..small()
    };
    let net = learns_and_round_trips(cfg, "conv-interval");
    assert_eq!(
        net.architecture().to_string(),
        "1x28x28,conv8k5+pool,10:-1..2"
    );
}

#[test]
fn a_conv_net_with_a_softmax_readout_learns_round_trips_and_dreams() {
    let cfg = ConvConfig {
        arch: "1x28x28,conv8k5+pool,32,softmax10".parse().unwrap(),
        lr: vec![0.05, 0.05, 0.02],
        ..small()
    };
    let net = learns_and_round_trips(cfg, "conv-readout");
    let options = eqprop::conv::ConvDream {
        steps: 20,
        noise: false,
        silenced: 0.0,
        ..eqprop::conv::ConvDream::for_config(&small())
    };
    let dreams = eqprop::conv::dream(&net, &[3, 7], &options);
    assert!(dreams.as_slice().iter().all(|x| (0.0..=1.0).contains(x)));
    assert_ne!(dreams.row(0), dreams.row(1), "two labels, one dream");
}

/// Trains `cfg` for its epochs on 600 MNIST images: the test error falls by 20 points to
/// under 50%, and the checkpoint holds the network and config. Returns the network.
fn learns_and_round_trips(cfg: ConvConfig, name: &str) -> ConvNet {
    let (train, test) = (mnist(Split::Train), mnist(Split::Test));
    let train = train.select(&(0..600.min(train.len())).collect::<Vec<_>>());
    let dir = temp_dir(name);
    let files = RunFiles::in_dir(dir.path());
    let mut run = ConvRun::new(cfg.clone(), DatasetName::Mnist)
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
    let again = ConvRun::new(cfg, DatasetName::Mnist).unwrap();
    assert!(again.save_in(files, false).is_err());
    saved.network
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
    // The checkpoint says the network has convolutions and keeps the training limit: --resume
    // needs neither --arch nor --train-limit, and refuses flags that ask for another run.
    let resume = |extra: &[&str]| {
        eqprop()
            .args(["train", "--resume", "--epochs", "3", "--out"])
            .arg(&out_dir)
            .args(extra)
            .output()
            .unwrap()
    };
    let other_rates = resume(&["--lr", "0.5,0.02"]);
    assert_clear_error(&other_rates, &["--lr", "0.5", "0.05", "--force"]);
    let other_limit = resume(&["--train-limit", "300"]);
    assert_clear_error(&other_limit, &["--train-limit", "300", "200"]);
    let other_data = resume(&["--dataset", "fashion-mnist"]);
    assert_clear_error(&other_data, &["trained on mnist, not fashion-mnist"]);
    let again = resume(&[]);
    assert_success(&again);
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(text.contains("epoch   3"), "{text}");
    let log = String::from_utf8_lossy(&again.stderr);
    assert!(log.contains("(200 train / "), "{log}");
    let fewer = eqprop()
        .args(["train", "--resume", "--epochs", "2", "--out"])
        .arg(&out_dir)
        .output()
        .unwrap();
    assert_clear_error(&fewer, &["--epochs 2", "already trained 3 epochs"]);
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
fn a_dense_spec_with_another_interval_trains_without_the_presets_image_shift() {
    let dir = temp_dir("conv-dense-interval");
    let out = eqprop()
        .args(["train", "--arch", "784,16,10:-1..2", "--lr", "0.1,0.05"])
        .args(["--train-limit", "100", "--epochs", "1", "--out"])
        .arg(dir.path().join("run"))
        .output()
        .unwrap();
    assert_success(&out);
    let saved = checkpoint::load(&dir.path().join("run/checkpoint.safetensors")).unwrap();
    assert_eq!(saved.config.arch.to_string(), "784,16,10:-1..2");
    assert_eq!(saved.config.shift, 0);
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
        &run(&["--preset", "conv-mnist", "--gate", "--gate-share", "2"]),
        &["gate share", "got 2"],
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

/// With Adam, the checkpoint keeps its moments and step count: a run stopped after an epoch
/// and resumed ends with the network of a run never stopped (restarting the moments would
/// not), and Adam trains another network than SGD at the same rates.
#[test]
fn a_resumed_run_with_adam_continues_its_moments() {
    let cfg = ConvConfig {
        optimizer: Optimizer::Adam,
        lr: vec![1e-3; small().lr.len()],
        ..small()
    };
    let dir = temp_dir("conv-adam-resume");
    let (whole, resumed, saved) = whole_and_resumed(cfg.clone(), dir.path());
    let adam = saved.adam.as_ref().expect("the moments are saved");
    assert_eq!(adam.steps, 10, "200 examples in batches of 20");
    assert!(saved.velocity.is_none());
    assert_eq!(resumed.trainer().network(), whole.trainer().network());
    assert_eq!(resumed.trainer().adam(), whole.trainer().adam());
    let mut restarted = eqprop::conv::ConvTrainer::with_network(saved.config, saved.network, 1);
    restarted.run_epoch(&small_sets().0, |_, _| true).unwrap();
    assert_ne!(restarted.network(), whole.trainer().network());
    let mut sgd = eqprop::conv::ConvTrainer::new(ConvConfig {
        optimizer: Optimizer::Sgd,
        ..cfg
    })
    .unwrap();
    sgd.run_epoch(&small_sets().0, |_, _| true).unwrap();
    assert_ne!(sgd.network(), whole.trainer().network());
}

/// Adam's first moment is its momentum: a config with both is refused, naming the field.
#[test]
fn adam_with_momentum_is_refused() {
    let cfg = ConvConfig {
        optimizer: Optimizer::Adam,
        momentum: 0.9,
        ..small()
    };
    let err = cfg.validate().unwrap_err().to_string();
    assert!(err.contains("momentum") && err.contains("Adam"), "{err}");
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

/// Generative training (the label clamped, the input free and pulled toward the image) moves
/// every coupling and the input's bias beyond what classification alone does; its persistent
/// chains are saved, so that a run stopped after an epoch and resumed ends with the network of
/// a run never stopped; and its dreams relax with the input stiffness it trained with.
#[test]
fn generative_training_keeps_its_chains_and_resumes_exactly() {
    let cfg = ConvConfig {
        generative: Some(eqprop::learning_rule::Generative {
            lr_scale: 0.01,
            ..Default::default()
        }),
        ..small()
    };
    let dir = temp_dir("conv-generative-resume");
    let (whole, resumed, saved) = whole_and_resumed(cfg.clone(), dir.path());
    let chains = saved.chains.as_ref().expect("the chains are saved");
    let sizes = cfg.arch.sizes();
    assert_eq!(chains.len(), sizes.len());
    for (c, &size) in chains.iter().zip(&sizes) {
        assert_eq!((c.rows(), c.cols()), (cfg.batch_size, size));
        assert!(c.as_slice().iter().any(|&v| v != 0.0), "the chains moved");
    }
    assert!(resumed.trainer().network() == whole.trainer().network());
    assert!(resumed.trainer().chains() == whole.trainer().chains());
    let (train, test) = small_sets();
    let mut classifier = ConvRun::new(small(), DatasetName::Mnist).unwrap();
    classifier
        .train(&train, &test, &AtomicBool::new(false), &mut ())
        .unwrap();
    let (a, b) = (whole.trainer().network(), classifier.trainer().network());
    for k in 1..sizes.len() {
        assert_ne!(a.weight(k), b.weight(k), "W_{k} learned generatively too");
    }
    assert_ne!(a.bias(0), b.bias(0), "the input bias learned");
    // Without the saved chains the second epoch starts them from zero and goes elsewhere.
    let mut restarted = ConvTrainer::with_network(saved.config.clone(), saved.network, 1);
    restarted.run_epoch(&train, |_, _| true).unwrap();
    assert_ne!(restarted.network(), whole.trainer().network());
    let options = eqprop::conv::ConvDream::for_config(&saved.config);
    assert_eq!(options.input_stiffness, 0.5);
    let dreams = eqprop::conv::dream(a, &[3, 3, 7], &options);
    assert_eq!((dreams.rows(), dreams.cols()), (3, 784));
    assert!(dreams.as_slice().iter().all(|v| (0.0..=1.0).contains(v)));
    assert_ne!(
        dreams.row(0),
        dreams.row(1),
        "noise and silence vary the dreams"
    );
}

/// Generative training clamps the label on the output's states: a softmax readout has none,
/// and the config is refused by name.
#[test]
fn generative_training_of_a_readout_is_refused() {
    let cfg = ConvConfig {
        arch: "1x28x28,conv8k5+pool,softmax10".parse().unwrap(),
        generative: Some(Default::default()),
        ..small()
    };
    let err = cfg.validate().unwrap_err().to_string();
    assert!(
        err.contains("generative training") && err.contains("softmax readout"),
        "{err}"
    );
}

/// `small()` with a surprise gate of this threshold, for one epoch.
fn gated(threshold: Threshold) -> ConvConfig {
    ConvConfig {
        modulator: Some(Modulator {
            threshold,
            gain: 1.0,
        }),
        epochs: 1,
        ..small()
    }
}

/// A fresh trainer of `cfg` after one epoch on `data`, and what the epoch measured.
fn one_epoch(cfg: ConvConfig, data: &Dataset) -> (ConvTrainer, eqprop::conv::train::ConvEpoch) {
    let mut trainer = ConvTrainer::new(cfg).unwrap();
    let epoch = trainer.run_epoch(data, |_, _| true).unwrap();
    (trainer, epoch)
}

#[test]
fn weight_decay_shrinks_each_coupling_by_its_rate_times_the_decay() {
    // One batch, so one update: with decay D, W_k = (1 - lr_k D) W_k(0) + step, where the step
    // is the one the run without decay takes from the same start.
    let (train, _) = small_sets();
    let batch = train.select(&(0..20).collect::<Vec<_>>());
    let cfg = ConvConfig {
        epochs: 1,
        ..small()
    };
    let start = ConvTrainer::new(cfg.clone()).unwrap().network().clone();
    let (plain, _) = one_epoch(cfg.clone(), &batch);
    let decay = 0.5;
    let (decayed, _) = one_epoch(
        ConvConfig {
            weight_decay: decay,
            ..cfg.clone()
        },
        &batch,
    );
    let (plain, decayed) = (plain.network(), decayed.network());
    assert_eq!(plain.biases(), decayed.biases(), "the biases do not decay");
    for (k, lr) in (1..).zip(&cfg.lr) {
        let expected = plain
            .weight(k)
            .as_slice()
            .iter()
            .zip(start.weight(k).as_slice());
        let got = decayed.weight(k).as_slice();
        for ((p, w0), d) in expected.zip(got) {
            assert!(
                (p - lr * decay * w0 - d).abs() < 1e-6,
                "W{k}: {d} vs {p} - lr D {w0}"
            );
        }
    }
    assert!(largest_difference(plain, decayed) > 1e-3);
    let refused = ConvConfig {
        weight_decay: 1.0 / cfg.lr[0],
        ..cfg.clone()
    };
    let err = refused.validate().unwrap_err().to_string();
    assert!(err.contains("weight_decay"), "{err}");
    // A gate's gain scales the decay too: lr D = 0.6 is refused at gain 2.
    let gained = ConvConfig {
        weight_decay: 0.6 / cfg.lr[0],
        modulator: Some(Modulator {
            threshold: Threshold::Fixed { value: 0.0 },
            gain: 2.0,
        }),
        ..cfg
    };
    let err = gained.validate().unwrap_err().to_string();
    assert!(err.contains("weight_decay"), "{err}");
}

/// The largest difference between two networks' parameters.
fn largest_difference(a: &ConvNet, b: &ConvNet) -> f32 {
    let weights = a.weights().iter().zip(b.weights());
    let w = weights.flat_map(|(x, y)| x.as_slice().iter().zip(y.as_slice()));
    let biases = a.biases().iter().zip(b.biases());
    let b = biases.flat_map(|(x, y)| x.iter().zip(y));
    w.chain(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The surprise gate at its two ends: a threshold every example passes trains the network of
/// the ungated run bit for bit; one no example passes leaves the network as it was and runs
/// only free phases.
#[test]
fn a_gate_that_all_or_none_pass_learns_as_without_it_or_not_at_all() {
    let (train, _) = small_sets();
    let (plain, _) = one_epoch(
        ConvConfig {
            epochs: 1,
            ..small()
        },
        &train,
    );
    let (open, epoch) = one_epoch(gated(Threshold::Fixed { value: 0.0 }), &train);
    assert_eq!(epoch.learned_share, 1.0);
    assert_eq!(open.network(), plain.network());
    let (closed, epoch) = one_epoch(gated(Threshold::Fixed { value: 1e9 }), &train);
    let untouched = ConvTrainer::new(small()).unwrap();
    assert_eq!(closed.network(), untouched.network());
    assert_eq!(epoch.learned_share, 0.0);
    assert_eq!(epoch.mean_steps, small().t_free as f64);
}

/// A gate that some examples pass: the mini-batch's update is the EqProp update of those
/// examples alone (still divided by the whole mini-batch), and the others relax their free
/// phase only.
#[test]
fn the_gated_update_is_the_update_of_the_examples_that_pass() {
    let (train, _) = small_sets();
    let data = train.select(&(0..40).collect::<Vec<_>>());
    let cfg = ConvConfig {
        batch_size: 40,
        ..gated(Threshold::Fixed { value: 0.0 })
    };
    // The threshold: the midpoint of the widest gap between the middle surprises, so that no
    // example sits near it.
    let untrained = ConvTrainer::new(cfg.clone()).unwrap();
    let outputs = free_outputs(untrained.network(), &cfg, &data);
    let surprise: Vec<f32> = (0..data.len())
        .map(|i| {
            let mut target = vec![0.0; outputs.cols()];
            target[usize::from(data.labels[i])] = 1.0;
            row_surprise(outputs.row(i), &target)
        })
        .collect();
    let mut sorted = surprise.clone();
    sorted.sort_by(f32::total_cmp);
    let gap = (10..30).max_by(|&a, &b| {
        let width = |k: usize| sorted[k + 1] - sorted[k];
        width(a).total_cmp(&width(b))
    });
    let k = gap.unwrap();
    let value = 0.5 * (sorted[k] + sorted[k + 1]);
    let learners: Vec<usize> = (0..data.len()).filter(|&i| surprise[i] > value).collect();
    assert!(
        (10..30).contains(&learners.len()),
        "{} learn",
        learners.len()
    );
    let (gated_run, epoch) = one_epoch(
        ConvConfig {
            modulator: Some(Modulator {
                threshold: Threshold::Fixed { value },
                gain: 1.0,
            }),
            ..cfg.clone()
        },
        &data,
    );
    assert_eq!(epoch.learned_share, learners.len() as f64 / 40.0);
    let nudged = (learners.len() * 2 * cfg.t_nudge) as f64 / 40.0;
    assert_eq!(epoch.mean_steps, cfg.t_free as f64 + nudged);
    // The same examples alone, ungated, at the rates times their share of the mini-batch.
    let share = learners.len() as f32 / 40.0;
    let alone = ConvConfig {
        batch_size: learners.len(),
        modulator: None,
        lr: cfg.lr.iter().map(|lr| lr * share).collect(),
        ..cfg.clone()
    };
    let (alone_run, _) = one_epoch(alone, &data.select(&learners));
    let (everyone, _) = one_epoch(
        ConvConfig {
            modulator: None,
            ..cfg
        },
        &data,
    );
    let start = untrained.network();
    let moved = largest_difference(gated_run.network(), start);
    let off = largest_difference(gated_run.network(), alone_run.network());
    // Rounding only: a chunk's kernels (dense or scattered products) depend on its rows, so
    // the same examples in other chunks land a few 1e-4 of the step apart (the learners
    // alone in reverse order: 2e-4); one example too many or the wrong divisor is 1e-2 and up.
    assert!(off < 2e-3 * moved, "off by {off}, moved by {moved}");
    let apart = largest_difference(gated_run.network(), everyone.network());
    assert!(
        apart > 0.1 * moved,
        "the gate changed little: {apart} of {moved}"
    );
}

/// The gate's threshold is kept in the checkpoint: a run stopped after an epoch and resumed
/// ends where a run never stopped does, and restarting the threshold would not.
#[test]
fn a_gated_run_resumes_with_its_threshold() {
    let cfg = ConvConfig {
        epochs: 2,
        ..gated(Threshold::Adaptive {
            share: 0.3,
            step: 0.1,
        })
    };
    let dir = temp_dir("conv-gate-resume");
    let (whole, resumed, saved) = whole_and_resumed(cfg, dir.path());
    let theta = saved.threshold.expect("saved with the gate");
    assert!(theta > 0.0, "the threshold moved in the first epoch");
    assert_eq!(resumed.trainer().network(), whole.trainer().network());
    assert_eq!(resumed.trainer().threshold(), whole.trainer().threshold());
    let mut restarted = ConvTrainer::with_network(saved.config, saved.network, 1);
    restarted.run_epoch(&small_sets().0, |_, _| true).unwrap();
    assert!(restarted.network() != whole.trainer().network());
}

/// `eqprop bench --gate-ab` trains without and with the surprise gate, for a network with
/// convolutions as for a dense one, and reports both.
#[test]
fn the_gate_benchmark_compares_both_runs_for_dense_and_conv_networks() {
    let tiny = [
        "--train-limit",
        "100",
        "--epochs",
        "1",
        "--rounds",
        "1",
        "--settle",
        "0",
    ];
    let conv = [
        "--arch",
        "1x28x28,conv4k5+pool,10",
        "--lr",
        "0.05,0.02",
        "--t-free",
        "4",
    ];
    for network in [&conv[..], &["--preset", "best"]] {
        let out = eqprop()
            .args(["bench", "--gate-ab"])
            .args(tiny)
            .args(network)
            .output()
            .unwrap();
        assert_success(&out);
        let report = String::from_utf8_lossy(&out.stdout);
        for row in ["| ungated |", "| gated |", "wall-clock ratio gated/ungated"] {
            assert!(report.contains(row), "{network:?}: no '{row}' in {report}");
        }
    }
}
