//! The EqProp learning rule: compare a nudged equilibrium with a reference one, update locally.
//!
//! ```text
//! dW_k = lr_k / (beta_eff B) * sum_batch [ rho(s_{k-1}^+)^T rho(s_k^+) - rho(s_{k-1}^-)^T rho(s_k^-) ]
//! db_k = lr_k / (beta_eff B) * sum_batch [ rho(s_k^+) - rho(s_k^-) ]
//! ```
//! One-sided nudging compares the `+beta` state with the free one (`beta_eff = beta`, whose sign
//! may be drawn per mini-batch); symmetric nudging (Laborieux et al. 2021) compares `+beta` with
//! `-beta` (`beta_eff = 2 beta`), which cancels the first-order bias of the estimate. As
//! `beta -> 0` the update tends to `-lr dL/dW` with `L` the cost at the free fixed point
//! (Scellier & Bengio 2017, Theorem 1).

use crate::backend::{SparseColumns, outer_acc_rows, rank_update_chunks};
use crate::dynamics::{Kernel, Nudge, Phase, Relaxation, State};
use crate::network::Network;
use crate::tensor::Matrix;
use serde::{Deserialize, Serialize};

/// Which nudged phases an EqProp step runs and compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Nudging {
    /// `+beta` against the free state.
    Positive,
    /// `+-beta` against the free state, the sign drawn per mini-batch (the paper's trick).
    RandomSign,
    /// `+beta` against `-beta` (Laborieux et al. 2021).
    Symmetric,
}

/// The states of one EqProp step for a chunk of a mini-batch, with their scratch buffers.
#[derive(Clone, Debug)]
pub struct Particles {
    /// The free fixed point (the prediction).
    pub free: State,
    /// The `+beta` (or signed-beta) nudged state.
    pub plus: State,
    /// The `-beta` nudged state (symmetric nudging only).
    pub minus: State,
    /// The nudge target of the output layer.
    pub target: Matrix,
    pub relax: Relaxation,
    /// Clamp flags of the learning phases: the input only.
    clamped: Vec<bool>,
    delta: Matrix,
}

impl Particles {
    /// Buffers for `batch` samples.
    pub fn new(sizes: &[usize], batch: usize) -> Self {
        let state = State::zeros(sizes, batch);
        Self {
            plus: state.clone(),
            minus: state.clone(),
            free: state,
            target: Matrix::zeros(batch, *sizes.last().expect("sizes are validated")),
            relax: Relaxation::new(sizes, batch),
            clamped: (0..sizes.len()).map(|k| k == 0).collect(),
            delta: Matrix::zeros(batch, sizes[1]),
        }
    }

    /// Uses `kernel` for every relaxation (the default picks by size).
    pub fn with_kernel(mut self, kernel: Kernel) -> Self {
        self.relax = self.relax.with_kernel(kernel);
        self
    }

    /// Number of samples in the chunk.
    pub fn batch(&self) -> usize {
        self.free.batch()
    }

    /// Clamps the input (already in `free.layers[0]`) and relaxes the free phase.
    pub fn free_phase(&mut self, net: &Network, steps: usize, eps: f32) {
        self.relax.prepare(net, &self.free, &self.clamped);
        self.relax
            .relax(net, &mut self.free, &Phase::free(steps, eps));
    }

    /// Relaxes the nudged phase(s) from the free fixed point with nudge strength `beta`.
    pub fn nudged_phases(
        &mut self,
        net: &Network,
        nudging: Nudging,
        steps: usize,
        eps: f32,
        beta: f32,
    ) {
        let output = net.output_layer();
        self.plus.copy_from(&self.free);
        let nudge = Nudge {
            layer: output,
            beta,
            target: &self.target,
        };
        self.relax.relax(
            net,
            &mut self.plus,
            &Phase {
                steps,
                eps,
                nudge: Some(nudge),
            },
        );
        if nudging == Nudging::Symmetric {
            self.minus.copy_from(&self.free);
            let nudge = Nudge {
                layer: output,
                beta: -beta,
                target: &self.target,
            };
            self.relax.relax(
                net,
                &mut self.minus,
                &Phase {
                    steps,
                    eps,
                    nudge: Some(nudge),
                },
            );
        }
    }

    /// `delta = s_1^+ - s_1^-`, the factor of the sparse `W_1` update.
    pub fn refresh_delta(&mut self, nudging: Nudging) {
        let neg = match nudging {
            Nudging::Symmetric => &self.minus,
            Nudging::Positive | Nudging::RandomSign => &self.free,
        };
        let pos = self.plus.layers[1].as_slice();
        for ((d, &x), &y) in self
            .delta
            .as_mut_slice()
            .iter_mut()
            .zip(pos)
            .zip(neg.layers[1].as_slice())
        {
            *d = x - y;
        }
    }

    /// The two states the update compares, and the effective `beta` it divides by.
    fn contrast(&self, nudging: Nudging, beta: f32) -> (&State, &State, f32) {
        match nudging {
            Nudging::Symmetric => (&self.plus, &self.minus, 2.0 * beta),
            Nudging::Positive | Nudging::RandomSign => (&self.plus, &self.free, beta),
        }
    }
}

/// The factor `lr_k / (beta_eff B)` of each layer's update for a mini-batch of `particles`.
pub fn update_scales(
    lrs: &[f32],
    particles: &[Particles],
    nudging: Nudging,
    beta: f32,
) -> Vec<f32> {
    let batch: usize = particles.iter().map(Particles::batch).sum();
    let beta_eff = particles[0].contrast(nudging, beta).2;
    lrs.iter()
        .map(|lr| lr / (beta_eff * batch as f32))
        .collect()
}

/// Applies the EqProp update accumulated over every chunk of a mini-batch.
///
/// `lrs[k-1]` is the learning rate of `W_k` and `b_k`; `beta` is the (signed) nudge strength used
/// by [`Particles::nudged_phases`]. The `W_1` update reads only the non-zero inputs and is split
/// across threads by rows; the other layers run beside it. (The trainer runs the same pieces on
/// its own workers: [`update_first_layer_rows`], [`update_dense_layer`], [`update_biases`].)
pub fn apply_update(
    net: &mut Network,
    lrs: &[f32],
    particles: &mut [Particles],
    nudging: Nudging,
    beta: f32,
) {
    for p in particles.iter_mut() {
        p.refresh_delta(nudging);
    }
    let scale = update_scales(lrs, particles, nudging, beta);
    let (weights, biases) = net.params_mut();
    let (w1, upper) = weights
        .split_first_mut()
        .expect("a network has at least one coupling");
    let particles = &*particles;
    rayon::join(
        || {
            let half = w1.rows().div_ceil(2);
            let units = w1.cols();
            let (top, bottom) = w1.as_mut_slice().split_at_mut(half * units);
            rayon::join(
                || update_first_layer_rows(top, 0, scale[0], particles, nudging, beta),
                || update_first_layer_rows(bottom, half, scale[0], particles, nudging, beta),
            );
        },
        || {
            for (i, w) in upper.iter_mut().enumerate() {
                update_dense_layer(w, i + 2, scale[i + 1], particles, nudging, beta);
            }
            update_biases(biases, &scale, particles, nudging, beta);
        },
    );
}

/// `W_1[rows] += c X^T (s_1^+ - s_1^-)` for the block of rows starting at `first_row` (`block`
/// holds whole rows), over the non-zero inputs. Needs [`Particles::refresh_delta`] first.
pub fn update_first_layer_rows(
    block: &mut [f32],
    first_row: usize,
    c: f32,
    particles: &[Particles],
    nudging: Nudging,
    beta: f32,
) {
    let sparse: Option<Vec<(&SparseColumns, &Matrix)>> = particles
        .iter()
        .map(|p| p.relax.sparse_input().map(|x| (x, &p.delta)))
        .collect();
    if let Some(chunks) = sparse {
        return rank_update_chunks(c, &chunks, first_row, block);
    }
    // The input was not clamped (no sparse copy of it): the dense outer products.
    update_dense_layer_rows(block, first_row, 1, c, particles, nudging, beta);
}

/// `W_k[rows] += c (s_{k-1}^+^T s_k^+ - s_{k-1}^-^T s_k^-)[rows]` for the block of rows starting
/// at `first_row` (one worker's share), two GEMMs per chunk.
pub fn update_dense_layer_rows(
    block: &mut [f32],
    first_row: usize,
    k: usize,
    c: f32,
    particles: &[Particles],
    nudging: Nudging,
    beta: f32,
) {
    for p in particles {
        let (pos, neg, _) = p.contrast(nudging, beta);
        outer_acc_rows(block, first_row, &pos.layers[k - 1], &pos.layers[k], c);
        outer_acc_rows(block, first_row, &neg.layers[k - 1], &neg.layers[k], -c);
    }
}

/// `W_k += c (s_{k-1}^+^T s_k^+ - s_{k-1}^-^T s_k^-)` with two GEMMs per chunk.
pub fn update_dense_layer(
    w: &mut Matrix,
    k: usize,
    c: f32,
    particles: &[Particles],
    nudging: Nudging,
    beta: f32,
) {
    update_dense_layer_rows(w.as_mut_slice(), 0, k, c, particles, nudging, beta);
}

/// `b_k += c_k sum_batch (s_k^+ - s_k^-)` for every layer above the input.
pub fn update_biases(
    biases: &mut [Vec<f32>],
    scale: &[f32],
    particles: &[Particles],
    nudging: Nudging,
    beta: f32,
) {
    for (k, b) in biases.iter_mut().enumerate().skip(1) {
        let c = scale[k - 1];
        for p in particles {
            let (pos, neg, _) = p.contrast(nudging, beta);
            for r in 0..p.batch() {
                for ((bi, &x), &y) in b
                    .iter_mut()
                    .zip(pos.layers[k].row(r))
                    .zip(neg.layers[k].row(r))
                {
                    *bi += c * (x - y);
                }
            }
        }
    }
}
