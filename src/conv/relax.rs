//! Relaxation of a network of any architecture: descent of `F = E + beta C` on the free layers.
//!
//! ```text
//! E(s) = sum_k ( 1/2 ||s_k||^2 - b_k . rho(s_k) ) - sum_k Phi_k(s_{k-1}, s_k)
//! Phi_k = < rho(s_k), P(conv(rho(s_{k-1}), W_k)) >   (convolutional, P the max-pool)
//!       = rho(s_{k-1}) W_k . rho(s_k)                  (dense)
//! C = 1/2 ||s_L - target||^2
//! ```
//! With a softmax readout ([`Coupling::Readout`](super::architecture::Coupling::Readout)) the
//! output has no states: `C = -ln p_y`, `p = softmax(s_{L-1} W_L + b_L)`, and the output layer
//! holds the readout's force `beta (t - p)` instead (0 in the free phase), recomputed from
//! `s_{L-1}` at every step; the transpose of `W_L` carries it down as it carries states.
//! States stay in their layer's interval ([`StateRange`], by default `[0, 1]`; there `rho(s) =
//! s`), where every update below clamps them. The drive of layer `k`, `-dE/ds_k + s_k`, is
//! `b_k + P(conv(s_{k-1}))` from below plus, from above, the transpose of coupling `k+1`
//! applied to `s_{k+1}` (for a pooled convolution, `s_{k+1}` routed back to the window maxima
//! first). Two schedules:
//!
//! * [`Sweep::Synchronous`]: every free layer at once, `s <- clamp(s + eps (drive - s +
//!   beta (t - s)))` (with `eps = 1` the fixed-point iteration of Laborieux et al. 2021);
//! * [`Sweep::Alternating`]: odd layers, then even layers (Scellier et al. 2023). Layers of one
//!   parity do not interact, so each half-step moves its layers toward the exact minimiser of
//!   `F` given the others, `clamp(drive)` (the output: `clamp((drive + beta t) / (1 + beta))`),
//!   by a fraction `eps`: with `eps = 1`, block coordinate descent, under which `E` never rises
//!   (a pooled coupling is convex in its input, so the routed drive is a supporting plane).
//!
//! Nothing is allocated after [`Workspace::new`].

use super::architecture::{Architecture, ConvGeometry, StateRange};
use super::kernels::{col2im_acc, conv_transpose_routed, im2col, max_pool, unpool};
use super::net::{ConvNet, Gradient};
use crate::backend::simd::{Isa, simd_dispatch};
use crate::backend::{Transpose, matmul_acc, step_row_watched};
use crate::modulator::row_surprise;
use crate::tensor::{Matrix, softmax_in_place};
use serde::{Deserialize, Serialize};

/// The order in which a relaxation step updates the free layers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Sweep {
    /// All free layers at once from the same states.
    Synchronous,
    /// Odd layers, then even layers, each to (a fraction `eps` of the way to) its minimiser.
    #[default]
    Alternating,
}

/// One phase: `steps` steps of size `eps`, the `pull`ed layer (the output, or the input of
/// generative training) nudged toward `target` with strength `beta` (0: free).
#[derive(Clone, Copy, Debug)]
pub struct ConvPhase<'a> {
    pub steps: usize,
    pub eps: f32,
    pub sweep: Sweep,
    pub beta: f32,
    pub target: Option<&'a Matrix>,
    pub pull: Pull,
    /// End the phase once no state moves by more than this in a step (0: run every step).
    pub tol: f32,
}

/// The layer a phase's target pulls on: `C = 1/2 ||s_L - t||^2` on the output, or, when the
/// label is clamped and the input free (generative training), `C_g = 1/2 ||s_0 - x||^2` on the
/// input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pull {
    #[default]
    Output,
    Input,
}

/// The states of every layer for `n` samples: `layers[k]` is `n x size_k`, channels-last.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvState {
    pub layers: Vec<Matrix>,
}

impl ConvState {
    pub fn zeros(arch: &Architecture, n: usize) -> Self {
        Self {
            layers: arch.sizes().iter().map(|&s| Matrix::zeros(n, s)).collect(),
        }
    }

    pub fn output(&self) -> &Matrix {
        self.layers.last().expect("a state has layers")
    }

    pub fn copy_from(&mut self, other: &ConvState) {
        for (a, b) in self.layers.iter_mut().zip(&other.layers) {
            a.copy_from(b);
        }
    }

    /// Zeroes every layer but the input.
    pub fn reset_free(&mut self) {
        self.layers[1..].iter_mut().for_each(|l| l.fill(0.0));
    }
}

/// Buffers for relaxing `n` samples: each coupling's forward drive `P(conv(s_{k-1}))` (kept
/// while `s_{k-1}` does not change), its pooling winners, and the patch matrix.
#[derive(Clone, Debug)]
pub struct Workspace {
    n: usize,
    geometry: Vec<Option<ConvGeometry>>,
    /// `forward[k]`: the drive coupling `k` sends up to layer `k` (index 0 unused).
    forward: Vec<Matrix>,
    fresh: Vec<bool>,
    /// Convolution output before pooling (`n positions x cout`), reused for routing back.
    conv_out: Vec<Matrix>,
    winner: Vec<Vec<u32>>,
    /// Patches of the input of a convolution (`n positions x patch`), reused for its transpose.
    cols: Vec<Matrix>,
    drive: Vec<Matrix>,
    /// `W_k^T` of each convolution, for the routed transpose; refreshed after `invalidate`.
    transposed: Vec<Matrix>,
    transposed_fresh: bool,
    clamped: Vec<bool>,
    /// The layers not clamped, in order.
    free: Vec<usize>,
    /// Whether the output is a softmax readout (its layer holds the readout's force).
    readout: bool,
    /// The interval of each layer's states.
    ranges: Vec<StateRange>,
    /// `kappa` of the input's self term `kappa/2 ||s_0||^2` when the input is free (1 by
    /// default).
    input_stiffness: f32,
}

impl Workspace {
    /// Buffers for `n` samples of `arch`, the input clamped.
    pub fn new(arch: &Architecture, n: usize) -> Self {
        let layers = arch.num_layers();
        let geometry: Vec<_> = (0..layers)
            .map(|k| (k > 0).then(|| arch.conv_geometry(k)).flatten())
            .collect();
        let per_conv = |f: &dyn Fn(&ConvGeometry) -> (usize, usize)| {
            geometry
                .iter()
                .map(|g| {
                    let (r, c) = g.as_ref().map_or((0, 0), f);
                    Matrix::zeros(r, c)
                })
                .collect::<Vec<_>>()
        };
        let sizes = arch.sizes();
        Self {
            n,
            forward: sizes.iter().map(|&s| Matrix::zeros(n, s)).collect(),
            fresh: vec![false; layers],
            conv_out: per_conv(&|g| (n * g.positions(), g.cout)),
            winner: geometry
                .iter()
                .map(|g| vec![0; g.map_or(0, |g| n * g.hp * g.wp * g.cout)])
                .collect(),
            cols: per_conv(&|g| (n * g.positions(), g.patch())),
            drive: sizes.iter().map(|&s| Matrix::zeros(n, s)).collect(),
            transposed: per_conv(&|g| (g.cout, g.patch())),
            transposed_fresh: false,
            geometry,
            clamped: (0..layers).map(|k| k == 0).collect(),
            free: (1..layers).collect(),
            readout: arch.has_readout(),
            ranges: (0..layers).map(|k| arch.range(k)).collect(),
            input_stiffness: 1.0,
        }
    }

    /// Sets `kappa`, the stiffness of a free input layer: its self term in `E` becomes
    /// `kappa/2 ||s_0||^2`, so its minimiser is `clamp((drive + beta x) / (kappa + beta))`
    /// (and a step moves it `eps / kappa` along `-dF/ds_0`). Dreams use the stiffness the
    /// network was trained with.
    pub fn set_input_stiffness(&mut self, kappa: f32) {
        self.input_stiffness = kappa;
    }

    /// The interval of a free input layer (`[0, 1]` unless the inputs are standardised:
    /// [`super::ConvConfig::input_range`]).
    pub fn set_input_range(&mut self, range: StateRange) {
        self.ranges[0] = range;
    }

    /// The interval layer `k`'s states are projected onto: the architecture's, but for a free
    /// input's ([`Self::set_input_range`]).
    pub fn range(&self, k: usize) -> StateRange {
        self.ranges[k]
    }

    /// Samples the buffers hold.
    pub fn samples(&self) -> usize {
        self.n
    }

    /// Which layers are clamped (default: the input only); forgets every cached drive.
    pub fn set_clamped(&mut self, clamped: &[bool]) {
        self.clamped.copy_from_slice(clamped);
        self.free = (0..clamped.len()).filter(|&k| !clamped[k]).collect();
        self.fresh.fill(false);
    }

    /// Forgets every cached forward drive: call it when the clamped input or the weights change.
    pub fn invalidate(&mut self) {
        self.fresh.fill(false);
        self.transposed_fresh = false;
    }

    /// Forgets the forward drives sent up by free layers: the caller may have replaced those
    /// layers since; drives from clamped layers stay fresh.
    fn forget_drives_from_free_layers(&mut self) {
        for k in 1..self.fresh.len() {
            self.fresh[k] &= self.clamped[k - 1];
        }
    }

    /// Copies `W_k^T` of every convolution (once after each [`invalidate`](Self::invalidate)).
    fn ensure_transposed(&mut self, net: &ConvNet) {
        if self.transposed_fresh {
            return;
        }
        for (k, t) in self.transposed.iter_mut().enumerate().skip(1) {
            if self.geometry[k].is_some() {
                let w = net.weight(k);
                for (i, row) in w.as_slice().chunks_exact(w.cols()).enumerate() {
                    for (c, &v) in row.iter().enumerate() {
                        t.set(c, i, v);
                    }
                }
            }
        }
        self.transposed_fresh = true;
    }

    /// Runs `phase.steps` steps on the free layers of `state`.
    ///
    /// Returns the steps taken: with `phase.tol > 0` the phase ends early, after the first
    /// step in which no state moved by more than `tol` (a fixed point, to that tolerance).
    pub fn relax(&mut self, net: &ConvNet, state: &mut ConvState, phase: &ConvPhase) -> usize {
        self.forget_drives_from_free_layers();
        let last = state.layers.len() - 1;
        self.ensure_transposed(net);
        let free = std::mem::take(&mut self.free);
        let mut taken = phase.steps;
        for step in 0..phase.steps {
            let mut moved = 0.0f32;
            match phase.sweep {
                Sweep::Synchronous => {
                    (1..=last).for_each(|k| self.ensure_forward(net, state, k));
                    for &k in &free {
                        self.compute_drive(net, state, k);
                    }
                    for &k in &free {
                        moved = moved.max(self.update_layer(state, k, phase, false));
                    }
                }
                Sweep::Alternating => {
                    for parity in [1, 0] {
                        for &k in free.iter().filter(|&&k| k % 2 == parity) {
                            if k > 0 {
                                self.ensure_forward(net, state, k);
                            }
                            if k < last {
                                self.ensure_forward(net, state, k + 1);
                            }
                            self.compute_drive(net, state, k);
                            moved = moved.max(self.update_layer(state, k, phase, true));
                        }
                    }
                }
            }
            if moved < phase.tol {
                taken = step + 1;
                break;
            }
        }
        self.free = free;
        taken
    }

    /// `forward[k] = P(conv(s_{k-1}))` or `s_{k-1} W_k`, unless still fresh.
    fn ensure_forward(&mut self, net: &ConvNet, state: &ConvState, k: usize) {
        if self.fresh[k] {
            return;
        }
        let below = &state.layers[k - 1];
        let w = net.weight(k);
        self.forward[k].fill(0.0);
        match self.geometry[k] {
            Some(g) => {
                let (cols, out) = (&mut self.cols[k], &mut self.conv_out[k]);
                im2col(below.as_slice(), self.n, &g, cols.as_mut_slice());
                out.fill(0.0);
                matmul_acc(out, cols, Transpose::No, w, Transpose::No, 1.0);
                let (pooled, winner) = (&mut self.forward[k], &mut self.winner[k]);
                max_pool(out.as_slice(), self.n, &g, pooled.as_mut_slice(), winner);
            }
            None => matmul_acc(
                &mut self.forward[k],
                below,
                Transpose::No,
                w,
                Transpose::No,
                1.0,
            ),
        }
        self.fresh[k] = true;
    }

    /// `drive_k = b_k + forward[k] + transpose of coupling k+1 applied to s_{k+1}`; the
    /// forward drives of couplings `k` and `k+1` must be fresh.
    fn compute_drive(&mut self, net: &ConvNet, state: &ConvState, k: usize) {
        let last = state.layers.len() - 1;
        let drive = &mut self.drive[k];
        drive.fill_rows_cyclic(net.bias(k));
        if k > 0 {
            add(drive, &self.forward[k]);
        }
        if k < last {
            let above = &state.layers[k + 1];
            let w = net.weight(k + 1);
            match self.geometry[k + 1] {
                Some(g) if routed_is_cheaper(above, &g) => conv_transpose_routed(
                    above.as_slice(),
                    &self.winner[k + 1],
                    self.transposed[k + 1].as_slice(),
                    &g,
                    drive.as_mut_slice(),
                ),
                Some(g) => {
                    let (routed, cols) = (&mut self.conv_out[k + 1], &mut self.cols[k + 1]);
                    unpool(above.as_slice(), &self.winner[k + 1], routed.as_mut_slice());
                    cols.fill(0.0);
                    matmul_acc(cols, routed, Transpose::No, w, Transpose::Yes, 1.0);
                    col2im_acc(cols.as_slice(), self.n, &g, drive.as_mut_slice());
                }
                None => matmul_acc(drive, above, Transpose::No, w, Transpose::Yes, 1.0),
            }
        }
    }

    /// Moves layer `k` by the phase's rule; the forward drive of coupling `k+1` goes stale.
    /// Returns the largest change of a state.
    fn update_layer(
        &mut self,
        state: &mut ConvState,
        k: usize,
        phase: &ConvPhase,
        exact: bool,
    ) -> f32 {
        let last = state.layers.len() - 1;
        let pulled = match phase.pull {
            Pull::Output => last,
            Pull::Input => 0,
        };
        let nudge = (k == pulled && phase.beta != 0.0)
            .then(|| phase.target.map(|t| (phase.beta, t)))
            .flatten();
        let mut nudge = nudge.map(|(beta, t)| (beta, t.as_slice()));
        if k == last && self.readout {
            return read_out(state.layers[k].as_mut_slice(), &mut self.drive[k], nudge);
        }
        let kappa = self.input_stiffness;
        if k == 0 && kappa != 1.0 {
            // F / kappa has the minimiser of F: the drive and the pull shrink by kappa.
            let drive = self.drive[0].as_mut_slice();
            drive.iter_mut().for_each(|d| *d /= kappa);
            nudge = nudge.map(|(beta, t)| (beta / kappa, t));
        }
        let (s, d, eps) = (
            state.layers[k].as_mut_slice(),
            self.drive[k].as_slice(),
            phase.eps,
        );
        let rule = match (nudge, exact) {
            (Some((beta, target)), true) => Move::ToMinimiser { eps, beta, target },
            _ => Move::Step { eps, nudge },
        };
        let mut moved = 0.0;
        move_states(s, d, rule, self.ranges[k], &mut moved);
        if k < last {
            self.fresh[k + 1] = false;
        }
        moved
    }

    /// Per-sample energy `E` (the self terms of clamped layers left out: constants of a phase;
    /// a softmax readout is no part of it).
    pub fn energy(&mut self, net: &ConvNet, state: &ConvState, out: &mut [f32]) {
        self.forget_drives_from_free_layers();
        out.fill(0.0);
        let states = state.layers.len() - usize::from(self.readout);
        for (k, s) in state.layers[..states].iter().enumerate() {
            if k > 0 {
                self.ensure_forward(net, state, k);
            }
            let channels = net.bias(k).len();
            for (r, e) in out.iter_mut().enumerate() {
                let row = s.row(r);
                let mut sum = 0.0f64;
                if !self.clamped[k] {
                    let stiffness = if k == 0 { self.input_stiffness } else { 1.0 };
                    for (i, &x) in row.iter().enumerate() {
                        sum += f64::from(0.5 * stiffness * x * x - net.bias(k)[i % channels] * x);
                    }
                }
                if k > 0 {
                    let f = self.forward[k].row(r);
                    sum -= row
                        .iter()
                        .zip(f)
                        .map(|(&a, &b)| f64::from(a * b))
                        .sum::<f64>();
                }
                *e += sum as f32;
            }
        }
    }

    /// The network's prediction at `state`, one row per sample, into `out`: the output
    /// layer's states, or with a softmax readout the class probabilities
    /// `softmax(s_{L-1} W_L + b_L)`.
    pub fn prediction(&mut self, net: &ConvNet, state: &ConvState, out: &mut Matrix) {
        let last = state.layers.len() - 1;
        if !self.readout {
            out.copy_from(&state.layers[last]);
            return;
        }
        self.forget_drives_from_free_layers();
        self.ensure_forward(net, state, last);
        out.fill_rows_cyclic(net.bias(last));
        add(out, &self.forward[last]);
        for r in 0..out.rows() {
            softmax_in_place(out.row_mut(r));
        }
    }

    /// The cost `C` of one sample's prediction (a row of [`prediction`](Self::prediction))
    /// against its target: `1/2 ||y - t||^2`, or with a softmax readout the cross-entropy
    /// `-sum t ln p`.
    pub fn cost(&self, prediction: &[f32], target: &[f32]) -> f32 {
        match self.readout {
            true => cross_entropy(prediction, target),
            false => row_surprise(prediction, target),
        }
    }

    /// `grad += alpha dPhi/dtheta` at `state`, summed over the samples: for a convolution
    /// `patches(s_{k-1})^T unpool(s_k)`, for a dense coupling `s_{k-1}^T s_k`, for a bias the
    /// layer's states summed over positions (the input's bias only when the input is free: a
    /// clamped input is the same in every phase).
    pub fn accumulate_gradient(
        &mut self,
        net: &ConvNet,
        state: &ConvState,
        alpha: f32,
        grad: &mut Gradient,
    ) {
        self.fresh.fill(false);
        for k in 1..state.layers.len() {
            self.ensure_forward(net, state, k);
            let (below, here) = (&state.layers[k - 1], &state.layers[k]);
            let gw = &mut grad.weights[k - 1];
            match self.geometry[k] {
                Some(_) => {
                    // ensure_forward left the patches of s_{k-1} in cols.
                    let routed = &mut self.conv_out[k];
                    unpool(here.as_slice(), &self.winner[k], routed.as_mut_slice());
                    matmul_acc(
                        gw,
                        &self.cols[k],
                        Transpose::Yes,
                        routed,
                        Transpose::No,
                        alpha,
                    );
                }
                None => matmul_acc(gw, below, Transpose::Yes, here, Transpose::No, alpha),
            }
            accumulate_bias(&mut grad.biases[k], here, alpha);
        }
        if !self.clamped[0] {
            accumulate_bias(&mut grad.biases[0], &state.layers[0], alpha);
        }
        self.fresh.fill(false);
    }
}

/// `b += alpha` times the states of `layer` summed over samples and positions, channel by
/// channel.
fn accumulate_bias(b: &mut [f32], layer: &Matrix, alpha: f32) {
    let channels = b.len();
    for (i, &x) in layer.as_slice().iter().enumerate() {
        b[i % channels] += alpha * x;
    }
}

/// Sets a softmax readout's layer `s` to its force `beta (t - p)` row by row, turning the
/// logits in `logits` into the probabilities `p` on the way (0 without a nudge); returns the
/// largest change.
fn read_out(s: &mut [f32], logits: &mut Matrix, nudge: Option<(f32, &[f32])>) -> f32 {
    let mut moved = 0.0f32;
    let Some((beta, target)) = nudge else {
        s.iter().for_each(|x| moved = moved.max(x.abs()));
        s.fill(0.0);
        return moved;
    };
    let classes = logits.cols();
    let rows = s
        .chunks_exact_mut(classes)
        .zip(target.chunks_exact(classes));
    for (r, (s, t)) in rows.enumerate() {
        let p = logits.row_mut(r);
        softmax_in_place(p);
        for ((x, &p), &t) in s.iter_mut().zip(&*p).zip(t) {
            let force = beta * (t - p);
            moved = moved.max((force - *x).abs());
            *x = force;
        }
    }
    moved
}

/// `-sum_i t_i ln p_i`, the probabilities floored at `1e-30` (no infinite cost).
fn cross_entropy(p: &[f32], t: &[f32]) -> f32 {
    -p.iter()
        .zip(t)
        .map(|(&p, &t)| t * p.max(1e-30).ln())
        .sum::<f32>()
}

/// How a step moves a layer's states `x` given their drives `d` (all clamped to the layer's
/// interval).
#[derive(Clone, Copy, Debug)]
enum Move<'a> {
    /// `x + eps (d - x [+ beta (t - x)])`: a gradient step on `F = E + beta C`, the dense
    /// layers' [`step_row`](crate::backend::step_row).
    Step {
        eps: f32,
        nudge: Option<(f32, &'a [f32])>,
    },
    /// `x + eps (m - x)` toward the minimiser `m = (d + beta t) / (1 + beta)`.
    ToMinimiser {
        eps: f32,
        beta: f32,
        target: &'a [f32],
    },
}

simd_dispatch! {
    /// Moves the states `s` by `rule`; `moved` is set to the largest change of one.
    fn move_states => move_states_impl(
        s: &mut [f32],
        d: &[f32],
        rule: Move<'_>,
        range: StateRange,
        moved: &mut f32,
    )
}

/// [`move_states`] for one instruction set: the same operations in each (no fused
/// multiply-add), so the same bits.
#[inline(always)]
fn move_states_impl<I: Isa>(
    _isa: I,
    s: &mut [f32],
    d: &[f32],
    rule: Move<'_>,
    StateRange { lo, hi }: StateRange,
    moved: &mut f32,
) {
    // The largest change kept as the bits of a non-negative float, which order as integers:
    // an integer maximum vectorises, where `f32::max` (with its NaN rule) stays scalar.
    let mut largest = 0u32;
    let mut watch = |old: f32, new: f32| largest = largest.max((new - old).abs().to_bits());
    match rule {
        Move::Step { eps, nudge } => step_row_watched(s, d, eps, nudge, (lo, hi), watch),
        Move::ToMinimiser { eps, beta, target } => {
            for ((x, &d), &t) in s.iter_mut().zip(d).zip(target) {
                let best = ((d + beta * t) / (1.0 + beta)).clamp(lo, hi);
                let new = *x + eps * (best - *x);
                watch(*x, new);
                *x = new;
            }
        }
    }
    *moved = f32::from_bits(largest);
}

/// Whether scattering the non-zero routed values (each `patch` multiply-adds, at about half a
/// GEMM's rate) beats the dense transpose (`positions x cout x patch`): always under a pool,
/// otherwise when at least half of the layer above is zero.
fn routed_is_cheaper(above: &Matrix, g: &ConvGeometry) -> bool {
    g.pool > 1
        || 2 * above.as_slice().iter().filter(|&&v| v != 0.0).count() <= above.as_slice().len()
}

fn add(dst: &mut Matrix, src: &Matrix) {
    for (d, &s) in dst.as_mut_slice().iter_mut().zip(src.as_slice()) {
        *d += s;
    }
}

trait FillCyclic {
    fn fill_rows_cyclic(&mut self, pattern: &[f32]);
}

impl FillCyclic for Matrix {
    /// Every row set to `pattern` repeated (a per-channel bias over a channels-last layer).
    fn fill_rows_cyclic(&mut self, pattern: &[f32]) {
        for chunk in self.as_mut_slice().chunks_exact_mut(pattern.len()) {
            chunk.copy_from_slice(pattern);
        }
    }
}

/// Symmetric EqProp on the batch `x` (targets `t`), unscaled: the free phase from zero for
/// `t_free` alternating sweeps (exact block minimisers), then from it `t_nudge` sweeps nudged by
/// `+beta` and, again from the free state, by `-beta`; returns `dPhi/dtheta(s^beta) -
/// dPhi/dtheta(s^-beta)` summed over the samples. Times `-1 / (2 beta)` it is the estimate of
/// `dC/dtheta` that the gradient tests check and `examples/estimate_quality.rs` measures.
pub fn symmetric_difference(
    net: &ConvNet,
    (x, t): (&Matrix, &Matrix),
    (t_free, t_nudge): (usize, usize),
    beta: f32,
) -> Gradient {
    let arch = net.architecture();
    let mut ws = Workspace::new(arch, x.rows());
    let phase = |steps, beta| ConvPhase {
        steps,
        eps: 1.0,
        sweep: Sweep::Alternating,
        beta,
        target: Some(t),
        pull: Pull::Output,
        tol: 0.0,
    };
    let mut free = ConvState::zeros(arch, x.rows());
    free.layers[0].copy_from(x);
    ws.relax(net, &mut free, &phase(t_free, 0.0));
    let mut grad = Gradient::zeros(arch);
    for sign in [1.0f32, -1.0] {
        let mut nudged = free.clone();
        ws.relax(net, &mut nudged, &phase(t_nudge, sign * beta));
        ws.accumulate_gradient(net, &nudged, sign, &mut grad);
    }
    grad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::simd::Scalar;

    #[test]
    fn moving_states_gives_the_baseline_bits() {
        // The dispatched update (AVX2 where the CPU has it) against the baseline variant, for
        // every rule and two intervals, on states and drives that cross the clamp at both ends.
        let wave = |n: usize, f: f32| (0..n).map(move |i| (i as f32 * f).sin() * 1.3 + 0.4);
        let (start, drive, target): (Vec<f32>, Vec<f32>, Vec<f32>) = (
            wave(37, 0.7).map(|v| v.clamp(0.0, 1.0)).collect(),
            wave(37, 1.9).map(|v| 2.0 * v - 0.4).collect(),
            wave(37, 0.3).map(|v| v.clamp(0.0, 1.0)).collect(),
        );
        let wide = StateRange { lo: -0.5, hi: 1.5 };
        let rules = [
            Move::Step {
                eps: 0.7,
                nudge: None,
            },
            Move::Step {
                eps: 0.5,
                nudge: Some((0.3, &target)),
            },
            Move::ToMinimiser {
                eps: 1.0,
                beta: -0.2,
                target: &target,
            },
        ];
        for (rule, range) in rules
            .iter()
            .flat_map(|&r| [(r, StateRange::default()), (r, wide)])
        {
            let (mut fast, mut base) = (start.clone(), start.clone());
            let (mut moved_fast, mut moved_base) = (0.0, 0.0);
            move_states(&mut fast, &drive, rule, range, &mut moved_fast);
            move_states_impl(Scalar, &mut base, &drive, rule, range, &mut moved_base);
            assert!(fast.iter().all(|&x| (range.lo..=range.hi).contains(&x)));
            let at = |v: f32| fast.contains(&v);
            assert!(
                at(range.lo) && at(range.hi),
                "{rule:?} {range:?}: no state clamped"
            );
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fast), bits(&base), "{rule:?}");
            assert_eq!(moved_fast.to_bits(), moved_base.to_bits(), "{rule:?}");
            let largest = fast
                .iter()
                .zip(&start)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert_eq!(moved_fast, largest, "{rule:?}");
        }
    }
}
