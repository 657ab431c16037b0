//! Deep networks (two hidden layers): why Glorot's initial couplings stall them, and that the
//! `deep` preset, which halves them, learns.
//!
//! Measured on 784-500-500-10 (docs/results.md, "Deep networks"): at Glorot's scale the
//! 500-500 coupling `W_2` has a largest singular value near 2, so the loop `h1 -> h2 -> h1`
//! has gain near 4. The hidden layers saturate and the first mini-batches' updates deepen one
//! attractor that ignores the input: every image gets the same answer. At half the scale the
//! loop gain is near 1 and the same dynamics and learning rates learn.

mod common;

use common::mnist;
use eqprop::config::Hyperparams;
use eqprop::data::{Dataset, Split};
use eqprop::dynamics::{Kernel, Nudge, Phase, Relaxation, State};
use eqprop::network::Network;
use eqprop::tensor::Matrix;
use eqprop::train::{Trainer, evaluate};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::atomic::AtomicBool;

/// Test error (%) on the first 1,000 test images after one epoch on the first 1,000 training
/// images, from a fresh network.
fn error_after_one_epoch(hp: Hyperparams) -> f64 {
    let first = |mut data: Dataset| {
        data.truncate(1000);
        data
    };
    let (train, test) = (first(mnist(Split::Train)), first(mnist(Split::Test)));
    let hp = Hyperparams { epochs: 1, ..hp };
    let mut trainer = Trainer::new(hp.clone()).unwrap();
    let stop = AtomicBool::new(false);
    trainer
        .run_epoch(&train, &stop, |_| {})
        .completed()
        .unwrap();
    evaluate(trainer.network(), &hp, &test).error
}

/// The regression test of the stall: the `deep` preset learns (measured: 32.5% error after one
/// epoch of 1,000 images), the same settings from Glorot's full-scale couplings give one answer
/// for every image (measured: 91.3%), as `paper-2h` did.
#[test]
fn half_scale_couplings_let_the_deep_network_learn() {
    let hp = Hyperparams::preset("deep").unwrap();
    let deep = error_after_one_epoch(hp.clone());
    assert!(
        deep < 50.0,
        "deep preset: {deep}% test error after one epoch"
    );
    let glorot = error_after_one_epoch(Hyperparams {
        init_gain: 1.0,
        ..hp
    });
    assert!(
        glorot > 80.0,
        "deep from Glorot's scale: {glorot}% (it stalled at 80-90%)"
    );
    eprintln!("after one epoch of 1,000 images: deep {deep}%, at Glorot's scale {glorot}%");
}

/// The gain scales the Glorot couplings and nothing else; gain 1 is Glorot's network itself
/// (every other preset's run stays as it was).
#[test]
fn the_initial_gain_scales_the_glorot_couplings() {
    let hp = Hyperparams::preset("deep").unwrap();
    let glorot = Network::glorot(&hp.layers, &mut ChaCha8Rng::seed_from_u64(hp.seed)).unwrap();
    let one = Hyperparams {
        init_gain: 1.0,
        ..hp.clone()
    };
    assert_eq!(one.initial_network().unwrap(), glorot);
    let half = hp.initial_network().unwrap();
    for (a, b) in half.weights().iter().zip(glorot.weights()) {
        assert!(
            a.as_slice()
                .iter()
                .zip(b.as_slice())
                .all(|(x, y)| *x == 0.5 * y)
        );
    }
    assert_eq!(half.biases(), glorot.biases());
    let json = serde_json::to_string(&Hyperparams::preset("paper-2h").unwrap()).unwrap();
    assert!(
        !json.contains("init_gain"),
        "gain 1 leaves the saved form as it was: {json}"
    );
    let bad = Hyperparams {
        init_gain: 0.0,
        ..hp
    };
    assert!(
        bad.validate()
            .unwrap_err()
            .to_string()
            .contains("init_gain")
    );
}

/// The batched GEMM kernel (which relaxes 784-500-500-10: its free couplings are too many to
/// fuse) and the fused one agree on that shape, free and nudged.
#[test]
fn kernels_agree_on_the_two_hidden_layer_shape() {
    let sizes = [784, 500, 500, 10];
    let batch = 4;
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut net = Network::glorot(&sizes, &mut rng).unwrap();
    for b in net.biases_mut() {
        b.iter_mut().for_each(|x| *x = rng.random_range(-0.2..0.2));
    }
    let mut start = State::zeros(&sizes, batch);
    for layer in &mut start.layers {
        let values = layer.as_mut_slice().iter_mut();
        values.for_each(|x| *x = rng.random_range(0.0..1.0));
    }
    let target = start.layers[3].clone();
    let relaxed = |kernel: Kernel| {
        let mut state = start.clone();
        let mut relax = Relaxation::new(&sizes, batch).with_kernel(kernel);
        relax.prepare(&net, &state, &[true, false, false, false]);
        relax.relax(&net, &mut state, &Phase::free(5, 0.5));
        let nudge = Nudge {
            layer: 3,
            beta: -1.0,
            target: &target,
        };
        let phase = Phase {
            steps: 3,
            eps: 0.5,
            nudge: Some(nudge),
        };
        relax.relax(&net, &mut state, &phase);
        state
    };
    let (gemm, fused) = (relaxed(Kernel::Gemm), relaxed(Kernel::Fused));
    for (k, (a, b)) in gemm.layers.iter().zip(&fused.layers).enumerate() {
        assert!(max_abs_diff(a, b) < 1e-4, "layer {k}: kernels differ");
    }
    assert_ne!(gemm, start, "the phases must move the state");
}

fn max_abs_diff(a: &Matrix, b: &Matrix) -> f32 {
    a.as_slice()
        .iter()
        .zip(b.as_slice())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
