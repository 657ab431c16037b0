//! The EqProp update against the true gradient of the loss at the free fixed point.
//!
//! The true gradient is computed independently of the engine: a float64 relaxation written out
//! here, and central finite differences of the cost of its fixed point.

use eqprop::dynamics::Kernel;
use eqprop::learning_rule::{Nudging, Particles, apply_update};
use eqprop::network::Network;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SIZES: [usize; 4] = [6, 10, 8, 3];
const BATCH: usize = 4;

struct Problem {
    net: Network,
    x: Vec<Vec<f64>>,
    target: Vec<Vec<f64>>,
}

fn problem() -> Problem {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut net = Network::glorot(&SIZES, &mut rng).unwrap();
    for b in net.biases_mut().iter_mut().skip(1) {
        b.iter_mut().for_each(|x| *x = rng.random_range(0.1..0.5));
    }
    let x = (0..BATCH)
        .map(|_| (0..SIZES[0]).map(|_| rng.random_range(0.0..1.0)).collect())
        .collect();
    let target = (0..BATCH)
        .map(|i| (0..3).map(|j| if j == i % 3 { 1.0 } else { 0.0 }).collect())
        .collect();
    Problem { net, x, target }
}

/// Flattened parameters `[W_1, b_1, W_2, b_2, ...]` in f64.
fn flatten(net: &Network) -> Vec<f64> {
    let mut out = Vec::new();
    for k in 1..net.num_layers() {
        out.extend(net.weight(k).as_slice().iter().map(|&v| v as f64));
        out.extend(net.bias(k).iter().map(|&v| v as f64));
    }
    out
}

/// Reference float64 relaxation to the free fixed point; returns the mean cost.
fn loss(params: &[f64], x: &[Vec<f64>], target: &[Vec<f64>]) -> f64 {
    let n = SIZES.len();
    let (mut w, mut b, mut at) = (Vec::new(), Vec::new(), 0);
    for k in 1..n {
        w.push(&params[at..at + SIZES[k - 1] * SIZES[k]]);
        at += SIZES[k - 1] * SIZES[k];
        b.push(&params[at..at + SIZES[k]]);
        at += SIZES[k];
    }
    let mut total = 0.0;
    for (xs, t) in x.iter().zip(target) {
        let mut s: Vec<Vec<f64>> = SIZES.iter().map(|&m| vec![0.0; m]).collect();
        s[0] = xs.clone();
        for _ in 0..3000 {
            let old = s.clone();
            for k in 1..n {
                for j in 0..SIZES[k] {
                    let mut drive = b[k - 1][j];
                    drive += (0..SIZES[k - 1])
                        .map(|i| old[k - 1][i] * w[k - 1][i * SIZES[k] + j])
                        .sum::<f64>();
                    if k + 1 < n {
                        drive += (0..SIZES[k + 1])
                            .map(|l| old[k + 1][l] * w[k][j * SIZES[k + 1] + l])
                            .sum::<f64>();
                    }
                    s[k][j] = (0.5 * old[k][j] + 0.5 * drive).clamp(0.0, 1.0);
                }
            }
        }
        total += s[n - 1]
            .iter()
            .zip(t)
            .map(|(y, t)| 0.5 * (y - t) * (y - t))
            .sum::<f64>();
    }
    total / x.len() as f64
}

fn true_gradient(p: &Problem) -> Vec<f64> {
    let theta = flatten(&p.net);
    let h = 1e-5;
    (0..theta.len())
        .map(|i| {
            let mut up = theta.clone();
            up[i] += h;
            let mut down = theta.clone();
            down[i] -= h;
            (loss(&up, &p.x, &p.target) - loss(&down, &p.x, &p.target)) / (2.0 * h)
        })
        .collect()
}

/// The engine's update with lr = 1, flattened: it estimates `-dL/dtheta`.
fn eqprop_update(p: &Problem, nudging: Nudging, beta: f32) -> Vec<f64> {
    eqprop_update_with(p, nudging, beta, Kernel::Auto)
}

fn eqprop_update_with(p: &Problem, nudging: Nudging, beta: f32, kernel: Kernel) -> Vec<f64> {
    let mut particles = Particles::new(&SIZES, BATCH).with_kernel(kernel);
    for r in 0..BATCH {
        let x: Vec<f32> = p.x[r].iter().map(|&v| v as f32).collect();
        particles.free.set_row(0, r, &x);
        let t: Vec<f32> = p.target[r].iter().map(|&v| v as f32).collect();
        particles.target.row_mut(r).copy_from_slice(&t);
    }
    particles.free_phase(&p.net, 2000, 0.5);
    particles.nudged_phases(&p.net, nudging, 2000, 0.5, beta, None);
    let mut net = p.net.clone();
    apply_update(
        &mut net,
        &[1.0; 3],
        std::slice::from_mut(&mut particles),
        nudging,
        beta,
    );
    flatten(&net)
        .iter()
        .zip(flatten(&p.net))
        .map(|(a, b)| a - b)
        .collect()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    dot / (norm(a) * norm(b))
}

fn norm(a: &[f64]) -> f64 {
    a.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn relative_error(update: &[f64], neg_grad: &[f64]) -> f64 {
    let diff: Vec<f64> = update.iter().zip(neg_grad).map(|(a, b)| a - b).collect();
    norm(&diff) / norm(neg_grad)
}

#[test]
fn eqprop_update_matches_the_true_gradient_and_its_bias_shrinks_with_beta() {
    let p = problem();
    let neg_grad: Vec<f64> = true_gradient(&p).iter().map(|g| -g).collect();
    assert!(norm(&neg_grad) > 1e-3, "degenerate problem: gradient is ~0");

    let symmetric = eqprop_update(&p, Nudging::Symmetric, 0.005);
    let cos = cosine(&symmetric, &neg_grad);
    assert!(cos >= 0.99, "symmetric nudging, beta 0.005: cosine {cos}");

    let errors: Vec<f64> = [0.5, 0.05, 0.005]
        .iter()
        .map(|&beta| relative_error(&eqprop_update(&p, Nudging::Positive, beta), &neg_grad))
        .collect();
    assert!(
        errors[0] > errors[1] && errors[1] > errors[2],
        "one-sided bias must shrink with beta: {errors:?}"
    );
    assert!(
        errors[2] < 0.02,
        "one-sided estimate at beta 0.005 is off by {}",
        errors[2]
    );
    let sym_error = relative_error(&symmetric, &neg_grad);
    assert!(
        sym_error < errors[2],
        "symmetric ({sym_error}) must beat one-sided ({}) at beta 0.005",
        errors[2]
    );
    eprintln!(
        "one-sided relative errors at beta .5/.05/.005: {errors:?}; symmetric at .005: {sym_error}; cos {cos}"
    );
}

#[test]
fn a_wrong_sign_would_be_caught() {
    // Guard against a test that cannot fail: the update of a network with flipped couplings points
    // elsewhere than the gradient of the original network.
    let p = problem();
    let neg_grad: Vec<f64> = true_gradient(&p).iter().map(|g| -g).collect();
    let mut flipped = Problem {
        net: p.net.clone(),
        x: p.x.clone(),
        target: p.target.clone(),
    };
    for w in flipped.net.weights_mut() {
        w.as_mut_slice().iter_mut().for_each(|x| *x = -*x);
    }
    let update = eqprop_update(&flipped, Nudging::Symmetric, 0.005);
    assert!(cosine(&update, &neg_grad) < 0.9);
}

/// Both relaxation kernels (batched GEMM, used by wide nets, and the fused one) give the
/// gradient-matching update.
#[test]
fn both_kernels_give_the_true_gradient() {
    let p = problem();
    let neg_grad: Vec<f64> = true_gradient(&p).iter().map(|g| -g).collect();
    for kernel in [Kernel::Gemm, Kernel::Fused] {
        let update = eqprop_update_with(&p, Nudging::Symmetric, 0.005, kernel);
        let cos = cosine(&update, &neg_grad);
        assert!(cos >= 0.999, "{kernel:?}: cosine {cos}");
    }
}
