//! Dreaming: the label clamped, the input free. Physics (energy descent, bounds), seeds, and the
//! `eqprop dream` / `train --dreams` pictures.

use eqprop::dream::{DreamOptions, DreamStart, LabelClamp, dream, one_hot};
use eqprop::energy::{cost, energy};
use eqprop::network::Network;
use rand::SeedableRng;

mod common;
use common::temp_dir;

fn net(sizes: &[usize], seed: u64) -> Network {
    Network::glorot(sizes, &mut rand_chacha::ChaCha8Rng::seed_from_u64(seed)).unwrap()
}

fn in_unit_interval(values: &[f32]) -> bool {
    values.iter().all(|v| (0.0..=1.0).contains(v))
}

#[test]
fn dreams_stay_in_the_unit_interval_and_clamp_the_label() {
    let net = net(&[784, 200, 10], 1);
    for temperature in [0.0, 0.05, 1.0] {
        for start in [DreamStart::Zeros, DreamStart::Noise] {
            let options = DreamOptions {
                steps: 30,
                temperature,
                start: start.clone(),
                record_every: 10,
                ..Default::default()
            };
            let d = dream(&net, &[0, 3, 9], &options);
            assert_eq!((d.images.rows(), d.images.cols()), (3, 784));
            assert!(in_unit_interval(d.images.as_slice()), "T {temperature}");
            assert_eq!(d.frames.len(), 4, "the start and every 10th step");
            assert_eq!(d.frames.last(), Some(&d.images));
            assert!(d.frames.iter().all(|f| in_unit_interval(f.as_slice())));
        }
    }
}

#[test]
fn dreams_are_reproducible_for_a_seed_and_vary_across_seeds() {
    let net = net(&[784, 200, 10], 2);
    let options = |seed| DreamOptions {
        steps: 40,
        temperature: 0.02,
        start: DreamStart::Noise,
        seed,
        ..Default::default()
    };
    let a = dream(&net, &[4, 4], &options(7));
    let b = dream(&net, &[4, 4], &options(7));
    let c = dream(&net, &[4, 4], &options(8));
    assert_eq!(a.images, b.images, "same seed, same dreams");
    assert_ne!(a.images, c.images, "another seed, other dreams");
    assert_ne!(
        a.images.row(0),
        a.images.row(1),
        "two dreams of one label differ"
    );
}

/// With the label hard-clamped and no noise, dreaming is projected gradient descent on the
/// same energy as training, now over the input too: the energy never rises.
#[test]
fn noiseless_dreaming_descends_the_energy() {
    let net = net(&[50, 30, 4], 3);
    let labels = [1, 2];
    let start = eqprop::tensor::Matrix::from_vec(
        2,
        50,
        (0..100).map(|i| (i * 37 % 100) as f32 / 100.0).collect(),
    )
    .unwrap();
    let mut previous = f32::INFINITY;
    for steps in 0..25 {
        let options = DreamOptions {
            steps,
            start: DreamStart::Images(start.clone()),
            ..Default::default()
        };
        let d = dream(&net, &labels, &options);
        // Rebuild the full state: the hidden layer is not returned, so relax it again from the
        // same start for the same steps through the public API of the dynamics.
        let state = full_state(&net, &labels, &start, steps);
        assert_eq!(state.layers[0], d.images);
        let e: f32 = energy(&net, &state.layers).iter().sum();
        assert!(
            e <= previous + 1e-4,
            "step {steps}: energy rose {previous} -> {e}"
        );
        previous = e;
    }
}

fn full_state(
    net: &Network,
    labels: &[usize],
    start: &eqprop::tensor::Matrix,
    steps: usize,
) -> eqprop::dynamics::State {
    use eqprop::dynamics::{Phase, Relaxation, State};
    let mut state = State::zeros(net.sizes(), labels.len());
    state.layers[0].copy_from(start);
    state.layers[2].copy_from(&one_hot(labels, 4, 0.0, 1.0));
    let clamped = [false, false, true];
    let mut relax = Relaxation::new(net.sizes(), labels.len());
    relax.prepare(net, &state, &clamped);
    for _ in 0..steps {
        relax.relax(net, &mut state, &Phase::free(1, 0.5));
    }
    state
}

#[test]
fn a_nudged_label_pulls_the_output_toward_it() {
    let net = net(&[784, 100, 10], 4);
    let labels = [5, 2, 8];
    let options = |clamp| DreamOptions {
        steps: 60,
        clamp,
        ..Default::default()
    };
    let hard = dream(&net, &labels, &options(LabelClamp::Hard));
    assert_eq!(hard.outputs, one_hot(&labels, 10, 0.0, 1.0));
    let strong = dream(&net, &labels, &options(LabelClamp::Nudge { beta: 5.0 }));
    let weak = dream(&net, &labels, &options(LabelClamp::Nudge { beta: 0.01 }));
    assert!(in_unit_interval(strong.outputs.as_slice()));
    let target = one_hot(&labels, 10, 0.0, 1.0);
    let (near, far) = (cost(&strong.outputs, &target), cost(&weak.outputs, &target));
    for (r, &label) in labels.iter().enumerate() {
        assert_eq!(strong.outputs.argmax_row(r), label, "a strong nudge wins");
        assert!(
            near[r] < far[r],
            "closer to the label: {} vs {}",
            near[r],
            far[r]
        );
    }
}

fn eqprop(args: &[&str]) -> std::process::Output {
    common::eqprop().args(args).output().unwrap()
}

/// `train --generative --dreams` writes a grid per epoch; `dream` writes the requested grid and
/// animation; bad labels are named.
#[test]
fn dream_command_writes_pictures_and_names_bad_labels() {
    let dir = temp_dir("cli");
    let run = dir.join("run");
    let run = run.to_str().unwrap();
    let out = eqprop(&[
        "train",
        "--out",
        run,
        "--train-limit",
        "500",
        "--layers",
        "784,30,10",
        "--epochs",
        "1",
        "--generative",
        "--dreams",
        "--dream-steps",
        "20",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let grid = image::open(dir.join("run/dreams/epoch-1.png")).unwrap();
    assert!(grid.width() > 8 * 56 && grid.height() >= 10 * 56);

    let ckpt = dir.join("run/checkpoint.safetensors");
    let ckpt = ckpt.to_str().unwrap();
    let png = dir.join("d.png");
    let gif = dir.join("d.gif");
    let out = eqprop(&[
        "dream",
        "--checkpoint",
        ckpt,
        "--labels",
        "2,7",
        "--samples",
        "3",
        "--dream-steps",
        "30",
        "--temperature",
        "0.01",
        "--out",
        png.to_str().unwrap(),
        "--gif",
        gif.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let picture = image::open(&png).unwrap();
    assert_eq!(picture.height(), 2 * (28 * 2 + 2), "one row per label");
    assert_eq!(
        picture.width(),
        4 * (28 * 2 + 2),
        "a label cell and three dreams"
    );
    assert!(std::fs::metadata(&gif).unwrap().len() > 0);

    for (labels, needle) in [("12", "label 12 is outside"), ("x", "'x' is not a label")] {
        let out = eqprop(&["dream", "--checkpoint", ckpt, "--labels", labels]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(needle) && !err.contains("panicked"), "{err}");
    }
}
