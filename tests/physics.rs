//! The physics: relaxation descends the energy and keeps states in [0, 1].

use eqprop::dynamics::{Nudge, Phase, Relaxation, State};
use eqprop::energy::{cost, energy};
use eqprop::network::Network;
use eqprop::tensor::Matrix;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random_setup(sizes: &[usize], batch: usize, weight_gain: f32, seed: u64) -> (Network, State) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut net = Network::glorot(sizes, &mut rng).unwrap();
    for w in net.weights_mut() {
        w.as_mut_slice().iter_mut().for_each(|x| *x *= weight_gain);
    }
    for b in net.biases_mut() {
        b.iter_mut().for_each(|x| *x = rng.random_range(-0.5..0.5));
    }
    let mut state = State::zeros(sizes, batch);
    for layer in &mut state.layers {
        layer
            .as_mut_slice()
            .iter_mut()
            .for_each(|x| *x = rng.random_range(0.0..1.0));
    }
    (net, state)
}

/// Runs `steps` single steps of relaxation (free, or nudged toward `target` with `beta`) and
/// returns the largest per-sample rise of `F = E + beta C`, checking states stay in [0, 1].
fn largest_rise(
    net: &Network,
    state: &mut State,
    eps: f32,
    steps: usize,
    nudge: Option<Nudge>,
) -> f32 {
    let clamped: Vec<bool> = (0..net.num_layers()).map(|k| k == 0).collect();
    let mut relax = Relaxation::new(net.sizes(), state.batch());
    relax.prepare(net, state, &clamped);
    let total = |s: &State| -> Vec<f32> {
        let e = energy(net, &s.layers);
        match nudge {
            Some(n) => e
                .iter()
                .zip(cost(s.output(), n.target))
                .map(|(e, c)| e + n.beta * c)
                .collect(),
            None => e,
        }
    };
    let mut before = total(state);
    let mut worst = f32::NEG_INFINITY;
    for _ in 0..steps {
        relax.relax(
            net,
            state,
            &Phase {
                steps: 1,
                eps,
                nudge,
            },
        );
        for layer in &state.layers {
            assert!(
                layer.as_slice().iter().all(|&x| (0.0..=1.0).contains(&x)),
                "state left [0, 1]"
            );
        }
        let after = total(state);
        for (a, b) in after.iter().zip(&before) {
            worst = worst.max(a - b);
        }
        before = after;
    }
    worst
}

#[test]
fn energy_never_rises_during_free_relaxation() {
    for (seed, sizes) in [
        (1, vec![784, 500, 10]),
        (2, vec![40, 30, 20, 10]),
        (3, vec![20, 64, 64, 64, 5]),
    ] {
        for eps in [0.5, 0.25, 0.1] {
            let (net, mut state) = random_setup(&sizes, 8, 1.0, seed);
            let rise = largest_rise(&net, &mut state, eps, 60, None);
            assert!(
                rise <= 1e-4,
                "sizes {sizes:?} eps {eps}: energy rose by {rise}"
            );
        }
    }
}

/// The test above can fail: projected gradient descent is only guaranteed to descend for
/// `eps <= 2 / L`; with strong couplings and a large step the energy does rise.
#[test]
fn energy_rises_when_the_step_is_too_large() {
    let (net, mut state) = random_setup(&[20, 64, 64, 5], 8, 6.0, 4);
    let rise = largest_rise(&net, &mut state, 1.0, 30, None);
    assert!(
        rise > 1e-2,
        "expected an energy rise at eps = 1 with strong weights, got {rise}"
    );
}

#[test]
fn relaxation_reaches_a_fixed_point() {
    let (net, mut state) = random_setup(&[30, 20, 10], 4, 1.0, 5);
    let clamped = [true, false, false];
    let mut relax = Relaxation::new(net.sizes(), 4);
    relax.prepare(&net, &state, &clamped);
    relax.relax(&net, &mut state, &Phase::free(200, 0.5));
    let settled = state.clone();
    relax.relax(&net, &mut state, &Phase::free(1, 0.5));
    let moved: f32 = state
        .layers
        .iter()
        .zip(&settled.layers)
        .map(|(a, b)| max_abs_diff(a, b))
        .fold(0.0, f32::max);
    assert!(moved < 1e-5, "still moving by {moved} after 200 steps");
}

fn max_abs_diff(a: &Matrix, b: &Matrix) -> f32 {
    a.as_slice()
        .iter()
        .zip(b.as_slice())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The fused per-sample kernel and the batched GEMM kernel compute the same dynamics.
#[test]
fn fused_and_gemm_kernels_agree() {
    use eqprop::dynamics::Kernel;
    let cases: [(&[usize], &[bool]); 4] = [
        (&[784, 500, 10], &[true, false, false]),
        (&[50, 40, 30, 10], &[true, false, false, false]),
        (&[50, 40, 30, 10], &[false, false, false, true]),
        (&[20, 7, 33, 3], &[true, false, true, false]),
    ];
    for (seed, (sizes, clamped)) in cases.iter().enumerate() {
        let (net, start) = random_setup(sizes, 5, 1.0, 10 + seed as u64);
        let last = sizes.len() - 1;
        let target = start.layers[last].clone();
        let mut results = Vec::new();
        for kernel in [Kernel::Gemm, Kernel::Fused] {
            let mut state = start.clone();
            let mut relax = Relaxation::new(sizes, 5).with_kernel(kernel);
            relax.prepare(&net, &state, clamped);
            relax.relax(&net, &mut state, &Phase::free(7, 0.5));
            let nudge = Nudge {
                layer: last,
                beta: 0.7,
                target: &target,
            };
            relax.relax(
                &net,
                &mut state,
                &Phase {
                    steps: 3,
                    eps: 0.4,
                    nudge: Some(nudge),
                },
            );
            results.push(state);
        }
        for (a, b) in results[0].layers.iter().zip(&results[1].layers) {
            let diff = max_abs_diff(a, b);
            assert!(
                diff < 1e-4,
                "sizes {sizes:?} clamped {clamped:?}: kernels differ by {diff}"
            );
        }
        assert_ne!(results[0], start, "the phase must move the state");
    }
}

/// In a nudged phase the dynamics descend the total energy `F = E + beta C`.
#[test]
fn total_energy_never_rises_during_nudged_relaxation() {
    let sizes = [40, 30, 10];
    let one_hot = (0..60).map(|i| f32::from(i % 10 == i / 10)).collect();
    let target = Matrix::from_vec(6, 10, one_hot).unwrap();
    for beta in [0.5f32, 1.0] {
        let (net, mut state) = random_setup(&sizes, 6, 1.0, 21);
        let nudge = Nudge {
            layer: 2,
            beta,
            target: &target,
        };
        let rise = largest_rise(&net, &mut state, 0.5, 40, Some(nudge));
        assert!(rise <= 1e-4, "F rose by {rise} at beta {beta}");
    }
}
