//! EqProp on mini-batches for a network of any architecture.
//!
//! Each mini-batch is split into chunks of at most [`CHUNK`] samples that relax independently
//! (in parallel, on rayon's threads): the free phase from zero states, then the nudged
//! phase(s) from the free fixed point. The update compares them:
//!
//! ```text
//! theta += lr_k / (beta_eff B) * sum_batch [ dPhi/dtheta(s^+) - dPhi/dtheta(s^-) ]
//! ```
//! with `s^-` the free state (one-sided nudging, `beta_eff` the signed `beta`) or the `-beta`
//! state (symmetric, `beta_eff = 2 beta`). The chunks' sums are added in chunk order, so the
//! result does not depend on the number of threads.
//!
//! With a surprise gate ([`crate::modulator`]) only the examples whose free-phase output cost
//! `1/2 ||y^0 - t||^2` exceeds the threshold relax nudged phases and enter the sum (`B` stays
//! the mini-batch size): the others cost their free phase only.

use super::architecture::{Architecture, StateRange};
use super::generative::{GenerativePair, chain_start};
use super::net::{ConvNet, Gradient};
use super::optimizer::{Adam, Optimizer};
use super::relax::{ConvPhase, ConvState, Pull, Sweep, Workspace};
use crate::config::{ConfigError, MAX_COUPLINGS, MAX_STATES, Schedule, range};
use crate::data::{Augmentation, Dataset, Fill, augmented, shift_fits};
use crate::learning_rule::{Dynamics, Generative, GenerativeStart, Nudging, batch_scales};
use crate::modulator::Modulator;
use crate::tensor::Matrix;
use crate::train::{Evaluation, Settled};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Samples per parallel chunk of a mini-batch.
pub const CHUNK: usize = 16;

/// Samples per parallel chunk of evaluation.
const EVAL_CHUNK: usize = 64;

/// Everything that defines a training run of a network of any architecture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConvConfig {
    pub arch: Architecture,
    pub batch_size: usize,
    /// Free-phase steps `T1`.
    pub t_free: usize,
    /// Nudged-phase steps `T2` (each phase, under symmetric nudging).
    pub t_nudge: usize,
    /// Step size (1: the exact block minimiser / fixed-point iteration).
    pub eps: f32,
    pub sweep: Sweep,
    /// End a phase early once no state moves by more than this in a step (0: always run
    /// `t_free` / `t_nudge` steps).
    #[serde(default)]
    pub tol: f32,
    pub beta: f32,
    pub nudging: Nudging,
    /// One learning rate per coupling `W_k` (and bias `b_k`).
    pub lr: Vec<f32>,
    /// Heavy-ball momentum of the update (0: plain steps; SGD only).
    #[serde(default)]
    pub momentum: f32,
    /// What turns the EqProp estimate into a step: SGD (with `momentum`) or Adam.
    #[serde(default, skip_serializing_if = "Optimizer::is_sgd")]
    pub optimizer: Optimizer,
    /// Decoupled weight decay: after every update `W_k <- (1 - lr_k weight_decay) W_k` (the
    /// biases are left alone; 0: none), as Laborieux et al. 2021 regularise their CIFAR-10
    /// networks. It keeps the couplings small, though not the relaxation fast (BENCHMARKS.md).
    #[serde(default, skip_serializing_if = "is_zero_f32")]
    pub weight_decay: f32,
    pub schedule: Schedule,
    pub epochs: usize,
    pub seed: u64,
    /// Translates every training image by a random whole number of pixels in `-shift..=shift`
    /// along each axis (zero filled), drawn anew for each example in each epoch: the data
    /// augmentation of convolutional networks. 0 trains on the images as they are.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shift: usize,
    /// What the pixels a shift uncovers become: 0, or the image's nearest pixel (a random crop
    /// of the edge-padded image, as Laborieux et al. 2021 augment CIFAR-10).
    #[serde(default, skip_serializing_if = "is_zero_fill")]
    pub shift_fill: Fill,
    /// Mirrors each training image left to right with probability 1/2 (drawn anew for each
    /// example in each epoch): augmentation for classes that a mirror image keeps.
    #[serde(default, skip_serializing_if = "is_false")]
    pub flip: bool,
    /// Standardises every image the network sees (training, evaluation, prediction),
    /// channel by channel: `x' = (x - mean_c) / std_c` (none: the pixels as they are, in
    /// `[0, 1]`). The input layer is clamped to the standardised image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize: Option<Normalization>,
    /// Each training example starts its free phase from where its last one ended (persistent
    /// particles) instead of from zero.
    #[serde(default, skip_serializing_if = "is_false")]
    pub persistent: bool,
    /// The surprise gate: an example learns only when its free-phase output cost exceeds the
    /// threshold (none: every example learns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modulator: Option<Modulator>,
    /// Train on the first `N` examples of the training set only (none: all of them). The
    /// trainer trains on the data it is given; whoever loads the data applies the limit, and
    /// the checkpoint keeps it so that a resumed run sees the same examples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_limit: Option<usize>,
    /// Generative training, for dreaming: a second phase pair per mini-batch with the label
    /// clamped and the input free, pulled toward the real image ([`super::generative`]; none:
    /// the network only learns to classify). Its input stiffness is also the dreams'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generative: Option<Generative>,
}

/// A per-channel standardisation of the input images (see [`ConvConfig::normalize`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    /// Subtracted from each channel.
    pub mean: Vec<f32>,
    /// Each channel is divided by it after the mean is subtracted.
    pub std: Vec<f32>,
}

impl Normalization {
    /// Laborieux et al. 2021's CIFAR-10 inputs: the training set's channel means and three
    /// times its channel standard deviations (so that most pixels fall in `[-1, 1]`).
    pub fn cifar10() -> Self {
        Self {
            mean: vec![0.4914, 0.4822, 0.4465],
            std: vec![3.0 * 0.2023, 3.0 * 0.1994, 3.0 * 0.2010],
        }
    }

    /// The interval of standardised pixels: the union over channels of `[(0 - mean_c) / std_c,
    /// (1 - mean_c) / std_c]`, where a free input (dreams, generative training) lives in place
    /// of `[0, 1]`. One interval per layer, so a channel's dream may pass its own bounds a little
    /// (shown clipped to `[0, 1]` as a pixel).
    pub fn pixel_range(&self) -> StateRange {
        let bounds = self.mean.iter().zip(&self.std);
        let (lo, hi) = bounds.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), (m, s)| {
            (lo.min(-m / s), hi.max((1.0 - m) / s))
        });
        StateRange { lo, hi }
    }

    /// Turns standardised channel-last images back into pixels, in place: `x = x' std_c +
    /// mean_c` (what a dream's input layer shows as an image).
    pub fn invert(&self, standardised: &mut [f32]) {
        self.per_channel(standardised, |x, m, s| x * s + m);
    }

    /// Standardises `pixels`, channel-last images of `mean.len()` channels, in place.
    pub fn apply(&self, pixels: &mut [f32]) {
        self.per_channel(pixels, |x, m, s| (x - m) / s);
    }

    /// `x <- f(x, mean_c, std_c)` for every value of channel-last `pixels`.
    fn per_channel(&self, pixels: &mut [f32], f: impl Fn(f32, f32, f32) -> f32) {
        for px in pixels.chunks_exact_mut(self.mean.len()) {
            for ((x, m), s) in px.iter_mut().zip(&self.mean).zip(&self.std) {
                *x = f(*x, *m, *s);
            }
        }
    }
}

/// `MEAN,../STD,..`, one value per channel on each side of the slash (e.g. `0.5/0.25`).
impl std::str::FromStr for Normalization {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let values = |part: &str| -> Result<Vec<f32>, String> {
            part.split(',')
                .map(|v| v.trim().parse::<f32>().map_err(|e| format!("{v:?}: {e}")))
                .collect()
        };
        let (mean, std) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: expected MEAN,../STD,.. (e.g. 0.5/0.25)"))?;
        let (mean, std) = (values(mean)?, values(std)?);
        if mean.len() != std.len() {
            return Err(format!(
                "{s:?}: {} means but {} standard deviations",
                mean.len(),
                std.len()
            ));
        }
        Ok(Self { mean, std })
    }
}

fn is_zero_fill(fill: &Fill) -> bool {
    *fill == Fill::Zero
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn is_zero_f32(x: &f32) -> bool {
    *x == 0.0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Names accepted by [`ConvConfig::preset`].
pub const CONV_PRESETS: [&str; 4] = [
    "conv-mnist",
    "conv-fashion",
    "conv-cifar10",
    "conv-reference",
];

/// The network of Laborieux et al. 2021 on MNIST: two 5x5 convolutions (32 and 64 channels),
/// each max-pooled inside its coupling, and a dense output.
pub const MNIST_CONV: &str = "1x28x28,conv32k5+pool,conv64k5+pool,10";

impl ConvConfig {
    /// A named preset (see [`CONV_PRESETS`]):
    ///
    /// * `conv-mnist`, `conv-fashion`: [`MNIST_CONV`] trained with alternating layer updates
    ///   and few steps (this project's settings, docs/conv.md); `conv-mnist` translates the
    ///   training images by up to 2 pixels (`shift`), `conv-fashion` trains on them as they are;
    /// * `conv-reference`: the same network at the research code's settings (synchronous
    ///   fixed-point steps, `T1 = 200`, `T2 = 10`), for speed comparisons;
    /// * `conv-cifar10`: Laborieux et al. 2021's four-layer CIFAR-10 network
    ///   (128-256-512-512 channels, 3x3 kernels) with their data augmentation,
    ///   standardisation and weight decay; not measured here (no CIFAR data).
    pub fn preset(name: &str) -> Result<Self, ConfigError> {
        let mnist = Self {
            arch: MNIST_CONV.parse().expect("a valid spec"),
            batch_size: 20,
            t_free: 20,
            t_nudge: 4,
            eps: 1.0,
            sweep: Sweep::Alternating,
            tol: 0.0,
            beta: 0.5,
            nudging: Nudging::Symmetric,
            lr: vec![0.1, 0.1, 0.02],
            momentum: 0.0,
            optimizer: Optimizer::Sgd,
            weight_decay: 0.0,
            schedule: Schedule::Cosine {
                final_fraction: 0.01,
            },
            epochs: 30,
            seed: 1,
            shift: 2,
            shift_fill: Fill::Zero,
            flip: false,
            normalize: None,
            persistent: false,
            modulator: None,
            train_limit: None,
            generative: None,
        };
        match name {
            "conv-mnist" => Ok(mnist),
            "conv-fashion" => Ok(Self {
                epochs: 15,
                shift: 0,
                ..mnist
            }),
            "conv-reference" => Ok(Self {
                batch_size: 100,
                t_free: 200,
                t_nudge: 10,
                sweep: Sweep::Synchronous,
                lr: vec![0.05, 0.05, 0.01],
                shift: 0,
                ..mnist
            }),
            "conv-cifar10" => Ok(Self {
                arch:
                    "3x32x32,conv128k3p1+pool,conv256k3p1+pool,conv512k3p1+pool,conv512k3+pool,10"
                        .parse()
                        .expect("a valid spec"),
                batch_size: 128,
                t_free: 250,
                t_nudge: 30,
                sweep: Sweep::Synchronous,
                lr: vec![0.25, 0.15, 0.1, 0.08, 0.05],
                momentum: 0.9,
                // Their weight decay, 3e-4 added to the gradient under momentum 0.9, shrinks
                // each coupling in steady state by `lr 3e-4 / (1 - 0.9)` per step: decoupled
                // here, that is 3e-3.
                weight_decay: 3e-3,
                schedule: Schedule::Cosine {
                    final_fraction: 1e-3,
                },
                epochs: 120,
                // Laborieux et al.'s `--data-aug`: random crops of the image padded by 4
                // repeated border pixels, mirror images, and their standardised inputs.
                shift: 4,
                shift_fill: Fill::Edge,
                flip: true,
                normalize: Some(Normalization::cifar10()),
                ..mnist
            }),
            other => Err(ConfigError::UnknownPreset(other.to_string())),
        }
    }

    /// Gives the network the architecture `arch`. An image shift or mirror means nothing to a
    /// flat input, so with one a preset's shift and flip are dropped (asked for afterwards,
    /// they are still checked by [`ConvConfig::validate`]).
    pub fn set_arch(&mut self, arch: Architecture) {
        if !arch.layers()[0].is_image() {
            self.shift = 0;
            self.flip = false;
        }
        self.arch = arch;
    }

    /// Checks every field against the architecture.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let couplings = self.arch.num_layers() - 1;
        if self.lr.len() != couplings {
            return Err(ConfigError::LearningRates {
                count: self.lr.len(),
                layers: couplings,
            });
        }
        self.dynamics().validate(&self.lr)?;
        if let Some(gate) = &self.modulator {
            gate.validate().map_err(ConfigError::Gate)?;
        }
        range(
            "batch_size",
            self.batch_size > 0,
            "at least 1",
            self.batch_size as f64,
        )?;
        range("epochs", self.epochs > 0, "at least 1", self.epochs as f64)?;
        let (beta, alternating) = (self.beta, self.sweep == Sweep::Alternating);
        let rule =
            "below 1 with alternating sweeps (the -beta phase's minimiser needs 1 - beta > 0)";
        range("beta", !alternating || beta < 1.0, rule, beta as f64)?;
        range(
            "momentum",
            (0.0..1.0).contains(&self.momentum),
            "in [0, 1)",
            self.momentum as f64,
        )?;
        range(
            "momentum",
            self.optimizer.is_sgd() || self.momentum == 0.0,
            "0 with Adam (its first moment is its momentum)",
            self.momentum as f64,
        )?;
        // The decay is applied at the gated rate, `lr_k gain D`.
        let gain = self.modulator.map_or(1.0, |m| m.gain);
        let largest_rate = self.lr.iter().fold(0.0f32, |a, &b| a.max(b)) * gain;
        range(
            "weight_decay",
            self.weight_decay >= 0.0 && largest_rate * self.weight_decay < 1.0,
            "finite and >= 0, times every learning rate (and the gate's gain) below 1",
            self.weight_decay as f64,
        )?;
        range(
            "tol",
            self.tol >= 0.0 && self.tol.is_finite(),
            "finite and >= 0",
            self.tol as f64,
        )?;
        let input = self.arch.layers()[0];
        range(
            "shift",
            self.shift == 0
                || (input.is_image() && shift_fits(self.shift, input.height, input.width)),
            "smaller than the image's side (and images only)",
            self.shift as f64,
        )?;
        range(
            "flip",
            !self.flip || input.is_image(),
            "false for a flat input (a mirror image needs an image)",
            1.0,
        )?;
        if let Some(norm) = &self.normalize {
            range(
                "normalize mean",
                norm.mean.len() == input.channels && norm.mean.iter().all(|m| m.is_finite()),
                "one finite value per input channel",
                norm.mean.len() as f64,
            )?;
            range(
                "normalize std",
                norm.std.len() == input.channels
                    && norm.std.iter().all(|s| s.is_finite() && *s > 0.0),
                "one finite value > 0 per input channel",
                norm.std.len() as f64,
            )?;
        }
        if let Some(g) = &self.generative {
            g.validate()?;
            if self.arch.has_readout() {
                return Err(ConfigError::Described {
                    name: "generative training",
                    rule: "given an output layer of states to clamp the label on",
                    got: "a softmax readout".to_string(),
                });
            }
        }
        let weights: usize = (1..self.arch.num_layers())
            .map(|k| self.arch.weight_shape(k))
            .map(|(r, c)| r.saturating_mul(c))
            .fold(0, usize::saturating_add);
        range(
            "weights",
            weights <= MAX_COUPLINGS,
            "at most 2^30",
            weights as f64,
        )?;
        let states = self
            .arch
            .sizes()
            .iter()
            .sum::<usize>()
            .saturating_mul(EVAL_CHUNK);
        range(
            "states of a chunk",
            states <= MAX_STATES,
            "at most 2^30",
            states as f64,
        )?;
        Ok(())
    }

    /// The random transform of the training images ([`shift`](Self::shift),
    /// [`shift_fill`](Self::shift_fill), [`flip`](Self::flip)).
    pub fn augmentation(&self) -> Augmentation {
        Augmentation {
            shift: self.shift,
            fill: self.shift_fill,
            flip: self.flip,
        }
    }

    /// The images that input-layer states show, one per row: the standardisation undone
    /// (for a dream's input layer, [`crate::conv::dream`]).
    pub fn input_pixels(&self, mut input: Matrix) -> Matrix {
        if let Some(norm) = &self.normalize {
            norm.invert(input.as_mut_slice());
        }
        input
    }

    /// The interval of a free input layer: `[0, 1]`, or the standardised pixels'
    /// ([`Normalization::pixel_range`]).
    pub fn input_range(&self) -> StateRange {
        self.normalize
            .as_ref()
            .map_or_else(StateRange::default, Normalization::pixel_range)
    }

    /// The relaxation and nudge settings.
    pub fn dynamics(&self) -> Dynamics {
        Dynamics {
            t_free: self.t_free,
            t_nudge: self.t_nudge,
            eps: self.eps,
            beta: self.beta,
            nudging: self.nudging,
        }
    }

    /// The rates of `epoch` (0-based) under the schedule.
    pub fn learning_rates(&self, epoch: usize) -> Vec<f32> {
        let factor = self.schedule.factor(epoch, self.epochs);
        self.lr.iter().map(|lr| lr * factor).collect()
    }

    /// Checks that the data fit the network: image size and labels.
    pub fn check_data(&self, data: &Dataset) -> Result<(), ConfigError> {
        let inputs = self.arch.layers()[0].size();
        if data.pixels() != inputs {
            return Err(ConfigError::InputSize {
                inputs,
                pixels: data.pixels(),
            });
        }
        let outputs = self.arch.layers().last().expect("layers").size();
        if let Some(&label) = data.labels.iter().max()
            && usize::from(label) >= outputs
        {
            return Err(ConfigError::TooFewOutputs {
                outputs,
                label: usize::from(label),
            });
        }
        Ok(())
    }
}

/// One chunk's states and buffers.
#[derive(Clone, Debug)]
struct Worker {
    ws: Workspace,
    free: ConvState,
    plus: ConvState,
    minus: ConvState,
    target: Matrix,
    /// The prediction at the free fixed points: the output layer's states, or a softmax
    /// readout's class probabilities.
    prediction: Matrix,
    grad: Gradient,
    correct: usize,
    /// Relaxation steps taken in the last mini-batch (every phase).
    steps: usize,
    /// With a surprise gate: each example's free-phase output cost.
    surprise: Vec<f32>,
    /// Whether each example learns from this mini-batch (all of them without a gate).
    learns: Vec<bool>,
    /// The generative phase pair, made on the first mini-batch that dreams.
    generative: Option<GenerativePair>,
}

impl Worker {
    fn new(arch: &Architecture, n: usize) -> Self {
        let state = ConvState::zeros(arch, n);
        Self {
            ws: Workspace::new(arch, n),
            plus: state.clone(),
            minus: state.clone(),
            free: state,
            target: Matrix::zeros(n, arch.layers().last().expect("layers").size()),
            prediction: Matrix::zeros(n, arch.layers().last().expect("layers").size()),
            grad: Gradient::zeros(arch),
            correct: 0,
            steps: 0,
            surprise: vec![0.0; n],
            learns: vec![true; n],
            generative: None,
        }
    }

    /// Loads the inputs and one-hot targets of `idx`, zeroes the free layers.
    fn load(&mut self, data: &Dataset, idx: &[usize], cfg: &ConvConfig) {
        self.load_inputs(data, idx, cfg);
        self.free.reset_free();
    }

    /// Loads the inputs (standardised by `cfg`'s [`ConvConfig::normalize`]) and one-hot
    /// targets of `idx`; the free layers are left as they are.
    fn load_inputs(&mut self, data: &Dataset, idx: &[usize], cfg: &ConvConfig) {
        self.target.fill(0.0);
        for (r, &i) in idx.iter().enumerate() {
            let input = self.free.layers[0].row_mut(r);
            input.copy_from_slice(data.image(i));
            if let Some(norm) = &cfg.normalize {
                norm.apply(input);
            }
            self.target.set(r, usize::from(data.labels[i]), 1.0);
        }
        self.ws.invalidate();
    }

    /// Starts the free layers of the loaded examples from their particles (rows `owners`).
    fn start_from(&mut self, particles: &[Matrix], owners: &[usize]) {
        for (layer, saved) in self.free.layers[1..].iter_mut().zip(particles) {
            for (r, &i) in owners.iter().enumerate() {
                layer.row_mut(r).copy_from_slice(saved.row(i));
            }
        }
    }

    /// Stores the free fixed points as the particles of `owners`.
    fn keep_free_state(&self, particles: &mut [Matrix], owners: &[usize]) {
        for (layer, saved) in self.free.layers[1..].iter().zip(particles) {
            for (r, &i) in owners.iter().enumerate() {
                saved.row_mut(i).copy_from_slice(layer.row(r));
            }
        }
    }

    fn free_phase(&mut self, net: &ConvNet, cfg: &ConvConfig) {
        let phase = ConvPhase {
            steps: cfg.t_free,
            eps: cfg.eps,
            sweep: cfg.sweep,
            beta: 0.0,
            target: None,
            pull: Pull::Output,
            tol: cfg.tol,
        };
        self.steps = self.ws.relax(net, &mut self.free, &phase);
        self.ws.prediction(net, &self.free, &mut self.prediction);
        let out = &self.prediction;
        self.correct = (0..out.rows())
            .filter(|&r| out.argmax_row(r) == self.target.argmax_row(r))
            .count();
    }

    /// The nudged phase(s) from the free fixed point, and `grad = dPhi(s^+) - dPhi(s^-)`.
    fn nudge(&mut self, net: &ConvNet, cfg: &ConvConfig, beta: f32) {
        let nudged = |ws: &mut Workspace, state: &mut ConvState, free: &ConvState, b: f32| {
            state.copy_from(free);
            let phase = ConvPhase {
                steps: cfg.t_nudge,
                eps: cfg.eps,
                sweep: cfg.sweep,
                beta: b,
                target: Some(&self.target),
                pull: Pull::Output,
                tol: cfg.tol,
            };
            ws.relax(net, state, &phase)
        };
        self.steps += nudged(&mut self.ws, &mut self.plus, &self.free, beta);
        let negative = match cfg.nudging {
            Nudging::Symmetric => {
                self.steps += nudged(&mut self.ws, &mut self.minus, &self.free, -beta);
                &self.minus
            }
            Nudging::Positive | Nudging::RandomSign => &self.free,
        };
        self.grad.fill_zero();
        self.ws
            .accumulate_gradient(net, &self.plus, 1.0, &mut self.grad);
        self.ws
            .accumulate_gradient(net, negative, -1.0, &mut self.grad);
    }

    /// Judges each example by its cost at the free fixed point (kept in `surprise`): `1/2
    /// ||y^0 - t||^2`, with a softmax readout the cross-entropy `-ln p_y`. It learns when the
    /// cost exceeds `threshold` (every example learns without a gate).
    fn judge(&mut self, threshold: Option<f32>) {
        let Some(theta) = threshold else {
            self.learns.fill(true);
            return;
        };
        let out = &self.prediction;
        for (r, (s, l)) in self.surprise.iter_mut().zip(&mut self.learns).enumerate() {
            *s = self.ws.cost(out.row(r), self.target.row(r));
            *l = Modulator::learns(*s, theta);
        }
    }

    /// The generative phase pair of the loaded examples (`at..`: their rows of the
    /// persistent chains, when there are chains), after the free phase.
    fn dream_phases(
        &mut self,
        net: &ConvNet,
        cfg: &ConvConfig,
        g: &Generative,
        chains: Option<&ConvState>,
        at: usize,
    ) {
        let n = self.ws.samples();
        let pair = self
            .generative
            .get_or_insert_with(|| GenerativePair::new(&cfg.arch, n, g, cfg.input_range()));
        let start = chain_start(g, chains, at, &self.free);
        let data = (&self.free.layers[0], &self.target);
        self.steps += pair.phases(net, data, start, g, (cfg.eps, cfg.sweep));
    }

    /// Takes the free fixed points and targets of `rows` (`(chunk, row)` of `chunks`) as its
    /// own, one per row, to relax their nudged phases.
    fn gather(&mut self, chunks: &[Worker], rows: &[(usize, usize)]) {
        for (i, &(c, r)) in rows.iter().enumerate() {
            let from = &chunks[c];
            for (layer, source) in self.free.layers.iter_mut().zip(&from.free.layers) {
                layer.row_mut(i).copy_from_slice(source.row(r));
            }
            self.target.row_mut(i).copy_from_slice(from.target.row(r));
        }
        self.steps = 0;
        self.ws.invalidate();
    }
}

/// What an epoch measured.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConvEpoch {
    /// 0-based epoch.
    pub epoch: usize,
    /// Training error (%) at the free fixed points seen during the epoch.
    pub train_error: f64,
    /// Wall-clock seconds of the epoch's training.
    pub seconds: f64,
    /// Mean relaxation steps per training example, all phases together (`t_free + t_nudge`,
    /// or twice `t_nudge` under symmetric nudging, unless `tol` ends phases early or a gate
    /// skips them; with generative training its pair's as well).
    pub mean_steps: f64,
    /// Share of the examples that passed the surprise gate (1 without a gate); the others
    /// relaxed their free phase only.
    pub learned_share: f64,
}

/// The network, its optimiser state and the chunks' buffers.
#[derive(Clone, Debug)]
pub struct ConvTrainer {
    cfg: ConvConfig,
    net: ConvNet,
    velocity: Option<Gradient>,
    /// Adam's moments (none with SGD).
    adam: Option<Adam>,
    total: Gradient,
    epoch: usize,
    /// Buffers by chunk size (the last mini-batch of an epoch may be smaller).
    workers: Vec<Worker>,
    /// With persistent particles: every training example's free state of layers `1..=L`
    /// (`particles[k - 1]`, one row per example), made on the first epoch.
    particles: Option<Vec<Matrix>>,
    /// Buffers for the nudged phases of the examples that pass a surprise gate, gathered
    /// from their chunks into chunks of their own.
    learners: Vec<Worker>,
    /// The surprise gate's threshold, carried from mini-batch to mini-batch and epoch to epoch
    /// (none without a gate).
    threshold: Option<f32>,
    /// Generative training's state, made on the first mini-batch that dreams (none before,
    /// or without generative training).
    dreaming: Option<Box<Dreaming>>,
}

/// The state generative training carries between mini-batches.
#[derive(Clone, Debug)]
struct Dreaming {
    /// With persistent chains: where each row of a mini-batch's generative free phase ended
    /// (`batch_size` rows per layer).
    chains: Option<ConvState>,
    /// The generative phases' `dPhi(s^g) - dPhi(s^0)` summed over a mini-batch.
    total: Gradient,
}

impl Dreaming {
    /// Fresh state for `cfg`: chains at zero when its generative training keeps persistent
    /// ones.
    fn new(cfg: &ConvConfig) -> Box<Self> {
        let persistent = cfg
            .generative
            .is_some_and(|g| g.start == GenerativeStart::Persistent);
        Box::new(Self {
            chains: persistent.then(|| ConvState::zeros(&cfg.arch, cfg.batch_size)),
            total: Gradient::zeros(&cfg.arch),
        })
    }
}

impl ConvTrainer {
    /// A fresh network from the config's seed.
    pub fn new(cfg: ConvConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let net = ConvNet::init(cfg.arch.clone(), &mut rng);
        Ok(Self::with_network(cfg, net, 0))
    }

    /// Continues training `net` from `epoch` (a loaded checkpoint).
    pub fn with_network(cfg: ConvConfig, net: ConvNet, epoch: usize) -> Self {
        let total = Gradient::zeros(&cfg.arch);
        let threshold = cfg.modulator.map(|m| m.initial_threshold());
        Self {
            velocity: (cfg.momentum > 0.0).then(|| total.clone()),
            adam: (cfg.optimizer == Optimizer::Adam).then(|| Adam::new(&cfg.arch)),
            total,
            cfg,
            net,
            epoch,
            workers: Vec::new(),
            particles: None,
            learners: Vec::new(),
            threshold,
            dreaming: None,
        }
    }

    /// Continues with the momentum's saved velocity, shaped like the network (as the checkpoint
    /// loader checks it); `None` keeps it at zero. Ignored without momentum.
    pub fn with_velocity(mut self, velocity: Option<Gradient>) -> Self {
        if let (Some(v), Some(saved)) = (&mut self.velocity, velocity) {
            *v = saved;
        }
        self
    }

    /// Continues with Adam's saved moments, shaped like the network (as the checkpoint loader
    /// checks it); `None` starts them at zero. Ignored with SGD.
    pub fn with_adam(mut self, adam: Option<Adam>) -> Self {
        if let (Some(a), Some(saved)) = (&mut self.adam, adam) {
            *a = saved;
        }
        self
    }

    /// Continues with saved persistent particles (`particles[k - 1]`: layer `k`'s state of every
    /// training example, as wide as the layer: the checkpoint loader checks it); ignored
    /// without persistence.
    pub fn with_particles(mut self, particles: Option<Vec<Matrix>>) -> Self {
        self.particles = particles.filter(|_| self.cfg.persistent);
        self
    }

    /// Continues with a saved gate threshold (`None` keeps the gate's initial one); ignored
    /// without a gate.
    pub fn with_threshold(mut self, threshold: Option<f32>) -> Self {
        if let (Some(t), Some(saved)) = (&mut self.threshold, threshold) {
            *t = saved;
        }
        self
    }

    /// Continues generative training from saved persistent chains (`chains[k]`: layer `k`,
    /// `batch_size` rows, as wide as the layer: the checkpoint loader checks it); ignored
    /// unless the run dreams from persistent chains.
    pub fn with_chains(mut self, chains: Option<Vec<Matrix>>) -> Self {
        let mut dreaming = Dreaming::new(&self.cfg);
        let fits = |c: &Vec<Matrix>| c.iter().all(|l| l.rows() == self.cfg.batch_size);
        if let (Some(kept), Some(saved)) = (&mut dreaming.chains, chains.filter(fits)) {
            kept.layers = saved;
            self.dreaming = Some(dreaming);
        }
        self
    }

    /// The persistent chains of generative training (none without them, or before the first
    /// mini-batch that dreams).
    pub fn chains(&self) -> Option<&[Matrix]> {
        let chains = self.dreaming.as_ref()?.chains.as_ref()?;
        Some(&chains.layers[..])
    }

    /// The surprise gate's threshold now (none without a gate).
    pub fn threshold(&self) -> Option<f32> {
        self.threshold
    }

    /// The persistent particles (none without persistence, or before the first epoch).
    pub fn particles(&self) -> Option<&[Matrix]> {
        self.particles.as_deref()
    }

    /// Trains up to `epochs` in all (a cosine schedule then decays over the new count). Fails
    /// below the epochs already completed.
    pub fn set_epochs(&mut self, epochs: usize) -> Result<(), ConfigError> {
        self.cfg.epochs = crate::config::more_epochs(epochs, self.epoch)?;
        Ok(())
    }

    /// The momentum's velocity (none without momentum).
    pub fn velocity(&self) -> Option<&Gradient> {
        self.velocity.as_ref()
    }

    /// Adam's moments (none with SGD).
    pub fn adam(&self) -> Option<&Adam> {
        self.adam.as_ref()
    }

    pub fn config(&self) -> &ConvConfig {
        &self.cfg
    }

    pub fn network(&self) -> &ConvNet {
        &self.net
    }

    /// Epochs completed.
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// Trains one epoch on `data` (already checked with [`ConvConfig::check_data`]); calls
    /// `progress(examples done, right so far)` after every mini-batch, and stops (returning
    /// `None`, the epoch not counted) when it returns false.
    pub fn run_epoch(
        &mut self,
        data: &Dataset,
        mut progress: impl FnMut(usize, usize) -> bool,
    ) -> Option<ConvEpoch> {
        let start = std::time::Instant::now();
        let cfg = self.cfg.clone();
        let seed = cfg.seed ^ (self.epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut order: Vec<usize> = (0..data.len()).collect();
        order.shuffle(&mut rng);
        let lrs = cfg.learning_rates(self.epoch);
        let aug = cfg.augmentation();
        if cfg.persistent && self.particles.is_none() {
            let sizes = cfg.arch.sizes();
            let zeros = sizes[1..].iter().map(|&s| Matrix::zeros(data.len(), s));
            self.particles = Some(zeros.collect());
        }
        let (mut correct, mut steps, mut learned) = (0, 0, 0);
        for (b, batch) in order.chunks(cfg.batch_size).enumerate() {
            let beta = match cfg.nudging {
                Nudging::RandomSign if rng.random_bool(0.5) => -cfg.beta,
                _ => cfg.beta,
            };
            let (right, taken, learners) = if aug.is_identity() {
                self.train_batch(data, batch, batch, beta, &lrs)
            } else {
                let moved = augmented(data, batch, &aug, &mut rng);
                let all: Vec<usize> = (0..batch.len()).collect();
                self.train_batch(&moved, &all, batch, beta, &lrs)
            };
            correct += right;
            steps += taken;
            learned += learners;
            if !progress(b * cfg.batch_size + batch.len(), correct) {
                return None;
            }
        }
        self.epoch += 1;
        Some(ConvEpoch {
            epoch: self.epoch - 1,
            train_error: 100.0 * (1.0 - correct as f64 / data.len().max(1) as f64),
            seconds: start.elapsed().as_secs_f64(),
            mean_steps: steps as f64 / data.len().max(1) as f64,
            learned_share: learned as f64 / data.len().max(1) as f64,
        })
    }

    /// One mini-batch: every chunk's free phase in parallel, the nudged phases of the examples
    /// that learn (with a gate that some examples do not pass, gathered into chunks of their
    /// own, so that the others cost only their free phase), then the update. `batch` indexes
    /// `data`; `owners` are the training examples they are (their persistent particles).
    /// Returns how many free outputs were right, the relaxation steps of all its samples and
    /// how many of them learned.
    fn train_batch(
        &mut self,
        data: &Dataset,
        batch: &[usize],
        owners: &[usize],
        beta: f32,
        lrs: &[f32],
    ) -> (usize, usize, usize) {
        let chunks = chunk_sizes(batch.len());
        self.ensure_workers(&chunks);
        let dreaming = self.cfg.generative.filter(|g| self.epoch >= g.from_epoch);
        if dreaming.is_some() && self.dreaming.is_none() {
            self.dreaming = Some(Dreaming::new(&self.cfg));
        }
        let (net, cfg, particles) = (&self.net, &self.cfg, self.particles.as_deref());
        let chains = self.dreaming.as_ref().and_then(|d| d.chains.as_ref());
        let threshold = self.threshold;
        let starts: Vec<usize> = chunks
            .iter()
            .scan(0, |at, &n| {
                *at += n;
                Some(*at - n)
            })
            .collect();
        self.workers[..chunks.len()]
            .par_iter_mut()
            .zip(starts.par_iter().zip(chunks.par_iter()))
            .for_each(|(w, (&at, &n))| {
                match particles {
                    Some(saved) => {
                        w.load_inputs(data, &batch[at..at + n], cfg);
                        w.start_from(saved, &owners[at..at + n]);
                    }
                    None => w.load(data, &batch[at..at + n], cfg),
                }
                w.free_phase(net, cfg);
                w.judge(threshold);
                if let Some(g) = &dreaming {
                    w.dream_phases(net, cfg, g, chains, at);
                }
            });
        if let Some(saved) = &mut self.particles {
            for (w, &at) in self.workers.iter().zip(&starts) {
                w.keep_free_state(saved, &owners[at..at + w.ws.samples()]);
            }
        }
        let learners = self.nudge_learners(chunks.len(), beta);
        self.apply_update(lrs, beta, batch.len(), learners);
        if let Some(g) = dreaming {
            self.apply_dream_update(&g, &starts, lrs, batch.len());
        }
        let workers = &self.workers[..chunks.len()];
        if let (Some(m), Some(theta)) = (self.cfg.modulator, self.threshold) {
            let surprises = workers.iter().flat_map(|w| &w.surprise);
            self.threshold = Some(m.adapt(theta, surprises));
        }
        let correct = workers.iter().map(|w| w.correct).sum();
        let mut steps: usize = workers.iter().map(|w| w.steps * w.ws.samples()).sum();
        if learners < batch.len() {
            let nudged = &self.learners[..chunk_count(learners)];
            steps += nudged
                .iter()
                .map(|w| w.steps * w.ws.samples())
                .sum::<usize>();
        }
        (correct, steps, learners)
    }

    /// `theta += lr_k / (beta_eff B) total` (times the gate's gain), through the momentum's
    /// velocity when there is one; or Adam's step along `total / (beta_eff B)`, unless no
    /// example learned (a closed gate leaves Adam's moments as they were).
    fn apply_update(&mut self, lrs: &[f32], beta: f32, batch: usize, learners: usize) {
        let gain = self.cfg.modulator.map_or(1.0, |m| m.gain);
        if self.cfg.weight_decay > 0.0 && learners > 0 {
            decay_weights(&mut self.net, lrs, self.cfg.weight_decay * gain);
        }
        if let Some(adam) = &mut self.adam {
            if learners > 0 {
                let ones = vec![1.0; lrs.len()];
                let scales = batch_scales(&ones, batch, self.cfg.nudging, beta);
                let rates: Vec<f32> = lrs.iter().map(|lr| lr * gain).collect();
                adam.step(&mut self.net, &self.total, &scales, &rates);
            }
            return;
        }
        let mut scales = batch_scales(lrs, batch, self.cfg.nudging, beta);
        scales.iter_mut().for_each(|c| *c *= gain);
        match &mut self.velocity {
            Some(v) => {
                scale_in_place(v, self.cfg.momentum);
                v.add(&self.total);
                self.net.add_scaled(v, &scales);
            }
            None => self.net.add_scaled(&self.total, &scales),
        }
    }

    /// Keeps the chunks' generative free states as the chains (rows `starts[c]..` for chunk
    /// `c`) and takes the generative step `lr_scale lr_k / (beta_g B)` times their summed
    /// `dPhi(s^g) - dPhi(s^0)`: plain steps, outside the momentum and the gate, as for dense
    /// networks.
    fn apply_dream_update(&mut self, g: &Generative, starts: &[usize], lrs: &[f32], batch: usize) {
        let dreaming = self.dreaming.as_mut().expect("made before the phases");
        dreaming.total.fill_zero();
        for (w, &at) in self.workers.iter().zip(starts) {
            let pair = w
                .generative
                .as_ref()
                .expect("a dreaming chunk has its pair");
            if let Some(chains) = &mut dreaming.chains {
                pair.keep_chain(chains, at);
            }
            dreaming.total.add(&pair.grad);
        }
        self.net.add_scaled(&dreaming.total, &g.scales(lrs, batch));
    }

    /// The nudged phases and the summed gradient (`total`) of the examples that learn in the
    /// first `chunks` workers: in their own chunks when all of them learn (as without a
    /// gate), else gathered into the `learners` buffers. Returns how many learn.
    fn nudge_learners(&mut self, chunks: usize, beta: f32) -> usize {
        let (net, cfg) = (&self.net, &self.cfg);
        let workers = &mut self.workers[..chunks];
        let rows: Vec<(usize, usize)> = workers
            .iter()
            .enumerate()
            .flat_map(|(c, w)| {
                let learns = w.learns.iter().enumerate().filter(|(_, l)| **l);
                learns.map(move |(r, _)| (c, r))
            })
            .collect();
        let all: usize = workers.iter().map(|w| w.ws.samples()).sum();
        self.total.fill_zero();
        let nudged = match rows.len() {
            0 => return 0,
            n if n == all => {
                workers.par_iter_mut().for_each(|w| w.nudge(net, cfg, beta));
                &self.workers[..chunks]
            }
            n => {
                let sizes = chunk_sizes(n);
                ensure_sized(&mut self.learners, &sizes, &cfg.arch);
                let mut at = 0;
                for (w, &size) in self.learners.iter_mut().zip(&sizes) {
                    w.gather(&self.workers[..chunks], &rows[at..at + size]);
                    at += size;
                }
                let learners = &mut self.learners[..sizes.len()];
                learners
                    .par_iter_mut()
                    .for_each(|w| w.nudge(net, cfg, beta));
                &self.learners[..sizes.len()]
            }
        };
        for w in nudged {
            self.total.add(&w.grad);
        }
        rows.len()
    }

    /// Makes sure there is a worker of the right size for each chunk.
    fn ensure_workers(&mut self, chunks: &[usize]) {
        ensure_sized(&mut self.workers, chunks, &self.cfg.arch);
    }
}

/// Makes `workers[i]` a worker of `sizes[i]` samples, for every `i` (one of another size is
/// replaced).
fn ensure_sized(workers: &mut Vec<Worker>, sizes: &[usize], arch: &Architecture) {
    for (i, &n) in sizes.iter().enumerate() {
        match workers.get(i) {
            Some(w) if w.ws.samples() == n => {}
            Some(_) => workers[i] = Worker::new(arch, n),
            None => workers.push(Worker::new(arch, n)),
        }
    }
}

/// `W_k <- (1 - lr_k decay) W_k` for every coupling (not the biases).
fn decay_weights(net: &mut ConvNet, lrs: &[f32], decay: f32) {
    for (w, lr) in net.weights_mut().iter_mut().zip(lrs) {
        let keep = 1.0 - lr * decay;
        w.as_mut_slice().iter_mut().for_each(|x| *x *= keep);
    }
}

fn scale_in_place(g: &mut Gradient, c: f32) {
    g.weights
        .iter_mut()
        .for_each(|w| w.as_mut_slice().iter_mut().for_each(|x| *x *= c));
    g.biases
        .iter_mut()
        .for_each(|b| b.iter_mut().for_each(|x| *x *= c));
}

/// Sizes of a mini-batch's chunks: an even number of them (so that two cores share the work
/// evenly, whatever the batch), at most [`CHUNK`] samples each, as even as possible.
pub fn chunk_sizes(batch: usize) -> Vec<usize> {
    let count = chunk_count(batch);
    (0..count)
        .map(|i| batch / count + usize::from(i < batch % count))
        .collect()
}

/// How many chunks [`chunk_sizes`] splits `batch` samples into.
fn chunk_count(batch: usize) -> usize {
    batch.div_ceil(CHUNK).next_multiple_of(2).min(batch.max(1))
}

/// Relaxes every example of `data` as training does, all at once: the free phase from zero
/// states, then, when `beta` is not 0, the phase nudged toward the one-hot label with strength
/// `beta` from the free fixed point. Each layer's state (one row per example, channels-last;
/// a softmax readout's layer holds its force `beta (t - p)`, zero in the free phase) and the
/// energy there.
pub fn settle(net: &ConvNet, cfg: &ConvConfig, data: &Dataset, beta: f32) -> Settled {
    let idx: Vec<usize> = (0..data.len()).collect();
    let mut slot = None;
    let w = free_chunk(&mut slot, net, cfg, data, &idx);
    if beta != 0.0 {
        w.plus.copy_from(&w.free);
        let phase = ConvPhase {
            steps: cfg.t_nudge,
            eps: cfg.eps,
            sweep: cfg.sweep,
            beta,
            target: Some(&w.target),
            pull: Pull::Output,
            tol: cfg.tol,
        };
        w.ws.relax(net, &mut w.plus, &phase);
    }
    let state = if beta == 0.0 { &w.free } else { &w.plus };
    let mut energy = vec![0.0; idx.len()];
    w.ws.energy(net, state, &mut energy);
    Settled {
        layers: state.layers.clone(),
        energy,
    }
}

/// The free phase of the examples `idx` from zero states, in the worker of `slot` (made, or
/// remade for the chunk's size: a worker reuses its buffers from chunk to chunk).
fn free_chunk<'a>(
    slot: &'a mut Option<Worker>,
    net: &ConvNet,
    cfg: &ConvConfig,
    data: &Dataset,
    idx: &[usize],
) -> &'a mut Worker {
    if slot.as_ref().is_none_or(|w| w.ws.samples() != idx.len()) {
        *slot = Some(Worker::new(&cfg.arch, idx.len()));
    }
    let w = slot.as_mut().expect("filled above");
    w.load(data, idx, cfg);
    w.free_phase(net, cfg);
    w
}

/// The prediction (the output layer, or a softmax readout's probabilities) at the free fixed
/// point of every example (from zero states, as
/// [`evaluate`] sees it), one row each.
pub fn free_outputs(net: &ConvNet, cfg: &ConvConfig, data: &Dataset) -> Matrix {
    let indices: Vec<usize> = (0..data.len()).collect();
    let rows: Vec<Vec<f32>> = indices
        .par_chunks(EVAL_CHUNK)
        .map_init(
            || None::<Worker>,
            |slot, idx| {
                let w = free_chunk(slot, net, cfg, data, idx);
                w.prediction.as_slice().to_vec()
            },
        )
        .collect();
    let classes = cfg.arch.sizes().last().copied().expect("layers");
    Matrix::from_vec(data.len(), classes, rows.concat()).expect("one row per example")
}

/// Test error (%) and mean free energy of `net`: the free phase alone from zero states, in
/// parallel chunks.
pub fn evaluate(net: &ConvNet, cfg: &ConvConfig, data: &Dataset) -> Evaluation {
    let indices: Vec<usize> = (0..data.len()).collect();
    let (correct, energy) = indices
        .par_chunks(EVAL_CHUNK)
        .map_init(
            || None::<Worker>,
            |slot, idx| {
                let w = free_chunk(slot, net, cfg, data, idx);
                let mut energy = vec![0.0; idx.len()];
                w.ws.energy(net, &w.free, &mut energy);
                (w.correct, energy.iter().map(|&e| f64::from(e)).sum::<f64>())
            },
        )
        .reduce(|| (0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    let n = data.len().max(1) as f64;
    Evaluation {
        error: 100.0 * (1.0 - correct as f64 / n),
        mean_energy: energy / n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_is_validated_against_the_image() {
        let mut cfg = ConvConfig::preset("conv-mnist").unwrap();
        cfg.shift = 2;
        assert!(cfg.validate().is_ok());
        cfg.shift = 28;
        assert!(cfg.validate().unwrap_err().to_string().contains("shift"));
    }

    #[test]
    fn a_flat_architecture_drops_the_presets_shift_and_an_image_keeps_it() {
        let mut cfg = ConvConfig::preset("conv-mnist").unwrap();
        assert_eq!(cfg.shift, 2);
        cfg.set_arch("1x28x28,conv8k5+pool,10".parse().unwrap());
        assert_eq!(cfg.shift, 2);
        cfg.set_arch("784,16,10:-1..2".parse().unwrap());
        assert_eq!(cfg.shift, 0);
        cfg.lr = vec![0.1, 0.05];
        assert!(cfg.validate().is_ok());
        cfg.shift = 1;
        assert!(cfg.validate().unwrap_err().to_string().contains("shift"));
    }

    /// `n` random two-channel 6x6 images with labels in 0..3.
    fn two_channel_images(n: usize, seed: u64) -> Dataset {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let images: Vec<f32> = (0..n * 72).map(|_| rng.random::<f32>()).collect();
        Dataset {
            images: images.into(),
            labels: (0..n).map(|i| (i % 3) as u8).collect(),
            rows: 6,
            cols: 6,
            channels: 2,
            targets: Vec::new(),
        }
    }

    fn small_config() -> ConvConfig {
        let mut cfg = ConvConfig::preset("conv-mnist").unwrap();
        cfg.set_arch("2x6x6,conv3k3p1+pool,3".parse().unwrap());
        cfg.lr = vec![0.1, 0.05];
        cfg.shift = 0;
        cfg.batch_size = 5;
        cfg.epochs = 1;
        cfg
    }

    /// `data` standardised by hand, as the network should see it under `norm`.
    fn standardised(data: &Dataset, norm: &Normalization) -> Dataset {
        let images: Vec<f32> = data
            .images
            .chunks(2)
            .flat_map(|px| {
                [
                    (px[0] - norm.mean[0]) / norm.std[0],
                    (px[1] - norm.mean[1]) / norm.std[1],
                ]
            })
            .collect();
        Dataset {
            images: images.into(),
            labels: data.labels.clone(),
            targets: Vec::new(),
            ..data.empty_like()
        }
    }

    #[test]
    fn a_normalised_network_trains_and_predicts_on_the_standardised_images() {
        let (data, norm) = (
            two_channel_images(20, 1),
            "0.25,0.5/0.5,2".parse::<Normalization>().unwrap(),
        );
        let mut with = small_config();
        with.normalize = Some(norm.clone());
        assert!(with.validate().is_ok());
        let by_hand = standardised(&data, &norm);
        let mut a = ConvTrainer::new(with.clone()).unwrap();
        let mut b = ConvTrainer::new(small_config()).unwrap();
        a.run_epoch(&data, |_, _| true).unwrap();
        b.run_epoch(&by_hand, |_, _| true).unwrap();
        assert_eq!(
            a.network().weights(),
            b.network().weights(),
            "the same updates"
        );
        let plain = small_config();
        let seen = free_outputs(a.network(), &with, &data);
        assert_eq!(
            seen,
            free_outputs(a.network(), &plain, &by_hand),
            "the same predictions"
        );
        assert_ne!(
            seen,
            free_outputs(a.network(), &plain, &data),
            "standardising matters"
        );
        let (ea, eb) = (
            evaluate(a.network(), &with, &data),
            evaluate(a.network(), &plain, &by_hand),
        );
        assert_eq!((ea.error, ea.mean_energy), (eb.error, eb.mean_energy));
    }

    #[test]
    fn inverting_a_standardisation_gives_the_pixels_back() {
        let norm = Normalization::cifar10();
        let pixels: Vec<f32> = (0..30).map(|i| i as f32 / 29.0).collect();
        let mut x = pixels.clone();
        norm.apply(&mut x);
        assert!((x[0] - (0.0 - 0.4914) / 0.6069).abs() < 1e-6, "{}", x[0]);
        norm.invert(&mut x);
        for (a, b) in x.iter().zip(&pixels) {
            assert!((a - b).abs() < 1e-6, "{a} against {b}");
        }
    }

    #[test]
    fn a_normalisation_must_fit_the_input_channels() {
        let mut cfg = small_config();
        for bad in ["0.5/0.25", "0.5,0.5/0.25,0", "0.5,0.5/0.25,inf"] {
            cfg.normalize = Some(bad.parse().unwrap());
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains("normalize"), "{bad}: {err}");
        }
        for bad in ["0.5", "0.5,x/1,1", "0.5,0.5/1"] {
            assert!(bad.parse::<Normalization>().is_err(), "{bad}");
        }
        cfg.normalize = None;
        cfg.flip = true;
        assert!(cfg.validate().is_ok());
        cfg.set_arch("72,8,3".parse().unwrap());
        assert!(!cfg.flip, "a flat input drops the preset's flip");
        cfg.flip = true;
        assert!(cfg.validate().unwrap_err().to_string().contains("flip"));
    }

    #[test]
    fn the_cifar10_preset_augments_and_standardises_as_laborieux_et_al() {
        let cfg = ConvConfig::preset("conv-cifar10").unwrap();
        let aug = cfg.augmentation();
        assert_eq!((aug.shift, aug.fill, aug.flip), (4, Fill::Edge, true));
        assert_eq!(cfg.normalize, Some(Normalization::cifar10()));
        assert_eq!(cfg.weight_decay, 3e-3);
        assert!(cfg.validate().is_ok());
        let mnist = ConvConfig::preset("conv-mnist").unwrap();
        assert_eq!(
            (mnist.shift_fill, mnist.flip, mnist.normalize),
            (Fill::Zero, false, None)
        );
    }
}
