//! Times the CPU kernels of one EqProp step on 784-500-10 with random MNIST-like inputs
//! (about 19% of pixels lit), or on real digits when `EQPROP_DATA_DIR` names the data, reporting the fastest of several repeats (robust to a noisy machine).
//!
//! `cargo run --release --example relax_speed -- [batch] [gemm|fused]`
use eqprop::backend::{SparseColumns, input_drive};
use eqprop::data::{self, DatasetName, Split};
use eqprop::dynamics::{Kernel, Phase, Relaxation, State};
use eqprop::network::Network;
use eqprop::tensor::Matrix;
use rand::{RngExt, SeedableRng};
use std::time::Instant;

/// Fastest time per call of `f` over `reps` calls, in microseconds, of 7 tries.
fn fastest(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..7)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            t.elapsed().as_secs_f64() * 1e6 / reps as f64
        })
        .fold(f64::MAX, f64::min)
}

fn main() {
    let batch: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let kernel = match std::env::args().nth(2).as_deref() {
        Some("gemm") => Kernel::Gemm,
        Some("fused") => Kernel::Fused,
        _ => Kernel::Auto,
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let sizes = [784, 500, 10];
    let net = Network::glorot(&sizes, &mut rng).unwrap();
    let mut state = State::zeros(&sizes, batch);
    // Real MNIST digits when EQPROP_DATA_DIR names the data (their lit pixels cluster in
    // strokes), else random inputs with the same share of lit pixels.
    let digits = std::env::var_os("EQPROP_DATA_DIR").map(|dir| {
        let dir = data::dataset_dir(Some(dir.as_ref()), DatasetName::Mnist);
        data::load(DatasetName::Mnist, Split::Train, &dir).expect("MNIST under EQPROP_DATA_DIR")
    });
    for r in 0..batch {
        for (p, v) in state.layers[0].row_mut(r).iter_mut().enumerate() {
            *v = match &digits {
                Some(d) => d.image(r)[p],
                None if rng.random_bool(0.19) => rng.random_range(0.0..1.0),
                None => 0.0,
            };
        }
    }
    let clamped = [true, false, false];
    let mut relax = Relaxation::new(&sizes, batch).with_kernel(kernel);
    let reps = 2000 / batch;
    let prepare = fastest(reps, || relax.prepare(&net, &state, &clamped));
    let phase = Phase::free(24, 0.5);
    let step = fastest(reps, || relax.relax(&net, &mut state, &phase)) / 24.0;
    let mut sparse = SparseColumns::default();
    let rebuild = fastest(reps, || sparse.rebuild(&state.layers[0]));
    let mut d = Matrix::zeros(batch, 500);
    let drive = fastest(reps, || {
        input_drive(&state.layers[0], net.weight(1), &mut d)
    });
    let mut w = net.weight(1).clone();
    let delta = state.layers[1].clone();
    let update = fastest(reps, || {
        sparse.rank_update(1e-6, &delta, 0, w.as_mut_slice())
    });
    let per = |us: f64| us / batch as f64;
    println!(
        "{kernel:?} batch {batch} (us/sample): prepare {:.2} [rebuild {:.2} drive {:.2}] relax-step {:.3} rank-update {:.2}",
        per(prepare),
        per(rebuild),
        per(drive),
        per(step),
        per(update),
    );
}
