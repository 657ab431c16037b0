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
use crate::modulator::{Modulator, surprise};
use crate::network::Network;
use crate::tensor::Matrix;
use serde::{Deserialize, Serialize};

/// Which nudged phases an EqProp step runs and compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Nudging {
    /// `+beta` against the free state.
    Positive,
    /// `+-beta` against the free state, the sign drawn per mini-batch (the paper's trick).
    RandomSign,
    /// `+beta` against `-beta` (Laborieux et al. 2021).
    Symmetric,
}

/// The settings of the relaxation and of the nudge that every EqProp learner shares (the
/// trainer's [`Hyperparams`](crate::config::Hyperparams) and the world model's
/// [`WorldModelConfig`](crate::world_model::WorldModelConfig)): the free phase runs `t_free`
/// steps of size `eps`, the nudged phase(s) `t_nudge` more with nudge strength `beta`, compared
/// as `nudging` says.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dynamics {
    /// Free-phase steps `T1`.
    pub t_free: usize,
    /// Nudged-phase steps `T2`.
    pub t_nudge: usize,
    /// Step size of the dynamics.
    pub eps: f32,
    /// Nudge strength (paper units: `C = 1/2 ||y - t||^2`).
    pub beta: f32,
    pub nudging: Nudging,
}

/// Generative training (for dreaming): besides the usual nudge of the output, a second phase
/// pair with the label clamped on the output and the input free, whose nudge pulls the input
/// toward the real image. Its EqProp update lowers `C_g = 1/2 ||s_0 - x||^2` at the fixed point
/// reached from the real image, so the top-down couplings learn to draw what the label means.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Generative {
    /// Strength of the pull of the free input toward the real image.
    pub beta: f32,
    /// Steps of the generative free and nudged phases.
    pub t_free: usize,
    pub t_nudge: usize,
    /// Learning rates of the generative update as a fraction of the discriminative ones.
    pub lr_scale: f32,
    /// Where the free input and hidden layers start.
    #[serde(default)]
    pub start: GenerativeStart,
    /// Stiffness of the free input layer (see [`Relaxation::with_input_stiffness`]); dreams
    /// use the same.
    #[serde(default = "unit_stiffness")]
    pub input_stiffness: f32,
    /// First epoch (0-based) with generative phases: later epochs teach the dreams to a network
    /// that has already learned to classify.
    #[serde(default)]
    pub from_epoch: usize,
    /// Update only what draws the input (`W_1` and the input bias), leaving the upper layers to
    /// the discriminative phases.
    #[serde(default)]
    pub input_couplings_only: bool,
}

impl Generative {
    /// The factor `lr_scale lr_k / (beta_g B)` of each coupling's generative update, for a
    /// mini-batch of `batch` samples (dense and convolutional networks alike).
    pub fn scales(&self, lrs: &[f32], batch: usize) -> Vec<f32> {
        lrs.iter()
            .map(|lr| self.lr_scale * lr / (self.beta * batch as f32))
            .collect()
    }
}

fn unit_stiffness() -> f32 {
    1.0
}

/// Start of the generative free phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum GenerativeStart {
    /// The real image and the hidden state it drives (real images become attractors).
    Image,
    /// Every free unit at 0, as a dream from zeros starts (the label alone must draw).
    Zeros,
    /// Where the previous mini-batch's generative free phase ended (persistent chains, as in
    /// persistent contrastive divergence): the update then also raises the energy of whatever
    /// spurious pattern the free dynamics fall into.
    #[default]
    Persistent,
}

impl Default for Generative {
    /// The settings measured best on MNIST (BENCHMARKS.md): persistent chains, 10 + 4 steps,
    /// `beta_g = 1`, generative rates 1/2000 of the discriminative ones (1/1000 drew dreams as
    /// good at 0.7 points of test error, 1/2000 at 0.3), input stiffness 0.5.
    fn default() -> Self {
        Self {
            beta: 1.0,
            t_free: 10,
            t_nudge: 4,
            lr_scale: 0.0005,
            start: GenerativeStart::Persistent,
            input_stiffness: 0.5,
            from_epoch: 0,
            input_couplings_only: false,
        }
    }
}

/// The two states of a generative phase pair for a chunk, with their scratch.
#[derive(Clone, Debug)]
pub struct GenerativeParticles {
    /// The fixed point with the label clamped and the input free.
    pub free: State,
    /// The same, nudged toward the real image.
    pub nudged: State,
    /// The real images (the nudge target of the input layer).
    pub images: Matrix,
    relax: Relaxation,
    /// Clamp flags: the output only.
    clamped: Vec<bool>,
}

impl GenerativeParticles {
    /// Buffers for `batch` samples.
    pub fn new(sizes: &[usize], batch: usize) -> Self {
        let state = State::zeros(sizes, batch);
        Self {
            nudged: state.clone(),
            free: state,
            images: Matrix::zeros(batch, sizes[0]),
            relax: Relaxation::new(sizes, batch),
            clamped: (0..sizes.len()).map(|k| k + 1 == sizes.len()).collect(),
        }
    }

    /// Runs both phases from `start` (the discriminative free fixed point of the real images,
    /// whose input layer is the nudge target), with the output clamped at `labels`.
    pub fn phases(
        &mut self,
        net: &Network,
        start: &State,
        labels: &Matrix,
        g: &Generative,
        eps: f32,
    ) {
        self.images.copy_from(&start.layers[0]);
        match g.start {
            GenerativeStart::Image => self.free.copy_from(start),
            GenerativeStart::Zeros => self.free.layers.iter_mut().for_each(|m| m.fill(0.0)),
            GenerativeStart::Persistent => {}
        }
        self.free.layers[net.output_layer()].copy_from(labels);
        self.relax.set_input_stiffness(g.input_stiffness);
        self.relax.prepare(net, &self.free, &self.clamped);
        self.relax
            .relax(net, &mut self.free, &Phase::free(g.t_free, eps));
        self.nudged.copy_from(&self.free);
        let nudge = Nudge {
            layer: 0,
            beta: g.beta,
            target: &self.images,
        };
        self.relax.relax(
            net,
            &mut self.nudged,
            &Phase {
                steps: g.t_nudge,
                eps,
                nudge: Some(nudge),
            },
        );
    }

    fn batch(&self) -> usize {
        self.free.batch()
    }
}

/// The factor `lr_scale lr_k / (beta_g B)` of each layer's generative update.
pub fn generative_scales(
    lrs: &[f32],
    particles: &[GenerativeParticles],
    g: &Generative,
) -> Vec<f32> {
    let batch: usize = particles.iter().map(GenerativeParticles::batch).sum();
    g.scales(lrs, batch)
}

/// `W_k[rows] += c (s_{k-1}^g^T s_k^g - s_{k-1}^0^T s_k^0)[rows]`: the generative update of a
/// block of rows of `W_k` (nudged against free, both with the label clamped).
pub fn update_generative_rows(
    block: &mut [f32],
    first_row: usize,
    k: usize,
    c: f32,
    particles: &[GenerativeParticles],
) {
    for p in particles {
        outer_acc_rows(
            block,
            first_row,
            &p.nudged.layers[k - 1],
            &p.nudged.layers[k],
            c,
        );
        outer_acc_rows(
            block,
            first_row,
            &p.free.layers[k - 1],
            &p.free.layers[k],
            -c,
        );
    }
}

/// `b_k += c_k sum_batch (s_k^g - s_k^0)` for every layer, the input's bias included (it uses
/// the rate of `W_1`); the clamped output contributes nothing.
pub fn update_generative_biases(
    biases: &mut [Vec<f32>],
    scale: &[f32],
    particles: &[GenerativeParticles],
) {
    for (k, b) in biases.iter_mut().enumerate() {
        let c = scale[k.saturating_sub(1)];
        for p in particles {
            for r in 0..p.batch() {
                let rows = p.nudged.layers[k]
                    .row(r)
                    .iter()
                    .zip(p.free.layers[k].row(r));
                for (bi, (&x, &y)) in b.iter_mut().zip(rows) {
                    *bi += c * (x - y);
                }
            }
        }
    }
}

/// Where the surprise gate of [`Particles::eqprop_phases`] writes its verdicts on a chunk's
/// samples: the caller's buffers, one entry per sample, reused step after step.
#[derive(Debug)]
pub struct Verdicts<'a> {
    /// The output cost `1/2 ||y - t||^2` at each sample's free fixed point (with a gate).
    pub surprise: &'a mut [f32],
    /// Whether each sample learns (with a gate).
    pub learns: &'a mut [bool],
    /// The samples that learn, increasing (every sample without a gate).
    pub learners: &'a mut Vec<usize>,
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
    /// Whether any sample of the chunk learns from this mini-batch (a surprise gate may have
    /// skipped them all; then the chunk adds nothing, not even rounding, to the update).
    pub learns: bool,
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
            learns: true,
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

    /// One EqProp step up to its update, the input (in `free.layers[0]`) and the target loaded:
    ///
    /// 1. the free phase, `t_free` steps from the state `free` holds;
    /// 2. `at_free`: the caller's look at the free fixed point (its statistics, or targets it
    ///    adjusts before they are compared);
    /// 3. with a `threshold`, the surprise gate: a sample learns only when its output cost
    ///    `1/2 ||y - t||^2` exceeds the threshold ([`Modulator::learns`]); the others leave the
    ///    sparse input of the `W_1` update;
    /// 4. the nudged phase(s), `t_nudge` steps of strength `beta` (signed by the caller under
    ///    random-sign nudging), for the learners only: the nudged states of the others stay at
    ///    their free fixed points, so they add nothing to the update.
    ///
    /// Sets [`learns`](Self::learns) (whether any sample learns). The update is the caller's,
    /// scaled by [`gated_scales`]: the trainer splits it over its workers by rows, the world
    /// model applies it at once ([`apply_update_scaled`]).
    pub fn eqprop_phases(
        &mut self,
        net: &Network,
        d: &Dynamics,
        beta: f32,
        threshold: Option<f32>,
        verdicts: Verdicts<'_>,
        at_free: impl FnOnce(&mut Self),
    ) {
        self.free_phase(net, d.t_free, d.eps);
        at_free(self);
        let Verdicts {
            surprise: costs,
            learns,
            learners,
        } = verdicts;
        learners.clear();
        match threshold {
            Some(theta) => {
                surprise(self.free.output(), &self.target, costs);
                for (r, &s) in costs.iter().enumerate() {
                    learns[r] = Modulator::learns(s, theta);
                    if learns[r] {
                        learners.push(r);
                    }
                }
                self.relax.retain_input_samples(learns);
            }
            None => learners.extend(0..self.batch()),
        }
        self.learns = !learners.is_empty();
        // Every sample learning is the same as relaxing the whole batch.
        let rows = (learners.len() < self.batch()).then_some(&learners[..]);
        self.nudged_phases(net, d.nudging, d.t_nudge, d.eps, beta, rows);
    }

    /// Relaxes the nudged phase(s) from the free fixed point with nudge strength `beta`, for
    /// every sample or only for `rows` (increasing): the nudged states of the others stay at
    /// their free fixed points, so they add nothing to the update.
    pub fn nudged_phases(
        &mut self,
        net: &Network,
        nudging: Nudging,
        steps: usize,
        eps: f32,
        beta: f32,
        rows: Option<&[usize]>,
    ) {
        let signs: &[f32] = match nudging {
            Nudging::Symmetric => &[1.0, -1.0],
            Nudging::Positive | Nudging::RandomSign => &[1.0],
        };
        for &sign in signs {
            let state = if sign > 0.0 {
                &mut self.plus
            } else {
                &mut self.minus
            };
            state.copy_from(&self.free);
            let phase = Phase {
                steps,
                eps,
                nudge: Some(Nudge {
                    layer: net.output_layer(),
                    beta: sign * beta,
                    target: &self.target,
                }),
            };
            match rows {
                Some(rows) => self.relax.relax_rows(net, state, &phase, rows),
                None => self.relax.relax(net, state, &phase),
            }
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
        let beta_eff = nudging.effective_beta(beta);
        match nudging {
            Nudging::Symmetric => (&self.plus, &self.minus, beta_eff),
            Nudging::Positive | Nudging::RandomSign => (&self.plus, &self.free, beta_eff),
        }
    }
}

impl Nudging {
    /// The `beta_eff` the update divides by: the distance in `beta` between the two compared
    /// phases (`beta`, or `2 beta` from `-beta` to `+beta`).
    pub fn effective_beta(self, beta: f32) -> f32 {
        match self {
            Nudging::Symmetric => 2.0 * beta,
            Nudging::Positive | Nudging::RandomSign => beta,
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
    batch_scales(lrs, batch, nudging, beta)
}

/// [`update_scales`] times the surprise gate's gain, when there is a gate: the factor
/// `gain lr_k / (beta_eff B)` of each layer's update, the same for every learner.
pub fn gated_scales(
    lrs: &[f32],
    particles: &[Particles],
    nudging: Nudging,
    beta: f32,
    gate: Option<&Modulator>,
) -> Vec<f32> {
    let mut scale = update_scales(lrs, particles, nudging, beta);
    if let Some(m) = gate {
        scale.iter_mut().for_each(|c| *c *= m.gain);
    }
    scale
}

/// The factor `lr_k / (beta_eff B)` of each layer's update for a mini-batch of `batch` samples.
pub fn batch_scales(lrs: &[f32], batch: usize, nudging: Nudging, beta: f32) -> Vec<f32> {
    let beta_eff = nudging.effective_beta(beta);
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
    let scale = update_scales(lrs, particles, nudging, beta);
    apply_update_scaled(net, &scale, particles, nudging, beta);
}

/// [`apply_update`] with each layer's factor given (`scale[k-1]` for `W_k` and `b_k`, e.g.
/// from [`gated_scales`]).
pub fn apply_update_scaled(
    net: &mut Network,
    scale: &[f32],
    particles: &mut [Particles],
    nudging: Nudging,
    beta: f32,
) {
    for p in particles.iter_mut() {
        p.refresh_delta(nudging);
    }
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
            update_biases(biases, scale, particles, nudging, beta);
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
    for p in particles.iter().filter(|p| p.learns) {
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
        for p in particles.iter().filter(|p| p.learns) {
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
