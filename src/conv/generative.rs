//! Generative training of networks with convolutions, so that their dreams draw what a label
//! means (the same rule as the dense networks' [`Generative`]), and the dreams themselves.
//!
//! Beside the discriminative phases, each mini-batch relaxes a second pair of phases with the
//! one-hot label clamped on the output and the input free, its self term stiffened to
//! `kappa/2 ||s_0||^2`:
//!
//! ```text
//! free:   s^0 = argmin E             (label clamped; from the chain, the image's state or zero)
//! nudged: s^g = argmin E + beta_g C_g,   C_g = 1/2 ||s_0 - x||^2   (x the real image)
//! update: theta += lr_scale lr_k / (beta_g B) (dPhi/dtheta(s^g) - dPhi/dtheta(s^0))
//! ```
//!
//! As `beta_g -> 0` the update is `-lr_scale lr_k dC_g/dtheta` at the free fixed point
//! (`tests/conv.rs` checks it against finite differences): the top-down couplings learn to
//! relax the input toward the images of the clamped label, every coupling and bias (the
//! input's `b_0` included) or only `W_1` and `b_0`. With persistent chains
//! ([`GenerativeStart::Persistent`]) the free phase starts where the previous mini-batch's
//! ended, so the update also raises the energy of the patterns the free dynamics fall into.

use super::architecture::{Architecture, StateRange};
use super::net::{ConvNet, Gradient};
use super::relax::{ConvPhase, ConvState, Pull, Sweep, Workspace};
use super::train::ConvConfig;
use crate::config::ConfigError;
use crate::dream_common::{
    DREAM_SILENCED, DREAM_STEPS, apply_masks, one_hot, silence_masks, validate_dream,
};
use crate::learning_rule::{Generative, GenerativeStart};
use crate::tensor::Matrix;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Where a chunk's generative free phase starts.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ChainStart<'a> {
    /// Rows `at..at + n` of the persistent chains.
    Chain(&'a ConvState, usize),
    /// The discriminative free state of the real images.
    Image(&'a ConvState),
    /// Every free layer at zero.
    Zeros,
}

/// One chunk's generative phase pair: its buffers and its `dPhi(s^g) - dPhi(s^0)`.
#[derive(Clone, Debug)]
pub(crate) struct GenerativePair {
    ws: Workspace,
    free: ConvState,
    nudged: ConvState,
    pub(crate) grad: Gradient,
}

impl GenerativePair {
    /// Buffers for `n` samples of `arch`: the output clamped, the input free in `input_range`
    /// with `g`'s stiffness.
    pub(crate) fn new(
        arch: &Architecture,
        n: usize,
        g: &Generative,
        input_range: StateRange,
    ) -> Self {
        let mut ws = Workspace::new(arch, n);
        let last = arch.num_layers() - 1;
        ws.set_clamped(&(0..=last).map(|k| k == last).collect::<Vec<_>>());
        ws.set_input_stiffness(g.input_stiffness);
        ws.set_input_range(input_range);
        let state = ConvState::zeros(arch, n);
        Self {
            ws,
            nudged: state.clone(),
            free: state,
            grad: Gradient::zeros(arch),
        }
    }

    /// Relaxes both phases for the real `images` (their nudge target) with the one-hot
    /// `labels` clamped, from `start`, and forms `grad`. Returns the steps taken.
    pub(crate) fn phases(
        &mut self,
        net: &ConvNet,
        (images, labels): (&Matrix, &Matrix),
        start: ChainStart<'_>,
        g: &Generative,
        (eps, sweep): (f32, Sweep),
    ) -> usize {
        match start {
            ChainStart::Chain(chains, at) => {
                for (layer, chain) in self.free.layers.iter_mut().zip(&chains.layers) {
                    let rows = chain_rows(chain, at, layer.rows());
                    layer
                        .as_mut_slice()
                        .copy_from_slice(&chain.as_slice()[rows]);
                }
            }
            ChainStart::Image(state) => self.free.copy_from(state),
            ChainStart::Zeros => self.free.layers.iter_mut().for_each(|l| l.fill(0.0)),
        }
        let last = self.free.layers.len() - 1;
        self.free.layers[last].copy_from(labels);
        self.ws.invalidate();
        let phase = |steps, beta| ConvPhase {
            steps,
            eps,
            sweep,
            beta,
            target: Some(images),
            pull: Pull::Input,
            tol: 0.0,
        };
        let mut steps = self.ws.relax(net, &mut self.free, &phase(g.t_free, 0.0));
        self.nudged.copy_from(&self.free);
        steps += self
            .ws
            .relax(net, &mut self.nudged, &phase(g.t_nudge, g.beta));
        self.grad.fill_zero();
        self.ws
            .accumulate_gradient(net, &self.nudged, 1.0, &mut self.grad);
        self.ws
            .accumulate_gradient(net, &self.free, -1.0, &mut self.grad);
        if g.input_couplings_only {
            self.grad.weights[1..].iter_mut().for_each(|w| w.fill(0.0));
            self.grad.biases[1..].iter_mut().for_each(|b| b.fill(0.0));
        }
        steps
    }

    /// Stores the free state as rows `at..` of the persistent chains.
    pub(crate) fn keep_chain(&self, chains: &mut ConvState, at: usize) {
        for (layer, chain) in self.free.layers.iter().zip(&mut chains.layers) {
            let rows = chain_rows(chain, at, layer.rows());
            chain.as_mut_slice()[rows].copy_from_slice(layer.as_slice());
        }
    }
}

/// The values of rows `at..at + n` of `chain` (row-major: one contiguous run).
fn chain_rows(chain: &Matrix, at: usize, n: usize) -> std::ops::Range<usize> {
    at * chain.cols()..(at + n) * chain.cols()
}

/// Where `g`'s free phase starts for a chunk at rows `at..` whose discriminative free state is
/// `image_state` (`chains` exist with persistent chains).
pub(crate) fn chain_start<'a>(
    g: &Generative,
    chains: Option<&'a ConvState>,
    at: usize,
    image_state: &'a ConvState,
) -> ChainStart<'a> {
    match (g.start, chains) {
        (GenerativeStart::Persistent, Some(chains)) => ChainStart::Chain(chains, at),
        (GenerativeStart::Image, _) => ChainStart::Image(image_state),
        _ => ChainStart::Zeros,
    }
}

/// How a network with convolutions dreams ([`dream`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvDream {
    /// Alternating sweeps (each free layer set to its exact minimiser).
    pub steps: usize,
    /// Start the free layers uniform in their intervals (seeded) instead of at zero: different
    /// starts may fall into different minima.
    pub noise: bool,
    /// Seed of the start and of the silenced units.
    pub seed: u64,
    /// Share of the hidden units held at 0 in each dream, a different random set per dream.
    pub silenced: f32,
    /// `kappa` of the free input: the one the network was trained with.
    pub input_stiffness: f32,
    /// The free input's interval: `[0, 1]`, or the standardised pixels' of a network with
    /// standardised inputs ([`ConvConfig::input_range`]).
    pub input_range: StateRange,
}

impl ConvDream {
    /// `eqprop dream`'s defaults, as for dense networks ([`DREAM_STEPS`] sweeps from noise,
    /// [`DREAM_SILENCED`] of the hidden units silenced, seed 0), with the input stiffness the
    /// network was trained with (1 without generative training).
    pub fn for_config(cfg: &ConvConfig) -> Self {
        Self {
            steps: DREAM_STEPS,
            noise: true,
            seed: 0,
            silenced: DREAM_SILENCED,
            input_stiffness: cfg.generative.map_or(1.0, |g| g.input_stiffness),
            input_range: cfg.input_range(),
        }
    }

    /// Checks what a user may give: at least one step, a silenced share in `[0, 1]`, a
    /// positive finite stiffness.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_dream(self.steps, self.silenced, self.input_stiffness)
    }
}

/// Dreams: the output clamped to the one-hot `labels`, the input (stiffened by `kappa`) and
/// every hidden layer free, relaxed for `options.steps` alternating sweeps (each layer set to
/// its exact minimiser, so the energy never rises; the silenced units held at 0 after each),
/// so that the couplings draw what each label means in the input layer. A network with a
/// softmax readout has no output states to clamp: its readout is nudged toward the labels with
/// `beta = 1` instead. Returns the input layer, one image per row (channels-last, in the
/// network's units: [`ConvConfig::input_pixels`] undoes a standardisation).
///
/// Panics if a label is not an output unit (callers validate user input first).
pub fn dream(net: &ConvNet, labels: &[usize], options: &ConvDream) -> Matrix {
    let arch = net.architecture();
    let (n, last) = (labels.len(), arch.num_layers() - 1);
    let readout = arch.has_readout();
    let mut ws = Workspace::new(arch, n);
    ws.set_clamped(
        &(0..=last)
            .map(|k| k == last && !readout)
            .collect::<Vec<_>>(),
    );
    ws.set_input_stiffness(options.input_stiffness);
    ws.set_input_range(options.input_range);
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let mut state = ConvState::zeros(arch, n);
    if options.noise {
        for (k, layer) in state.layers.iter_mut().enumerate() {
            let r = ws.range(k);
            let values = layer.as_mut_slice().iter_mut();
            values.for_each(|v| *v = rng.random_range(r.lo..=r.hi));
        }
    }
    let one_hot = one_hot(labels, arch.sizes()[last], 0.0, 1.0);
    match readout {
        true => state.layers[last].fill(0.0),
        false => state.layers[last].copy_from(&one_hot),
    }
    let phase = ConvPhase {
        steps: 1,
        eps: 1.0,
        sweep: Sweep::Alternating,
        beta: if readout { 1.0 } else { 0.0 },
        target: readout.then_some(&one_hot),
        pull: Pull::Output,
        tol: 0.0,
    };
    let masks = silence_masks(&arch.sizes(), n, options.silenced, &mut rng);
    apply_masks(&mut state.layers, &masks);
    for _ in 0..options.steps {
        ws.relax(net, &mut state, &phase);
        apply_masks(&mut state.layers, &masks);
    }
    state.layers.swap_remove(0)
}
