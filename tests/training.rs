//! Training on the real data, checkpoints, and exact resumption.

use eqprop::checkpoint::{self, CheckpointRef};
use eqprop::config::Hyperparams;
use eqprop::data::{Dataset, Split};
use eqprop::learning_rule::{Generative, GenerativeStart, Nudging};
use eqprop::train::{self, EpochEnd, Trainer};
use std::sync::atomic::{AtomicBool, Ordering};

mod common;
use common::{by_data, mnist, temp_dir};

fn train_epochs(trainer: &mut Trainer, data: &Dataset) {
    let stop = AtomicBool::new(false);
    while !trainer.finished() {
        assert!(matches!(
            trainer.run_epoch(data, &stop, |_| {}),
            EpochEnd::Completed(_)
        ));
    }
}

/// The paper's settings learn the real data: on the full files one epoch over the 10,000
/// training images reaches below 12% error on the 10,000 test images (measured: 9.83%); on the
/// committed sample ten epochs over its 1,000 images (as many examples) reach below 22% on its
/// 1,000 test images (measured: 17.60%; one epoch: 40.60%). Untrained: 88.70% and 87.30%.
#[test]
fn one_epoch_on_real_mnist_learns() {
    let (train_set, test_set) = (mnist(Split::Train), mnist(Split::Test));
    let hp = Hyperparams {
        epochs: by_data(10, 1),
        ..Hyperparams::preset("paper").unwrap()
    };
    let untrained = train::evaluate(
        &Trainer::new(hp.clone()).unwrap().network().clone(),
        &hp,
        &test_set,
    );
    let mut trainer = Trainer::new(hp.clone()).unwrap();
    train_epochs(&mut trainer, &train_set);
    let result = train::evaluate(trainer.network(), &hp, &test_set);
    assert!(
        untrained.error > 70.0,
        "an untrained net guesses: {}",
        untrained.error
    );
    let bound = by_data(22.0, 12.0);
    assert!(
        result.error < bound,
        "test error after {} epochs: {:.2}% (bound {bound}%)",
        hp.epochs,
        result.error
    );
}

fn small_hyperparams() -> Hyperparams {
    Hyperparams {
        layers: vec![784, 40, 10],
        epochs: 2,
        persistent: true,
        nudging: Nudging::RandomSign,
        ..Hyperparams::preset("paper").unwrap()
    }
}

#[test]
fn checkpoint_round_trip_keeps_everything() {
    let mut train_set = mnist(Split::Train);
    train_set.truncate(300);
    let mut trainer = Trainer::new(small_hyperparams()).unwrap();
    let stop = AtomicBool::new(false);
    trainer.run_epoch(&train_set, &stop, |_| {});
    let dir = temp_dir("roundtrip");
    let path = dir.join("model.safetensors");
    let saved = CheckpointRef {
        hyperparams: trainer.hyperparams(),
        network: trainer.network(),
        progress: trainer.progress(),
        persistent: trainer.persistent_states(),
        dream_chains: None,
        dataset: "mnist",
    };
    checkpoint::save(&path, &saved).unwrap();
    let loaded = checkpoint::load(&path).unwrap();
    assert_eq!(&loaded.hyperparams, trainer.hyperparams());
    assert_eq!(&loaded.network, trainer.network());
    assert_eq!(&loaded.progress, trainer.progress());
    assert_eq!(loaded.dataset, "mnist");
    let persistent = loaded.persistent.expect("persistent states saved");
    assert_eq!(&persistent[1..], &trainer.persistent_states().unwrap()[1..]);
}

/// Interrupting after any mini-batch, saving, loading and resuming gives bit-identical weights,
/// also for generative training with persistent dream chains.
#[test]
fn interrupted_and_resumed_equals_uninterrupted() {
    let generative = Hyperparams {
        generative: Some(Generative {
            start: GenerativeStart::Persistent,
            t_free: 3,
            t_nudge: 2,
            ..Generative::default()
        }),
        ..small_hyperparams()
    };
    for hp in [small_hyperparams(), generative] {
        check_resume(hp);
    }
}

fn check_resume(hp: Hyperparams) {
    let mut train_set = mnist(Split::Train);
    train_set.truncate(400);
    let mut straight = Trainer::new(hp.clone()).unwrap();
    train_epochs(&mut straight, &train_set);

    let dir = temp_dir("resume");
    let path = dir.join("model.safetensors");
    let mut first = Trainer::new(hp.clone()).unwrap();
    let stop = AtomicBool::new(false);
    assert!(matches!(
        first.run_epoch(&train_set, &stop, |_| {}),
        EpochEnd::Completed(_)
    ));
    let end = first.run_epoch(&train_set, &stop, |p| {
        stop.store(p.batch == 7, Ordering::SeqCst)
    });
    assert_eq!(end, EpochEnd::Interrupted);
    assert_eq!((first.progress().epoch, first.progress().batch), (1, 7));
    let chains = first.dream_chains();
    assert_eq!(chains.is_some(), hp.generative.is_some());
    let saved = CheckpointRef {
        hyperparams: first.hyperparams(),
        network: first.network(),
        progress: first.progress(),
        persistent: first.persistent_states(),
        dream_chains: chains.as_deref(),
        dataset: "mnist",
    };
    checkpoint::save(&path, &saved).unwrap();
    drop(first);

    let ckpt = checkpoint::load(&path).unwrap();
    let mut resumed = Trainer::resume(
        ckpt.hyperparams,
        ckpt.network,
        ckpt.progress,
        ckpt.persistent,
    )
    .with_dream_chains(ckpt.dream_chains);
    train_epochs(&mut resumed, &train_set);
    assert_eq!(
        resumed.network(),
        straight.network(),
        "resumed weights differ ({:?})",
        hp.generative
    );
    assert_ne!(resumed.network(), Trainer::new(hp).unwrap().network());
}

#[test]
fn corrupt_checkpoints_are_clear_errors() {
    let dir = temp_dir("corrupt");
    let missing = dir.join("missing.safetensors");
    let err = checkpoint::load(&missing).unwrap_err().to_string();
    assert!(err.contains("missing.safetensors"), "{err}");
    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"this is not a checkpoint").unwrap();
    let err = checkpoint::load(&garbage).unwrap_err().to_string();
    assert!(
        err.contains("garbage.safetensors") && err.contains("safetensors"),
        "{err}"
    );
    let foreign = dir.join("foreign.safetensors");
    let bytes = safetensors::serialize(
        Vec::<(String, safetensors::tensor::TensorView)>::new(),
        None,
    )
    .unwrap();
    std::fs::write(&foreign, bytes).unwrap();
    let err = checkpoint::load(&foreign).unwrap_err().to_string();
    assert!(err.contains("not an eqprop checkpoint"), "{err}");
}

/// Chunking depends on the batch size only, so one worker and two give bit-identical weights.
#[test]
fn results_do_not_depend_on_the_thread_count() {
    let mut train_set = mnist(Split::Train);
    train_set.truncate(600);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut trainer = Trainer::new(small_hyperparams()).unwrap();
            train_epochs(&mut trainer, &train_set);
            trainer.network().clone()
        })
    };
    assert_eq!(run(1), run(2));
}

/// Examples with their own target rows: a row equal to the one-hot label trains exactly like
/// the label; another row trains differently; select, extend and truncate keep the rows with
/// their examples.
#[test]
fn target_rows_replace_labels() {
    let mut data = mnist(Split::Train);
    data.truncate(400);
    let hp = Hyperparams {
        epochs: 1,
        ..Hyperparams::preset("paper").unwrap()
    };
    let one_hot = |label: u8| -> Vec<f32> { (0..10).map(|j| f32::from(j == label)).collect() };
    let train = |data: &Dataset| {
        let mut trainer = Trainer::new(hp.clone()).unwrap();
        train_epochs(&mut trainer, data);
        trainer.network().clone()
    };
    let plain = train(&data);
    let mut same = data.clone();
    same.targets = data.labels.iter().map(|&l| Some(one_hot(l))).collect();
    assert_eq!(train(&same), plain, "one-hot rows train like labels");
    let mut soft = data.clone();
    soft.targets = data
        .labels
        .iter()
        .map(|&l| Some(one_hot((l + 1) % 10)))
        .collect();
    assert_ne!(train(&soft), plain, "other rows change the training");

    let mut mixed = data.select(&[0, 1]);
    mixed.extend(&same.select(&[2, 3]));
    assert_eq!(mixed.targets.len(), 4);
    assert_eq!(mixed.target(0), None);
    assert_eq!(mixed.target(3), Some(&one_hot(data.labels[3])[..]));
    mixed.truncate(3);
    assert_eq!(mixed.targets.len(), 3);
}
