//! A class-conditional prior over the first hidden layer, to dream from.
//!
//! A plain dream ([`crate::dream`]) starts every free unit from noise and lets the physics pull it
//! into one of a few attractors of its label: sharp, prototypical digits. Brain-inspired replay
//! (van de Ven, Siegelmann & Tolias 2020) instead keeps, per class, a Gaussian mixture over the
//! hidden code and dreams from samples of it. Here the code is the free fixed point `h*(x)` of
//! the first hidden layer. Right after a class is learned, the network's free states on that
//! class's images are summarised by `k` components (k-means centres `mu_c`, per-unit spreads
//! `sigma_c`); the images are not kept. A dream of class `y` then draws
//!
//! ```text
//! c ~ uniform(components of y),   h = clamp(mu_c + sigma_c xi, 0, 1),   xi ~ N(0, I)
//! ```
//!
//! holds `h` and the one-hot label, and lets the input relax to its minimum of `E` given `h`:
//! the input's only coupling is `W_1`, so it settles at `clamp((W_1 rho(h) + b_0) / kappa, 0, 1)`
//! (`kappa` the input stiffness). Every dream is the network's own picture of a code it reached
//! on a real example of the class, so dreams spread over the class as the data did.

use crate::config::Hyperparams;
use crate::data::Dataset;
use crate::dream::{DreamOptions, one_hot};
use crate::dynamics::{Phase, Relaxation, State};
use crate::network::Network;
use crate::tensor::Matrix;
use crate::train::free_layer;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// k-means iterations when a class is summarised (the assignments settle well before).
const KMEANS_ITERATIONS: usize = 25;

/// One diagonal Gaussian over the hidden code.
#[derive(Clone, Debug, PartialEq)]
pub struct Component {
    pub mean: Vec<f32>,
    pub spread: Vec<f32>,
}

/// The components of every output unit learned so far (none for the others).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LatentPrior {
    units: Vec<Vec<Component>>,
}

impl LatentPrior {
    /// An empty prior for a network with `units` output units.
    pub fn new(units: usize) -> Self {
        Self {
            units: vec![Vec::new(); units],
        }
    }

    /// The components of `unit` (empty until it is learned).
    pub fn components(&self, unit: usize) -> &[Component] {
        &self.units[unit]
    }

    /// Summarises the free hidden states of `images` (all of class `unit`) by up to
    /// `components` diagonal Gaussians, replacing what `unit` had.
    pub fn learn(
        &mut self,
        net: &Network,
        hp: &Hyperparams,
        images: &Dataset,
        unit: usize,
        components: usize,
        seed: u64,
    ) {
        let hidden = free_layer(net, hp, images, 1);
        self.units[unit] = kmeans(&hidden, components, seed);
    }

    /// One image per entry of `labels`, dreamt from a code drawn from the label's components
    /// (see the module doc). Uses `options.steps`, `eps`, `input_stiffness`, `seed` and the
    /// label values; the input starts at 0.
    ///
    /// Panics if a label has no components (callers dream only what was learned).
    pub fn dream(&self, net: &Network, labels: &[usize], options: &DreamOptions) -> Matrix {
        let sizes = net.sizes();
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
        let mut state = State::zeros(sizes, labels.len());
        for (r, &label) in labels.iter().enumerate() {
            let components = &self.units[label];
            assert!(!components.is_empty(), "no prior for label {label}");
            let c = &components[rng.random_range(0..components.len())];
            for ((h, &mu), &sigma) in state.layers[1]
                .row_mut(r)
                .iter_mut()
                .zip(&c.mean)
                .zip(&c.spread)
            {
                *h = (mu + sigma * crate::dream::standard_normal(&mut rng)).clamp(0.0, 1.0);
            }
        }
        let output = sizes.len() - 1;
        let target = one_hot(labels, sizes[output], options.target_off, options.target_on);
        state.layers[output].copy_from(&target);
        // Only the input is free: it relaxes to its minimum given the held code.
        let mut clamped = vec![true; sizes.len()];
        clamped[0] = false;
        let mut relax =
            Relaxation::new(sizes, labels.len()).with_input_stiffness(options.input_stiffness);
        relax.prepare(net, &state, &clamped);
        relax.relax(net, &mut state, &Phase::free(options.steps, options.eps));
        state.layers.swap_remove(0)
    }
}

/// k-means on the rows of `points` (centres seeded from `k` distinct random rows), then each
/// cluster's centre and per-coordinate standard deviation; empty clusters are dropped.
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
            let mut spread = vec![0.0f32; mean.len()];
            for &i in &members {
                for ((s, &x), &m) in spread.iter_mut().zip(points.row(i)).zip(&mean) {
                    *s += (x - m) * (x - m);
                }
            }
            spread
                .iter_mut()
                .for_each(|s| *s = (*s / members.len() as f32).sqrt());
            Some(Component { mean, spread })
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

    /// Two well-separated blobs come back as two components with their own centres and
    /// spreads.
    #[test]
    fn kmeans_finds_separated_clusters_and_their_spreads() {
        let rows = [[0.1, 0.2], [0.3, 0.2], [0.9, 0.8], [0.9, 1.0]];
        let points = Matrix::from_vec(4, 2, rows.concat()).unwrap();
        let mut found = kmeans(&points, 2, 7);
        found.sort_by(|a, b| a.mean[0].total_cmp(&b.mean[0]));
        assert_eq!(found.len(), 2);
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6);
        assert!(close(&found[0].mean, &[0.2, 0.2]), "{:?}", found[0].mean);
        assert!(
            close(&found[0].spread, &[0.1, 0.0]),
            "{:?}",
            found[0].spread
        );
        assert!(close(&found[1].mean, &[0.9, 0.9]), "{:?}", found[1].mean);
        assert!(
            close(&found[1].spread, &[0.0, 0.1]),
            "{:?}",
            found[1].spread
        );
    }

    #[test]
    fn kmeans_never_returns_more_components_than_points() {
        let points = Matrix::from_vec(2, 1, vec![0.0, 1.0]).unwrap();
        assert_eq!(kmeans(&points, 5, 1).len(), 2);
        assert!(kmeans(&Matrix::zeros(0, 3), 4, 1).is_empty());
    }

    /// With a spread of 0 the code is the centre itself, and the dreamt input is the fixed
    /// point of its relaxation, `clamp((b_0 + rho(mu) W_1^T) / kappa, 0, 1)`, computed here
    /// by hand.
    #[test]
    fn a_dream_is_the_inputs_minimum_given_the_held_code() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let net = Network::glorot(&[6, 4, 3], &mut rng).unwrap();
        let mean = vec![0.9, 0.0, 0.6, 0.3];
        let mut prior = LatentPrior::new(3);
        prior.units[2] = vec![Component {
            mean: mean.clone(),
            spread: vec![0.0; 4],
        }];
        let options = DreamOptions {
            steps: 200,
            eps: 0.5,
            input_stiffness: 0.5,
            ..DreamOptions::default()
        };
        let images = prior.dream(&net, &[2, 2], &options);
        let w = net.weight(1);
        for p in 0..6 {
            let drive: f32 = net.bias(0)[p] + (0..4).map(|j| mean[j] * w.get(p, j)).sum::<f32>();
            let expected = (drive / 0.5).clamp(0.0, 1.0);
            for r in 0..2 {
                assert!((images.get(r, p) - expected).abs() < 1e-5, "pixel {p}");
            }
        }
    }
}
