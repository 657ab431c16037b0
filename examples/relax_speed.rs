//! Times one relaxation phase of 784-500-10 on random inputs (a quick kernel check).
use eqprop::dynamics::{Kernel, Phase, Relaxation, State};
use eqprop::network::Network;
use rand::{RngExt, SeedableRng};
use std::time::Instant;

fn main() {
    let batch: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let sizes = [784, 500, 10];
    let net = Network::glorot(&sizes, &mut rng).unwrap();
    let mut state = State::zeros(&sizes, batch);
    for v in state.layers[0].as_mut_slice() {
        *v = if rng.random_bool(0.19) {
            rng.random_range(0.0..1.0)
        } else {
            0.0
        };
    }
    let kernel = match std::env::args().nth(2).as_deref() {
        Some("gemm") => Kernel::Gemm,
        Some("fused") => Kernel::Fused,
        _ => Kernel::Auto,
    };
    let mut relax = Relaxation::new(&sizes, batch).with_kernel(kernel);
    let clamped = [true, false, false];
    let reps = 20000 / batch;
    let t = Instant::now();
    for _ in 0..reps {
        relax.prepare(&net, &state, &clamped);
    }
    let prep = t.elapsed().as_secs_f64() / (reps * batch) as f64;
    let t = Instant::now();
    for _ in 0..reps {
        relax.relax(
            &net,
            &mut state,
            &Phase {
                steps: 24,
                eps: 0.5,
                nudge: None,
            },
        );
    }
    let step = t.elapsed().as_secs_f64() / (reps * batch * 24) as f64;
    println!(
        "{kernel:?} batch {batch}: prepare {:.2} us/sample, relax {:.3} us/sample-step",
        prep * 1e6,
        step * 1e6
    );
}
