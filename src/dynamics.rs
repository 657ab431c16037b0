//! Relaxation: projected gradient descent of `F = E + beta C` on the free layers.
//!
//! One synchronous step, for every free layer `k` at once:
//!
//! ```text
//! drive_k = b_k + rho(s_{k-1}) W_k + rho(s_{k+1}) W_{k+1}^T     (= -dE/ds_k + s_k)
//! s_k    <- clamp(s_k + eps (drive_k - s_k), 0, 1)
//! s_L    <- clamp(s_L + eps (drive_L - s_L + beta (target - s_L)), 0, 1)   (nudged output)
//! ```
//!
//! `rho'(s) = 1` on the closed interval `[0, 1]` (as in the authors' Theano code), so a unit at a
//! bound still feels its drive and can leave the bound. The drive that clamped layers and biases
//! exert is constant during a phase; [`Relaxation::prepare`] computes it once per batch.

use crate::backend::{
    FusedCouplings, FusedPhase, FusedScratch, SparseColumns, Transpose, input_drive, matmul_acc,
    relax_fused, step_row,
};
use crate::energy::energy_into;
use crate::network::{Network, rho};
use crate::tensor::Matrix;

/// The states of every layer for a batch, input included: `layers[k]` is `batch x sizes[k]`,
/// every value in `[0, 1]`.
#[derive(Clone, Debug, PartialEq)]
pub struct State {
    pub layers: Vec<Matrix>,
}

impl State {
    /// All-zero states for `batch` samples.
    pub fn zeros(sizes: &[usize], batch: usize) -> Self {
        Self {
            layers: sizes.iter().map(|&n| Matrix::zeros(batch, n)).collect(),
        }
    }

    /// Number of samples.
    pub fn batch(&self) -> usize {
        self.layers[0].rows()
    }

    /// Sets row `r` of layer `k` to `rho(values)`.
    pub fn set_row(&mut self, k: usize, r: usize, values: &[f32]) {
        for (s, &v) in self.layers[k].row_mut(r).iter_mut().zip(values) {
            *s = rho(v);
        }
    }

    /// The output layer.
    pub fn output(&self) -> &Matrix {
        self.layers.last().expect("a state has layers")
    }

    /// Copies every layer from `other` (same shapes).
    pub fn copy_from(&mut self, other: &State) {
        for (a, b) in self.layers.iter_mut().zip(&other.layers) {
            a.copy_from(b);
        }
    }
}

/// A pull of one layer toward a target: the `beta C` term of `F`.
#[derive(Clone, Copy, Debug)]
pub struct Nudge<'a> {
    pub layer: usize,
    pub beta: f32,
    pub target: &'a Matrix,
}

/// One phase of relaxation: how long, how fast, and with which nudge (none in the free phase).
#[derive(Clone, Copy, Debug)]
pub struct Phase<'a> {
    pub steps: usize,
    pub eps: f32,
    pub nudge: Option<Nudge<'a>>,
}

impl Phase<'_> {
    /// A free phase (no nudge) of `steps` steps of size `eps`.
    pub fn free(steps: usize, eps: f32) -> Self {
        Self {
            steps,
            eps,
            nudge: None,
        }
    }
}

/// Which kernel relaxes a phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kernel {
    /// Fused when the free-to-free couplings fit in cache, batched GEMM otherwise.
    #[default]
    Auto,
    /// Batched GEMM for every coupling term, one step of the whole chunk at a time.
    Gemm,
    /// All steps of one sample at a time (the backend's `relax_fused`).
    Fused,
}

/// Free-to-free coupling weights (floats) up to which [`Kernel::Auto`] fuses: 256 KiB, about
/// one core's L2 cache.
const FUSED_MAX_WEIGHTS: usize = 64 * 1024;

/// Reusable buffers for relaxing one batch: the constant drives of a phase and scratch.
///
/// Nothing is allocated by [`Relaxation::relax`]; [`Relaxation::prepare`] allocates only while
/// its buffers warm up.
#[derive(Clone, Debug)]
pub struct Relaxation {
    clamped: Vec<bool>,
    fixed_drive: Vec<Matrix>,
    drive: Vec<Matrix>,
    /// `s_0 W_1`, valid while `has_input_product` (layer 0 clamped, layer 1 free).
    input_product: Matrix,
    has_input_product: bool,
    sparse_input: SparseColumns,
    kernel: Kernel,
    /// Whether the prepared phase runs fused (decided by `prepare`).
    fused: bool,
    /// Couplings between free layers laid out for the fused kernel.
    couplings: FusedCouplings,
    scratch: FusedScratch,
    /// Stiffness `kappa` of the free input layer: its self term is `kappa/2 ||s_0||^2`.
    input_stiffness: f32,
    /// The states before a GEMM-path [`relax_rows`](Self::relax_rows), to restore the rows
    /// that sit out (allocated at the first such call).
    held: Option<State>,
}

impl Relaxation {
    /// Buffers for `batch` samples of a network with these layer sizes.
    pub fn new(sizes: &[usize], batch: usize) -> Self {
        let zeros = || {
            sizes
                .iter()
                .map(|&n| Matrix::zeros(batch, n))
                .collect::<Vec<_>>()
        };
        Self {
            clamped: vec![false; sizes.len()],
            fixed_drive: zeros(),
            drive: zeros(),
            input_product: Matrix::zeros(batch, sizes[1]),
            has_input_product: false,
            sparse_input: SparseColumns::default(),
            kernel: Kernel::Auto,
            fused: false,
            couplings: FusedCouplings::default(),
            scratch: FusedScratch::new(sizes),
            input_stiffness: 1.0,
            held: None,
        }
    }

    /// Gives the input layer, when it is free, the self term `kappa/2 ||s_0||^2` instead of
    /// `1/2 ||s_0||^2`, so its fixed point is `clamp((b_0 + rho(s_1) W_1^T) / kappa)`.
    ///
    /// A free input fed back through `W_1` forms a loop whose gain, for trained weights, is well
    /// above 1: the pixels then saturate into a pattern that ignores the label. A stiffer input
    /// lowers that gain (used by dreaming and its training; a clamped input is unaffected).
    pub fn with_input_stiffness(mut self, kappa: f32) -> Self {
        self.set_input_stiffness(kappa);
        self
    }

    /// See [`with_input_stiffness`](Self::with_input_stiffness); takes effect at the next
    /// [`prepare`](Self::prepare).
    pub fn set_input_stiffness(&mut self, kappa: f32) {
        self.input_stiffness = kappa;
    }

    /// Chooses the kernel (the default, [`Kernel::Auto`], picks by size).
    pub fn with_kernel(mut self, kernel: Kernel) -> Self {
        self.kernel = kernel;
        self
    }

    /// Computes, for every free layer, `b_k` plus the drive of its clamped neighbours.
    ///
    /// Call it whenever the clamped layers or the weights change. The input drive `s_0 W_1` is
    /// computed from the non-zero inputs only.
    pub fn prepare(&mut self, net: &Network, state: &State, clamped: &[bool]) {
        assert_eq!(clamped.len(), net.num_layers(), "one clamp flag per layer");
        self.clamped.copy_from_slice(clamped);
        self.has_input_product = clamped[0] && !clamped[1];
        if self.has_input_product {
            self.input_product.fill(0.0);
            self.sparse_input.rebuild(&state.layers[0]);
            input_drive(&state.layers[0], net.weight(1), &mut self.input_product);
        }
        self.prepare_fused(net, clamped);
        for k in 0..net.num_layers() {
            if clamped[k] {
                continue;
            }
            let fixed = &mut self.fixed_drive[k];
            fixed.fill_rows(net.bias(k));
            if k > 0 && clamped[k - 1] {
                match k {
                    1 if self.has_input_product => add(fixed, &self.input_product),
                    _ => add_neighbour_drive(fixed, net, state, k, k - 1),
                }
            }
            if k + 1 < net.num_layers() && clamped[k + 1] {
                add_neighbour_drive(fixed, net, state, k, k + 1);
            }
        }
    }

    /// Decides the kernel and, when fused, lays out the free-to-free couplings.
    fn prepare_fused(&mut self, net: &Network, clamped: &[bool]) {
        let free_pairs = || (1..net.num_layers()).filter(|&k| !clamped[k - 1] && !clamped[k]);
        let free_weights: usize = free_pairs()
            .map(|k| net.sizes()[k - 1] * net.sizes()[k])
            .sum();
        let stiff_input = !clamped[0] && self.input_stiffness != 1.0;
        self.fused = match self.kernel {
            _ if stiff_input => false,
            Kernel::Auto => free_weights <= FUSED_MAX_WEIGHTS,
            Kernel::Gemm => false,
            Kernel::Fused => true,
        };
        if self.fused {
            self.couplings.prepare(net.weights(), clamped);
        }
    }

    /// The column-compressed clamped input of the last [`prepare`](Self::prepare), if layer 0
    /// was clamped (the learning rule reuses it for the sparse `W_1` update).
    pub fn sparse_input(&self) -> Option<&SparseColumns> {
        self.has_input_product.then_some(&self.sparse_input)
    }

    /// Drops the samples whose `keep` is false from the sparse input (the drive is already
    /// computed), so that the sparse `W_1` update skips them.
    pub fn retain_input_samples(&mut self, keep: &[bool]) {
        if self.has_input_product {
            self.sparse_input.retain_samples(keep);
        }
    }

    /// Runs `phase.steps` synchronous steps on the free layers of `state`.
    pub fn relax(&mut self, net: &Network, state: &mut State, phase: &Phase) {
        if self.fused {
            return self.relax_fused(state, phase, None);
        }
        for _ in 0..phase.steps {
            self.compute_drives(net, state);
            self.apply_drives(state, phase);
        }
    }

    /// [`relax`](Self::relax) for the samples `rows` (increasing) only: the others keep their
    /// states. The fused kernel skips the others' work; the GEMM path relaxes the whole batch
    /// and puts the others back.
    pub fn relax_rows(&mut self, net: &Network, state: &mut State, phase: &Phase, rows: &[usize]) {
        if self.fused {
            return self.relax_fused(state, phase, Some(rows));
        }
        let held = self.held.get_or_insert_with(|| state.clone());
        held.copy_from(state);
        self.relax(net, state, phase);
        let held = self.held.as_ref().expect("filled above");
        let mut keep = rows.iter().peekable();
        for r in 0..state.batch() {
            if keep.next_if_eq(&&r).is_some() {
                continue;
            }
            for (k, layer) in state.layers.iter_mut().enumerate() {
                if !self.clamped[k] {
                    layer.row_mut(r).copy_from_slice(held.layers[k].row(r));
                }
            }
        }
    }

    fn relax_fused(&mut self, state: &mut State, phase: &Phase, rows: Option<&[usize]>) {
        let fused = FusedPhase {
            clamped: &self.clamped,
            fixed: &self.fixed_drive,
            couplings: &self.couplings,
            steps: phase.steps,
            eps: phase.eps,
            nudge: phase.nudge.map(|n| (n.layer, n.beta, n.target)),
            rows,
        };
        relax_fused(&fused, &mut state.layers, &mut self.scratch);
    }

    /// `drive_k` for every free layer, from the current states.
    fn compute_drives(&mut self, net: &Network, state: &State) {
        let last = net.num_layers() - 1;
        for k in 0..=last {
            if self.clamped[k] {
                continue;
            }
            let drive = &mut self.drive[k];
            drive.copy_from(&self.fixed_drive[k]);
            if k > 0 && !self.clamped[k - 1] {
                add_neighbour_drive(drive, net, state, k, k - 1);
            }
            if k < last && !self.clamped[k + 1] {
                add_neighbour_drive(drive, net, state, k, k + 1);
            }
        }
    }

    /// `s_k <- clamp(s_k + eps (drive_k - s_k) [+ eps beta (t - s_k)])` on every free layer.
    fn apply_drives(&self, state: &mut State, phase: &Phase) {
        for (k, s) in state.layers.iter_mut().enumerate() {
            if self.clamped[k] {
                continue;
            }
            let kappa = if k == 0 { self.input_stiffness } else { 1.0 };
            for r in 0..s.rows() {
                let target = phase
                    .nudge
                    .filter(|n| n.layer == k)
                    .map(|n| (n.beta, n.target.row(r)));
                if kappa == 1.0 {
                    step_row(s.row_mut(r), self.drive[k].row(r), phase.eps, target);
                } else {
                    step_row_stiff(s.row_mut(r), self.drive[k].row(r), phase.eps, kappa, target);
                }
            }
        }
    }

    /// Per-sample energy `E` of `state` without the constant self terms of the clamped layers
    /// (using the cached input drive and scratch buffers).
    pub fn energy(&mut self, net: &Network, state: &State, out: &mut [f32]) {
        let input_product = self.has_input_product.then_some(&self.input_product);
        energy_into(
            net,
            &state.layers,
            input_product,
            &self.clamped,
            &mut self.drive,
            out,
        );
    }
}

/// `drive_k += rho(s_j) W_k` from the layer below (`j = k - 1`) or `rho(s_j) W_{k+1}^T` from the
/// layer above (`j = k + 1`).
fn add_neighbour_drive(drive: &mut Matrix, net: &Network, state: &State, k: usize, j: usize) {
    let (w, t) = if j < k {
        (net.weight(k), Transpose::No)
    } else {
        (net.weight(j), Transpose::Yes)
    };
    matmul_acc(drive, &state.layers[j], Transpose::No, w, t, 1.0);
}

/// `s <- clamp(s + eps (d - kappa s) [+ eps beta (t - s)], 0, 1)`: a step of a layer with self
/// term `kappa/2 ||s||^2`.
fn step_row_stiff(s: &mut [f32], d: &[f32], eps: f32, kappa: f32, nudge: Option<(f32, &[f32])>) {
    for (j, (x, &d)) in s.iter_mut().zip(d).enumerate() {
        let pull = nudge.map_or(0.0, |(beta, t)| beta * (t[j] - *x));
        *x = (*x + eps * (d - kappa * *x + pull)).clamp(0.0, 1.0);
    }
}

fn add(dst: &mut Matrix, src: &Matrix) {
    for (d, &s) in dst.as_mut_slice().iter_mut().zip(src.as_slice()) {
        *d += s;
    }
}
