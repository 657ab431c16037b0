//! Convolutional EqProp against mathematics: the energy falls during relaxation, and the EqProp
//! update matches the true gradient of the cost at the free fixed point, computed independently
//! (float64 finite differences of a naive float64 implementation of the same network).

use eqprop::conv::architecture::ConvGeometry;
use eqprop::conv::{
    Architecture, ConvConfig, ConvNet, ConvPhase, ConvState, Normalization, Pull, StateRange,
    Sweep, Workspace, symmetric_difference,
};
use eqprop::tensor::Matrix;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// conv (padding, pool with a dropped border row) + conv + pool + dense.
const SPEC: &str = "2x7x7,conv4k3p1+pool,conv5k2+pool,3";

/// The same with other state intervals: the first hidden layer in `[-0.5, 1.5]`, the output
/// in `[-1, 2]`.
const RANGES_SPEC: &str = "2x7x7,conv4k3p1+pool:-0.5..1.5,conv5k2+pool,3:-1..2";

/// The same with a dense layer and a softmax readout (cross-entropy) on top.
const READOUT_SPEC: &str = "2x7x7,conv4k3p1+pool,conv5k2+pool,6,softmax3";

/// Weights uniform in `+-gain/sqrt(fan_in)`, biases in `[0.1, 0.5)` (most units active).
fn random_net(seed: u64, gain: f32) -> ConvNet {
    random_net_of(SPEC, seed, gain)
}

fn random_net_of(spec: &str, seed: u64, gain: f32) -> ConvNet {
    let arch = Architecture::parse(spec).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let weights = (1..arch.num_layers())
        .map(|k| {
            let (r, c) = arch.weight_shape(k);
            let a = gain / (r as f32).sqrt();
            Matrix::from_vec(r, c, (0..r * c).map(|_| rng.random_range(-a..a)).collect()).unwrap()
        })
        .collect();
    let biases = (0..arch.num_layers())
        .map(|k| {
            (0..arch.bias_len(k))
                .map(|_| rng.random_range(0.1..0.5))
                .collect()
        })
        .collect();
    ConvNet::from_parts(arch, weights, biases).unwrap()
}

fn random_batch(n: usize, seed: u64) -> (Matrix, Matrix) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = (0..n * 98).map(|_| rng.random_range(0.0..1.0)).collect();
    let t = (0..n * 3).map(|_| rng.random_range(0.0..1.0)).collect();
    (
        Matrix::from_vec(n, 98, x).unwrap(),
        Matrix::from_vec(n, 3, t).unwrap(),
    )
}

fn phase(steps: usize, sweep: Sweep, eps: f32, beta: f32, t: &Matrix) -> ConvPhase<'_> {
    ConvPhase {
        steps,
        eps,
        sweep,
        beta,
        target: Some(t),
        pull: Pull::Output,
        tol: 0.0,
    }
}

#[test]
fn energy_never_rises_under_alternating_updates() {
    for spec in [SPEC, RANGES_SPEC] {
        energy_never_rises_in(&random_net_of(spec, 1, 1.5));
    }
}

fn energy_never_rises_in(net: &ConvNet) {
    let (x, t) = random_batch(4, 2);
    let mut ws = Workspace::new(net.architecture(), 4);
    let mut state = ConvState::zeros(net.architecture(), 4);
    state.layers[0].copy_from(&x);
    let mut before = vec![0.0; 4];
    ws.energy(net, &state, &mut before);
    let start = before.clone();
    for _ in 0..30 {
        ws.relax(net, &mut state, &phase(1, Sweep::Alternating, 1.0, 0.0, &t));
        let mut now = vec![0.0; 4];
        ws.energy(net, &state, &mut now);
        for (a, b) in now.iter().zip(&before) {
            assert!(*a <= b + 1e-5 * b.abs().max(1.0), "energy rose: {b} -> {a}");
        }
        before = now;
    }
    for (a, b) in before.iter().zip(&start) {
        assert!(a < b, "energy did not fall: {b} -> {a}");
    }
}

#[test]
fn synchronous_and_alternating_relaxations_reach_the_same_fixed_point() {
    // Weak couplings: E is then convex enough to have a single minimum for both to find.
    let net = random_net(3, 0.5);
    let (x, t) = random_batch(3, 4);
    let relaxed = |sweep, eps| {
        let mut ws = Workspace::new(net.architecture(), 3);
        let mut state = ConvState::zeros(net.architecture(), 3);
        state.layers[0].copy_from(&x);
        let mut energy = vec![0.0; 3];
        ws.energy(&net, &state, &mut energy);
        let first = energy.clone();
        ws.relax(&net, &mut state, &phase(2000, sweep, eps, 0.0, &t));
        ws.energy(&net, &state, &mut energy);
        assert!(energy.iter().zip(&first).all(|(a, b)| a < b), "{sweep:?}");
        state
    };
    let a = relaxed(Sweep::Alternating, 1.0);
    let s = relaxed(Sweep::Synchronous, 0.5);
    for (la, ls) in a.layers.iter().zip(&s.layers) {
        for (p, q) in la.as_slice().iter().zip(ls.as_slice()) {
            assert!((p - q).abs() < 1e-4, "{p} vs {q}");
        }
    }
}

/// The network in float64, written the naive way (loops over positions and channels).
struct Reference {
    arch: Architecture,
    w: Vec<Vec<f64>>,
    b: Vec<Vec<f64>>,
}

impl Reference {
    fn new(net: &ConvNet) -> Self {
        let to64 = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<_>>();
        Self {
            arch: net.architecture().clone(),
            w: net.weights().iter().map(|w| to64(w.as_slice())).collect(),
            b: net.biases().iter().map(|b| to64(b)).collect(),
        }
    }

    /// Coupling `k`'s drive on layer `k` from `below`, and the pooling winners.
    fn up(&self, k: usize, below: &[f64]) -> (Vec<f64>, Vec<usize>) {
        let w = &self.w[k - 1];
        let Some(g) = self.arch.conv_geometry(k) else {
            let (n_in, n_out) = self.arch.weight_shape(k);
            let out = (0..n_out)
                .map(|j| (0..n_in).map(|i| below[i] * w[i * n_out + j]).sum())
                .collect();
            return (out, Vec::new());
        };
        let conv = naive_conv(below, w, &g);
        let mut pooled = vec![f64::NEG_INFINITY; g.hp * g.wp * g.cout];
        let mut winner = vec![0; pooled.len()];
        for py in 0..g.hp {
            for px in 0..g.wp {
                for c in 0..g.cout {
                    let o = (py * g.wp + px) * g.cout + c;
                    for dy in 0..g.pool {
                        for dx in 0..g.pool {
                            let i = ((py * g.pool + dy) * g.wo + px * g.pool + dx) * g.cout + c;
                            if conv[i] > pooled[o] {
                                pooled[o] = conv[i];
                                winner[o] = i;
                            }
                        }
                    }
                }
            }
        }
        (pooled, winner)
    }

    /// The transpose of coupling `k` applied to `above`, routed by `winner`.
    fn down(&self, k: usize, above: &[f64], winner: &[usize]) -> Vec<f64> {
        let w = &self.w[k - 1];
        let Some(g) = self.arch.conv_geometry(k) else {
            let (n_in, n_out) = self.arch.weight_shape(k);
            return (0..n_in)
                .map(|i| (0..n_out).map(|j| above[j] * w[i * n_out + j]).sum())
                .collect();
        };
        let mut out = vec![0.0; g.h * g.w * g.cin];
        for (&v, &at) in above.iter().zip(winner) {
            let (pos, o) = (at / g.cout, at % g.cout);
            let (oy, ox) = (pos / g.wo, pos % g.wo);
            for ky in 0..g.kernel {
                for kx in 0..g.kernel {
                    let y = (oy + ky) as isize - g.padding as isize;
                    let x = (ox + kx) as isize - g.padding as isize;
                    if y < 0 || x < 0 || y >= g.h as isize || x >= g.w as isize {
                        continue;
                    }
                    for c in 0..g.cin {
                        let wi = ((ky * g.kernel + kx) * g.cin + c) * g.cout + o;
                        out[(y as usize * g.w + x as usize) * g.cin + c] += v * w[wi];
                    }
                }
            }
        }
        out
    }

    /// The fixed point of `E + beta C` from zero, by exact block minimisation (odd layers, then
    /// even ones) until nothing moves; with a softmax readout, of `E` alone (`beta` 0: the
    /// readout has no states and exerts no force).
    fn fixed_point(&self, x: &[f64], beta: f64, t: &[f64]) -> Vec<Vec<f64>> {
        let readout = self.arch.has_readout();
        assert!(
            !readout || beta == 0.0,
            "the reference relaxes readouts free only"
        );
        let last = self.arch.num_layers() - 1 - usize::from(readout);
        let mut s: Vec<Vec<f64>> = self.arch.sizes().iter().map(|&n| vec![0.0; n]).collect();
        s[0] = x.to_vec();
        let free: Vec<usize> = (1..=last).collect();
        self.block_descent(s, &free, &|k, i, d| match k == last && !readout {
            true => (d + beta * t[i]) / (1.0 + beta),
            false => d,
        })
    }

    /// The fixed point of generative training's `E + beta C_g` (the one-hot `label` clamped
    /// on the output, the input free with self term `kappa/2 ||s_0||^2`, `C_g = 1/2 ||s_0 -
    /// x||^2`) from zero, by exact block minimisation (the input among the layers).
    fn generative_fixed_point(
        &self,
        label: &[f64],
        x: &[f64],
        beta: f64,
        kappa: f64,
    ) -> Vec<Vec<f64>> {
        let last = self.arch.num_layers() - 1;
        let mut s: Vec<Vec<f64>> = self.arch.sizes().iter().map(|&n| vec![0.0; n]).collect();
        s[last] = label.to_vec();
        let free: Vec<usize> = (0..last).collect();
        self.block_descent(s, &free, &|k, i, d| match k {
            0 => (d + beta * x[i]) / (kappa + beta),
            _ => d,
        })
    }

    /// Exact block minimisation from `s` (odd layers, then even ones) of the `free` layers,
    /// each unit set to `minimiser(k, i, drive)` clamped to its interval, until nothing moves.
    fn block_descent(
        &self,
        mut s: Vec<Vec<f64>>,
        free: &[usize],
        minimiser: &dyn Fn(usize, usize, f64) -> f64,
    ) -> Vec<Vec<f64>> {
        let top = self.arch.num_layers() - 1 - usize::from(self.arch.has_readout());
        for _ in 0..5000 {
            let mut moved = 0.0f64;
            for parity in [1, 0] {
                for &k in free.iter().filter(|&&k| k % 2 == parity) {
                    let mut d = match k {
                        0 => vec![0.0; s[0].len()],
                        _ => self.up(k, &s[k - 1]).0,
                    };
                    if k < top {
                        let (_, winner) = self.up(k + 1, &s[k]);
                        let back = self.down(k + 1, &s[k + 1], &winner);
                        d.iter_mut().zip(back).for_each(|(a, b)| *a += b);
                    }
                    let (channels, range) = (self.b[k].len(), self.arch.range(k));
                    for (i, di) in d.iter().enumerate() {
                        let new = minimiser(k, i, di + self.b[k][i % channels])
                            .clamp(range.lo.into(), range.hi.into());
                        moved = moved.max((new - s[k][i]).abs());
                        s[k][i] = new;
                    }
                }
            }
            if moved < 1e-15 {
                return s;
            }
        }
        panic!("the float64 reference did not converge");
    }

    /// Generative training's cost at the free fixed point with the labels `t` clamped: `1/2
    /// ||s_0 - x||^2` summed over the samples.
    fn generative_cost(&self, x: &[Vec<f64>], t: &[Vec<f64>], kappa: f64) -> f64 {
        x.iter()
            .zip(t)
            .map(|(x, t)| {
                let s = self.generative_fixed_point(t, x, 0.0, kappa);
                s[0].iter()
                    .zip(x)
                    .map(|(a, b)| 0.5 * (a - b) * (a - b))
                    .sum::<f64>()
            })
            .sum()
    }

    /// The cost at the free fixed point: `1/2 ||s_L - t||^2`, or with a softmax readout the
    /// cross-entropy `-sum t ln softmax(s_{L-1} W_L + b_L)`.
    fn cost(&self, x: &[Vec<f64>], t: &[Vec<f64>]) -> f64 {
        let last = self.arch.num_layers() - 1;
        x.iter()
            .zip(t)
            .map(|(x, t)| {
                let s = self.fixed_point(x, 0.0, t);
                if !self.arch.has_readout() {
                    let y = s.last().unwrap();
                    return y.iter().zip(t).map(|(a, b)| 0.5 * (a - b) * (a - b)).sum();
                }
                let (mut logits, _) = self.up(last, &s[last - 1]);
                logits
                    .iter_mut()
                    .zip(&self.b[last])
                    .for_each(|(z, b)| *z += b);
                let top = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let log_total = logits.iter().map(|z| (z - top).exp()).sum::<f64>().ln() + top;
                -logits
                    .iter()
                    .zip(t)
                    .map(|(z, t)| t * (z - log_total))
                    .sum::<f64>()
            })
            .sum()
    }
}

/// A convolution of one sample by the definition (float64 loops, no im2col), `out[oy, ox, o]`.
fn naive_conv(x: &[f64], w: &[f64], g: &ConvGeometry) -> Vec<f64> {
    let mut out = vec![0.0; g.ho * g.wo * g.cout];
    for oy in 0..g.ho {
        for ox in 0..g.wo {
            for o in 0..g.cout {
                let mut acc = 0.0;
                for ky in 0..g.kernel {
                    for kx in 0..g.kernel {
                        let y = (oy + ky) as isize - g.padding as isize;
                        let xx = (ox + kx) as isize - g.padding as isize;
                        if y < 0 || xx < 0 || y >= g.h as isize || xx >= g.w as isize {
                            continue;
                        }
                        for c in 0..g.cin {
                            acc += x[(y as usize * g.w + xx as usize) * g.cin + c]
                                * w[((ky * g.kernel + kx) * g.cin + c) * g.cout + o];
                        }
                    }
                }
                out[(oy * g.wo + ox) * g.cout + o] = acc;
            }
        }
    }
    out
}

/// `dL/dtheta` by central finite differences of the float64 reference, coupling by coupling
/// (the weights of `W_k`, then `b_k`).
fn finite_differences(net: &ConvNet, x: &Matrix, t: &Matrix) -> Vec<Vec<f64>> {
    finite_differences_of(net, x, t, &|r, x, t| r.cost(x, t)).0
}

/// Central finite differences of `cost` over every parameter of the float64 reference,
/// coupling by coupling (the weights of `W_k`, then `b_k`), and of the input's bias `b_0`.
#[allow(clippy::type_complexity)]
fn finite_differences_of(
    net: &ConvNet,
    x: &Matrix,
    t: &Matrix,
    cost: &dyn Fn(&Reference, &[Vec<f64>], &[Vec<f64>]) -> f64,
) -> (Vec<Vec<f64>>, Vec<f64>) {
    let rows = |m: &Matrix| -> Vec<Vec<f64>> {
        (0..m.rows())
            .map(|r| m.row(r).iter().map(|&v| f64::from(v)).collect())
            .collect()
    };
    let (xs, ts) = (rows(x), rows(t));
    let mut reference = Reference::new(net);
    let h = 1e-6;
    let nudge = |r: &mut Reference, weight: bool, k: usize, i: usize| {
        fn slot(r: &mut Reference, weight: bool, k: usize, i: usize) -> &mut f64 {
            match weight {
                true => &mut r.w[k - 1][i],
                false => &mut r.b[k][i],
            }
        }
        let original = *slot(r, weight, k, i);
        *slot(r, weight, k, i) = original + h;
        let up = cost(r, &xs, &ts);
        *slot(r, weight, k, i) = original - h;
        let down = cost(r, &xs, &ts);
        *slot(r, weight, k, i) = original;
        (up - down) / (2.0 * h)
    };
    let couplings = (1..net.architecture().num_layers())
        .map(|k| {
            let mut g: Vec<f64> = (0..reference.w[k - 1].len())
                .map(|i| nudge(&mut reference, true, k, i))
                .collect();
            g.extend((0..reference.b[k].len()).map(|i| nudge(&mut reference, false, k, i)));
            g
        })
        .collect();
    let input_bias = (0..reference.b[0].len())
        .map(|i| nudge(&mut reference, false, 0, i))
        .collect();
    (couplings, input_bias)
}

/// `-(dPhi/dtheta(s+beta) - dPhi/dtheta(s-beta)) / (2 beta)`: symmetric EqProp's estimate of
/// `dL/dtheta`, coupling by coupling in the layout of [`finite_differences`].
fn eqprop_estimate(net: &ConvNet, x: &Matrix, t: &Matrix, beta: f32) -> Vec<Vec<f64>> {
    let grad = symmetric_difference(net, (x, t), (500, 500), beta);
    (1..net.architecture().num_layers())
        .map(|k| {
            let scale = -1.0 / (2.0 * f64::from(beta));
            let w = grad.weights[k - 1].as_slice().iter();
            w.chain(&grad.biases[k])
                .map(|&g| f64::from(g) * scale)
                .collect()
        })
        .collect()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

#[test]
fn symmetric_eqprop_matches_the_true_gradient_layer_by_layer() {
    let net = random_net(5, 1.5);
    let (x, t) = random_batch(2, 6);
    assert_matches_the_true_gradient(&net, &x, &t);
}

#[test]
fn in_other_state_intervals_eqprop_matches_the_true_gradient() {
    let net = random_net_of(RANGES_SPEC, 5, 1.5);
    let (x, t) = random_batch(2, 6);
    assert_matches_the_true_gradient(&net, &x, &t);
}

#[test]
fn with_a_softmax_readout_eqprop_matches_the_cross_entropy_gradient() {
    let net = random_net_of(READOUT_SPEC, 5, 1.5);
    let (x, _) = random_batch(3, 6);
    let mut t = Matrix::zeros(3, 3);
    (0..3).for_each(|r| t.set(r, (r + 1) % 3, 1.0));
    assert_matches_the_true_gradient(&net, &x, &t);
}

/// Generative training's EqProp update (the label clamped, the input free and stiffened, then
/// pulled toward the image) against float64 finite differences of `C_g = 1/2 ||s_0* - x||^2`
/// at the free fixed point: every coupling (its weights and the bias of the layer it drives)
/// and the input's bias, cosine >= 0.99 and the length within 5%, at `beta_g` 1e-3.
#[test]
fn generative_eqprop_matches_the_gradient_of_the_reconstruction_cost() {
    let kappa = 0.7;
    let net = random_net(5, 1.5);
    let (x, _) = random_batch(2, 6);
    let mut t = Matrix::zeros(2, 3);
    (0..2).for_each(|r| t.set(r, 2 * r, 1.0));
    let cost =
        move |r: &Reference, x: &[Vec<f64>], t: &[Vec<f64>]| r.generative_cost(x, t, kappa.into());
    let (truth, truth_b0) = finite_differences_of(&net, &x, &t, &cost);
    let beta = 1e-3;
    let arch = net.architecture();
    let last = arch.num_layers() - 1;
    let mut ws = Workspace::new(arch, 2);
    ws.set_clamped(&(0..=last).map(|k| k == last).collect::<Vec<_>>());
    ws.set_input_stiffness(kappa);
    let mut free = ConvState::zeros(arch, 2);
    free.layers[last].copy_from(&t);
    let pulled = |beta| ConvPhase {
        pull: Pull::Input,
        ..phase(500, Sweep::Alternating, 1.0, beta, &x)
    };
    ws.relax(&net, &mut free, &pulled(0.0));
    let mut nudged = free.clone();
    ws.relax(&net, &mut nudged, &pulled(beta));
    let mut grad = eqprop::conv::Gradient::zeros(arch);
    ws.accumulate_gradient(&net, &nudged, 1.0, &mut grad);
    ws.accumulate_gradient(&net, &free, -1.0, &mut grad);
    let scale = |v: &[f32]| {
        v.iter()
            .map(|&g| -f64::from(g) / f64::from(beta))
            .collect::<Vec<_>>()
    };
    let mut groups: Vec<(String, Vec<f64>, Vec<f64>)> = (1..=last)
        .map(|k| {
            let mut e = scale(grad.weights[k - 1].as_slice());
            e.extend(scale(&grad.biases[k]));
            (format!("coupling {k}"), truth[k - 1].clone(), e)
        })
        .collect();
    groups.push(("input bias".into(), truth_b0, scale(&grad.biases[0])));
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    for (name, a, b) in &groups {
        let (c, ratio) = (cosine(a, b), norm(b) / norm(a));
        println!(
            "{name}: cosine {c:.5}, |dC_g/dtheta| {:.3e}, length ratio {ratio:.4}",
            norm(a)
        );
        assert!(norm(a) > 1e-6, "{name} has no gradient to check");
        assert!(c >= 0.99, "{name}: cosine {c}");
        assert!((ratio - 1.0).abs() < 0.05, "{name}: length ratio {ratio}");
    }
}

/// Symmetric EqProp at beta 1e-3 against float64 finite differences, for every coupling (its
/// weights and the bias of the layer it drives): cosine >= 0.99, and the length within 5%.
fn assert_matches_the_true_gradient(net: &ConvNet, x: &Matrix, t: &Matrix) {
    let truth = finite_differences(net, x, t);
    let estimate = eqprop_estimate(net, x, t, 1e-3);
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    for (k, (a, b)) in (1..).zip(truth.iter().zip(&estimate)) {
        let (c, ratio) = (cosine(a, b), norm(b) / norm(a));
        println!(
            "coupling {k}: cosine {c:.5}, |dL/dtheta| {:.3e}, length ratio {ratio:.4}",
            norm(a)
        );
        assert!(norm(a) > 1e-6, "coupling {k} has no gradient to check");
        assert!(c >= 0.99, "coupling {k}: cosine {c}");
        assert!(
            (ratio - 1.0).abs() < 0.05,
            "coupling {k}: length ratio {ratio}"
        );
    }
}

#[test]
fn dreaming_frees_the_input_and_the_energy_still_never_rises() {
    let net = random_net(7, 1.5);
    let arch = net.architecture();
    let labels = [0usize, 1, 2];
    let mut ws = Workspace::new(arch, 3);
    let last = arch.num_layers() - 1;
    ws.set_clamped(&(0..=last).map(|k| k == last).collect::<Vec<_>>());
    let mut state = ConvState::zeros(arch, 3);
    for (r, &l) in labels.iter().enumerate() {
        state.layers[last].set(r, l, 1.0);
    }
    let (mut before, mut now) = (vec![0.0; 3], vec![0.0; 3]);
    ws.energy(&net, &state, &mut before);
    let t = Matrix::zeros(3, 3);
    for _ in 0..20 {
        ws.relax(
            &net,
            &mut state,
            &phase(1, Sweep::Alternating, 1.0, 0.0, &t),
        );
        ws.energy(&net, &state, &mut now);
        for (a, b) in now.iter().zip(&before) {
            assert!(*a <= b + 1e-5 * b.abs().max(1.0), "energy rose: {b} -> {a}");
        }
        before.copy_from_slice(&now);
    }
    let zeros = eqprop::conv::ConvDream {
        steps: 20,
        noise: false,
        seed: 0,
        silenced: 0.0,
        input_stiffness: 1.0,
        input_range: Default::default(),
    };
    let dreams = eqprop::conv::dream(&net, &labels, &zeros);
    assert_eq!(dreams, state.layers[0]);
    assert!(
        dreams.as_slice().iter().any(|&v| v > 0.0),
        "the input moved"
    );
    assert!(dreams.as_slice().iter().all(|&v| (0.0..=1.0).contains(&v)));
}

/// Standardised inputs dream in the standardised pixels' interval, not in `[0, 1]` of
/// standardised units (where a dream could show no pixel below its channel's mean).
#[test]
fn standardised_inputs_dream_over_the_whole_pixel_range() {
    let mut cfg = ConvConfig::preset("conv-mnist").unwrap();
    cfg.arch = SPEC.parse().unwrap();
    cfg.normalize = Some(Normalization {
        mean: vec![0.5, 0.25],
        std: vec![0.25, 0.5],
    });
    // Channel 0's pixels standardise to [-2, 2], channel 1's to [-0.5, 1.5].
    assert_eq!(cfg.input_range(), StateRange { lo: -2.0, hi: 2.0 });
    // An input bias far below and far above every drive: each channel's dream goes to an end.
    let net = random_net(7, 1.5);
    let mut biases = net.biases().to_vec();
    biases[0] = vec![-50.0, 50.0];
    let net = ConvNet::from_parts(cfg.arch.clone(), net.weights().to_vec(), biases).unwrap();
    let options = eqprop::conv::ConvDream {
        silenced: 0.0,
        ..eqprop::conv::ConvDream::for_config(&cfg)
    };
    let dreams = eqprop::conv::dream(&net, &[0, 2], &options);
    let ends = |c: usize| dreams.as_slice().iter().skip(c).step_by(2).copied();
    assert!(ends(0).all(|v| v == -2.0) && ends(1).all(|v| v == 2.0));
    // Shown as pixels: channel 0 black, channel 1 beyond white (an image clips it to 1).
    let pixels = cfg.input_pixels(dreams);
    let channel = |c: usize| pixels.as_slice().iter().skip(c).step_by(2).copied();
    assert!(channel(0).all(|p| p == 0.0) && channel(1).all(|p| p == 1.25));
}

/// The kernels' convolution (im2col, then the patch matrix times the weights) against the naive
/// loop, on odd shapes: padding, non-square images and kernels, one or several channels.
#[test]
fn im2col_convolution_matches_the_naive_loop_on_odd_shapes() {
    for spec in [
        "3x7x5,conv4k3p1,2",
        "2x6x9,conv5k4p2,2",
        "1x5x5,conv3k5,2",
        "5x4x3,conv2k2,2",
    ] {
        let g = Architecture::parse(spec).unwrap().conv_geometry(1).unwrap();
        let (n, sample) = (3, g.h * g.w * g.cin);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut random =
            |len: usize| -> Vec<f32> { (0..len).map(|_| rng.random_range(-1.0..1.0)).collect() };
        let (x, w) = (random(n * sample), random(g.patch() * g.cout));
        let mut cols = vec![f32::NAN; n * g.positions() * g.patch()];
        eqprop::conv::kernels::im2col(&x, n, &g, &mut cols);
        let per = g.positions() * g.cout;
        let wide = |v: &[f32]| v.iter().map(|&a| f64::from(a)).collect::<Vec<_>>();
        for s in 0..n {
            let want = naive_conv(&wide(&x[s * sample..(s + 1) * sample]), &wide(&w), &g);
            for (r, row) in cols[s * g.positions() * g.patch()..]
                .chunks(g.patch())
                .take(g.positions())
                .enumerate()
            {
                for o in 0..g.cout {
                    let got: f32 = row
                        .iter()
                        .enumerate()
                        .map(|(i, &v)| v * w[i * g.cout + o])
                        .sum();
                    let b = want[r * g.cout + o];
                    assert!((f64::from(got) - b).abs() < 1e-4, "{spec}: {got} vs {b}");
                }
            }
            assert_eq!(want.len(), per);
        }
    }
}
