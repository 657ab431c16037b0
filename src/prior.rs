//! A class-conditional prior over the first hidden layer, and the decoder its dreams go
//! through.
//!
//! A plain dream ([`crate::dream`]) starts every free unit from noise and lets the physics pull it
//! into one of a few attractors of its label: sharp, prototypical digits. Brain-inspired replay
//! (van de Ven, Siegelmann & Tolias 2020) instead keeps, per class, a Gaussian mixture over the
//! hidden code and dreams from samples of it. Here the code is the free fixed point `h*(x)` of
//! the first hidden layer. Right after a task is learned, the network's free states on each
//! class's images are summarised by `k` components: k-means centres `mu_c` and, within each
//! cluster, its top [`COMPONENT_RANK`] principal directions `u_{c,r}` scaled by their standard
//! deviations (a low-rank Gaussian); the images are not kept. A dream of class `y` draws
//!
//! ```text
//! c ~ uniform(components of y),   h = clamp(mu_c + sum_r z_r u_{c,r}, 0, 1),   z ~ N(0, I)
//! ```
//!
//! holds `h` and the one-hot label, and lets the input relax to its minimum of `E` given `h`:
//! the input's only coupling is `W_1`, so it settles at `clamp((W_1 rho(h) + b_0) / kappa, 0, 1)`
//! (`kappa` the input stiffness).
//!
//! The network's own `W_1` is learnt to classify, and read backwards it draws blurred, speckled
//! digits. So the dreamer is a frozen copy of the network whose input couplings are refit, at the
//! same moment as the prior and on the same images, to decode the codes: `W_1 rho(h) + b_0` is
//! the ridge-regression reconstruction of `x` from `rho(h*(x))`, times `kappa` (a decoder on
//! feedback connections, as in van de Ven & Tolias's replay-through-feedback). Dreams then look
//! like data, and spread over each class as its data did.

use crate::backend::cpu::{Transpose, matmul_acc};
use crate::config::Hyperparams;
use crate::data::Dataset;
use crate::dream::{DreamOptions, one_hot, standard_normal};
use crate::dynamics::{Phase, Relaxation, State};
use crate::network::{Network, rho};
use crate::tensor::Matrix;
use crate::train::free_layer;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// k-means iterations when a class is summarised (the assignments settle well before).
const KMEANS_ITERATIONS: usize = 25;

/// Principal directions of each component (BENCHMARKS.md, Split-MNIST class-IL, seeds 1-3,
/// 10 components, measured on the experimental build: 8 directions 89.6 / 91.0 / 90.3%, 16:
/// 90.8 / 91.3 / 92.1%, 32: 91.9 / 91.1 / 90.9%; a per-unit spread instead, 84.4 / 85.0 / 83.3%).
pub const COMPONENT_RANK: usize = 16;

/// Rounds of orthogonal iteration for the principal directions.
const POWER_ITERATIONS: usize = 30;

/// Ridge of the decoder fit, as a fraction of the mean diagonal of the Gram matrix of the codes.
const DECODER_RIDGE: f32 = 1e-3;

/// One Gaussian over the hidden code: a centre and a low-rank covariance
/// `sum_r u_r u_r^T` (each direction scaled by the standard deviation along it).
#[derive(Clone, Debug, PartialEq)]
pub struct Component {
    pub mean: Vec<f32>,
    pub directions: Vec<Vec<f32>>,
}

/// The decoder of the latest fit: `x ~ clamp(rho(h) D^T + c)`, one row of `D` per pixel.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoder {
    pub weights: Matrix,
    pub bias: Vec<f32>,
}

/// The components of every output unit learned so far (none for the others), and the decoder
/// fitted with the latest of them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LatentPrior {
    units: Vec<Vec<Component>>,
    decoder: Option<Decoder>,
}

impl LatentPrior {
    /// An empty prior for a network with `units` output units.
    pub fn new(units: usize) -> Self {
        Self {
            units: vec![Vec::new(); units],
            decoder: None,
        }
    }

    /// The components of `unit` (empty until it is learned).
    pub fn components(&self, unit: usize) -> &[Component] {
        &self.units[unit]
    }

    /// The decoder of the latest [`learn`](Self::learn) (none before).
    pub fn decoder(&self) -> Option<&Decoder> {
        self.decoder.as_ref()
    }

    /// Summarises the free hidden states of `images` by up to `components` low-rank Gaussians
    /// per label (each label's components replace what its unit had), and refits the decoder
    /// on them.
    pub fn learn(
        &mut self,
        net: &Network,
        hp: &Hyperparams,
        images: &Dataset,
        components: usize,
        seed: u64,
    ) {
        let hidden = free_layer(net, hp, images, 1);
        let mut labels = images.labels.clone();
        labels.sort_unstable();
        labels.dedup();
        for label in labels {
            let rows: Vec<usize> = (0..images.len())
                .filter(|&i| images.labels[i] == label)
                .collect();
            let of_label = select_rows(&hidden, &rows);
            self.units[label as usize] = kmeans(&of_label, components, seed ^ label as u64);
        }
        self.decoder = Some(fit_decoder(&hidden, images));
    }

    /// One image per entry of `labels`, dreamt from a code drawn from the label's components
    /// (see the module doc), by `net` or, once fitted, by its copy with the decoder's input
    /// couplings. Uses `options.steps`, `eps`, `input_stiffness`, `seed` and the label values;
    /// the input starts at 0.
    ///
    /// Panics if a label has no components (callers dream only what was learned).
    pub fn dream(&self, net: &Network, labels: &[usize], options: &DreamOptions) -> Matrix {
        let copy;
        let dreamer = match &self.decoder {
            Some(decoder) => {
                copy = decoding_copy(net, decoder, options.input_stiffness);
                &copy
            }
            None => net,
        };
        let sizes = net.sizes();
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
        let mut state = State::zeros(sizes, labels.len());
        for (r, &label) in labels.iter().enumerate() {
            let components = &self.units[label];
            assert!(!components.is_empty(), "no prior for label {label}");
            let c = &components[rng.random_range(0..components.len())];
            let code = state.layers[1].row_mut(r);
            code.copy_from_slice(&c.mean);
            for direction in &c.directions {
                let z = standard_normal(&mut rng);
                code.iter_mut()
                    .zip(direction)
                    .for_each(|(h, &u)| *h += z * u);
            }
            code.iter_mut().for_each(|h| *h = h.clamp(0.0, 1.0));
        }
        let output = sizes.len() - 1;
        let target = one_hot(labels, sizes[output], options.target_off, options.target_on);
        state.layers[output].copy_from(&target);
        // Only the input is free: it relaxes to its minimum given the held code.
        let mut clamped = vec![true; sizes.len()];
        clamped[0] = false;
        let mut relax =
            Relaxation::new(sizes, labels.len()).with_input_stiffness(options.input_stiffness);
        relax.prepare(dreamer, &state, &clamped);
        relax.relax(
            dreamer,
            &mut state,
            &Phase::free(options.steps, options.eps),
        );
        state.layers.swap_remove(0)
    }
}

/// `net` with `W_1 = kappa D` and `b_0 = kappa c`: its free input's minimum given a code `h` is
/// the decoder's `clamp(rho(h) D^T + c)`.
fn decoding_copy(net: &Network, decoder: &Decoder, kappa: f32) -> Network {
    let mut copy = net.clone();
    let (weights, biases) = copy.params_mut();
    weights[0]
        .as_mut_slice()
        .iter_mut()
        .zip(decoder.weights.as_slice())
        .for_each(|(w, &d)| *w = kappa * d);
    biases[0]
        .iter_mut()
        .zip(&decoder.bias)
        .for_each(|(b, &c)| *b = kappa * c);
    copy
}

/// The ridge-regression decoder of the images from their codes `rho(h)` (rows of `hidden`).
fn fit_decoder(hidden: &Matrix, images: &Dataset) -> Decoder {
    let (n, units) = (hidden.rows(), hidden.cols());
    // Features rho(h) and a constant 1 for the bias.
    let mut features = Matrix::zeros(n, units + 1);
    for i in 0..n {
        let row = features.row_mut(i);
        row.iter_mut()
            .zip(hidden.row(i))
            .for_each(|(f, &h)| *f = rho(h));
        row[units] = 1.0;
    }
    let pixels = images.pixels();
    let x = Matrix::from_vec(n, pixels, images.images.to_vec()).expect("one row per image");
    let solution = ridge_regression(&features, &x, DECODER_RIDGE);
    let mut weights = Matrix::zeros(pixels, units);
    for p in 0..pixels {
        for j in 0..units {
            weights.set(p, j, solution.get(j, p));
        }
    }
    Decoder {
        weights,
        bias: solution.row(units).to_vec(),
    }
}

/// `B = argmin ||F B - Y||^2 + lambda ||B'||^2` with `lambda = ridge * mean(diag(F^T F))`, where
/// `B'` is `B` without its last row: the last feature is the constant 1, whose weights (the
/// bias) are not shrunk. Solves `(F^T F + lambda I') B = F^T Y`.
fn ridge_regression(features: &Matrix, targets: &Matrix, ridge: f32) -> Matrix {
    let m = features.cols();
    let mut gram = Matrix::zeros(m, m);
    matmul_acc(
        &mut gram,
        features,
        Transpose::Yes,
        features,
        Transpose::No,
        1.0,
    );
    let lambda = ridge * (0..m).map(|j| gram.get(j, j)).sum::<f32>() / m as f32;
    for j in 0..m - 1 {
        gram.set(j, j, gram.get(j, j) + lambda);
    }
    let mut rhs = Matrix::zeros(m, targets.cols());
    matmul_acc(
        &mut rhs,
        features,
        Transpose::Yes,
        targets,
        Transpose::No,
        1.0,
    );
    cholesky_solve(&gram, &rhs)
}

/// Solves `A X = B` for a symmetric positive definite `A` (Cholesky, in f64).
fn cholesky_solve(a: &Matrix, b: &Matrix) -> Matrix {
    let m = a.rows();
    let mut l = vec![0.0f64; m * m];
    for i in 0..m {
        for j in 0..=i {
            let dot: f64 = (0..j).map(|k| l[i * m + k] * l[j * m + k]).sum();
            let v = a.get(i, j) as f64 - dot;
            l[i * m + j] = match i == j {
                true => v.max(f64::MIN_POSITIVE).sqrt(),
                false => v / l[j * m + j],
            };
        }
    }
    let mut x = Matrix::zeros(m, b.cols());
    let mut y = vec![0.0f64; m];
    for c in 0..b.cols() {
        // L y = b, then L^T x = y.
        for i in 0..m {
            let dot: f64 = (0..i).map(|k| l[i * m + k] * y[k]).sum();
            y[i] = (b.get(i, c) as f64 - dot) / l[i * m + i];
        }
        for i in (0..m).rev() {
            let dot: f64 = (i + 1..m).map(|k| l[k * m + i] * y[k]).sum();
            y[i] = (y[i] - dot) / l[i * m + i];
        }
        for (i, &v) in y.iter().enumerate() {
            x.set(i, c, v as f32);
        }
    }
    x
}

fn select_rows(m: &Matrix, rows: &[usize]) -> Matrix {
    let data: Vec<f32> = rows.iter().flat_map(|&r| m.row(r).to_vec()).collect();
    Matrix::from_vec(rows.len(), m.cols(), data).expect("selected rows")
}

/// k-means on the rows of `points` (centres seeded from `k` distinct random rows), then each
/// cluster's centre and its top [`COMPONENT_RANK`] scaled principal directions; empty clusters
/// are dropped.
pub fn kmeans(points: &Matrix, k: usize, seed: u64) -> Vec<Component> {
    let n = points.rows();
    if n == 0 || k == 0 {
        return Vec::new();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rows: Vec<usize> = (0..n).collect();
    rand::seq::SliceRandom::shuffle(rows.as_mut_slice(), &mut rng);
    let mut centres: Vec<Vec<f32>> = rows[..k.min(n)]
        .iter()
        .map(|&i| points.row(i).to_vec())
        .collect();
    let mut assignment = vec![0; n];
    for _ in 0..KMEANS_ITERATIONS {
        for (i, a) in assignment.iter_mut().enumerate() {
            *a = nearest(points.row(i), &centres);
        }
        for (c, centre) in centres.iter_mut().enumerate() {
            if let Some(mean) = cluster_mean(points, &assignment, c) {
                *centre = mean;
            }
        }
    }
    centres
        .into_iter()
        .enumerate()
        .filter_map(|(c, mean)| {
            let members: Vec<usize> = (0..n).filter(|&i| assignment[i] == c).collect();
            if members.is_empty() {
                return None;
            }
            let deviations: Vec<Vec<f32>> = members
                .iter()
                .map(|&i| {
                    points
                        .row(i)
                        .iter()
                        .zip(&mean)
                        .map(|(x, m)| x - m)
                        .collect()
                })
                .collect();
            let directions = principal_directions(&deviations, COMPONENT_RANK, seed ^ c as u64);
            Some(Component { mean, directions })
        })
        .collect()
}

/// The top `rank` principal directions of `deviations` (rows centred on their mean), each
/// scaled by the standard deviation along it, by orthogonal iteration from random directions;
/// at most one fewer than the rows.
fn principal_directions(deviations: &[Vec<f32>], rank: usize, seed: u64) -> Vec<Vec<f32>> {
    let rank = rank.min(deviations.len().saturating_sub(1));
    let Some(dim) = deviations.first().map(Vec::len) else {
        return Vec::new();
    };
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut basis: Vec<Vec<f32>> = (0..rank)
        .map(|_| (0..dim).map(|_| standard_normal(&mut rng)).collect())
        .collect();
    for _ in 0..POWER_ITERATIONS {
        // Q <- orthonormalise(C Q), with C = sum_i d_i d_i^T.
        let mut next = vec![vec![0.0f32; dim]; rank];
        for d in deviations {
            for (n, q) in next.iter_mut().zip(&basis) {
                let a = dot(d, q);
                n.iter_mut().zip(d).for_each(|(v, &x)| *v += a * x);
            }
        }
        for j in 0..rank {
            let (done, rest) = next.split_at_mut(j);
            let v = &mut rest[0];
            for q in done.iter() {
                let a = dot(v, q);
                v.iter_mut().zip(q).for_each(|(x, &y)| *x -= a * y);
            }
            let norm = dot(v, v).sqrt().max(f32::MIN_POSITIVE);
            v.iter_mut().for_each(|x| *x /= norm);
        }
        basis = next;
    }
    basis
        .into_iter()
        .map(|q| {
            let variance = deviations.iter().map(|d| dot(d, &q).powi(2)).sum::<f32>()
                / deviations.len() as f32;
            q.iter().map(|x| x * variance.sqrt()).collect()
        })
        .collect()
}

fn nearest(point: &[f32], centres: &[Vec<f32>]) -> usize {
    let distance =
        |c: &Vec<f32>| -> f32 { point.iter().zip(c).map(|(x, m)| (x - m) * (x - m)).sum() };
    let mut best = 0;
    let mut best_distance = f32::INFINITY;
    for (c, centre) in centres.iter().enumerate() {
        let d = distance(centre);
        if d < best_distance {
            (best, best_distance) = (c, d);
        }
    }
    best
}

fn cluster_mean(points: &Matrix, assignment: &[usize], cluster: usize) -> Option<Vec<f32>> {
    let mut mean = vec![0.0f32; points.cols()];
    let mut members = 0usize;
    for (i, _) in assignment
        .iter()
        .enumerate()
        .filter(|&(_, &a)| a == cluster)
    {
        mean.iter_mut()
            .zip(points.row(i))
            .for_each(|(m, &x)| *m += x);
        members += 1;
    }
    (members > 0).then(|| {
        mean.iter_mut().for_each(|m| *m /= members as f32);
        mean
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() < tol)
    }

    /// Two well-separated blobs come back as two components with their own centres and the
    /// one direction each spreads along.
    #[test]
    fn kmeans_finds_separated_clusters_and_their_spreads() {
        let rows = [[0.1, 0.2], [0.3, 0.2], [0.9, 0.8], [0.9, 1.0]];
        let points = Matrix::from_vec(4, 2, rows.concat()).unwrap();
        let mut found = kmeans(&points, 2, 7);
        found.sort_by(|a, b| a.mean[0].total_cmp(&b.mean[0]));
        assert_eq!(found.len(), 2);
        assert!(
            close(&found[0].mean, &[0.2, 0.2], 1e-6),
            "{:?}",
            found[0].mean
        );
        assert!(
            close(&found[1].mean, &[0.9, 0.9], 1e-6),
            "{:?}",
            found[1].mean
        );
        // Two points: one direction, +-(0.1, 0) and +-(0, 0.1).
        let abs = |c: &Component| c.directions[0].iter().map(|x| x.abs()).collect::<Vec<_>>();
        assert_eq!(found[0].directions.len(), 1);
        assert!(
            close(&abs(&found[0]), &[0.1, 0.0], 1e-5),
            "{:?}",
            abs(&found[0])
        );
        assert!(
            close(&abs(&found[1]), &[0.0, 0.1], 1e-5),
            "{:?}",
            abs(&found[1])
        );
    }

    #[test]
    fn kmeans_never_returns_more_components_than_points() {
        let points = Matrix::from_vec(2, 1, vec![0.0, 1.0]).unwrap();
        assert_eq!(kmeans(&points, 5, 1).len(), 2);
        assert!(kmeans(&Matrix::zeros(0, 3), 4, 1).is_empty());
    }

    /// Points spread with standard deviation 2 along (0.6, 0.8, 0) and 0.5 along z: the
    /// directions found are those axes, scaled by those deviations.
    #[test]
    fn principal_directions_are_the_axes_of_the_spread_scaled_by_it() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let deviations: Vec<Vec<f32>> = (0..4000)
            .map(|_| {
                let (a, b) = (
                    2.0 * standard_normal(&mut rng),
                    0.5 * standard_normal(&mut rng),
                );
                vec![0.6 * a, 0.8 * a, b]
            })
            .collect();
        let found = principal_directions(&deviations, 2, 3);
        assert_eq!(found.len(), 2);
        // A direction's sign is arbitrary: compare each with its largest entry made positive.
        let first: Vec<f32> = found[0].iter().map(|x| x * found[0][0].signum()).collect();
        let second: Vec<f32> = found[1].iter().map(|x| x * found[1][2].signum()).collect();
        assert!(close(&first, &[1.2, 1.6, 0.0], 0.08), "{first:?}");
        assert!(close(&second, &[0.0, 0.0, 0.5], 0.03), "{second:?}");
    }

    /// An exact affine map is recovered when the ridge is tiny; a huge ridge shrinks the
    /// weights to 0 but not the bias (the constant last feature), which becomes the mean target.
    #[test]
    fn ridge_regression_recovers_an_affine_map_and_spares_the_bias() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let features: Vec<f32> = (0..60 * 4)
            .map(|i| match i % 4 {
                3 => 1.0,
                _ => standard_normal(&mut rng),
            })
            .collect();
        let features = Matrix::from_vec(60, 4, features).unwrap();
        let truth =
            Matrix::from_vec(4, 3, (0..12).map(|i| i as f32 / 4.0 - 1.0).collect()).unwrap();
        let mut targets = Matrix::zeros(60, 3);
        matmul_acc(
            &mut targets,
            &features,
            Transpose::No,
            &truth,
            Transpose::No,
            1.0,
        );
        let fitted = ridge_regression(&features, &targets, 1e-7);
        assert!(
            close(fitted.as_slice(), truth.as_slice(), 1e-3),
            "{fitted:?}"
        );
        let shrunk = ridge_regression(&features, &targets, 1e7);
        let means: Vec<f32> = (0..3)
            .map(|c| (0..60).map(|r| targets.get(r, c)).sum::<f32>() / 60.0)
            .collect();
        assert!(
            close(&shrunk.as_slice()[..9], &[0.0; 9], 1e-4),
            "{shrunk:?}"
        );
        assert!(close(shrunk.row(3), &means, 1e-4), "{shrunk:?} {means:?}");
    }

    fn centred_prior(mean: &[f32]) -> LatentPrior {
        let mut prior = LatentPrior::new(3);
        prior.units[2] = vec![Component {
            mean: mean.to_vec(),
            directions: Vec::new(),
        }];
        prior
    }

    fn options() -> DreamOptions {
        DreamOptions {
            steps: 200,
            eps: 0.5,
            input_stiffness: 0.5,
            ..DreamOptions::default()
        }
    }

    /// With no direction the code is the centre itself, and the dreamt input is the fixed point
    /// of its relaxation, `clamp((b_0 + rho(mu) W_1^T) / kappa, 0, 1)`, computed here by hand.
    #[test]
    fn a_dream_is_the_inputs_minimum_given_the_held_code() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let net = Network::glorot(&[6, 4, 3], &mut rng).unwrap();
        let mean = [0.9, 0.0, 0.6, 0.3];
        let images = centred_prior(&mean).dream(&net, &[2, 2], &options());
        let w = net.weight(1);
        for p in 0..6 {
            let drive: f32 = net.bias(0)[p] + (0..4).map(|j| mean[j] * w.get(p, j)).sum::<f32>();
            let expected = (drive / 0.5).clamp(0.0, 1.0);
            for r in 0..2 {
                assert!((images.get(r, p) - expected).abs() < 1e-5, "pixel {p}");
            }
        }
    }

    /// With a decoder the dream is its reconstruction `clamp(rho(mu) D^T + c)`, whatever the
    /// network's own input couplings and stiffness.
    #[test]
    fn a_decoded_dream_is_the_decoders_reconstruction_of_the_code() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let net = Network::glorot(&[6, 4, 3], &mut rng).unwrap();
        let mean = [0.9, 0.0, 0.6, 0.3];
        let mut prior = centred_prior(&mean);
        let weights: Vec<f32> = (0..24)
            .map(|i| ((i * 7) % 11) as f32 / 10.0 - 0.4)
            .collect();
        let decoder = Decoder {
            weights: Matrix::from_vec(6, 4, weights).unwrap(),
            bias: vec![0.1, -0.2, 0.3, 0.0, 0.5, 1.2],
        };
        prior.decoder = Some(decoder.clone());
        let images = prior.dream(&net, &[2], &options());
        for p in 0..6 {
            let sum: f32 = (0..4).map(|j| mean[j] * decoder.weights.get(p, j)).sum();
            let expected = (decoder.bias[p] + sum).clamp(0.0, 1.0);
            assert!((images.get(0, p) - expected).abs() < 1e-5, "pixel {p}");
        }
    }

    /// Learning gives each label of the images its components, leaves the other units empty,
    /// and fits a decoder that reconstructs the images from their codes better than their mean
    /// image does.
    #[test]
    fn learning_fits_components_per_label_and_a_decoder() {
        let hp = Hyperparams {
            layers: vec![6, 8, 3],
            ..Hyperparams::preset("paper").unwrap()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let net = Network::glorot(&hp.layers, &mut rng).unwrap();
        let images: Vec<f32> = (0..40 * 6).map(|_| rng.random_range(0.0..1.0)).collect();
        let data = Dataset {
            images: images.into(),
            labels: (0..40).map(|i| (i % 2) as u8).collect(),
            ..Dataset::empty(2, 3)
        };
        let mut prior = LatentPrior::new(3);
        prior.learn(&net, &hp, &data, 3, 1);
        assert!(!prior.components(0).is_empty() && !prior.components(1).is_empty());
        assert!(prior.components(2).is_empty());
        let decoder = prior.decoder().expect("a decoder");
        assert_eq!((decoder.weights.rows(), decoder.weights.cols()), (6, 8));
        // Its reconstructions beat the best constant image, the mean.
        let hidden = free_layer(&net, &hp, &data, 1);
        let mean: Vec<f32> = (0..6)
            .map(|p| (0..40).map(|i| data.images[i * 6 + p]).sum::<f32>() / 40.0)
            .collect();
        let (mut fit, mut flat) = (0.0, 0.0);
        for (i, image) in data.images.chunks(6).enumerate() {
            for (p, (&x, &m)) in image.iter().zip(&mean).enumerate() {
                let sum: f32 = (0..8)
                    .map(|j| rho(hidden.get(i, j)) * decoder.weights.get(p, j))
                    .sum();
                fit += (decoder.bias[p] + sum - x).powi(2);
                flat += (m - x).powi(2);
            }
        }
        assert!(fit < flat, "{fit} >= {flat}");
    }
}
